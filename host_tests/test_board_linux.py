"""boards/linux.py: private atomic storage, file slot with rollback and apply_cmd, identity."""

import os
import stat
import sys

import pytest

from boards.linux import Board


def board(tmp_path, **cfg):
    cfg.setdefault("state_dir", str(tmp_path / "state"))
    cfg.setdefault("install_path", str(tmp_path / "inst" / "app.bin"))
    return Board(cfg)


def mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_storage_private_and_atomic(tmp_path):
    b = board(tmp_path)
    assert b.load() is None
    b.save(b'{"a": 1}')
    assert b.load() == b'{"a": 1}'
    assert mode(tmp_path / "state") == 0o700 and mode(b.path) == 0o600
    b.save(b"second")
    assert b.load() == b"second" and not os.path.exists(b.path + ".tmp")


def test_power_cut_before_rename_keeps_old_record(tmp_path, monkeypatch):
    b = board(tmp_path)
    b.save(b"old")

    def cut(*a):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", cut)
    with pytest.raises(OSError):
        b.save(b"new")
    monkeypatch.undo()
    assert Board({"state_dir": str(tmp_path / "state")}).load() == b"old"


@pytest.mark.parametrize("what", ["dir", "file"])
def test_loosened_permissions_refused(tmp_path, what):
    b = board(tmp_path)
    b.save(b"x")
    os.chmod(tmp_path / "state" if what == "dir" else b.path, 0o755 if what == "dir" else 0o644)
    with pytest.raises(OSError, match="state_dir: .* has mode .*chmod"):
        board(tmp_path)


def test_missing_state_dir_named():
    with pytest.raises(ValueError, match="^state_dir"):
        Board({})


def fill(b, data, block=4096):
    b.slot_begin(len(data))
    b.slot_erase()
    for off in range(0, len(data), block):
        b.slot_write(off, memoryview(data)[off : off + block])
    b.slot_finish(len(data))


def test_slot_apply_rollback_and_resume(tmp_path):
    b = board(tmp_path)
    fill(b, b"A" * 5000)
    b.slot_apply()
    assert open(b.install, "rb").read() == b"A" * 5000
    # a second image, interrupted after one block, resumed by a new Board (a restart)
    b.slot_begin(9000)
    b.slot_erase()
    b.slot_write(0, memoryview(b"B" * 4096))
    b2 = board(tmp_path)
    b2.slot_begin(9000)
    buf = bytearray(4096)
    assert b2.slot_read(0, buf) == 4096 and bytes(buf) == b"B" * 4096
    b2.slot_write(4096, memoryview(b"B" * 4096))
    b2.slot_write(8192, memoryview(b"B" * 808))
    b2.slot_finish(9000)
    b2.slot_apply()
    assert open(b.install, "rb").read() == b"B" * 9000
    assert open(b.prev, "rb").read() == b"A" * 5000
    b2.slot_rollback()
    assert open(b.install, "rb").read() == b"A" * 5000


def test_erase_truncates_old_stage(tmp_path):
    b = board(tmp_path)
    fill(b, b"X" * 9000)
    fill(b, b"Y" * 100)
    assert os.path.getsize(b.stage) == 100


def test_apply_cmd_gets_path_and_failure_rolls_back(tmp_path):
    log = tmp_path / "log"
    ok = [sys.executable, "-c", f"import sys; open({str(log)!r}, 'a').write(sys.argv[1])"]
    b = board(tmp_path, apply_cmd=ok)
    fill(b, b"one")
    b.slot_apply()
    assert log.read_text() == b.install
    bad = board(tmp_path, apply_cmd=f"{sys.executable} -c 'raise SystemExit(7)'")
    fill(bad, b"two")
    with pytest.raises(OSError, match="exit code 7"):
        bad.slot_apply()
    assert open(b.install, "rb").read() == b"one"


def test_apply_cmd_bad_type(tmp_path):
    with pytest.raises(ValueError, match="^apply_cmd"):
        board(tmp_path, apply_cmd=[1])


def test_slot_no_room(tmp_path):
    b = board(tmp_path)
    with pytest.raises(OSError, match="no room"):
        b.slot_begin(1 << 62)


def test_unique_id_pi_serial_then_machine_id(tmp_path):
    b = board(tmp_path)
    cpu = tmp_path / "cpuinfo"
    cpu.write_text("processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 10000000ABCDEF01\n")
    mid = tmp_path / "machine-id"
    mid.write_text("0123456789abcdef0123456789abcdef\n")
    b.cpuinfo, b.machine_id = str(cpu), str(mid)
    assert b.unique_id() == "10000000abcdef01"
    cpu.write_text("processor\t: 0\n")
    assert b.unique_id() == "0123456789abcdef0123456789abcdef"
    b.machine_id = str(tmp_path / "none")
    with pytest.raises(OSError, match="^sn"):
        b.unique_id()


def test_reset_exits_3_and_clock(tmp_path):
    b = board(tmp_path)
    with pytest.raises(SystemExit) as e:
        b.reset()
    assert e.value.code == 3
    t = b.ticks_ms()
    b.sleep_ms(5)
    assert b.ticks_ms() >= t + 5 and b.time() > 1.7e9


def test_confirm_refuses_when_apply_never_happened(tmp_path):
    b = board(tmp_path)
    fill(b, b"new")
    with pytest.raises(OSError, match="never applied"):
        b.slot_confirm()
    b.slot_apply()
    b.slot_confirm()
