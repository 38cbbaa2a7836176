"""What devices tell the server: when each serial number was last heard from and
from where, and the status its agent reports through the alias interface.

Every device call (activate, the download procedures, alias writes) sets `last_seen` and
`address`; to keep a download's Range requests from writing a row each, a process writes
them at most once per SEEN_EVERY seconds per serial number (unless the address changed),
remembering the last write in memory. Alias writes whose names are report fields (db.REPORT_*)
update the serial number's status row at once; every alias value is also kept as history in
`data`, as the data interface always did.

Exoprov extension procedures (README, "Fleet status"), vendor-authenticated like
`GET /provision/manage/model/<model>/` and with its share rules:
  GET /exoprov/v1/model/<model>/status   one page of serial numbers with their status (JSON)
  GET /exoprov/v1/model/<model>/rollout  counts per version and state (JSON)
"""

import collections
import json
import time

from aiohttp import web

from . import auth, rollouts
from .db import REPORT_INT, REPORT_TEXT
from .state import SERVER, log, peer
from .util import check_name, is_true, one, page, query, text

SEEN_EVERY = 60.0  # seconds between two last-seen writes for one serial number, per process
_SEEN_MAX = 200_000  # serial numbers remembered; the oldest are forgotten first
_TEXT_MAX = 200  # a reported text value is kept up to this many characters
_INT_MAX = 1 << 31


class Seen:
    """When this process last wrote last_seen for a serial number, and the address."""

    def __init__(self, every=SEEN_EVERY, clock=time.monotonic):
        self.every, self.clock = every, clock
        self._last = collections.OrderedDict()  # (model_id, sn) -> (time, address)

    def due(self, key, address):
        now = self.clock()
        old = self._last.get(key)
        if old is not None and old[1] == address and now - old[0] < self.every:
            return False
        self._last[key] = (now, address)
        self._last.move_to_end(key)
        while len(self._last) > _SEEN_MAX:
            self._last.popitem(last=False)
        return True

    def wrote(self, key, address):
        self._last[key] = (self.clock(), address)
        self._last.move_to_end(key)


SEEN = web.AppKey("seen", Seen)


async def heard(request, model_id, sn):
    """A device call for (model_id, sn): record last_seen/address, throttled. Never fails
    the call it is part of."""
    address = peer(request)[0]
    seen = request.app.get(SEEN) or request.config_dict.get(SEEN)
    if seen is not None and not seen.due((model_id, sn), address):
        return
    srv = request.app[SERVER]
    try:
        await srv.store.heard(model_id, sn, srv.now(), address)
    except Exception:  # bookkeeping: a failed write must not fail a download
        log.exception("last-seen of a device not recorded")


def report_fields(pairs):
    """[(alias, value)] of one alias write -> {field: value} of the report fields in it (the
    last value of a field wins); text is cut to 200 characters, numbers that are not whole
    non-negative numbers are left out."""
    out = {}
    for alias, value in pairs:
        if alias in REPORT_TEXT:
            out[alias] = value[:_TEXT_MAX]
        elif alias in REPORT_INT:
            if value.isdigit() and value.isascii() and int(value) < _INT_MAX:
                out[alias] = int(value)
    return out


async def reported(request, client_rid, pairs):
    """An alias write of an activated device: keep its report fields with their time."""
    srv = request.app[SERVER]
    mine = await srv.store.sn_of_client(client_rid)
    if mine is None:
        return
    address = peer(request)[0]
    fields = report_fields(pairs)
    await srv.store.record_report(mine.model_id, mine.sn, srv.now(), address, fields)
    try:  # what the report means to a rollout, and the decision it may bring
        await rollouts.observe(srv, mine.model_id, mine.sn, fields)
    except Exception:  # the report itself is kept; the next one or the tick decides
        log.exception("a report was not applied to the rollouts")
    seen = request.config_dict.get(SEEN)
    if seen is not None:
        seen.wrote(tuple(mine), address)


# -- extension procedures -------------------------------------------------------------------


async def _model(request):
    srv = request.app[SERVER]
    model = await auth.model_of(request)
    # As in the serial number list: a share sees only what it enabled, and the owner may
    # ask for what one vendor enabled (`shared=<vendor>`).
    if model.shared:
        return srv, model, model.caller.rid
    name = one(query(request), "shared")
    if name is None:
        return srv, model, None
    other = await srv.store.vendor_by_name(check_name(name, "shared"))
    return srv, model, (other.rid if other else "-")


async def status(request):
    """{"devices": [{sn, status, rid, last_seen, address, reported, state, version, content,
    error, error_at, boots, rollbacks, progress, target}]}: query offset, limit (as the
    serial number list: 5..1000, default 5; `all=true` raises the default to 1000), version,
    state ("" = none reported), search (part of the sn), shared (as in the list)."""
    srv, model, enabled_by = await _model(request)
    q = query(request)
    offset, limit = page(q)
    if one(q, "limit") is None and is_true(q, "all"):
        limit = 1000
    rows = await srv.store.device_statuses(
        model.id,
        offset,
        limit,
        enabled_by,
        one(q, "version"),
        one(q, "state"),
        one(q, "search"),
    )
    out = []
    for r in rows:
        r["status"] = srv.status(r.pop("client_state"), r.pop("enabled_at"))
        r["rid"] = r.pop("client_rid") or ""
        out.append(r)
    return text(json.dumps({"devices": out}), ctype="application/json")


async def rollout(request):
    """db.Store.status_counts() of the model as JSON (pairs become [value, count] lists)."""
    srv, model, enabled_by = await _model(request)
    counts = await srv.store.status_counts(model.id, enabled_by)
    return text(json.dumps(counts), ctype="application/json")
