"""`exoprov server --workers N`: N forked processes serving one port.

Each worker listens on its own SO_REUSEPORT socket bound to the same address, so the kernel
spreads new connections evenly over them; the supervisor keeps a bound, never listening
socket on that port for as long as it runs (it holds the port number a `--port 0` picked and
receives no connection). The supervisor prints the listening line once every worker is
listening, restarts a worker that dies, and on SIGINT/SIGTERM stops them all.

The supervisor migrates the schema and sweeps unreferenced blobs once, before the workers
start. Each worker has its own database connection (SQLite in WAL mode: writers queue on
`BEGIN IMMEDIATE` and `busy_timeout`); the failed activations are counted in the database
(ratelimit.SharedLimiter), so the workers count an address together.
"""

import logging
import os
import select
import signal
import socket
import sys
import time

log = logging.getLogger("exoprov.server")

_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0


def _socket(host, port, listen):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(1024)
            sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _spawn(args, tls, serve, host, port, ready_w, others):
    pid = os.fork()
    if pid:
        return pid
    # the worker: default signal dispositions (its event loop installs its own)
    code = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for fd in others:
            os.close(fd)
        sock = _socket(host, port, listen=True)
        code = serve(args, tls, sock, lambda: os.write(ready_w, b"."))
    except BaseException:
        log.exception("worker %d failed", os.getpid())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)


def supervise(args, tls, serve):
    """Run `serve(args, tls, sock, ready)` in args.workers processes; -> exit status."""
    try:
        holder = _socket(args.host, args.port, listen=False)
    except OSError as exc:
        sys.stderr.write(f"exoprov server: {exc}\n")
        return 1
    host, port = holder.getsockname()[:2]
    ready_r, ready_w = os.pipe()
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(1))
    children = set()
    others = (holder.fileno(), ready_r)
    try:
        for _ in range(args.workers):
            children.add(_spawn(args, tls, serve, host, port, ready_w, others))
        if not _wait_ready(ready_r, args.workers, children, stopping):
            sys.stderr.write("exoprov server: a worker did not start\n")
            return 1
        log.info("%d workers", args.workers)
        scheme = "https" if tls else "http"
        sys.stdout.write(f"exoprov server: listening on {scheme}://{host}:{port}\n")
        sys.stdout.flush()
        while not stopping:
            pid, status = _reap()
            if pid and pid in children and not stopping:
                children.discard(pid)
                log.warning("worker %d exited (status %d), starting another", pid, status)
                time.sleep(0.5)
                children.add(_spawn(args, tls, serve, host, port, ready_w, others))
            elif not pid:
                time.sleep(0.2)
        return 0
    finally:
        _stop(children)
        holder.close()
        os.close(ready_r)
        os.close(ready_w)


def _reap():
    try:
        pid, status = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return 0, 0
    return pid, (os.waitstatus_to_exitcode(status) if pid else 0)


def _wait_ready(ready_r, n, children, stopping):
    got = 0
    deadline = time.monotonic() + _START_TIMEOUT
    while got < n and not stopping and time.monotonic() < deadline:
        r, _w, _x = select.select([ready_r], [], [], 0.2)
        if r:
            got += len(os.read(ready_r, n - got))
        pid, _status = _reap()
        if pid in children:
            return False
    return got >= n


def _stop(children):
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + _STOP_TIMEOUT
    left = set(children)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                left.discard(pid)
        if left:
            time.sleep(0.05)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
