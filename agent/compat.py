"""The few real differences between MicroPython and CPython, and the agent's log."""

try:
    from micropython import const
except ImportError:  # CPython: const() is only a hint for the MicroPython compiler

    def const(x):
        return x


try:
    from time import ticks_diff
except ImportError:  # CPython: the board's ticks never wrap

    def ticks_diff(a, b):
        return a - b


# 0 quiet, 1 transitions and download progress (default); main sets it from the config.
level = 1


def log(*parts):
    # Callers pass pieces, not a formatted string, so nothing is built when quiet.
    # Never pass a CIK here.
    if level:
        import sys

        print("exoprov-agent:", *parts, file=sys.stderr)
