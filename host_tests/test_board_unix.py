"""boards/unix.py, run where it runs: the MicroPython unix port."""

import subprocess

from agentkit import MICROPYTHON, ROOT

SCRIPT = r"""
import os, sys
from boards.unix import Board
d = sys.argv[1]
b = Board({"state_dir": d + "/st", "install_path": d + "/app.bin"})
assert b.load() is None
b.save(b"one"); b.save(b"two")
assert b.load() == b"two", b.load()
assert "state.json.tmp" not in os.listdir(d + "/st")

def fill(b, data):
    b.slot_begin(len(data)); b.slot_erase()
    for off in range(0, len(data), 4096):
        b.slot_write(off, memoryview(data)[off:off + 4096])
    b.slot_finish(len(data))

fill(b, b"A" * 5000)
try:
    b.slot_confirm()
    raise AssertionError("confirmed an image never applied")
except OSError:
    pass
b.slot_apply(); b.slot_confirm()
assert open(d + "/app.bin", "rb").read() == b"A" * 5000
b.slot_begin(9000); b.slot_erase(); b.slot_write(0, memoryview(b"B" * 4096))
b = Board({"state_dir": d + "/st", "install_path": d + "/app.bin"})  # a restart
b.slot_begin(9000)
buf = bytearray(4096)
assert b.slot_read(0, buf) == 4096 and buf == b"B" * 4096
b.slot_write(4096, memoryview(b"B" * 4096)); b.slot_write(8192, memoryview(b"B" * 808))
try:
    b.slot_finish(9001)
    raise AssertionError("size not checked")
except OSError:
    pass
b.slot_begin(9000); b.slot_finish(9000); b.slot_apply()
assert open(d + "/app.bin", "rb").read() == b"B" * 9000
assert open(d + "/app.bin.prev", "rb").read() == b"A" * 5000
b.slot_rollback()
assert open(d + "/app.bin", "rb").read() == b"A" * 5000
t = b.ticks_ms(); b.sleep_ms(2); assert b.ticks_ms() - t >= 2
assert b.time() > 1700000000
try:
    Board({})
except ValueError as e:
    assert str(e).startswith("state_dir"), e
try:
    uid = b.unique_id()  # /etc/machine-id
except OSError as e:
    uid = str(e)  # "sn: ..." where there is none
print("unix board ok", len(uid) > 0)
b.reset()
"""


def test_unix_board_under_micropython(tmp_path):
    (tmp_path / "t.py").write_text(SCRIPT)
    r = subprocess.run(
        [MICROPYTHON, str(tmp_path / "t.py"), str(tmp_path)],
        env={"MICROPYPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.stdout == "unix board ok True\n", r.stderr
    assert r.returncode == 3  # reset() exits the process with 3
