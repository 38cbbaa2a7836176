"""Helpers shared by the server conformance tests (test_server_*.py); no tests here."""

import itertools
import re

_n = itertools.count(1)
HEX40 = re.compile(r"[0-9a-f]{40}")


def new_model(s, code="tmpl"):
    name = f"m{next(_n)}"
    r = s.post("/provision/manage/model/", data={"model": name, "code": code})
    assert r.status_code == 205, r.text
    return name


def add_sn(s, model, sn, extra=""):
    r = s.post(f"/provision/manage/model/{model}/", data={"sn": sn, "extra": extra})
    assert r.status_code == 205, r.text


def enable(s, model, sn, owner):
    r = s.post(f"/provision/manage/model/{model}/{sn}", data={"enable": "true", "owner": owner})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/csv")
    return r.text.strip()


def activate(server, vendor_name, model, sn):
    with server.session() as s:
        return s.post(
            "/provision/activate", data={"vendor": vendor_name, "model": model, "sn": sn}
        )


def device(server, vendor, vclient, model, sn):
    """Whitelist, enable and activate `sn`; returns its CIK."""
    add_sn(vclient, model, sn)
    enable(vclient, model, sn, vendor["rid"])
    r = activate(server, vendor["vendor"], model, sn)
    assert r.status_code == 200, r.text
    return r.text


def add_content(s, model, cid, data=None, meta="", protected=False, ctype="text/plain"):
    form = {"id": cid, "meta": meta}
    if protected:
        form["protected"] = "true"
    r = s.post(f"/provision/manage/content/{model}/", data=form)
    assert r.status_code == 205, r.text
    if data is not None:
        r = s.post(
            f"/provision/manage/content/{model}/{cid}", data=data, headers={"Content-Type": ctype}
        )
        assert r.status_code == 205, r.text


def lines(r):
    return r.text.splitlines()
