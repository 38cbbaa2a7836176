"""The device side of the Provision API (provision-api-v1.1-a.md, "device provisioning").

Each call is one exchange on an http.Conn; status codes become typed errors carrying the status.
"""

from agent.compat import const
from agent.http import AgentError, ProtocolError, form, quote

_CIK_LEN = const(40)  # spec/README.md: check only the length, never that it is hex
_SMALL = const(1024)  # cap for CIK, content info and error bodies
_LIST = const(8192)  # cap for the content id list


class ApiError(AgentError):
    """The server answered with an error status (self.status)."""

    def __init__(self, status, what=""):
        super().__init__(status, what)
        self.status = status


class Unauthorized(ApiError):
    """401: the CIK was regenerated, disabled or deleted."""


class Forbidden(ApiError):
    """403: invalid vendor/model pair."""


class NotFound(ApiError):
    """404: the serial number is not whitelisted (or the content is gone)."""


class Conflict(ApiError):
    """409: not enabled, already activated, or the activation window expired."""


class ServerError(ApiError):
    """5xx: try again later."""


def error(status, what=""):
    for cls, code in ((Unauthorized, 401), (Forbidden, 403), (NotFound, 404), (Conflict, 409)):
        if status == code:
            return cls(status, what)
    return (ServerError if status >= 500 else ApiError)(status, what)


def parse_meta(meta):
    """'sha256=..&version=1.2' -> dict (the project's integrity convention, spec/README.md)."""
    out = {}
    for part in meta.split("&"):
        k, _, v = part.partition("=")
        if k.strip():
            out[k.strip()] = v.strip()
    return out


class Api:
    def __init__(self, conn, vendor, model):
        self.conn = conn
        self._q = form(("vendor", vendor), ("model", model))

    def _call(self, method, path, cik=None, hdrs=(), body=None, ok=200):
        if cik is not None:
            hdrs = (("X-Exosite-CIK", cik),) + tuple(hdrs)
        st = self.conn.request(method, path, hdrs, body)
        if st != ok:
            self.conn.close()  # error bodies are not needed; never keep them on the wire
            if 200 <= st < 300:
                raise ProtocolError("answer %d, expected %d" % (st, ok))  # e.g. 200 to a Range
            raise error(st)
        return st

    def activate(self, sn):
        """POST /provision/activate -> the CIK (str)."""
        self._call("POST", "/provision/activate", body=self._q + "&" + form(("sn", sn)))
        cik = bytes(self.conn.read_all(_SMALL)).decode().strip()
        if len(cik) != _CIK_LEN or min(cik) <= " ":  # it goes into a header line
            raise ProtocolError("activation answer is not a CIK")
        return cik

    def list(self, cik, prefix=""):
        """Content ids this device may download, keeping those starting with prefix."""
        self._call("GET", "/provision/download?" + self._q, cik)
        ids = []
        for line in bytes(self.conn.read_all(_LIST)).decode().split("\n"):
            line = line.strip()
            if line and line.startswith(prefix):
                ids.append(line)
        return ids

    def info(self, cik, cid):
        """-> (content_type, size, updated, meta dict) of content cid."""
        self._call("GET", "/provision/download?%s&id=%s&info=true" % (self._q, quote(cid)), cik)
        parts = bytes(self.conn.read_all(_SMALL)).decode().strip().split(",", 3)
        try:
            return parts[0], int(parts[1]), int(parts[2]), parse_meta(parts[3])
        except (IndexError, ValueError):
            raise ProtocolError("bad content info")

    def fetch(self, cik, cid, first, last, total, etag=None):
        """Ask for bytes first..last (inclusive) of content cid; check the answer is exactly
        that range of a `total`-byte content. The body is then read with conn.readinto().
        Returns the ETag (or None)."""
        hdrs = [("Range", "bytes=%d-%d" % (first, last))]
        if etag:
            hdrs.append(("If-Range", etag))  # a replaced content answers 200: we abort
        self._call(
            "GET", "/provision/download?%s&id=%s" % (self._q, quote(cid)), cik, hdrs, ok=206
        )
        h = self.conn.headers
        want = "bytes %d-%d/%d" % (first, last, total)
        n = h.get("content-length")
        if h.get("content-range") != want or (n is not None and n != str(last - first + 1)):
            self.conn.close()
            raise ProtocolError("answer is not the range asked for")
        return h.get("etag")

    def report(self, cik, *pairs):
        """Best-effort status report through the One Platform alias interface (204)."""
        self._call("POST", "/onep:v1/stack/alias", cik, body=form(*pairs), ok=204)
