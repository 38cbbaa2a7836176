"""The aiohttp application: routes, error middleware, access log without secrets."""

import asyncio
import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from . import auth, content, device, fleetstatus, groups, metrics, models, onep, rollouts, vendor
from .auth import MODEL, SHARED, VENDOR, VENDOR_CIK
from .guard import BodyTimeout
from .logs import cred_hash
from .metrics import METRICS
from .state import SERVER, log
from .util import ApiError

_P = "/provision"
_M = _P + "/manage"

# (method, path, handler, what the vendor calling it may reach: auth.VENDOR, auth.MODEL,
# auth.SHARED, or None for device and public procedures; checked by auth.guard)
ROUTES = [
    ("POST", _P + "/activate", device.activate, None),
    ("GET", _P + "/download", device.download, None),
    # HEAD: headers only (deploy/nginx asks this way)
    ("HEAD", _P + "/download", device.download, None),
    ("GET", "/ip", device.ip, None),
    ("GET", _M + "/content/{model}/", content.list_or_sn, MODEL),
    ("POST", _M + "/content/{model}/", content.create_or_delete, MODEL),
    ("GET", _M + "/content/{model}/{id}", content.get_item, MODEL),
    ("POST", _M + "/content/{model}/{id}", content.upload, MODEL),
    ("DELETE", _M + "/content/{model}/{id}", content.delete_item, MODEL),
    ("GET", _M + "/group/{model}/", groups.list_groups, MODEL),
    ("POST", _M + "/group/{model}/", groups.create_or_delete, MODEL),
    ("GET", _M + "/group/{model}/{id}", groups.group_info, MODEL),
    ("DELETE", _M + "/group/{model}/{id}", groups.delete_group, MODEL),
    ("GET", _M + "/group/{model}/{id}/", groups.list_members, MODEL),
    ("POST", _M + "/group/{model}/{id}/", groups.post_members, MODEL),
    ("DELETE", _M + "/group/{model}/{id}/", groups.delete_members, MODEL),
    ("GET", _M + "/model/", models.list_models, VENDOR),
    ("POST", _M + "/model/", models.create_or_delete_model, VENDOR),
    # DELETE with a form body naming the model: what clients of the time sent
    ("DELETE", _M + "/model/", models.delete_model_form, VENDOR),
    ("GET", _M + "/model/{model}", models.model_info, MODEL),
    ("PUT", _M + "/model/{model}", models.update_model, MODEL),
    ("DELETE", _M + "/model/{model}", models.delete_model, MODEL),
    ("GET", _M + "/model/{model}/", models.list_sns, SHARED),
    ("POST", _M + "/model/{model}/", models.add_sns, MODEL),
    ("DELETE", _M + "/model/{model}/", models.delete_sns, MODEL),
    ("GET", _M + "/model/{model}/{sn}", models.sn_get, SHARED),
    ("POST", _M + "/model/{model}/{sn}", models.sn_post, SHARED),
    ("DELETE", _M + "/model/{model}/{sn}", models.sn_delete, MODEL),
    ("GET", _M + "/share/{model}/", vendor.list_shares, MODEL),
    ("POST", _M + "/share/{model}/", vendor.post_share, MODEL),
    ("GET", _M + "/share/{model}/{vendor}", vendor.get_share, MODEL),
    ("DELETE", _M + "/share/{model}/{vendor}", vendor.delete_share, MODEL),
    ("GET", _P + "/register", vendor.get_register, None),
    ("POST", _P + "/register", vendor.post_register, None),
    ("GET", _P + "/admin/auth/", vendor.list_tokens, VENDOR_CIK),
    ("POST", _P + "/admin/auth/", vendor.post_token, VENDOR_CIK),
    ("GET", _P + "/admin/auth/{id}", vendor.get_token, VENDOR_CIK),
    ("DELETE", _P + "/admin/auth/{id}", vendor.delete_token, VENDOR_CIK),
    ("POST", "/onep:v1/stack/alias", onep.write, None),
    ("GET", "/onep:v1/stack/alias", onep.read, None),
    ("POST", "/jsonp/register", onep.jsonp_register, None),
    ("GET", "/jsonp", onep.jsonp, None),
    # exoprov extensions (README): fleet status for `exoprov fleet sn status`, and metrics
    ("GET", "/exoprov/v1/model/{model}/status", fleetstatus.status, SHARED),
    ("GET", "/exoprov/v1/model/{model}/rollout", fleetstatus.rollout, SHARED),
    ("POST", "/exoprov/v1/vendor/cik", vendor.rotate_cik, VENDOR_CIK),
    # staged rollouts: the model's owner only
    ("GET", "/exoprov/v1/model/{model}/rollouts/", rollouts.list_handler, MODEL),
    ("GET", "/exoprov/v1/model/{model}/rollouts/{id}", rollouts.get_handler, MODEL),
    ("POST", "/exoprov/v1/model/{model}/rollouts/{id}/{action}", rollouts.post_handler, MODEL),
    ("GET", "/metrics", metrics.handler, None),
]


def _plain(status, reason, headers=None):
    resp = web.Response(
        status=status, text=reason + "\n", content_type="text/plain", charset="utf-8"
    )
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


@web.middleware
async def errors(request, handler):
    """Every refusal becomes a short text/plain answer; nothing reaches the client as a
    traceback. An unexpected exception is logged (with its traceback) and answered 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        resp = _plain(exc.status, exc.reason, exc.headers)
        if exc.close:
            resp.force_close()
        return resp
    except web.HTTPException as exc:  # the router's 404 and 405
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _plain(exc.status, exc.reason or "error", headers)
    except asyncio.CancelledError:
        raise
    except BodyTimeout:  # a body read outside util.read_chunk (the dashboard's forms)
        resp = _plain(408, "request body not complete in time")
        resp.force_close()
        return resp
    except (ConnectionError, HttpProcessingError) as exc:
        if isinstance(exc, HttpProcessingError) or _gone(request):
            # the client's doing (it left, or sent a malformed body): the access line says
            # it, a traceback would only fill the log
            resp = _plain(400, "request incomplete or malformed")
            resp.force_close()
            return resp
        log.exception("%s %s failed", request.method, request.path)
        resp = _plain(500, "internal error")
        resp.force_close()
        return resp
    except Exception:
        if _gone(request):
            raise
        log.exception("%s %s failed", request.method, request.path)
        resp = _plain(500, "internal error")
        resp.force_close()
        return resp


def _gone(request):
    return request.transport is None or request.transport.is_closing()


class AccessLogger(AbstractAccessLogger):
    """One line per request, which is also counted for /metrics. Text: address, method, path
    (never the query: it may carry a jsonp token), status, time. The record carries `fields`
    for --log-format json (logs.py): the procedure, body bytes and a hash of the credential."""

    def log(self, request, response, time):
        try:  # the API's own application, else the one it is mounted in (the dashboard)
            m = request.app.get(METRICS) or request.config_dict.get(METRICS)
        except (AttributeError, AssertionError):  # a request that never parsed: no app
            m = metrics.LAST
        name = m.observe(request, response, time) if m else metrics.procedure(request)
        if response.status == 206 and not self.logger.isEnabledFor(logging.DEBUG):
            return  # a download's Range parts: counted in /metrics, not a line each
        fields = {
            "procedure": name,
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "ms": round(time * 1000, 1),
            "bytes": response.body_length,
            "remote": request.remote,
            "cred": cred_hash(request.headers),
        }
        self.logger.info(
            "%s %s %s %d %.1fms",
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
            extra={"fields": fields},
        )


async def _server_header(_request, response):
    response.headers["Server"] = "exoprov"


def make_app(server, metrics_token=None):
    app = web.Application(middlewares=[errors], client_max_size=64 * 1024)
    app[SERVER] = server
    app[METRICS] = metrics.LAST = metrics.Metrics(metrics_token)
    app[fleetstatus.SEEN] = fleetstatus.Seen()
    app[device.GRANTS] = device.Grants()
    app[rollouts.TOOK] = rollouts.Took()
    app.cleanup_ctx.append(rollouts.ticker)  # the soak times passing
    app.on_response_prepare.append(_server_header)
    for method, path, handler, access in ROUTES:
        app.router.add_route(method, path, auth.guard(handler, access))
    from . import ui  # the dashboard: /ui/, same process, same store

    app.router.add_route("GET", "/ui", _to_ui)
    app.add_subapp("/ui", ui.make_app(server))
    return app


async def _to_ui(_request):
    return web.Response(status=308, headers={"Location": "/ui/"})
