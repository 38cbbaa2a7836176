"""Helpers for the dashboard's tests (test_ui_*.py); no tests here.

csrf(html)                    the CSRF token of the first form in a page
UiClient(server)              requests.Session on the dashboard, no redirects followed
login(server, credential)     a UiClient holding a session of the vendor behind `credential`
chromium()                    the path of Debian's chromium; fails the test if missing
"""

import os
import re
import shutil

import pytest
import requests

_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def csrf(html):
    m = _CSRF.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1)


class UiClient(requests.Session):
    def __init__(self, server):
        super().__init__()
        self.base = server.url
        self.token = None

    def request(self, method, url, *a, **kw):
        if url.startswith("/"):
            url = self.base + url
        kw.setdefault("timeout", 30)
        kw["allow_redirects"] = False  # Session.get() would set True: see each answer
        return super().request(method, url, *a, **kw)

    def post_form(self, url, data=None, token=None):
        """POST a form with this session's CSRF token (or `token`)."""
        data = dict(data or {})
        data.setdefault("csrf", self.token if token is None else token)
        return self.post(url, data=data)


def login(server, credential):
    ui = UiClient(server)
    r = ui.get("/ui/login")
    assert r.status_code == 200, r.text
    r = ui.post("/ui/login", data={"csrf": csrf(r.text), "credential": credential})
    assert r.status_code == 303 and r.headers["Location"] == "/ui/", (r.status_code, r.text)
    r = ui.get("/ui/")
    assert r.status_code == 200, r.text
    ui.token = csrf(r.text)
    return ui


def chromium():
    """Debian's chromium (Playwright's own browser build cannot be downloaded here; .ci/run
    installs the package). Missing is a failure, not a skip: the browser tests are core."""
    path = os.environ.get("EXOPROV_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.fail(
            "chromium is not installed: the dashboard's browser tests drive Debian's chromium "
            "(apt-get install chromium, as .ci/run does) through Playwright"
        )
    return path
