"""Power cuts on real LittleFS (tools/harness/lfscut.py), bounded: the rp2 board's record and
A/B bundles on MicroPython's LittleFS2 over a flash that behaves like the Pico's (4 KiB erase
sectors, erase before write), the power cut before and torn at a spread of the flash's
programs and erases over a whole flow (activation, download, unpack, reset, confirmation).
After every start the file system mounts, the CIK is whole or absent and main.py starts v1 or
v2 whole, never the factory application; at the end v2 runs confirmed. `make powercut` cuts at
every operation."""

import pytest

from tools.harness import lfscut
from tools.harness.mpunix import ROOT, mp_env, run_program

SAMPLE = 24


@pytest.fixture(scope="module")
def cut_run():
    return lfscut.run(sample=SAMPLE, log=lambda *a: None)


def test_every_sampled_cut_survived(cut_run):
    ok, total, failures, st = cut_run
    assert failures == []
    assert ok == total == SAMPLE
    assert st["ops"] > 100  # every program and erase of the flow is a cut point in the full run
    assert 0 <= st["max_refetch"] <= lfscut.CHUNK


def test_sample_spans_the_flow(cut_run):
    _ok, _total, _failures, st = cut_run
    labels = st["labels"]
    assert any(x.startswith("before erase") for x in labels)
    assert any(x.startswith("torn prog") for x in labels)
    assert any(x.startswith("before prog") for x in labels)


def test_flash_model_is_nor(tmp_path):
    env = mp_env(ROOT / "tools" / "harness" / "faults")
    r = run_program("lfs_flash", "nor", tmp_path / "img", tmp_path / "ev", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["2", "4096", "00f0", "ffff"]
    events = (tmp_path / "ev").read_text().splitlines()
    assert events == ["prog 1 10 2", "prog 1 10 2", "violation prog 1 10 2", "erase 1"]


def test_inspect_sees_the_factory_state(tmp_path):
    old, new = lfscut.make_bundles()
    dev = lfscut.Device(old, new)
    try:
        problem, got = dev.check()
        assert problem is None
        assert got["ptr"] == "app_a - ok\n" and got["record"] is None
        assert dev.which(got["dirs"]["app_a"]) == "v1"
    finally:
        dev.close()
