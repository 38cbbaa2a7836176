"""`exoprov monitor`: a line-oriented serial monitor for boards running the agent.

Each line gets a timestamp; the agent's state transitions (`exoprov-agent: state A -> B`, see
`agent/fsm.py`) are marked `*` and coloured, errors `!`. When the board is unplugged the
monitor waits for the port to come back and carries on. Ports are opened with pyserial's
`serial_for_url`, so `loop://`, `socket://` and `rfc2217://` work as well as device paths.

ESP32 dev boards wire DTR to GPIO0 and RTS to EN through two transistors (esptool's
"classic reset"): both lines are released before the port is opened so that opening it does
not reset the chip, and `--reset` pulls EN low through RTS for 100 ms while DTR stays released
(GPIO0 high), so the chip restarts into its application, not into the ROM bootloader.
"""

import argparse
import datetime
import os
import re
import sys
import time

_LINE_MAX = 1024
_RESET_PULSE_S = 0.1  # esptool's hard_reset holds RTS for 100 ms
_RETRY_S = 0.25

# `exoprov-agent: state unprovisioned -> activating` (agent/fsm.py), or any `state A -> B`.
TRANSITION = re.compile(r"\bstate[:=]?\s+(\S+)\s*->\s*(\S+)")
PROBLEM = re.compile(
    r"Traceback|Error\b|\berror\b|refused|failed|rolling back|Guru Meditation|panic",
)
_GREEN, _RED, _DIM, _OFF = "\x1b[1;32m", "\x1b[1;31m", "\x1b[2m", "\x1b[0m"


class LineSplitter:
    """Bytes in, complete text lines out; CR, LF and CRLF end a line; long lines are cut."""

    def __init__(self, limit=_LINE_MAX):
        self.limit = limit
        self._buf = bytearray()
        self._cr = False

    def feed(self, data):
        out = []
        for b in data:
            if self._cr and b == 0x0A:  # the LF of a CRLF
                self._cr = False
                continue
            self._cr = b == 0x0D
            if b in (0x0A, 0x0D):
                out.append(self._take())
            else:
                self._buf.append(b)
                if len(self._buf) >= self.limit:
                    out.append(self._take())
        return out

    def flush(self):
        """The pending partial line, if any (called when the port goes away)."""
        return [self._take()] if self._buf else []

    def _take(self):
        text = self._buf.decode("utf-8", "replace")
        self._buf = bytearray()
        return text


def classify(line):
    """'*' for a state transition, '!' for a problem, ' ' otherwise."""
    if TRANSITION.search(line):
        return "*"
    if PROBLEM.search(line):
        return "!"
    return " "


class Monitor:
    """Reads a port line by line until told to stop; `open_port()` gives a pyserial port."""

    def __init__(
        self,
        open_port,
        out,
        label,
        timestamps=True,
        color=False,
        until=None,
        reconnect=True,
        log=None,
        clock=time.monotonic,
        sleep=time.sleep,
    ):
        self.open_port = open_port
        self.out = out
        self.label = label
        self.timestamps = timestamps
        self.color = color
        self.until = re.compile(until) if until else None
        self.reconnect = reconnect
        self.log = log
        self.clock = clock
        self.sleep = sleep
        self.lines = 0
        self.transitions = []

    def note(self, text):
        self._write(f"[monitor] {text}", "-")

    def show(self, line):
        mark = classify(line)
        if mark == "*":
            self.transitions.append(TRANSITION.search(line).groups())
        self.lines += 1
        self._write(line, mark)

    def _write(self, text, mark):
        stamp = ""
        if self.timestamps:
            now = datetime.datetime.now()
            stamp = now.strftime("%H:%M:%S.") + f"{now.microsecond // 1000:03d} "
        plain = f"{stamp}{mark} {text}"
        if self.log:
            self.log.write(plain + "\n")
            self.log.flush()
        if self.color and mark in "*!-":
            col = {"*": _GREEN, "!": _RED, "-": _DIM}[mark]
            self.out.write(f"{stamp}{col}{mark} {text}{_OFF}\n")
        else:
            self.out.write(plain + "\n")
        self.out.flush()

    def run(self, duration=None, reset=False):
        """0 when --until matched or the duration passed, 1 when the port is lost for good."""
        end = None if duration is None else self.clock() + duration
        port, split, waiting, first = None, LineSplitter(), False, True
        try:
            while end is None or self.clock() < end:
                if port is None:
                    try:
                        port = self.open_port()
                    except (OSError, ValueError) as exc:
                        if not self.reconnect:
                            self.note(f"cannot open {self.label}: {_why(exc)}")
                            return 1
                        if not waiting:
                            self.note(f"waiting for {self.label} ({_why(exc)})")
                            waiting = True
                        self.sleep(_RETRY_S)
                        continue
                    waiting = False
                    self.note(f"connected to {self.label}")
                    if reset and first:
                        self.note("resetting the board (EN low via RTS, GPIO0 high)")
                        try:
                            pulse_reset(port, self.sleep)
                        except (OSError, ValueError) as exc:
                            self.note(f"cannot reset: the port has no modem lines ({_why(exc)})")
                    first = False
                try:
                    data = port.read(max(1, port.in_waiting))
                except (OSError, ValueError) as exc:
                    for line in split.flush():
                        self.show(line)
                    _close(port)
                    port = None
                    self.note(f"lost {self.label} ({_why(exc)})")
                    if not self.reconnect:
                        return 1
                    continue
                for line in split.feed(data):
                    self.show(line)
                    if self.until and self.until.search(line):
                        return 0
            if self.until:
                self.note(f"no line matched {self.until.pattern!r} in time")
                return 1
            return 0
        finally:
            _close(port)


def pulse_reset(port, sleep=time.sleep):
    """ESP32 classic reset into the application: DTR released, RTS pulses EN low."""
    port.dtr = False
    port.rts = True
    port.dtr = port.dtr  # some USB bridges apply RTS only with the next DTR write (esptool)
    sleep(_RESET_PULSE_S)
    port.rts = False
    port.dtr = port.dtr


def open_serial(url, baud):
    """A pyserial port with DTR/RTS released before opening, so the board keeps running."""
    import serial

    port = serial.serial_for_url(url, baudrate=baud, timeout=0.1, do_not_open=True)
    port.dtr = False
    port.rts = False
    port.open()
    return port


def _close(port):
    if port is not None:
        try:
            port.close()
        except (OSError, ValueError):
            pass


def _why(exc):
    text = " ".join(str(exc).split())
    return text[:120] or type(exc).__name__


def build_parser():
    p = argparse.ArgumentParser(prog="exoprov monitor", description=__doc__.splitlines()[0])
    p.add_argument(
        "--port",
        default=os.environ.get("EXOPROV_PORT"),
        help="device path or pyserial URL (EXOPROV_PORT), e.g. /dev/ttyUSB0",
    )
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument(
        "--reset", action="store_true", help="reset the board after connecting (ESP32 EN via RTS)"
    )
    p.add_argument("--no-time", action="store_true", help="no timestamps")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.add_argument("--until", metavar="REGEX", help="exit 0 when a line matches")
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="stop after SECONDS (exit 1 if --until did not match)",
    )
    p.add_argument(
        "--no-reconnect",
        action="store_true",
        help="exit 1 when the port goes away instead of waiting for it",
    )
    p.add_argument("--log", metavar="FILE", help="also append the lines (no colour) to FILE")
    return p


def main(argv=None):
    parser = build_parser()
    try:
        a = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not a.port:
        sys.stderr.write("exoprov: monitor: --port is needed (or EXOPROV_PORT)\n")
        return 2
    if a.until:
        try:
            re.compile(a.until)
        except re.error as exc:
            sys.stderr.write(f"exoprov: monitor: --until is not a regular expression: {exc}\n")
            return 2
    color = a.color == "always" or (a.color == "auto" and sys.stdout.isatty())
    log = open(a.log, "a", encoding="utf-8") if a.log else None
    mon = Monitor(
        lambda: open_serial(a.port, a.baud),
        sys.stdout,
        f"{a.port} at {a.baud}",
        timestamps=not a.no_time,
        color=color,
        until=a.until,
        reconnect=not a.no_reconnect,
        log=log,
    )
    try:
        rc = mon.run(a.timeout, a.reset)
    except KeyboardInterrupt:
        mon.note("closed")
        rc = 0
    finally:
        if log:
            log.close()
    if rc:
        sys.stderr.write(
            f"exoprov: monitor {a.port}: {'no match for --until' if a.until else 'port lost'}\n"
        )
    return rc
