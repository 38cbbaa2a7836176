"""Power cuts on the emulated Pico: the emulator stopped at flash erase/program operations of an
update, restarted from the flash image; it must always boot a whole bundle and end updated.

    python -m tools.harness.rp2emu.powercut [--size BYTES] [--sample N]

One reference flow from a provisioned Pico (tools/harness/rp2emu/story.py): the power-on that
activates, downloads the signed bundle, verifies, stages, applies and resets, then the one that
starts the bundle and confirms. Its flash operations (the runner counts every erase and
program) are the cut points: for each, a fresh copy of the provisioned image, the flow run up
to that operation (before it; every other one torn: half of it done), then power-ons until
the agent ends (at most 6; the operator's regenerate played when an activation cut before the
CIK was stored gets 409). After every power-on: the application that started is the factory
one or the bundle with its payload whole (the bundle checks its own sha256), never a
traceback from main.py; at the end the bundle runs confirmed. Without --sample, every
operation. Prints `N/N cut points survived`; exit 1 otherwise (skipped, exit 0, saying why,
when the emulated Pico cannot run here).
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from . import HZ, RC_CUT, RC_RESET, firmware, missing, ppp_missing

MAX_STARTS = 6


def figures(pico):
    """Cycles (and seconds at 125 MHz) of one update power-on, from its console lines."""
    out = {}
    active = pico.line_at("-> active")
    if active:
        out["boot_to_active_cycles"] = active[0]
        out["boot_to_active_s"] = round(active[0] / HZ, 2)
    first = pico.line_at("progress firmware-2")
    if active and pico.exit:
        upd = pico.exit["cycles"] - active[0]
        out["update_cycles"] = upd
        out["update_s"] = round(upd / HZ, 2)
        out["update_sim_s"] = round(pico.exit["sim_s"] - active[1] / 1e6, 2)
    if first:
        out["first_progress_cycles"] = first[0]
    low = [ln for _, _, ln in pico.lines if "mem_free low" in ln]
    if low:
        out["agent_mem_free_low"] = int(low[-1].split()[-1])
    if pico.exit:
        out["wall_s"] = pico.exit["wall_s"]
        out["mhz"] = pico.exit["mhz"]
        out["busy_mhz"] = pico.exit["busy_mhz"]
    return out


def _check_start(pico):
    """-> a failure message for one power-on, or None."""
    log = pico.text()
    if "payload BROKEN" in log:
        return "the bundle started with a broken payload"
    if "Traceback" in log:
        return "a traceback: ..." + log[log.index("Traceback") : log.index("Traceback") + 400]
    if "exoprov factory application" not in log and "exoprov bundle 2.0 running" not in log:
        if "main.py" in log or ">>> " in log:
            return "no application started"
    return None


def _pick(ops, sample):
    """The sample: an erase in the first third, a program in the middle (torn), the last."""
    if not sample or sample >= len(ops):
        return [(run, op, i % 2 == 1) for i, (run, op) in enumerate(ops)]
    erases = [x for x in ops[: len(ops) // 3 + 1] if x[1][1] == "erase"] or ops[:1]
    progs = [x for x in ops[len(ops) // 3 :] if x[1][1] == "program"] or ops[-2:-1]
    picks = [(*erases[len(erases) // 2], False), (*progs[len(progs) // 2], True)]
    picks.append((*ops[-1], False))
    return picks[:sample]


def run(fw, server, peer, workdir, size=8 * 1024, sample=None, say=print):
    from .story import Story

    workdir = Path(workdir)
    st = Story(server)
    sn = st.sn("sn-cut")
    line = st.upload(st.bundle(size))
    base = workdir / "provisioned.img"
    st.provision(base, fw, st.config(sn, [line]))

    # the reference flow: every flash operation of the update and of the confirmation
    ref = workdir / "ref.img"
    shutil.copy(base, ref)
    rc1, p1 = st.power_on(ref, peer)
    rc2, p2 = st.power_on(ref, peer)
    if rc1 != RC_RESET or rc2 != 0 or "confirmed" not in p2.text():
        raise RuntimeError(f"the reference flow failed (rc {rc1}, {rc2}): {p2.text()[-2000:]}")
    ops = [(1, op) for op in p1.ops] + [(2, op) for op in p2.ops]
    say(f"reference flow: {len(p1.ops)} + {len(p2.ops)} flash operations; {figures(p1)}")
    picks = _pick(ops, sample)
    ok, failures = 0, []
    for n, (run_no, op, torn) in enumerate(picks, 1):
        label = f"run {run_no} op {op[0]} {op[1]} @{op[2]:#x}+{op[3]}" + (" torn" if torn else "")
        img = workdir / "cut.img"
        shutil.copy(base, img)
        st.enable(sn)  # the same serial number again: activatable from a blank record
        why = _trial(st, sn, img, peer, run_no, op[0], torn)
        if why:
            failures.append(f"{label}: {why}")
            say(f"[{n}/{len(picks)}] {label}: FAILED {why}")
        else:
            ok += 1
            say(f"[{n}/{len(picks)}] {label}: survived")
    return {"ok": ok, "total": len(picks), "failures": failures, "ops": len(ops)}


def _trial(st, sn, img, peer, run_no, op, torn):
    if run_no == 2:
        rc, pico = st.power_on(img, peer)
        if rc != RC_RESET:
            return f"the update power-on ended with rc {rc}"
    rc, pico = st.power_on(img, peer, cut_op=op, torn=torn)
    if rc != RC_CUT:
        return f"not cut (rc {rc}): the flow changed between runs"
    why = _check_start(pico)
    if why:
        return "before the cut: " + why
    for _ in range(MAX_STARTS):
        rc, pico = st.power_on(img, peer)
        why = _check_start(pico)
        if why:
            return why
        log = pico.text()
        if "activation refused (409)" in log:
            st.enable(sn)  # the operator's regenerate, as the spec README says
            continue
        if (
            rc == 0
            and "exoprov bundle 2.0 running, payload whole" in log
            and ("confirmed" in log or "up to date" in log)
        ):
            return None
        if rc not in (0, RC_RESET):
            return f"power-on ended with rc {rc}: {pico.err[-3:]}"
    return f"not updated after {MAX_STARTS} power-ons: ...{pico.text()[-800:]}"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="rp2emu.powercut", description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=8 * 1024, help="bundle size (default 8 KiB)")
    ap.add_argument("--sample", type=int, default=None, help="cut at most N points")
    args = ap.parse_args(argv)
    why = missing() or ppp_missing()
    if why:
        print(f"emulated Pico power cuts skipped: {why}")
        return 0
    from tools.harness.launch import ServerProcess

    from .ppp import PppPeer

    fw = firmware(say=print)
    server = ServerProcess("--activation-limit", "0")
    peer = PppPeer(forward=[server.port]).start()
    try:
        with tempfile.TemporaryDirectory(prefix="exoprov-pico-cut-") as tmp:
            res = run(fw, server, peer, tmp, args.size, args.sample)
    finally:
        peer.close()
        server.stop()
    for f in res["failures"]:
        print("FAILED", f)
    print(f"emulated Pico: {res['ok']}/{res['total']} cut points survived")
    return 0 if res["ok"] == res["total"] and res["total"] else 1


if __name__ == "__main__":
    sys.exit(main())
