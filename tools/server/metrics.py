"""`/metrics` in the Prometheus text format (prometheus-client), fed by the access logger.

Requests are counted by procedure: the spec's procedure a route stands for (PROCEDURES), never
the raw path, so that the label set stays bounded whatever clients send. Every series carries
`pid`: with `--workers N` each process keeps its own counters and a scrape is answered by
whichever process accepted it, so sum over `pid` in queries (a process that restarts starts
from zero, which rate() handles). Each application gets its own registry.

Access: with a token (`--metrics-token`, or EXOPROV_METRICS_TOKEN) a scrape must send
`Authorization: Bearer <token>`; without one, only loopback clients may read /metrics (the
caller's address as peer() resolves it behind a trusted proxy).

The rollout gauges (exoprov_rollout_*) are read from the database at each scrape, so every
process answers the same values for them: they carry no `pid` (do not sum them over pids).
"""

import hmac
import ipaddress
import os

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .state import SERVER, peer
from .util import ApiError

_P = "/provision"
_M = _P + "/manage"

# (method, route) -> the name of the Provision API procedure it stands for.
PROCEDURES = {
    ("POST", _P + "/activate"): "activate",
    ("GET", _P + "/download"): "download",  # list / info / content: see procedure()
    ("HEAD", _P + "/download"): "download",
    ("GET", "/ip"): "ip",
    ("GET", _M + "/content/{model}/"): "content_list",
    ("POST", _M + "/content/{model}/"): "content_create_delete",
    ("GET", _M + "/content/{model}/{id}"): "content_get",
    ("POST", _M + "/content/{model}/{id}"): "content_upload",
    ("DELETE", _M + "/content/{model}/{id}"): "content_delete",
    ("GET", _M + "/group/{model}/"): "group_list",
    ("POST", _M + "/group/{model}/"): "group_create_delete",
    ("GET", _M + "/group/{model}/{id}"): "group_get",
    ("DELETE", _M + "/group/{model}/{id}"): "group_delete",
    ("GET", _M + "/group/{model}/{id}/"): "group_members_list",
    ("POST", _M + "/group/{model}/{id}/"): "group_members_update",
    ("DELETE", _M + "/group/{model}/{id}/"): "group_members_delete",
    ("GET", _M + "/model/"): "model_list",
    ("POST", _M + "/model/"): "model_create_delete",
    ("DELETE", _M + "/model/"): "model_delete",  # the body names the model
    ("GET", _M + "/model/{model}"): "model_info",
    ("PUT", _M + "/model/{model}"): "model_update",
    ("DELETE", _M + "/model/{model}"): "model_delete",
    ("GET", _M + "/model/{model}/"): "sn_list",
    ("POST", _M + "/model/{model}/"): "sn_add_delete",
    ("DELETE", _M + "/model/{model}/"): "sn_delete_many",
    ("GET", _M + "/model/{model}/{sn}"): "sn_get",
    ("POST", _M + "/model/{model}/{sn}"): "sn_enable_disable",
    ("DELETE", _M + "/model/{model}/{sn}"): "sn_delete",
    ("GET", _M + "/share/{model}/"): "share_list",
    ("POST", _M + "/share/{model}/"): "share_add_delete",
    ("GET", _M + "/share/{model}/{vendor}"): "share_get",
    ("DELETE", _M + "/share/{model}/{vendor}"): "share_delete",
    ("GET", _P + "/register"): "vendor_register_get",
    ("POST", _P + "/register"): "vendor_register",
    ("GET", _P + "/admin/auth/"): "token_list",
    ("POST", _P + "/admin/auth/"): "token_create",
    ("GET", _P + "/admin/auth/{id}"): "token_get",
    ("DELETE", _P + "/admin/auth/{id}"): "token_delete",
    ("POST", "/onep:v1/stack/alias"): "alias_write",
    ("GET", "/onep:v1/stack/alias"): "alias_read",
    ("POST", "/jsonp/register"): "jsonp_register",
    ("GET", "/jsonp"): "jsonp",
    ("GET", "/exoprov/v1/model/{model}/status"): "fleet_status",
    ("GET", "/exoprov/v1/model/{model}/rollout"): "fleet_rollout",
    ("POST", "/exoprov/v1/vendor/cik"): "vendor_rotate_cik",
    ("GET", "/metrics"): "metrics",
}
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_REFUSED = ("400", "403", "404", "409")

METRICS = web.AppKey("metrics", object)
LAST = None  # the newest application's Metrics: for requests that never reached an app


PROCEDURE = "exoprov.procedure"  # request[PROCEDURE]: set by a handler that knows its name


def procedure(request):
    """The procedure name of a request: bounded, never built from what the client sent."""
    known = request.get(PROCEDURE)
    if known is not None:
        return known
    try:
        resource = request.match_info.route.resource
    except (AttributeError, AssertionError, RuntimeError):
        resource = None  # a request that never reached the router (e.g. unparsable)
    if resource is None:
        return "unknown"  # no route matched (404/405), or a request that never parsed
    path = resource.canonical
    if path.startswith("/ui/") or path == "/ui":
        return "ui"  # the dashboard: one name for its pages
    name = PROCEDURES.get((request.method, path))
    if name is None:
        return "unknown"
    if name == "download":
        q = request.query
        if "id" not in q:
            name = "device_content_list"
        elif q.get("info") == "true":
            name = "device_content_info"
        else:
            name = "device_download"
    return name


class Metrics:
    def __init__(self, token=None):
        self.token = token
        self.pid = str(os.getpid())
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        self.requests = Counter(
            "exoprov_requests",
            "Requests answered, by procedure and status",
            ["pid", "procedure", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "exoprov_request_duration_seconds",
            "Time from the request to the end of its answer, by procedure",
            ["pid", "procedure"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.bytes = Counter(
            "exoprov_response_bytes",
            "Bytes of answers sent (status line, headers and body), by procedure",
            ["pid", "procedure"],
            registry=r,
        )
        self.activations = Counter(
            "exoprov_activations", "Activations that handed out a CIK", ["pid"], registry=r
        )
        self.refused = Counter(
            "exoprov_activations_refused",
            "Activations refused, by status (400, 403, 404, 409)",
            ["pid", "status"],
            registry=r,
        )
        self.limited = Counter(
            "exoprov_rate_limited",
            "Activations answered 429 by the failed-activation limit",
            ["pid"],
            registry=r,
        )

        self.roll_state = Gauge(
            "exoprov_rollout_state",
            "1 for the state each staged rollout is in (held, running, paused, aborted, done)",
            ["model", "content", "state"],
            registry=r,
        )
        self.roll_wave = Gauge(
            "exoprov_rollout_wave_percent",
            "The percentage of the devices the current wave of each rollout offers it to",
            ["model", "content"],
            registry=r,
        )
        self.roll_devices = Gauge(
            "exoprov_rollout_devices",
            "Devices of each rollout by their state in it (started, active, failed, "
            "rolledback, refused), and took: those that downloaded it",
            ["model", "content", "state"],
            registry=r,
        )
        for c in (self.activations, self.limited):
            c.labels(self.pid)  # present (at 0) from the start
        self._kids = {}  # (procedure, status) -> label children; both sets are bounded

    def observe(self, request, response, seconds):
        """One answered request (the access logger calls this)."""
        name = procedure(request)
        status = str(response.status)
        kids = self._kids.get((name, status))
        if kids is None:  # labels() is the costly part: its children kept per (name, status)
            kids = self._kids[(name, status)] = (
                self.requests.labels(self.pid, name, status),
                self.latency.labels(self.pid, name),
                self.bytes.labels(self.pid, name),
            )
        kids[0].inc()
        kids[1].observe(max(seconds, 0.0))
        sent = getattr(response, "body_length", 0) or 0
        if sent:
            kids[2].inc(sent)
        if name == "activate":
            if status == "200":
                self.activations.labels(self.pid).inc()
            elif status == "429":
                self.limited.labels(self.pid).inc()
            elif status in _REFUSED:
                self.refused.labels(self.pid, status).inc()
        return name

    def allowed(self, request):
        if self.token:
            # headers arrive as bytes decoded with surrogateescape: any byte, ASCII or not,
            # must compare as a wrong token, never fail
            got = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            want = ("Bearer " + self.token).encode("utf-8", "surrogateescape")
            return hmac.compare_digest(got, want)
        try:
            return ipaddress.ip_address(peer(request)[0]).is_loopback
        except ValueError:
            return False


async def handler(request):
    m = request.app[METRICS]
    if not m.allowed(request):
        if m.token:
            raise ApiError(401, "metrics token required", {"WWW-Authenticate": "Bearer"})
        raise ApiError(403, "metrics are served to loopback only without --metrics-token")
    await rollout_gauges(m, request.app[SERVER])
    return web.Response(
        body=generate_latest(m.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def rollout_gauges(m, srv):
    """Set the rollout gauges from the database (rollstore), the old series dropped."""
    from . import rollpolicy, rollstore

    rows = await rollstore.every(srv.store)
    names = {}
    for gauge in (m.roll_state, m.roll_wave, m.roll_devices):
        gauge.clear()
    for model_id, row in rows:
        if model_id not in names:
            found = await rollstore.one(
                srv.store, "SELECT name FROM models WHERE id = ?", model_id
            )
            names[model_id] = found[0] if found else str(model_id)
        name, cid = names[model_id], row["cid"]
        m.roll_state.labels(name, cid, row["state"]).set(1)
        if row["waves"]:
            waves = rollpolicy.parse_waves(row["waves"])
            pct = 100 if row["state"] == "done" else waves[min(row["wave"], len(waves) - 1)]
            m.roll_wave.labels(name, cid).set(pct)
        for state, n in (await rollstore.counts(srv.store, model_id, cid)).items():
            m.roll_devices.labels(name, cid, state).set(n)
