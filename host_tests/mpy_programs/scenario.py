"""The entry point of the MicroPython test programs in this folder (runs on both interpreters).

    micropython host_tests/mpy_programs/PROGRAM.py SCENARIO [ARG...]

A program defines each scenario as a function and ends with `scenario.main(globals())`: the
function named SCENARIO is called with the string arguments; what it returns is printed as
one JSON line (host_tests/fakes/hwkit.py `out()` reads the last one). A scenario that raises
first prints `scenario PROGRAM SCENARIO failed` on stderr, so the failing test's message
names it beside the traceback (which names the function and the line in PROGRAM.py).
"""

import json
import sys


def main(scope):
    program = sys.argv[0].split("/")[-1]
    name, args = sys.argv[1], sys.argv[2:]
    fn = scope.get(name)
    if fn is None or name.startswith("_"):
        print("scenario %s %s: no such scenario" % (program, name), file=sys.stderr)
        raise SystemExit(2)
    try:
        res = fn(*args)
    except Exception:
        print("scenario %s %s failed:" % (program, name), file=sys.stderr)
        raise
    if res is not None:
        print(json.dumps(res))
