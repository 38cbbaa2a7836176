"""The agent over https: certificate checked on CPython (CA file or system CAs) and, under
MicroPython, against the configured ca_file with CERT_REQUIRED. A TLS front (agentkit
StallProxy with tls=) sits before the real server."""

import hashlib
import json
import os

import pytest
from agentkit import INTERPS, StallProxy, agent_config, make_certs, run_agent


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def front(server, certs):
    p = StallProxy(server.host, server.port, tls=(certs["cert"], certs["key"]))
    yield p
    p.close()


def setup_sn(server, sn, content=None):
    v = server.add_vendor()
    s = server.session(cik=v["cik"])
    model = "tls" + sn
    assert s.post("/provision/manage/model/", data={"model": model, "code": "t"}).ok
    assert s.post(f"/provision/manage/model/{model}/", data={"sn": sn}).ok
    r = s.post(f"/provision/manage/model/{model}/{sn}", data={"enable": "true", "owner": v["rid"]})
    assert r.ok
    if content:
        url = f"/provision/manage/content/{model}/"
        meta = "sha256=" + hashlib.sha256(content).hexdigest() + "&version=2"
        assert s.post(url, data={"id": "firmware-t", "meta": meta}).ok
        assert s.post(url + "firmware-t", data=content).ok
    s.close()
    return v["vendor"], model


@pytest.mark.parametrize("interp", INTERPS)
def test_https_with_configured_ca(server, front, certs, tmp_path, interp):
    data = os.urandom(150_000)
    vendor, model = setup_sn(server, "t1" + interp, data)
    cfg = agent_config(
        tmp_path, front.url, vendor=vendor, model=model, sn="t1" + interp, once=True,
        ca_file=certs["ca"],
    )  # fmt: skip
    r = run_agent(interp, cfg)
    assert r.returncode == 3, r.stderr
    assert (tmp_path / "install" / "fw.bin").read_bytes() == data
    assert run_agent(interp, cfg).returncode == 0


@pytest.mark.parametrize("interp", INTERPS)
def test_https_untrusted_certificate_refused(server, front, certs, tmp_path, interp):
    vendor, model = setup_sn(server, "t2" + interp)
    extra = {"ca_file": certs["other_ca"]}
    if interp == "cpython":
        extra = {}  # system CAs: our test CA is not among them
    cfg = agent_config(
        tmp_path, front.url, vendor=vendor, model=model, sn="t2" + interp, once=True, **extra
    )
    r = run_agent(interp, cfg)
    assert r.returncode == 1, r.stderr
    assert "retrying in" in r.stderr
    st = json.loads((tmp_path / "state" / "state.json").read_bytes())
    assert st["cik"] is None and st["state"] == "unprov"  # nothing was sent
