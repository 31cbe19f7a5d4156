"""Non-persistent topics: who takes a message at the moment it is published (docs/non-persistent.md).

Nothing is stored, so there is nothing to dispatch later: each subscription hands the message to
one connected consumer that has permits right now, or drops it. Sans-I/O: `route()` only decides
and returns the decisions in subscription order; the topic carries them out.

Per subscription type, as Pulsar's non-persistent dispatchers choose:
* Exclusive/Failover: the active consumer, if it has permits.
* Shared: the next consumer in round-robin order that has permits.
* Key_Shared: the consumer the message's key hash maps to, if it has permits (no other).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broker.entries import EntryMeta
from broker.proto import pulsar_wire_pb2 as pb
from broker.subscription import EXCLUSIVE, FAILOVER, Consumer, Subscription

# Pulsar gives every non-persistent message, in its send receipt and on delivery, the id 0:0: no
# ledger holds it. Our offsets for such messages are never looked up, only passed along.
MESSAGE_LEDGER_ID = 0
MESSAGE_ENTRY_ID = 0
NO_OFFSET = -1


@dataclass(frozen=True)
class Handoff:
    """`consumer` of `subscription` takes the message now."""

    subscription: str
    consumer: Consumer


@dataclass(frozen=True)
class Drop:
    """No consumer of `subscription` could take the message: it is gone for that subscription."""

    subscription: str
    messages: int


def route(subscriptions: Iterable[Subscription], meta: EntryMeta) -> list[Handoff | Drop]:
    decisions: list[Handoff | Drop] = []
    for sub in subscriptions:
        if sub.sub_type in (EXCLUSIVE, FAILOVER):
            consumer = sub.active
        else:
            consumer = sub.choose_now(meta)
        if consumer is not None and consumer.permits > 0:
            decisions.append(Handoff(sub.name, consumer))
        else:
            decisions.append(Drop(sub.name, meta.num_messages))
    return decisions


def message_id(partition: int) -> pb.MessageIdData:
    return pb.MessageIdData(ledgerId=MESSAGE_LEDGER_ID, entryId=MESSAGE_ENTRY_ID, partition=partition)
