"""`exoprov monitor`: line splitting, highlighting, ESP32 reset lines, loop:// and a pty."""

import io
import os
import queue
import subprocess
import sys
import threading
import time

import pytest
import serial
from exoprov import monitor
from exoprov.monitor import LineSplitter, Monitor, classify
from serial.urlhandler.protocol_loop import Serial as LoopSerial

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT_LINES = (
    b"ets Jun  8 2016 00:22:57\r\n"
    b"exoprov-agent: state unprovisioned -> activating\r\n"
    b"exoprov-agent: activation refused (409): not enabled, already activated or expired\r\n"
    b"exoprov-agent: state activating -> active\n"
    b"exoprov-agent: up to date\n"
)


def test_splitter_handles_crlf_cr_lf_and_split_reads():
    s = LineSplitter()
    out = []
    for b in b"one\r\ntwo\rthree\nfour\r":
        out += s.feed(bytes([b]))
    out += s.feed(b"\nfive")
    assert out == ["one", "two", "three", "four"]
    assert s.flush() == ["five"]
    assert s.flush() == []


def test_splitter_cuts_long_lines_and_survives_bad_utf8():
    s = LineSplitter(limit=8)
    assert s.feed(b"0123456789\n") == ["01234567", "89"]
    assert s.feed(b"\xff\xfeok\n") == ["\ufffd\ufffdok"]


def test_classify_agent_lines():
    assert classify("exoprov-agent: state unprovisioned -> activating") == "*"
    assert classify("exoprov-agent: state active -> expired") == "*"
    assert classify("exoprov-agent: activation refused (409): not enabled") == "!"
    assert classify("Traceback (most recent call last):") == "!"
    assert classify("exoprov-agent: up to date") == " "


def _loop(data=b""):
    port = serial.serial_for_url("loop://", timeout=0.05)
    port.write(data)
    return port


def test_loop_url_timestamps_marks_and_until():
    port = _loop(AGENT_LINES)
    out = io.StringIO()
    mon = Monitor(lambda: port, out, "loop://", until=r"-> active")
    assert mon.run(duration=10) == 0
    text = out.getvalue().splitlines()
    assert text[0].endswith("- [monitor] connected to loop://")
    assert any(ln.endswith("* exoprov-agent: state unprovisioned -> activating") for ln in text)
    assert any(
        ln.endswith(
            "! exoprov-agent: activation refused (409): not enabled, already activated or expired"
        )
        for ln in text
    )
    # HH:MM:SS.mmm before every line
    assert all(ln[2] == ":" and ln[5] == ":" and ln[8] == "." for ln in text)
    assert mon.transitions == [("unprovisioned", "activating"), ("activating", "active")]
    assert "up to date" not in out.getvalue()  # stopped at the match


def test_loop_url_color_and_no_timestamps():
    port = _loop(b"exoprov-agent: state retry -> activating\nplain\n")
    out = io.StringIO()
    Monitor(lambda: port, out, "loop://", timestamps=False, color=True).run(duration=0.5)
    lines = out.getvalue().splitlines()
    assert "\x1b[1;32m* exoprov-agent: state retry -> activating\x1b[0m" in lines
    assert "  plain" in lines


def test_until_not_matched_in_time_is_exit_1():
    port = _loop(b"nothing here\n")
    out = io.StringIO()
    assert Monitor(lambda: port, out, "loop://", until="never").run(duration=0.3) == 1
    assert "no line matched 'never'" in out.getvalue()


class RecordingLoop(LoopSerial):
    """loop:// that records every DTR/RTS change, as an ESP32's auto-reset circuit sees it."""

    def __init__(self, *a, **kw):
        self.changes = []
        super().__init__(*a, **kw)

    def _update_dtr_state(self):
        self.changes.append(("dtr", self._dtr_state))

    def _update_rts_state(self):
        self.changes.append(("rts", self._rts_state))


def test_reset_pulses_en_through_rts_with_dtr_released():
    port = RecordingLoop("loop://", timeout=0.05)
    port.changes.clear()
    slept = []
    out = io.StringIO()
    mon = Monitor(lambda: port, out, "loop://", sleep=slept.append)
    mon.run(duration=0.2, reset=True)
    assert ("dtr", True) not in port.changes  # GPIO0 never pulled low: no bootloader
    rts = [v for k, v in port.changes if k == "rts"]
    assert rts == [True, False]
    assert slept[0] == pytest.approx(0.1)
    assert "resetting the board" in out.getvalue()


def test_open_serial_releases_lines_before_opening(monkeypatch):
    made = []

    def fake(url, **kw):
        p = RecordingLoop(None, **{k: v for k, v in kw.items() if k != "do_not_open"})
        p.port = url
        made.append(p)
        return p

    monkeypatch.setattr(serial, "serial_for_url", fake)
    port = monitor.open_serial("loop://", 115200)
    assert port.is_open and port.baudrate == 115200
    assert ("dtr", True) not in made[0].changes and ("rts", True) not in made[0].changes
    port.close()


def test_reconnects_after_the_port_goes_away():
    ports = [_loop(b"before\n"), _loop(b"exoprov-agent: state activating -> active\n")]
    opened = []

    def open_port():
        if len(opened) == 1 and opened[0].is_open:
            raise AssertionError("opened twice without losing the port")
        if not ports:
            raise OSError("no such device")
        opened.append(ports.pop(0))
        return opened[-1]

    out = io.StringIO()
    mon = Monitor(open_port, out, "loop://", until="-> active", sleep=lambda s: None)
    orig_show = mon.show

    def show(line):
        orig_show(line)
        if line == "before":
            opened[0].close()  # unplugged: the next read fails

    mon.show = show
    assert mon.run(duration=10) == 0
    text = out.getvalue()
    assert text.count("[monitor] connected to loop://") == 2
    assert "[monitor] lost loop://" in text


# -- the real command on a pty ---------------------------------------------------------------


class Proc:
    """`exoprov monitor` in a subprocess, its stdout read line by line in a thread."""

    def __init__(self, *args):
        self.p = subprocess.Popen(
            [sys.executable, "-m", "exoprov.cli", "monitor", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.q = queue.Queue()
        self.lines = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.p.stdout:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def wait_for(self, text, timeout=15):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} not seen; got {self.lines}")

    def finish(self, timeout=15):
        try:
            rc = self.p.wait(timeout)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
        while True:
            try:
                line = self.q.get(timeout=2)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return rc, self.p.stderr.read()


def _pty(link):
    master, slave = os.openpty()
    name = os.ttyname(slave)
    tmp = f"{link}.new"
    os.symlink(name, tmp)
    os.replace(tmp, link)
    return master, slave


def test_pty_unplug_and_replug(tmp_path):
    link = str(tmp_path / "ttyBOARD")
    m1, s1 = _pty(link)
    proc = Proc(
        "--port",
        link,
        "--until",
        r"state activating -> active",
        "--timeout",
        "30",
        "--no-time",
        "--log",
        str(tmp_path / "mon.log"),
    )
    try:
        proc.wait_for("[monitor] connected")
        os.write(m1, b"exoprov-agent: state unprovisioned -> activating\r\n")
        proc.wait_for("unprovisioned -> activating")
        os.close(m1)  # unplug: the slave side now fails with EIO
        os.close(s1)
        proc.wait_for("[monitor] lost")
        m2, s2 = _pty(link)  # plugged back in (same path, new device)
        proc.wait_for("[monitor] connected")
        os.write(m2, b"exoprov-agent: state activating -> active\n")
        rc, err = proc.finish()
        os.close(m2)
        os.close(s2)
    finally:
        if proc.p.poll() is None:
            proc.p.kill()
    assert rc == 0, err
    assert "* exoprov-agent: state activating -> active" in proc.lines
    assert "* exoprov-agent: state unprovisioned -> activating" in proc.lines
    log = (tmp_path / "mon.log").read_text()
    assert "state activating -> active" in log and "\x1b" not in log


def test_pty_no_reconnect_exits_1(tmp_path):
    link = str(tmp_path / "ttyBOARD")
    m1, s1 = _pty(link)
    proc = Proc("--port", link, "--no-reconnect", "--timeout", "30", "--no-time")
    proc.wait_for("[monitor] connected")
    os.close(m1)
    os.close(s1)
    rc, err = proc.finish()
    assert rc == 1
    assert err.strip().splitlines()[-1].startswith(f"exoprov: monitor {link}: ")


def test_reset_on_a_pty_reports_missing_modem_lines(tmp_path):
    link = str(tmp_path / "ttyBOARD")
    m1, s1 = _pty(link)
    try:
        proc = Proc("--port", link, "--reset", "--timeout", "1", "--no-time")
        rc, err = proc.finish()
    finally:
        os.close(m1)
        os.close(s1)
    assert rc == 0, err
    assert any("resetting the board" in ln for ln in proc.lines)
    # a pty has no DTR/RTS: said in one line, and the monitor carries on
    assert any("cannot reset: the port has no modem lines" in ln for ln in proc.lines)


def test_usage_errors():
    from conftest import exoprov

    r = exoprov("monitor", check=False, env={**os.environ, "EXOPROV_PORT": ""})
    assert r.returncode == 2
    assert (
        r.stderr.strip().splitlines()[-1] == "exoprov: monitor: --port is needed (or EXOPROV_PORT)"
    )
    r = exoprov("monitor", "--port", "loop://", "--until", "(", check=False)
    assert r.returncode == 2
    assert r.stderr.startswith("exoprov: monitor: --until is not a regular expression")
