"""Network faults (tools/harness/faults/scenarios.py): every scenario on both interpreters ends
in a typed error, a retry with backoff, and the server's exact content applied (a corrupt
chunk: fetched again from zero; corrupt on every fetch: refused, nothing applied).
`make faults` runs the same table and prints the summary."""

import pytest
from knownbugs import check, param

from tools.harness.faults import scenarios
from tools.harness.faults.faultserver import FaultServer, image

INTERPS = ("cpython", "micropython")
CASES = [(i, n) for i in INTERPS for n, _s, _e in scenarios.SCENARIOS]
# (interpreter or "*", scenario) -> why it fails today; strict, so a fix is noticed, and a
# key naming no scenario is refused (host_tests/knownbugs.py).
KNOWN = check({}, CASES)


def _params():
    return [param(KNOWN, i, name, i, name, script, expect, id=f"{i}-{name}")
            for i in INTERPS for name, script, expect in scenarios.SCENARIOS]  # fmt: skip


def test_table_covers_the_issue():
    names = {n for n, _s, _e in scenarios.SCENARIOS}
    for want in ("drop-mid-body", "truncate", "stall-first-byte", "trickle-200Bps",
                 "200-to-range", "cr-wrong-start", "cr-wrong-total", "more-bytes-than-asked",
                 "5xx-burst-download", "content-replaced-mid-download",
                 "trickle-below-floor", "trickle-floor-off-deadline"):  # fmt: skip
        assert want in names
    assert sum(n.startswith("cr-malformed-") for n in names) >= 10


@pytest.mark.parametrize("interp,name,script,expect", _params())
def test_scenario(interp, name, script, expect):
    res = scenarios.run_one(name, script, expect, interp)
    assert res.problem is None, str(res)


def test_fault_server_scripts_each_action_once():
    # the harness itself: a scripted fault hits exactly one request, then answers are normal
    import requests

    with FaultServer() as srv:
        srv.enable("sn1")
        c = srv.add_content("firmware-1", image(5000), version=1)
        form = {"vendor": "vend", "model": "mod", "sn": "sn1"}
        cik = requests.post(srv.url + "/provision/activate", data=form, timeout=10).text
        q = {"vendor": "vend", "model": "mod", "id": "firmware-1"}
        hdr = {"X-Exosite-CIK": cik, "Range": "bytes=10-19"}
        srv.script("blob", [("cr_total", 7), ("status", 503)])
        got = [requests.get(srv.url + "/provision/download", params=q, headers=hdr, timeout=10)
               for _ in range(3)]  # fmt: skip
        assert got[0].headers["Content-Range"] == "bytes 10-19/7"
        assert got[1].status_code == 503
        assert got[2].status_code == 206 and got[2].content == c.data[10:20]
        assert got[2].headers["Content-Range"] == "bytes 10-19/5000"
        hdr["If-Range"] = '"stale"'
        whole = requests.get(srv.url + "/provision/download", params=q, headers=hdr, timeout=10)
        assert whole.status_code == 200 and whole.content == c.data
        assert srv.pending() == 0
