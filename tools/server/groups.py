"""Groups: /provision/manage/group/<model>/, /<id>, /<id>/ (members)."""

from . import auth
from .db import Duplicate
from .state import SERVER
from .util import (
    ApiError,
    check_name,
    check_text,
    csv,
    csv_rows,
    done,
    int_field,
    is_true,
    many,
    media_type,
    one,
    only,
    page,
    parse_form,
    query,
    read_body,
    read_text,
)

_MEMBERS_MAX = 1000  # per request


async def _group(srv, model, gid):
    check_name(gid, "group id")
    row = await srv.store.group(model.id, gid)
    if row is None:
        raise ApiError(404, "no such group")
    return gid, row


def _member_line(m):
    return f"{m.type},{m.mid},{m.expire},{m.meta}"


async def list_groups(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    q = query(request)
    only(q, "offset", "limit")
    offset, limit = page(q)
    rows = await srv.store.groups(model.id, offset, limit)
    return csv([f"{g.gid},{g.meta}" for g in rows], empty_status=204)


async def create_or_delete(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    form = parse_form(await read_body(request))
    only(form, "id", "delete", "meta", "description")
    gid = check_name(one(form, "id"), "group id")
    if is_true(form, "delete"):
        if not await srv.store.delete_group(model.id, gid):
            raise ApiError(404, "no such group")
        return done()
    meta = one(form, "meta")
    meta = check_text(one(form, "description") if meta is None else meta, "meta")
    try:
        await srv.store.add_group(model.id, gid, meta)
    except Duplicate:
        raise ApiError(409, "group already exists")
    return done()


async def group_info(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    gid, (meta, count) = await _group(srv, model, request.match_info["id"])
    q = query(request)
    only(q, "show", "offset", "limit")
    show = one(q, "show")
    if show is None:
        return csv([f"{meta},{count}"])
    if show != "groups":
        raise ApiError(400, "unknown show")
    offset, limit = page(q)
    return csv(await srv.store.groups_of(model.id, "group", gid, offset, limit), empty_status=204)


async def delete_group(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    gid = check_name(request.match_info["id"], "group id")
    if not await srv.store.delete_group(model.id, gid):
        raise ApiError(404, "no such group")
    return done()


async def list_members(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    gid, _row = await _group(srv, model, request.match_info["id"])
    q = query(request)
    only(q, "type", "id", "offset", "limit")
    type_, mid = one(q, "type"), one(q, "id")
    if type_ is not None:
        check_name(type_, "type")
    if mid is not None:
        check_name(mid, "id")
    offset, limit = page(q)
    rows = await srv.store.members(model.id, gid, type_, mid, offset, limit)
    if type_ is not None and mid is not None and not rows:
        raise ApiError(404, "no such member")
    return csv([_member_line(m) for m in rows], empty_status=204)


def _expire(value):
    return int_field(value, "expire", 0)


async def post_members(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    gid, _row = await _group(srv, model, request.match_info["id"])
    kind = media_type(request)
    if kind == "text/csv":
        rows = []
        for fields in csv_rows(await read_text(request), 4):
            fields += [""] * (4 - len(fields))
            type_ = check_name(fields[0].strip(), "type")
            mid = check_name(fields[1].strip(), "member id")
            rows.append((type_, mid, _expire(fields[2].strip()), check_text(fields[3], "meta")))
        if not rows or len(rows) > _MEMBERS_MAX:
            raise ApiError(400, f"expected 1..{_MEMBERS_MAX} members")
        await srv.store.upsert_members(model.id, gid, rows)
        return done()
    if kind not in ("", "application/x-www-form-urlencoded"):
        raise ApiError(400, "unsupported Content-Type")
    form = parse_form(await read_body(request))
    only(form, "type", "id", "id[]", "delete", "expire", "meta")
    type_ = check_name(one(form, "type"), "type")
    mids = [check_name(m, "member id") for m in many(form, "id")]
    if not mids or len(mids) > _MEMBERS_MAX:
        raise ApiError(400, f"expected 1..{_MEMBERS_MAX} member ids")
    if is_true(form, "delete"):
        if not await srv.store.delete_members(model.id, gid, [(type_, m) for m in mids]):
            raise ApiError(404, "no such member")
        return done()
    expire = _expire(one(form, "expire"))
    meta = check_text(one(form, "meta"), "meta")
    await srv.store.upsert_members(model.id, gid, [(type_, m, expire, meta) for m in mids])
    return done()


async def delete_members(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    gid, _row = await _group(srv, model, request.match_info["id"])
    if media_type(request) != "text/csv":
        raise ApiError(400, "expected a text/csv body of <type>,<id> lines")
    pairs = []
    for fields in csv_rows(await read_text(request), 2):
        if len(fields) != 2:
            raise ApiError(400, "expected <type>,<id> lines")
        pairs.append((check_name(fields[0].strip(), "type"), check_name(fields[1], "id")))
    if not pairs or len(pairs) > _MEMBERS_MAX:
        raise ApiError(400, f"expected 1..{_MEMBERS_MAX} members")
    if not await srv.store.delete_members(model.id, gid, pairs):
        raise ApiError(404, "no such member")
    return done()
