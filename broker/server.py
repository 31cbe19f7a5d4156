"""The asyncio shell around the broker core: TCP listener, group commit, housekeeping, admin HTTP."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from broker.admin_http import update_rates
from broker.config import BrokerConfig
from broker.connection import ServerConnection
from broker.service import BrokerService, SyncBatch, flush_files

log = logging.getLogger("wtpulsar.broker")


class _Protocol(asyncio.Protocol):
    def __init__(self, service: BrokerService) -> None:
        self.service = service
        self.connection: ServerConnection | None = None
        self.transport: asyncio.Transport | None = None
        self._out: list[bytes] = []

    def _send(self, data: bytes) -> None:
        # Frames produced in one loop turn leave in one write (one syscall, fewer TCP segments).
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def _close(self) -> None:
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        limit = self.service.config.max_connections
        if len(self.service.connections) + len(self.service.pending) >= limit:
            log.warning("refusing connection from %s: %d connections open (limit %d)", peer, limit, limit)
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The shell reads the clock; the connection and the dispatch under it take the time from here.
        self.connection = ServerConnection(self.service, self._send, self._close, f"{peer[0]}:{peer[1]}" if peer else "?",
                                           self.service.monotonic(), self.service.wall_ms())  # fmt: skip

    def data_received(self, data: bytes) -> None:
        if self.connection is not None:
            self.connection.data_received(data, self.service.wall_ms())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.connection is not None:
            self.connection.connection_lost(self.service.wall_ms())


class BrokerServer:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.service = BrokerService(config)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._http_runner: Any = None
        self._sync_scheduled = False
        self._flushing = False
        self._sync_again = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fdatasync")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def schedule_sync() -> None:
            # Group commit: every append of this loop turn is synced together, then receipts leave.
            if not self._sync_scheduled:
                self._sync_scheduled = True
                loop.call_soon(self._sync)

        self.service.schedule_sync = schedule_sync
        if self.config.http_port is not None:  # admin first: once the binary port answers, all is up
            from broker.admin_http import start_admin_http

            self._http_runner = await start_admin_http(self, self.config.http_host or self.config.host, self.config.http_port)
        self._server = await loop.create_server(lambda: _Protocol(self.service), self.config.host, self.config.port, reuse_address=True)
        if self.config.port == 0:
            self.config.port = self._server.sockets[0].getsockname()[1]
        self._tasks.append(asyncio.create_task(self._housekeeping()))

    def _sync(self) -> None:
        """Group commit: one fdatasync (in a worker thread) covers every append made meanwhile."""
        self._sync_scheduled = False
        if self.config.sync_mode != "fsync":
            self.service.complete_sync(self.service.begin_sync())
            return
        if self._flushing:
            self._sync_again = True
            return
        batch = self.service.begin_sync()
        if not batch.ends:
            return
        self._flushing = True
        future = asyncio.get_running_loop().run_in_executor(self._executor, flush_files, batch.fds)
        future.add_done_callback(lambda done: self._flushed(batch, done))

    def _flushed(self, batch: SyncBatch, done: asyncio.Future[None]) -> None:
        self._flushing = False
        if done.exception() is not None:
            log.error("syncing the entry log failed: %s", done.exception())
        self.service.complete_sync(batch)
        if self._sync_again:
            self._sync_again = False
            self._sync()

    async def _housekeeping(self) -> None:
        rate_state: dict[str, Any] = {}
        last_rates = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.housekeeping_interval)
            try:
                self.service.housekeeping()
                if loop.time() - last_rates >= 1.0:
                    last_rates = loop.time()
                    update_rates(self.service, rate_state)
            except Exception:
                log.exception("housekeeping failed")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        for connection in list(self.service.connections | self.service.pending):
            connection.abort()
        if self._http_runner is not None:
            await self._http_runner.cleanup()
        self._executor.shutdown(wait=True)
        self.service.close()


async def serve_forever(config: BrokerConfig, ready_line: bool = True) -> None:
    server = BrokerServer(config)
    await server.start()
    # Everything loaded so far (topics, indexes, modules) lives until shutdown: keep it out of the
    # collector's full passes, which would otherwise show up as latency spikes.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready_line:
        http = f" admin http://{config.http_host or config.host}:{config.http_port}" if config.http_port is not None else ""
        log.info("broker ready: %s%s data %s", config.service_url, http, config.data_dir or "(memory)")
    await stop.wait()
    log.info("broker stopping")
    await server.stop()
    log.info("broker stopped")
