"""Stop a harness mid-run and list what it left running (host_tests/test_harness_stop.py).

    python host_tests/stopprobe.py SIGNAL WANT TIMEOUT -- COMMAND...

Runs COMMAND as our child, this process being a child subreaper (Linux prctl
PR_SET_CHILD_SUBREAPER): whatever the harness starts stays below us even when it detaches
itself (pg_ctl puts PostgreSQL in a session of its own; an orphan is reparented to us, not
to init). Once every name in WANT (comma-separated, "name" or "name*count", matched against
each process's command line) is running below us, SIGNAL (SIGTERM, SIGINT) goes to COMMAND's
process alone, as `kill` or a supervisor sends it. When COMMAND has ended (and 5 s more for
stragglers), prints one JSON line: {"rc", "before": command lines when the signal went,
"after": command lines still running}; then kills what is left, so nothing outlives the test.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def _procs():
    """{pid: (ppid, state, command line)} of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        out[int(name)] = (int(rest[1]), rest[0], cmd)
    return out


def below(pid):
    """Command lines of the live (not zombie) descendants of pid: {pid: command line}."""
    procs = _procs()
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for p, (ppid, state, cmd) in procs.items():
            if ppid == parent and p not in found:
                todo.append(p)
                if state != "Z":
                    found[p] = cmd
    return found


def _reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _ready(cmds, want):
    for item in want:
        name, _, count = item.partition("*")
        if sum(name in c for c in cmds) < int(count or 1):
            return False
    return True


def main(argv):
    sig = getattr(signal, argv[0])
    want = [w for w in argv[1].split(",") if w]
    timeout = float(argv[2])
    cmd = argv[argv.index("--") + 1 :]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit("stopprobe: prctl(PR_SET_CHILD_SUBREAPER) failed")
    me = os.getpid()
    harness = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    before = {}
    while time.monotonic() < deadline and harness.poll() is None:
        before = below(me)
        if _ready(before.values(), want):
            break
        time.sleep(0.2)
    else:
        harness.kill()
    harness.send_signal(sig)
    try:
        _, err = harness.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        harness.kill()
        _, err = harness.communicate()
    after = {}
    end = time.monotonic() + 5
    while time.monotonic() < end:
        _reap()
        after = below(me)
        if not after:
            break
        time.sleep(0.2)
    res = {"rc": harness.returncode, "before": sorted(before.values())}
    res.update(after=sorted(after.values()), stderr=err.decode()[-3000:])
    print(json.dumps(res))
    for pid in after:  # nothing outlives the test, whatever the verdict
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.5)
    _reap()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
