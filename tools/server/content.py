"""Content: /provision/manage/content/<model>/ and /<id>, blob streaming, visibility."""

from aiohttp import web

from . import auth, byteranges, rollouts, rollstore
from .db import Duplicate
from .snranges import any_contains
from .state import SERVER, log
from .util import (
    ApiError,
    check_name,
    check_text,
    csv,
    done,
    is_true,
    one,
    only,
    page,
    query,
    read_form,
)

_REACH_MAX = 10000


async def _reach(srv, model_id, type_, mid):
    """Every group holding (type, mid) through unexpired memberships, nesting included."""
    store, now = srv.store, srv.now()
    seen = set()
    todo = await store.groups_of(model_id, type_, mid, now=now)
    while todo and len(seen) < _REACH_MAX:
        gid = todo.pop()
        if gid in seen:
            continue
        seen.add(gid)
        todo.extend(await store.groups_of(model_id, "group", gid, now=now))
    return seen


async def visible(srv, model_id, sn, row, sn_groups=None, rolls=None):
    """Unprotected content is visible to every serial number of the model; protected content
    only through a group both belong to (the Provision API's protected content). Content
    under a rollout (or held for one) only to the devices the rollout offers it (rollouts.py)."""
    if rolls is None:
        rolls = await rollouts.model_rollouts(srv, model_id)
    roll = rolls.get(row["cid"])
    if roll is not None and not await rollouts.offered(srv, model_id, sn, roll, sn_groups):
        return False
    if not row["protected"]:
        return True
    if sn_groups is None:
        sn_groups = await _reach(srv, model_id, "sn", sn)
    if not sn_groups:
        return False
    return not sn_groups.isdisjoint(await _reach(srv, model_id, "content", row["cid"]))


async def visible_ids(srv, model_id, sn):
    sn_groups = None
    rolls = await rollouts.model_rollouts(srv, model_id)
    out = []
    for item in await srv.store.content_list(model_id):
        row = {"cid": item.cid, "protected": item.protected}
        if sn_groups is None and (item.protected or rolls.get(item.cid, {}).get("grp")):
            sn_groups = await _reach(srv, model_id, "sn", sn)
        if await visible(srv, model_id, sn, row, sn_groups, rolls):
            out.append(item.cid)
    return out


def device_info(row):
    return f"{row['ctype']},{row['size']},{row['updated']},{row['meta']}"


def vendor_info(row):
    return device_info(row) + ("," + ("true" if row["protected"] else "false"))


SLICE_OF = "X-Exoprov-Slice-Of"  # deploy/nginx: the ETag a fetched slice is cached under


async def send(request, srv, row):
    """The blob of `row`, whole or one Range, with validators (ETag, Last-Modified)."""
    if row["blob"] is None:
        raise ApiError(404, "no content uploaded")
    total = row["size"]
    etag = f'"{row["blob"]}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Last-Modified": byteranges.http_date(row["updated"]),
        "Content-Type": row["ctype"] or "application/octet-stream",
    }
    if request.headers.get(SLICE_OF, etag) != etag:
        # deploy/nginx fetching a slice for its cache under the ETag its grant named: this
        # content is newer. The bytes go to this request only (nginx's slice module refuses
        # them within an answer begun from the older upload); cached, they would sit under
        # the older ETag's key and be mixed into its downloads.
        headers["X-Accel-Expires"] = "0"
    span = None
    if byteranges.if_range_matches(request.headers.get("If-Range"), etag, row["updated"]):
        try:
            span = byteranges.parse(request.headers.get("Range"), total)
        except byteranges.Unsatisfiable:  # with the validators of what was asked for
            extra = {"Content-Range": f"bytes */{total}", "ETag": etag}
            extra["Last-Modified"] = headers["Last-Modified"]
            raise ApiError(416, "range not satisfiable", extra)
    if span is None:
        status, first, count = 200, 0, total
    else:
        status, first, count = 206, span[0], span[1] - span[0] + 1
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{total}"
    if request.method == "HEAD":  # what a GET would answer, without reading the blob
        headers["Content-Length"] = str(count)
        return web.Response(status=status, headers=headers)
    if status == 206 and count <= srv.blobs.SMALL:
        # the device download pattern (64 KiB Ranges): one read, headers and body in one
        # write (measured: cheaper than sendfile's three calls at this size)
        data = await srv.blobs.read_small(row["blob"], first, count)
        if data is not None and len(data) == count:
            return web.Response(status=status, headers=headers, body=data)
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = count
    sent = await srv.blobs.send(request, resp, row["blob"], first, count)
    if sent is None:
        raise ApiError(404, "content changed, try again")
    return sent


async def _sn_known(srv, model, sn):
    return await srv.store.sn(model.id, sn) is not None or any_contains(
        await srv.store.ranges(model.id), sn
    )


async def list_or_sn(request):
    """GET content/<model>/ (all ids) and ?sn= (ids that serial number may download)."""
    srv = request.app[SERVER]
    q = query(request)
    only(q, "sn")
    try:
        model = await auth.model_of(request)
    except ApiError as exc:
        if exc.status == 404:
            raise ApiError(400, "invalid vendor/model pair")  # documented code for listings
        raise
    sn = one(q, "sn")
    if sn is None:
        return csv([item.cid for item in await srv.store.content_list(model.id)])
    check_name(sn, "sn")
    if not await _sn_known(srv, model, sn):
        raise ApiError(400, "invalid vendor/model/serial number")
    return csv(await visible_ids(srv, model.id, sn))


async def create_or_delete(request):
    srv = request.app[SERVER]
    model = await auth.model_of(request)
    form = await read_form(request)
    only(form, "id", "delete", "meta", "description", "protected")
    cid = check_name(one(form, "id"), "content id")
    if is_true(form, "delete"):
        await remove(srv, model, cid)
        return done()
    meta = one(form, "meta")
    if meta is None:
        meta = one(form, "description")
    await create(srv, model, cid, meta, is_true(form, "protected"))
    return done()


async def create(srv, model, cid, meta, protected):
    """A new content id (API and dashboard); 409 when it exists."""
    check_name(cid, "content id")
    meta = check_text(meta, "meta")
    try:
        await srv.store.add_content(model.id, cid, meta, protected)
    except Duplicate:
        raise ApiError(409, "content id already exists")


async def remove(srv, model, cid):
    """Delete a content id and its blob (API and dashboard); 404 when there is none."""
    check_name(cid, "content id")
    existed, blob = await srv.store.delete_content(model.id, cid)
    await rollstore.delete(srv.store, model.id, cid)  # its rollout (or hold) goes with it
    if not existed:
        raise ApiError(404, "no such content")
    srv.blobs.remove(blob)


async def _content(srv, model, cid):
    check_name(cid, "content id")
    row = await srv.store.content(model.id, cid)
    if row is None:
        raise ApiError(404, "no such content")
    return row


async def get_item(request):
    """GET content/<model>/<id>: info, ?download=true, ?sn=, ?show=groups."""
    srv = request.app[SERVER]
    q = query(request)
    only(q, "download", "sn", "show", "offset", "limit")
    try:
        model = await auth.model_of(request)
    except ApiError as exc:
        if exc.status == 404 and is_true(q, "download"):
            # GET .../content/<model>/<id>?download=true answers 403 for an invalid pair
            raise ApiError(403, "invalid vendor/model pair")
        raise
    row = await _content(srv, model, request.match_info["id"])
    show = one(q, "show")
    if show is not None:
        if show != "groups":
            raise ApiError(400, "unknown show")
        offset, limit = page(q)
        gids = await srv.store.groups_of(model.id, "content", row["cid"], offset, limit)
        return csv(gids, empty_status=204)
    sn = one(q, "sn")
    if sn is not None:
        check_name(sn, "sn")
        if not await _sn_known(srv, model, sn):
            raise ApiError(400, "invalid vendor/model/serial number")
        if not await visible(srv, model.id, sn, row):
            raise ApiError(404, "content not available to this serial number")
    if is_true(q, "download"):
        return await send(request, srv, row)
    return csv([device_info(row) if sn is not None else vendor_info(row)])


async def upload(request):
    srv = request.app[SERVER]
    model = await auth.model_of(request)
    cid = (await _content(srv, model, request.match_info["id"]))["cid"]
    ctype = check_ctype(request.headers.get("Content-Type", "application/octet-stream"))
    name, size = await receive(request, srv, model, cid)
    await attach(srv, model, cid, name, ctype, size)
    return done()


async def receive(request, srv, model, cid, digest=None):
    """blobs.receive() capped at --max-content-bytes and at what is left of the model owner's
    --vendor-quota-bytes (the content `cid` replaces not counted): 413 past either."""
    cap, quota = srv.max_content, False
    if srv.vendor_quota:
        used = await srv.store.content_bytes(model.owner_rid)
        old = await srv.store.content(model.id, cid)
        room = srv.vendor_quota - used + (old["size"] if old is not None else 0)
        if room < cap:
            cap, quota = max(room, 0), True
    try:
        return await srv.blobs.receive(request, cap, digest)
    except ApiError as exc:
        if exc.status == 413 and quota:
            raise ApiError(413, "vendor storage quota exceeded", close=True) from None
        raise


def check_ctype(ctype):
    ctype = ctype.strip()
    if not ctype or len(ctype) > 200 or "," in ctype or not ctype.isprintable():
        raise ApiError(400, "invalid Content-Type")
    return ctype


async def attach(srv, model, cid, name, ctype, size):
    """Point content `cid` at the received blob `name` (API and dashboard uploads)."""
    old = await srv.store.set_blob(model.id, cid, name, ctype, size, srv.now())
    if old is False:
        srv.blobs.remove(name)
        raise ApiError(404, "content deleted during upload")
    srv.blobs.remove(old)
    log.info("upload %s/%s: %d bytes", model.id, cid, size)


async def delete_item(request):
    srv = request.app[SERVER]
    model = await auth.model_of(request)
    await remove(srv, model, request.match_info["id"])
    return done()
