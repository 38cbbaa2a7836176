"""The few real differences between MicroPython and CPython, and the agent's log."""

import sys

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint for the MicroPython compiler

    def const(x):
        return x


try:
    from sys import print_exception
except ImportError:  # CPython

    def print_exception(exc, file=sys.stderr):
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=file)


# 0 quiet, 1 transitions and progress (default), 2 debug; main sets it from the config.
level = 1


def log(*parts):
    # Callers pass pieces, not a formatted string, so nothing is built when quiet.
    # Never pass a CIK here.
    if level:
        print("exoprov-agent:", *parts, file=sys.stderr)


def debug(*parts):
    if level > 1:
        print("exoprov-agent: debug:", *parts, file=sys.stderr)


try:
    from time import ticks_diff
except ImportError:  # CPython: the board's ticks never wrap

    def ticks_diff(a, b):
        return a - b
