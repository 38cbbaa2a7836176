"""PostgreSQL as the database of several instances: the same store interface as
SQLite, one CIK for simultaneous activations over two instances, 503 with Retry-After while
the database is down and recovery after, an upload cut short leaves the content as it was.
A real PostgreSQL (host_tests/pgkit.py), nothing mocked; the conformance suite itself runs
on it too (test_server_*.py [postgres])."""

import hashlib
import inspect
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import Server
from exoprov.server.db import Store
from exoprov.server.pgstore import PgStore, pg_sql
from pgkit import EmbeddedPostgres, psql
from serverkit import HEX40, add_content, add_sn, enable, new_model


def _methods(cls):
    return {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))}


def test_both_stores_have_the_same_methods():
    # what the handlers may call is the same on both engines; PostgreSQL adds only the
    # life of its pool (open, aclose) and the connection of the current transaction
    assert _methods(PgStore) - {"open", "aclose", "conn"} == _methods(Store)
    for name in _methods(Store):
        sqlite, pg = getattr(Store, name), getattr(PgStore, name)
        assert inspect.signature(sqlite) == inspect.signature(pg), name
        assert inspect.iscoroutinefunction(sqlite) == inspect.iscoroutinefunction(pg), name


def test_sql_translation():
    assert pg_sql("SELECT a FROM t WHERE b = ? AND instr(c, ?) > 0") == (
        "SELECT a FROM t WHERE b = $1 AND strpos(c, $2) > 0"
    )
    assert pg_sql("INSERT OR IGNORE INTO sns (model_id, sn) VALUES (?, ?)") == (
        "INSERT INTO sns (model_id, sn) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    )


def _instances(tmp_path, url, n, *extra):
    """n instances on one database, started at once (the schema is created once)."""
    with ThreadPoolExecutor(n) as pool:
        futures = [
            pool.submit(Server, tmp_path / f"i{i}", "--activation-limit", "5", *extra, db=url)
            for i in range(n)
        ]
        return [f.result() for f in futures]


def test_fifty_simultaneous_activations_over_two_instances_release_one_cik(tmp_path, pg_url):
    servers = _instances(tmp_path, pg_url, 3)
    try:
        v = servers[0].add_vendor()
        with servers[1].session(cik=v["cik"]) as s:
            model = new_model(s)
            add_sn(s, model, "one")
            enable(s, model, "one", v["rid"])
        start = threading.Barrier(50)

        def attempt(i):
            with servers[i % 3].session() as s:
                start.wait()
                r = s.post(
                    "/provision/activate",
                    data={"vendor": v["vendor"], "model": model, "sn": "one"},
                )
                return r.status_code, r.text

        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(attempt, range(50)))
        ok = [body for status, body in answers if status == 200]
        assert len(ok) == 1 and HEX40.fullmatch(ok[0]), answers
        assert {status for status, _ in answers} <= {200, 409, 429}
        # the server kept no copy of the released CIK
        assert psql(pg_url, "SELECT count(*) FROM clients WHERE secret = '" + ok[0] + "'") == "0"
        for srv in servers:
            assert "Traceback" not in srv.log_text()
    finally:
        for srv in servers:
            srv.stop()


@pytest.fixture
def own_pg():
    """A cluster of its own: this test stops it."""
    cluster = EmbeddedPostgres()
    yield cluster
    cluster.close()


def test_database_down_under_load_is_503_then_recovers(tmp_path, own_pg):
    url = own_pg.new_database()
    srv = Server(tmp_path / "s", "--activation-limit", "0", db=url)
    try:
        v = srv.add_vendor()
        data = os.urandom(600_000)
        with srv.session(cik=v["cik"]) as s:
            model = new_model(s)
            add_content(s, model, "fw", data)
        statuses, bad = [], []
        stop = threading.Event()

        def load(i):
            with srv.session(cik=v["cik"]) as s:
                while not stop.is_set():
                    if i % 2:
                        r = s.get(
                            f"/provision/manage/content/{model}/fw",
                            params={"download": "true"},
                            headers={"Range": "bytes=300000-365535"},
                        )
                    else:
                        r = s.get(f"/provision/manage/model/{model}")
                    statuses.append(r.status_code)
                    if r.status_code == 503 and not r.headers.get("Retry-After", "").isdigit():
                        bad.append(r.headers)
                    time.sleep(0.02)

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(load, i) for i in range(4)]
            time.sleep(1.0)
            own_pg.stop()
            time.sleep(3.0)
            down = len(statuses)
            own_pg.start()
            time.sleep(3.0)
            stop.set()
            for f in futures:
                f.result()
        assert set(statuses) <= {200, 206, 503}, sorted(set(statuses))
        assert 503 in statuses[:down] and not bad
        assert statuses[-4:] != [503] * 4  # serving again, by itself
        with srv.session(cik=v["cik"]) as s:
            r = s.get(f"/provision/manage/content/{model}/fw", params={"download": "true"})
            assert r.status_code == 200 and r.content == data
        log = srv.log_text()
        assert "Traceback" not in log and " 500 " not in log
        assert "database unavailable" in log
    finally:
        srv.stop()


def _start_upload(srv, cik, path, total, sent):
    """A raw upload that sends `sent` of its `total` bytes, then stalls; returns the socket."""
    sock = socket.create_connection(("127.0.0.1", srv.port))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Exosite-CIK: {cik}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n"
    )
    sock.sendall(head.encode())
    block = os.urandom(64 * 1024)
    left = sent
    while left > 0:
        sock.sendall(block[: min(left, len(block))])
        left -= len(block)
    return sock


def test_an_upload_cut_short_leaves_the_content_as_it_was(tmp_path, pg_url):
    srv = Server(tmp_path / "s", db=pg_url)
    try:
        v = srv.add_vendor()
        old = os.urandom(700_000)
        with srv.session(cik=v["cik"]) as s:
            model = new_model(s)
            add_content(s, model, "fw", old)
        path = f"/provision/manage/content/{model}/fw"
        # the client goes away midway
        sock = _start_upload(srv, v["cik"], path, 3_000_000, 1_500_000)
        time.sleep(0.5)
        sock.close()
        # the instance is killed midway
        sock = _start_upload(srv, v["cik"], path, 3_000_000, 1_500_000)
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        sock.close()
        srv.stop()
        srv = Server(tmp_path / "s2", db=pg_url)
        with srv.session(cik=v["cik"]) as s:
            r = s.get(path, params={"download": "true"})
            assert r.status_code == 200
            assert hashlib.sha256(r.content).digest() == hashlib.sha256(old).digest()
            r = s.get(path, headers={"Range": "bytes=600000-"}, params={"download": "true"})
            assert r.status_code == 206 and r.content == old[600_000:]
        # the killed upload's chunks are still there (unreferenced) until the sweep
        referenced = psql(pg_url, "SELECT blob FROM content")
        assert set(srv.blob_names()) >= {referenced}
    finally:
        srv.stop()


def test_server_refuses_an_unreachable_database_without_its_password(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://u:hunter2secret@127.0.0.1:{port}/x"
    with pytest.raises(RuntimeError) as err:
        Server(tmp_path / "s", db=url)
    assert "hunter2secret" not in str(err.value)
    assert "cannot open postgresql://u:***@127.0.0.1" in str(err.value)


def test_admin_on_postgres(pg_url):
    from conftest import exoprov

    out = exoprov("admin", "add-vendor", "acme", "--db", pg_url)
    assert '"vendor": "acme"' in out.stdout
    assert exoprov("admin", "list-vendors", "--db", pg_url).stdout.startswith("acme,")
