"""Shared fixtures: the real server on a free loopback port, vendors, HTTP sessions."""

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tools.harness.launch import ROOT, ServerProcess

_names = itertools.count(1)


def exoprov(*args, check=True, **kw):
    """Run `exoprov ARGS...` from this checkout; returns CompletedProcess (text)."""
    cmd = [sys.executable, "-m", "exoprov.cli", *map(str, args)]
    return subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, check=check, timeout=60, **kw
    )


class Server(ServerProcess):
    """One `exoprov server` process on 127.0.0.1 with its own database in `tmp`."""

    def __init__(self, tmp: Path, *extra):
        super().__init__(*extra, workdir=tmp)
        self.host = "127.0.0.1"

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


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A server shared by the whole run: 24 h window, activation rate limit lifted."""
    srv = Server(tmp_path_factory.mktemp("server"), "--activation-limit", "0")
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path_factory):
    """Factory for a private server with its own options (short window, rate limit...)."""
    started = []

    def make(*extra):
        srv = Server(tmp_path_factory.mktemp("srv"), *extra)
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
