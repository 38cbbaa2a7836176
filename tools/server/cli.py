"""`exoprov server` and `exoprov admin`."""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from . import storage
from .db import Duplicate
from .util import ApiError, check_name

DEFAULT_MAX_CONTENT = 64 * 1024 * 1024
DEFAULT_VENDOR_QUOTA = 4 * 1024 * 1024 * 1024


class CliError(Exception):
    pass


def _server_args(argv):
    p = argparse.ArgumentParser(prog="exoprov server", description="Provision API server")
    p.add_argument(
        "--db",
        default=storage.default_db(),
        required=storage.default_db() is None,
        help="SQLite database file (created if missing), or postgresql://user@host/dbname "
        "(default: $EXOPROV_DB)",
    )
    p.add_argument("--blobs", help="content directory (default: <db>.blobs)")
    _key_arg(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    p.add_argument(
        "--activation-window",
        type=int,
        default=86400,
        metavar="SECONDS",
        help="how long an enabled serial number may activate (default 86400)",
    )
    p.add_argument(
        "--activation-limit",
        type=int,
        default=10,
        metavar="N",
        help="failed activations per minute per source address (default 10, 0 = no limit)",
    )
    p.add_argument(
        "--max-content-bytes",
        type=int,
        default=DEFAULT_MAX_CONTENT,
        metavar="N",
        help="largest content upload (default 64 MiB)",
    )
    p.add_argument(
        "--vendor-quota-bytes",
        type=int,
        default=DEFAULT_VENDOR_QUOTA,
        metavar="N",
        help="bytes of content one vendor's models may hold in all; an upload past it gets "
        "413 (default 4 GiB, 0 = no quota)",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a request body may stall before 408 (default 30)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="a request's line and headers must arrive within this long of the connection "
        "opening (or of the request's first byte); else 408 and closed (default 20)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="a request body must arrive whole within this long of its headers; else 408 "
        "(default 300: a 64 MiB upload needs 1.8 Mbit/s)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=75.0,
        metavar="SECONDS",
        help="how long a kept-alive connection may wait for its next request (default 75)",
    )
    p.add_argument(
        "--max-connections-per-address",
        type=int,
        default=64,
        metavar="N",
        help="connections one client address may hold open at a time, per process; more "
        "are answered 503 (default 64, 0 = no cap; --trusted-proxy peers have none)",
    )
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve from N processes on the one port (default 1)",
    )
    p.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="a reverse proxy (address or network) whose X-Forwarded-For / Forwarded "
        "header names the client; repeatable (default: none, the headers are ignored)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object per line, with the procedure, status, time, bytes and a "
        "short hash of the credential of each request (default text)",
    )
    p.add_argument(
        "--metrics-token",
        default=os.environ.get("EXOPROV_METRICS_TOKEN"),
        metavar="TOKEN",
        help="/metrics asks for `Authorization: Bearer TOKEN` (default: the environment's "
        "EXOPROV_METRICS_TOKEN; without a token /metrics answers loopback clients only)",
    )
    p.add_argument(
        "--rollout-check",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often running rollouts are checked for a soak time that has passed (reports "
        "are acted on at once; default 2)",
    )
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.workers < 1:
        p.error("workers must be at least 1")
    try:
        from .proxies import parse_networks

        args.trusted = parse_networks(args.trusted_proxy)
    except ValueError as exc:
        p.error(f"--trusted-proxy: {exc}")
    if args.read_timeout <= 0:
        p.error("read-timeout must be positive")
    if min(args.header_timeout, args.body_timeout, args.idle_timeout) <= 0:
        p.error("header-timeout, body-timeout and idle-timeout must be positive")
    if args.max_connections_per_address < 0:
        p.error("max-connections-per-address must not be negative")
    if args.vendor_quota_bytes < 0:
        p.error("vendor-quota-bytes must not be negative")
    if args.activation_window < 1 or args.activation_limit < 0 or args.max_content_bytes < 0:
        p.error("window must be positive, limit and max-content-bytes not negative")
    return args


def _key_arg(p):
    p.add_argument(
        "--secret-key-file",
        metavar="FILE",
        help="the key that seals the secrets the database must show again (created 0600 "
        "when missing; default: $EXOPROV_SECRET_KEY_FILE, else <db>.key for SQLite, "
        "~/.config/exoprov/secret.key for PostgreSQL). Back it up apart from the database",
    )


def _key_path(args):
    from .secretkey import default_path

    return args.secret_key_file or default_path(args.db)


async def _attach_key(args, store, seal=True):
    """The secret key on the store; with `seal`, what the database still holds in clear
    sealed or dropped (atrest.py)."""
    from . import atrest

    changed = await atrest.prepare(store, _key_path(args), seal=seal)
    if changed:
        logging.getLogger("exoprov.server").warning(
            "sealed or dropped %d secrets the database held in clear", changed
        )


def server_main(argv):
    args = _server_args(argv)
    os.umask(0o077)  # the database, its WAL, the blobs, the key: the server's user only
    from .logs import setup

    setup(args.log_format)
    logging.getLogger("aiohttp.server").addFilter(_quiet_bad_requests)
    from .guard import raise_nofile

    args.nofile = raise_nofile()
    try:
        tls = _tls_context(args)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        sys.stderr.write(f"exoprov server: cannot load the TLS certificate or key: {exc}\n")
        return 1
    if tls is None:
        logging.getLogger("exoprov.server").warning(
            "serving plain HTTP (no --tls-cert/--tls-key): CIKs and content travel in the clear"
        )
    from .secretkey import SecretKeyError

    if not storage.is_postgres(args.db):
        from .atrest import tighten

        tighten(args.db, args.blobs or f"{args.db}.blobs")
    if args.workers > 1:
        try:  # migrated, sealed and swept once, before the workers open their connections
            asyncio.run(_sweep(args, storage.make_store(args.db)))
        except (OSError, SecretKeyError) as exc:
            sys.stderr.write(f"exoprov server: {exc}\n")
            return 1
        from .workers import supervise

        return supervise(args, tls, _worker)
    _fast_loop()
    try:
        return asyncio.run(_serve(args, storage.make_store(args.db), tls))
    except (OSError, SecretKeyError) as exc:  # the database, the key, the port: no traceback
        sys.stderr.write(f"exoprov server: {exc}\n")
        return 1


def _fast_loop():
    """uvloop when installed (a dependency except on Windows): about 15 % less CPU per
    request than asyncio's own loop on the Range download path."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _blobs(args, store):
    return storage.make_blobs(args.db, store, args.blobs)


async def _sweep(args, store):
    await storage.start(store)
    try:
        await _attach_key(args, store)
        await storage.sweep(_blobs(args, store), store)
    finally:
        await storage.stop(store)


def _tls_context(args):
    if not args.tls_cert:
        return None
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # TLS 1.2 and 1.3 (mbedtls on boards: 1.2)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    return ctx


def _worker(args, tls, sock, ready):
    """One of --workers N processes (forked): its own store connection, the shared port."""
    _fast_loop()
    return asyncio.run(_serve(args, storage.make_store(args.db), tls, sock=sock, ready=ready))


def _quiet_bad_requests(record):
    """aiohttp logs a traceback for every unparsable request; one line is enough (the
    client already got its 400)."""
    from aiohttp.http_exceptions import HttpProcessingError

    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError):
        record.msg, record.args = "malformed request: %s", (type(exc).__name__,)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


async def _serve(args, store, tls=None, sock=None, ready=None):
    """Serve until SIGINT/SIGTERM. `sock`: a listening socket (a worker's); `ready`: called
    once listening, instead of printing the listening line (the supervisor prints it)."""
    from aiohttp import web

    from .app import AccessLogger, make_app
    from .guard import Guard, GuardedRunner
    from .state import Server

    await storage.start(store)
    await _attach_key(args, store, seal=sock is None)  # workers: the supervisor sealed
    blobs = _blobs(args, store)
    if sock is None:  # with workers the supervisor sweeps once, before they start
        await storage.sweep(blobs, store)
    loop = asyncio.get_running_loop()
    limiter = storage.make_limiter(store, args.activation_limit)
    server = Server(
        store,
        blobs,
        limiter,
        args.activation_window,
        args.max_content_bytes,
        read_idle=args.read_timeout,
        trusted=args.trusted,
        vendor_quota=args.vendor_quota_bytes,
    )
    server.rollout_tick = max(args.rollout_check, 0.05)
    guard = Guard(
        args.header_timeout,
        args.body_timeout,
        args.max_connections_per_address,
        args.trusted,
        getattr(args, "nofile", None),
    )
    runner = GuardedRunner(
        make_app(server, metrics_token=args.metrics_token),
        guard,
        handle_signals=False,
        access_log_class=AccessLogger,
        keepalive_timeout=args.idle_timeout,
        lingering_time=5.0,
        shutdown_timeout=5.0,
    )
    await runner.setup()
    try:
        if sock is not None:
            site = web.SockSite(runner, sock, ssl_context=tls)
        else:
            site = web.TCPSite(
                runner, args.host, args.port, reuse_address=True, ssl_context=tls, backlog=1024
            )
        await site.start()
        if ready is not None:
            ready()
        else:
            host, port = runner.addresses[0][:2]
            scheme = "https" if tls else "http"
            sys.stdout.write(f"exoprov server: listening on {scheme}://{host}:{port}\n")
            sys.stdout.flush()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        logging.getLogger("exoprov.server").info("stopping")
    finally:
        await runner.cleanup()
        await storage.stop(store)
    return 0


# -- admin ------------------------------------------------------------------------------------


def _admin_args(argv):
    p = argparse.ArgumentParser(prog="exoprov admin", description="server administration")
    sub = p.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add-vendor", help="create a vendor and print its CIK and RID as JSON")
    add.add_argument("name")
    db = {"default": storage.default_db(), "required": storage.default_db() is None,
          "help": "the server's database (default: $EXOPROV_DB)"}  # fmt: skip
    add.add_argument("--db", **db)
    add.add_argument("--if-missing", action="store_true", help="print an existing vendor")
    _key_arg(add)
    ls = sub.add_parser("list-vendors", help="vendor names and rids (never CIKs)")
    ls.add_argument("--db", **db)
    rot = sub.add_parser(
        "rotate-cik",
        help="give a vendor a new CIK and print it as JSON (the old one and the vendor's "
        "dashboard sessions end)",
    )
    rot.add_argument("name")
    rot.add_argument("--db", **db)
    _key_arg(rot)
    key = sub.add_parser(
        "rotate-secret-key",
        help="seal the database's secrets under a new key, which replaces the old one in "
        "--secret-key-file",
    )
    key.add_argument("--db", **db)
    _key_arg(key)
    return p.parse_args(argv)


def admin_main(argv):
    args = _admin_args(argv)
    os.umask(0o077)  # a database made here is the server's user's only
    return asyncio.run(_admin(args))


async def _admin(args):
    from .secretkey import SecretKeyError

    if args.cmd != "add-vendor" and not (storage.is_postgres(args.db) or os.path.exists(args.db)):
        sys.stderr.write(f"exoprov admin: no database at {storage.describe(args.db)}\n")
        return 1
    try:
        store = await storage.open_store(args.db)
    except OSError as exc:
        sys.stderr.write(f"exoprov admin: {exc}\n")
        return 1
    try:
        if args.cmd == "list-vendors":
            for vendor in await store.vendors():
                print(f"{vendor.name},{vendor.rid}")
            return 0
        if not storage.is_postgres(args.db):
            from .atrest import tighten

            tighten(args.db)
        if args.cmd == "rotate-secret-key":
            from .atrest import rotate

            await _attach_key(args, store)
            n, old, new = await rotate(store, _key_path(args))
            print(json.dumps({"resealed": n, "old_keys": old, "key": new}))
            return 0
        await _attach_key(args, store)
        if args.cmd == "add-vendor":
            record = await add_vendor(store, args.name, args.if_missing)
        else:
            record = await rotate_cik(store, args.name)
        print(json.dumps(record))
        return 0
    except (CliError, SecretKeyError) as exc:
        sys.stderr.write(f"exoprov admin: {exc}\n")
        return 1
    finally:
        await storage.stop(store)


async def add_vendor(store, name, if_missing=False):
    """Create vendor `name` (a client, its CIK, the name registered to it)."""
    from .state import new_cik, new_rid

    try:
        check_name(name, "vendor name")
    except ApiError as exc:
        raise CliError(exc.reason)
    async with store.tx():
        existing = await store.vendor_by_name(name)
        if existing is not None:
            if not if_missing:
                raise CliError(f"vendor {name!r} already exists")
            cik = await store.vendor_cik(existing.rid)
            return {"vendor": name, "cik": cik, "rid": existing.rid}
        rid, cik = new_rid(), new_cik()
        await store.add_client(rid, None, "vendor", cik, "active")
        try:
            await store.add_vendor_name(name, rid)
        except Duplicate:
            raise CliError(f"vendor {name!r} already exists")
    return {"vendor": name, "cik": cik, "rid": rid}


async def rotate_cik(store, name):
    """`exoprov admin rotate-cik NAME`: the vendor's new CIK (vendor.new_cik)."""
    from .vendor import new_cik

    try:
        check_name(name, "vendor name")
    except ApiError as exc:
        raise CliError(exc.reason)
    found = await store.vendor_by_name(name)
    if found is None:
        raise CliError(f"no vendor {name!r}")
    return {"vendor": name, "cik": await new_cik(store, found.rid), "rid": found.rid}
