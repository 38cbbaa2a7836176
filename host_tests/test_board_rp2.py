"""boards/rp2.py and boards/rp2_boot.py (main.py) in the MicroPython unix port.

The Pico's LittleFS is a temporary directory (state_dir); each boot() runs one scenario of
host_tests/mpy_programs/board_rp2.py with EXOPROV_ROOT pointing at it. Power cuts during a
save are injected by wrapping the module's `open` and `os` (the real board has no hook:
LittleFS itself is the thing being modelled). The test bundles all carry
host_tests/mpy_programs/rp2_bundle_app.py as app.py, told what to do by their `tag` file.
"""

import json

import pytest
from exoprov.build import make_bundle
from fakes.hwkit import ROOT, make_hw, out, run_mp, run_program

from tools.harness.mpunix import PROGRAMS

APP = (PROGRAMS / "rp2_bundle_app.py").read_bytes()  # its tag file says what it does


@pytest.fixture
def dev(tmp_path):
    root = tmp_path / "fs"
    root.mkdir()
    hw = make_hw(tmp_path, chip="cyw43")
    (tmp_path / "factory").mkdir()
    (tmp_path / "factory" / "app.py").write_bytes(APP)
    (tmp_path / "factory" / "tag").write_text("factory plain")
    return hw, root


def boot(dev, scenario, *args):
    """One boot of the Pico running a scenario of host_tests/mpy_programs/board_rp2.py."""
    hw, root = dev
    return run_program(hw, "board_rp2", scenario, *args, env={"EXOPROV_ROOT": str(root)})


def main_py(dev):
    """One start of the Pico: main.py with the factory application in /lib."""
    hw, root = dev
    code = (ROOT / "boards" / "rp2_boot.py").read_text()
    return run_mp(hw, code, path=(root.parent / "factory",), env={"EXOPROV_ROOT": str(root)})


def ptr(dev):
    return (dev[1] / "app.ptr").read_text().split()


def bundle(dev, name, tag, extra=()):
    files = [("app.py", APP), ("tag", tag.encode()), *extra]
    data = make_bundle(files)
    path = dev[1].parent / name
    path.write_bytes(data)
    return path


def stage_apply(dev, path):
    r = boot(dev, "stage_apply", path)
    assert r.returncode == 0, r.stdout + r.stderr


# -- storage -----------------------------------------------------------------------------------


def test_storage_roundtrip_and_corruption(dev):
    assert out(boot(dev, "load")) == [None]
    boot(dev, "save", "one", "two")
    assert out(boot(dev, "stored")) == "two"
    rec = dev[1] / "exoprov.rec"
    raw = bytearray(rec.read_bytes())
    raw[-1] ^= 1
    rec.write_bytes(bytes(raw))
    assert out(boot(dev, "load")) == [None]
    rec.write_bytes(b"XR")
    assert out(boot(dev, "load")) == [None]


@pytest.mark.parametrize(
    "at,mode,expect",
    [(1, "torn", "old"), (1, "before", "old"), (2, "before", "old"), (3, "before", "old")],
)
def test_power_cut_during_save(dev, at, mode, expect):
    # ops of a save: write the temp file (1), flush it (2), rename it over the record (3)
    boot(dev, "save", "old")
    r = boot(dev, "save_with_cut", at, mode)
    assert r.returncode == 137, r.stdout + r.stderr
    assert out(boot(dev, "stored")) == expect
    boot(dev, "save", "later")
    assert out(boot(dev, "stored")) == "later"


def test_save_without_cut_through_the_harness(dev):
    boot(dev, "save", "old")
    assert boot(dev, "save_with_cut", 99, "before").returncode == 0
    assert out(boot(dev, "stored")) == "new"


# -- bundle slot ---------------------------------------------------------------------------------


def test_stage_apply_unpacks_into_a_and_points_at_it(dev):
    path = bundle(dev, "b1", "v1 ok", [("lib/x/y.txt", b"hello")])
    stage_apply(dev, path)
    assert ptr(dev) == ["app_a", "-", "new"]
    assert (dev[1] / "app_a" / "lib" / "x" / "y.txt").read_bytes() == b"hello"
    assert not (dev[1] / "app_tmp").exists()


def test_boot_new_bundle_confirm_then_next_update(dev):
    stage_apply(dev, bundle(dev, "b1", "v1 ok"))
    r = main_py(dev)
    assert r.returncode == 0 and "app v1 running" in r.stdout, r.stdout
    assert ptr(dev) == ["app_a", "-", "ok"]
    assert "app v1 running" in main_py(dev).stdout  # confirmed: stays
    stage_apply(dev, bundle(dev, "b2", "v2 ok"))
    assert ptr(dev) == ["app_b", "app_a", "new"]
    assert "app v2 running" in main_py(dev).stdout
    stage_apply(dev, bundle(dev, "b3", "v3 ok"))
    assert ptr(dev) == ["app_a", "app_b", "new"]  # the oldest bundle made room
    assert "app v3 running" in main_py(dev).stdout
    assert ptr(dev) == ["app_a", "app_b", "ok"]


def test_bundle_that_fails_to_start_falls_back(dev):
    stage_apply(dev, bundle(dev, "b1", "v1 ok"))
    main_py(dev)
    stage_apply(dev, bundle(dev, "b2", "v2 broken"))
    r = main_py(dev)
    assert "bundle app_b failed to start: back to app_a" in r.stdout
    assert "app v1 running" in r.stdout and r.returncode == 0
    assert ptr(dev) == ["app_a", "app_b", "failed"]
    assert "not running" in out(boot(dev, "confirm_refused_then_rollback"))[0]
    assert ptr(dev) == ["app_a", "app_b", "failed"]


def test_unconfirmed_bundle_rolled_back_on_next_start(dev):
    stage_apply(dev, bundle(dev, "b1", "v1 ok"))
    main_py(dev)
    stage_apply(dev, bundle(dev, "b2", "v2 no-confirm"))
    assert "app v2 running, not confirming" in main_py(dev).stdout
    assert ptr(dev) == ["app_b", "app_a", "trying"]
    r = main_py(dev)  # reset before confirmation: back to v1
    assert "was not confirmed: back to app_a" in r.stdout and "app v1 running" in r.stdout


def test_agent_rollback_of_a_started_bundle(dev):
    stage_apply(dev, bundle(dev, "b1", "v1 no-confirm"))
    main_py(dev)
    boot(dev, "rollback")  # the health check failed
    assert ptr(dev) == ["-", "app_a", "failed"]
    assert "app factory running" in main_py(dev).stdout
    assert "app factory running" in main_py(dev).stdout
    # a later, good update still works
    stage_apply(dev, bundle(dev, "b2", "v2 ok"))
    assert ptr(dev) == ["app_a", "-", "new"]  # the failed bundle's directory is reused
    assert "app v2 running" in main_py(dev).stdout


def test_confirmed_bundle_that_crashes_later_resets(dev):
    stage_apply(dev, bundle(dev, "b1", "v1 crash-later"))
    r = main_py(dev)  # confirmed, then raised: no fallback, a reset after a pause
    assert r.returncode == 3 and "RuntimeError: later" in r.stdout
    assert ptr(dev) == ["app_a", "-", "ok"]
    assert (dev[0] / "events.log").read_text().splitlines()[-1] == "reset"


def test_apply_twice_keeps_previous(dev):
    stage_apply(dev, bundle(dev, "b1", "v1 ok"))
    main_py(dev)
    path = bundle(dev, "b2", "v2 ok")
    stage_apply(dev, path)
    boot(dev, "apply")
    assert ptr(dev) == ["app_b", "app_a", "new"]
    main_py(dev)
    boot(dev, "apply")  # a retry after the reset: still nothing to do
    assert ptr(dev) == ["app_b", "app_a", "ok"]


def test_slot_commits_at_block_ends_and_at_the_image_end(dev):
    # the agent writes 1 KiB pieces (Board.buffer): LittleFS commits (flush) only where the
    # journal can advance, at a 4 KiB block's end, and at the image's end
    assert out(boot(dev, "commit_points")) == [4096, 8192, 41 * 256 + 3]


def test_resume_after_reset_mid_download(dev):
    path = bundle(dev, "big", "big ok", [("blob.bin", bytes(range(256)) * 60)])
    size = path.stat().st_size
    assert size > 3 * 4096
    boot(dev, "write_part", path, 0, 8192)
    assert out(boot(dev, "resume", path)) is True
    assert (dev[1] / "app_a" / "blob.bin").read_bytes() == bytes(range(256)) * 60


def test_corrupt_bundle_refused_old_kept(dev):
    stage_apply(dev, bundle(dev, "b1", "v1 ok"))
    main_py(dev)
    data = bytearray(make_bundle([("app.py", APP), ("tag", b"v2 ok")]))
    data[-3] ^= 0x20
    (dev[1].parent / "bad").write_bytes(bytes(data))
    res = out(boot(dev, "corrupt_refused", dev[1].parent / "bad"))
    assert res == ["rp2: bundle sha256 mismatch"] * 2
    assert ptr(dev) == ["app_a", "-", "ok"]
    assert not (dev[1] / "app_tmp").exists() and not (dev[1] / "app_b").exists()


@pytest.mark.parametrize("name", ["../evil.py", "/abs.py", "a//b", "./x"])
def test_bundle_names_outside_the_directory_refused(dev, name):
    import hashlib
    import struct

    raw = name.encode()
    table = struct.pack("<IB", 2, len(raw)) + raw
    data = b"EXB1" + struct.pack("<HH", 1, 40 + len(table)) + hashlib.sha256(b"hi").digest()
    (dev[1].parent / "evil").write_bytes(data + table + b"hi")
    assert "bad file name" in out(boot(dev, "finish", dev[1].parent / "evil"))


def test_bundle_too_big_for_the_file_system(dev):
    res = out(boot(dev, "too_big"))
    assert res[0] == 28 and "free" in res[1]


# -- Wi-Fi (CYW43), identity ---------------------------------------------------------------------


def test_wifi_up(dev):
    assert out(boot(dev, "wifi_up")) == [True, True, 1]


@pytest.mark.parametrize(
    "cfg,errno,text",
    [
        ({"wifi_ssid": "lab", "wifi_password": "bad"}, 1, "refused the password"),
        ({"wifi_ssid": "nowhere"}, 110, "not up in 300 ms (status -2)"),
        ({}, 22, "wifi_ssid missing"),
    ],
)
def test_wifi_errors(dev, cfg, errno, text):
    res = out(boot(dev, "wifi", json.dumps(cfg)))
    assert res[0] == errno and text in res[1]


def test_identity(dev):
    assert out(boot(dev, "identity")) == "e6614c311b4d2a2f"


# -- scenarios: main.py -> factory app / bundle -> agent on the fake Pico W, real server --------

from fakes.hwkit import Fleet, rp2_device, run_rp2_main  # noqa: E402


@pytest.fixture
def fleet(server):
    f = Fleet(server, server.add_vendor())
    yield f
    f.close()


@pytest.fixture
def pico(tmp_path):
    return rp2_device(tmp_path)


def record(pico):
    path = pico[1] / "exoprov.rec"
    return json.loads(path.read_bytes()[16:]) if path.exists() else None


def app_bundle(name, mode="agent"):
    return make_bundle([("app.py", APP), ("tag", f"{name} {mode}".encode())])


def pico_ptr(pico):
    return (pico[1] / "app.ptr").read_text().split()


def test_scenario_first_activation(fleet, tmp_path, pico):
    sn = fleet.sn("pico-a")
    cfg = fleet.config(tmp_path / "c.json", sn, "rp2", state_dir=str(pico[1]))
    r = run_rp2_main(pico, cfg)
    assert r.returncode == 0, r.stdout + r.stderr
    rec = record(pico)
    assert rec["state"] == "active" and len(rec["cik"]) == 40
    assert fleet.status(sn) == "activated"
    assert rec["cik"] not in r.stdout + r.stderr
    assert run_rp2_main(pico, cfg).returncode == 0
    assert record(pico)["cik"] == rec["cik"]


def test_scenario_update_applied_then_confirmed(fleet, tmp_path, pico):
    sn = fleet.sn("pico-u")
    fleet.content("firmware-2", app_bundle("v2"), "2")
    cfg = fleet.config(tmp_path / "c.json", sn, "rp2", state_dir=str(pico[1]))
    r = run_rp2_main(pico, cfg)
    assert r.returncode == 3, r.stdout + r.stderr  # applied, reset
    assert pico_ptr(pico) == ["app_a", "-", "new"]
    r = run_rp2_main(pico, cfg)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "bundle v2 starting" in r.stdout and "update firmware-2 confirmed" in r.stderr
    assert pico_ptr(pico) == ["app_a", "-", "ok"]
    assert record(pico)["inst"]["ver"] == "2"
    r = run_rp2_main(pico, cfg)
    assert r.returncode == 0 and "bundle v2 starting" in r.stdout


def test_scenario_bundle_that_fails_to_start_rolled_back(fleet, tmp_path, pico):
    sn = fleet.sn("pico-f")
    fleet.content("firmware-2", app_bundle("v2", "agent-broken"), "2")
    cfg = fleet.config(tmp_path / "c.json", sn, "rp2", state_dir=str(pico[1]), max_boots=1)
    assert run_rp2_main(pico, cfg).returncode == 3
    r = run_rp2_main(pico, cfg)  # main.py falls back to the factory application at once
    assert "failed to start: back to -" in r.stdout
    assert pico_ptr(pico) == ["-", "app_a", "failed"]
    for _ in range(3):  # the agent books the rollback and stays on the old application
        r = run_rp2_main(pico, cfg)
        if r.returncode == 0:
            break
    assert r.returncode == 0, r.stdout + r.stderr
    rec = record(pico)
    assert rec["pend"] is None and rec["inst"]["ver"] == "1" and rec["n"]["rb"] == 1
    assert "bundle v2 starting" not in run_rp2_main(pico, cfg).stdout


def test_scenario_unhealthy_update_rolled_back(fleet, tmp_path, pico):
    sn = fleet.sn("pico-h")
    fleet.content("firmware-2", app_bundle("v2"), "2")
    cfg = fleet.config(tmp_path / "c.json", sn, "rp2", state_dir=str(pico[1]), max_boots=1)
    assert run_rp2_main(pico, cfg).returncode == 3
    dead = tmp_path / "dead.json"
    dead.write_text(cfg.read_text().replace(fleet.server.url, "http://127.0.0.1:9"))
    r = run_rp2_main(pico, dead)  # the new bundle starts but never reaches the server
    assert r.returncode == 1 and "bundle v2 starting" in r.stdout
    assert pico_ptr(pico) == ["app_a", "-", "trying"]
    r = run_rp2_main(pico, cfg)  # reset before confirmation: main.py goes back
    assert "was not confirmed: back to -" in r.stdout and "bundle v2" not in r.stdout
    assert r.returncode == 0, r.stdout + r.stderr
    rec = record(pico)
    assert rec["pend"] is None and rec["inst"]["ver"] == "1"


def test_scenario_power_cut_during_storage_saves(fleet, tmp_path):
    k = 0
    while True:
        k += 1
        assert k < 20
        pico = rp2_device(tmp_path / f"k{k}")
        sn = fleet.sn(f"pico-cut{k}")
        cfg = fleet.config(tmp_path / f"c{k}.json", sn, "rp2", state_dir=str(pico[1]))
        r = run_rp2_main(pico, cfg, cut=f"{k} rename")  # cut at the k-th record rename
        if r.returncode != 137:
            assert r.returncode == 0, r.stdout + r.stderr
            break
        rec = record(pico)
        assert rec is None or rec["state"] in ("unprov", "activating", "active")
        for _ in range(3):
            r = run_rp2_main(pico, cfg)
            if r.returncode == 4:
                fleet.regenerate(sn)
                continue
            break
        assert r.returncode == 0, r.stdout + r.stderr
        assert record(pico)["state"] == "active"
    assert k > 3


def test_scenario_resume_after_reset_mid_download(fleet, tmp_path, pico):
    sn = fleet.sn("pico-d")
    data = make_bundle(
        [("app.py", APP), ("tag", b"v3 agent"), ("blob.bin", bytes(range(256)) * 200)]
    )
    fleet.content("firmware-3", data, "3")
    cfg = fleet.config(tmp_path / "c.json", sn, "rp2", state_dir=str(pico[1]))
    r = run_rp2_main(pico, cfg, cut="41 write app.stage")  # the third 16 KiB range, 1 KiB writes
    assert r.returncode == 137, r.stdout + r.stderr
    r = run_rp2_main(pico, cfg)
    assert r.returncode == 3, r.stdout + r.stderr
    resumed = [ln for ln in r.stderr.splitlines() if "resuming firmware-3 at" in ln]
    assert resumed and int(resumed[0].split(" at ")[1].split()[0]) >= 16384
    r = run_rp2_main(pico, cfg)
    assert r.returncode == 0 and "bundle v3 starting" in r.stdout, r.stdout + r.stderr
    assert (pico[1] / "app_a" / "blob.bin").read_bytes() == bytes(range(256)) * 200


def test_scenario_compiled_bundle_from_exoprov_build(fleet, tmp_path, pico):
    # the real thing: `exoprov build` makes the bundle (app.mpy, agent/*.mpy, boards/rp2.mpy);
    # after the update main.py starts the compiled agent from app_a, which confirms itself
    from conftest import exoprov

    exoprov("build", "--out", tmp_path / "b", "--board", "rp2")
    data = (tmp_path / "b" / "rp2-app.bundle").read_bytes()
    sn = fleet.sn("pico-b")
    fleet.content("firmware-2", data, "2")
    cfg = fleet.config(tmp_path / "c.json", sn, "rp2", state_dir=str(pico[1]))
    assert run_rp2_main(pico, cfg).returncode == 3
    assert (pico[1] / "app_a" / "agent" / "main.mpy").exists()
    r = run_rp2_main(pico, cfg)
    assert r.returncode == 0 and "update firmware-2 confirmed" in r.stderr, r.stdout + r.stderr
    assert pico_ptr(pico) == ["app_a", "-", "ok"]
