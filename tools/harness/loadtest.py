"""Load: a large whitelist, many devices activating, many downloading, through the balancer.

`python -m tools.harness.loadtest [--sns 100000] [--devices 10000] [--downloads 2000]
[--size-kib 1024] [--instances 1,2,3] [--concurrency 500]` runs, for each instance count, the
production arrangement (tools/harness/cluster.py: nginx terminating TLS before N
`exoprov server` instances on one database) and:

1. whitelists `--sns` serial numbers in one CSV request, enables the first `--devices`;
2. all devices activate at the same moment (at most `--concurrency` connections open at
   once, one new TLS connection per device, as a device does);
3. the first `--downloads` devices fetch a 1 MiB image in 64 KiB Range requests on their
   own keep-alive connection, as the agent does, and check its sha256.

Prints activations per second and MiB/s for each instance count side by side; exits 1 on
any error (a non-2xx answer, a wrong byte, a connection error). `--instances 0` runs one
server without nginx (plain HTTP), as `make test`'s small sample does.
"""

import argparse
import asyncio
import hashlib
import ssl
import sys
import time

import aiohttp
from exoprov.fleet.client import Client

from tools.harness import procs
from tools.harness.faults.faultserver import image
from tools.harness.faults.realserver import RealServer

MODEL = "loadmodel"
CHUNK = 64 * 1024


def _ssl(ca):
    return ssl.create_default_context(cafile=ca) if ca else None


async def _whitelist(url, vendor, sns, ca):
    """All serial numbers in one CSV request."""
    body = "".join(f"{sn}\r\n" for sn in sns).encode()
    hdr = {"X-Exosite-CIK": vendor["cik"], "Content-Type": "text/csv; charset=utf-8"}
    timeout = aiohttp.ClientTimeout(total=300)
    conn = aiohttp.TCPConnector(ssl=_ssl(ca) or False)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
        t0 = time.monotonic()
        async with s.post(f"{url}/provision/manage/model/{MODEL}/", data=body, headers=hdr) as r:
            text = await r.text()
            if r.status != 205:
                raise RuntimeError(f"whitelist: {r.status} {text[:200]}")
        return time.monotonic() - t0


async def _enable_all(url, vendor, sns, ca):
    hdr = {"X-Exosite-CIK": vendor["cik"]}
    data = {"enable": "true", "owner": vendor["rid"]}
    conn = aiohttp.TCPConnector(limit=16, ssl=_ssl(ca) or False)
    async with aiohttp.ClientSession(connector=conn, headers=hdr) as s:

        async def one(sn):
            async with s.post(f"{url}/provision/manage/model/{MODEL}/{sn}", data=data) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"enable {sn}: {r.status}")

        await asyncio.gather(*(one(sn) for sn in sns))


async def _activate_all(url, vendor, sns, errors, ca=None, concurrency=500):
    ctx = _ssl(ca) or False
    conn = aiohttp.TCPConnector(limit=concurrency, force_close=True, ssl=ctx)
    timeout = aiohttp.ClientTimeout(total=300)
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


async def _download_all(url, vendor, ciks, cid, size, digest, errors, ca=None, concurrency=500):
    timeout = aiohttp.ClientTimeout(total=600)
    gate = asyncio.Event()
    room = asyncio.Semaphore(concurrency)
    q = f"vendor={vendor['vendor']}&model={MODEL}&id={cid}"
    ctx = _ssl(ca) or False

    async def one(cik):
        await gate.wait()
        async with room:
            conn = aiohttp.TCPConnector(limit=1, ssl=ctx)
            hdr = {"X-Exosite-CIK": cik}
            async with aiohttp.ClientSession(connector=conn, timeout=timeout, headers=hdr) as s:
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


def _front(instances, workers, db=None):
    """-> (context manager, url, ca, alive()). `db`: a PostgreSQL URL, or None for SQLite."""
    if not instances:
        srv = RealServer("--activation-limit", "0", db=db)
        return srv, srv.url, None, srv.alive
    from tools.harness.cluster import Cluster

    extra = ("--activation-limit", "0")
    c = Cluster(instances=instances, workers=workers, extra=extra, db=db)
    return c, c.url, c.ca, lambda: all(s.alive() for s in c.servers)


def run(devices=1000, downloads=200, size=1 << 20, log=print, instances=0, sns=None,
        concurrency=500, workers=1, db=None):  # fmt: skip
    """Returns a dict of figures; raises nothing for load errors (they are counted)."""
    front, url, ca, alive = _front(instances, workers, db)
    with front:
        vendor = front.add_vendor("loadvendor")
        fleet = Client(url, cik=vendor["cik"], ca_file=ca, timeout=120)
        fleet.setup(MODEL)
        names = [f"dev{i:06d}" for i in range(max(sns or devices, devices))]
        t_wl = asyncio.run(_whitelist(url, vendor, names, ca))
        where = f"{instances} instance(s) behind nginx (TLS)" if instances else "one server"
        log(f"load [{where}]: {len(names)} serial numbers whitelisted in one CSV request "
            f"in {t_wl:.2f} s")  # fmt: skip
        data = image(size, seed=7)
        fleet.publish(MODEL, "firmware-load", data, version="1")
        digest = hashlib.sha256(data).hexdigest()
        chosen_sns = names[:devices]
        asyncio.run(_enable_all(url, vendor, chosen_sns, ca))
        errors = []
        ciks, t_act = asyncio.run(_activate_all(url, vendor, chosen_sns, errors, ca, concurrency))
        log(f"load [{where}]: {len(ciks)}/{devices} devices activated at once in {t_act:.2f} s: "
            f"{len(ciks) / t_act:.0f} activations/s")  # fmt: skip
        chosen = list(ciks.values())[:downloads]
        t_dl = asyncio.run(
            _download_all(
                url, vendor, chosen, "firmware-load", size, digest, errors, ca, concurrency
            )  # fmt: skip
        )
        mib = len(chosen) * size / (1 << 20)
        log(f"load [{where}]: {len(chosen)} devices downloaded {size >> 10} KiB each at once "
            f"in {t_dl:.2f} s: {mib / t_dl:.1f} MiB/s")  # fmt: skip
        ok = alive()
    return {
        "instances": instances,
        "whitelisted": len(names),
        "activated": len(ciks),
        "activations_per_s": len(ciks) / t_act,
        "downloaded": len(chosen),
        "mib_per_s": mib / t_dl,
        "errors": errors,
        "server_alive": ok,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(prog="loadtest", description=__doc__.split("\n")[0])
    ap.add_argument("--sns", type=int, default=100_000, help="whitelisted in one CSV request")
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--downloads", type=int, default=2_000)
    ap.add_argument("--size-kib", type=int, default=1024)
    ap.add_argument("--instances", default="1,2,3", help="comma-separated; 0 = no nginx")
    ap.add_argument("--workers", type=int, default=1, help="--workers of each instance")
    ap.add_argument("--concurrency", type=int, default=500, help="connections open at once")
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite",
                    help="postgres: the instances share one embedded PostgreSQL")  # fmt: skip
    args = ap.parse_args(argv)
    results = []
    pg = None
    if args.db == "postgres":
        from tools.harness.pgkit import EmbeddedPostgres

        pg = EmbeddedPostgres()
    try:
        for n in [int(x) for x in args.instances.split(",")]:
            results.append(
                run(
                    args.devices,
                    args.downloads,
                    args.size_kib * 1024,
                    instances=n,
                    sns=args.sns,
                    concurrency=args.concurrency,
                    workers=args.workers,
                    db=pg.new_database() if pg else None,
                )  # fmt: skip
            )
    finally:
        if pg:
            pg.close()
    ok = True
    print(f"load ({args.db}): {args.sns} serial numbers whitelisted, "
          f"{args.devices} devices activating, "
          f"{args.downloads} downloading {args.size_kib} KiB in 64 KiB Ranges, "
          f"{args.concurrency} connections at once:")  # fmt: skip
    for res in results:
        errs = res["errors"]
        kinds = {}
        for e in errs:
            kinds[e] = kinds.get(e, 0) + 1
        where = f"{res['instances']} instance(s)" if res["instances"] else "1 server, no nginx"
        print(f"  {where:<20} {res['activations_per_s']:>7.0f} activations/s  "
              f"{res['mib_per_s']:>7.1f} MiB/s  {len(errs)} errors"
              + (f" {kinds}" if errs else ""))  # fmt: skip
        ok = ok and not errs and res["server_alive"] and res["activated"] == args.devices
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(procs.main(main))
