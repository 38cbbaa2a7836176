"""The dashboard's serial-number pages over plain HTTP: keyset paging both ways, search,
status and version filters (what the browser test drives at a small scale; page times at
100 000 rows: python -m tools.harness.uibench)."""

import hashlib
import html
import os
import re

import pytest
from serverkit import activate, add_sn, enable, new_model
from uikit import login

_ROW = re.compile(r'<a href="/ui/m/[^"]+/sn/([^"]+)">')
_PAGER = re.compile(r'<a href="([^"]+)" rel="(prev|next)">')


@pytest.fixture(scope="module")
def fleet(server):
    vendor = server.add_vendor()
    api = server.session(cik=vendor["cik"])
    model = new_model(api)
    sns = [f"p-{i:03d}" for i in range(120)]
    r = api.post(
        f"/provision/manage/model/{model}/",
        data="".join(sn + "\n" for sn in reversed(sns)),  # not in sn order
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 205
    ciks = {}
    for sn in ("p-005", "p-006", "p-007", "p-008"):
        enable(api, model, sn, vendor["rid"])
    for sn in ("p-005", "p-006"):
        ciks[sn] = activate(server, vendor["vendor"], model, sn).text
    r = api.post(f"/provision/manage/model/{model}/p-007", data={"disable": "true"})
    assert r.status_code == 205
    for sn, version in (("p-005", "2.0"), ("p-006", "1.0")):
        with server.session(cik=ciks[sn]) as dev:
            r = dev.post("/onep:v1/stack/alias", data={"state": "active", "version": version})
            assert r.status_code == 204
    add_sn(api, model, "zz-last")
    ui = login(server, vendor["cik"])
    yield ui, f"/ui/m/{vendor['vendor']}/{model}/", sorted(sns + ["zz-last"])
    api.close()


def _page(ui, url):
    r = ui.get(url)
    assert r.status_code == 200, r.text
    links = {rel: html.unescape(href) for href, rel in _PAGER.findall(r.text)}
    return _ROW.findall(r.text), links


def _rows(ui, base, query=""):
    return _page(ui, base + query)[0]


def test_keyset_pages_forward_and_back(fleet):
    ui, base, sns = fleet
    seen, url, pages = [], base, 0
    while url:
        rows, links = _page(ui, url)
        assert len(rows) <= 50
        seen += rows
        pages += 1
        url = links["next"] if "next" in links else None
        if pages == 1:
            assert "prev" not in links
    assert seen == sns and pages == 3 and len(rows) == 21
    last, back, url = rows, [], links["prev"]
    while url:
        rows, links = _page(ui, url)
        assert len(rows) == 50 and "next" in links
        back = rows + back
        url = links["prev"] if "prev" in links else None
    assert back + last == sns


def test_filters(fleet):
    ui, base, sns = fleet
    assert _rows(ui, base, "?status=activated") == ["p-005", "p-006"]
    assert _rows(ui, base, "?status=notactivated") == ["p-008"]
    assert _rows(ui, base, "?status=expired") == ["p-007"]
    rows, links = _page(ui, base + "?status=none")
    assert rows == [sn for sn in sns if sn not in ("p-005", "p-006", "p-007", "p-008")][:50]
    assert "status=none" in links["next"]  # the filter stays on the next page
    assert _rows(ui, base, "?version=2.0") == ["p-005"]
    assert _rows(ui, base, "?version=1.0&status=activated") == ["p-006"]
    assert _rows(ui, base, "?version=1.0&status=notactivated") == []
    assert _rows(ui, base, "?q=11") == ["p-011"] + [f"p-{i}" for i in range(110, 120)]
    assert _rows(ui, base, "?q=zz") == ["zz-last"]
    assert _rows(ui, base, "?q=p-1&after=p-110&status=none") == [f"p-{i}" for i in range(111, 120)]
    assert _rows(ui, base, "?version=2.0&before=p-005") == []
    assert _rows(ui, base, "?version=2.0&after=p-004") == ["p-005"]
    page = ui.get(base).text
    assert "2.0" in page and "active" in page  # version and state columns
    assert ui.get(base + "?status=bogus").status_code == 400


def test_upload_checks(server, fleet, tmp_path):
    ui, base, _sns = fleet
    hdrs = {"X-CSRF-Token": ui.token, "Content-Type": "application/octet-stream"}
    url = base + "content/"
    r = ui.post(url + "?id=firmware-9&version=9.0", data=b"nine", headers=hdrs)
    assert r.status_code == 200
    sha = hashlib.sha256(b"nine").hexdigest()
    assert r.json() == {"id": "firmware-9", "size": 4, "sha256": sha, "version": "9.0",
                        "next": url + "?done=uploaded"}  # fmt: skip
    blobs = sorted(os.listdir(str(server.db) + ".blobs"))
    for query, status in (
        ("?id=firmware-9&version=9.1", 409),  # exists: never replaced under its sha256
        ("?id=firmware-x&version=9%269", 400),  # '&' would break the meta
        ("?id=firmware-x&version=" + "9" * 65, 400),
        ("?id=a,b", 400),
        ("?version=1", 400),
    ):
        r = ui.post(url + query, data=b"other", headers=hdrs)
        assert r.status_code == status, query
    assert sorted(os.listdir(str(server.db) + ".blobs")) == blobs  # nothing left behind
    page = ui.get(url).text
    assert sha in page and "9.0" in page and "4 bytes" in page


def test_rollout_counts_what_devices_reported(server):
    vendor = server.add_vendor()
    api = server.session(cik=vendor["cik"])
    model = new_model(api)
    reports = {
        "d-1": {"state": "active", "version": "2.0"},
        "d-2": {"state": "downloading", "version": "1.0", "target": "2.0", "progress": "40"},
        "d-3": {"state": "refused", "version": "1.0", "error": "sha256 mismatch"},
        "d-4": {"state": "rolledback", "version": "1.0", "rollbacks": "1"},
        "d-5": {"state": "active", "version": "1.0"},
    }
    for sn, report in reports.items():
        add_sn(api, model, sn)
        enable(api, model, sn, vendor["rid"])
        with server.session(cik=activate(server, vendor["vendor"], model, sn).text) as dev:
            assert dev.post("/onep:v1/stack/alias", data=report).status_code == 204
    add_sn(api, model, "d-6")  # never enabled, never heard from
    ui = login(server, vendor["cik"])
    base = f"/ui/m/{vendor['vendor']}/{model}/"
    hdrs = {"X-CSRF-Token": ui.token, "Content-Type": "application/octet-stream"}
    assert ui.post(base + "content/?id=fw&version=2.0", data=b"2", headers=hdrs).status_code == 200
    page = ui.get(base + "rollout/fw").text
    counts = dict(re.findall(r'<b id="(\w+)">(\d+)</b>', page))
    assert counts == {"runs": "1", "downloading": "1", "applied": "0", "failed": "1",
                      "rolledback": "1"}  # fmt: skip
    assert "5 reporting devices" in page
    bars = re.findall(r'class="label">([^<]+)</text><rect[^>]*class="(bar[^"]*)"', page)
    assert ("2.0", "bar hot") in bars and ("1.0", "bar") in bars
    assert ("(not reported)", "bar") in bars
    page = ui.get(base + "sn/d-3").text
    assert "sha256 mismatch" in page and "refused" in page
    assert "sha256 mismatch" in ui.get(base + "?status=activated").text
    api.close()
