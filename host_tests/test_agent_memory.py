"""Memory of the agent under the MicroPython unix port: the per-module heap cost of the
compiled agent (.mpy loaded into the heap), printed (run with -s to see it), and held to a
budget: what stays resident while downloading must not grow past RESIDENT_BUDGET. The smallest
-X heapsize for the full flow is bisected by `make bench` (tools/harness/bench.py, step
"heap"); test_agent_integration.py runs the flow at a fixed small heap.
"""

import os

from agentkit import build_mpy

from tools.harness.mpunix import run_program

MODULES = (
    "agent.compat agent.http agent.api agent.store agent.updater agent.fsm agent.main "
    "boards.unix agent.config"
).split()
# Heap the modules resident while downloading take once imported (bytes). 31 648 when this
# budget was set: the .mpy agent must not grow (a board with a 64 KiB heap spends the rest
# on the download buffer, the TLS session and the JSON of the answers). A module that moves
# out of the resident set or shrinks is welcome; raising this needs a reason in the commit.
RESIDENT_BUDGET = 32 * 1024


def test_module_heap_costs(tmp_path):
    sizes = build_mpy(tmp_path)
    env = dict(os.environ, MICROPYPATH=str(tmp_path))  # the compiled agent alone
    r = run_program("heap_costs", "costs", *MODULES, env=env, flags=["-X", "heapsize=128K"])
    assert r.returncode == 0, r.stderr
    heap = {line.split()[0]: int(line.split()[1]) for line in r.stdout.splitlines()}
    assert set(heap) == set(MODULES)
    mpy = sum(v for k, v in sizes.items() if k.startswith("agent/"))
    print(f"\nagent/ .mpy total: {mpy} bytes")
    for m in MODULES:
        print(f"  {m:<14} heap after import: {heap[m]:>6} bytes")
    resident = sum(heap.values()) - heap["agent.config"]
    print(f"  resident while downloading: {resident} bytes (budget {RESIDENT_BUDGET})")
    # every module was really loaded here (none already imported by an earlier one)
    assert all(heap[m] > 0 for m in MODULES), heap
    assert resident <= RESIDENT_BUDGET, heap
