"""`--trusted-proxy`: the caller's address comes from Forwarded / X-Forwarded-For only when
the TCP peer is a trusted proxy; from anyone else the headers change nothing (the activation
limit, the activation log, /ip)."""

import pytest
from aiohttp.test_utils import make_mocked_request
from exoprov.server import proxies
from serverkit import add_sn, enable, new_model


def _setup(srv):
    v = srv.add_vendor()
    with srv.session(cik=v["cik"]) as s:
        model = new_model(s)
        for sn in ("a", "b"):
            add_sn(s, model, sn)
            enable(s, model, sn, v["rid"])
    return v, model


def _activate(srv, v, model, sn, headers):
    with srv.session() as s:
        form = {"vendor": v["vendor"], "model": model, "sn": sn}
        return s.post("/provision/activate", data=form, headers=headers)


def _log(srv, v, model, sn):
    with srv.session(cik=v["cik"]) as s:
        r = s.get(f"/provision/manage/model/{model}/{sn}", params={"show": "log"})
        return [line.split(",")[1] for line in r.text.splitlines()]


def _ip(srv, headers):
    with srv.session() as s:
        return s.get("/ip", headers=headers).text.strip()


FORGED = [
    {"X-Forwarded-For": "203.0.113.9"},
    {"Forwarded": 'for="198.51.100.7:999";by="192.0.2.1:443"'},
    {"X-Forwarded-For": "203.0.113.10, 203.0.113.11"},
]


def test_forged_headers_from_an_untrusted_peer_change_nothing(make_server):
    srv = make_server("--activation-limit", "3", "--trusted-proxy", "10.0.0.0/8")
    v, model = _setup(srv)
    plain = _ip(srv, {})
    assert plain.startswith("127,0,0,1,")
    for h in FORGED:
        assert _ip(srv, h) == plain
    # every forged address is still the one peer: the limit is spent after 3 failures
    for h in FORGED:
        assert _activate(srv, v, model, "nosuch", h).status_code == 404
    r = _activate(srv, v, model, "a", {"X-Forwarded-For": "203.0.113.99"})
    assert r.status_code == 429
    assert _activate(srv, v, model, "a", {"Forwarded": "for=192.0.2.200"}).status_code == 429


def test_through_a_trusted_proxy_the_forwarded_client_counts(make_server):
    srv = make_server("--activation-limit", "2", "--trusted-proxy", "127.0.0.0/8")
    v, model = _setup(srv)
    dev = {"X-Forwarded-For": "203.0.113.5, 127.0.0.9"}  # a device behind two proxies
    other = {"Forwarded": 'for="198.51.100.7:4711";by="192.0.2.1:443";proto=https'}
    for _ in range(2):
        assert _activate(srv, v, model, "nosuch", dev).status_code == 404
    assert _activate(srv, v, model, "a", dev).status_code == 429  # that device's limit
    assert _activate(srv, v, model, "a", other).status_code == 200  # another device's
    assert _activate(srv, v, model, "a", other).status_code == 409
    assert _log(srv, v, model, "a") == ["198.51.100.7:4711", "198.51.100.7:4711"]
    # /ip: the address the client reached, as the proxy accepted it (443 = 1,187)
    assert _ip(srv, other) == "192,0,2,1,1,187"
    assert _ip(srv, dev).startswith("127,0,0,1,")  # no by=: the local socket
    # a client's own left-hand entries are not believed past the first untrusted hop
    forged = {"X-Forwarded-For": "1.2.3.4, 203.0.113.5"}
    assert _activate(srv, v, model, "b", forged).status_code == 429


@pytest.mark.parametrize(
    "peer,headers,want",
    [
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.5"}, ("203.0.113.5", None, None)),
        ("10.1.1.1", {"X-Forwarded-For": "203.0.113.5"}, ("10.1.1.1", 5, None)),
        ("127.0.0.1", {"Forwarded": 'for="[2001:db8::1]:80"'}, ("2001:db8::1", 80, None)),
        ("127.0.0.1", {"Forwarded": "for=unknown"}, ("127.0.0.1", 5, None)),
        ("127.0.0.1", {"X-Forwarded-For": "garbage"}, ("127.0.0.1", 5, None)),
        ("127.0.0.1", {"X-Forwarded-For": "127.0.0.2, 127.0.0.3"}, ("127.0.0.2", None, None)),
        (
            "127.0.0.1",
            {"Forwarded": 'for=192.0.2.9;by="192.0.2.1:8443", for=127.0.0.4'},
            ("192.0.2.9", None, ("192.0.2.1", 8443)),
        ),
    ],
)
def test_resolve(peer, headers, want):
    nets = proxies.parse_networks(["127.0.0.0/8"])
    request = make_mocked_request("GET", "/ip", headers=headers)
    assert proxies.resolve(peer, 5, request, nets) == want


def test_bad_trusted_proxy_is_a_usage_error(tmp_path):
    from conftest import exoprov

    r = exoprov("server", "--db", tmp_path / "x.db", "--trusted-proxy", "nonsense", check=False)
    assert r.returncode == 2 and "nonsense" in r.stderr
