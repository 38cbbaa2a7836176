"""The deployment recipe (deploy/nginx/exoprov.conf): nginx terminating TLS and balancing two
`exoprov server` instances on one PostgreSQL, started by tools/harness/cluster.py as it is
shipped. Real agents (CPython and MicroPython) go through it; the servers see the device's
address, not nginx's, and a header a device forges changes nothing."""

import hashlib
import json
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
from exoprov.fleet.errors import Conflict

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
    grants = _cache_files(cluster, "grants")
    assert grants
    for path in grants + _cache_files(cluster, "content"):  # keys and headers: no CIK
        assert cik.encode() not in path.read_bytes(), path

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


def _fleet(cluster, name, model):
    """A vendor's client over TLS with `model` created."""
    vendor = cluster.add_vendor(name)
    fleet = Client(cluster.url, cik=vendor["cik"], ca_file=cluster.ca)
    fleet.setup(model)
    return vendor, fleet


def _content(fleet, model, cid, data, version):
    """Content `cid` created unless it exists, then its blob replaced in place (no delete
    between: devices see one content whose ETag changes)."""
    try:
        fleet.content_create(model, cid, meta=f"version={version}")
    except Conflict:
        pass
    fleet.content_upload(model, cid, data)


def _activate_direct(cluster, vendor, model, sn, fleet):
    fleet.sn_add(model, sn)
    fleet.sn_enable(model, sn, vendor["rid"])
    form = {"vendor": vendor["vendor"], "model": model, "sn": sn}
    hdr = {"X-Forwarded-For": "192.0.2.8"}  # not 127.0.0.1's count of failed activations
    r = requests.post(cluster.servers[0].url + "/provision/activate", data=form, headers=hdr,
                      timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    return r.text.strip()


def _cached_slices(cluster, marker):
    """[(key, headers, body)] of the content cache's files whose key holds `marker`."""
    out = []
    for path in _cache_files(cluster, "content"):
        raw = path.read_bytes()
        at = raw.find(b"\nKEY: ")
        if at < 0:
            continue
        end = raw.index(b"\n", at + 6)
        key = raw[at + 6 : end].decode()
        if marker in key:
            head, _, body = raw[end + 1 :].partition(b"\r\n\r\n")
            out.append((key, head.decode("latin-1"), body))
    return out


@pytest.fixture(scope="module")
def slow_grants(pg):
    """The recipe with a grant TTL of 3 s: an upload (about a second here) fits in it."""
    with Cluster(instances=2, db=pg.new_database(), grant_ttl="3s") as c:
        yield c


def test_content_replaced_while_devices_download(slow_grants):
    """Uploads replace a content while devices fetch it through nginx in Range requests, as
    the agent does (If-Range with the ETag it got first): every answer's bytes are those of
    the image its ETag names, and every cached slice holds the bytes of the ETag in its key
    (a slice fetched within the grant TTL of an upload must not come from the new blob)."""
    import random
    import threading

    cluster = slow_grants
    vendor, fleet = _fleet(cluster, "nginxrace", "rm")
    size = 3 * 1024 * 1024 + 77  # four slices
    PROBED = 3 * 1024 * 1024  # the last one's first byte
    images = {}  # ETag -> bytes
    direct = cluster.servers[0].url
    q = "/provision/download?vendor=nginxrace&model=rm&id=fw"

    def upload(i):
        data = bytes([i]) * 16 + os.urandom(size - 16)
        _content(fleet, "rm", "fw", data, version=i)
        r = requests.head(direct + q, headers={"X-Exosite-CIK": ciks[0]}, timeout=30)
        images[r.headers["ETag"]] = data

    ciks = []
    _content(fleet, "rm", "fw", b"placeholder", version=0)
    for i in range(4):
        ciks.append(_activate_direct(cluster, vendor, "rm", f"r{i}", fleet))
    stop = threading.Event()
    got = []  # (status, etag, content-range, sha256 of the body)
    errors = []

    def device(cik):
        rng = random.Random(cik)
        etag = None
        with requests.Session() as s:
            s.verify = cluster.ca
            s.headers["X-Exosite-CIK"] = cik
            while not stop.is_set():
                etag = fetch(s, rng.randrange(0, PROBED - 65536), etag)  # not the last slice

    def fetch(s, first, etag):
        """One Range request as the agent makes it -> the ETag to send next time."""
        hdr = {"Range": f"bytes={first}-{min(first + 65535, size - 1)}"}
        if etag:
            hdr["If-Range"] = etag
        try:
            r = s.get(cluster.url + q, headers=hdr, timeout=30, verify=cluster.ca)
            body = r.content
        except requests.RequestException as exc:  # an answer cut short: no bytes kept
            errors.append(type(exc).__name__)
            return etag
        if r.status_code not in (200, 206):
            got.append((r.status_code, None, None, r.text[:80]))
            return etag
        digest = hashlib.sha256(body).digest()
        got.append((r.status_code, r.headers["ETag"], r.headers.get("Content-Range"), digest))
        return r.headers["ETag"]

    upload(1)
    # three devices fetch the first three slices at random; the fourth (the probe) asks for
    # the last slice right after each upload, while nginx may still hold its grant of the
    # content before: the slice is not cached under that ETag yet, so it is fetched then
    threads = [threading.Thread(target=device, args=(c,)) for c in ciks[1:]]
    for t in threads:
        t.start()
    try:
        with requests.Session() as probe:
            probe.headers["X-Exosite-CIK"] = ciks[0]
            for i in range(2, 6):
                fetch(probe, 0, None)
                upload(i)
                fetch(probe, PROBED, None)
                time.sleep(3.1)  # the grant aged: the next round's first fetch renews it
        time.sleep(2.5)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert len(got) > 50, (len(got), errors)
    assert len(errors) < len(got) / 4, errors
    for status, etag, crange, digest in got:
        assert status in (200, 206), (status, digest)
        data = images[etag]
        if status == 206:
            first, last = map(int, crange.split()[1].split("/")[0].split("-"))
            data = data[first : last + 1]
        assert hashlib.sha256(data).digest() == digest, (status, etag, crange)
    slices = _cached_slices(cluster, " nginxrace rm fw ")
    assert slices
    for key, head, body in slices:
        etag = key.split(" ", 1)[0]
        first = int(key.rsplit("bytes=", 1)[1].split("-")[0])
        assert f"\nETag: {etag}\r" in head, (key, head)
        assert body == images[etag][first : first + len(body)], key


def test_grant_is_asked_for_the_path_nginx_matched(cluster):
    """A path with dot segments that nginx normalises to /provision/download: the grant is
    asked for /provision/download too, not for the raw path (which the instance routes
    elsewhere), so a request without a valid CIK gets no content."""
    vendor, fleet = _fleet(cluster, "nginxdots", "dm")
    secret = os.urandom(5000)
    _content(fleet, "dm", "fw", secret, version=1)
    ctx = ssl.create_default_context(cafile=cluster.ca)
    port = int(cluster.url.rsplit(":", 1)[1])
    paths = ("/ui/static/../../provision/download", "/ui//../provision/download",
             "/ui/static/%2e%2e/%2e%2e/provision/download")  # fmt: skip
    for path in paths:
        req = (f"GET {path}?vendor=nginxdots&model=dm&id=fw HTTP/1.1\r\nHost: x\r\n"
               f"X-Exosite-CIK: {'b' * 40}\r\nRange: bytes=0-99\r\n"
               "Connection: close\r\n\r\n")  # fmt: skip
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(req.encode())
                buf = b""
                while chunk := s.recv(65536):
                    buf += chunk
        status = int(buf.split()[1])
        assert status in (401, 403, 404), (path, buf[:300])
        assert secret[:100] not in buf


def test_an_answer_across_two_slices_holds_one_upload(slow_grants):
    """Within the grant TTL after an upload, a Range across a slice boundary whose first
    slice is cached from the upload before and whose second is not: the device gets bytes of
    one upload (here: the answer is cut off, and asked again later), never the first slice's
    bytes followed by the new upload's."""
    cluster = slow_grants
    vendor, fleet = _fleet(cluster, "nginxsplice", "sm")
    _content(fleet, "sm", "fw", b"0", version=0)
    cik = _activate_direct(cluster, vendor, "sm", "s1", fleet)
    old, new = b"A" * (2 << 20), b"B" * (2 << 20)
    _content(fleet, "sm", "fw", old, version=1)
    url = cluster.url + "/provision/download?vendor=nginxsplice&model=sm&id=fw"
    hdr = {"X-Exosite-CIK": cik}
    r = requests.get(url, headers={**hdr, "Range": "bytes=0-9"}, verify=cluster.ca, timeout=30)
    assert r.content == b"A" * 10  # the grant (3 s) and the first slice are nginx's now
    etag = r.headers["ETag"]
    _content(fleet, "sm", "fw", new, version=2)
    for if_range in (etag, None):
        h = {**hdr, "Range": "bytes=1048000-1049000"}
        if if_range:
            h["If-Range"] = if_range
        try:
            r = requests.get(url, headers=h, verify=cluster.ca, timeout=30)
            body = r.content
        except requests.ConnectionError:
            continue  # ended by nginx: no byte given
        assert r.status_code == 206, r.status_code
        assert body in (old[1048000:1049001], new[1048000:1049001]), body[570:590]
        assert body == (old if r.headers["ETag"] == etag else new)[1048000:1049001]


def test_rollout_content_is_never_granted_from_the_cache_outside_the_wave(cluster):
    """Content under a rollout through the recipe: a device outside the wave is refused, the
    instances count every device that takes it (nginx asks them at every request: the grant
    is not kept), and an abort refuses a device of the wave at once, grant TTL or not."""
    from tools.server import rollpolicy

    vendor, fleet = _fleet(cluster, "nginxroll", "rm")
    direct = cluster.servers[1].url
    fleet.request("POST", "/exoprov/v1/model/rm/rollouts/fw/hold", (200,))
    data = os.urandom(1_500_000)
    _content(fleet, "rm", "fw", data, version=2)
    sns = [f"w{i:02d}" for i in range(16)]
    ciks = {}
    for sn in sns:
        fleet.sn_add("rm", sn)
        fleet.sn_enable("rm", sn, vendor["rid"])
        form = {"vendor": "nginxroll", "model": "rm", "sn": sn}
        hdr = {"X-Forwarded-For": "192.0.2.8"}  # (the limit of 3 failures is 127.0.0.1's)
        r = requests.post(direct + "/provision/activate", data=form, headers=hdr, timeout=30)
        assert r.status_code == 200, r.text
        ciks[sn] = r.text.strip()
    fleet.request(
        "POST",
        "/exoprov/v1/model/rm/rollouts/fw/start",
        (200,),
        body=json.dumps({"waves": "40"}).encode(),
        ctype="application/json",
    )
    inside = [sn for sn in sns if rollpolicy.in_wave("fw", sn, 40)]
    assert 0 < len(inside) < len(sns)
    url = cluster.url + "/provision/download?vendor=nginxroll&model=rm&id=fw"

    def get(sn, rng="bytes=0-65535"):
        hdr = {"X-Exosite-CIK": ciks[sn], "Range": rng}
        return requests.get(url, headers=hdr, verify=cluster.ca, timeout=30)

    for sn in sns:  # twice each: the second may come from the slice cache, never the grant
        for _ in range(2):
            r = get(sn)
            if sn in inside:
                assert r.status_code == 206 and r.content == data[:65536]
            else:
                assert r.status_code == 404, (sn, r.status_code)
    st = fleet.request("GET", "/exoprov/v1/model/rm/rollouts/fw", (200,)).json()
    assert st["took"] == len(inside)
    fleet.request("POST", "/exoprov/v1/model/rm/rollouts/fw/abort", (200,))
    for sn in inside:  # at once, though the cluster's grant TTL is 1 s
        assert get(sn, "bytes=65536-131071").status_code == 404
