"""The WebSocket adapter (aiohttp), beside webtransport_server.py: the /ws fallback for a browser
without WebTransport.

/ws speaks the same framing as WebTransport (schemas/FRAMING.md "WebSocket"): each binary message is
exactly one record. Publishers' frames go through the same PublisherSession and publishing shell;
viewers get DELIVERY records through viewer.ViewerTracks. Backpressure: while the session is
backlogged we stop reading the socket, so TCP pushes back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from ingress import clock
from ingress.app import IngressApp, SessionRefused, SessionRequest
from ingress.publishing import PublishingShell
from ingress.session import PublisherSession
from ingress.tokens import Role
from ingress.viewer import Item, ViewerSink
from schemas.framing_codec import CloseCode, Kind, Notice, is_clock, serialize_notice

log = logging.getLogger(__name__)

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


def websocket_handler(app: IngressApp) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler for ``/ws`` (http_server.build_app adds the route)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await _ws(app, request)

    return handle


async def _ws(app: IngressApp, request: web.Request) -> web.StreamResponse:
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


async def _serve_publisher(app: IngressApp, ws: web.WebSocketResponse, session: SessionRequest, address: str) -> None:
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


async def _serve_viewer(app: IngressApp, ws: web.WebSocketResponse, session: SessionRequest) -> None:
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
