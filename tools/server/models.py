"""Models and serial numbers: /provision/manage/model/, /<model>, /<model>/, /<model>/<sn>."""

import json
from urllib.parse import urlencode

from . import auth, snranges
from .db import Duplicate
from .state import SERVER, log, new_rid
from .util import (
    CSV_CAP,
    ApiError,
    check_name,
    check_text,
    csv,
    csv_rows,
    done,
    is_true,
    many,
    media_type,
    one,
    only,
    page,
    parse_form,
    query,
    read_body,
    read_form,
    read_text,
    text,
)

_JSON_TYPES = ("application/javascript", "application/json")
_RID_LEN = 40


async def _template(srv, caller, form):
    """(kind, template, options) of a model create/update body."""
    rid, code = one(form, "rid"), one(form, "code")
    if (rid is None) == (code is None):
        raise ApiError(400, "give exactly one of rid and code")
    options = [check_text(o, "option") for o in many(form, "options")]
    if len(options) > 32:
        raise ApiError(400, "too many options")
    if rid is not None:
        if len(rid) != _RID_LEN or not all(c in "0123456789abcdef" for c in rid):
            raise ApiError(400, "rid must be 40 hex characters")
        if not await auth.owns(srv.store, caller.rid, rid):
            raise ApiError(403, "rid is not a client of this vendor")
        return "rid", rid, options
    if not code:
        raise ApiError(400, "empty code")
    return "code", check_text(code, "code"), options


# -- /provision/manage/model/ ---------------------------------------------------------------


async def list_models(request):
    srv, caller = request.app[SERVER], auth.caller(request)
    q = query(request)
    only(q, "show")
    show = one(q, "show")
    if show == "shared":
        shared = await srv.store.shared_models(caller.rid)
        return csv([f"{s.owner},{s.model}" for s in shared])
    if show is not None:
        raise ApiError(400, "unknown show")
    return csv(await srv.store.models(caller.rid))


async def create_or_delete_model(request):
    srv, caller = request.app[SERVER], auth.caller(request)
    form = await read_form(request)
    only(form, "model", "delete", "confirm", "rid", "code", "options", "options[]")
    name = check_name(one(form, "model"), "model")
    if is_true(form, "delete"):
        return await _delete_model(srv, caller, name, form)
    if "confirm" in form:
        raise ApiError(400, "confirm goes with delete=true")
    kind, template, options = await _template(srv, caller, form)
    try:
        await srv.store.add_model(caller.rid, name, kind, template, options)
    except Duplicate:
        raise ApiError(409, "model already exists")
    log.info("vendor %s: model %s created", caller.rid[:8], name)
    return done()


async def _delete_model(srv, caller, name, form=None):
    if form is not None and "confirm" in form and not is_true(form, "confirm"):
        raise ApiError(400, "confirm is not true: model kept")
    row = await srv.store.model(caller.rid, name)
    if row is None:
        raise ApiError(404, "no such model")
    for blob in await srv.store.delete_model(row.id):
        srv.blobs.remove(blob)
    return done()


# -- /provision/manage/model/<model> --------------------------------------------------------


async def model_info(request):
    model = await auth.model_of(request)
    row = model.row
    pairs = [(row.template_kind, row.template)] + [("options[]", o) for o in row.options]
    body = urlencode(pairs, safe="[]")
    return text(body, ctype="application/x-www-form-urlencoded")


async def update_model(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    form = await read_form(request)
    kind, template, options = await _template(srv, model.caller, form)
    await srv.store.update_model(model.id, kind, template, options)
    return done()


async def delete_model(request):
    """DELETE model/<model>; clients of the time (pyonep model_remove) also send the body
    `delete=true&model=<model>&confirm=true`, with or without a form Content-Type."""
    srv, model = request.app[SERVER], await auth.model_of(request)
    form = await _delete_form(request)
    if one(form, "model") not in (None, model.name):
        raise ApiError(400, "model in the body is not the model of the path")
    return await _delete_model(srv, model.caller, model.name, form)


async def delete_model_form(request):
    """DELETE /provision/manage/model/ with `delete=true&model=<model>` in the body: the POST
    form of model deletion sent with the DELETE method, as vendors' scripts did."""
    srv, caller = request.app[SERVER], auth.caller(request)
    form = await _delete_form(request)
    name = check_name(one(form, "model"), "model")
    return await _delete_model(srv, caller, name, form)


async def _delete_form(request):
    """The optional form body of a DELETE: only delete (true), model and confirm."""
    form = _form(await read_body(request), media_type(request))
    only(form, "delete", "model", "confirm")
    if "delete" in form and not is_true(form, "delete"):
        raise ApiError(400, "delete is not true on a DELETE")
    return form


# -- /provision/manage/model/<model>/ -------------------------------------------------------


async def list_sns(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    q = query(request)
    only(q, "show", "offset", "limit", "shared", "status")
    show = one(q, "show")
    if show is not None:
        if show != "ranges" or model.shared:
            if model.shared:
                raise ApiError(403, "shared access does not cover this procedure")
            raise ApiError(400, "unknown show")
        body = json.dumps({"ranges": await srv.store.ranges(model.id)})
        return text(body, ctype="application/javascript")
    offset, limit = page(q)
    enabled_by = None
    if model.shared:
        enabled_by = model.caller.rid  # a share sees only what it enabled
    elif one(q, "shared") is not None:
        other = await srv.store.vendor_by_name(check_name(one(q, "shared"), "shared"))
        enabled_by = other.rid if other else "-"
    with_status = is_true(q, "status")
    lines = []
    for row in await srv.store.list_sns(model.id, offset, limit, enabled_by):
        extra = "" if model.shared else row.extra
        cols = [row.sn, srv.status(row.state, row.enabled_at)] if with_status else [row.sn]
        lines.append(",".join([*cols, row.client_rid or "", extra]))
    return csv(lines)


async def add_sns(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    kind = media_type(request)
    if kind in _JSON_TYPES:
        specs = _read_ranges(await read_text(request))
        if await srv.store.range_count(model.id) + len(specs) > 1000:
            raise ApiError(400, "too many ranges for one model")
        await srv.store.add_ranges(model.id, specs)
        return done()
    if kind == "text/csv":
        pairs = []
        for row in csv_rows(await read_text(request, CSV_CAP), 2):
            sn = check_name(row[0].strip(), "sn")
            pairs.append((sn, check_text(row[1] if len(row) > 1 else "", "extra")))
        return await _add_pairs(srv, model, pairs)
    form = _form(await read_body(request), kind)
    if _removing(form):
        sns = [check_name(s, "sn") for s in many(form, "sn")]
        if not sns:
            raise ApiError(400, "missing sn")
        if not await srv.store.delete_sns(model.id, sns):
            raise ApiError(404, "no such serial number")
        return done()
    sns = [check_name(s, "sn") for s in many(form, "sn")]
    if not sns:
        raise ApiError(400, "missing sn")
    extra = check_text(one(form, "extra"), "extra")
    return await _add_pairs(srv, model, [(sn, extra) for sn in sns])


def _removing(form):
    """The procedure a form POST to <model>/ selects: True to remove its serial numbers
    (`delete=true`, documented, or `remove=true`, pyonep's serialnumber_remove_batch), False
    to add them (nothing, or `add=true` as pyonep and goonep send). A contradiction or an
    unknown selector is a 400, never an add."""
    only(form, "add", "delete", "remove", "sn", "sn[]", "extra")
    delete, remove, add = (is_true(form, k) for k in ("delete", "remove", "add"))
    if add and (delete or remove):
        raise ApiError(400, "add=true conflicts with " + ("delete" if delete else "remove"))
    if "add" in form and not add and not (delete or remove):
        raise ApiError(400, "add is not true and no other procedure is named")
    return delete or remove


def _form(raw, kind):
    if kind not in ("", "application/x-www-form-urlencoded"):
        raise ApiError(400, "unsupported Content-Type")
    return parse_form(raw)


async def _add_pairs(srv, model, pairs):
    if not pairs:
        raise ApiError(400, "no serial numbers")
    if len({sn for sn, _e in pairs}) != len(pairs):
        raise ApiError(409, "serial number given twice")
    try:
        await srv.store.add_sns(model.id, pairs)
    except Duplicate:
        raise ApiError(409, "serial number already exists")
    return done()


def _read_ranges(body):
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "malformed JSON")
    return snranges.parse_ranges(doc)


async def delete_sns(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    kind = media_type(request)
    if kind in _JSON_TYPES:
        specs = _read_ranges(await read_text(request))
        if not await srv.store.delete_ranges(model.id, specs):
            raise ApiError(404, "no such range")
        return done()
    if kind == "text/csv":
        rows = csv_rows(await read_text(request), 2)
        sns = [check_name(r[0].strip(), "sn") for r in rows]
        if not sns:
            raise ApiError(400, "no serial numbers")
        if not await srv.store.delete_sns(model.id, sns):
            raise ApiError(404, "no such serial number")
        return done()
    raise ApiError(400, "expected text/csv or application/javascript body")


# -- /provision/manage/model/<model>/<sn> ---------------------------------------------------


async def _sn(srv, model, raw):
    """(sn, row or None, whitelisted) for the path's serial number."""
    sn = check_name(raw, "sn")
    row = await srv.store.sn(model.id, sn)
    listed = row is not None or snranges.any_contains(await srv.store.ranges(model.id), sn)
    return sn, row, listed


async def sn_row(srv, model, sn):
    """The row GET <model>/<sn> shows (API and dashboard): 404 when the serial number is not
    listed, 403 to a share that did not enable it, None for a range member never used."""
    sn, row, listed = await _sn(srv, model, sn)
    if not listed:
        raise ApiError(404, "no such serial number")
    if row is None:
        if model.shared:
            raise ApiError(403, "serial number not enabled by this vendor")
        return None
    _share_guard(model, row)
    return row


def _share_guard(model, row):
    """A share acts only on serial numbers it enabled."""
    if model.shared and (row is None or row.enabled_by != model.caller.rid):
        raise ApiError(403, "serial number not enabled by this vendor")


async def sn_get(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    q = query(request)
    only(q, "show", "offset", "limit")
    sn, row, listed = await _sn(srv, model, request.match_info["sn"])
    show = one(q, "show")
    if show == "log":
        if row is not None:
            _share_guard(model, row)
        log_rows = await srv.store.activation_log(model.id, sn)
        if not listed and not log_rows:
            raise ApiError(404, "no such serial number")
        if model.shared and row is None:
            raise ApiError(403, "serial number not enabled by this vendor")
        lines = [f"{x.ts},{x.conn},{x.what}" for x in log_rows]
        return csv(lines, empty_status=204)
    if show == "groups":
        if model.shared:
            raise ApiError(403, "shared access does not cover this procedure")
        if not listed:
            raise ApiError(404, "no such serial number")
        offset, limit = page(q)
        return csv(await srv.store.groups_of(model.id, "sn", sn, offset, limit), empty_status=204)
    if show is not None:
        raise ApiError(400, "unknown show")
    row = await sn_row(srv, model, sn)
    if row is None:
        return csv([], empty_status=204)  # whitelisted by a range, never used
    client = await srv.store.client(row.client_rid) if row.client_rid else None
    status = srv.status(client.state, client.enabled_at) if client else ""
    extra = "" if model.shared else row.extra
    return csv([f"{status},{row.client_rid or ''},{extra}"])


async def sn_post(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    form = await read_form(request)
    only(form, "enable", "disable", "owner", "oldsn")
    sn = check_name(request.match_info["sn"], "sn")
    enable, disable = is_true(form, "enable"), is_true(form, "disable")
    if enable == disable:
        raise ApiError(400, "give enable=true or disable=true")
    action = "enable" if enable else "disable"
    rid = await set_sn(srv, model, sn, action, one(form, "owner"), one(form, "oldsn"))
    return done() if rid is None else text(rid, ctype="text/csv")


async def set_sn(srv, model, sn, action, owner=None, oldsn=None):
    """POST <model>/<sn> for the API and the dashboard: `disable`, or `enable` with `owner`
    (create the client), with `oldsn` (move that client here) or alone (regenerate the CIK).
    Returns the rid of a client it created, else None."""
    sn, row, listed = await _sn(srv, model, sn)
    if not listed:
        raise ApiError(404, "no such serial number")
    if action == "disable":
        if owner is not None or oldsn is not None:
            raise ApiError(400, "disable takes no owner or oldsn")
        _share_guard(model, row)
        if row is None or not row.client_rid:
            raise ApiError(409, "serial number is not enabled")
        await srv.store.set_client_cik(row.client_rid, None, "disabled", 0)
        log.info("model %s: client %s disabled", model.id, row.client_rid[:8])
        return None
    if owner is not None and oldsn is not None:
        raise ApiError(400, "give owner or oldsn, not both")
    if owner is not None:
        return await _create_client(srv, model, sn, row, owner)
    if oldsn is not None:
        return await _remap(srv, model, sn, row, check_name(oldsn, "oldsn"))
    _share_guard(model, row)
    if row is None or not row.client_rid:
        raise ApiError(409, "serial number was never enabled")
    await srv.store.set_client_cik(row.client_rid, None, "notactivated", srv.now())
    log.info("model %s: client %s regenerated", model.id, row.client_rid[:8])
    return None


async def _create_client(srv, model, sn, row, owner):
    if row is not None and row.client_rid:
        raise ApiError(409, "serial number already has a client")
    if not await auth.owns(srv.store, model.caller.rid, owner):
        raise ApiError(409, "owner resources not sufficient")
    rid = new_rid()
    async with srv.store.tx():
        await srv.store.ensure_sn(model.id, sn)
        await srv.store.add_client(rid, owner, "device", None, "notactivated", srv.now())
        await srv.store.set_sn_client(model.id, sn, rid, model.caller.rid)
    log.info("model %s: client %s created", model.id, rid[:8])
    return rid


async def _remap(srv, model, sn, row, oldsn):
    old = await srv.store.sn(model.id, oldsn)
    if old is None:
        raise ApiError(404, "no such old serial number")
    _share_guard(model, old)
    if not old.client_rid:
        raise ApiError(409, "old serial number has no client")
    if row is not None and row.client_rid:
        raise ApiError(409, "serial number already has a client")
    async with srv.store.tx():
        await srv.store.ensure_sn(model.id, sn)
        await srv.store.set_sn_client(model.id, oldsn, None, None)
        await srv.store.set_sn_client(model.id, sn, old.client_rid, model.caller.rid)
        await srv.store.set_client_cik(old.client_rid, None, "notactivated", srv.now())
    log.info("model %s: client %s remapped", model.id, old.client_rid[:8])
    return None


async def sn_delete(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    sn, row, _listed = await _sn(srv, model, request.match_info["sn"])
    if row is None:
        raise ApiError(404, "no such serial number")
    await srv.store.delete_sns(model.id, [sn])
    return done()
