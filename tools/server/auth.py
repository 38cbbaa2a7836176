"""Who is calling: vendors (CIK or token), devices (CIK), and shared access to a model.

Credentials are only ever hashed and looked up (db.secret_hash); a log line names a rid.
"""

import functools
from dataclasses import dataclass

from .db import Client, ModelRow
from .state import SERVER
from .util import ApiError, check_name

CRED_MAX = 256
_CHAIN_MAX = 64


@dataclass
class Vendor:
    rid: str
    name: str


@dataclass
class Model:
    id: int
    name: str
    owner_rid: str  # the vendor that created the model
    caller: Vendor
    shared: bool  # reached through X-Exosite-Vendor
    row: ModelRow


def _header(request, name):
    value = request.headers.get(name)
    if value is None:
        return None
    if not value or len(value) > CRED_MAX:
        raise ApiError(401, "invalid credentials")
    return value


async def vendor(store, request):
    """The calling vendor, from X-Exosite-CIK or X-Exosite-Token; 401 otherwise."""
    return await vendor_from(
        store, _header(request, "X-Exosite-CIK"), _header(request, "X-Exosite-Token")
    )


async def vendor_from(store, cik=None, token=None):
    """The vendor holding this CIK (tried first) or vendor token; 401 otherwise. The API's
    headers and the dashboard's login form both end here."""
    for value in (cik, token):
        if value is not None and (not value or len(value) > CRED_MAX):
            raise ApiError(401, "invalid credentials")
    if cik is not None:
        row = await store.client_by_cik(cik)
        rid = row.rid if row is not None and row.kind == "vendor" else None
    elif token is not None:
        rid = await store.token_vendor(token)
    else:
        raise ApiError(401, "missing credentials")
    name = await store.vendor_name_of(rid) if rid else None
    if name is None:
        raise ApiError(401, "unknown credentials")
    return Vendor(rid, name)


async def vendor_cik(store, request):
    """The calling vendor from X-Exosite-CIK alone: the Provision API names only the VendorCIK
    for /provision/admin/auth/, and a token that could mint or read other tokens would let a
    leaked token outlive its own deletion. A known vendor token gets 403, anything else 401."""
    cik = _header(request, "X-Exosite-CIK")
    if cik is None:
        await vendor(store, request)  # 401 unless it is a known vendor token
        raise ApiError(403, "this procedure takes the vendor CIK only")
    return await vendor_from(store, cik=cik)


async def client(store, request) -> Client:
    """The client (db.Client) whose CIK is in X-Exosite-CIK; 401 without one."""
    cik = _header(request, "X-Exosite-CIK")
    if cik is None:
        raise ApiError(401, "missing credentials")
    row = await store.client_by_cik(cik)
    if row is None:
        raise ApiError(401, "unknown credentials")
    return row


async def device(store, request) -> Client:
    """An activated device client; vendors and unknown CIKs get 401."""
    row = await client(store, request)
    if row.kind != "device" or row.state != "activated":
        raise ApiError(401, "not an activated device")
    return row


# What a vendor procedure takes, declared per route (app.ROUTES) and checked by guard():
VENDOR = "vendor"  # the caller's own vendor-level procedure: no X-Exosite-Vendor for another
VENDOR_CIK = "vendor_cik"  # the same, with the vendor CIK only (a vendor token gets 403)
MODEL = "model"  # a procedure on one of the caller's models ({model} in the path)
SHARED = "shared"  # the same, also on a model another vendor shares with the caller
_ACCESS = "exoprov.access"  # request[_ACCESS]: (Vendor, declaration)


def guard(handler, access):
    """`handler` behind its route's declaration (None: not a vendor procedure). The calling
    vendor is authenticated first (401); a VENDOR procedure refuses X-Exosite-Vendor naming
    another vendor (403); then the handler runs and, on a model route, resolves the model
    with model_of() (the share rules, after the handler's own parameter checks)."""
    if access is None:
        return handler

    @functools.wraps(handler)
    async def guarded(request):
        store = request.app[SERVER].store
        who = vendor_cik if access == VENDOR_CIK else vendor
        caller = await who(store, request)
        other = request.headers.get("X-Exosite-Vendor")
        if access in (VENDOR, VENDOR_CIK) and other is not None and other != caller.name:
            raise ApiError(403, "shared access does not cover this procedure")
        request[_ACCESS] = (caller, access)
        return await handler(request)

    return guarded


def caller(request) -> Vendor:
    """The vendor guard() authenticated for this request."""
    return request[_ACCESS][0]


async def model_of(request) -> "Model":
    """The model of the path for the calling vendor, under its route's declaration.

    Without X-Exosite-Vendor the model is the caller's own: 404 if no vendor has it, 403 if
    only others do. With the header naming another vendor, the model must be shared with the
    caller and the route declared SHARED, else 403 (the Provision API's shares)."""
    who, access = request[_ACCESS]
    return await resolve_model(
        request.app[SERVER].store,
        who,
        request.match_info["model"],
        request.headers.get("X-Exosite-Vendor"),
        access == SHARED,
    )


async def resolve_model(store, caller, name, owner_name=None, shared_ok=False):
    """model_of() without a request: `owner_name` stands for the X-Exosite-Vendor header (the
    dashboard passes the owner its URL names), `shared_ok` for a SHARED route."""
    check_name(name, "model")
    if owner_name is not None and owner_name != caller.name:
        if not shared_ok:
            raise ApiError(403, "shared access does not cover this procedure")
        try:
            check_name(owner_name, "vendor")
        except ApiError:
            raise ApiError(403, "model not shared with this vendor")
        owner = await store.vendor_by_name(owner_name)
        row = await store.model(owner.rid, name) if owner is not None else None
        if row is None or not await store.is_shared(row.id, caller.rid):
            raise ApiError(403, "model not shared with this vendor")
        return Model(row.id, row.name, owner.rid, caller, True, row)
    row = await store.model(caller.rid, name)
    if row is None:
        if await store.model_name_taken(name):
            raise ApiError(403, "model belongs to another vendor")
        raise ApiError(404, "no such model")
    return Model(row.id, row.name, caller.rid, caller, False, row)


async def owns(store, vendor_rid, rid):
    """True when `rid` is the vendor's client or a client created under it."""
    for _ in range(_CHAIN_MAX):
        if rid == vendor_rid:
            return True
        parent = await store.client_parent(rid)
        if not parent:
            return False
        rid = parent
    return False
