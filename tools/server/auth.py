"""Who is calling: vendors (CIK or token), devices (CIK), and shared access to a model.

Credentials are only ever hashed and looked up (db.secret_hash); a log line names a rid.
"""

from dataclasses import dataclass

from .db import Client, ModelRow
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


async def model(store, request, caller, name, shared_ok=False):
    """Resolve `name` for `caller`, honouring X-Exosite-Vendor shares (spec README, Shares).

    Without the header the model is the caller's own: 404 if no vendor has it, 403 if only
    others do. With the header naming another vendor, the model must be shared with the
    caller and the procedure one that shares allow (`shared_ok`), else 403.
    """
    return await resolve_model(
        store, caller, name, request.headers.get("X-Exosite-Vendor"), shared_ok
    )


async def resolve_model(store, caller, name, owner_name=None, shared_ok=False):
    """`model` without a request: `owner_name` stands for the X-Exosite-Vendor header (the
    dashboard passes the owner its URL names)."""
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
        if row is None or not await store.is_shared(row.id, caller.name):
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
