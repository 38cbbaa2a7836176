"""The factory application of the fake Pico W in the agent scenarios (copied to the factory
directory as app.py by host_tests/fakes/hwkit.py `rp2_device`): boards/rp2_app.py, behind a
power-cut harness when EXOPROV_CUT is "AT MATCH": the process dies (exit 137, as a power cut
ends a device) at the AT-th write or rename of boards/rp2.py whose label ("write FILE",
"rename FILE") starts with MATCH. The real board has no hook: LittleFS itself is what the
wrapped `open` and `os` model.
"""

import os


def _arm(cut):
    import boards.rp2 as R

    at, match = int(cut.split(" ", 1)[0]), cut.split(" ", 1)[1]
    n = [0]
    real_open, real_os = open, R.os

    def tick(what):
        if what.startswith(match):
            n[0] += 1
            if n[0] == at:
                raise SystemExit(137)

    class F:
        def __init__(self, f, name):
            self.f, self.name = f, name

        def write(self, data):
            tick("write " + self.name)
            return self.f.write(data)

        def flush(self):
            self.f.flush()

        def seek(self, *a):
            return self.f.seek(*a)

        def readinto(self, b):
            return self.f.readinto(b)

        def read(self, *a):
            return self.f.read(*a)

        def close(self):
            self.f.close()

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    class OS:
        def rename(self, a, b):
            tick("rename " + b.split("/")[-1])
            real_os.rename(a, b)

        def __getattr__(self, name):
            return getattr(real_os, name)

    def cut_open(p, m="r"):
        f = real_open(p, m)
        return F(f, p.split("/")[-1]) if ("w" in m or "+" in m) else f

    R.open = cut_open
    R.os = OS()


if os.getenv("EXOPROV_CUT"):
    _arm(os.getenv("EXOPROV_CUT"))

from boards.rp2_app import main  # noqa: E402, F401
