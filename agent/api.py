"""The device side of the Provision API: POST /provision/activate, GET /provision/download
(the content list, a content's info, Range requests of its bytes) and the status written
through the One Platform alias interface (POST /onep:v1/stack/alias).

Each call is one exchange on an http.Conn. A status other than the documented success raises
ApiError(status): 401 CIK regenerated/disabled, 403 invalid vendor/model pair, 404 not
whitelisted (or no such content), 409 not enabled / already activated / expired, 5xx.
Anything malformed raises http.ProtocolError.
"""

from .compat import const
from .http import AgentError, ProtocolError, form, quote

_CIK_LEN = const(40)  # POST /provision/activate: check only the length, never that it is hex
_SMALL = const(1024)  # cap for CIK and content info bodies
_LIST = const(8192)  # cap for the content id list
_RMS = const(4000)  # a report's whole exchange: it must never hold an update back


class ApiError(AgentError):
    """The server answered an error status: args[0] is the status."""


class Api:
    def __init__(self, conn, vendor, model):
        self.conn = conn
        # One encoded copy of vendor and model, kept for the whole run: the download query,
        # whose part after "?" also begins the activation's body.
        self._q = "/provision/download?" + form(("vendor", vendor), ("model", model))

    def _call(self, path, cik=None, hdrs=(), body=None, ok=200, ms=0):
        if cik:
            hdrs = (("X-Exosite-CIK", cik),) + tuple(hdrs)
        st = self.conn.request("POST" if body else "GET", path, hdrs, body, ms)
        if st != ok:
            self.conn.close()  # error bodies are not needed
            if 200 <= st < 300:
                raise ProtocolError("answer %d, not %d" % (st, ok))  # e.g. 200 to a Range
            raise ApiError(st)

    def sent(self):
        """Did any byte of the last request leave? (An activation that did not cannot have
        been used by the server.)"""
        return self.conn.sent

    def activate(self, sn):
        """POST /provision/activate -> the CIK."""
        vm = self._q[self._q.find("?") + 1 :]
        self._call("/provision/activate", body=vm + "&" + form(("sn", sn)))
        cik = self.conn.read_all(_SMALL).decode().strip()
        if len(cik) != _CIK_LEN or min(cik) <= " ":  # it goes into a header line
            raise ProtocolError("activation answer is not a CIK")
        return cik

    def list(self, cik, prefix=""):
        """Content ids this device may download that start with prefix."""
        self._call(self._q, cik)
        body = self.conn.read_all(_LIST).decode().split("\n")
        return [i.strip() for i in body if i.strip() and i.startswith(prefix)]

    def info(self, cik, cid):
        """-> (content type, size, updated, meta dict): meta `k=v&...` holds sha256/version."""
        self._call("%s&id=%s&info=true" % (self._q, quote(cid)), cik)
        parts = self.conn.read_all(_SMALL).decode().strip().split(",", 3)
        meta = {}
        try:
            for kv in parts[3].split("&"):
                k, _, v = kv.partition("=")
                if k.strip():
                    meta[k.strip()] = v.strip()
            return parts[0], int(parts[1]), int(parts[2]), meta
        except (IndexError, ValueError):
            raise ProtocolError("bad content info")

    def fetch(self, cik, cid, first, last, total, etag=None):
        """Ask for bytes first..last of content cid and check the answer is exactly that range
        of a `total`-byte content; the caller then reads the body with conn.readinto().
        -> the ETag (sent back as If-Range: a replaced content then answers 200)."""
        hdrs = [("Range", "bytes=%d-%d" % (first, last))]
        if etag:
            hdrs.append(("If-Range", etag))
        self._call("%s&id=%s" % (self._q, quote(cid)), cik, hdrs, ok=206)
        h = self.conn.headers
        n = h.get("content-length")
        if h.get("content-range") != "bytes %d-%d/%d" % (first, last, total) or (
            n is not None and n != str(last - first + 1)
        ):
            self.conn.close()
            raise ProtocolError("answer is not the range asked for")
        return h.get("etag")

    def report(self, cik, *pairs):
        """Status through the One Platform alias interface (204), within a short deadline;
        callers ignore failures."""
        self._call("/onep:v1/stack/alias", cik, body=form(*pairs), ok=204, ms=_RMS)
