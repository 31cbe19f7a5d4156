"""The pulsar-client a hub's reader threads share: made on first use, closed after the readers stop.

Both hubs that read room topics (the egress, `ingress/egress.py`, and HLS, `ingress/hls_feed.py`) run
one reader thread per topic on one client. Closing must stop every reader first and wait for their
threads off the event loop, since a reader thread blocks in pulsar-client calls; a client made by a
caller-supplied factory (tests) belongs to that caller and is left open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol


class ReaderThread(Protocol):
    def stop(self) -> None: ...

    def join(self, timeout: float = ...) -> None: ...


class SharedReaderClient:
    def __init__(self, service_url: str, token: str | None, factory: Callable[[], Any] | None = None) -> None:
        self.service_url, self.token, self._factory = service_url, token, factory
        self._client: Any = None

    def get(self) -> Any:
        if self._client is None:
            if self._factory is not None:
                self._client = self._factory()
            else:
                import pulsar

                from ingress.broker_auth import client_kwargs

                self._client = pulsar.Client(self.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
                                             **client_kwargs(self.token))
        return self._client

    async def close_after(self, readers: Sequence[ReaderThread]) -> None:
        """Stop every reader, then (in a worker thread) wait for each and close the client if it is ours."""
        for reader in readers:
            reader.stop()
        client, self._client = self._client, None

        def finish() -> None:
            for reader in readers:
                reader.join()
            if client is not None and self._factory is None:
                client.close()

        await asyncio.to_thread(finish)
