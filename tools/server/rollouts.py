"""Staged rollouts (README, "Rollouts"): a content offered wave by wave, that starts the next
wave by itself on success and pauses itself on failures. The devices are unchanged: they list
and download as before; what they are offered depends on their wave, and what they report
(state, version, content, error) moves the rollout on or stops it.

Exoprov extension procedures, for the model's owner (vendor-authenticated; not through a share):
  GET  /exoprov/v1/model/<model>/rollouts/                 every rollout of the model (JSON)
  GET  /exoprov/v1/model/<model>/rollouts/<id>             one rollout's status (JSON)
  POST /exoprov/v1/model/<model>/rollouts/<id>/<action>    hold, start, pause, resume, abort
       (a JSON object: start takes waves, group, min_devices, max_failures, success, soak;
       abort takes to)
"""

import asyncio
import contextlib
import json

from aiohttp import web

from . import auth, rollpolicy, rollstore
from .rollpolicy import FAILED, Invalid
from .state import SERVER, log
from .util import ApiError, check_name, text

TICK = 2.0  # seconds between two checks of the running rollouts (the soak time passing)
_TOOK_MAX = 100_000
_DONE_WATCH = 86400  # seconds a done rollout still counts what its devices report
# states in which a content is offered to a device by its wave, by what it took, or to none
_OFFER_NONE = ("held", "aborted")


# -- what a device is offered ----------------------------------------------------------------


async def model_rollouts(srv, model_id):
    """{cid: row} of the model's rollouts and held content (one query)."""
    return await rollstore.of_model(srv.store, model_id)


async def offered(srv, model_id, sn, row, sn_groups=None):
    """May device `sn` see content `row["cid"]` of rollout row `row`? Held or aborted: no.
    Running: when its wave holds it. Paused: only if it already took a part of it (a download
    started before the pause finishes). Done: yes (within the group). A way back (abort --to):
    only to the devices that took the content it replaces."""
    state, cid = row["state"], row["cid"]
    if state in _OFFER_NONE:
        return False
    if state == "back":
        mine = await rollstore.device(srv.store, model_id, row["source"], sn)
        return bool(mine and mine[0])
    if row["grp"] and not await _in_group(srv, model_id, sn, row["grp"], sn_groups):
        return False
    if state == "done":
        return True
    if state == "running":
        waves = rollpolicy.parse_waves(row["waves"])
        if rollpolicy.in_wave(cid, sn, waves[min(row["wave"], len(waves) - 1)]):
            return True
    mine = await rollstore.device(srv.store, model_id, cid, sn)
    return bool(mine and mine[0])


async def _in_group(srv, model_id, sn, gid, sn_groups):
    if sn_groups is None:
        from .content import _reach

        sn_groups = await _reach(srv, model_id, "sn", sn)
    return gid in sn_groups


def cacheable(row):
    """May an answer for this content be kept (device.Grants, nginx's grant cache)? Only when
    no rollout can withdraw or narrow it any more."""
    return row is None or (row["state"] == "done" and not row["grp"])


class Took:
    """The (model, content, sn) this process already recorded as taken: a download's Range
    requests then write one row, not one each."""

    def __init__(self):
        self._seen = set()

    async def record(self, srv, model_id, cid, sn):
        """-> True the first time this process sees the device take the content."""
        key = (model_id, cid, sn)
        if key in self._seen:
            return False
        await rollstore.took(srv.store, model_id, cid, sn, srv.now())
        if len(self._seen) >= _TOOK_MAX:
            self._seen.clear()
        self._seen.add(key)
        return True


TOOK = web.AppKey("rollout_took", Took)


async def downloading(request, srv, model_id, sn, cid, rrow):
    """A device downloads content under a rollout: count it as taken (the blast radius)."""
    took = request.app.get(TOOK) or request.config_dict.get(TOOK)
    if took is None:
        took = Took()
    if await took.record(srv, model_id, cid, sn) and rrow["state"] == "running":
        await decide(srv, model_id, rrow)  # one more device started: the failure share fell


# -- reports and decisions -------------------------------------------------------------------


async def observe(srv, model_id, sn, fields):
    """A device report (state, version, content, error): its state in each running or paused
    rollout it takes part in, then the decision it may bring."""
    if "state" not in fields:
        return
    rows = await model_rollouts(srv, model_id)
    now = srv.now()
    for row in rows.values():
        # a rollout just done goes on counting for a while: its status shows the stragglers
        done = row["state"] == "done" and now - row["changed"] < _DONE_WATCH
        if row["state"] not in ("running", "paused") and not done:
            continue
        cid = row["cid"]
        mine = await rollstore.device(srv.store, model_id, cid, sn)
        taker = bool(mine and mine[0])
        if mine is None and not await offered(srv, model_id, sn, row):
            continue
        new = rollpolicy.device_state(fields, cid, taker)
        if new is None or (mine is not None and mine[1] == new):
            continue
        await rollstore.set_device(srv.store, model_id, cid, sn, new, srv.now())
        if row["state"] == "running":
            await decide(srv, model_id, row)


async def decide(srv, model_id, row):
    """Pause or advance the running rollout `row` when its counts say so. The change is a
    conditional UPDATE: made once, by whichever instance gets there first."""
    store, cid, now = srv.store, row["cid"], srv.now()
    c = await rollstore.counts(store, model_id, cid)
    started = sum(n for k, n in c.items() if k != "took")
    failed = sum(c.get(k, 0) for k in FAILED)
    if rollpolicy.should_pause(started, failed, row["min_devices"], row["max_failures"]):
        why = f"{failed} of {started} devices failed (max {row['max_failures']:g} %)"
        if await rollstore.transition(store, model_id, cid, ("running",), "paused", now, why):
            log.warning("rollout %s/%s paused: %s", model_id, cid, why)
        return
    ok = rollpolicy.should_advance(
        row["wave_size"], c.get("active", 0), row["success"], row["wave_started"], row["soak"], now
    )
    if not ok:
        return
    waves = rollpolicy.parse_waves(row["waves"])
    last = row["wave"] >= len(waves) - 1
    size = 0
    if not last:
        size = await wave_size(srv, model_id, cid, row["grp"], waves[row["wave"] + 1])
    if await rollstore.advance(store, model_id, cid, row["wave"], size, now, last):
        log.info("rollout %s/%s: %s", model_id, cid, "done" if last else f"wave {row['wave'] + 1}")


async def wave_size(srv, model_id, cid, gid, pct):
    sns = await rollstore.population(srv.store, model_id, gid, srv.now())
    return sum(1 for sn in sns if rollpolicy.in_wave(cid, sn, pct))


async def tick(srv):
    """Every running rollout once: a soak time that has passed starts the next wave."""
    for model_id, row in await rollstore.running(srv.store):
        await decide(srv, model_id, row)


async def ticker(app):
    srv = app[SERVER]
    every = srv.rollout_tick or TICK

    async def loop():
        while True:
            await asyncio.sleep(every)
            try:
                await tick(srv)
            except asyncio.CancelledError:
                raise
            except ApiError:  # the database away for a moment (said by the engine): next tick
                pass
            except Exception:
                log.exception("rollout check failed")

    task = asyncio.get_running_loop().create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# -- status ----------------------------------------------------------------------------------


async def status(srv, model_id, cid, row=None, detail=True):
    """The JSON of one rollout: state, wave (percentage), waves, parameters, counts by state,
    and with `detail` each wave's devices by reported state and the last decisions."""
    row = row or await rollstore.get(srv.store, model_id, cid)
    if row is None:
        raise ApiError(404, "no rollout of this content")
    waves = rollpolicy.parse_waves(row["waves"]) if row["waves"] else []
    c = await rollstore.counts(srv.store, model_id, cid)
    out = {
        "content": cid,
        "state": row["state"],
        "wave": waves[min(row["wave"], len(waves) - 1)] if waves else 0,
        "wave_index": row["wave"],
        "waves": waves,
        "group": row["grp"],
        "min_devices": row["min_devices"],
        "max_failures": row["max_failures"],
        "success": row["success"],
        "soak": row["soak"],
        "wave_size": row["wave_size"],
        "wave_started": row["wave_started"],
        "created": row["created"],
        "changed": row["changed"],
        "reason": row["reason"],
        "to": row["back_to"],
        "took": c.pop("took"),
        "counts": {k: v for k, v in c.items() if v},
    }
    if row["state"] == "done":
        out["wave"] = 100.0
    if detail and waves:
        out["by_wave"] = await _by_wave(srv, model_id, row, waves)
        out["events"] = await rollstore.events(srv.store, model_id, cid)
    return out


async def _by_wave(srv, model_id, row, waves):
    sns = await rollstore.population(srv.store, model_id, row["grp"], srv.now())
    known = await rollstore.device_states(srv.store, model_id, row["cid"])
    out = [{"wave": w, "devices": 0, "states": {}} for w in waves]
    for sn in sns:
        i = rollpolicy.wave_of(row["cid"], sn, waves)
        if i is None:
            continue
        out[i]["devices"] += 1
        state = known.get(sn, (0, "waiting"))[1]
        out[i]["states"][state] = out[i]["states"].get(state, 0) + 1
    return out


# -- actions (API and dashboard) -------------------------------------------------------------


def params(body):
    """A start's parameters from a dict of strings or numbers -> the row's values."""
    try:
        waves = rollpolicy.parse_waves(body.get("waves", "1,10,50,100"))
        p = {
            "waves": rollpolicy.format_waves(waves),
            "grp": str(body.get("group") or ""),
            "min_devices": rollpolicy.parse_count(body.get("min_devices", 1), "min-devices"),
            "max_failures": rollpolicy.parse_pct(body.get("max_failures", 20), "max-failures"),
            "success": rollpolicy.parse_pct(body.get("success", 100), "success"),
            "soak": rollpolicy.parse_duration(body.get("soak", "0")),
        }
    except Invalid as exc:
        raise ApiError(400, str(exc))
    if p["grp"]:
        check_name(p["grp"], "group")
    return p


async def hold(srv, model, cid):
    """Keep content `cid` from every device until a rollout of it starts; only for a content
    no device may have been offered yet (none uploaded)."""
    check_name(cid, "content id")
    row = await srv.store.content(model.id, cid)
    existing = await rollstore.get(srv.store, model.id, cid)
    if existing is not None:
        if existing["state"] != "held":
            raise ApiError(409, f"a rollout of this content exists ({existing['state']})")
        return
    if row is not None and row["blob"] is not None:
        raise ApiError(409, "content already uploaded and offered to every device")
    await rollstore.hold(srv.store, model.id, cid, srv.now())


async def start(srv, model, cid, body):
    check_name(cid, "content id")
    p = params(body)
    store = srv.store
    if p["grp"] and await store.group(model.id, p["grp"]) is None:
        raise ApiError(404, "no such group")
    crow = await store.content(model.id, cid)
    if crow is None:
        raise ApiError(404, "no such content")
    row = await rollstore.get(store, model.id, cid)
    if row is None:
        raise ApiError(
            409,
            "content is already offered to every device (upload it with --hold to roll it out)",
        )
    if row["state"] != "held":
        raise ApiError(409, f"a rollout of this content exists ({row['state']})")
    if crow["blob"] is None:
        raise ApiError(409, "no content uploaded yet")
    first = rollpolicy.parse_waves(p["waves"])[0]
    p["wave_size"] = await wave_size(srv, model.id, cid, p["grp"], first)
    if not await rollstore.start(store, model.id, cid, p, srv.now()):
        raise ApiError(409, "the rollout was started meanwhile")


async def act(srv, model, cid, action, body):
    """pause, resume, abort (optionally `to` a content signed with rollback=1)."""
    check_name(cid, "content id")
    store, now = srv.store, srv.now()
    row = await rollstore.get(store, model.id, cid)
    if row is None or row["state"] in ("held", "back"):
        raise ApiError(404, "no rollout of this content")
    if action == "pause":
        ok = await rollstore.transition(
            store, model.id, cid, ("running",), "paused", now, "by hand"
        )
    elif action == "resume":
        ok = await rollstore.transition(store, model.id, cid, ("paused",), "running", now)
        if ok:  # a resumed wave soaks again from now
            await rollstore.run(
                store,
                "UPDATE rollouts SET wave_started = ? WHERE model_id = ? AND cid = ?",
                now,
                model.id,
                cid,
            )
    elif action == "abort":
        to = body.get("to") or ""
        if to:
            await _check_back(srv, model, cid, to)
        ok = await rollstore.transition(
            store,
            model.id,
            cid,
            ("running", "paused"),
            "aborted",
            now,
            "by hand",
            {"back_to": to},
        )
        if ok and to:
            await _offer_back(srv, model, cid, to)
    else:
        raise ApiError(404, "unknown rollout action")
    if not ok:
        raise ApiError(409, f"the rollout is {row['state']}")


async def _check_back(srv, model, cid, to):
    check_name(to, "content id")
    if to == cid:
        raise ApiError(400, "to: another content")
    crow = await srv.store.content(model.id, to)
    if crow is None or crow["blob"] is None:
        raise ApiError(404, "to: no such content uploaded")
    from urllib.parse import parse_qsl

    meta = dict(parse_qsl(crow["meta"] or "", keep_blank_values=True))
    if meta.get("rollback") != "1" or not meta.get("sig"):
        raise ApiError(
            409, "to: the content must be signed with rollback=1 (a downgrade is refused)"
        )


async def _offer_back(srv, model, cid, to):
    """Offer `to` to the devices that took `cid`: a held `to` becomes their way back; a
    content offered to every device already reaches them."""
    row = await rollstore.get(srv.store, model.id, to)
    if row is not None and row["state"] == "held":
        await rollstore.transition(
            srv.store, model.id, to, ("held",), "back", srv.now(), "", {"source": cid}
        )


# -- handlers --------------------------------------------------------------------------------


async def _model(request):
    return request.app[SERVER], await auth.model_of(request)


def _json(obj, status=200):
    return text(json.dumps(obj), ctype="application/json", status=status)


async def list_handler(request):
    srv, model = await _model(request)
    rows = await model_rollouts(srv, model.id)
    out = []
    for cid in sorted(rows):
        out.append(await status(srv, model.id, cid, rows[cid], detail=False))
    return _json({"rollouts": out})


async def get_handler(request):
    srv, model = await _model(request)
    cid = check_name(request.match_info["id"], "content id")
    return _json(await status(srv, model.id, cid))


async def post_handler(request):
    srv, model = await _model(request)
    cid = request.match_info["id"]
    action = request.match_info["action"]
    body = {}
    raw = await request.read()
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "a JSON object expected")
        if not isinstance(body, dict):
            raise ApiError(400, "a JSON object expected")
    if action == "hold":
        await hold(srv, model, cid)
    elif action == "start":
        await start(srv, model, cid, body)
    else:
        await act(srv, model, cid, action, body)
    if action == "hold":
        return _json({"content": cid, "state": "held"})
    return _json(await status(srv, model.id, cid, detail=False))
