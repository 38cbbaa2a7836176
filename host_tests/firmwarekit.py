"""The frozen firmware of the tests: tools/harness/firmware.py builds it (cached), this runs it.

    frozen_build(bits=32)  -> Path of the binary (tools/harness/firmware.py)
    frozen_cmd(binary, config, heap=None)  -> (argv, env, cwd) to run the agent from it
    frozen32()             the 32-bit binary for a session-scoped fixture (skipped, in one
                           line, when EXOPROV_MICROPYTHON names no MicroPython tree)

No MICROPYPATH is needed: agent and boards are found among the frozen modules (a stray
MICROPYPATH from the environment is removed so the tree's sources cannot shadow them).
"""

import os
from pathlib import Path

import pytest

from tools.harness.firmware import frozen_build, micropython_tree, skip_line

__all__ = ["frozen_build", "frozen_cmd", "frozen32"]


def frozen_cmd(binary, config, heap=None):
    env = dict(os.environ)
    env.pop("MICROPYPATH", None)
    argv = [str(binary)] + (["-X", f"heapsize={heap}"] if heap else [])
    return argv + ["-m", "agent", str(config)], env, str(Path(config).parent)


def frozen32():
    if micropython_tree() is None:
        pytest.skip(skip_line("the frozen 32-bit firmware"))
    return frozen_build(32)
