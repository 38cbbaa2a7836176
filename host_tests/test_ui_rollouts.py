"""The dashboard's staged rollouts: the "hold for a rollout" upload, starting one, its waves
by reported state, pause / resume / abort behind a confirmation; and a model's ranges on its
serial-number page."""

import json
import re

from serverkit import device, new_model
from uikit import login

from tools.server import rollpolicy


def test_hold_start_pause_resume_abort(server):
    vendor = server.add_vendor()
    api = server.session(cik=vendor["cik"])
    model = new_model(api)
    ciks = {f"u{i:02d}": device(server, vendor, api, model, f"u{i:02d}") for i in range(10)}
    ui = login(server, vendor["cik"])
    base = f"/ui/m/{vendor['vendor']}/{model}/"
    assert 'name="hold"' in ui.get(base + "content/").text
    hdrs = {"X-CSRF-Token": ui.token, "Content-Type": "application/octet-stream"}
    r = ui.post(base + "content/?id=fw&version=2&hold=true", data=b"2", headers=hdrs)
    assert r.status_code == 200, r.text
    assert "held for a rollout" in ui.get(base + "content/").text
    q = {"vendor": vendor["vendor"], "model": model}
    with server.session(cik=ciks["u00"]) as d:
        assert d.get("/provision/download", params=q).text == ""
    page = ui.get(base + "rollout/fw").text
    assert 'id="start"' in page and "Held for a rollout" in page
    r = ui.post_form(base + "rollout/fw/start", {"waves": "40,100", "min_devices": "1"})
    assert r.status_code == 303 and r.headers["Location"].endswith("rollout/fw?done=start")
    inside = [sn for sn in ciks if rollpolicy.in_wave("fw", sn, 40)]
    first = inside[0]
    with server.session(cik=ciks[first]) as d:
        assert d.get("/provision/download", params=q).text.split() == ["fw"]
        r = d.post("/onep:v1/stack/alias", data={"state": "active", "content": "fw:1"})
        assert r.status_code == 204
    page = ui.get(base + "rollout/fw").text
    assert re.search(r'id="roll-state"[^>]*>running<', page)
    assert re.search(r'id="roll-wave">40<', page)
    rows = re.findall(r"<td>(\d+) %</td>\s*<td class=\"num\">(\d+)</td>", page)
    assert rows == [("40", str(len(inside))), ("100", str(len(ciks) - len(inside)))]
    assert "active 1" in page
    # pause: a confirmation page first (a GET changes nothing), then the POST
    r = ui.get(base + "rollout/fw/pause")
    assert r.status_code == 200 and "Pause the rollout of fw?" in r.text
    assert json.loads(api.get(f"/exoprov/v1/model/{model}/rollouts/fw").text)["state"] == (
        "running"
    )
    r = ui.post_form(base + "rollout/fw/pause", token="0" * 64)
    assert r.status_code == 403  # the CSRF token is checked
    r = ui.post_form(base + "rollout/fw/pause")
    assert r.status_code == 303
    page = ui.get(base + "rollout/fw?done=pause").text
    assert "Rollout paused." in page and re.search(r'id="roll-state"[^>]*>paused<', page)
    assert 'rollout/fw/resume"' in page and 'rollout/fw/pause"' not in page
    assert ui.post_form(base + "rollout/fw/resume").status_code == 303
    assert "Abort the rollout of fw?" in ui.get(base + "rollout/fw/abort").text
    assert ui.post_form(base + "rollout/fw/abort").status_code == 303
    page = ui.get(base + "rollout/fw").text
    assert re.search(r'id="roll-state"[^>]*>aborted<', page)
    assert 'rollout/fw/resume"' not in page
    assert ui.post_form(base + "rollout/fw/resume").status_code == 409
    api.close()


def test_ranges_on_the_serial_number_page(server):
    vendor = server.add_vendor()
    api = server.session(cik=vendor["cik"])
    model = new_model(api)
    rng = {"format": "base10", "length": 8, "first": 1000, "last": 1199}
    r = api.post(
        f"/provision/manage/model/{model}/",
        data=json.dumps({"ranges": [rng]}),
        headers={"Content-Type": "application/javascript; charset=utf-8"},
    )
    assert r.status_code == 205, r.text
    for i in range(12):
        device(server, vendor, api, model, f"{1000 + i:08d}")
    ui = login(server, vendor["cik"])
    page = ui.get(f"/ui/m/{vendor['vendor']}/{model}/").text
    assert "12 serial numbers listed in this model; 1 range whitelists" in page
    assert '<span id="covered">200</span>' in page
    row = re.search(r'<section class="card" id="ranges">.*?</section>', page, re.S).group(0)
    cells = re.findall(r"<td[^>]*>(?:<code>)?([^<]*)", row)
    assert cells == ["00001000", "00001199", "base10, 8 digits", "200", "12"]
    api.close()
