"""The rollouts' queries, written once for both engines over the store's engine (db.Store.db:
sqlite_engine or pg_engine) as db.py's are; rows come back as dicts by name.

Tables (migration 3 in migrations.py; README, "Staged rollouts"):
  rollouts          one row per content under a rollout (or held for one) of a model
  rollout_devices   what each device did with that content: took it (downloaded a byte of
                    it) and its state in the rollout (rollpolicy.device_state)
  rollout_events    the decisions, one row each: a test counts them to see that two instances
                    seeing the same reports decided once

Decisions are conditional UPDATEs (`... WHERE state = 'running' AND wave = ?`): whichever
instance or worker runs one first changes the row and writes the event, the others change
nothing and write nothing.
"""

COLS = (
    "cid, state, waves, wave, grp, min_devices, max_failures, success, soak, wave_size, "
    "wave_started, created, changed, reason, back_to, source"
)
KEYS = tuple(COLS.split(", "))


async def one(store, sql, *args):
    return await store.db.one(sql, *args)


async def all_(store, sql, *args):
    return await store.db.all(sql, *args)


async def run(store, sql, *args):
    return await store.db.run(sql, *args)


def _row(r):
    return None if r is None else dict(zip(KEYS, r, strict=True))


async def get(store, model_id, cid):
    return _row(
        await one(
            store, f"SELECT {COLS} FROM rollouts WHERE model_id = ? AND cid = ?", model_id, cid
        )
    )


async def of_model(store, model_id):
    """{cid: row} of every rollout (and held content) of the model."""
    rows = await all_(store, f"SELECT {COLS} FROM rollouts WHERE model_id = ?", model_id)
    return {r[0]: _row(r) for r in rows}


async def running(store):
    """[(model_id, row)] of every running rollout, for the periodic check."""
    rows = await all_(store, f"SELECT model_id, {COLS} FROM rollouts WHERE state = 'running'")
    return [(r[0], _row(r[1:])) for r in rows]


async def every(store):
    rows = await all_(store, f"SELECT model_id, {COLS} FROM rollouts")
    return [(r[0], _row(r[1:])) for r in rows]


async def hold(store, model_id, cid, now):
    """A held content: no device is offered it until a rollout of it starts. False when the
    content id already has a rollout row."""
    n = await run(
        store,
        "INSERT INTO rollouts (model_id, cid, state, created, changed) "
        "VALUES (?, ?, 'held', ?, ?) ON CONFLICT (model_id, cid) DO NOTHING",
        model_id,
        cid,
        now,
        now,
    )
    return n == 1


async def start(store, model_id, cid, p, now):
    """held -> running with the parameters `p` (dict); True when this call started it."""
    n = await run(
        store,
        "UPDATE rollouts SET state = 'running', waves = ?, wave = 0, grp = ?, min_devices = ?, "
        "max_failures = ?, success = ?, soak = ?, wave_size = ?, wave_started = ?, "
        "changed = ?, reason = '' WHERE model_id = ? AND cid = ? AND state = 'held'",
        p["waves"],
        p["grp"],
        p["min_devices"],
        p["max_failures"],
        p["success"],
        p["soak"],
        p["wave_size"],
        now,
        now,
        model_id,
        cid,
    )
    if n == 1:
        await event(store, model_id, cid, now, f"start wave 0 ({p['wave_size']} devices)")
    return n == 1


async def transition(store, model_id, cid, old, new, now, reason="", extra=None, wave=None):
    """state `old` (a tuple of states) -> `new`, once: True when this call made it."""
    sets = "state = ?, changed = ?, reason = ?"
    args = [new, now, reason]
    for key, value in (extra or {}).items():
        sets += f", {key} = ?"
        args.append(value)
    where = f"model_id = ? AND cid = ? AND state IN ({', '.join('?' * len(old))})"
    args += [model_id, cid, *old]
    if wave is not None:
        where += " AND wave = ?"
        args.append(wave)
    n = await run(store, f"UPDATE rollouts SET {sets} WHERE {where}", *args)
    if n == 1:
        await event(store, model_id, cid, now, f"{new}{': ' + reason if reason else ''}")
    return n == 1


async def advance(store, model_id, cid, wave, size, now, last):
    """Wave `wave` -> the next one (or done after the last), once."""
    if last:
        return await transition(store, model_id, cid, ("running",), "done", now, wave=wave)
    n = await run(
        store,
        "UPDATE rollouts SET wave = wave + 1, wave_size = ?, wave_started = ?, changed = ? "
        "WHERE model_id = ? AND cid = ? AND state = 'running' AND wave = ?",
        size,
        now,
        now,
        model_id,
        cid,
        wave,
    )
    if n == 1:
        await event(store, model_id, cid, now, f"wave {wave + 1} ({size} devices)")
    return n == 1


async def event(store, model_id, cid, now, what):
    await run(
        store,
        "INSERT INTO rollout_events (model_id, cid, ts, what) VALUES (?, ?, ?, ?)",
        model_id,
        cid,
        now,
        what,
    )


async def events(store, model_id, cid, limit=50):
    rows = await all_(
        store,
        "SELECT ts, what FROM rollout_events WHERE model_id = ? AND cid = ? "
        "ORDER BY id DESC LIMIT ?",
        model_id,
        cid,
        limit,
    )
    return [{"ts": ts, "what": what} for ts, what in rows]


async def delete(store, model_id, cid):
    await run(store, "DELETE FROM rollouts WHERE model_id = ? AND cid = ?", model_id, cid)


# -- devices ---------------------------------------------------------------------------------


async def took(store, model_id, cid, sn, now):
    """The device downloaded (a part of) the content."""
    await run(
        store,
        "INSERT INTO rollout_devices (model_id, cid, sn, took, ts) VALUES (?, ?, ?, 1, ?) "
        "ON CONFLICT (model_id, cid, sn) DO UPDATE SET took = 1",
        model_id,
        cid,
        sn,
        now,
    )


async def device(store, model_id, cid, sn):
    """(took, state) of one device in the rollout, or None."""
    return await one(
        store,
        "SELECT took, state FROM rollout_devices WHERE model_id = ? AND cid = ? AND sn = ?",
        model_id,
        cid,
        sn,
    )


async def set_device(store, model_id, cid, sn, state, now):
    await run(
        store,
        "INSERT INTO rollout_devices (model_id, cid, sn, state, ts) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (model_id, cid, sn) DO UPDATE SET state = excluded.state, ts = excluded.ts",
        model_id,
        cid,
        sn,
        state,
        now,
    )


async def counts(store, model_id, cid):
    """{"took": n, state: n ...} over the devices of the rollout."""
    rows = await all_(
        store,
        "SELECT state, SUM(took), COUNT(*) FROM rollout_devices WHERE model_id = ? AND cid = ? "
        "GROUP BY state",
        model_id,
        cid,
    )
    out = {"took": 0, "started": 0}
    for state, took_, n in rows:
        out["took"] += int(took_ or 0)
        out[state] = out.get(state, 0) + n
    return out


async def device_states(store, model_id, cid):
    """{sn: (took, state)} of the devices the rollout knows."""
    rows = await all_(
        store,
        "SELECT sn, took, state FROM rollout_devices WHERE model_id = ? AND cid = ?",
        model_id,
        cid,
    )
    return {sn: (took_, state) for sn, took_, state in rows}


async def population(store, model_id, gid="", now=None):
    """The serial numbers a rollout ranges over: the model's enabled ones, or the members of
    group `gid` (nested groups included; memberships unexpired at `now` when given)."""
    if not gid:
        rows = await all_(
            store, "SELECT sn FROM sns WHERE model_id = ? AND client_rid IS NOT NULL", model_id
        )
        return [r[0] for r in rows]
    seen, todo, sns = set(), [gid], set()
    while todo and len(seen) < 10000:
        g = todo.pop()
        if g in seen:
            continue
        seen.add(g)
        rows = await all_(
            store,
            "SELECT type, mid, expire FROM members WHERE model_id = ? AND gid = ?",
            model_id,
            g,
        )
        for type_, mid, expire in rows:
            if now is not None and expire and expire <= now:
                continue
            if type_ == "sn":
                sns.add(mid)
            elif type_ == "group":
                todo.append(mid)
    return sorted(sns)
