"""Shared fixtures: the real server on a free loopback port, vendors, HTTP sessions."""

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tools.harness import procs
from tools.harness.launch import ROOT, ServerProcess

_names = itertools.count(1)


def exoprov(*args, check=True, **kw):
    """Run `exoprov ARGS...` from this checkout; returns CompletedProcess (text)."""
    cmd = [sys.executable, "-m", "exoprov.cli", *map(str, args)]
    return subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, check=check, timeout=60, **kw
    )


class Server(ServerProcess):
    """One `exoprov server` process on 127.0.0.1 with its own database in `tmp` (SQLite), or
    `db` (a postgresql:// URL)."""

    def __init__(self, tmp: Path, *extra, db=None):
        super().__init__(*extra, workdir=tmp, db=db)
        self.host = "127.0.0.1"

    def blob_names(self):
        """The content blobs stored, uploads in progress included: files in the blob
        directory (SQLite), or blob ids in the database (PostgreSQL)."""
        if str(self.db).startswith("postgresql://"):
            from pgkit import psql

            return psql(str(self.db), "SELECT id FROM pg_blobs").split()
        return [p.name for p in (self.dir / "exoprov.db.blobs").iterdir()]

    def add_vendor(self, name=None):
        """Create a vendor with the admin command; returns {"vendor", "cik", "rid"}."""
        return super().add_vendor(name or f"vendor{os.getpid()}x{next(_names)}")

    def session(self, cik=None, token=None, vendor=None):
        """A keep-alive requests.Session whose URLs are relative to this server."""
        return Client(self.url, cik=cik, token=token, vendor=vendor)


class Client(requests.Session):
    def __init__(self, base, cik=None, token=None, vendor=None):
        super().__init__()
        self.base = base
        if cik:
            self.headers["X-Exosite-CIK"] = cik
        if token:
            self.headers["X-Exosite-Token"] = token
        if vendor:
            self.headers["X-Exosite-Vendor"] = vendor

    def request(self, method, url, *a, **kw):
        if url.startswith("/"):
            url = self.base + url
        kw.setdefault("timeout", 30)
        kw.setdefault("verify", self.verify)  # else REQUESTS_CA_BUNDLE overrides .verify
        return super().request(method, url, *a, **kw)


def pytest_unconfigure(config):
    """Whatever the fixtures did not stop (an interrupted run) is stopped on the way out."""
    procs.stop_all()


def pytest_generate_tests(metafunc):
    """The conformance suite (test_server_*.py) runs on both storage engines: every test there
    that uses a server runs as [sqlite] and [postgres]."""
    if metafunc.module.__name__.startswith("test_server_") and "backend" in (
        metafunc.fixturenames
    ):
        metafunc.parametrize("backend", ["sqlite", "postgres"], indirect=True, scope="session")


@pytest.fixture(scope="session")
def backend(request):
    """The storage engine of the `server` and `make_server` fixtures: "sqlite" unless the
    test is parametrized (pytest_generate_tests)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def pg():
    """One embedded PostgreSQL cluster for the whole run (host_tests/pgkit.py)."""
    from pgkit import EmbeddedPostgres

    cluster = EmbeddedPostgres()
    yield cluster
    cluster.close()


@pytest.fixture
def pg_url(pg):
    """The URL of a fresh, empty PostgreSQL database (its own per test)."""
    return pg.new_database()


def _db(backend, request):
    return request.getfixturevalue("pg").new_database() if backend == "postgres" else None


@pytest.fixture(scope="session")
def server(tmp_path_factory, backend, request):
    """A server shared by the whole run: 24 h window, activation rate limit lifted."""
    srv = Server(
        tmp_path_factory.mktemp("server"), "--activation-limit", "0", db=_db(backend, request)
    )
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path_factory, backend, request):
    """Factory for a private server with its own options (short window, rate limit...)."""
    started = []

    def make(*extra):
        srv = Server(tmp_path_factory.mktemp("srv"), *extra, db=_db(backend, request))
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def vendor(server):
    """A fresh vendor on the shared server: {"vendor", "cik", "rid"}."""
    return server.add_vendor()


@pytest.fixture
def vclient(server, vendor):
    """A session authenticated as `vendor` with its CIK."""
    with server.session(cik=vendor["cik"]) as s:
        yield s
