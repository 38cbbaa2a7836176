"""boards/unix.py under the MicroPython unix port (host_tests/test_board_unix.py).

micropython host_tests/mpy_programs/board_unix.py SCENARIO DIR
"""

import os

import scenario

from boards.unix import Board


def _board(d):
    return Board({"state_dir": d + "/st", "install_path": d + "/app.bin"})


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _fill(b, data):
    b.slot_begin(len(data))
    b.slot_erase()
    for off in range(0, len(data), 4096):
        b.slot_write(off, memoryview(data)[off : off + 4096])
    b.slot_finish(len(data))


def storage(d):
    b = _board(d)
    assert b.load() is None
    b.save(b"one")
    b.save(b"two")
    assert b.load() == b"two", b.load()
    assert "state.json.tmp" not in os.listdir(d + "/st")


def slot(d):
    b = _board(d)
    _fill(b, b"A" * 5000)
    try:
        b.slot_confirm()
        raise AssertionError("confirmed an image never applied")
    except OSError:
        pass
    b.slot_apply()
    b.slot_confirm()
    assert _read(d + "/app.bin") == b"A" * 5000
    b.slot_begin(9000)
    b.slot_erase()
    b.slot_write(0, memoryview(b"B" * 4096))
    b = _board(d)  # a restart
    b.slot_begin(9000)
    buf = bytearray(4096)
    assert b.slot_read(0, buf) == 4096 and buf == b"B" * 4096
    b.slot_write(4096, memoryview(b"B" * 4096))
    b.slot_write(8192, memoryview(b"B" * 808))
    try:
        b.slot_finish(9001)
        raise AssertionError("size not checked")
    except OSError:
        pass
    b.slot_begin(9000)
    b.slot_finish(9000)
    b.slot_apply()
    assert _read(d + "/app.bin") == b"B" * 9000
    assert _read(d + "/app.bin.prev") == b"A" * 5000
    b.slot_rollback()
    assert _read(d + "/app.bin") == b"A" * 5000


def clock(d):
    b = _board(d)
    t = b.ticks_ms()
    b.sleep_ms(2)
    assert b.ticks_ms() - t >= 2
    assert b.time() > 1700000000


def config_without_state_dir(d):
    try:
        Board({})
    except ValueError as e:
        assert str(e).startswith("state_dir"), e
    else:
        raise AssertionError("Board({}) accepted a configuration without state_dir")


def identity_then_reset(d):
    b = _board(d)
    try:
        uid = b.unique_id()  # /etc/machine-id
    except OSError as e:
        uid = str(e)  # "sn: ..." where there is none
    print("unix board ok", len(uid) > 0)
    b.reset()


scenario.main(globals())
