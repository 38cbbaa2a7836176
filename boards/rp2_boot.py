"""main.py for the Pico W: start the current application bundle, fall back when it fails.

Deployed as /main.py. Reads the pointer file `app.ptr` ("<cur> <prev> <state>", written by
boards/rp2.py; `-` is the factory application in /lib) and imports `app` from the current
bundle directory, then calls app.main(). The state plays the part of ESP-IDF's otadata:
  new     applied, never started: becomes "trying" and starts
  trying  started once and the device reset before the agent confirmed it: fall back
  ok      confirmed (or the factory application)
  failed  a fallback happened; the current bundle is the previous one
A bundle whose import or main() raises while it is still "trying" is dropped the same way,
at once, and the previous one starts. This file is the bootloader: updates never replace it.
"""

import os
import sys

_PAUSE_MS = 1000  # before a reset after an unexpected error: no tight crash loop


def _root():
    try:
        return os.getenv("EXOPROV_ROOT") or ""  # the unix port (tests); "/" on the board
    except AttributeError:
        return ""


def _ptr(root):
    try:
        with open(root + "/app.ptr") as f:
            p = f.read().split()
    except OSError:
        p = ()
    return p if len(p) == 3 else ["-", "-", "ok"]


def _set(root, cur, prev, state):
    tmp = root + "/app.ptr.tmp"
    with open(tmp, "w") as f:
        f.write("%s %s %s\n" % (cur, prev, state))
    os.rename(tmp, root + "/app.ptr")  # LittleFS: atomic, replaces the old pointer


def _start(root, name):
    """Import and run `app` from bundle `name`; -> (True, result) or (False, exception)."""
    before = list(sys.modules)
    path = root + "/" + name if name != "-" else None
    if path:
        sys.path.insert(0, path)
    try:
        import app

        return True, app.main()
    except Exception as e:
        # forget every module the failed bundle loaded, so the fallback imports its own
        for k in list(sys.modules):
            if k not in before:
                del sys.modules[k]
        if path and path in sys.path:
            sys.path.remove(path)
        return False, e


def main():
    root = _root()
    cur, prev, state = _ptr(root)
    if state == "trying":
        print("boot: bundle %s was not confirmed: back to %s" % (cur, prev))
        cur, prev, state = prev, cur, "failed"
        _set(root, cur, prev, state)
    elif state == "new":
        state = "trying"
        _set(root, cur, prev, state)
    ok, res = _start(root, cur)
    if ok:
        return res
    if _ptr(root)[2] == "trying" and cur != "-":
        print("boot: bundle %s failed to start: back to %s" % (cur, prev))
        sys.print_exception(res)
        _set(root, prev, cur, "failed")
        ok, res = _start(root, prev)
        if ok:
            return res
    sys.print_exception(res)
    import time

    import machine

    time.sleep_ms(_PAUSE_MS)
    machine.reset()


if __name__ == "__main__":
    rc = main()
    if sys.platform == "linux" and rc:
        sys.exit(rc)  # the unix port: the exit status for tests; the board keeps its REPL
