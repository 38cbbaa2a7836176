"""boards/unix.py, run where it runs: the MicroPython unix port
(host_tests/mpy_programs/board_unix.py, one scenario per test)."""

import pytest

from tools.harness.mpunix import run_program


@pytest.mark.parametrize("scenario", ["storage", "slot", "clock", "config_without_state_dir"])
def test_unix_board_under_micropython(tmp_path, scenario):
    r = run_program("board_unix", scenario, tmp_path, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == ""


def test_identity_then_reset(tmp_path):
    r = run_program("board_unix", "identity_then_reset", tmp_path, timeout=30)
    assert r.stdout == "unix board ok True\n", r.stderr
    assert r.returncode == 3  # reset() exits the process with 3
