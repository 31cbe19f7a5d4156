"""In-memory stand-ins for the pulsar-client objects the runtime touches (no broker needed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulsar


@dataclass
class MsgId:
    ledger: int = 7
    entry: int = 3
    part: int = -1
    batch: int = -1

    def ledger_id(self) -> int:
        return self.ledger

    def entry_id(self) -> int:
        return self.entry

    def partition(self) -> int:
        return self.part

    def batch_index(self) -> int:
        return self.batch

    def serialize(self) -> bytes:
        return f"{self.ledger}:{self.entry}:{self.part}".encode()

    def __str__(self) -> str:
        return f"({self.ledger},{self.entry},{self.part},{self.batch})"


@dataclass
class Msg:
    payload: bytes
    topic: str = "persistent://public/default/in"
    key: str = ""
    event_time: int = 0
    props: dict[str, str] = field(default_factory=dict)
    msgid: MsgId = field(default_factory=MsgId)
    decoded: Any = None

    def data(self) -> bytes:
        return self.payload

    def value(self) -> Any:
        return self.decoded

    def partition_key(self) -> str:
        return self.key

    def event_timestamp(self) -> int:
        return self.event_time

    def properties(self) -> dict[str, str]:
        return dict(self.props)

    def topic_name(self) -> str:
        return self.topic

    def message_id(self) -> MsgId:
        return self.msgid


@dataclass
class Consumer:
    events: list[tuple[str, Any]] = field(default_factory=list)

    def acknowledge(self, msg: Any) -> None:
        self.events.append(("ack", msg))

    def negative_acknowledge(self, msg: Any) -> None:
        self.events.append(("nack", msg))

    def close(self) -> None:
        self.events.append(("close", None))

    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


@dataclass
class Sent:
    payload: Any
    callback: Callable[[Any, Any], None]
    kwargs: dict[str, Any]


@dataclass
class Producer:
    topic: str
    settings: dict[str, Any]
    complete: bool = True  # call the callback at once
    result: Any = pulsar.Result.Ok
    sent: list[Sent] = field(default_factory=list)

    def send_async(self, payload: Any, callback: Callable[[Any, Any], None], **kwargs: Any) -> None:
        self.sent.append(Sent(payload, callback, kwargs))
        if self.complete:
            callback(self.result, MsgId(entry=len(self.sent)))

    def complete_all(self, result: Any = pulsar.Result.Ok) -> None:
        for sent in self.sent:
            sent.callback(result, MsgId())

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class Client:
    producers: dict[str, Producer] = field(default_factory=dict)
    complete: bool = True
    result: Any = pulsar.Result.Ok

    def create_producer(self, topic: str, **settings: Any) -> Producer:
        producer = Producer(topic, settings, complete=self.complete, result=self.result)
        self.producers[topic] = producer
        return producer

    def close(self) -> None:
        pass
