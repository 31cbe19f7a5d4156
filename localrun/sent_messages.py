"""Sent messages are dropped on the thread that built them, so the client's message pool stays small.

pulsar-client's C++ core allocates every outgoing message (its `MessageImpl`) from a pool that keeps
a free list per thread (`ObjectPool<MessageImpl, 100000>` behind `MessageBuilder`). The sending
thread takes memory from its own list. The client keeps its own copy of the message until the
broker's receipt, and that copy is dropped on the client's I/O thread. So freed messages collect on
the I/O thread's list, which never allocates. Only after 10,000 of them (a tenth of the pool's
size) are they handed to a global list that the sending thread can reuse. That is about 6 MB per
client, reached after 10,000 sends. A process sending 8 messages a second (moderate) takes 20
minutes to get there, and its memory grows all that time.

`SentMessages` keeps a Python reference to each message from its receipt until the sending thread
drops it, so the last reference, and the return to the pool, is on the sending thread. That thread
then reuses the same few entries and the pool does not grow. A message is held for at least
`HOLD_SECONDS` after its receipt. Without that delay, the client's own copy, which it drops just after
the receipt callback returns (after the whole batch's callbacks with batching), could outlive ours.
Measured with pulsar-client 3.13 (bench/sent_messages.py): over 20,000 sends at 1,500 a second,
malloc'd memory grows by about 6 MB without it and stays flat with it, batched or not.

Dropping a message costs the sending thread 2-3 µs that the I/O thread paid before. Where that
thread does little else per message, as an identity function draining a backlog at 10,000+ a
second, that is several percent of its throughput (bench/localrun.py), while the pool fills within
seconds at such rates whatever we do. So messages are kept only while receipts arrive at up to
`KEEP_UP_TO_PER_SECOND`; above it they are left to the client as before, and keeping resumes when the
rate drops. Our pipeline's functions publish a few hundred messages a second at most.

`send_keeping` is `Producer.send_async` for a message that should be kept this way. It uses the
client's own message builder (`Producer._build_msg`), so the message is exactly the one
`send_async` would build. If a client version lacks that method or its parameters differ,
`send_keeping` falls back to the public `send_async`: the message is still sent, and only the
memory saving is lost.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Callable
from typing import Any

HOLD_SECONDS = 0.05
KEEP_UP_TO_PER_SECOND = 2_000

# The keyword arguments of `Producer.send_async` after `content` and `callback`, in the order of
# `Producer._build_msg`'s positional parameters (pulsar-client 3.x), with their defaults.
_SEND_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("properties", None), ("partition_key", None), ("ordering_key", None), ("sequence_id", None),
    ("replication_clusters", None), ("disable_replication", False), ("event_timestamp", None),
    ("deliver_at", None), ("deliver_after", None),
)
_OPTION_NAMES = frozenset(name for name, _ in _SEND_OPTIONS)
_DEFAULTS = [default for _, default in _SEND_OPTIONS]


class SentMessages:
    """Messages whose receipt has arrived, held until their sending thread lets go of them.

    `keep` runs on the client's callback thread; `release` must run on the thread that builds
    and sends the messages. Each side touches one end of a deque, which is safe without a lock,
    and `receipts` has one writer (the callback thread).
    """

    __slots__ = ("_receipted", "_counted", "_counted_at", "_clock", "receipts", "_receipts_at", "keeping")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._receipted: deque[Any] = deque()
        self._counted = 0  # how many were held when the clock was last read
        self._counted_at = 0.0
        self._clock = clock
        self.receipts = 0  # every receipt, kept or not
        self._receipts_at = 0  # receipts when the clock was last read
        self.keeping = True

    def keep(self, message: Any) -> None:
        self.receipts += 1
        if self.keeping:
            self._receipted.append(message)

    def release(self) -> None:
        """Drop the messages that have been held for at least HOLD_SECONDS.

        Cheap enough for every iteration of a processing loop: one clock read, and most calls
        stop there. Also decides, from the receipts since the last count, whether to go on keeping.
        """
        now = self._clock()
        elapsed = now - self._counted_at
        if elapsed < HOLD_SECONDS:
            return
        receipted = self._receipted
        for _ in range(self._counted):
            receipted.popleft()
        self._counted = len(receipted)
        self._counted_at = now
        receipts = self.receipts
        self.keeping = receipts - self._receipts_at <= KEEP_UP_TO_PER_SECOND * elapsed
        self._receipts_at = receipts

    def clear(self) -> None:
        """Drop everything now (on close, when nothing is sent any more)."""
        self._receipted.clear()
        self._counted = 0

    def __len__(self) -> int:
        return len(self._receipted)


def _build_msg_matches(producer_class: type) -> bool:
    build = getattr(producer_class, "_build_msg", None)
    if build is None:
        return False
    try:
        names = list(inspect.signature(build).parameters)
    except (TypeError, ValueError):
        return False
    return names == ["self", "content", *(name for name, _ in _SEND_OPTIONS)]


_builds_natively: dict[type, bool] = {}


def send_keeping(producer: Any, sent: SentMessages, content: Any, callback: Callable[[Any, Any], Any],
                 **options: Any) -> None:
    """`producer.send_async(content, callback, **options)`; after the receipt, the message goes to `sent`.

    Bad options raise the same errors as `send_async`: TypeError for an unknown name, ValueError
    for a wrong type (the client's own checks).
    """
    native = _builds_natively.get(type(producer))
    if native is None:
        native = _builds_natively[type(producer)] = _build_msg_matches(type(producer))
    if not native or not hasattr(producer, "_producer"):
        producer.send_async(content, callback, **options)
        return
    if options:
        if not options.keys() <= _OPTION_NAMES:
            unknown = sorted(options.keys() - _OPTION_NAMES)[0]
            raise TypeError(f"send_async() got an unexpected keyword argument {unknown!r}")
        args = [options.get(name, default) for name, default in _SEND_OPTIONS]
    else:
        args = _DEFAULTS
    message = producer._build_msg(content, *args)
    keep = sent.keep

    def on_receipt(result: Any, msg_id: Any) -> None:
        keep(message)
        callback(result, msg_id)

    producer._producer.send_async(message, on_receipt)
