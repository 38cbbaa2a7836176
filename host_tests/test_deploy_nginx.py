"""The deployment recipe (deploy/nginx/exoprov.conf): nginx terminating TLS and balancing two
`exoprov server` instances on one PostgreSQL, started by tools/harness/cluster.py as it is
shipped. Real agents (CPython and MicroPython) go through it; the servers see the device's
address, not nginx's, and a header a device forges changes nothing."""

import hashlib
import os
import socket
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from agentkit import agent_config, run_agent
from exoprov.fleet.client import Client

from tools.harness.cluster import Cluster, render


@pytest.fixture(scope="module")
def cluster(pg):
    db = pg.new_database()
    with Cluster(instances=2, extra=("--activation-limit", "3"), db=db) as c:
        yield c


def test_rendered_config_is_valid_nginx(cluster, tmp_path):
    from tools.harness.cluster import ensure_nginx, nginx_main_conf

    site = tmp_path / "site.conf"
    (tmp_path / "cache").mkdir()
    site.write_text(render(["127.0.0.1:1", "127.0.0.1:2"], "127.0.0.1:8443",
                           cluster.certs["cert"], cluster.certs["key"],
                           cache=tmp_path / "cache"))  # fmt: skip
    (tmp_path / "nginx.conf").write_text(nginx_main_conf(tmp_path, site))
    cmd = [ensure_nginx(), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "e.log")]
    cmd += ["-c", str(tmp_path / "nginx.conf")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_agents_through_nginx_over_tls(cluster, tmp_path):
    vendor = cluster.add_vendor("nginxv")
    fleet = Client(cluster.url, cik=vendor["cik"], ca_file=cluster.ca)
    data = os.urandom(400_000)
    runs = [("cpython", f"c{i}") for i in range(3)] + [("micropython", f"m{i}") for i in range(3)]
    fleet.setup("nginxm", [sn for _i, sn in runs], owner=vendor["rid"],
                contents=[("firmware-n", data, "2")])  # fmt: skip

    def device(run):
        interp, sn = run
        d = tmp_path / sn
        cfg = agent_config(d, cluster.url, vendor=vendor["vendor"], model="nginxm", sn=sn,
                           once=True, ca_file=cluster.ca, report=False)  # fmt: skip
        r = run_agent(interp, cfg, timeout=120)
        return r.returncode, r.stderr[-500:], (d / "install" / "fw.bin").read_bytes()

    with ThreadPoolExecutor(6) as pool:
        for rc, err, got in pool.map(device, runs):
            assert rc == 3, err
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    # each instance answered part of the work
    for srv in cluster.servers:
        assert "/provision/download" in srv.log_text()


def _raw_activate(cluster, vendor, model, sn, extra=""):
    """One activation over our own TLS socket -> (status, our local port)."""
    ctx = ssl.create_default_context(cafile=cluster.ca)
    port = int(cluster.url.rsplit(":", 1)[1])
    body = f"vendor={vendor}&model={model}&sn={sn}".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        local = raw.getsockname()[1]
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(
                b"POST /provision/activate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                + extra.encode()
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
            )
            head = s.recv(100)
    return int(head.split()[1]), local


def test_servers_see_the_device_address_and_ignore_its_forgeries(cluster):
    vendor = cluster.add_vendor("nginxaddr")
    fleet = Client(cluster.url, cik=vendor["cik"], ca_file=cluster.ca)
    fleet.setup("addrm", ["a1"], owner=vendor["rid"])
    status, local = _raw_activate(cluster, "nginxaddr", "addrm", "a1")
    assert status == 200
    # the device's socket, not nginx's
    assert fleet.sn_log("addrm", "a1")[0].connection == f"127.0.0.1:{local}"
    # failures with a different forged address each time: still one source, limit 3
    for i in range(3):
        forged = f"X-Forwarded-For: 203.0.113.{i}\r\nForwarded: for=198.51.100.{i}\r\n"
        assert _raw_activate(cluster, "nginxaddr", "addrm", "nosuch", forged)[0] == 404
    assert _raw_activate(cluster, "nginxaddr", "addrm", "a1")[0] == 429
    # /ip: the address and port the device reached (nginx's)
    r = requests.get(cluster.url + "/ip", verify=cluster.ca, timeout=30)
    port = int(cluster.url.rsplit(":", 1)[1])
    assert r.text.strip() == f"127,0,0,1,{port >> 8},{port & 255}"


def _cache_files(cluster, zone):
    root = cluster.nginx.dir / "cache" / zone
    return [p for p in root.rglob("*") if p.is_file()]


def test_downloads_from_nginx_cache_answer_as_an_instance_does(cluster):
    """The recipe's cached way (grant from an instance, bytes from nginx's slice cache) gives
    the device exactly what an instance gives it, for every form of a download request."""
    vendor = cluster.add_vendor("nginxcache")
    fleet = Client(cluster.url, cik=vendor["cik"], ca_file=cluster.ca, timeout=120)
    data = os.urandom(3 * 1024 * 1024 + 123)  # four slices, the last one short
    contents = [("fw", data, "1"), ("empty", b"", "1")]
    fleet.setup("cm", ["c1"], owner=vendor["rid"], contents=contents)
    direct = cluster.servers[0].url  # an instance, not through nginx
    # (as from another address: an earlier test used up 127.0.0.1's failed activations)
    form = {"vendor": "nginxcache", "model": "cm", "sn": "c1"}
    hdr = {"X-Forwarded-For": "192.0.2.7"}
    r = requests.post(direct + "/provision/activate", data=form, headers=hdr, timeout=30)
    assert r.status_code == 200, r.text
    cik = r.text.strip()
    q = "/provision/download?vendor=nginxcache&model=cm"

    def both(query, **headers):
        headers.setdefault("X-Exosite-CIK", cik)
        a = requests.get(cluster.url + q + query, headers=headers, verify=cluster.ca,
                         timeout=30)  # fmt: skip
        b = requests.get(direct + q + query, headers=headers, timeout=30)
        return a, b

    before = len(_cache_files(cluster, "content"))
    etag = both("&id=fw", Range="bytes=0-0")[1].headers["ETag"]
    modified = both("&id=fw", Range="bytes=0-0")[1].headers["Last-Modified"]
    cases = [
        ("&id=fw", {"Range": "bytes=0-99"}),
        ("&id=fw", {"Range": "bytes=1048570-1048589"}),  # across a slice boundary
        ("&id=fw", {"Range": "bytes=65536-131071", "If-Range": etag}),  # the agent's form
        ("&id=fw", {"Range": "bytes=0-9", "If-Range": '"an-old-upload"'}),  # whole, 200
        ("&id=fw", {"Range": "bytes=0-9", "If-Range": modified}),
        ("&id=fw", {"Range": "bytes=-10"}),
        ("&id=fw", {"Range": "bytes=3145700-"}),
        ("&id=fw", {"Range": "bytes=3145700-99999999"}),
        ("&id=fw", {"Range": "bytes=99999999-"}),  # 416, and past the end in the last slice:
        ("&id=fw", {"Range": "bytes=3145851-"}),
        ("&id=fw", {"Range": "bytes=3145851-3145900"}),
        ("&id=fw", {"Range": "bytes=4194304-"}),
        ("&id=fw", {"Range": "bytes=3145850-"}),
        ("&id=empty", {"Range": "bytes=0-9"}),  # a content of 0 bytes
        ("&id=empty", {}),
        ("&id=fw", {"Range": "bytes=0-1,5-6"}),  # not one range: ignored, whole
        ("&id=fw", {"Range": "bytes=9-1"}),  # not a range (ignored), nor those below
        ("&id=fw", {"Range": "bytes=10-9"}),
        ("&id=fw", {"Range": "bytes=1048590-1048589"}),
        ("&id=fw", {"Range": "bytes=200-1000"}),  # but these are
        ("&id=fw", {"Range": "bytes=1048589-1048590"}),
        ("&id=fw", {"Range": "bytes=7-7"}),
        ("&id=fw", {"Range": "bytes=0-0"}),
        ("&id=fw", {"Range": "bytes=099-100"}),  # leading zeros: to an instance
        ("&id=fw", {"Range": "bytes=5-007"}),
        ("&id=fw", {"Range": "bytes=-0"}),
        ("&id=fw", {"Range": "bytes=0-99999999999999999999"}),  # 20 digits: ignored
        ("&id=fw", {"Range": "Bytes=0-9"}),
        ("&id=fw", {}),
        ("&id=fw&info=true", {"Range": "bytes=0-9"}),
        ("", {"Range": "bytes=0-9"}),  # the list of content ids
        ("&id=nope", {"Range": "bytes=0-9"}),
        ("&id=fw&id=fw", {"Range": "bytes=0-9"}),
        ("&id=fw&extra=1", {"Range": "bytes=0-9"}),
        ("&id=fw", {"Range": "bytes=0-9", "X-Exosite-CIK": "f" * 40}),
        ("&id=fw", {"Range": "bytes=0-9", "X-Exosite-CIK": vendor["cik"]}),
    ]
    keys = ("Content-Range", "Content-Length", "ETag", "Last-Modified", "Content-Type")
    for query, headers in cases:
        a, b = both(query, **headers)
        assert (a.status_code, a.content) == (b.status_code, b.content), (query, headers)
        for k in keys:
            assert a.headers.get(k) == b.headers.get(k), (query, headers, k)
        if b.status_code == 206:
            first, last = map(int, b.headers["Content-Range"].split()[1].split("/")[0].split("-"))
            assert a.content == data[first : last + 1]
    assert len(_cache_files(cluster, "content")) - before == 4  # four slices, once each
    assert _cache_files(cluster, "grants")

    # a new upload is a new ETag: the device gets the new bytes once the grant has aged
    data2 = os.urandom(200_000)
    fleet.publish("cm", "fw", data2, version="2")
    time.sleep(2.2)  # the cluster's grant TTL is 1 s: nginx counts whole seconds (1-2 s)
    a, b = both("&id=fw", Range="bytes=0-99")
    assert a.status_code == b.status_code == 206
    assert a.content == b.content == data2[:100]
    # a disabled serial number (its CIK revoked) is refused once the grant has aged
    fleet.sn_disable("cm", "c1")
    time.sleep(2.2)
    a, b = both("&id=fw", Range="bytes=0-99")
    assert (a.status_code, a.text) == (b.status_code, b.text)
    assert a.status_code == 401
