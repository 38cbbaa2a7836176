"""Fleet tools without a server: encoding, ranges, CSV input, batching, output, config, errors."""

import argparse
import io
import json
import os

import pytest
from exoprov.fleet import cli, errors
from exoprov.fleet.client import Body, _content_info, _content_range, form, format_meta, parse_meta
from exoprov.fleet.commands import common, sn
from exoprov.fleet.output import Done, Progress, Table, emit, format_table


def test_form_encodes_every_value_and_keeps_array_keys():
    body = form([("sn[]", "a b"), ("sn[]", "x/y&z=1"), ("meta", "é%+")])
    assert body == "sn[]=a%20b&sn[]=x%2Fy%26z%3D1&meta=%C3%A9%25%2B"


def test_meta_round_trip():
    meta = format_meta({"sha256": "ab" * 32, "version": "1.2&3"})
    assert meta == f"sha256={'ab' * 32}&version=1.2%263"
    assert parse_meta(meta) == {"sha256": "ab" * 32, "version": "1.2&3"}
    assert parse_meta("") == {}


@pytest.mark.parametrize(
    "text,fmt,length,want",
    [
        ("00000100-00000199", "base10", 8, (100, 199, 8)),
        ("100..199", "base10", None, (100, 199, 3)),
        ("0a-ff", "base16", 4, (10, 255, 4)),
        (
            "00:11:22:33:44:00-00:11:22:33:44:ff",
            "mac:48",
            None,
            (0x1122334400, 0x11223344FF, None),
        ),
        (
            "00-11-22-33-44-00-00-11-22-33-44-FF",
            "mac-48",
            None,
            (0x1122334400, 0x11223344FF, None),
        ),
        ("0011.2233.4400-0011.2233.44ff", "mac.48", None, (0x1122334400, 0x11223344FF, None)),
    ],
)
def test_parse_range(text, fmt, length, want):
    rng = sn.parse_range(text, fmt, length)
    assert (rng["first"], rng["last"], rng.get("length")) == want
    assert rng["format"] == fmt


@pytest.mark.parametrize("text", ["12", "9-1", "a-b", "1-2-3-4"])
def test_parse_range_rejects(text):
    with pytest.raises(cli.UsageError):
        sn.parse_range(text, "base10")


def test_read_csv_skips_header_comments_blanks_and_keeps_commas_in_last_field(tmp_path):
    f = tmp_path / "sns.csv"
    f.write_text("sn,extra\n# line 3 of the factory\n\n00000001,batch 7\n00000002\n00000003,a,b\n")
    assert common.read_csv(str(f), 2) == [
        ["00000001", "batch 7"],
        ["00000002", ""],
        ["00000003", "a,b"],
    ]


def test_batches_stay_under_the_body_cap():
    items = [f"{i:08d}" for i in range(20000)]
    out = list(common.batches(items, lambda s: len(s) + 1))
    assert sum(len(b) for b in out) == 20000
    assert all(sum(len(s) + 1 for s in b) <= 48 * 1024 for b in out)
    assert len(out) > 1


def test_body_streams_files_and_generators_with_progress():
    seen = []
    b = Body(io.BytesIO(b"x" * 100), 100, lambda d, t: seen.append((d, t)))
    assert len(b) == 100
    got = b"".join(iter(lambda: b.read(30), b""))
    assert got == b"x" * 100 and seen[-1] == (100, 100)
    g = Body(iter([b"ab", b"", b"cdef"]), 6)
    assert [g.read(3), g.read(3), g.read(3)] == [b"ab", b"cde", b"f"]
    with pytest.raises(ValueError):
        Body(io.BytesIO(b"toolong"), 3).read(10)


def test_content_info_parsing():
    c = object()
    i = _content_info("application/octet-stream,10,1700000000,sha256=ab&version=2,true", True, c)
    assert i.size == 10 and i.updated == 1700000000 and i.protected is True
    assert i.meta == "sha256=ab&version=2"
    i = _content_info("text/plain,3,1700000000,a,b,c", False, c)
    assert i.meta == "a,b,c" and i.protected is None
    i = _content_info("text/plain,3,1700000000,,false", True, c)
    assert i.meta == "" and i.protected is False


def test_content_range_parsing():
    assert _content_range("bytes 0-9/100") == (0, 9, 100)
    assert _content_range("bytes */100") == (None, None, 100)
    assert _content_range(None) == (None, None, None)


def test_errors_carry_status_and_reason_but_never_headers():
    e = errors.error_for(
        409, "serial number\nalready exists", "POST", "/provision/manage/model/m/"
    )
    assert isinstance(e, errors.Conflict) and e.status == 409
    assert e.reason == "serial number already exists"
    assert str(e) == "POST /provision/manage/model/m/: 409 serial number already exists"
    assert isinstance(errors.error_for(503, "x", "GET", "/"), errors.ServerError)
    assert isinstance(errors.error_for(302, "x", "GET", "/"), errors.UnexpectedResponse)
    long = errors.error_for(400, "y" * 1000, "GET", "/")
    assert len(long.reason) == 200


def test_table_json_csv_output():
    t = Table(["sn", "status"], [["00000001", "activated"], ["00000002", None]])
    assert format_table(t) == "SN        STATUS\n00000001  activated\n00000002\n"
    out = io.StringIO()
    emit(t, "json", out)
    assert json.loads(out.getvalue()) == [
        {"sn": "00000001", "status": "activated"},
        {"sn": "00000002", "status": ""},
    ]
    out = io.StringIO()
    emit(t, "csv", out)
    assert out.getvalue() == "sn,status\n00000001,activated\n00000002,\n"
    out = io.StringIO()
    emit(Done("created model m", model="m"), "json", out)
    assert json.loads(out.getvalue()) == {"ok": True, "model": "m"}
    assert format_table(Table(["a"], [])) == "(none)\n"


def test_progress_bar():
    out = io.StringIO()
    p = Progress("upload fw", True, out, width=10)
    p(0, 2048)
    p(1024, 2048)
    p(2048, 2048)
    text = out.getvalue()
    assert "\rupload fw [#####-----]  50% 1.0KiB/2.0KiB" in text
    assert text.endswith("[##########] 100% 2.0KiB/2.0KiB\n")
    quiet = io.StringIO()
    Progress("x", False, quiet)(1, 2)
    assert quiet.getvalue() == ""


def _args(**kw):
    base = dict(server=None, cik=None, token=None, config=None, owner=None)
    return argparse.Namespace(**{**base, **kw})


def test_settings_precedence_flags_env_config(tmp_path):
    cfg = tmp_path / "fleet.json"
    cfg.write_text(json.dumps({"server": "http://cfg:1", "cik": "c" * 40, "owner": "o1"}))
    os.chmod(cfg, 0o600)
    env = {"EXOPROV_CONFIG": str(cfg)}
    s = cli.settings(_args(), env)
    assert (s["server"], s["cik"], s["owner"]) == ("http://cfg:1", "c" * 40, "o1")
    env["EXOPROV_CIK"] = "e" * 40
    env["EXOPROV_SERVER"] = "http://env:2"
    s = cli.settings(_args(), env)
    assert (s["server"], s["cik"]) == ("http://env:2", "e" * 40)
    s = cli.settings(_args(cik="f" * 40, server="http://flag:3"), env)
    assert (s["server"], s["cik"]) == ("http://flag:3", "f" * 40)


def test_config_must_be_0600(tmp_path):
    cfg = tmp_path / "fleet.json"
    cfg.write_text(json.dumps({"cik": "c" * 40}))
    os.chmod(cfg, 0o644)
    with pytest.raises(cli.UsageError) as e:
        cli.settings(_args(config=str(cfg)), {})
    assert "mode 0644" in str(e.value) and "c" * 40 not in str(e.value)


def test_no_credentials_is_a_usage_error(tmp_path):
    with pytest.raises(cli.UsageError):
        cli.settings(_args(), {"HOME": str(tmp_path)})
