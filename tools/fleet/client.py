"""Vendor client for every management procedure of the Provision API v1.1.

Built on `requests`: one keep-alive Session per client, downloads streamed with
`iter_content`, uploads streamed from file objects or generators with a known length, Range
requests, and every path segment and form value percent-encoded (`quote(..., safe="")`).
Status codes become the typed errors of `exoprov.fleet.errors`: the management procedures
(`/provision/manage/...`, `/provision/register`, `/provision/admin/auth/`), the
`/exoprov/v1` fleet status extension, and the device procedures a vendor tool needs
(`POST /provision/activate`, `GET /ip`).

    with Client("http://127.0.0.1:8080", cik=CIK) as c:
        c.model_create("m1", rid=VENDOR_RID)
        c.sn_add("m1", "00000001")
        c.sn_enable("m1", "00000001", owner=VENDOR_RID)
"""

import hashlib
import json
import os
from collections import namedtuple
from urllib.parse import parse_qsl, quote

import requests

from .errors import (
    Conflict,
    ConnectionFailed,
    NotFound,
    ProvisionError,
    RangeNotSatisfiable,
    TooManyRequests,
    UnexpectedResponse,
    error_for,
)

DEFAULT_SERVER = "http://127.0.0.1:8080"
PAGE_MAX = 1000  # the server clamps `limit` of a listing to 5..1000
_CHUNK = 64 * 1024

SnEntry = namedtuple("SnEntry", "sn status rid extra")
SnInfo = namedtuple("SnInfo", "status rid extra")
LogEntry = namedtuple("LogEntry", "timestamp connection entry")
ContentInfo = namedtuple("ContentInfo", "content_type size updated meta protected")
Member = namedtuple("Member", "type id expire meta")
GroupInfo = namedtuple("GroupInfo", "meta count")
ModelInfo = namedtuple("ModelInfo", "rid code options")


def q(value):
    """Percent-encode one path segment or form value; nothing is left unescaped."""
    return quote(str(value), safe="")


def form(pairs):
    """application/x-www-form-urlencoded body from (key, value) pairs; keys are ours."""
    return "&".join(f"{quote(k, safe='[]')}={q(v)}" for k, v in pairs)


def parse_meta(meta):
    """`sha256=...&version=...` -> dict (the project's integrity convention)."""
    return dict(parse_qsl(meta or "", keep_blank_values=True))


def format_meta(fields):
    """dict -> `k=v&...` with values percent-encoded."""
    return "&".join(f"{q(k)}={q(v)}" for k, v in fields.items())


def sha256_file(path, chunk=_CHUNK):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class Body:
    """A streamed request body of known length, from a file object or an iterable of bytes.

    `requests` sends a `Content-Length` for anything with `__len__`, and streams objects with
    `read` block by block; `progress(sent, total)` is called after every block.
    """

    def __init__(self, source, size, progress=None):
        self.size = size
        self.sent = 0
        self._progress = progress
        self._read = getattr(source, "read", None)
        self._iter = None if self._read else iter(source)
        self._rest = b""

    def __len__(self):
        return self.size

    def read(self, n=-1):
        n = _CHUNK if n is None or n < 0 else n
        if self._read:
            block = self._read(n)
        else:
            block = self._rest
            while not block:
                block = next(self._iter, None)
                if block is None:
                    block = b""
                    break
            block, self._rest = block[:n], block[n:]
        block = bytes(block)
        if self.sent + len(block) > self.size:
            raise ValueError("upload source is longer than its declared size")
        self.sent += len(block)
        if self._progress and block:
            self._progress(self.sent, self.size)
        return block


class Download:
    """An open content download: status, headers, and a streamed body (close it, or `with`)."""

    def __init__(self, resp):
        self._resp = resp
        self.status = resp.status_code
        self.headers = resp.headers
        self.content_type = resp.headers.get("Content-Type", "")
        self.etag = resp.headers.get("ETag")
        self.first, self.last, self.total = _content_range(resp.headers.get("Content-Range"))
        if self.status == 200:
            length = resp.headers.get("Content-Length")
            self.total = int(length) if length and length.isdigit() else None
            self.first = 0

    def iter_content(self, chunk=_CHUNK):
        return self._resp.iter_content(chunk)

    def read(self):
        return self._resp.content

    def close(self):
        self._resp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Client:
    """One vendor's keep-alive session against a Provision API server.

    `cik` (X-Exosite-CIK) or `token` (X-Exosite-Token) authenticate; `vendor` (sent as
    X-Exosite-Vendor) acts on another vendor's shared model. `for_vendor(name)` gives a client
    for a shared model on the same connection pool.
    """

    def __init__(
        self,
        server=DEFAULT_SERVER,
        cik=None,
        token=None,
        vendor=None,
        timeout=30,
        ca_file=None,
    ):
        self.server = server.rstrip("/")
        self.timeout = timeout
        self.vendor = vendor
        self._session = requests.Session()
        # https: the server's certificate is checked against `ca_file` (PEM) when given,
        # else against the system's CA store
        self._session.verify = ca_file or system_cas()
        self._own_session = True
        self._session.headers["User-Agent"] = "exoprov-fleet/0.1"
        if cik:
            self._session.headers["X-Exosite-CIK"] = cik
        if token:
            self._session.headers["X-Exosite-Token"] = token

    def for_vendor(self, vendor):
        other = object.__new__(Client)
        other.__dict__.update(self.__dict__)
        other.vendor = vendor
        other._own_session = False
        return other

    def close(self):
        if self._own_session:
            self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- transport ----------------------------------------------------------------------------

    def request(
        self,
        method,
        path,
        expect,
        query=(),
        body=None,
        ctype=None,
        headers=None,
        stream=False,
        auth=True,
    ):
        """One exchange. `path` is already encoded; `query` is (key, value) pairs.

        Returns the Response when its status is in `expect`, raises a ProvisionError otherwise.
        """
        url = self.server + path
        if query:
            url += "?" + form(query)
        hdrs = {}
        if ctype:
            hdrs["Content-Type"] = ctype
        if self.vendor and auth:
            hdrs["X-Exosite-Vendor"] = self.vendor
        if not auth:
            hdrs["X-Exosite-CIK"] = None  # requests drops None headers of the session
            hdrs["X-Exosite-Token"] = None
        hdrs.update(headers or {})
        if isinstance(body, str):
            body = body.encode("utf-8")
        shown = path  # what errors carry: never the query (a sn is fine, a token is not)
        try:
            resp = self._session.request(
                method,
                url,
                data=body,
                headers=hdrs,
                stream=stream,
                timeout=self.timeout,
                verify=self._session.verify,  # explicit: REQUESTS_CA_BUNDLE would win
            )
        except requests.RequestException as exc:
            raise ConnectionFailed(None, _net_reason(exc, self.server), method, shown)
        if resp.status_code in expect:
            return resp
        reason = ""
        try:
            if resp.headers.get("Content-Type", "").startswith("text/") or not stream:
                reason = resp.content[:512].decode("utf-8", "replace")
        finally:
            resp.close()
        err = error_for(resp.status_code, reason or resp.reason or "", method, shown)
        if isinstance(err, TooManyRequests):
            ra = resp.headers.get("Retry-After", "")
            err.retry_after = int(ra) if ra.isdigit() else None
        if isinstance(err, RangeNotSatisfiable):
            err.total = _content_range(resp.headers.get("Content-Range"))[2]
        raise err

    def _get_lines(self, path, query=(), empty=(204,)):
        resp = self.request("GET", path, (200, *empty), query=query)
        if resp.status_code != 200:
            return []
        return [ln for ln in resp.text.splitlines() if ln.strip()]

    def _post_form(self, path, pairs, expect=(205,)):
        ctype = "application/x-www-form-urlencoded; charset=utf-8"
        return self.request("POST", path, expect, body=form(pairs), ctype=ctype)

    def _post_csv(self, path, lines, method="POST"):
        body = "".join(f"{ln}\n" for ln in lines)
        return self.request(method, path, (205,), body=body, ctype="text/csv; charset=utf-8")

    def _send_json(self, method, path, obj):
        ctype = "application/javascript; charset=utf-8"
        return self.request(method, path, (205,), body=json.dumps(obj), ctype=ctype)

    # -- a vendor's fleet set up in one call (tests, harnesses, scripts) ------------------------

    def setup(self, model, sns=(), owner=None, code="exoprov", contents=(), batch=500):
        """A model ready for devices: created (with template `code`) unless it exists, `sns`
        (serial numbers, or (sn, extra) pairs) whitelisted in CSV requests of `batch`, and
        with `owner` (the vendor's rid) enabled: their clients created, CIKs minted,
        activation windows open. `contents`: (cid, data, version) tuples, each published as
        publish() does. Returns {sn: client rid} of the serial numbers enabled."""
        try:
            self.model_create(model, code=code)
        except Conflict:
            pass  # already there: setting up again adds to it
        rows = [s if isinstance(s, tuple) else (s, None) for s in sns]
        for i in range(0, len(rows), batch):
            self.sn_add_csv(model, rows[i : i + batch])
        rids = {sn: self.sn_enable(model, sn, owner) for sn, _ in rows} if owner else {}
        for cid, data, version in contents:
            self.publish(model, cid, data, version)
        return rids

    def publish(self, model, cid, data, version=None, meta=(), sha256=None):
        """Content `cid` holding `data` (bytes, or the path of a file, streamed), its meta
        `sha256=<hex>` (computed unless given), `version=` when given, then the (key, value)
        pairs of `meta`: the integrity convention the agent checks. A `cid` that exists is
        replaced. Returns the meta."""
        path = data if isinstance(data, (str, os.PathLike)) else None
        if sha256 is None:
            sha256 = sha256_file(path) if path else hashlib.sha256(data).hexdigest()
        fields = {"sha256": sha256, **({"version": version} if version is not None else {})}
        text = format_meta({**fields, **dict(meta)})
        try:
            self.content_delete(model, cid)
        except NotFound:
            pass
        self.content_create(model, cid, meta=text)
        if path:
            with open(path, "rb") as f:
                self.content_upload(model, cid, f, size=os.path.getsize(path))
        else:
            self.content_upload(model, cid, data)
        return text

    # -- models -------------------------------------------------------------------------------

    def models(self):
        return self._get_lines("/provision/manage/model/")

    def shared_models(self):
        """[(vendorname, model)] that other vendors shared with this one."""
        rows = self._get_lines("/provision/manage/model/", [("show", "shared")])
        return [tuple(_split(ln, 2, self, "shared model")) for ln in rows]

    def model_create(self, model, rid=None, code=None, options=()):
        pairs = [("model", model), *_template(rid, code), *[("options[]", o) for o in options]]
        self._post_form("/provision/manage/model/", pairs)

    def model_info(self, model):
        resp = self.request("GET", f"/provision/manage/model/{q(model)}", (200,))
        pairs = parse_qsl(resp.text.strip(), keep_blank_values=True)
        fields = dict(pairs)
        options = [v for k, v in pairs if k in ("options[]", "options")]
        return ModelInfo(fields.get("rid"), fields.get("code"), options)

    def model_update(self, model, rid=None, code=None, options=()):
        pairs = [*_template(rid, code), *[("options[]", o) for o in options]]
        ctype = "application/x-www-form-urlencoded; charset=utf-8"
        path = f"/provision/manage/model/{q(model)}"
        self.request("PUT", path, (205,), body=form(pairs), ctype=ctype)

    def model_delete(self, model, use_form=False):
        if use_form:
            self._post_form("/provision/manage/model/", [("delete", "true"), ("model", model)])
        else:
            self.request("DELETE", f"/provision/manage/model/{q(model)}", (205,))

    # -- serial numbers -----------------------------------------------------------------------

    def sn_list(self, model, offset=0, limit=None, shared=None, status=True):
        """One page of serial numbers as SnEntry (status is None unless `status`)."""
        query = [("offset", offset)]
        if limit is not None:
            query.append(("limit", limit))
        if shared:
            query.append(("shared", shared))
        if status:
            query.append(("status", "true"))
        rows = self._get_lines(f"/provision/manage/model/{q(model)}/", query)
        out = []
        for ln in rows:
            if status:
                sn, st, rid, extra = _split(ln, 4, self, "serial number", pad=True)
            else:
                sn, rid, extra = _split(ln, 3, self, "serial number", pad=True)
                st = None
            out.append(SnEntry(sn, st, rid, extra))
        return out

    def sn_all(self, model, shared=None, status=True, page=PAGE_MAX):
        """Every serial number of `model`, page by page."""
        return _all_pages(lambda off: self.sn_list(model, off, page, shared, status), page)

    def sn_ranges(self, model):
        resp = self.request(
            "GET", f"/provision/manage/model/{q(model)}/", (200, 204), [("show", "ranges")]
        )
        if resp.status_code == 204 or not resp.text.strip():
            return []
        try:
            return json.loads(resp.text).get("ranges", [])
        except (ValueError, AttributeError):
            raise self._bad("ranges are not JSON")

    def sn_add(self, model, sn, extra=None):
        pairs = [("sn", sn)] + ([("extra", extra)] if extra is not None else [])
        self._post_form(f"/provision/manage/model/{q(model)}/", pairs)

    def sn_add_many(self, model, sns):
        self._post_form(f"/provision/manage/model/{q(model)}/", [("sn[]", s) for s in sns])

    def sn_add_csv(self, model, rows):
        """rows: (sn, extra) pairs, sent as one text/csv body."""
        lines = [f"{sn},{extra or ''}" for sn, extra in rows]
        self._post_csv(f"/provision/manage/model/{q(model)}/", lines)

    def sn_add_ranges(self, model, ranges):
        self._send_json("POST", f"/provision/manage/model/{q(model)}/", {"ranges": ranges})

    def sn_remove(self, model, sn):
        path = f"/provision/manage/model/{q(model)}/"
        self._post_form(path, [("delete", "true"), ("sn", sn)])

    def sn_remove_many(self, model, sns):
        path = f"/provision/manage/model/{q(model)}/"
        self._post_form(path, [("delete", "true"), *[("sn[]", s) for s in sns]])

    def sn_remove_csv(self, model, sns):
        self._post_csv(f"/provision/manage/model/{q(model)}/", list(sns), method="DELETE")

    def sn_remove_ranges(self, model, ranges):
        self._send_json("DELETE", f"/provision/manage/model/{q(model)}/", {"ranges": ranges})

    def _sn_path(self, model, sn):
        return f"/provision/manage/model/{q(model)}/{q(sn)}"

    def sn_info(self, model, sn):
        """SnInfo, or None when the serial number is unused (204)."""
        rows = self._get_lines(self._sn_path(model, sn))
        if not rows:
            return None
        return SnInfo(*_split(rows[0], 3, self, "serial number info", pad=True))

    def sn_groups(self, model, sn, offset=0, limit=None):
        query = _paged([("show", "groups")], offset, limit)
        return self._get_lines(self._sn_path(model, sn), query)

    def sn_log(self, model, sn):
        out = []
        for ln in self._get_lines(self._sn_path(model, sn), [("show", "log")]):
            ts, conn, entry = _split(ln, 3, self, "log entry", pad=True)
            out.append(LogEntry(int(ts) if ts.isdigit() else ts, conn, entry))
        return out

    def sn_statuses(self, model, shared=None, page=PAGE_MAX):
        """What every serial number's device last told the server (exoprov extension,
        `GET /exoprov/v1/model/<model>/status`): {sn: dict(last_seen, address, reported,
        state, version, content, error, error_at, boots, rollbacks, progress, target)};
        None from a server without the extension (404)."""
        path = f"/exoprov/v1/model/{q(model)}/status"

        def fetch(offset):
            query = [("offset", offset), ("limit", page)] + (
                [("shared", shared)] if shared else []
            )
            try:
                devices = self.request("GET", path, (200,), query).json()["devices"]
            except (ValueError, KeyError, TypeError):
                raise self._bad("fleet status is not JSON") from None
            if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
                raise self._bad("fleet status is not a list of devices")
            return devices

        try:
            rows = _all_pages(fetch, page)
        except NotFound:
            return None
        return {d.get("sn"): d for d in rows}

    def sn_enable(self, model, sn, owner):
        """Create the client (mint its CIK, open the window); returns the client's rid."""
        resp = self._post_form(
            self._sn_path(model, sn), [("enable", "true"), ("owner", owner)], expect=(200,)
        )
        return resp.text.strip()

    def sn_remap(self, model, sn, oldsn):
        self._post_form(self._sn_path(model, sn), [("enable", "true"), ("oldsn", oldsn)])

    def sn_regenerate(self, model, sn):
        self._post_form(self._sn_path(model, sn), [("enable", "true")])

    def sn_disable(self, model, sn):
        self._post_form(self._sn_path(model, sn), [("disable", "true")])

    def sn_delete(self, model, sn):
        self.request("DELETE", self._sn_path(model, sn), (205,))

    # -- content ------------------------------------------------------------------------------

    def _content_path(self, model, cid=None):
        base = f"/provision/manage/content/{q(model)}/"
        return base if cid is None else base + q(cid)

    def content_list(self, model, sn=None):
        query = [("sn", sn)] if sn is not None else []
        return self._get_lines(self._content_path(model), query, empty=())

    def content_create(self, model, cid, meta="", protected=False):
        pairs = [("id", cid), ("meta", meta)] + ([("protected", "true")] if protected else [])
        self._post_form(self._content_path(model), pairs)

    def content_info(self, model, cid, sn=None):
        """ContentInfo; `protected` is None for the per-sn form (`sn=`), which omits it."""
        query = [("sn", sn)] if sn is not None else []
        resp = self.request("GET", self._content_path(model, cid), (200,), query)
        return _content_info(resp.text.strip(), sn is None, self)

    def content_groups(self, model, cid, offset=0, limit=None):
        query = _paged([("show", "groups")], offset, limit)
        return self._get_lines(self._content_path(model, cid), query)

    def content_upload(
        self, model, cid, data, content_type="application/octet-stream", size=None, progress=None
    ):
        """Upload `data`: bytes, a binary file object, or an iterable of bytes with `size`."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            if size is None:
                size = _stream_size(data)
            data = Body(data, size, progress)
        else:
            data = bytes(data)
        self.request("POST", self._content_path(model, cid), (205,), body=data, ctype=content_type)

    def content_open(self, model, cid, first=None, last=None, suffix=None, sn=None, if_range=None):
        """Start a download (streamed). Range: `first`[-`last`], or the last `suffix` bytes."""
        query = [("download", "true")] + ([("sn", sn)] if sn is not None else [])
        headers = {}
        if suffix is not None:
            headers["Range"] = f"bytes=-{int(suffix)}"
        elif first is not None or last is not None:
            headers["Range"] = f"bytes={int(first or 0)}-{'' if last is None else int(last)}"
        if if_range:
            headers["If-Range"] = if_range
        resp = self.request(
            "GET", self._content_path(model, cid), (200, 206), query, headers=headers, stream=True
        )
        return Download(resp)

    def content_read(self, model, cid, first=None, last=None, suffix=None, sn=None):
        """The blob (or the asked range) as bytes: binary-safe, never decoded."""
        with self.content_open(model, cid, first, last, suffix, sn) as d:
            return d.read()

    def content_download(self, model, cid, dest, sn=None, progress=None, verify=True):
        """Download into `dest`, resuming `dest.part` with Range; checks the meta's sha256.

        Returns the ContentInfo. A `.part` whose content changed on the server (If-Range
        answered with 200) starts again from zero. The digest is checked before `dest` is
        replaced; a mismatch removes the partial file and raises UnexpectedResponse.
        """
        info = self.content_info(model, cid, sn=sn)
        part, side = f"{dest}.part", f"{dest}.part.json"
        have, etag = _resume_point(part, side, info)
        if have and have >= info.size:
            have = info.size
        else:
            with self.content_open(
                model, cid, first=have or None, sn=sn, if_range=etag if have else None
            ) as d:
                if d.status == 200:
                    have = 0
                elif d.first != have or (d.total is not None and d.total != info.size):
                    raise self._bad("Content-Range does not match the request", "GET")
                with open(part, "r+b" if have else "wb") as f:
                    f.seek(have)
                    f.truncate()
                    _write_json(side, {"etag": d.etag, "size": info.size, "updated": info.updated})
                    for block in d.iter_content():
                        f.write(block)
                        have += len(block)
                        if progress:
                            progress(have, info.size)
        if have != info.size or os.path.getsize(part) != info.size:
            raise self._bad(f"got {have} of {info.size} bytes", "GET")
        want = parse_meta(info.meta).get("sha256")
        if verify and want:
            got = sha256_file(part)
            if got != want.lower():
                os.unlink(part)
                _unlink(side)
                raise self._bad("sha256 of the download does not match its meta", "GET")
        os.replace(part, dest)
        _unlink(side)
        return info

    def content_delete(self, model, cid, use_form=False):
        if use_form:
            self._post_form(self._content_path(model), [("delete", "true"), ("id", cid)])
        else:
            self.request("DELETE", self._content_path(model, cid), (205,))

    # -- groups -------------------------------------------------------------------------------

    def _group_path(self, model, gid=None, members=False):
        base = f"/provision/manage/group/{q(model)}/"
        if gid is None:
            return base
        return base + q(gid) + ("/" if members else "")

    def group_list(self, model, offset=0, limit=None):
        """[(group id, meta)]."""
        rows = self._get_lines(self._group_path(model), _paged([], offset, limit))
        return [tuple(_split(ln, 2, self, "group", pad=True)) for ln in rows]

    def group_create(self, model, gid, meta=""):
        self._post_form(self._group_path(model), [("id", gid), ("meta", meta)])

    def group_info(self, model, gid):
        resp = self.request("GET", self._group_path(model, gid), (200,))
        meta, _, count = resp.text.strip().rpartition(",")
        if not count.isdigit():
            raise self._bad("group info does not parse", "GET")
        return GroupInfo(meta, int(count))

    def group_groups(self, model, gid, offset=0, limit=None):
        return self._get_lines(
            self._group_path(model, gid), _paged([("show", "groups")], offset, limit)
        )

    def group_delete(self, model, gid, use_form=False):
        if use_form:
            self._post_form(self._group_path(model), [("id", gid), ("delete", "true")])
        else:
            self.request("DELETE", self._group_path(model, gid), (205,))

    def group_members(self, model, gid, type=None, member=None, offset=0, limit=None):
        """Members as Member tuples, filtered by `type` and/or member id."""
        query = ([("type", type)] if type else []) + ([("id", member)] if member else [])
        rows = self._get_lines(self._group_path(model, gid, True), _paged(query, offset, limit))
        return [Member(*_split(ln, 4, self, "member", pad=True)) for ln in rows]

    def group_add(self, model, gid, type, ids, expire="", meta=""):
        """Add or update members of one type; one id uses `id=`, several `id[]=`."""
        ids = list(ids)
        key = "id" if len(ids) == 1 else "id[]"
        pairs = [("type", type), *[(key, i) for i in ids], ("expire", expire), ("meta", meta)]
        self._post_form(self._group_path(model, gid, True), pairs)

    def group_add_csv(self, model, gid, members):
        """members: (type, id, expire, meta) tuples of any mix of types."""
        lines = [",".join(str(v if v is not None else "") for v in m) for m in members]
        self._post_csv(self._group_path(model, gid, True), lines)

    def group_remove(self, model, gid, type, ids):
        ids = list(ids)
        key = "id" if len(ids) == 1 else "id[]"
        pairs = [("type", type), *[(key, i) for i in ids], ("delete", "true")]
        self._post_form(self._group_path(model, gid, True), pairs)

    def group_remove_csv(self, model, gid, pairs):
        """pairs: (type, id)."""
        lines = [f"{t},{i}" for t, i in pairs]
        self._post_csv(self._group_path(model, gid, True), lines, method="DELETE")

    # -- shares -------------------------------------------------------------------------------

    def share_list(self, model):
        return self._get_lines(f"/provision/manage/share/{q(model)}/")

    def share_create(self, model, vendor):
        self._post_form(f"/provision/manage/share/{q(model)}/", [("vendor", vendor)])

    def share_exists(self, model, vendor):
        """True when `model` is shared with `vendor` (204), False on 404."""
        try:
            self.request("GET", f"/provision/manage/share/{q(model)}/{q(vendor)}", (204,))
        except NotFound:
            return False
        return True

    def share_delete(self, model, vendor, use_form=False):
        if use_form:
            path = f"/provision/manage/share/{q(model)}/"
            self._post_form(path, [("vendor", vendor), ("delete", "true")])
        else:
            path = f"/provision/manage/share/{q(model)}/{q(vendor)}"
            self.request("DELETE", path, (205,))

    # -- vendor name and tokens ---------------------------------------------------------------

    def vendor_name(self):
        return self.request("GET", "/provision/register", (200,)).text.strip()

    def vendor_register(self, name):
        self._post_form("/provision/register", [("vendor", name)])

    def vendor_unregister(self, name):
        self._post_form("/provision/register", [("delete", "true"), ("vendor", name)])

    def token_list(self):
        return self._get_lines("/provision/admin/auth/")

    def token_create(self, tid):
        """A new vendor token for `tid` (a secret: the caller decides where it goes)."""
        return self._post_form("/provision/admin/auth/", [("id", tid)], expect=(200,)).text.strip()

    def token_get(self, tid):
        return self.request("GET", f"/provision/admin/auth/{q(tid)}", (200,)).text.strip()

    def token_delete(self, tid, use_form=False):
        if use_form:
            self._post_form("/provision/admin/auth/", [("delete", "true"), ("id", tid)])
        else:
            self.request("DELETE", f"/provision/admin/auth/{q(tid)}", (205,))

    # -- device side (for factory tests and the demo) -----------------------------------------

    def activate(self, vendor, model, sn):
        """POST /provision/activate without vendor credentials; returns the device CIK."""
        ctype = "application/x-www-form-urlencoded; charset=utf-8"
        body = form([("vendor", vendor), ("model", model), ("sn", sn)])
        resp = self.request(
            "POST", "/provision/activate", (200,), body=body, ctype=ctype, auth=False
        )
        return resp.text.strip()

    def ip(self):
        return self.request("GET", "/ip", (200,), auth=False).text.strip()

    def _bad(self, what, method="GET"):
        return UnexpectedResponse(None, what, method, "")


# -- helpers ----------------------------------------------------------------------------------


def _template(rid, code):
    if (rid is None) == (code is None):
        raise ValueError("give exactly one of rid and code")
    return [("rid", rid)] if rid is not None else [("code", code)]


def _paged(query, offset, limit):
    query = list(query)
    if offset:
        query.append(("offset", offset))
    if limit is not None:
        query.append(("limit", limit))
    return query


def _all_pages(fetch, page):
    out, offset = [], 0
    while True:
        rows = fetch(offset)
        out.extend(rows)
        if len(rows) < page:
            return out
        offset += len(rows)


def _split(line, n, client, what, pad=False):
    parts = line.split(",", n - 1)
    if len(parts) < n:
        if not pad:
            raise client._bad(f"{what} line does not parse")
        parts += [""] * (n - len(parts))
    return parts


def _content_info(text, vendor_form, client):
    head = text.split(",", 3)
    if len(head) < 3 or not head[1].isdigit():
        raise client._bad("content info does not parse")
    ctype, size, updated = head[0], int(head[1]), head[2]
    rest = head[3] if len(head) > 3 else ""
    protected = None
    if vendor_form:
        meta, _, flag = rest.rpartition(",")
        if flag not in ("true", "false"):
            meta, flag = rest, ""
        protected = flag == "true"
    else:
        meta = rest
    return ContentInfo(
        ctype, size, int(updated) if updated.isdigit() else updated, meta, protected
    )


def _content_range(value):
    """'bytes 0-9/100' -> (0, 9, 100); '*/100' -> (None, None, 100); absent -> Nones."""
    if not value or not value.startswith("bytes "):
        return None, None, None
    span, _, total = value[6:].partition("/")
    total = int(total) if total.isdigit() else None
    first, _, last = span.partition("-")
    if first.isdigit() and last.isdigit():
        return int(first), int(last), total
    return None, None, total


def _stream_size(f):
    try:
        st = os.fstat(f.fileno())
        return st.st_size - f.tell()
    except (AttributeError, OSError, ValueError):
        pass
    raise ValueError("size is needed for an upload from a stream of unknown length")


def _resume_point(part, side, info):
    """(bytes already in `part`, ETag to send in If-Range), or (0, None) to start over."""
    try:
        have = os.path.getsize(part)
        with open(side) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return 0, None
    if not isinstance(meta, dict) or meta.get("size") != info.size:
        return 0, None
    if meta.get("updated") != info.updated or not meta.get("etag"):
        return 0, None
    return have, meta["etag"]


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def system_cas():
    """The system's CA store as OpenSSL finds it (SSL_CERT_FILE / SSL_CERT_DIR honoured), or
    True (requests' own bundle) on a system without one."""
    import ssl

    paths = ssl.get_default_verify_paths()
    for path in (paths.cafile, paths.capath):
        if path and os.path.exists(path):
            return path
    return True


def _net_reason(exc, server):
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS with {server} failed (is its certificate signed by the CA you trust?)"
    if isinstance(exc, requests.Timeout):
        return f"no answer from {server} in time"
    if isinstance(exc, requests.ConnectionError):
        return f"cannot connect to {server}"
    return f"{type(exc).__name__} talking to {server}"


__all__ = ["Client", "Body", "Download", "ProvisionError", "parse_meta", "format_meta", "q"]
