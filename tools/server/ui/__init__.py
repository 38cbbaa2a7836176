"""The operator's dashboard at /ui/: server-rendered pages (Jinja2) in the API's process.

Every page needs a session (see session.py) and shows only what the session's vendor may see
through the API: models are resolved with auth.resolve_model, serial numbers with
models.sn_row, and every action calls the function the API procedure calls (models.set_sn,
content.create/attach/remove). No asset comes from elsewhere: CSS and the one script (the
upload's progress bar) are served from ui/static, charts are SVG drawn on the server.
"""

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ..state import SERVER
from . import pages

HERE = Path(__file__).resolve().parent


def make_app(server):
    """The sub-application mounted at /ui/ by app.make_app."""
    app = web.Application(middlewares=[pages.guard])
    app[SERVER] = server
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = pages.when
    env.filters["q"] = pages.quote_part
    env.filters["size"] = pages.size
    for method, path, handler, name in pages.ROUTES:
        app.router.add_route(method, path, handler, name=name)
    app.router.add_static("/static/", str(HERE / "static"), name="static")
    return app
