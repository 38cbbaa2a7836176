"""Dashboard sessions: a random cookie, of which the store keeps only a hash, the vendor rid,
the expiry and the hash of the CIK or token used to log in (the session ends with that
credential); CSRF tokens derived from it.

The cookie is HttpOnly, SameSite=Strict, scoped to /ui/, and Secure when the request came
over TLS (directly or through a proxy that says X-Forwarded-Proto: https). Every POST carries
a token (form field `csrf` or header X-CSRF-Token) that only a page of this session knows:
HMAC-SHA256 keyed by the session id, so nothing beyond the hash needs storing.
"""

import hashlib
import hmac
import secrets

from ..auth import Vendor
from ..db import secret_hash

COOKIE = "exoprov_session"
LOGIN_COOKIE = "exoprov_login"  # before login: the login form's own CSRF token
LIFETIME = 8 * 3600
PATH = "/ui/"
_ID_MAX = 100


def token(key, purpose):
    return hmac.new(key.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def same(a, b):
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def secure(request):
    return request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"


def set_cookie(request, response, name, value, max_age):
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        httponly=True,
        samesite="Strict",
        secure=secure(request),
    )


def clear_cookie(response, name):
    response.del_cookie(name, path=PATH)


def cookie(request, name):
    value = request.cookies.get(name)
    if not value or len(value) > _ID_MAX:
        return None
    return value


async def start(srv, request, response, vendor, credential):
    """A new session for `vendor` (a fresh id: nothing from before the login carries over),
    bound to the CIK or token it logged in with: once that token is deleted or that CIK
    rotated, the store no longer finds the session."""
    sid = secrets.token_urlsafe(32)
    now = srv.now()
    await srv.store.add_ui_session(
        secret_hash(sid), vendor.rid, secret_hash(credential), now + LIFETIME, now
    )
    set_cookie(request, response, COOKIE, sid, LIFETIME)
    clear_cookie(response, LOGIN_COOKIE)


async def current(srv, request):
    """(Vendor, csrf token) of the request's session, or None."""
    sid = cookie(request, COOKIE)
    if sid is None:
        return None
    rid = await srv.store.ui_session(secret_hash(sid), srv.now())
    name = await srv.store.vendor_name_of(rid) if rid else None
    if name is None:
        return None
    return Vendor(rid, name), token(sid, "csrf")


async def end(srv, request, response):
    sid = cookie(request, COOKIE)
    if sid is not None:
        await srv.store.delete_ui_session(secret_hash(sid))
    clear_cookie(response, COOKIE)
