"""The server's log lines: text (the default) or one JSON object per line (--log-format json).

An access-log record carries `fields` (AccessLogger in app.py): procedure, method, path,
status, ms, bytes, remote and `cred`, the first 8 hex digits of the SHA-256 of the credential
the request presented (X-Exosite-CIK, else X-Exosite-Token): enough to tell callers apart
and to find one whose credential you hold, never the credential itself.
"""

import datetime
import hashlib
import json
import logging
import re

CRED_HEADERS = ("X-Exosite-CIK", "X-Exosite-Token")


def cred_hash(headers):
    """First 8 hex of sha256(credential) of a request's headers, or None without one."""
    for name in CRED_HEADERS:
        value = headers.get(name)
        if value:
            return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return None


# C0 and C1 controls, the backslash, Unicode line/paragraph separators, and the lone
# surrogates of bytes that were not UTF-8 (which the stream could not even encode)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\\\u2028\u2029\ud800-\udfff]")


def escape(text):
    """Control characters (and the backslash, so that an escape cannot be forged either) as
    \\xNN / \\uNNNN: a decoded request path or header carrying a newline stays on its own
    line instead of writing a second, forged one."""
    return _CONTROL.sub(_escaped, text)


def _escaped(m):
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class TextFormatter(logging.Formatter):
    """The text log: one line per record (a traceback, appended after, keeps its lines)."""

    def formatMessage(self, record):
        record.message = escape(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", then the access fields or "msg" (and "exc")}."""

    def format(self, record):
        t = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        out = {
            "time": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["msg"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup(fmt):
    """Root logging to stderr at INFO, as text or JSON lines."""
    import sys

    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
