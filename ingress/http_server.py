"""The ordinary HTTP side (aiohttp): the page, /health, /metrics, /cert-hash and the /ws fallback.

/ws speaks the same framing as WebTransport (schemas/FRAMING.md "WebSocket"): each binary message is
exactly one record. Publishers' frames go through the same PublisherSession; viewers get DELIVERY
records. Backpressure: while the session is backlogged we stop reading the socket, so TCP pushes back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any

from aiohttp import WSMsgType, web

from ingress import clock
from ingress.app import IngressApp, SessionRefused
from ingress.hls_http import add_hls_routes
from ingress.page import add_page_routes
from ingress.publishing import PublishingShell
from ingress.session import PublisherSession
from ingress.tokens import Role
from ingress.viewer import Item, ViewerSink
from schemas.framing import CloseCode, Kind, Notice, is_clock, serialize_notice

log = logging.getLogger(__name__)

INGRESS_KEY = web.AppKey("ingress", IngressApp)
WT_PORT_KEY = web.AppKey("wt_port", int)
WS_MAX_MESSAGE = 40 * 1024 * 1024  # bytes; above the largest record Limits allow by default


class _Writer:
    """Ordered, bounded-latency writes to one WebSocket from synchronous code."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.queued_bytes = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    def put(self, data: bytes) -> None:
        self.queued_bytes += len(data)
        self.queue.put_nowait(data)

    async def _run(self) -> None:
        while True:
            data = await self.queue.get()
            if data is None:
                return
            self.queued_bytes -= len(data)
            try:
                await self.ws.send_bytes(data)
            except Exception as exc:  # peer gone: drain silently
                log.debug("ws send: %s", exc)

    def buffered(self) -> int:
        transport = self.ws._req.transport if self.ws._req is not None else None
        size = transport.get_write_buffer_size() if transport is not None else 0
        return self.queued_bytes + size

    async def close(self) -> None:
        self.queue.put_nowait(None)
        try:
            await asyncio.wait_for(self.task, 2.0)
        except (TimeoutError, asyncio.CancelledError):
            self.task.cancel()


class WsPublisher(PublishingShell):
    transport = "websocket"

    def __init__(self, app: IngressApp, core: PublisherSession, address: str, ws: web.WebSocketResponse) -> None:
        super().__init__(app, core, address)
        self.ws = ws
        self.writer = _Writer(ws)
        self.resume = asyncio.Event()
        self.resume.set()
        self.close_request: tuple[CloseCode, str] | None = None

    def send_record(self, channel: int, data: bytes) -> None:
        self.writer.put(data)

    def close_stream(self, channel: int, code: CloseCode, reason: str) -> None:
        self.close_session(code, reason)  # one WebSocket = one stream

    def close_session(self, code: CloseCode, reason: str) -> None:
        if self.close_request is None:
            self.close_request = (code, reason)
        self.resume.set()

    def pause_changed(self, paused: bool) -> None:
        if paused:
            self.resume.clear()
        else:
            self.resume.set()


class WsViewer(ViewerSink):
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.writer = _Writer(ws)
        ws_writer = ws._writer  # prepared, without compression (_ws), so frames may go out prebuilt
        self.transport: asyncio.Transport | None = ws_writer.transport if ws_writer is not None else None

    def open_group(self, kind: Kind) -> Kind:
        return kind

    def write(self, handle: Any, data: bytes) -> None:
        self.writer.put(data)

    def write_item(self, handle: Any, item: Item) -> None:
        """The item's WebSocket frame, built once for every viewer, straight onto the socket: no
        per-viewer framing, queue or task. Behind anything the queue still holds, or on a closed socket,
        it goes the ordinary way."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.writer.queued_bytes:
            self.writer.put(item.record())
            return
        transport.write(item.ws_frame())

    def queued(self, handle: Any) -> int:
        return self.writer.buffered()


TICK_SECONDS = 1.0  # how often open sessions are checked for token expiry and idleness


def _clock_reply(app: IngressApp, data: bytes, writer: _Writer, notify: bool) -> None:
    """Answer a CLOCK request on the socket it came on (FRAMING.md "Clock"); a malformed one gets a Notice."""
    received = time.time() * 1000.0
    result = clock.answer(data, received, time.time() * 1000.0)
    if result.error:
        app.metrics.rejected.labels("bad_clock").inc()
        if notify:
            writer.put(serialize_notice(Notice(CloseCode.PROTOCOL_ERROR, result.error[:1000])))
        return
    writer.put(result.reply)


def _peer(request: web.Request) -> str:
    return request.remote or "?"


async def _ws(request: web.Request) -> web.StreamResponse:
    app: IngressApp = request.app[INGRESS_KEY]
    # aiohttp pings every `heartbeat` s and closes when the pong is not back within half of it
    # compress=False: media do not deflate, and viewers are sent prebuilt frames (WsViewer.write_item)
    ws = web.WebSocketResponse(max_msg_size=WS_MAX_MESSAGE, heartbeat=app.config.session_timeout * 2 / 3,
                               compress=False)
    await ws.prepare(request)
    address = _peer(request)
    try:
        session = app.authenticate(request.query_string, address)
        app.admit(address)
    except SessionRefused as refusal:
        app.refused(refusal.code)
        await ws.close(code=refusal.code, message=refusal.reason.encode("utf-8")[:120])
        return ws
    try:
        if session.mode == Role.PUBLISHER:
            await _serve_publisher(app, ws, session, address)
        else:
            await _serve_viewer(app, ws, session)
    finally:
        app.addresses.release(address)
    return ws


async def _serve_publisher(app: IngressApp, ws: web.WebSocketResponse, session: Any, address: str) -> None:
    core = PublisherSession(session.claims, app.config.limits, time.time())
    pub = WsPublisher(app, core, address, ws)
    app.metrics.sessions.labels("websocket", "publisher").inc()
    ticker = asyncio.get_running_loop().create_task(_tick_publisher(pub, ws))
    reason = "left"
    try:
        while pub.close_request is None:
            if not pub.resume.is_set():
                await pub.resume.wait()  # backlogged: leave bytes in the socket (TCP pushes back)
                continue
            msg = await ws.receive()
            if msg.type == WSMsgType.BINARY and is_clock(msg.data):
                _clock_reply(app, msg.data, pub.writer, notify=True)
            elif msg.type == WSMsgType.BINARY:
                pub.handle(core.message(msg.data, time.time()))
            elif msg.type == WSMsgType.TEXT:
                app.metrics.rejected.labels("text_message").inc()
                pub.close_session(CloseCode.PROTOCOL_ERROR, "text messages are not records; send binary")
            else:
                break  # closed, closing or error
        if pub.close_request is not None:
            reason = "closed"
            code, why = pub.close_request
            await pub.writer.close()
            await ws.close(code=code, message=why.encode("utf-8")[:120])
        elif isinstance(ws.exception(), TimeoutError):
            reason = "timeout"  # no pong within the heartbeat
    finally:
        ticker.cancel()
        pub.ended = True
        pub.stop_following_verdicts()
        core.close()
        pub.end_streams(reason)
        await pub.writer.close()
        app.metrics.sessions.labels("websocket", "publisher").dec()


async def _tick_publisher(pub: WsPublisher, ws: web.WebSocketResponse) -> None:
    """Token expiry and idle timeout (PublisherSession.tick) while the receive loop waits."""
    while not pub.ended:
        await asyncio.sleep(TICK_SECONDS)
        pub.handle(pub.core.tick(time.time()))
        if pub.close_request is not None:
            code, reason = pub.close_request
            await ws.close(code=code, message=reason.encode("utf-8")[:120])
            return


async def _expire_viewer(ws: web.WebSocketResponse, expires_at: float) -> None:
    await asyncio.sleep(max(0.0, expires_at - time.time()))
    await ws.close(code=CloseCode.TOKEN_EXPIRED, message=b"token expired during the session")


async def _serve_viewer(app: IngressApp, ws: web.WebSocketResponse, session: Any) -> None:
    viewer = WsViewer(ws)
    app.metrics.sessions.labels("websocket", "viewer").inc()
    tracks = app.egress.subscribe(viewer, session.claims.room, session.kinds, session.rendition)
    expiry = asyncio.get_running_loop().create_task(_expire_viewer(ws, session.claims.expires_at))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY and is_clock(msg.data):
                _clock_reply(app, msg.data, viewer.writer, notify=True)
            elif msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                break  # viewers send nothing else we act on; we only wait for the close
    finally:
        expiry.cancel()
        app.egress.unsubscribe(tracks)
        await viewer.writer.close()
        app.metrics.sessions.labels("websocket", "viewer").dec()


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
    web_app.router.add_get("/ws", _ws)
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
