"""Helpers for broker tests that use the official pulsar-client."""

from __future__ import annotations

import itertools
import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pulsar

_counter = itertools.count()


def unique_topic(prefix: str = "t", namespace: str = "public/default") -> str:
    import uuid

    return f"persistent://{namespace}/{prefix}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


@contextmanager
def client(service_url: str, **kwargs: Any) -> Iterator[pulsar.Client]:
    kwargs.setdefault("operation_timeout_seconds", 10)
    c = pulsar.Client(service_url, logger=quiet_logger(), **kwargs)
    try:
        yield c
    finally:
        c.close()


def quiet_logger() -> Any:
    import logging

    logger = logging.getLogger("pulsar-client")
    logger.setLevel(logging.WARNING)
    return logger


def receive_all(consumer: pulsar.Consumer, expected: int, timeout_ms: int = 10_000, ack: bool = True) -> list[pulsar.Message]:
    got: list[pulsar.Message] = []
    while len(got) < expected:
        try:
            msg = consumer.receive(timeout_ms)
        except pulsar.Timeout:
            break
        got.append(msg)
        if ack:
            consumer.acknowledge(msg)
    return got


def drain(consumer: pulsar.Consumer, timeout_ms: int = 300) -> list[pulsar.Message]:
    """Everything still arriving within `timeout_ms` of the previous message."""
    extra: list[pulsar.Message] = []
    while True:
        try:
            extra.append(consumer.receive(timeout_ms))
        except pulsar.Timeout:
            return extra


def admin(url: str, method: str, path: str, body: Any = None, token: str | None = None, headers: dict[str, str] | None = None,
          timeout: float = 10.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url + path, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text
    except urllib.error.HTTPError as exc:
        text = exc.read().decode()
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, text


def read_all(reader: pulsar.Reader, expected: int, timeout_ms: int = 10_000) -> list[pulsar.Message]:
    got: list[pulsar.Message] = []
    while len(got) < expected:
        try:
            got.append(reader.read_next(timeout_ms))
        except pulsar.Timeout:
            break
    return got
