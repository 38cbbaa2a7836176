"""The heap each module takes once imported, in order (host_tests/test_agent_memory.py).

    MICROPYPATH=<compiled tree> micropython -X heapsize=128K heap_costs.py costs MODULE...

Prints `<module> <bytes>` per module: gc.mem_free() before and after its import, each after a
collection, so a module counts what it adds beside the ones imported before it.
"""

import gc

import scenario


def costs(*modules):
    gc.collect()
    before = gc.mem_free()
    for m in modules:
        __import__(m)
        gc.collect()
        after = gc.mem_free()
        print(m, before - after)
        before = after


scenario.main(globals())
