"""Faults at the cluster level, on the deploy/nginx arrangement (tools/harness/cluster.py):
one instance SIGKILLed in the middle of a load of real agents, and an upload killed midway.
Every device still ends activated with the right firmware, no CIK is released twice, and no
upload is ever half visible."""

import hashlib
import json
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from agentkit import agent_config, run_agent
from exoprov.fleet import errors
from exoprov.fleet.client import Client

from tools.harness.cluster import Cluster


@pytest.fixture
def cluster():
    with Cluster(instances=2, extra=("--activation-limit", "0")) as c:
        yield c


@pytest.fixture
def pg_cluster(pg):
    """The production arrangement: the instances share one PostgreSQL (rows and blobs)."""
    with Cluster(instances=2, extra=("--activation-limit", "0"), db=pg.new_database()) as c:
        yield c


def _fleet(c, name):
    vendor = c.add_vendor(name)
    fleet = Client(c.url, cik=vendor["cik"], ca_file=c.ca, timeout=120)
    fleet.setup("m")
    return vendor, fleet


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_sigkill_one_instance_mid_load(engine, request, tmp_path):
    cluster = request.getfixturevalue("pg_cluster" if engine == "postgres" else "cluster")
    vendor, fleet = _fleet(cluster, "killv")
    data = os.urandom(1 << 20)
    sns = [f"k{i:02d}" for i in range(12)]
    fleet.setup("m", sns, owner=vendor["rid"], contents=[("firmware-k", data, "3")])

    def device(i):
        sn = sns[i]
        interp = "micropython" if i % 4 == 3 else "cpython"
        d = tmp_path / sn
        cfg = agent_config(d, cluster.url, vendor="killv", model="m", sn=sn, once=True,
                           ca_file=cluster.ca, report=False, timeout=10)  # fmt: skip
        time.sleep(0.15 * i)  # devices arrive over ~2 s; the kill lands among them
        for _attempt in range(10):  # a device retries after a failed cycle (its backoff)
            r = run_agent(interp, cfg, timeout=120)
            if r.returncode == 3:  # applied
                break
            assert r.returncode == 1 and "retrying in" in r.stderr, r.stderr[-800:]
            time.sleep(0.5)
        state = json.loads((d / "state" / "state.json").read_bytes())
        return r.returncode, state, (d / "install" / "fw.bin").read_bytes()

    with ThreadPoolExecutor(len(sns)) as pool:
        futures = [pool.submit(device, i) for i in range(len(sns))]
        time.sleep(1.2)
        assert not all(f.done() for f in futures)
        cluster.kill(0)  # SIGKILL, mid-load
        results = [f.result() for f in futures]
    assert "POST /provision/activate 200" in cluster.servers[0].log_text()  # it had its share
    assert not cluster.servers[0].alive() and cluster.servers[1].alive()
    want = hashlib.sha256(data).digest()
    ciks = set()
    for rc, state, fw in results:
        assert rc == 3 and state["state"] == "active"
        assert hashlib.sha256(fw).digest() == want
        ciks.add(state["cik"])
    assert len(ciks) == len(sns)
    for sn in sns:  # the server released each CIK exactly once
        assert [e.entry for e in fleet.sn_log("m", sn)].count("activated") == 1


def _upload_cut(port, cik, path, sent, total):
    """Start an upload of `total` bytes straight to one instance, send `sent` of them."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Exosite-CIK: {cik}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n".encode()
    )
    s.sendall(os.urandom(sent))
    return s


def test_upload_killed_midway_leaves_content_as_it_was(cluster):
    vendor, fleet = _fleet(cluster, "upv")
    old = os.urandom(300_000)
    fleet.publish("m", "fw", old, version="1")
    fleet.content_create("m", "empty")
    blobs = cluster.servers[0].dir.parent / "exoprov.db.blobs"
    before = set(os.listdir(blobs))
    victim = cluster.servers[0]
    socks = [
        _upload_cut(
            victim.port, vendor["cik"], f"/provision/manage/content/m/{cid}", 700_000, 4_000_000
        )  # fmt: skip
        for cid in ("fw", "empty")
    ]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # both bodies are being written to tmp- files
        tmps = [n for n in os.listdir(blobs) if n.startswith("tmp-")]
        if len(tmps) == 2 and all(os.path.getsize(blobs / n) > 0 for n in tmps):
            break
        time.sleep(0.05)
    cluster.kill(0)
    for s in socks:
        s.close()
    # through nginx (the surviving instance): the old blob, the old size; no blob at all
    assert fleet.content_read("m", "fw") == old
    assert fleet.content_info("m", "fw").size == len(old)
    with pytest.raises(errors.NotFound) as e:
        fleet.content_read("m", "empty")
    assert "no content" in e.value.reason
    # nothing new became a blob: what is left is tmp- files, swept when stale
    assert {n for n in os.listdir(blobs) if not n.startswith("tmp-")} == before
