"""Request parsing and response helpers shared by the handlers.

Everything a client sends is checked here before it reaches the store: bodies are capped,
forms must be valid UTF-8, names may not carry the characters that would break the CSV
answers (comma, newline) or the paths (slash).
"""

import asyncio
import re
from urllib.parse import parse_qsl

from aiohttp import web

FORM_CAP = 64 * 1024
CSV_CAP = 4 * 1024 * 1024  # a CSV serial-number list: 100 000+ in one request
NAME_MAX = 128
TEXT_MAX = 4096
MAX_FIELDS = 2000

_NAME_BAD = re.compile(r"[\x00-\x1f\x7f,/\\]")
_TEXT_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class ApiError(Exception):
    """An answer other than success: status and a short text reason."""

    def __init__(self, status, reason, headers=None, close=False):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}
        self.close = close


def text(body="", status=200, ctype="text/plain"):
    return web.Response(status=status, text=body, content_type=ctype, charset="utf-8")


def csv(lines, status=200, empty_status=200):
    """A text/csv answer, one line per item; `empty_status` (e.g. 204) when there are none."""
    if not lines:
        if empty_status == 204:
            return web.Response(status=204)
        return text("", status, "text/csv")
    return text("\n".join(lines) + "\n", status, "text/csv")


def done():
    """205 Reset Content, the success answer of most management writes."""
    return web.Response(status=205)


def check_name(value, what):
    """An identifier (model, sn, content id, group id, vendor name, alias)."""
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"missing {what}")
    if len(value) > NAME_MAX or _NAME_BAD.search(value) or not _utf8(value):
        raise ApiError(400, f"invalid {what}")
    return value


def check_text(value, what):
    """A free-text field (meta, extra, description): one line, bounded."""
    if value is None:
        return ""
    if len(value) > TEXT_MAX or _TEXT_BAD.search(value) or not _utf8(value):
        raise ApiError(400, f"invalid {what}")
    return value


def _utf8(value):
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_form(raw):
    """application/x-www-form-urlencoded bytes -> {key: [values]} (strict UTF-8)."""
    try:
        pairs = parse_qsl(
            raw.decode("utf-8") if isinstance(raw, bytes) else raw,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeError, ValueError):
        raise ApiError(400, "malformed form data")
    form = {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


def query(request, remember=False):
    """The query string, parsed as strictly as a form body. `remember`: keep the last few
    parsed (the device download: the same query for every Range part; no secrets in it);
    the result is then shared, read-only."""
    raw = request.rel_url.raw_query_string
    if not remember:
        return parse_form(raw)
    got = _QUERIES.get(raw)
    if got is None:
        got = parse_form(raw)
        if len(raw) <= 512:
            if len(_QUERIES) >= 1024:
                _QUERIES.clear()
            _QUERIES[raw] = got
    return got


_QUERIES = {}


def one(form, key, default=None):
    """The single value of `key`; 400 when it is given more than once."""
    values = form.get(key)
    if not values:
        return default
    if len(values) > 1:
        raise ApiError(400, f"{key} given more than once")
    return values[0]


def many(form, key):
    """Values of `key[]` (and of `key`, which some clients repeat instead)."""
    return list(form.get(key + "[]", [])) + list(form.get(key, []))


def is_true(form, key):
    """A flag or action selector: `true` (any case) is true; absent, `false` (any case) or
    empty is false; any other value is a 400 naming `key` (never silently false)."""
    value = one(form, key)
    if value is None:
        return False
    low = value.lower()
    if low == "true":
        return True
    if low == "false" or value == "":
        return False
    raise ApiError(400, f"{key} must be true or false")


def only(form, *keys):
    """400 naming the first parameter the procedure does not take: an action selector of
    another procedure or dialect (`remove`, `regenerate`, `purge`...) must never be ignored,
    or the request would silently become another procedure."""
    for key in form:
        if key not in keys:
            shown = key if len(key) <= 40 and key.isprintable() else repr(key[:40])
            raise ApiError(400, f"unknown parameter {shown}")


def media_type(request):
    """The bare media type of the request body, lower case ('' when absent)."""
    raw = request.headers.get("Content-Type", "")
    return raw.split(";", 1)[0].strip().lower()


def too_large(cap):
    return ApiError(413, f"body larger than {cap} bytes", close=True)


async def read_chunk(request):
    """The next piece of the request body (b'' at its end); 408 when it stalls."""
    from .state import SERVER

    try:
        return await asyncio.wait_for(request.content.readany(), request.app[SERVER].read_idle)
    except asyncio.TimeoutError:
        raise ApiError(408, "request body stalled", close=True)


def check_length(request, cap):
    """413 when the request's Content-Length says more than `cap` bytes."""
    length = request.content_length
    if length is not None and length > cap:
        raise too_large(cap)


async def body_chunks(request, cap, digest=None):
    """The request body piece by piece, at most `cap` bytes in all (413 past them), every
    piece given to `digest` (a hashlib object) on the way; 408 when it stalls."""
    size = 0
    while chunk := await read_chunk(request):
        size += len(chunk)
        if size > cap:
            raise too_large(cap)
        if digest is not None:
            digest.update(chunk)
        yield chunk


async def read_body(request, cap=FORM_CAP):
    """The whole request body, at most `cap` bytes: 413 decided from Content-Length when
    there is one, and while reading for chunked bodies."""
    check_length(request, cap)
    buf = bytearray()
    async for chunk in body_chunks(request, cap):
        buf += chunk
    return bytes(buf)


async def read_form(request):
    return parse_form(await read_body(request))


async def read_text(request, cap=FORM_CAP):
    try:
        return (await read_body(request, cap)).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "body is not UTF-8")


def csv_rows(body, width):
    """Non-empty lines split into at most `width` fields (the last keeps any commas)."""
    rows = []
    for line in body.splitlines():
        if not line.strip():
            continue
        rows.append(line.split(",", width - 1))
    return rows


def page(form):
    """(offset, limit): limit clamped to 5..1000, default 5; offset default 0."""
    offset = _int(one(form, "offset"), "offset", 0)
    limit = _int(one(form, "limit"), "limit", 5)
    if offset < 0:
        raise ApiError(400, "offset must not be negative")
    return offset, min(max(limit, 5), 1000)


def _int(value, what, default):
    if value is None or value == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,18}", value):
        raise ApiError(400, f"{what} must be an integer")
    return int(value)


def int_field(value, what, default=0):
    """A non-negative integer form field ('' or missing -> default)."""
    number = _int(value, what, default)
    if number < 0:
        raise ApiError(400, f"{what} must not be negative")
    return number
