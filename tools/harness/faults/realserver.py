"""Start the project's own server (`exoprov server`) on loopback for fuzz, load and bench.

Also the few vendor calls those tools need to set up a model, serial numbers and content.
"""

import hashlib
import os

import requests

from tools.harness.launch import ROOT, ServerProcess

RealServer = ServerProcess  # the name fuzz, load and bench use
__all__ = ["ROOT", "Fleet", "RealServer"]


class Fleet:
    """The vendor calls the tools need (a model, serial numbers, content)."""

    def __init__(self, url, vendor):
        self.url, self.vendor = url, vendor
        self.s = requests.Session()
        self.s.headers["X-Exosite-CIK"] = vendor["cik"]

    def _call(self, method, path, ok, **kw):
        kw.setdefault("verify", self.s.verify)  # else REQUESTS_CA_BUNDLE overrides .verify
        r = self.s.request(method, self.url + path, timeout=120, **kw)
        if r.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:200]}")
        return r

    def model(self, model):
        data = {"model": model, "rid": self.vendor["rid"]}
        self._call("POST", "/provision/manage/model/", (205, 409), data=data)

    def add_sns(self, model, sns):
        path = f"/provision/manage/model/{model}/"
        for i in range(0, len(sns), 500):
            body = "".join(s + "\r\n" for s in sns[i : i + 500])
            hdr = {"Content-Type": "text/csv; charset=utf-8"}
            self._call("POST", path, (205,), data=body.encode(), headers=hdr)

    def add_sn(self, model, sn):
        path = f"/provision/manage/model/{model}/"
        self._call("POST", path, (205, 409), data={"sn": sn, "extra": ""})

    def enable(self, model, sn):
        data = {"enable": "true", "owner": self.vendor["rid"]}
        return self._call("POST", f"/provision/manage/model/{model}/{sn}", (200,), data=data)

    def content(self, model, cid, data, version=None):
        meta = "sha256=" + hashlib.sha256(data).hexdigest()
        if version is not None:
            meta += f"&version={version}"
        path = f"/provision/manage/content/{model}/"
        self._call("POST", path, (205, 409), data={"id": cid, "meta": meta})
        hdr = {"Content-Type": "application/octet-stream"}
        self._call("POST", path + cid, (205,), data=data, headers=hdr)
        return meta

    def delete_content(self, model, cid):
        self._call("DELETE", f"/provision/manage/content/{model}/{cid}", (204, 205, 404))

    def content_file(self, model, cid, fpath, version=None):
        h = hashlib.sha256()
        with open(fpath, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        meta = "sha256=" + h.hexdigest()
        if version is not None:
            meta += f"&version={version}"
        path = f"/provision/manage/content/{model}/"
        self._call("POST", path, (205, 409), data={"id": cid, "meta": meta})
        hdr = {"Content-Type": "application/octet-stream"}
        hdr["Content-Length"] = str(os.path.getsize(fpath))
        with open(fpath, "rb") as f:
            self._call("POST", path + cid, (205,), data=f, headers=hdr)
        return meta
