"""`exoprov server --workers N`: N processes on one port and one SQLite file (WAL), every
request answered right whichever worker takes it, a dead worker replaced, all stopped by
SIGTERM."""

import asyncio
import hashlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from serverkit import HEX40, add_content, add_sn, enable, new_model


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def _wait(cond, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_workers_share_the_port_and_the_database(make_server):
    srv = make_server("--workers", "2", "--activation-limit", "0")
    assert len(_children(srv.proc.pid)) == 2
    assert "2 workers" in srv.log_text()
    v = srv.add_vendor()
    data = os.urandom(300_000)
    sns = [f"w{i}" for i in range(60)]
    with srv.session(cik=v["cik"]) as s:
        model = new_model(s)
        add_content(s, model, "fw", data, ctype="application/octet-stream")
        for sn in sns:
            add_sn(s, model, sn)
            enable(s, model, sn, v["rid"])

    def flow(sn):  # a fresh connection each: the kernel spreads them over the workers
        with srv.session() as s:
            form = {"vendor": v["vendor"], "model": model, "sn": sn}
            r = s.post("/provision/activate", data=form)
            assert r.status_code == 200, r.text
            cik = r.text
        with srv.session(cik=cik) as s:
            q = {"vendor": v["vendor"], "model": model, "id": "fw"}
            r = s.get("/provision/download", params=q, headers={"Range": "bytes=1000-70999"})
            assert r.status_code == 206 and r.content == data[1000:71000]
            again = s.post("/provision/activate", data=form)
            assert again.status_code == 409
        return cik

    with ThreadPoolExecutor(20) as pool:
        ciks = list(pool.map(flow, sns))
    assert len(set(ciks)) == len(sns) and all(HEX40.fullmatch(c) for c in ciks)
    # one upload, then every worker serves the new blob at once
    new = os.urandom(100_000)
    with srv.session(cik=v["cik"]) as s:
        url = f"/provision/manage/content/{model}/fw"
        assert s.post(url, data=new).status_code == 205

    def fetch(_):
        with srv.session(cik=v["cik"]) as s:
            r = s.get(f"/provision/manage/content/{model}/fw", params={"download": "true"})
            return hashlib.sha256(r.content).hexdigest()

    with ThreadPoolExecutor(10) as pool:
        assert set(pool.map(fetch, range(20))) == {hashlib.sha256(new).hexdigest()}


def test_a_dead_worker_is_replaced_and_sigterm_stops_all(make_server):
    srv = make_server("--workers", "2")
    first = _children(srv.proc.pid)
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    assert _wait(
        lambda: len(_children(srv.proc.pid)) == 2 and first[0] not in _children(srv.proc.pid)
    )
    with srv.session() as s:
        for _ in range(10):
            assert s.get("/ip").status_code == 200
    now = _children(srv.proc.pid)
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(20) == 0
    for pid in now:
        assert not os.path.exists(f"/proc/{pid}") or _zombie_or_gone(pid)


def _zombie_or_gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_workers_count_failed_activations_together(make_server):
    srv = make_server("--workers", "2", "--activation-limit", "4")
    v = srv.add_vendor()
    with srv.session(cik=v["cik"]) as s:
        model = new_model(s)
    form = {"vendor": v["vendor"], "model": model, "sn": "nosuch"}

    def attempt():  # a new connection each: both workers take some
        with srv.session() as s:
            return s.post("/provision/activate", data=form).status_code

    assert [attempt() for _ in range(4)] == [404] * 4
    assert {attempt() for _ in range(6)} == {429}


def test_shared_limiter_window(tmp_path):
    from exoprov.server import storage
    from exoprov.server.ratelimit import SharedLimiter

    async def go():
        now = [1000.0]
        one, two = [await storage.open_store(tmp_path / "x.db") for _ in range(2)]
        a = SharedLimiter(one.db, 2, lambda: now[0])
        b = SharedLimiter(two.db, 2, lambda: now[0])  # another process's view
        await a.failed("1.2.3.4")
        assert await b.retry_after("1.2.3.4") == 0
        now[0] += 10
        await b.failed("1.2.3.4")
        assert await a.retry_after("1.2.3.4") == 50 and await a.retry_after("5.6.7.8") == 0
        now[0] += 50.5
        assert await a.retry_after("1.2.3.4") == 0
        assert await SharedLimiter(one.db, 0, lambda: now[0]).retry_after("x") == 0
        await one.aclose()
        await two.aclose()

    asyncio.run(go())


def test_simultaneous_activations_of_one_sn_release_the_cik_once(make_server):
    srv = make_server("--workers", "2", "--activation-limit", "0")
    v = srv.add_vendor()
    with srv.session(cik=v["cik"]) as s:
        model = new_model(s)
        add_sn(s, model, "once")
        enable(s, model, "once", v["rid"])
    form = {"vendor": v["vendor"], "model": model, "sn": "once"}

    def attempt(_):
        with srv.session() as s:
            r = s.post("/provision/activate", data=form)
            return r.status_code, r.text

    with ThreadPoolExecutor(25) as pool:
        answers = list(pool.map(attempt, range(50)))
    assert sorted({st for st, _t in answers}) == [200, 409]
    assert len([t for st, t in answers if st == 200]) == 1
    with srv.session(cik=v["cik"]) as s:
        log = s.get(f"/provision/manage/model/{model}/once", params={"show": "log"}).text
    assert log.count(",activated") == 1


def test_a_kept_download_answer_never_outlives_a_change_made_elsewhere(make_server, tmp_path):
    """Two instances on one database: what instance A keeps of a download (device.Grants,
    per CIK and query) holds only until a change made through instance B: a new upload is
    served at once, a disabled serial number is refused at once."""
    from tools.harness.launch import ServerProcess

    a = make_server("--activation-limit", "0")
    b = ServerProcess("--activation-limit", "0", workdir=tmp_path / "b", db=a.db)
    try:
        v = a.add_vendor()
        first, second = os.urandom(200_000), os.urandom(150_000)
        with a.session(cik=v["cik"]) as s:
            model = new_model(s)
            add_content(s, model, "fw", first, ctype="application/octet-stream")
            add_sn(s, model, "k1")
            enable(s, model, "k1", v["rid"])
        r = requests.post(b.url + "/provision/activate", data={"vendor": v["vendor"],
                          "model": model, "sn": "k1"}, timeout=30)  # fmt: skip
        assert r.status_code == 200
        cik = r.text.strip()
        url = f"{a.url}/provision/download?vendor={v['vendor']}&model={model}&id=fw"
        dev = requests.Session()
        dev.headers["X-Exosite-CIK"] = cik

        def part(first_byte):
            return dev.get(url, headers={"Range": f"bytes={first_byte}-{first_byte + 99}"})

        for off in (0, 100, 200):  # the same CIK and query each time: kept after the first
            r = part(off)
            assert (r.status_code, r.content) == (206, first[off : off + 100])
        vb = requests.Session()
        vb.headers["X-Exosite-CIK"] = v["cik"]
        r = vb.post(f"{b.url}/provision/manage/content/{model}/fw", data=second,
                    headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert r.status_code == 205
        r = part(0)
        assert (r.status_code, r.content) == (206, second[:100])
        assert r.headers["Content-Range"] == f"bytes 0-99/{len(second)}"
        r = vb.post(f"{b.url}/provision/manage/model/{model}/k1", data={"disable": "true"})
        assert r.status_code in (200, 205)
        assert part(0).status_code == 401
    finally:
        b.stop()
