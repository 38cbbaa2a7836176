"""Memory figures of the agent under the MicroPython unix port (printed, not asserted as
numbers: run with -s to see them).

- per-module heap cost of the compiled agent (.mpy loaded into the heap), always;
- the smallest -X heapsize for the full flow (activate, list, info, 1 MiB download, verify,
  apply, confirm), bisected: about a minute, so only with EXOPROV_BENCH=1.
"""

import hashlib
import os
import subprocess

import pytest
from agentkit import MICROPYTHON, agent_config, build_mpy, run_agent

MIB = 1 << 20
MODULES = (
    "agent.compat agent.http agent.api agent.store agent.updater agent.fsm agent.main "
    "boards.unix agent.config"
).split()


def test_module_heap_costs(tmp_path):
    sizes = build_mpy(tmp_path)
    script = (
        "import gc\ngc.collect()\na = gc.mem_free()\n"
        "for m in %r:\n    __import__(m)\n    gc.collect()\n    b = gc.mem_free()\n"
        "    print(m, a - b)\n    a = b\n" % (MODULES,)
    )
    r = subprocess.run(
        [MICROPYTHON, "-X", "heapsize=128K", "-c", script],
        env={"MICROPYPATH": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    heap = {line.split()[0]: int(line.split()[1]) for line in r.stdout.splitlines()}
    assert set(heap) == set(MODULES)
    mpy = sum(v for k, v in sizes.items() if k.startswith("agent/"))
    print(f"\nagent/ .mpy total: {mpy} bytes")
    for m in MODULES:
        print(f"  {m:<14} heap after import: {heap[m]:>6} bytes")
    print(f"  resident while downloading: {sum(heap.values()) - heap['agent.config']} bytes")


@pytest.mark.skipif(not os.environ.get("EXOPROV_BENCH"), reason="benchmark: EXOPROV_BENCH=1")
def test_smallest_heap_for_full_flow(server, tmp_path):
    mpy = tmp_path / "mpy"
    build_mpy(mpy)
    v = server.add_vendor()
    s = server.session(cik=v["cik"])
    model = "heapbench"
    assert s.post("/provision/manage/model/", data={"model": model, "code": "t"}).ok
    data = os.urandom(MIB)
    meta = "sha256=" + hashlib.sha256(data).hexdigest() + "&version=2"
    url = f"/provision/manage/content/{model}/"
    assert s.post(url, data={"id": "firmware-1", "meta": meta}).ok
    assert s.post(url + "firmware-1", data=data).ok

    def passes(kib):
        sn = f"sn{kib}"
        s.post(f"/provision/manage/model/{model}/", data={"sn": sn})
        s.post(f"/provision/manage/model/{model}/{sn}", data={"enable": "true", "owner": v["rid"]})
        d = tmp_path / sn
        cfg = agent_config(d, server, vendor=v["vendor"], model=model, sn=sn, once=True)
        first = run_agent("micropython", cfg, heap=f"{kib}K", mpy=mpy)
        second = run_agent("micropython", cfg, heap=f"{kib}K", mpy=mpy)
        out = d / "install" / "fw.bin"
        return first.returncode == 3 and second.returncode == 0 and out.read_bytes() == data

    lo, hi = 8, 128
    assert passes(hi)
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if passes(mid) else (mid, hi)
    print(f"\nsmallest -X heapsize for the full flow with .mpy code: {hi} KiB")
