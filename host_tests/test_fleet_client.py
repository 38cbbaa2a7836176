"""The vendor client library against the real server: every management procedure."""

import hashlib
import itertools
import json
import os

import pytest
from exoprov.fleet import errors
from exoprov.fleet.client import Client, ContentInfo, Member, parse_meta

_n = itertools.count(1)
ODD = "odd name é&x=1%2F?#+;"  # names may not hold , / \\ (server rule); the rest must be encoded


@pytest.fixture
def client(server, vendor):
    with Client(server.url, cik=vendor["cik"]) as c:
        yield c


@pytest.fixture
def model(client, vendor):
    name = f"model{next(_n)}"
    client.model_create(name, rid=vendor["rid"])
    return name


def _sha(data):
    return hashlib.sha256(data).hexdigest()


# -- models -----------------------------------------------------------------------------------


def test_models_create_list_info_update_delete(client, vendor):
    client.model_create("mA", rid=vendor["rid"], options=["noaliases", "nohistorical"])
    client.model_create("mB", code="template-7")
    assert {"mA", "mB"} <= set(client.models())
    info = client.model_info("mA")
    assert info.rid == vendor["rid"] and info.code is None
    assert set(info.options) == {"noaliases", "nohistorical"}
    assert client.model_info("mB").code == "template-7"
    client.model_update("mB", rid=vendor["rid"], options=["nocomments"])
    info = client.model_info("mB")
    assert info.rid == vendor["rid"] and info.options == ["nocomments"]
    with pytest.raises(errors.Conflict) as e:
        client.model_create("mA", rid=vendor["rid"])
    assert e.value.status == 409 and e.value.reason
    client.model_delete("mA")
    client.model_delete("mB", use_form=True)
    assert not {"mA", "mB"} & set(client.models())
    with pytest.raises(errors.NotFound):
        client.model_info("mA")


def test_model_names_are_url_encoded(client, vendor):
    client.model_create(ODD, rid=vendor["rid"])
    assert ODD in client.models()
    client.sn_add(ODD, ODD, extra="a,b&c")
    assert client.sn_info(ODD, ODD).extra == "a,b&c"
    client.content_create(ODD, ODD, meta="k=v")
    client.content_upload(ODD, ODD, b"\x00\xff")
    assert client.content_read(ODD, ODD) == b"\x00\xff"
    client.model_delete(ODD)
    assert ODD not in client.models()


# -- serial numbers ---------------------------------------------------------------------------


def test_sn_add_one_many_csv_and_list_pages(client, model):
    client.sn_add(model, "A1", extra="first")
    client.sn_add_many(model, ["A2", "A3"])
    client.sn_add_csv(model, [("A4", "x,y"), ("A5", "")])
    with pytest.raises(errors.Conflict):
        client.sn_add(model, "A1")
    page = client.sn_list(model, offset=0, limit=5)
    assert len(page) == 5
    rows = {e.sn: e for e in client.sn_all(model, page=5)}
    assert set(rows) == {"A1", "A2", "A3", "A4", "A5"}
    assert rows["A1"].extra == "first" and rows["A4"].extra == "x,y"
    assert rows["A1"].status == "" and rows["A1"].rid == ""
    plain = client.sn_list(model, status=False)
    assert plain[0].status is None and plain[0].sn


def test_sn_remove_every_form(client, model):
    client.sn_add_many(model, [f"R{i}" for i in range(6)])
    client.sn_remove(model, "R0")
    client.sn_remove_many(model, ["R1", "R2"])
    client.sn_remove_csv(model, ["R3", "R4"])
    client.sn_delete(model, "R5")
    assert client.sn_all(model) == []


def test_sn_ranges_add_list_remove_and_whitelist(client, model, vendor):
    rng = {"format": "base10", "length": 8, "first": 100, "last": 199}
    hexr = {"format": "base16", "length": 4, "casing": "lower", "first": 0xA0, "last": 0xAF}
    client.sn_add_ranges(model, [rng, hexr])
    got = client.sn_ranges(model)
    assert {(r["format"], r["first"], r["last"]) for r in got} == {
        ("base10", 100, 199),
        ("base16", 0xA0, 0xAF),
    }
    # inside a range: whitelisted, so it can be enabled and activated
    rid = client.sn_enable(model, "00000150", vendor["rid"])
    assert len(rid) == 40
    assert len(client.activate(vendor["vendor"], model, "00000150")) == 40
    with pytest.raises(errors.NotFound):
        client.activate(vendor["vendor"], model, "00000250")
    client.sn_remove_ranges(model, [hexr])
    assert [r["format"] for r in client.sn_ranges(model)] == ["base10"]


def test_sn_lifecycle_enable_activate_regenerate_disable_remap(client, model, vendor):
    v = vendor["vendor"]
    client.sn_add_many(model, ["L1", "L2"])
    assert client.sn_info(model, "L1").status == ""
    rid = client.sn_enable(model, "L1", vendor["rid"])
    info = client.sn_info(model, "L1")
    assert (info.status, info.rid) == ("notactivated", rid)
    cik = client.activate(v, model, "L1")
    assert len(cik) == 40 and cik not in str(client.sn_log(model, "L1"))
    assert client.sn_info(model, "L1").status == "activated"
    with pytest.raises(errors.Conflict):
        client.activate(v, model, "L1")
    with pytest.raises(errors.Conflict):  # never enabled
        client.activate(v, model, "L2")
    log = client.sn_log(model, "L1")
    assert len(log) == 2 and all(isinstance(e.timestamp, int) for e in log)
    assert log[0].connection.startswith("127.0.0.1:")

    client.sn_regenerate(model, "L1")
    assert client.sn_info(model, "L1").status == "notactivated"
    assert client.activate(v, model, "L1") != cik
    client.sn_disable(model, "L1")
    assert client.sn_info(model, "L1").status == "expired"

    client.sn_remap(model, "L2", "L1")
    assert client.sn_info(model, "L2") == ("notactivated", rid, "")
    assert len(client.activate(v, model, "L2")) == 40
    assert client.sn_info(model, "L1") is None or client.sn_info(model, "L1").rid != rid


def test_sn_unused_is_none_and_unknown_is_404(client, model):
    client.sn_add_ranges(model, [{"format": "base10", "length": 4, "first": 0, "last": 9}])
    assert client.sn_info(model, "0005") is None  # whitelisted by a range, never used: 204
    with pytest.raises(errors.NotFound):
        client.sn_info(model, "never-added")
    with pytest.raises(errors.NotFound) as e:
        client.sn_list("no-such-model")
    assert e.value.status == 404 and e.value.method == "GET"


def test_sn_and_content_groups(client, model):
    client.sn_add(model, "G1")
    client.content_create(model, "c1")
    assert client.sn_groups(model, "G1") == []
    assert client.content_groups(model, "c1") == []
    for g in ("g1", "g2"):
        client.group_create(model, g)
        client.group_add(model, g, "sn", ["G1"])
        client.group_add(model, g, "content", ["c1"])
    assert sorted(client.sn_groups(model, "G1")) == ["g1", "g2"]
    assert sorted(client.content_groups(model, "c1", limit=5)) == ["g1", "g2"]


# -- content ----------------------------------------------------------------------------------


def test_content_create_info_list_delete(client, model):
    client.content_create(model, "fw", meta="version=1")
    client.content_create(model, "secret", protected=True)
    with pytest.raises(errors.Conflict):
        client.content_create(model, "fw")
    assert sorted(client.content_list(model)) == ["fw", "secret"]
    info = client.content_info(model, "fw")
    assert isinstance(info, ContentInfo)
    assert (info.size, info.meta, info.protected) == (0, "version=1", False)
    assert client.content_info(model, "secret").protected is True
    client.content_delete(model, "fw")
    client.content_delete(model, "secret", use_form=True)
    assert client.content_list(model) == []
    with pytest.raises(errors.NotFound):
        client.content_info(model, "fw")


def test_upload_is_binary_safe_from_bytes_file_and_generator(client, model, tmp_path):
    data = bytes(range(256)) * 1024 + b"\r\n\x00"
    client.content_create(model, "bin")
    client.content_upload(model, "bin", data, content_type="application/x-firmware")
    assert client.content_read(model, "bin") == data
    info = client.content_info(model, "bin")
    assert (info.content_type, info.size) == ("application/x-firmware", len(data))

    f = tmp_path / "blob"
    f.write_bytes(data[::-1])
    seen = []
    with open(f, "rb") as fh:
        client.content_upload(model, "bin", fh, progress=lambda d, t: seen.append(d))
    assert client.content_read(model, "bin") == data[::-1]
    assert seen[-1] == len(data) and len(seen) > 1

    chunks = (data[i : i + 1000] for i in range(0, len(data), 1000))
    client.content_upload(model, "bin", chunks, size=len(data))
    assert client.content_read(model, "bin") == data


def test_ranges_and_if_range(client, model):
    data = os.urandom(10000)
    client.content_create(model, "r")
    client.content_upload(model, "r", data)
    assert client.content_read(model, "r", 10, 19) == data[10:20]
    assert client.content_read(model, "r", 9990) == data[9990:]
    assert client.content_read(model, "r", suffix=7) == data[-7:]
    with client.content_open(model, "r", 100, 199) as d:
        assert (d.status, d.first, d.last, d.total) == (206, 100, 199, 10000)
        etag = d.etag
        assert etag and d.read() == data[100:200]
    with client.content_open(model, "r", 5, if_range=etag) as d:
        assert d.status == 206
    with client.content_open(model, "r", 5, if_range='"stale"') as d:
        assert d.status == 200 and d.read() == data
    with pytest.raises(errors.RangeNotSatisfiable) as e:
        client.content_read(model, "r", 10000)
    assert e.value.status == 416 and e.value.total == 10000


def test_download_resumes_a_part_file_and_checks_the_digest(client, model, tmp_path):
    data = os.urandom(300_000)
    client.content_create(model, "fw", meta=f"sha256={_sha(data)}&version=3")
    client.content_upload(model, "fw", data)
    dest = tmp_path / "fw.bin"
    # an interrupted earlier download: the first 100000 bytes and its sidecar
    info = client.content_info(model, "fw")
    with client.content_open(model, "fw", 0, 0) as d:
        etag = d.etag
    (tmp_path / "fw.bin.part").write_bytes(data[:100_000])
    side = {"etag": etag, "size": info.size, "updated": info.updated}
    (tmp_path / "fw.bin.part.json").write_text(json.dumps(side))
    seen = []
    got = client.content_download(model, "fw", str(dest), progress=lambda d, t: seen.append(d))
    assert dest.read_bytes() == data and got.size == len(data)
    assert seen[0] > 100_000  # nothing before the resume point was fetched again
    assert not (tmp_path / "fw.bin.part").exists()
    assert not (tmp_path / "fw.bin.part.json").exists()


def test_download_refuses_a_digest_mismatch(client, model, tmp_path):
    client.content_create(model, "bad", meta=f"sha256={'0' * 64}")
    client.content_upload(model, "bad", b"not what the meta says")
    dest = tmp_path / "bad.bin"
    with pytest.raises(errors.UnexpectedResponse) as e:
        client.content_download(model, "bad", str(dest))
    assert "sha256" in e.value.reason
    assert not dest.exists() and not (tmp_path / "bad.bin.part").exists()
    client.content_download(model, "bad", str(dest), verify=False)
    assert dest.read_bytes() == b"not what the meta says"


def test_content_seen_by_a_serial_number(client, model):
    client.sn_add(model, "S1")
    client.content_create(model, "pub", meta="v=1")
    client.content_create(model, "prot", protected=True)
    client.content_upload(model, "pub", b"hello")
    client.content_upload(model, "prot", b"secret")
    assert client.content_list(model, sn="S1") == ["pub"]
    info = client.content_info(model, "pub", sn="S1")
    assert (info.size, info.meta, info.protected) == (5, "v=1", None)
    assert client.content_read(model, "pub", sn="S1") == b"hello"
    client.group_create(model, "beta")
    client.group_add(model, "beta", "sn", ["S1"])
    client.group_add(model, "beta", "content", ["prot"])
    assert sorted(client.content_list(model, sn="S1")) == ["prot", "pub"]
    assert client.content_read(model, "prot", 0, 2, sn="S1") == b"sec"


# -- groups -----------------------------------------------------------------------------------


def test_groups_every_member_form(client, model):
    client.group_create(model, "g", meta="the g")
    client.group_create(model, "inner")
    with pytest.raises(errors.Conflict):
        client.group_create(model, "g")
    assert ("g", "the g") in client.group_list(model)
    client.group_add(model, "g", "sn", ["s1"], expire=0, meta="m1")
    client.group_add(model, "g", "sn", ["s2", "s3"], expire=2000000000)
    client.group_add_csv(model, "g", [("content", "c1", "", "x"), ("group", "inner", 0, "")])
    assert client.group_info(model, "g") == ("the g", 5)
    assert client.group_groups(model, "inner") == ["g"]
    assert client.group_groups(model, "g") == []
    members = client.group_members(model, "g", limit=1000)
    assert len(members) == 5 and all(isinstance(m, Member) for m in members)
    sns = client.group_members(model, "g", type="sn")
    assert sorted(m.id for m in sns) == ["s1", "s2", "s3"]
    (one,) = client.group_members(model, "g", type="sn", member="s2")
    assert int(one.expire) == 2000000000
    assert [m.type for m in client.group_members(model, "g", member="c1")] == ["content"]
    assert len(client.group_members(model, "g", offset=0, limit=5)) == 5
    client.group_add(model, "g", "sn", ["s1"], meta="updated")  # update in place
    assert client.group_members(model, "g", type="sn", member="s1")[0].meta == "updated"
    client.group_remove(model, "g", "sn", ["s1"])
    client.group_remove(model, "g", "sn", ["s2", "s3"])
    client.group_remove_csv(model, "g", [("content", "c1"), ("group", "inner")])
    assert client.group_members(model, "g") == []
    assert client.group_info(model, "g").count == 0
    client.group_delete(model, "g")
    client.group_delete(model, "inner", use_form=True)
    assert client.group_list(model) == []
    with pytest.raises(errors.NotFound):
        client.group_info(model, "g")


# -- shares, register, tokens -----------------------------------------------------------------


def test_share_gives_only_the_documented_access(server, client, model, vendor):
    other = server.add_vendor()
    client.sn_add_many(model, ["H1", "H2"])
    assert client.share_list(model) == []
    assert client.share_exists(model, other["vendor"]) is False
    client.share_create(model, other["vendor"])
    assert client.share_list(model) == [other["vendor"]]
    assert client.share_exists(model, other["vendor"]) is True
    with Client(server.url, cik=other["cik"]) as oc:
        assert (vendor["vendor"], model) in oc.shared_models()
        with pytest.raises(errors.Forbidden):  # no X-Exosite-Vendor: not theirs
            oc.sn_list(model)
        shared = oc.for_vendor(vendor["vendor"])
        rid = shared.sn_enable(model, "H1", other["rid"])
        assert shared.sn_info(model, "H1") == ("notactivated", rid, "")
        shared.sn_regenerate(model, "H1")
        shared.sn_disable(model, "H1")
        assert [e.sn for e in shared.sn_list(model)] == ["H1"]  # only what it enabled
        assert shared.sn_log(model, "H1") == []
        with pytest.raises(errors.Forbidden):
            shared.sn_add(model, "H3")
        with pytest.raises(errors.Forbidden):
            shared.content_list(model)
    assert [e.sn for e in client.sn_list(model, shared=other["vendor"])] == ["H1"]
    client.share_delete(model, other["vendor"])
    client.share_create(model, other["vendor"])
    client.share_delete(model, other["vendor"], use_form=True)
    assert client.share_list(model) == []


def test_register_and_tokens(server, client, vendor):
    assert client.vendor_name() == vendor["vendor"]
    token = client.token_create("ci")
    assert token and client.token_get("ci") == token
    assert "ci" in client.token_list()
    with Client(server.url, token=token) as tc:
        tc.model_create("by-token", rid=vendor["rid"])
        assert "by-token" in tc.models()
        with pytest.raises(errors.Unauthorized):  # /provision/register takes a CIK only
            tc.vendor_name()
    client.token_delete("ci")
    with Client(server.url, token=token) as tc, pytest.raises(errors.Unauthorized):
        tc.models()
    client.token_create("ci2")
    client.token_delete("ci2", use_form=True)
    assert "ci2" not in client.token_list()
    with pytest.raises(errors.NotFound):
        client.token_get("ci2")


def test_register_unregister_a_name(server):
    v = server.add_vendor()
    with Client(server.url, cik=v["cik"]) as c:
        c.vendor_unregister(v["vendor"])
        c.vendor_register(v["vendor"] + "b")
        assert c.vendor_name() == v["vendor"] + "b"


# -- errors and transport ---------------------------------------------------------------------


def test_unauthorized_errors_never_carry_the_credential(server):
    bad = "z" * 40
    with Client(server.url, cik=bad) as c, pytest.raises(errors.Unauthorized) as e:
        c.models()
    assert e.value.status == 401 and bad not in str(e.value) and bad not in repr(e.value.args)
    with Client(server.url) as c, pytest.raises(errors.Unauthorized):
        c.models()


def test_connection_failed_has_no_status(tmp_path):
    with Client("http://127.0.0.1:9", cik="q" * 40, timeout=5) as c:
        with pytest.raises(errors.ConnectionFailed) as e:
            c.models()
    assert e.value.status is None and "cannot connect" in e.value.reason


def test_keep_alive_one_connection_for_many_requests(client, model):
    client.sn_add_many(model, [f"K{i}" for i in range(20)])
    pool = client._session.get_adapter(client.server).poolmanager
    for _ in range(20):
        client.sn_list(model)
    (conn_pool,) = pool.pools._container.values()
    assert conn_pool.num_connections == 1


def test_too_many_requests_carries_retry_after(make_server):
    srv = make_server("--activation-limit", "2")
    v = srv.add_vendor()
    with Client(srv.url, cik=v["cik"]) as c:
        c.model_create("m", rid=v["rid"])
        for _ in range(2):
            with pytest.raises(errors.NotFound):
                c.activate(v["vendor"], "m", "nope")
        with pytest.raises(errors.TooManyRequests) as e:
            c.activate(v["vendor"], "m", "nope")
    assert e.value.status == 429 and e.value.retry_after and e.value.retry_after > 0


def test_upload_over_the_cap_is_413(make_server):
    srv = make_server("--max-content-bytes", "1000")
    v = srv.add_vendor()
    with Client(srv.url, cik=v["cik"]) as c:
        c.model_create("m", rid=v["rid"])
        c.content_create("m", "big")
        with pytest.raises(errors.PayloadTooLarge):
            c.content_upload("m", "big", b"x" * 5000)


def test_meta_helpers_on_a_real_round_trip(client, model):
    client.content_create(model, "m", meta="sha256=" + "a" * 64 + "&version=2.0")
    assert parse_meta(client.content_info(model, "m").meta) == {
        "sha256": "a" * 64,
        "version": "2.0",
    }


def test_download_restarts_when_the_content_changed_under_the_part_file(client, model, tmp_path):
    data = os.urandom(50_000)
    client.content_create(model, "fw", meta=f"sha256={_sha(data)}")
    client.content_upload(model, "fw", data)
    info = client.content_info(model, "fw")
    (tmp_path / "fw.part").write_bytes(b"\xee" * 20_000)  # bytes of an older image
    side = {"etag": '"an-older-image"', "size": info.size, "updated": info.updated}
    (tmp_path / "fw.part.json").write_text(json.dumps(side))
    client.content_download(model, "fw", str(tmp_path / "fw"))
    assert (tmp_path / "fw").read_bytes() == data


def test_download_of_a_complete_part_only_verifies(client, model, tmp_path):
    data = os.urandom(5000)
    client.content_create(model, "fw", meta=f"sha256={_sha(data)}")
    client.content_upload(model, "fw", data)
    info = client.content_info(model, "fw")
    with client.content_open(model, "fw", 0, 0) as d:
        etag = d.etag
    (tmp_path / "fw.part").write_bytes(data)
    side = {"etag": etag, "size": info.size, "updated": info.updated}
    (tmp_path / "fw.part.json").write_text(json.dumps(side))
    seen = []
    client.content_download(model, "fw", str(tmp_path / "fw"), progress=seen.append)
    assert seen == [] and (tmp_path / "fw").read_bytes() == data


# -- setup and publish: the one vendor-setup helper of the tests and harnesses ----------------


def test_setup_makes_a_model_ready_for_devices_and_adds_to_it(server, client, vendor, tmp_path):
    name = f"setup{next(_n)}"
    image = os.urandom(70_000)
    rids = client.setup(name, ["s1", "s2"], owner=vendor["rid"], contents=[("fw", image, "2")])
    assert set(rids) == {"s1", "s2"} and all(len(r) == 40 for r in rids.values())
    statuses = {e.sn: e.status for e in client.sn_list(name)}
    assert statuses == {"s1": "notactivated", "s2": "notactivated"}
    info = client.content_info(name, "fw")
    assert info.size == len(image) and parse_meta(info.meta) == {"sha256": _sha(image),
                                                                  "version": "2"}  # fmt: skip
    assert client.activate(vendor["vendor"], name, "s1")
    # again on the same model: kept, the new serial numbers only whitelisted (no owner)
    many = [f"m{i:04d}" for i in range(1203)]  # more than one CSV request
    assert client.setup(name, many) == {}
    statuses = {e.sn: e.status for e in client.sn_all(name)}
    assert statuses["s1"] == "activated" and statuses["m1202"] == ""  # whitelisted
    assert len(statuses) == 1205
    # publish replaces, streams a file, keeps extra meta fields after sha256 and version
    f = tmp_path / "img.bin"
    f.write_bytes(image[:5000])
    meta = client.publish(name, "fw", f, version="3", meta=[("key", "rel-1")])
    assert meta == f"sha256={_sha(image[:5000])}&version=3&key=rel-1"
    assert client.content_info(name, "fw").meta == meta
    assert client.content_read(name, "fw") == image[:5000]
