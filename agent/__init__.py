"""exoprov device agent: activation, persisted state machine, verified updates.

Runs unchanged under MicroPython and CPython; see ``agent/main.py`` for the wiring.
"""

VERSION = "0.1.0"
