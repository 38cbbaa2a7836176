"""Security of the dashboard (/ui/), over plain HTTP with requests (no browser).

No page or action without a session; one vendor's session never reads or changes another
vendor's model, device or content (the API's matrix: own, another's, shared); CSRF tokens
are required and bound to the session; a session ends at logout and at expiry; the session
cookie is HttpOnly, SameSite=Strict, Secure under TLS; no credential in any page.
"""

import re
import sqlite3
from urllib.parse import quote

import pytest
import requests
from agentkit import make_certs
from serverkit import activate, add_content, add_sn, enable, new_model
from uikit import UiClient, csrf, login


class World:
    """Vendor A (model with devices and content), vendor B (own model), A's model shared
    with B; API sessions for both."""

    def __init__(self, server):
        self.server = server
        self.a, self.b = server.add_vendor(), server.add_vendor()
        self.api_a = server.session(cik=self.a["cik"])
        self.api_b = server.session(cik=self.b["cik"])
        self.model = new_model(self.api_a)
        for sn in ("sn-on", "sn-new", "sn-off"):
            add_sn(self.api_a, self.model, sn)
        enable(self.api_a, self.model, "sn-on", self.a["rid"])
        r = activate(server, self.a["vendor"], self.model, "sn-on")
        assert r.status_code == 200
        self.device_cik = r.text
        enable(self.api_a, self.model, "sn-off", self.a["rid"])
        add_content(self.api_a, self.model, "fw-a", b"firmware of A", meta="sha256=00")
        self.model_b = new_model(self.api_b)
        add_sn(self.api_b, self.model_b, "b-1")
        r = self.api_a.post(
            f"/provision/manage/share/{self.model}/", data={"vendor": self.b["vendor"]}
        )
        assert r.status_code == 205
        r = self.api_a.post("/provision/admin/auth/", data={"id": "ui"})
        assert r.status_code == 200
        self.token_a = r.text

    def base(self, owner=None, model=None):
        return f"/ui/m/{quote(owner or self.a['vendor'])}/{quote(model or self.model)}"

    def pages(self):
        """Every page of vendor A's model, as A sees it."""
        b = self.base()
        return [
            "/ui/",
            b + "/",
            b + "/?status=activated&q=sn",
            b + "/sn/sn-on",
            b + "/sn/sn-on/regenerate",
            b + "/sn/sn-on/disable",
            b + "/sn/sn-new/enable",
            b + "/content/",
            b + "/content/fw-a/delete",
            b + "/rollout/fw-a",
        ]

    def actions(self):
        """Every action on A's model: (url, form, what the API must still say)."""
        b = self.base()
        return [
            (b + "/sn/sn-new/enable", {}),
            (b + "/sn/sn-on/regenerate", {}),
            (b + "/sn/sn-on/disable", {}),
            (b + "/content/fw-a/delete", {}),
        ]

    def status(self, sn):
        r = self.api_a.get(f"/provision/manage/model/{self.model}/{sn}")
        return r.text.split(",")[0] if r.status_code == 200 else r.status_code

    def unchanged(self):
        """A's data as the API sees it is what the World made."""
        assert self.status("sn-on") == "activated"
        assert self.status("sn-new") == ""  # listed, never enabled
        assert self.status("sn-off") == "notactivated"
        r = self.api_a.get(f"/provision/manage/content/{self.model}/")
        assert r.text.split() == ["fw-a"]
        with self.server.session(cik=self.device_cik) as dev:  # the device's CIK still works
            q = {"vendor": self.a["vendor"], "model": self.model}
            assert dev.get("/provision/download", params=q).status_code == 200


@pytest.fixture(scope="module")
def world(server):
    w = World(server)
    yield w
    w.api_a.close()
    w.api_b.close()


def test_no_page_without_a_session(server, world):
    anon = UiClient(server)
    for url in world.pages():
        r = anon.get(url)
        assert r.status_code == 303 and r.headers["Location"] == "/ui/login", url
        assert world.model not in r.text and "sn-on" not in r.text
    r = anon.get(world.base() + "/nosuchpage")
    assert r.status_code == 303
    # a forged cookie is no session either
    anon.cookies.set("exoprov_session", "forged-session-id", path="/ui/")
    assert anon.get("/ui/").status_code == 303


def test_no_action_without_a_session(server, world):
    anon = UiClient(server)
    anon.cookies.set("exoprov_session", "x" * 43, path="/ui/")
    for url, form in world.actions():
        r = anon.post(url, data=form)
        assert r.status_code == 401 and "log in first" in r.text, url
    r = anon.post(
        world.base() + "/content/?id=fw-x",
        data=b"data",
        headers={"X-CSRF-Token": "0" * 64, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 401
    world.unchanged()


def test_login_refuses_unknown_and_device_credentials(server, world):
    ui = UiClient(server)
    page = ui.get("/ui/login").text
    for cred in ("", "nope", "0" * 40, world.device_cik, "x" * 300):
        r = ui.post("/ui/login", data={"csrf": csrf(page), "credential": cred})
        assert r.status_code == 401 and "exoprov_session" not in r.headers.get("Set-Cookie", "")
        assert "Unknown vendor CIK or token" in r.text
    # the login form has its own CSRF token, bound to a cookie of this browser
    other = UiClient(server)
    other.get("/ui/login")
    r = other.post("/ui/login", data={"csrf": csrf(page), "credential": world.a["cik"]})
    assert r.status_code == 403
    r = UiClient(server).post("/ui/login", data={"credential": world.a["cik"]})
    assert r.status_code == 403


def test_login_with_a_vendor_token(server, world):
    ui = login(server, world.token_a)
    r = ui.get("/ui/")
    assert world.model in r.text and world.model_b not in r.text


def test_other_vendor_cannot_read_or_change(server, world):
    ui_b = login(server, world.b["cik"])
    own = world.base(world.b["vendor"], world.model_b)
    assert ui_b.get(own + "/").status_code == 200 and "b-1" in ui_b.get(own + "/").text
    a_name, b_name = world.a["vendor"], world.b["vendor"]
    # A's model under B's own name (the API without X-Exosite-Vendor): 403, another's model
    as_own = world.base(b_name)
    for path in ("/", "/sn/sn-on", "/sn/sn-on/regenerate", "/content/", "/rollout/fw-a",
                 "/content/fw-a/delete"):  # fmt: skip
        r = ui_b.get(as_own + path)
        assert r.status_code == 403, path
        assert "sn-off" not in r.text and "fw-a" not in r.text.replace(path, "")
    # A's model shared with B (X-Exosite-Vendor: A): serial numbers B enabled only, no content
    shared = world.base(a_name)
    r = ui_b.get(shared + "/")
    assert r.status_code == 200
    assert "sn-on" not in r.text and "sn-off" not in r.text and "sn-new" not in r.text
    assert ui_b.get(shared + "/sn/sn-on").status_code == 403
    assert ui_b.get(shared + "/sn/sn-off").status_code == 403
    assert ui_b.get(shared + "/content/").status_code == 403
    assert ui_b.get(shared + "/rollout/fw-a").status_code == 403
    # B's model is not shared with A: A sees it in neither namespace
    ui_a = login(server, world.a["cik"])
    assert ui_a.get(world.base(b_name, world.model_b) + "/").status_code == 403
    assert ui_a.get(world.base(a_name, world.model_b) + "/").status_code == 403
    # actions with B's own valid session and token
    for base in (as_own, shared):
        for path in ("/sn/sn-on/regenerate", "/sn/sn-on/disable", "/sn/sn-off/disable",
                     "/content/fw-a/delete"):  # fmt: skip
            r = ui_b.post_form(base + path)
            assert r.status_code == 403, base + path
    r = ui_b.post(
        as_own + "/content/?id=fw-b",
        data=b"x",
        headers={"X-CSRF-Token": ui_b.token, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 403
    world.unchanged()


def test_shared_vendor_acts_only_on_what_it_enabled(server, world):
    ui_b = login(server, world.b["cik"])
    shared = world.base(world.a["vendor"])
    add_sn(world.api_a, world.model, "sn-shared")
    r = ui_b.post_form(shared + "/sn/sn-shared/enable")
    assert r.status_code == 303  # enable=true with owner: as the API allows a share
    assert world.status("sn-shared") == "notactivated"
    r = ui_b.get(shared + "/")
    assert "sn-shared" in r.text and "sn-on" not in r.text
    assert ui_b.get(shared + "/sn/sn-shared").status_code == 200
    assert ui_b.post_form(shared + "/sn/sn-shared/disable").status_code == 303
    assert world.status("sn-shared") == "expired"
    world.unchanged()


def test_csrf_is_required_and_bound_to_the_session(server, world):
    ui_a = login(server, world.a["cik"])
    ui_a2 = login(server, world.a["cik"])  # the same vendor, another session
    ui_b = login(server, world.b["cik"])
    assert ui_a.token != ui_a2.token
    url = world.base() + "/sn/sn-on/regenerate"
    for token in ("", "0" * 64, "\u00e9" * 64, ui_a2.token, ui_b.token):
        r = ui_a.post_form(url, token=token)
        assert r.status_code == 403 and "CSRF" in r.text, token
    assert ui_a.post(url, data={}).status_code == 403
    assert ui_a.post(world.base() + "/content/fw-a/delete", data={}).status_code == 403
    r = ui_a.post(
        world.base() + "/content/?id=fw-x",
        data=b"x",
        headers={"X-CSRF-Token": ui_b.token, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 403
    assert ui_a.post("/ui/logout", data={}).status_code == 403
    world.unchanged()
    # the right token works (and the API sees the change)
    url = world.base() + "/sn/sn-off/regenerate"
    r = ui_a.post_form(url)
    assert r.status_code == 303 and r.headers["Location"].endswith("?done=regenerate")
    assert world.status("sn-off") == "notactivated"


def test_a_session_cookie_of_another_vendor_is_refused(server, world):
    ui_b = login(server, world.b["cik"])
    ui_a = login(server, world.a["cik"])
    # A's browser carrying B's cookie (stolen, or a shared machine): it is B's session,
    # which sees nothing of A's beyond the share
    thief = UiClient(server)
    thief.cookies.set("exoprov_session", ui_b.cookies["exoprov_session"], path="/ui/")
    assert thief.get(world.base(world.b["vendor"]) + "/sn/sn-on").status_code == 403
    assert thief.get(world.base() + "/content/").status_code == 403
    r = thief.post_form(world.base() + "/sn/sn-on/disable", token=ui_a.token)
    assert r.status_code == 403
    r = thief.post_form(world.base(world.b["vendor"]) + "/sn/sn-on/disable", token=ui_b.token)
    assert r.status_code == 403
    world.unchanged()


def test_logout_and_expiry_end_a_session(server, world):
    ui = login(server, world.a["cik"])
    cookie = ui.cookies["exoprov_session"]
    r = ui.post_form("/ui/logout")
    assert r.status_code == 303 and r.headers["Location"] == "/ui/login"
    replay = UiClient(server)
    replay.cookies.set("exoprov_session", cookie, path="/ui/")
    assert replay.get("/ui/").status_code == 303
    # expiry: the server keeps the session's end; a session past it is gone
    ui = login(server, world.a["cik"])
    db = sqlite3.connect(server.db)
    try:
        with db:
            db.execute("UPDATE ui_sessions SET expire = expire - 8 * 3600")
        rows = db.execute("SELECT * FROM ui_sessions").fetchall()
    finally:
        db.close()
    assert ui.get("/ui/").status_code == 303
    # the table holds a hash per session, the vendor, the expiry and the hash of the
    # credential it logged in with: no cookie, no CIK
    flat = repr(rows)
    assert cookie not in flat and world.a["cik"] not in flat and world.token_a not in flat
    assert all(len(r) == 4 and re.fullmatch(r"[0-9a-f]{64}", r[0]) for r in rows)
    assert all(re.fullmatch(r"[0-9a-f]{64}", r[3]) for r in rows)


def test_cookie_attributes_plain_http(server, world):
    ui = UiClient(server)
    r = ui.get("/ui/login")
    r = ui.post("/ui/login", data={"csrf": csrf(r.text), "credential": world.a["cik"]})
    attrs = _cookie_attrs(r, "exoprov_session")
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/ui/" in attrs
    assert "secure" not in attrs  # plain HTTP: a Secure cookie would never come back
    r = ui.get("/ui/")
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"


def test_cookie_secure_under_tls(make_server, tmp_path):
    certs = make_certs(tmp_path)
    srv = make_server("--tls-cert", certs["cert"], "--tls-key", certs["key"])
    assert srv.url.startswith("https://")
    vendor = srv.add_vendor()
    s = requests.Session()
    kw = {"verify": certs["ca"], "timeout": 30, "allow_redirects": False}
    r = s.get(srv.url + "/ui/login", **kw)
    assert "secure" in _cookie_attrs(r, "exoprov_login")
    r = s.post(
        srv.url + "/ui/login", data={"csrf": csrf(r.text), "credential": vendor["cik"]}, **kw
    )
    assert r.status_code == 303
    attrs = _cookie_attrs(r, "exoprov_session")
    assert "secure" in attrs and "httponly" in attrs and "samesite=strict" in attrs
    assert s.get(srv.url + "/ui/", **kw).status_code == 200


def _cookie_attrs(r, name):
    """The attributes (lower case) of the Set-Cookie header that sets `name`."""
    for header in r.raw.headers.getlist("Set-Cookie"):
        if header.startswith(name + "="):
            return [a.strip().lower() for a in header.split(";")[1:]]
    raise AssertionError(f"no Set-Cookie for {name}")


def test_no_credential_in_any_page(server, world):
    add_sn(world.api_a, world.model, "sn-cik")
    enable(world.api_a, world.model, "sn-cik", world.a["rid"])  # a CIK awaits activation
    db = sqlite3.connect(server.db)
    try:
        secrets_ = [row[0] for row in db.execute("SELECT secret FROM clients WHERE secret != ''")]
    finally:
        db.close()
    secrets_ += [world.a["cik"], world.b["cik"], world.token_a, world.device_cik]
    pages = {}
    for cred in (world.a["cik"], world.token_a):
        ui = login(server, cred)
        for url in world.pages() + [world.base() + "/sn/sn-cik"]:
            r = ui.get(url)
            assert r.status_code == 200, url
            pages[url] = r.text
        r = ui.get("/ui/static/ui.css")
        assert r.status_code == 200
    login_page = UiClient(server).get("/ui/login").text
    for url, html in [*pages.items(), ("/ui/login", login_page)]:
        for secret in secrets_:
            assert secret not in html, url
    # the pages show what they should instead
    assert 'id="status">activated<' in pages[world.base() + "/sn/sn-on"]
    assert 'id="status">notactivated<' in pages[world.base() + "/sn/sn-cik"]
    world.unchanged()


def test_names_and_reports_are_escaped(server):
    vendor = server.add_vendor()
    api = server.session(cik=vendor["cik"])
    model = new_model(api)
    evil = "<img src=x onerror=alert(1)>"
    add_sn(api, model, evil)
    enable(api, model, evil, vendor["rid"])
    cik = activate(server, vendor["vendor"], model, evil).text
    with server.session(cik=cik) as dev:
        report = {"version": "<svg onload=alert(2)>", "error": "</td><script>x()</script>"}
        r = dev.post("/onep:v1/stack/alias", data=report)
        assert r.status_code == 204
    add_content(api, model, "fw", b"x", meta="sha256=00&version=<b>1</b>")
    ui = login(server, vendor["cik"])
    base = f"/ui/m/{vendor['vendor']}/{model}"
    pages = [base + "/", base + "/sn/" + quote(evil, safe=""), base + "/content/",
             base + "/rollout/fw"]  # fmt: skip
    for url in pages:
        page = ui.get(url).text
        assert "<img src=x" not in page and "<svg onload" not in page, url
        assert "<script>x()" not in page and "<b>1</b>" not in page, url
    assert "&lt;img src=x onerror=alert(1)&gt;" in ui.get(base + "/").text
    assert "&lt;svg onload=alert(2)&gt;" in ui.get(base + "/rollout/fw").text
    api.close()
