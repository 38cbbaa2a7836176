"""`exoprov fleet rollout ...` and `content upload --hold` against the real server."""

import json

from serverkit import device
from test_fleet_cli import _model, client, env, fleet  # noqa: F401 (fixtures)

from tools.server import rollpolicy


def test_hold_start_status_pause_resume_abort_list(fleet, server, vendor, tmp_path):  # noqa: F811
    model = _model(fleet, vendor)
    with server.session(cik=vendor["cik"]) as s:
        ciks = [device(server, vendor, s, model, f"c{i:02d}") for i in range(12)]
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"v2" * 1000)
    r = fleet("content", "upload", model, "fw-2", str(fw), "--version", "2", "--hold")
    assert (
        r.stdout.startswith(f"uploaded {fw} to content fw-2") and "held for a rollout" in r.stdout
    )
    with server.session(cik=ciks[0]) as d:
        q = {"vendor": vendor["vendor"], "model": model}
        assert d.get("/provision/download", params=q).text == ""  # held: offered to nobody
    # a plain upload is offered to everyone, and cannot be rolled out
    fleet("content", "upload", model, "fw-plain", str(fw), "--version", "2")
    r = fleet("rollout", "start", model, "fw-plain", rc=1)
    assert "already offered to every device" in r.stderr and "--hold" in r.stderr
    r = fleet(
        "rollout",
        "start",
        model,
        "fw-2",
        "--waves",
        "30,100",
        "--min-devices",
        "2",
        "--max-failures",
        "50",
        "--success",
        "90",
        "--soak",
        "10m",
        "--json",
    )
    st = json.loads(r.stdout)
    assert st["state"] == "running" and st["wave"] == 30 and st["soak"] == 600
    assert st["min_devices"] == 2 and st["max_failures"] == 50 and st["success"] == 90
    r = fleet("rollout", "status", model, "fw-2", "--json")
    st = json.loads(r.stdout)
    inside = sum(rollpolicy.in_wave("fw-2", f"c{i:02d}", 30) for i in range(12))
    assert st["state"] == "running" and st["wave"] == 30 and st["counts"] == {}
    assert [w["devices"] for w in st["by_wave"]] == [inside, 12 - inside]
    r = fleet("rollout", "status", model, "fw-2")
    assert r.stdout.startswith(f"rollout of fw-2: running, wave 30 % ({inside} devices)")
    assert "  wave 100 %: " in r.stdout
    assert json.loads(fleet("rollout", "pause", model, "fw-2", "--json").stdout)["state"] == (
        "paused"
    )
    r = fleet("rollout", "pause", model, "fw-2", rc=1)
    assert "409" in r.stderr and "paused" in r.stderr
    assert "running" in fleet("rollout", "resume", model, "fw-2").stdout
    r = fleet("rollout", "list", model, "--json")
    assert [(x["content"], x["state"]) for x in json.loads(r.stdout)] == [("fw-2", "running")]
    r = fleet("rollout", "abort", model, "fw-2", "--to", "fw-plain", rc=1)
    assert "rollback=1" in r.stderr
    assert "aborted" in fleet("rollout", "abort", model, "fw-2").stdout
    r = fleet("rollout", "list", model)
    assert r.stdout.split("\n")[1].split() == ["fw-2", "aborted", "30", "0", "0", "0"]
    # a new upload of a content under a rollout is refused before anything changes
    r = fleet("content", "upload", model, "fw-2", str(fw), "--version", "3", rc=2)
    assert "under a rollout (aborted)" in r.stderr


def test_upload_again_keeps_the_hold(fleet, server, vendor, tmp_path):  # noqa: F811
    model = _model(fleet, vendor)
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"v2")
    fleet("content", "upload", model, "fw-2", str(fw), "--version", "2", "--hold")
    fw.write_bytes(b"v2 fixed")
    r = fleet("content", "upload", model, "fw-2", str(fw), "--version", "2.1")
    assert "held for a rollout" in r.stdout
    assert json.loads(fleet("rollout", "status", model, "fw-2", "--json").stdout)["state"] == (
        "held"
    )
