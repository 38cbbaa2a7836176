"""Load: 1 000 devices activating and 200 downloading a 1 MiB image at once, on loopback.

`python -m tools.harness.loadtest [--devices 1000] [--downloads 200] [--size-kib 1024]`
starts its own server, whitelists and enables the devices, then (1) all devices activate at
the same moment,
(2) the first `--downloads` of them fetch the image at the same moment in 64 KiB Range requests
on keep-alive connections, as the agent does, and check its sha256. Prints activations per
second and MiB/s; exits 1 on any error (a non-2xx answer, a wrong byte, a connection error).
"""

import argparse
import asyncio
import hashlib
import sys
import time

import aiohttp

from tools.harness.faults.faultserver import image
from tools.harness.faults.realserver import Fleet, RealServer

MODEL = "loadmodel"
CHUNK = 64 * 1024


async def _enable_all(url, vendor, sns):
    hdr = {"X-Exosite-CIK": vendor["cik"]}
    data = {"enable": "true", "owner": vendor["rid"]}
    conn = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(connector=conn, headers=hdr) as s:

        async def one(sn):
            async with s.post(f"{url}/provision/manage/model/{MODEL}/{sn}", data=data) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"enable {sn}: {r.status}")

        await asyncio.gather(*(one(sn) for sn in sns))


async def _activate_all(url, vendor, sns, errors):
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=120)
    ciks = {}
    gate = asyncio.Event()
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:

        async def one(sn):
            await gate.wait()
            form = {"vendor": vendor["vendor"], "model": MODEL, "sn": sn}
            try:
                async with s.post(f"{url}/provision/activate", data=form) as r:
                    body = await r.text()
                    if r.status == 200 and len(body.strip()) == 40:
                        ciks[sn] = body.strip()
                    else:
                        errors.append(f"activate: {r.status}")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                errors.append(f"activate: {type(exc).__name__}")

        tasks = [asyncio.create_task(one(sn)) for sn in sns]
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        gate.set()
        await asyncio.gather(*tasks)
        return ciks, time.monotonic() - t0


async def _download_all(url, vendor, ciks, cid, size, digest, errors):
    timeout = aiohttp.ClientTimeout(total=300)
    gate = asyncio.Event()
    q = f"vendor={vendor['vendor']}&model={MODEL}&id={cid}"

    async def one(cik):
        conn = aiohttp.TCPConnector(limit=1)
        hdr = {"X-Exosite-CIK": cik}
        async with aiohttp.ClientSession(connector=conn, timeout=timeout, headers=hdr) as s:
            await gate.wait()
            h = hashlib.sha256()
            try:
                for off in range(0, size, CHUNK):
                    last = min(size, off + CHUNK) - 1
                    rng = {"Range": f"bytes={off}-{last}"}
                    async with s.get(f"{url}/provision/download?{q}", headers=rng) as r:
                        body = await r.read()
                        want = f"bytes {off}-{last}/{size}"
                        if r.status != 206 or r.headers.get("Content-Range") != want:
                            errors.append(f"download: {r.status}")
                            return
                        h.update(body)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                errors.append(f"download: {type(exc).__name__}")
                return
            if h.hexdigest() != digest:
                errors.append("download: sha256 mismatch")

    tasks = [asyncio.create_task(one(c)) for c in ciks]
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    gate.set()
    await asyncio.gather(*tasks)
    return time.monotonic() - t0


def run(devices=1000, downloads=200, size=1 << 20, log=print):
    """Returns a dict of figures; raises nothing for load errors (they are counted)."""
    with RealServer() as srv:
        vendor = srv.add_vendor("loadvendor")
        fleet = Fleet(srv.url, vendor)
        fleet.model(MODEL)
        sns = [f"dev{i:05d}" for i in range(devices)]
        fleet.add_sns(MODEL, sns)
        data = image(size, seed=7)
        fleet.content(MODEL, "firmware-load", data, version=1)
        digest = hashlib.sha256(data).hexdigest()
        asyncio.run(_enable_all(srv.url, vendor, sns))
        errors = []
        ciks, t_act = asyncio.run(_activate_all(srv.url, vendor, sns, errors))
        log(f"load: {len(ciks)}/{devices} devices activated at once in {t_act:.2f} s: "
            f"{len(ciks) / t_act:.0f} activations/s")  # fmt: skip
        chosen = list(ciks.values())[:downloads]
        t_dl = asyncio.run(
            _download_all(srv.url, vendor, chosen, "firmware-load", size, digest, errors)
        )
        mib = len(chosen) * size / (1 << 20)
        log(f"load: {len(chosen)} devices downloaded {size >> 10} KiB each at once in "
            f"{t_dl:.2f} s: {mib / t_dl:.1f} MiB/s")  # fmt: skip
        alive = srv.alive()
    return {
        "activated": len(ciks),
        "activations_per_s": len(ciks) / t_act,
        "downloaded": len(chosen),
        "mib_per_s": mib / t_dl,
        "errors": errors,
        "server_alive": alive,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(prog="loadtest", description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--downloads", type=int, default=200)
    ap.add_argument("--size-kib", type=int, default=1024)
    args = ap.parse_args(argv)
    res = run(args.devices, args.downloads, args.size_kib * 1024)
    errs = res["errors"]
    kinds = {}
    for e in errs:
        kinds[e] = kinds.get(e, 0) + 1
    print(f"load: {len(errs)} errors" + (f" {kinds}" if errs else ""))
    ok = not errs and res["server_alive"] and res["activated"] == args.devices
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
