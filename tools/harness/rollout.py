"""Staged rollouts measured: simulated devices polling through the real server.

`python -m tools.harness.rollout [--devices 10000] [--poll 150] [--apply 2] [--size-kib 16]`
starts one `exoprov server` (SQLite) on loopback, whitelists, enables and activates
`--devices` devices, then runs them as an agent does: every `--poll` seconds (each device at
its own phase) a listing; a new content listed is downloaded (Range requests), reported
`downloading`, and `--apply` seconds later reported `active` (a good image) or `rolledback`
(a bad one, never tried again). Reports are alias writes, as the agent's.

Scenarios, one after the other on the same fleet:
  bad image, waves 1 %  and 5 % (then 100): the blast radius (devices that ever downloaded a
      byte of it, counted on the server) against the first wave, the devices that started
      after the failure threshold was crossed, and how long the pause took after that;
  good image, waves 1,10,50,100: every device ends on it; the time the whole rollout takes;
  plain upload: the time until every device runs it, for comparison.

Exits 1 when a bad rollout did not pause, reached more than its first wave, or a good one did
not end with every device on it.
"""

import argparse
import asyncio
import hashlib
import random
import sys
import time

import aiohttp
from exoprov.fleet.client import Client
from exoprov.fleet.errors import Conflict

from tools.harness import procs
from tools.harness.faults.realserver import RealServer
from tools.harness.loadtest import _whitelist
from tools.server import rollpolicy

MODEL = "loadmodel"  # the name loadtest's setup helpers use
ALIAS = "/onep:v1/stack/alias"


class Device:
    def __init__(self, sn, cik):
        self.sn, self.cik = sn, cik
        self.tried = set()  # content ids this device downloaded (and so never tries again)
        self.running = None
        self.unsaid = None  # a report not answered yet: sent again at the next poll


class Sim:
    """The devices' loop: one aiohttp session, each device a task at its own phase. As an
    agent does, a device whose download fails tries again at its next poll, and a report
    that got no answer is sent again."""

    def __init__(self, url, vendor, devices, poll, apply, rng):
        self.url, self.vendor, self.devices = url, vendor, devices
        self.poll, self.apply, self.rng = poll, apply, rng
        self.target = None  # (cid, good) the devices look for in their listing
        self.events = []  # (time, "took" | "failed" | "active", sn)
        self.errors = []
        self.requests = 0

    async def _req(self, s, method, path, dev, ok=(), **kw):
        self.requests += 1
        hdr = {"X-Exosite-CIK": dev.cik, **kw.pop("headers", {})}
        async with s.request(method, self.url + path, headers=hdr, **kw) as r:
            body = await r.read()
            if r.status >= 300 and r.status not in ok:
                self.errors.append(f"{method} {path}: {r.status} {body[:80]!r}")
            return r.status, body

    async def _report(self, s, dev, **fields):
        await self._req(s, "POST", ALIAS, dev, data=fields)

    async def _device(self, s, dev, stop):
        await asyncio.sleep(self.rng.random() * self.poll)
        q = {"vendor": self.vendor["vendor"], "model": MODEL}
        while not stop.is_set():
            target = self.target
            try:
                if dev.unsaid is not None:
                    await self._say(s, dev)
                st, body = await self._req(s, "GET", "/provision/download", dev, params=q)
                if target and st == 200 and target[0] in body.decode().split():
                    await self._take(s, dev, target, q)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                self.errors.append(repr(exc)[:80])
            await asyncio.sleep(self.poll)

    async def _say(self, s, dev):
        fields, what = dev.unsaid
        await self._report(s, dev, **fields)
        dev.unsaid = None
        self.events.append((time.monotonic(), what, dev.sn))

    async def _take(self, s, dev, target, q):
        cid, good = target
        if cid in dev.tried:
            return
        await self._report(s, dev, state="downloading", content=dev.running or "")
        qq = dict(q, id=cid)
        # counted when asked, as the server counts it (a download's first request)
        sent = time.monotonic()
        # 404: listed a moment before the rollout paused, refused now (as an agent would be)
        st, _b = await self._req(s, "GET", "/provision/download", dev, (404,), params=qq)
        if st not in (200, 206):
            self.events.append((time.monotonic(), "refused", dev.sn))
            return
        dev.tried.add(cid)
        self.events.append((sent, "took", dev.sn))
        await asyncio.sleep(self.apply)
        if good:
            dev.running = f"{cid}:1"
            fields = {"state": "active", "content": dev.running, "version": cid}
            dev.unsaid = (fields, "active")
        else:
            dev.unsaid = ({"state": "rolledback", "content": dev.running or ""}, "failed")
        await self._say(s, dev)

    async def run(self, scenario):
        conn = aiohttp.TCPConnector(limit=64)
        # per request, not while it waits for one of the 64 connections (a slow server)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=90)
        stop = asyncio.Event()
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
            tasks = [asyncio.create_task(self._device(s, d, stop)) for d in self.devices]
            try:
                return await scenario(s)
            finally:
                stop.set()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


def _vendor_hdr(vendor):
    return {"X-Exosite-CIK": vendor["cik"]}


async def _state(s, url, vendor, cid):
    """The rollout's state from the listing (no per-wave detail: cheap to ask often)."""
    async with s.get(
        f"{url}/exoprov/v1/model/{MODEL}/rollouts/", headers=_vendor_hdr(vendor)
    ) as r:
        rows = (await r.json(content_type=None))["rollouts"]
    return {x["content"]: x for x in rows}[cid]


async def _rollout(s, url, vendor, cid, action, **body):
    path = f"{url}/exoprov/v1/model/{MODEL}/rollouts/{cid}"
    if action:
        async with s.post(f"{path}/{action}", json=body, headers=_vendor_hdr(vendor)) as r:
            out = await r.json(content_type=None)
            if r.status != 200:
                raise RuntimeError(f"rollout {action} {cid}: {r.status} {out}")
            return out
    async with s.get(path, headers=_vendor_hdr(vendor)) as r:
        return await r.json(content_type=None)


def _crossing(events, t0, min_devices, max_failures):
    """The first time the devices' own events put the rollout over its failure threshold."""
    started = failed = 0
    for t, what, _sn in sorted(events):
        if t < t0:
            continue
        started += what == "took"
        failed += what == "failed"
        if rollpolicy.should_pause(started, failed, min_devices, max_failures):
            return t
    return None


def bad(sim, fleet, data, wave, min_devices, max_failures, log):
    cid = f"bad-{wave:g}"
    fleet.hold(cid, data)

    async def scenario(s):
        sim.events.clear()
        t0 = time.monotonic()
        sim.target = (cid, False)
        st = await _rollout(
            s,
            sim.url,
            sim.vendor,
            cid,
            "start",
            waves=f"{wave:g},100",
            min_devices=min_devices,
            max_failures=max_failures,
        )
        first = st["wave_size"]
        paused = None
        deadline = t0 + 3 * sim.poll + 4 * sim.apply + 30
        while time.monotonic() < deadline:
            st = await _state(s, sim.url, sim.vendor, cid)
            if st["state"] != "running":
                paused = time.monotonic()
                break
            await asyncio.sleep(0.02)
        if paused is not None:  # a whole poll period more: nobody new may take it
            await asyncio.sleep(sim.poll + sim.apply + 1)
        st = await _rollout(s, sim.url, sim.vendor, cid, None)
        cross = _crossing(sim.events, t0, min_devices, max_failures)
        late = sum(1 for t, w, _ in sim.events if w == "took" and cross and t > cross)
        refused = sum(1 for _t, w, _ in sim.events if w == "refused")
        out = {
            "wave": wave,
            "first_wave": first,
            "state": st["state"],
            "blast_radius": st["took"],
            "took_after_crossing": late,
            "refused_after_listing": refused,
            "pause_after_crossing_s": (paused - cross) if paused and cross else None,
            "pause_after_start_s": (paused - t0) if paused else None,
            "reason": st["reason"],
        }
        if st["state"] in ("running", "paused"):
            await _rollout(s, sim.url, sim.vendor, cid, "abort")
        sim.target = None
        return out

    r = asyncio.run(sim.run(scenario))
    log(
        f"rollout [bad image, first wave {wave:g} % = {r['first_wave']} devices]: {r['state']} "
        f"({r['reason']}); blast radius {r['blast_radius']} devices, "
        f"{r['took_after_crossing']} of them started after the threshold was crossed, "
        f"{r['refused_after_listing']} listed it just before the pause and were refused; "
        f"paused {_s(r['pause_after_crossing_s'])} after the crossing, "
        f"{_s(r['pause_after_start_s'])} after the start"
    )
    return r


def _s(v):
    return "-" if v is None else f"{v * 1000:.0f} ms" if v < 1 else f"{v:.1f} s"


def good(sim, fleet, data, waves, plain, log):
    cid = "plain-3" if plain else "good-2"
    n = len(sim.devices)
    if plain:
        fleet.content(MODEL, cid, data, version=3)
    else:
        fleet.hold(cid, data)

    async def scenario(s):
        sim.events.clear()
        t0 = time.monotonic()
        sim.target = (cid, True)
        if not plain:
            await _rollout(s, sim.url, sim.vendor, cid, "start", waves=waves)
        done = None
        deadline = t0 + (len(waves.split(",")) + 2) * (2 * sim.poll + sim.apply) + 60
        marks = {}
        while time.monotonic() < deadline:
            active = sum(1 for _t, w, _ in sim.events if w == "active")
            if not plain:
                st = await _state(s, sim.url, sim.vendor, cid)
                marks.setdefault(st["wave"], time.monotonic() - t0)
                if st["state"] == "done" and active == n:
                    done = time.monotonic()
                    break
            elif active == n:
                done = time.monotonic()
                break
            await asyncio.sleep(0.05)
        active = sum(1 for _t, w, _ in sim.events if w == "active")
        sim.target = None
        return {
            "all": active == n,
            "active": active,
            "seconds": done and done - t0,
            "marks": marks,
        }

    r = asyncio.run(sim.run(scenario))
    what = "plain upload" if plain else f"good image, waves {waves}"
    waves_at = ", ".join(f"{w:g} % at {t:.1f} s" for w, t in sorted(r["marks"].items()))
    log(
        f"rollout [{what}]: {r['active']}/{n} devices on it"
        + (f" after {r['seconds']:.1f} s" if r["seconds"] else " (timed out)")
        + (f" (waves started: {waves_at})" if waves_at else "")
    )
    return r


async def _enable(url, vendor, sns, concurrency=16):
    gate = asyncio.Semaphore(concurrency)
    data = {"enable": "true", "owner": vendor["rid"]}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, headers=_vendor_hdr(vendor)) as s:

        async def one(sn):
            async with gate, s.post(f"{url}/provision/manage/model/{MODEL}/{sn}", data=data) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"enable {sn}: {r.status}")

        await asyncio.gather(*(one(sn) for sn in sns))


async def _activate(url, vendor, sns, concurrency=32):
    """{sn: CIK} of the devices that activated (at most `concurrency` at once, each request
    timed on its own, not while it waits its turn)."""
    gate, ciks = asyncio.Semaphore(concurrency), {}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as s:

        async def one(sn):
            form = {"vendor": vendor["vendor"], "model": MODEL, "sn": sn}
            async with gate:
                try:
                    async with s.post(f"{url}/provision/activate", data=form) as r:
                        body = (await r.text()).strip()
                        if r.status == 200 and len(body) == 40:
                            ciks[sn] = body
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass

        await asyncio.gather(*(one(sn) for sn in sns))
    return ciks


class _Fleet:
    """The vendor's side of the runs: MODEL set up, its content plain or held."""

    def __init__(self, url, vendor):
        self.c = Client(url, cik=vendor["cik"], timeout=120)
        self.c.setup(MODEL)

    def content(self, model, cid, data, version=None):
        """Content cid created (kept if it exists, as a held one is) and its bytes uploaded."""
        meta = f"sha256={hashlib.sha256(data).hexdigest()}&version={version}"
        try:
            self.c.content_create(model, cid, meta=meta)
        except Conflict:
            pass
        self.c.content_upload(model, cid, data)

    def hold(self, cid, data):
        self.c.request("POST", f"/exoprov/v1/model/{MODEL}/rollouts/{cid}/hold", (200,))
        return self.content(MODEL, cid, data, version=cid)


def run(devices=10_000, poll=150.0, apply=2.0, size=16 * 1024, waves=(1, 5), log=print,
        min_devices=10, max_failures=20.0, seed=1, scenarios=("good", "plain")):  # fmt: skip
    """Returns a dict of figures (see main())."""
    rng = random.Random(seed)
    with RealServer("--activation-limit", "0", "--rollout-check", "0.5") as srv:
        vendor = srv.add_vendor("rolloutvendor")
        fleet = _Fleet(srv.url, vendor)
        names = [f"dev{i:06d}" for i in range(devices)]
        t = time.monotonic()
        asyncio.run(_whitelist(srv.url, vendor, names, None))
        asyncio.run(_enable(srv.url, vendor, names))
        ciks = {}
        for _ in range(3):  # one lost to a loaded machine: enabled again (a new CIK), again
            left = [sn for sn in names if sn not in ciks]
            if not left:
                break
            if len(left) < len(names):
                asyncio.run(_enable(srv.url, vendor, left))
            ciks.update(asyncio.run(_activate(srv.url, vendor, left)))
        if len(ciks) != devices:
            raise RuntimeError(f"setup: {len(ciks)} of {devices} activated")
        log(f"rollout: {devices} devices activated in {time.monotonic() - t:.1f} s; each polls "
            f"every {poll:g} s, applies in {apply:g} s")  # fmt: skip
        sim = Sim(srv.url, vendor, [Device(sn, ciks[sn]) for sn in names], poll, apply, rng)
        data = bytes(rng.getrandbits(8) for _ in range(size))
        out = {"devices": devices, "poll": poll, "apply": apply, "bad": [], "errors": sim.errors}
        for w in waves:
            out["bad"].append(bad(sim, fleet, data, w, min_devices, max_failures, log))
        if "good" in scenarios:
            out["good"] = good(sim, fleet, data, "1,10,50,100", False, log)
        if "plain" in scenarios:
            out["plain"] = good(sim, fleet, data, "", True, log)
        out["requests"] = sim.requests
        out["server_alive"] = srv.alive()
        digest = hashlib.sha256(data).hexdigest()[:12]
        log(f"rollout: {sim.requests} device requests, {len(sim.errors)} failed (tried again), "
            f"image {digest}")  # fmt: skip
    return out


def check(res):
    """Problems found in run()'s figures (empty when the rollouts behaved)."""
    bad_ = []
    for b in res["bad"]:
        if b["state"] != "paused" and b["state"] != "aborted":
            bad_.append(f"bad image, wave {b['wave']:g} %: {b['state']}, not paused")
        if b["blast_radius"] > b["first_wave"]:
            bad_.append(f"bad image, wave {b['wave']:g} %: reached beyond its first wave")
    for key in ("good", "plain"):
        if key in res and not res[key]["all"]:
            bad_.append(f"{key}: {res[key]['active']} of {res['devices']} devices on it")
    return bad_


def main(argv=None):
    ap = argparse.ArgumentParser(prog="rollout", description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--poll", type=float, default=150.0, help="seconds between two listings")
    ap.add_argument("--apply", type=float, default=2.0, help="seconds to apply and report")
    ap.add_argument("--size-kib", type=int, default=16)
    ap.add_argument("--waves", default="1,5", help="first waves of the bad-image runs")
    ap.add_argument(
        "--no-good", action="store_true", help="only the bad-image runs (no good, no plain)"
    )
    ap.add_argument("--min-devices", type=int, default=10)
    ap.add_argument("--max-failures", type=float, default=20.0)
    a = ap.parse_args(argv)
    res = run(
        a.devices,
        a.poll,
        a.apply,
        a.size_kib * 1024,
        [float(w) for w in a.waves.split(",")],
        log=lambda *args: print(*args, flush=True),
        min_devices=a.min_devices,
        max_failures=a.max_failures,
        scenarios=() if a.no_good else ("good", "plain"),
    )
    problems = check(res)
    for p in problems:
        print(f"rollout: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(procs.main(main))
