"""Dashboard page times at scale: one model with N serial numbers (default 100 000).

    python -m tools.harness.uibench [--sns 100000] [--rounds 5]

The serial numbers go in through the API (CSV batches); clients and device reports for most
of them are written straight into the server's SQLite file (enabling and activating 100 000
devices one request each would take the whole run), in the proportions a fleet in the middle
of a rollout has. Then a logged-in session fetches the pages an operator uses: the first,
middle and last page of serial numbers (keyset: `after` / `before`), searches and filters by
status and version, one device, and the rollout view. Printed per page: the median and worst
wall time of the whole HTTP request, and the server's own query time (Server-Timing). The
API's offset listing of the same rows is timed beside, for comparison.
"""

import argparse
import re
import secrets
import sqlite3
import statistics
import sys
import time

import requests
from exoprov.fleet.client import Client

from tools.harness import procs

from .launch import ServerProcess

_BATCH = 2500  # a CSV body stays under the API's 64 KiB form cap


def _fill(srv, vendor, model, count):
    sns = [f"sn-{i:06d}" for i in range(count)]
    rows = [(sn, f"batch {i // _BATCH}") for i, sn in enumerate(sns)]
    with Client(srv.url, cik=vendor["cik"], timeout=120) as c:
        c.setup(model, rows, code="bench", batch=_BATCH)
    db = sqlite3.connect(srv.db, timeout=30)
    try:
        with db:
            (model_id,) = db.execute(
                "SELECT id FROM models WHERE vendor_rid = ? AND name = ?", (vendor["rid"], model)
            ).fetchone()
            now = int(time.time())
            clients, links, status = [], [], []
            for i, sn in enumerate(sns):
                kind = i % 10  # 0-5 activated, 6 notactivated, 7 disabled, 8-9 no client
                if kind >= 8:
                    continue
                rid = secrets.token_hex(20)
                state = ("activated", "notactivated", "disabled")[min(max(kind - 5, 0), 2)]
                clients.append((rid, vendor["rid"], "device", state, now))
                links.append((rid, vendor["rid"], model_id, sn))
                if state == "activated":
                    version = "3.0" if i % 997 == 0 else ("2.0" if i % 3 == 0 else "1.0")
                    rstate = "downloading" if i % 7 == 0 else "active"
                    error = "ApiError(500)" if i % 101 == 0 else None
                    status.append((model_id, sn, now, "10.0.0.1", now, rstate, version, error))
            db.executemany(
                "INSERT INTO clients (rid, parent, kind, state, enabled_at) VALUES (?,?,?,?,?)",
                clients,
            )
            db.executemany(
                "UPDATE sns SET client_rid = ?, enabled_by = ? WHERE model_id = ? AND sn = ?",
                links,
            )
            db.executemany(
                "INSERT INTO devstatus (model_id, sn, last_seen, address, reported, state, "
                "version, error) VALUES (?,?,?,?,?,?,?,?)",
                status,
            )
        db.execute("ANALYZE")
    finally:
        db.close()
    return sns


def _login(srv, vendor):
    s = requests.Session()
    page = s.get(srv.url + "/ui/login").text
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    r = s.post(srv.url + "/ui/login", data={"csrf": token, "credential": vendor["cik"]})
    assert r.status_code == 200 and "Models" in r.text, r.status_code
    return s


def _time(s, url, rounds, headers=None):
    walls, dbs = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        r = s.get(url, headers=headers)
        walls.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (url, r.status_code, r.text[:200])
        m = re.search(r"db;dur=([0-9.]+)", r.headers.get("Server-Timing", ""))
        if m:
            dbs.append(float(m.group(1)))
    rows = r.text.count("<tr>") - 1 if "<table" in r.text else len(r.text.splitlines())
    return statistics.median(walls), max(walls), (statistics.median(dbs) if dbs else None), rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="uibench", description=__doc__.split("\n")[0])
    p.add_argument("--sns", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    with ServerProcess("--activation-limit", "0") as srv:
        vendor = srv.add_vendor("bench")
        t = time.perf_counter()
        sns = _fill(srv, vendor, "fleet", args.sns)
        print(f"uibench: {len(sns)} serial numbers loaded in {time.perf_counter() - t:.1f} s")
        s = _login(srv, vendor)
        base = f"{srv.url}/ui/m/bench/fleet"
        mid, last = sns[len(sns) // 2], sns[-1]
        pages = [
            ("first page", base + "/"),
            ("page after the middle sn", f"{base}/?after={mid}"),
            ("last page (before the end)", f"{base}/?before={last}~"),
            ("search a common part ('00')", base + "/?q=00"),
            ("search a rare part (one sn)", f"{base}/?q={sns[-7]}"),
            ("status activated", base + "/?status=activated"),
            ("status notactivated", base + "/?status=notactivated"),
            ("status expired, after the middle", f"{base}/?status=expired&after={mid}"),
            ("status none (no client)", base + "/?status=none"),
            ("version 2.0 (common)", base + "/?version=2.0"),
            ("version 3.0 (rare)", base + "/?version=3.0"),
            ("activated + version 3.0 + q", base + "/?status=activated&version=3.0&q=9"),
            ("one device", f"{base}/sn/{sns[0]}"),
            ("models", srv.url + "/ui/"),
        ]
        print(f"{'page':40} {'median ms':>10} {'worst ms':>9} {'query ms':>9} {'rows':>5}")
        for name, url in pages:
            med, worst, db, rows = _time(s, url, args.rounds)
            dbs = f"{db:9.1f}" if db is not None else f"{'':9}"
            print(f"{name:40} {med:10.1f} {worst:9.1f} {dbs} {rows:5}")
        up = s.get(base + "/content/").text
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', up).group(1)
        r = s.post(
            base + "/content/?id=firmware-3&version=3.0",
            data=b"x" * 1024,
            headers={"X-CSRF-Token": token, "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 200, r.text
        med, worst, _db, _rows = _time(s, base + "/rollout/firmware-3", args.rounds)
        print(f"{'rollout view (all ' + str(len(sns)) + ')':40} {med:10.1f} {worst:9.1f}")
        api = {"X-Exosite-CIK": vendor["cik"]}
        for offset in (0, len(sns) - 50):
            url = f"{srv.url}/provision/manage/model/fleet/?offset={offset}&limit=50&status=true"
            med, worst, _db, rows = _time(requests, url, args.rounds, headers=api)
            name = f"API list offset={offset}"
            print(f"{name:40} {med:10.1f} {worst:9.1f} {'':9} {rows:5}")
    return 0


if __name__ == "__main__":
    sys.exit(procs.main(main))
