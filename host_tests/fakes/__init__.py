"""Fake hardware for the board tests, imported as a package on CPython (`fakes.hwkit` from
the tests, `host_tests.fakes.hwkit` from tools/harness/).

The MicroPython programs import the fakes as the modules they stand for (`machine`,
`network`, `esp32`, with `_fakehw` behind them): tools/harness/mpunix.py puts this folder
first on their MICROPYPATH (`mp_env(..., fakes=True)`), the one place that does.
"""
