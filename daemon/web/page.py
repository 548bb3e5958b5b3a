"""Serves the listening room page: `/` and `/static/NAME` from the files shipped in this package.

Kept apart from the API code so the page is one module to read: `/` is in the API's route table
(daemon/http/routes.py: the token's cookie exchange happens there) with `index` as its handler, and
the HTTP app calls `add_routes` for the static files.
The page is plain files (no build step, nothing fetched from the internet): the browser asks the
API for everything else, with the same routes and token as any other client.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: The page's files: not in the OpenAPI document (code that lists the API's routes skips them).
PAGE_PATHS = ("/static/{name}",)
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
          ".png": "image/png", ".ico": "image/x-icon", ".json": "application/json"}
#: Nothing from elsewhere: scripts, styles, media and connections stay on the daemon's own origin.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           # Revalidated on every load (ETag: a 304 costs a round trip on loopback), so an upgraded
           # daemon never serves a stale page.
           "Cache-Control": "no-cache"}


async def _file(name: str) -> web.StreamResponse:
    path = STATIC_DIR / name
    if not _NAME.match(name) or path.suffix not in _TYPES:
        raise web.HTTPNotFound()
    if not await asyncio.get_running_loop().run_in_executor(None, path.is_file):
        raise web.HTTPNotFound()
    resp = web.FileResponse(path, headers=HEADERS)
    resp.content_type = _TYPES[path.suffix]
    if path.suffix in (".html", ".js", ".css", ".svg", ".json"):
        resp.charset = "utf-8"
    return resp


async def index(request: web.Request) -> web.StreamResponse:
    """The page itself."""
    return await _file("index.html")


async def static(request: web.Request) -> web.StreamResponse:
    """One of the page's assets; anything not shipped in static/ is a 404."""
    return await _file(request.match_info["name"])


def add_routes(app: web.Application) -> None:
    """Register the page's files (GET, with HEAD) on the daemon's HTTP app. Routes registered before
    (a script in the route table, such as /static/speaker.js) keep precedence."""
    app.router.add_get(PAGE_PATHS[0], static)
