"""Development harnesses: faults, power cuts, fuzzing, load and benchmarks.

Run from the repository (`make faults`, `make powercut`, `make fuzz`, `make load`,
`make bench`); they use host_tests/ beside them and are not part of the installed package.
"""
