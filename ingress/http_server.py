"""The ordinary HTTP side (aiohttp): the page, /health, /metrics, /cert-hash, /hls/ and the /ws route,
whose WebSocket sessions are served by websocket_server.py (beside webtransport_server.py)."""

from __future__ import annotations

import json
import os
from typing import Any

from aiohttp import web

from ingress.app import IngressApp
from ingress.hls_http import add_hls_routes
from ingress.page import add_page_routes
from ingress.websocket_server import websocket_handler

INGRESS_KEY = web.AppKey("ingress", IngressApp)
WT_PORT_KEY = web.AppKey("wt_port", int)


async def _health(request: web.Request) -> web.Response:
    app: IngressApp = request.app[INGRESS_KEY]
    return web.json_response({"status": "ok", "inflight": app.publisher.inflight,
                              "sessions": sum(app.addresses._counts.values()),
                              "worker": app.config.worker, "pid": os.getpid()})


async def _metrics(request: web.Request) -> web.Response:
    app: IngressApp = request.app[INGRESS_KEY]
    return web.Response(body=app.metrics.render(), content_type="text/plain", charset="utf-8")


async def _cert_hash(request: web.Request) -> web.Response:
    app: IngressApp = request.app[INGRESS_KEY]
    cert = app.cert
    assert cert is not None
    port = request.app[WT_PORT_KEY]
    body = {
        "algorithm": "sha-256",
        "hex": cert.sha256_hex,
        "value": list(cert.sha256),  # bytes, ready for new Uint8Array(value)
        "not_after": cert.not_after.isoformat(),
        "port": port,
        "path": "/wt",
    }
    return web.Response(text=json.dumps(body), content_type="application/json",
                        headers={"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"})


def build_app(app: IngressApp, wt_port: int) -> web.Application:
    web_app = web.Application(client_max_size=1024 * 1024)
    web_app[INGRESS_KEY] = app
    web_app[WT_PORT_KEY] = wt_port
    add_page_routes(web_app.router, app.config.page)
    web_app.router.add_get("/health", _health)
    web_app.router.add_get("/metrics", _metrics)
    web_app.router.add_get("/cert-hash", _cert_hash)
    web_app.router.add_get("/ws", websocket_handler(app))
    add_hls_routes(web_app, app)
    return web_app


async def start_http(app: IngressApp, host: str, port: int, wt_port: int = 0) -> tuple[str, int, Any]:
    runner = web.AppRunner(build_app(app, wt_port), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=app.config.reuse_port or None)  # workers share the port
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]  # start() has bound the server
    bound_host, bound_port = sock.getsockname()[:2]
    return bound_host, bound_port, runner.cleanup
