"""Unit tests of the server's pure parts: Range parsing, serial-number ranges, rate limiter."""

import pytest
from exoprov.server import byteranges, snranges
from exoprov.server.ratelimit import Limiter
from exoprov.server.util import ApiError, page, parse_form


@pytest.mark.parametrize(
    "header,total,want",
    [
        (None, 10, None),
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=2-5", 10, (2, 5)),
        ("bytes=2-", 10, (2, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=5-100", 10, (5, 9)),
        (" bytes=1-2 ", 10, (1, 2)),
        ("bytes=5-2", 10, None),
        ("bytes=-", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=0-1,3-4", 10, None),
        ("pages=0-1", 10, None),
    ],
)
def test_range_parse(header, total, want):
    assert byteranges.parse(header, total) == want


@pytest.mark.parametrize("header,total", [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=-5", 0)])
def test_range_unsatisfiable(header, total):
    with pytest.raises(byteranges.Unsatisfiable):
        byteranges.parse(header, total)


def test_if_range():
    etag = '"abc"'
    date = byteranges.http_date(1_700_000_000)
    assert byteranges.if_range_matches(None, etag, 1_700_000_000)
    assert byteranges.if_range_matches(etag, etag, 1_700_000_000)
    assert not byteranges.if_range_matches('"abd"', etag, 1_700_000_000)
    assert not byteranges.if_range_matches("W/" + etag, etag, 1_700_000_000)
    assert byteranges.if_range_matches(date, etag, 1_700_000_000)
    assert not byteranges.if_range_matches(date, etag, 1_700_000_001)
    assert not byteranges.if_range_matches("not a date", etag, 1_700_000_000)


def test_serial_number_formats():
    spec = snranges.normalise({"format": "base16", "length": 6, "first": 0, "last": 0xFFFFFF})
    assert snranges.value_of(spec, "00abCD") == 0xABCD  # no casing: either case
    assert snranges.value_of(spec, "abcd") is None  # not padded
    mac = snranges.normalise(
        {"format": "mac:48", "casing": "upper", "first": 0, "last": 2**48 - 1}
    )
    assert snranges.value_of(mac, "AA:BB:CC:DD:EE:FF") == 0xAABBCCDDEEFF
    assert snranges.value_of(mac, "aa:bb:cc:dd:ee:ff") is None
    assert snranges.value_of(mac, "AA-BB-CC-DD-EE-FF") is None
    dot = snranges.normalise({"format": "mac.48", "first": 0, "last": 10})
    assert snranges.contains(dot, "0000.0000.000a")
    assert not snranges.contains(dot, "0000.0000.000b")
    dec = snranges.normalise({"format": "base10", "first": 0, "last": 100})
    assert snranges.contains(dec, "0") and snranges.contains(dec, "100")
    assert not snranges.contains(dec, "007") and not snranges.contains(dec, "101")
    assert not snranges.contains(dec, "1" * 50)
    with pytest.raises(ApiError):
        snranges.normalise({"format": "base10", "first": True, "last": 2})


def test_limiter_sliding_minute():
    now = [1000.0]
    lim = Limiter(2, lambda: now[0])
    assert lim.retry_after("a") == 0
    lim.failed("a")
    lim.failed("a")
    assert lim.retry_after("a") == 60
    assert lim.retry_after("b") == 0
    now[0] += 59.5
    assert lim.retry_after("a") == 1
    now[0] += 1
    assert lim.retry_after("a") == 0
    off = Limiter(0, lambda: now[0])
    for _ in range(100):
        off.failed("a")
    assert off.retry_after("a") == 0


def test_form_and_page():
    assert parse_form(b"a=1&a=2&b=&c") == {"a": ["1", "2"], "b": [""], "c": [""]}
    with pytest.raises(ApiError):
        parse_form(b"a=%ff")
    assert page({}) == (0, 5)
    assert page({"limit": ["3"], "offset": ["7"]}) == (7, 5)
    assert page({"limit": ["2000"]}) == (0, 1000)
    with pytest.raises(ApiError):
        page({"offset": ["-1"]})
