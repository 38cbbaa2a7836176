"""HTTPS served by `exoprov server --tls-cert --tls-key` itself: the agent (CPython with a CA
file or the system CAs; MicroPython with ca_file and CERT_REQUIRED) runs its whole flow
against it, and refuses it when the certificate does not chain to the CA it trusts; the fleet
client checks the certificate the same way. The CA is made at test time."""

import json
import os

import pytest
import requests
from agentkit import INTERPS, agent_config, run_agent
from conftest import Server
from exoprov.fleet.client import Client
from exoprov.fleet.errors import ProvisionError

from tools.harness.cluster import make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA and a certificate for 127.0.0.1 (EC P-256, cryptography), and another CA."""
    d = tmp_path_factory.mktemp("certs")
    certs = make_certs(d / "a")
    certs["other_ca"] = make_certs(d / "b")["ca"]
    return certs


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, certs):
    srv = Server(
        tmp_path_factory.mktemp("tls"),
        "--activation-limit", "0", "--tls-cert", certs["cert"], "--tls-key", certs["key"],
    )  # fmt: skip
    yield srv
    srv.stop()


def setup_sn(srv, certs, sn, content=None):
    v = srv.add_vendor()
    model = "tls" + sn
    contents = [("firmware-t", content, "2")] if content else ()
    with Client(srv.url, cik=v["cik"], ca_file=certs["ca"]) as c:
        c.setup(model, [sn], owner=v["rid"], contents=contents)
    return v["vendor"], model


def test_server_says_https_and_plain_http_once(tls_server, server):
    assert tls_server.url.startswith("https://127.0.0.1:")
    assert "serving plain HTTP" not in tls_server.log_text()
    assert server.url.startswith("http://")
    assert server.log_text().count("serving plain HTTP") == 1
    with pytest.raises(requests.exceptions.SSLError):  # not trusted by the system store
        requests.get(tls_server.url + "/ip", timeout=10)


@pytest.mark.parametrize("interp", INTERPS)
def test_https_with_configured_ca(tls_server, certs, tmp_path, interp):
    data = os.urandom(150_000)
    vendor, model = setup_sn(tls_server, certs, "t1" + interp, data)
    cfg = agent_config(
        tmp_path, tls_server.url, vendor=vendor, model=model, sn="t1" + interp, once=True,
        ca_file=certs["ca"],
    )  # fmt: skip
    r = run_agent(interp, cfg)
    assert r.returncode == 3, r.stderr
    assert (tmp_path / "install" / "fw.bin").read_bytes() == data
    assert run_agent(interp, cfg).returncode == 0
    st = json.loads((tmp_path / "state" / "state.json").read_bytes())
    assert st["state"] == "active" and len(st["cik"]) == 40


@pytest.mark.parametrize("interp", INTERPS)
def test_https_untrusted_certificate_refused(tls_server, certs, tmp_path, interp):
    vendor, model = setup_sn(tls_server, certs, "t2" + interp)
    extra = {"ca_file": certs["other_ca"]}
    if interp == "cpython":
        extra = {}  # system CAs: our test CA is not among them
    cfg = agent_config(
        tmp_path, tls_server.url, vendor=vendor, model=model, sn="t2" + interp, once=True,
        **extra,
    )  # fmt: skip
    r = run_agent(interp, cfg)
    assert r.returncode == 1, r.stderr
    assert "retrying in" in r.stderr
    st = json.loads((tmp_path / "state" / "state.json").read_bytes())
    assert st["cik"] is None and st["state"] == "unprov"  # nothing was sent


def test_fleet_client_checks_the_certificate(tls_server, certs, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", certs["other_ca"])  # the "system store" of this test
    assert Client(tls_server.url)._session.verify == certs["other_ca"]
    v = tls_server.add_vendor()
    with Client(tls_server.url, cik=v["cik"], ca_file=certs["ca"]) as c:
        c.request("GET", "/provision/manage/model/", (200, 204))
    for ca in (certs["other_ca"], None):  # another CA; the system store
        with Client(tls_server.url, cik=v["cik"], ca_file=ca) as c:
            with pytest.raises(ProvisionError) as exc:
                c.request("GET", "/provision/manage/model/", (200, 204))
        assert "TLS" in str(exc.value) and v["cik"] not in str(exc.value)


def test_fleet_command_with_ca_file(tls_server, certs, tmp_path):
    from conftest import exoprov

    v = tls_server.add_vendor()
    env = {k: x for k, x in os.environ.items() if not k.startswith("EXOPROV_")}
    env.update(HOME=str(tmp_path), EXOPROV_SERVER=tls_server.url, EXOPROV_CIK=v["cik"])
    r = exoprov(
        "fleet", "model", "create", "tlsm", "--code", "t", "--ca-file", certs["ca"], env=env
    )
    assert r.returncode == 0, r.stderr
    env["EXOPROV_CA_FILE"] = certs["ca"]
    r = exoprov("fleet", "model", "list", env=env)
    assert r.returncode == 0 and "tlsm" in r.stdout, r.stderr
    env["EXOPROV_CA_FILE"] = certs["other_ca"]
    r = exoprov("fleet", "model", "list", env=env, check=False)
    assert r.returncode == 1 and "TLS" in r.stderr and v["cik"] not in r.stderr
    del env["EXOPROV_CA_FILE"]  # the system store: our test CA is not in it
    r = exoprov("fleet", "model", "list", env=env, check=False)
    assert r.returncode == 1 and "TLS" in r.stderr
