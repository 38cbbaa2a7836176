"""Vendor-level procedures: shares, /provision/register, /provision/admin/auth/."""

import secrets

from . import auth, state
from .db import Duplicate
from .state import SERVER, log
from .util import ApiError, check_name, csv, done, is_true, one, only, read_form, text

# -- /provision/manage/share/<model>/ ------------------------------------------------------
# A share is kept by the vendor's identity (its rid), not its name: a name unregistered and
# taken by another client carries no share over (the store drops them on unregister too).


async def _share_rid(srv, name):
    """The rid of the vendor a share names, or None when no vendor has that name."""
    found = await srv.store.vendor_by_name(name)
    return None if found is None else found.rid


async def list_shares(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    return csv(await srv.store.share_names(model.id), empty_status=204)


async def post_share(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    caller = model.caller
    form = await read_form(request)
    only(form, "vendor", "delete")
    name = check_name(one(form, "vendor"), "vendor")
    rid = await _share_rid(srv, name)
    if is_true(form, "delete"):
        if rid is None or not await srv.store.delete_share(model.id, rid):
            raise ApiError(404, "model not shared with this vendor")
        return done()
    if name == caller.name:
        raise ApiError(400, "a model cannot be shared with its own vendor")
    if rid is None:
        raise ApiError(404, "no such vendor")
    try:
        await srv.store.add_share(model.id, rid)
    except Duplicate:
        raise ApiError(409, "model already shared with this vendor")
    return done()


async def get_share(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    rid = await _share_rid(srv, check_name(request.match_info["vendor"], "vendor"))
    if rid is None or not await srv.store.is_shared(model.id, rid):
        raise ApiError(404, "model not shared with this vendor")
    return csv([], empty_status=204)


async def delete_share(request):
    srv, model = request.app[SERVER], await auth.model_of(request)
    rid = await _share_rid(srv, check_name(request.match_info["vendor"], "vendor"))
    if rid is None or not await srv.store.delete_share(model.id, rid):
        raise ApiError(404, "model not shared with this vendor")
    return done()


# -- /provision/register ---------------------------------------------------------------------


async def _register_client(srv, request):
    """The client a /provision/register call speaks for: a CIK only (a vendor token is not a
    client), sent in X-Exosite-CIK or, as pyonep's vendor_show and vendor_unregister put every
    key (exosite-labs/pyonep, pyonep/provision.py), in X-Exosite-Token."""
    if "X-Exosite-CIK" in request.headers or "X-Exosite-Token" not in request.headers:
        return await auth.client(srv.store, request)
    key = request.headers["X-Exosite-Token"]
    if not key or len(key) > auth.CRED_MAX:
        raise ApiError(401, "invalid credentials")
    row = await srv.store.client_by_cik(key)
    if row is None:
        raise ApiError(401, "unknown credentials")
    return row


async def get_register(request):
    srv = request.app[SERVER]
    client = await _register_client(srv, request)
    name = await srv.store.vendor_name_of(client.rid)
    if name is None:
        raise ApiError(404, "no vendor name registered to this client")
    return text(name)


async def post_register(request):
    srv = request.app[SERVER]
    client = await _register_client(srv, request)
    form = await read_form(request)
    only(form, "vendor", "delete")
    name = check_name(one(form, "vendor"), "vendor")
    if client.kind != "vendor":
        raise ApiError(403, "device clients cannot register vendor names")
    if is_true(form, "delete"):
        if not await srv.store.delete_vendor_name(name, client.rid):
            raise ApiError(404, "vendor name not registered to this client")
        log.info("client %s: vendor name removed", client.rid[:8])
        return done()
    if await srv.store.vendor_name_of(client.rid) is not None:
        raise ApiError(409, "this client already has a vendor name")
    try:
        await srv.store.add_vendor_name(name, client.rid)
    except Duplicate:
        raise ApiError(409, "vendor name taken")
    log.info("client %s: vendor name registered", client.rid[:8])
    return done()


# -- /provision/admin/auth/ ------------------------------------------------------------------


async def list_tokens(request):
    srv, caller = request.app[SERVER], auth.caller(request)
    return csv(await srv.store.token_ids(caller.rid))


async def post_token(request):
    srv, caller = request.app[SERVER], auth.caller(request)
    form = await read_form(request)
    only(form, "id", "delete")
    tid = check_name(one(form, "id"), "token id")
    if is_true(form, "delete"):
        if not await srv.store.delete_token(caller.rid, tid):
            raise ApiError(404, "no such token")
        return done()
    if len(await srv.store.token_ids(caller.rid)) >= 1000:
        raise ApiError(409, "too many tokens")
    token = secrets.token_hex(20)
    try:
        await srv.store.add_token(caller.rid, tid, token)
    except Duplicate:
        raise ApiError(409, "token id already exists")
    log.info("vendor %s: token created", caller.rid[:8])
    return text(token)


async def get_token(request):
    srv, caller = request.app[SERVER], auth.caller(request)
    tid = check_name(request.match_info["id"], "token id")
    token = await srv.store.token_secret(caller.rid, tid)
    if token is None:
        raise ApiError(404, "no such token")
    return text(token)


async def delete_token(request):
    srv, caller = request.app[SERVER], auth.caller(request)
    tid = check_name(request.match_info["id"], "token id")
    if not await srv.store.delete_token(caller.rid, tid):
        raise ApiError(404, "no such token")
    return done()


# -- exoprov extension: the vendor's CIK rotated -------------------------------------------


async def new_cik(store, rid):
    """A new CIK for vendor `rid` (the old one stops working at once) and the end of its
    dashboard sessions (those logged in with a token too: a rotation answers a leak)."""
    cik = state.new_cik()
    async with store.tx():
        await store.set_client_cik(rid, cik, "active", 0)
        await store.delete_ui_sessions_of(rid)
    log.info("vendor %s: CIK rotated", rid[:8])
    return cik


async def rotate_cik(request):
    """POST /exoprov/v1/vendor/cik, with the vendor CIK only (as /provision/admin/auth/):
    answers the new CIK."""
    srv, caller = request.app[SERVER], auth.caller(request)
    form = await read_form(request)
    only(form)
    return text(await new_cik(srv.store, caller.rid))
