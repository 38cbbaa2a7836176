"""The One Platform data interface beside the Provision API:
`/onep:v1/stack/alias` writes and reads a client's aliases; `/jsonp/register` and `/jsonp`
serve their timestamped values to whoever holds a read token."""

import json
import re
import secrets
from urllib.parse import urlencode

from aiohttp import web

from . import auth, fleetstatus
from .state import SERVER
from .util import (
    ApiError,
    check_name,
    check_text,
    int_field,
    many,
    one,
    query,
    read_form,
    text,
)

_ALIASES_MAX = 64
_CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]{0,63}(\.[A-Za-z_$][A-Za-z0-9_$]{0,63}){0,4}")
_TS_MAX = 1 << 40


async def write(request):
    srv = request.app[SERVER]
    client = await auth.device(srv.store, request)
    form = await read_form(request)
    if not form or len(form) > _ALIASES_MAX:
        raise ApiError(400, f"expected 1..{_ALIASES_MAX} aliases")
    pairs = []
    for alias, values in form.items():
        check_name(alias, "alias")
        for value in values:
            pairs.append((alias, check_text(value, "value")))
    await srv.store.write_data(client.rid, srv.now(), pairs)
    await fleetstatus.reported(request, client.rid, pairs)  # the device's status
    return web.Response(status=204)


async def read(request):
    srv = request.app[SERVER]
    client = await auth.device(srv.store, request)
    aliases = list(query(request))
    if not aliases or len(aliases) > _ALIASES_MAX:
        raise ApiError(400, f"expected 1..{_ALIASES_MAX} aliases")
    pairs = []
    for alias in aliases:
        check_name(alias, "alias")
        value = await srv.store.latest(client.rid, alias)
        if value is not None:
            pairs.append((alias, value))
    return text(urlencode(pairs), ctype="application/x-www-form-urlencoded")


async def jsonp_register(request):
    srv = request.app[SERVER]
    client = await auth.client(srv.store, request)
    form = await read_form(request)
    aliases = [check_name(a, "alias") for a in many(form, "alias")]
    if not aliases or len(aliases) > _ALIASES_MAX:
        raise ApiError(400, f"expected 1..{_ALIASES_MAX} aliases")
    access = many(form, "access") or ["data"]
    if any(a != "data" for a in access):
        raise ApiError(400, "access must be data")
    now = srv.now()
    start = one(form, "starttime")
    start = int_field(one(form, "startime") if start is None else start, "starttime", 0)
    end = int_field(one(form, "endtime"), "endtime", _TS_MAX)
    limit = min(max(int_field(one(form, "limit"), "limit", 1000), 1), 1000)
    expire = int_field(one(form, "expire"), "expire", now + 86400)
    if expire <= now or start > end:
        raise ApiError(400, "expire must be in the future and starttime before endtime")
    token = secrets.token_hex(20)
    spec = {"aliases": aliases, "start": start, "end": end, "limit": limit, "now": now}
    await srv.store.add_jsonp_token(token, client.rid, spec, expire)
    return text(token)


async def jsonp(request):
    srv = request.app[SERVER]
    q = query(request)
    token = one(q, "token")
    callback = one(q, "callback")
    if not token or callback is None or not _CALLBACK.fullmatch(callback):
        raise ApiError(400, "need token and a JavaScript identifier as callback")
    show = many(q, "show") or ["data"]
    if any(s != "data" for s in show):
        raise ApiError(400, "show must be data")
    p = int_field(one(q, "p"), "p", 0)
    if p > 1_000_000:
        raise ApiError(400, "p too large")
    row = await srv.store.jsonp_token(token) if len(token) <= 256 else None
    if row is None or row.expire <= srv.now():
        raise ApiError(401, "unknown or expired token")
    rid, spec, _expire = row
    if await srv.store.client(rid) is None:
        raise ApiError(401, "unknown or expired token")
    limit = spec["limit"]
    result = {}
    for alias in spec["aliases"]:
        rows = await srv.store.series(rid, alias, spec["start"], spec["end"], p * limit, limit)
        result[alias] = {"data": [[p.ts, p.value] for p in rows]}
    body = f"{callback}({json.dumps({'result': result})});"
    return text(body, ctype="application/javascript")
