"""What a harness starts, it stops: at a normal end, on Ctrl-C and on SIGTERM alike.

    spawn(cmd, **popen_kw)   subprocess.Popen in a process group of its own, remembered
    stop(proc, sig, wait=10) `sig` to the process; once it is gone (or after `wait` seconds),
                             SIGKILL to whatever of its group is left (forked workers); forgotten
    on_stop(fn) / forget(fn) remember a cleanup that is not one process (PostgreSQL, which
                             pg_ctl detaches into a session of its own), until it has run
    stop_all()               every cleanup still remembered, newest first
    main(fn, argv=None)      run a harness's `fn(argv)`: SIGTERM and SIGHUP raise
                             KeyboardInterrupt as Ctrl-C does, so the `finally` blocks and
                             context managers that end a normal run end an interrupted one too;
                             then stop_all() stops anything they missed (started between two
                             statements, or whose owner's cleanup failed). Returns fn's status,
                             or 128 + the signal's number.

A process group per child because a server with `--workers` forks and nginx has workers: when
the leader is gone, the rest of its group is killed with it. And because a Ctrl-C at the
terminal then reaches the harness alone, which stops its children itself, in order (servers
before the database they use). Every harness's `__main__` goes through main(); the tests'
conftest calls stop_all() when the session ends.
"""

import os
import signal
import subprocess
import sys
import threading

_lock = threading.Lock()
_cleanups = []  # (key, callable), oldest first


def _remember(key, fn):
    with _lock:
        _cleanups.append((key, fn))


def forget(key):
    with _lock:
        _cleanups[:] = [(k, f) for k, f in _cleanups if k != key]  # == : bound methods


def on_stop(fn):
    """Remember `fn` (no arguments) to be called by stop_all(); returns fn."""
    _remember(fn, fn)
    return fn


def spawn(cmd, **kw):
    """subprocess.Popen(cmd, **kw) as the leader of a new process group, remembered."""
    proc = subprocess.Popen(cmd, start_new_session=True, **kw)
    _remember(proc, lambda: stop(proc))
    return proc


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc, sig=signal.SIGTERM, wait=10):
    """Stop a spawn()ed process and its group; safe to call twice. -> its exit status."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _killpg(proc.pid, signal.SIGKILL)  # its group outlives it: workers it forked
    forget(proc)
    return proc.returncode


def stop_all():
    """Run every remembered cleanup, newest first (each at most once)."""
    while True:
        with _lock:
            if not _cleanups:
                return
            key, fn = _cleanups.pop()
        try:
            fn()
        except Exception as exc:  # one failed cleanup must not keep the others from running
            print(f"harness: cleanup {fn!r} failed: {exc}", file=sys.stderr)


_STOPPERS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def main(fn, argv=None):
    """Run a harness's main function so that every way of stopping it cleans up."""
    got = []

    def interrupt(signum, frame):
        if got:  # already stopping: let the cleanup finish
            return
        got.append(signum)
        raise KeyboardInterrupt

    old = {s: signal.signal(s, interrupt) for s in _STOPPERS}
    try:
        return fn(argv)
    except KeyboardInterrupt:
        sig = got[0] if got else signal.SIGINT
        print(f"harness: stopped by {signal.Signals(sig).name}", file=sys.stderr)
        return 128 + sig
    finally:
        got.append(None)  # from here on a signal waits for the cleanup
        stop_all()
        for s, h in old.items():
            signal.signal(s, h)
