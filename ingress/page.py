"""The browser page and its ES modules, served from package data (``ingress/static/``).

``GET /`` answers ``live_client.html`` and ``GET /static/<name>`` one of the modules it loads; both come
from the installed package through ``importlib.resources``, so an installed ingress (the container image,
a wheel) serves the page without the source tree. ``IngressConfig.page`` names a file served at ``/``
instead (tests use it for pages of their own).

Every answer carries ``Cache-Control: no-store`` (a reload gets the running ingress's page, never an old
copy) and ``X-Content-Type-Options: nosniff``; the modules go out as ``text/javascript``, the type
browsers require of a module script. ``Access-Control-Allow-Origin: *`` lets the page opened from disk
(the repository's ``live_client.html``) fetch the page and import the modules from this ingress: module
scripts are always fetched with CORS, and a ``file://`` page has an opaque origin
(docs/browser-page.md §2).
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

PAGE = "live_client.html"
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Access-Control-Allow-Origin": "*"}
STATIC_NAME = re.compile(r"[a-z][a-z0-9_]*\.(?:js|css)")  # no folders, no dots but the suffix's


def static_dir() -> Traversable:
    """The page's folder inside the installed package."""
    return resources.files("ingress") / "static"


def _file_response(data: bytes, name: str) -> web.Response:
    suffix = name[name.rfind("."):]
    return web.Response(body=data, content_type=CONTENT_TYPES[suffix], charset="utf-8", headers=HEADERS)


def _not_found(text: str) -> web.Response:
    return web.Response(status=404, text=text, headers=HEADERS)


def page_handler(override: Path | None) -> Handler:
    """``GET /``: the packaged page, or the ``override`` file when one is configured."""

    async def index(request: web.Request) -> web.StreamResponse:
        if override is not None:
            if override.is_file():
                return _file_response(override.read_bytes(), ".html")
            where = str(override)
        else:
            packaged = static_dir() / PAGE
            if packaged.is_file():
                return _file_response(packaged.read_bytes(), PAGE)
            where = f"package data ingress/static/{PAGE}"
        return _not_found(f"{PAGE} is not there yet ({where}); "
                          "the ingress itself is up: see /health, /cert-hash, /metrics\n")

    return index


async def static_file(request: web.Request) -> web.StreamResponse:
    """``GET /static/<name>``: one of the page's modules, or a 404 naming what was asked for."""
    name = request.match_info["name"]
    if not STATIC_NAME.fullmatch(name):
        return _not_found(f"/static/{name[:100]}: not a file of the page (names are like viewer.js)\n")
    item = static_dir() / name
    if not item.is_file():
        return _not_found(f"/static/{name}: the page has no such file\n")
    return _file_response(item.read_bytes(), name)


def add_page_routes(router: web.UrlDispatcher, override: Path | None) -> None:
    router.add_get("/", page_handler(override))
    router.add_get("/static/{name}", static_file)
