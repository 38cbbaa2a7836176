"""The dashboard's pages and actions (see __init__.py for the rules they follow)."""

import hashlib
import json
import re
import time
from urllib.parse import parse_qsl, quote, urlencode

import aiohttp_jinja2
from aiohttp import web

from .. import auth, content, models, rollouts, rollstore, snranges
from ..state import SERVER, peer
from ..util import ApiError, check_name, check_text, one, query, read_form
from . import chart, session

PAGE = 50
STATUSES = ("activated", "notactivated", "expired", "none")
ACTIONS = {
    "enable": "Enable",
    "regenerate": "Regenerate",
    "disable": "Disable",
    "reenable": "Enable again",
}
# What each action does, said on its confirmation page.
_EXPLAIN = {
    "enable": "creates a client for this serial number; the device may then activate "
    "within the activation window.",
    "regenerate": "gives the device a new CIK: the one it holds stops working at once and it "
    "must activate again within the activation window.",
    "disable": "drops the device's CIK: it can no longer reach the server until it is "
    "enabled again.",
    "reenable": "gives the device a new CIK (as a regeneration does): it may activate again "
    "within the activation window.",
}
_REPORTED = ("state", "version", "content", "target", "progress", "error", "boots", "rollbacks")
_PUBLIC = ("login", "login_post", "static")
_UNREPORTED = "(not reported)"
_VERSION = re.compile(r"[A-Za-z0-9._~-]{1,64}")
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def when(ts):
    """A Unix time as UTC text ('' for none)."""
    if not ts:
        return ""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(ts)))
    except (ValueError, OverflowError):
        return str(ts)


def size(n):
    """Bytes as a person reads them."""
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def quote_part(value):
    return quote(str(value), safe="")


def _redirect(location):
    return web.Response(status=303, headers={"Location": location})


def _render(name, request, ctx, status=200):
    ctx.setdefault("vendor", request.get("vendor"))
    ctx.setdefault("csrf", request.get("csrf", ""))
    return aiohttp_jinja2.render_template(name, request, ctx, status=status)


@web.middleware
async def guard(request, handler):
    """Session, CSRF and security headers for every /ui/ request; refusals as HTML pages."""
    srv = request.app[SERVER]
    route = request.match_info.route.name
    try:
        if route not in _PUBLIC:
            found = await session.current(srv, request)
            if found is None:
                if request.method in ("GET", "HEAD"):
                    resp = _redirect("/ui/login")
                    session.clear_cookie(resp, session.COOKIE)
                    return _secured(resp)
                raise ApiError(401, "log in first")
            request["vendor"], request["csrf"] = found
            if request.method == "POST":
                await _check_csrf(request, found[1])
        resp = await handler(request)
    except ApiError as exc:
        resp = _render("error.html", request, {"status": exc.status, "reason": exc.reason},
                       exc.status)  # fmt: skip
        for key, value in (exc.headers or {}).items():  # Retry-After of a 429
            resp.headers[key] = value
    return _secured(resp)


def _secured(resp):
    for key, value in _HEADERS.items():
        resp.headers.setdefault(key, value)
    if not resp.headers.get("Cache-Control"):
        resp.headers["Cache-Control"] = "no-store"
    return resp


async def _check_csrf(request, expected):
    sent = request.headers.get("X-CSRF-Token")
    if sent is None:
        request["form"] = await read_form(request)
        sent = one(request["form"], "csrf")
    if not session.same(sent, expected):
        raise ApiError(403, "missing or wrong CSRF token: reload the page and try again")


# -- login and logout ------------------------------------------------------------------------


async def login_page(request):
    srv = request.app[SERVER]
    if await session.current(srv, request) is not None:
        return _redirect("/ui/")
    return await _login_form(request, None, 200)


async def _login_form(request, error, status):
    pre = session.cookie(request, session.LOGIN_COOKIE)
    fresh = pre is None
    if fresh:
        import secrets

        pre = secrets.token_urlsafe(32)
    ctx = {"error": error, "csrf": session.token(pre, "login"), "vendor": None}
    resp = _render("login.html", request, ctx, status)
    if fresh:
        session.set_cookie(request, resp, session.LOGIN_COOKIE, pre, 3600)
    return resp


async def login(request):
    """Log in with a vendor CIK or token. A wrong one counts as a failure of the caller's
    address in the limiter that counts failed activations (shared by workers and instances):
    past the limit every login from there is 429 with Retry-After, the right one too."""
    srv = request.app[SERVER]
    address, _conn = peer(request)
    wait = await srv.limiter.retry_after(address)
    if wait:
        raise ApiError(429, "too many failed logins: try again later", {"Retry-After": str(wait)})
    form = await read_form(request)
    pre = session.cookie(request, session.LOGIN_COOKIE)
    if pre is None or not session.same(one(form, "csrf"), session.token(pre, "login")):
        raise ApiError(403, "missing or wrong CSRF token: reload the page and try again")
    credential = (one(form, "credential") or "").strip()
    vendor = None
    if credential:
        for kind in ("cik", "token"):
            try:
                vendor = await auth.vendor_from(srv.store, **{kind: credential})
                break
            except ApiError:
                continue
    if vendor is None:
        await srv.limiter.failed(address)
        return await _login_form(request, "Unknown vendor CIK or token.", 401)
    resp = _redirect("/ui/")
    await session.start(srv, request, resp, vendor, credential)
    return resp


async def logout(request):
    resp = _redirect("/ui/login")
    await session.end(request.app[SERVER], request, resp)
    return resp


# -- models ----------------------------------------------------------------------------------


async def home(request):
    srv, vendor = request.app[SERVER], request["vendor"]
    own = []
    for name in await srv.store.models(vendor.rid):
        row = await srv.store.model(vendor.rid, name)
        own.append(
            {
                "name": name,
                "sns": await srv.store.sn_count(row.id),
                "content": len(await srv.store.content_list(row.id)),
            }
        )
    shared = [
        {"owner": s.owner, "name": s.model} for s in await srv.store.shared_models(vendor.rid)
    ]
    return _render("models.html", request, {"own": own, "shared": shared})


async def _model(request, shared_ok=True):
    """The URL's /m/<owner>/<model>, resolved for the session's vendor as the API would with
    X-Exosite-Vendor: <owner>."""
    srv = request.app[SERVER]
    owner = check_name(request.match_info["owner"], "vendor")
    model = await auth.resolve_model(
        srv.store, request["vendor"], request.match_info["model"], owner, shared_ok
    )
    owner_name = owner if model.shared else request["vendor"].name
    base = f"/ui/m/{quote_part(owner_name)}/{quote_part(model.name)}"
    return srv, model, {"model": model.name, "owner": owner_name, "shared": model.shared,
                        "base": base}  # fmt: skip


# -- serial numbers --------------------------------------------------------------------------


def _filters(q):
    status = one(q, "status") or ""
    if status and status not in STATUSES:
        raise ApiError(400, "unknown status")
    search = check_text(one(q, "q"), "search")[:128]
    version = check_text(one(q, "version"), "version")[:128]
    return {"status": status, "q": search, "version": version}


async def sns(request):
    srv, model, ctx = await _model(request)
    q = query(request)
    filters = _filters(q)
    after, before = one(q, "after"), one(q, "before")
    if after is not None:
        check_name(after, "after")
    elif before is not None:
        check_name(before, "before")
    spec = {
        "limit": PAGE + 1,
        "after": after,
        "before": before if after is None else None,
        "search": filters["q"],
        "status": filters["status"],
        "version": filters["version"],
        "enabled_by": model.caller.rid if model.shared else None,
        "now": srv.now(),
        "window": srv.window,
    }
    started = time.perf_counter()
    rows = await srv.store.sn_page(model.id, spec)
    if spec["before"] is not None:
        has_prev, has_next = len(rows) > PAGE, True
        rows = rows[-PAGE:]
    else:
        has_prev, has_next = after is not None, len(rows) > PAGE
        rows = rows[:PAGE]
    items = []
    for row in rows:
        items.append(
            {
                "sn": row.sn,
                "extra": "" if model.shared else row.extra,
                "status": srv.status(row.client_state, row.enabled_at) if row.client_rid else "",
                "version": row.version or "",
                "state": row.state or "",
                "error": row.error or "",
                "last_seen": row.last_seen,
            }
        )
    elapsed_ms = (time.perf_counter() - started) * 1000
    keep = {k: v for k, v in filters.items() if v}
    ctx.update(
        ranges=[] if model.shared else await _ranges(srv, model),
        items=items,
        filters=filters,
        statuses=STATUSES,
        total=None if model.shared else await srv.store.sn_count(model.id),
        prev=urlencode({**keep, "before": rows[0].sn}) if has_prev and rows else None,
        next=urlencode({**keep, "after": rows[-1].sn}) if has_next and rows else None,
        elapsed_ms=elapsed_ms,
    )
    resp = _render("sns.html", request, ctx)
    resp.headers["Server-Timing"] = f"db;dur={elapsed_ms:.1f}"
    return resp


_RANGE_SCAN = 100_000  # listed serial numbers looked through to count those in the ranges


def range_bound(spec, value):
    """A range's first or last number written as the range's serial numbers are."""
    fmt = spec["format"]
    if fmt.startswith("mac"):
        digits = f"{value:012x}"
        digits = digits.upper() if spec.get("casing") == "upper" else digits
        if fmt == "mac.48":
            return ".".join(digits[i : i + 4] for i in range(0, 12, 4))
        return fmt[3].join(digits[i : i + 2] for i in range(0, 12, 2))
    text = str(value) if fmt == "base10" else f"{value:x}"
    if spec.get("casing") == "upper":
        text = text.upper()
    return text.zfill(spec["length"]) if spec.get("length") else text


async def _ranges(srv, model):
    """The model's ranges (`sn add --range`): bounds, format, how many serial numbers each
    whitelists, and how many of those are listed (have a row: enabled or activated)."""
    specs = await srv.store.ranges(model.id)
    if not specs:
        return []
    listed = [0] * len(specs)
    if await srv.store.sn_count(model.id) <= _RANGE_SCAN:
        for item in await srv.store.list_sns(model.id, 0, _RANGE_SCAN):
            for i, spec in enumerate(specs):
                if snranges.contains(spec, item.sn):
                    listed[i] += 1
    else:
        listed = [None] * len(specs)
    return [
        {
            "first": range_bound(spec, spec["first"]),
            "last": range_bound(spec, spec["last"]),
            "format": spec["format"]
            + (f", {spec['length']} digits" if spec.get("length") else ""),
            "covers": spec["last"] - spec["first"] + 1,
            "listed": n,
        }
        for spec, n in zip(specs, listed, strict=True)
    ]


# -- one device ------------------------------------------------------------------------------


async def device(request):
    srv, model, ctx = await _model(request)
    sn = check_name(request.match_info["sn"], "sn")
    row = await models.sn_row(srv, model, sn)
    client = await srv.store.client(row.client_rid) if row and row.client_rid else None
    status = srv.status(client.state, client.enabled_at) if client else ""
    told = await srv.store.device_status(model.id, sn)
    reports = [(k, told[k]) for k in _REPORTED if told and told[k] not in (None, "")]
    log_rows = await srv.store.activation_log(model.id, sn)
    groups = None if model.shared else await srv.store.groups_of(model.id, "sn", sn)
    done = one(query(request), "done")
    ctx.update(
        sn=sn,
        extra="" if model.shared or row is None else row.extra,
        status=status,
        client_state=client.state if client else "",
        reports=reports,
        seen=(when(told["last_seen"]), told["address"]) if told and told["last_seen"] else None,
        reported=when(told["reported"]) if told and told["reported"] else None,
        log=[(when(ts), conn, what) for ts, conn, what in reversed(log_rows)],
        groups=groups,
        actions=_actions(client),
        done=ACTIONS.get(done) if done else None,
    )
    return _render("device.html", request, ctx)


def _actions(client):
    if client is None:
        return [("enable", ACTIONS["enable"])]
    if client.state == "disabled":
        return [("reenable", ACTIONS["reenable"])]  # the API's enable=true: a new CIK
    return [(a, ACTIONS[a]) for a in ("regenerate", "disable")]


def _action(request):
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise ApiError(404, "no such action")
    return action


async def confirm(request):
    srv, model, ctx = await _model(request)
    action = _action(request)
    sn = check_name(request.match_info["sn"], "sn")
    await models.sn_row(srv, model, sn)
    ctx.update(sn=sn, action=action, label=ACTIONS[action], explain=_EXPLAIN[action])
    return _render("confirm.html", request, ctx)


async def act(request):
    """POST .../sn/<sn>/<action>: models.set_sn, as POST <model>/<sn> does for the API."""
    srv, model, ctx = await _model(request)
    action = _action(request)
    sn = check_name(request.match_info["sn"], "sn")
    if action == "enable":
        await models.set_sn(srv, model, sn, "enable", owner=model.caller.rid)
    else:
        await models.set_sn(srv, model, sn, "disable" if action == "disable" else "enable")
    return _redirect(f"{ctx['base']}/sn/{quote_part(sn)}?done={action}")


# -- content ---------------------------------------------------------------------------------


def meta_fields(meta):
    try:
        return dict(parse_qsl(meta or "", keep_blank_values=True))
    except ValueError:
        return {}


async def content_page(request):
    srv, model, ctx = await _model(request, shared_ok=False)
    items = []
    rolls = await rollouts.model_rollouts(srv, model.id)
    for item in await srv.store.content_list(model.id):
        row = await srv.store.content(model.id, item.cid)
        fields = meta_fields(row["meta"])
        roll = rolls.get(item.cid)
        items.append({**row, "sha256": fields.get("sha256", ""),
                      "version": fields.get("version", ""),
                      "roll": roll["state"] if roll else ""})  # fmt: skip
    done = one(query(request), "done")
    ctx.update(items=items, done=done if done in ("uploaded", "deleted") else None,
               max_content=srv.max_content)  # fmt: skip
    return _render("content.html", request, ctx)


async def upload(request):
    """XHR POST of the file as the body; id, version and protected in the query. The sha256
    is computed here while the bytes stream to disk and goes into the meta beside the
    version (the integrity convention the agent checks); then content.create and
    content.attach, the API's create and upload."""
    srv, model, ctx = await _model(request, shared_ok=False)
    q = query(request)
    cid = check_name(one(q, "id"), "content id")
    version = one(q, "version") or ""
    if version and not _VERSION.fullmatch(version):
        # the agent reads meta values as they are, without percent-decoding (fleet/signing.py)
        raise ApiError(400, "a version is letters, digits, '.', '_', '~' or '-' (64 at most)")
    ctype = content.check_ctype(request.headers.get("Content-Type", "application/octet-stream"))
    if await srv.store.content(model.id, cid) is not None:
        raise ApiError(409, "content id already exists: delete it first or pick another id")
    if one(q, "hold") == "true":  # before the id exists: no device ever lists it
        await rollouts.hold(srv, model, cid)
    digest = hashlib.sha256()
    name, size = await content.receive(request, srv, model, cid, digest)
    fields = [("sha256", digest.hexdigest())] + ([("version", version)] if version else [])
    try:
        await content.create(srv, model, cid, urlencode(fields), one(q, "protected") == "true")
    except ApiError:
        srv.blobs.remove(name)
        if one(q, "hold") == "true":
            await rollstore.delete(srv.store, model.id, cid)
        raise
    await content.attach(srv, model, cid, name, ctype, size)
    body = {"id": cid, "size": size, "sha256": digest.hexdigest(), "version": version,
            "next": f"{ctx['base']}/content/?done=uploaded"}  # fmt: skip
    return web.Response(text=json.dumps(body), content_type="application/json")


async def _content_row(srv, model, request):
    cid = check_name(request.match_info["cid"], "content id")
    row = await srv.store.content(model.id, cid)
    if row is None:
        raise ApiError(404, "no such content")
    return row


async def delete_confirm(request):
    srv, model, ctx = await _model(request, shared_ok=False)
    row = await _content_row(srv, model, request)
    ctx.update(cid=row["cid"])
    return _render("delete.html", request, ctx)


async def delete(request):
    srv, model, ctx = await _model(request, shared_ok=False)
    await content.remove(srv, model, request.match_info["cid"])
    return _redirect(f"{ctx['base']}/content/?done=deleted")


# -- rollout ---------------------------------------------------------------------------------


async def rollout(request):
    """Per firmware: devices by running version, and how the rollout of this one goes, from
    what the devices last reported."""
    srv, model, ctx = await _model(request, shared_ok=False)
    row = await _content_row(srv, model, request)
    target = meta_fields(row["meta"]).get("version") or str(row["updated"])
    told = await srv.store.status_counts(model.id)
    versions = {v or _UNREPORTED: n for v, n in told["versions"]}
    states = dict(told["states"])
    counts = {
        "runs": versions.get(target, 0),
        "downloading": dict(told["downloading"]).get(target, 0),
        "applied": states.get("applied", 0),
        "failed": told["failed"],
        "rolledback": told["rolled_back"],
    }
    counts["waiting"] = max(0, told["heard"] - sum(counts.values()))
    total = told["heard"]
    # reported versions by count, then the serial numbers that never said (spares included)
    by_version = [kv for kv in versions.items() if kv[0] != _UNREPORTED]
    if versions.get(_UNREPORTED):
        by_version.append((_UNREPORTED, versions[_UNREPORTED]))
    ctx.update(
        cid=row["cid"],
        target=target,
        total=total,
        counts=counts,
        versions_svg=chart.bars(
            [(v, n, v == target) for v, n in by_version], "Devices by running version"
        ),
        stages_svg=chart.bars(
            [(chart.STAGES[k], counts[k], k == "runs") for k in chart.STAGES],
            f"Rollout of {target}",
        ),
        refresh=one(query(request), "refresh") != "off",
        staged=await _staged(srv, model, row["cid"]),
        done=_ROLL_DONE.get(one(query(request), "done") or ""),
        defaults=rollpolicy_defaults(),
    )
    return _render("rollout.html", request, ctx)


_ROLL_ACTIONS = {
    "pause": ("Pause", "offers the content to nobody new: devices that already started "
              "downloading it finish, the others wait."),
    "resume": ("Resume", "goes on with the current wave (its soak time starts again now)."),
    "abort": ("Abort", "withdraws the content from every device: no device is offered it any "
              "more, whatever its wave. Devices that installed it keep it."),
}  # fmt: skip
_ROLL_DONE = {"start": "Rollout started.", "pause": "Rollout paused.",
              "resume": "Rollout resumed.", "abort": "Rollout aborted."}  # fmt: skip


def rollpolicy_defaults():
    return {"waves": "1,10,50,100", "min_devices": 1, "max_failures": 20, "success": 100,
            "soak": "0"}  # fmt: skip


async def _staged(srv, model, cid):
    """The staged rollout of `cid` (rollouts.status), or None for a content offered to all."""
    row = await rollstore.get(srv.store, model.id, cid)
    if row is None:
        return None
    st = await rollouts.status(srv, model.id, cid, row)
    st["actions"] = [a for a in _ROLL_ACTIONS if a in _allowed(st["state"])]
    return st


def _allowed(state):
    return {"running": ("pause", "abort"), "paused": ("resume", "abort")}.get(state, ())


def _roll_action(request):
    action = request.match_info["action"]
    if action not in _ROLL_ACTIONS and action != "start":
        raise ApiError(404, "no such action")
    return action


async def rollout_confirm(request):
    srv, model, ctx = await _model(request, shared_ok=False)
    row = await _content_row(srv, model, request)
    action = _roll_action(request)
    if action == "start":
        raise ApiError(405, "start is a form on the rollout page")
    label, explain = _ROLL_ACTIONS[action]
    ctx.update(cid=row["cid"], action=action, label=label, explain=explain)
    return _render("rollout_confirm.html", request, ctx)


async def rollout_act(request):
    """POST .../rollout/<cid>/<action>: what the extension API's rollout procedures do."""
    srv, model, ctx = await _model(request, shared_ok=False)
    row = await _content_row(srv, model, request)
    action = _roll_action(request)
    form = request.get("form") or {}
    if action == "start":
        body = {k: one(form, k) for k in ("waves", "group", "min_devices", "max_failures",
                                           "success", "soak") if one(form, k)}  # fmt: skip
        await rollouts.start(srv, model, row["cid"], body)
    else:
        await rollouts.act(srv, model, row["cid"], action, {})
    return _redirect(f"{ctx['base']}/rollout/{quote_part(row['cid'])}?done={action}")


_M = "/m/{owner}/{model}"
ROUTES = [
    ("GET", "/login", login_page, "login"),
    ("POST", "/login", login, "login_post"),
    ("POST", "/logout", logout, "logout"),
    ("GET", "/", home, "home"),
    ("GET", _M + "/", sns, "sns"),
    ("GET", _M + "/sn/{sn}", device, "device"),
    ("GET", _M + "/sn/{sn}/{action}", confirm, "confirm"),
    ("POST", _M + "/sn/{sn}/{action}", act, "act"),
    ("GET", _M + "/content/", content_page, "content"),
    ("POST", _M + "/content/", upload, "upload"),
    ("GET", _M + "/content/{cid}/delete", delete_confirm, "delete_confirm"),
    ("POST", _M + "/content/{cid}/delete", delete, "delete"),
    ("GET", _M + "/rollout/{cid}", rollout, "rollout"),
    ("GET", _M + "/rollout/{cid}/{action}", rollout_confirm, "rollout_confirm"),
    ("POST", _M + "/rollout/{cid}/{action}", rollout_act, "rollout_act"),
]
