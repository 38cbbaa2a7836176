"""Device procedures: POST /provision/activate, GET /provision/download, and GET /ip."""

from aiohttp import web

from . import auth, content, fleetstatus, metrics, rollouts
from .snranges import any_contains
from .state import SERVER, log, new_cik, peer, reached
from .util import ApiError, check_name, csv, is_true, one, query, read_form, text

_FAILED = (400, 403, 404, 409)


async def activate(request):
    srv = request.app[SERVER]
    address, conn = peer(request)
    wait = await srv.limiter.retry_after(address)
    if wait:
        raise ApiError(429, "too many failed activations", {"Retry-After": str(wait)})
    try:
        form = await read_form(request)
        return await _activate(srv, form, conn, request)
    except ApiError as exc:
        if exc.status in _FAILED:
            await srv.limiter.failed(address)
        raise


async def _activate(srv, form, conn, request=None):
    store = srv.store
    vendor = check_name(one(form, "vendor"), "vendor")
    name = check_name(one(form, "model"), "model")
    sn = check_name(one(form, "sn"), "sn")
    owner = await store.vendor_by_name(vendor)
    model = await store.model(owner.rid, name) if owner else None
    if model is None:
        log.info("activate %s: invalid vendor/model pair", conn)
        raise ApiError(403, "invalid vendor/model pair")
    row = await store.sn(model.id, sn)
    if row is None:
        if not any_contains(await store.ranges(model.id), sn):
            log.info("activate %s: unknown serial number", conn)
            raise ApiError(404, "serial number not found")
        await _refuse(srv, model.id, sn, conn, "not enabled")
    if not row.client_rid:
        await _refuse(srv, model.id, sn, conn, "not enabled")
    client = await store.client(row.client_rid)
    if client is None:
        await _refuse(srv, model.id, sn, conn, "not enabled")
    status = srv.status(client.state, client.enabled_at)
    if client.state == "activated":
        await _refuse(srv, model.id, sn, conn, "already activated")
    if status != "notactivated":
        why = "disabled" if client.state == "disabled" else "activation window expired"
        await _refuse(srv, model.id, sn, conn, why)
    cik = new_cik()  # drawn now: until this answer, no one (the database neither) holds it
    async with store.tx():
        # a conditional UPDATE, inside the write transaction: another worker or instance on
        # the same database may have activated, disabled or regenerated this client since
        # the read above (between instances it decides: one winner)
        released = await store.release_cik(client.rid, cik, client.enabled_at)
        if released:
            await store.log_activation(model.id, sn, srv.now(), conn, "activated")
    if not released:
        await _refuse(srv, model.id, sn, conn, "already activated")
    if request is not None:
        # only now: the caller proved to be the device (it got the CIK); a refused caller
        # must not move the dashboard's "last seen from" (the activation log has it)
        await fleetstatus.heard(request, model.id, sn)
    log.info("activate %s: client %s activated", conn, client.rid[:8])
    return text(cik)


async def _refuse(srv, model_id, sn, conn, why):
    await srv.store.log_activation(model_id, sn, srv.now(), conn, "refused: " + why)
    raise ApiError(409, why)


class Grants:
    """The download path's answers, kept per (CIK, query string) while the store's generation
    (engine.Engine.generation) stands still: a device fetching its firmware in Range
    requests then costs at most one small query per request (SQLite; none on PostgreSQL)
    instead of the credential, model and content lookups. Only what cannot change with time
    alone is kept: a blob of unprotected content to an activated device (a protected one's
    visibility also ends when a group membership expires). While the generation is None
    (the engine cannot tell), nothing is kept."""

    MAX = 4096

    def __init__(self):
        self.gen = None
        self._kept = {}

    async def get(self, store, key):
        """-> (generation to put() with, kept answer or None)."""
        cik, _query = key
        if cik is None:
            return None, None
        gen = await store.generation()
        if gen is None:
            return None, None
        if gen != self.gen:
            self._kept.clear()
            self.gen = gen
            return gen, None
        return gen, self._kept.get(key)

    def put(self, gen, key, answer):
        if gen is None or gen != self.gen:
            return
        if len(self._kept) >= self.MAX:
            self._kept.clear()
        self._kept[key] = answer


GRANTS = web.AppKey("grants", Grants)


async def download(request):
    srv = request.app[SERVER]
    store = srv.store
    grants = request.app.get(GRANTS)
    key = (request.headers.get("X-Exosite-CIK"), request.rel_url.raw_query_string)
    gen, kept = await grants.get(store, key) if grants is not None else (None, None)
    if kept is not None:
        request[metrics.PROCEDURE] = "device_download"
        model_id, sn, row = kept
        await fleetstatus.heard(request, model_id, sn)
        return await content.send(request, srv, row)
    try:
        q = query(request, remember=True)
        info = is_true(q, "info")  # info=maybe is a 400, never a blob download
    except ApiError:
        await auth.device(store, request)  # a credential problem is told first
        raise
    bad_pair = 400 if info else 403  # GET /provision/download?info answers 400 here
    found = await _fast_lookup(store, request, q)
    if found is None:  # no shortcut, or a refusal: the checks in their documented order
        client = await auth.device(store, request)
        vendor = check_name(one(q, "vendor"), "vendor")
        name = check_name(one(q, "model"), "model")
        owner = await store.vendor_by_name(vendor)
        model = await store.model(owner.rid, name) if owner else None
        model_id = model.id if model else None
        mine = await store.sn_of_client(client.rid)
    else:
        client, model_id, mine = found
    if model_id is None or mine is None or mine.model_id != model_id:
        raise ApiError(bad_pair, "invalid vendor/model pair")
    sn = mine.sn
    await fleetstatus.heard(request, model_id, sn)
    cid = one(q, "id")
    if cid is None:
        ids = await content.visible_ids(srv, model_id, sn)
        return csv(ids)
    check_name(cid, "content id")
    row = await store.content(model_id, cid)
    rolls = await rollouts.model_rollouts(srv, model_id) if row is not None else {}
    if row is None or not await content.visible(srv, model_id, sn, row, rolls=rolls):
        raise ApiError(404, "no such content")
    if info:
        return csv([content.device_info(row)])
    roll = rolls.get(cid)
    if not row["protected"] and grants is not None and rollouts.cacheable(roll):
        grants.put(gen, key, (model_id, sn, row))
    if roll is None:
        return await content.send(request, srv, row)
    # This device takes it (the blast radius): a GET, or the HEAD with which deploy/nginx
    # asks before it serves the bytes from its own cache (the instance sees no GET then).
    await rollouts.downloading(request, srv, model_id, sn, cid, roll)
    resp = await content.send(request, srv, row)
    if request.method == "HEAD" and not rollouts.cacheable(roll):
        # deploy/nginx keeps a HEAD's yes as a grant for its TTL: never for content a
        # rollout may still withdraw (abort) from the devices it was offered to
        resp.headers["X-Accel-Expires"] = "0"
        resp.headers["Cache-Control"] = "no-store"
    return resp


async def _fast_lookup(store, request, q):
    """The client, model id and the client's serial number in one store call, for the
    common case (valid names, an activated device); None sends the caller the long way."""
    cik = request.headers.get("X-Exosite-CIK")
    vendor, name = q.get("vendor"), q.get("model")
    if not cik or len(cik) > auth.CRED_MAX or not vendor or not name:
        return None
    try:
        vendor, name = check_name(one(q, "vendor"), "v"), check_name(one(q, "model"), "m")
    except ApiError:
        return None
    view = await store.device_view(cik, vendor, name)
    client = view.client
    if client is None or client.kind != "device" or client.state != "activated":
        return None
    return view


async def ip(request):
    host, port = reached(request)
    octets = host.split(".") if host.count(".") == 3 and ":" not in host else ["0"] * 4
    return text(",".join([*octets, str(port >> 8), str(port & 0xFF)]))
