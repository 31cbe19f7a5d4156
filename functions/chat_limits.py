"""Per-user rate limit and duplicate (flood) detection, in Pulsar state or in instance memory.

Pulsar's state API is live only when the cluster has state storage (docs/pulsar-functions.md §1.6);
without it `incr_counter`/`put_state` silently do nothing and the getters return None. So
`state_available(context)` probes once: increment a probe counter and read it back; None (or
any exception) means no state storage, and the function keeps its counters in memory instead.
That covers a worker with no state URL. A state URL whose table service is down never reaches
this code: Pulsar's Python instance dies while creating its state table (docs/real-pulsar.md §5).
In memory the counts are per instance: chat is keyed by room and consumed Key_Shared
(`retainKeyOrdering`), so a room stays on one instance, but a user writing in two rooms served
by two instances is counted twice as leniently. With state storage the counters are shared.

Windows: with state storage the rate limit counts in fixed windows (`incr_counter` is atomic, a
read-modify-write list would not be); in memory it is an exact sliding window. Duplicates are
a short list of recent text fingerprints per user in both cases (`put_state` of JSON in state;
two instances writing one user's list at once can lose an entry, which only errs lenient).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict, deque
from typing import Any, Protocol

from chat_fold import fold_text

PROBE_KEY = "wtpulsar:state-probe"
RECENT_KEEP = 16  # fingerprints kept per user for duplicate detection
DEFAULT_MAX_USERS = 100_000  # users tracked in memory; least recently seen are forgotten first


class StateUnavailable(RuntimeError):
    """The state store stopped answering (e.g. get_counter returned None after incr)."""


def state_available(context: Any) -> bool:
    """True when the Context's state API actually stores values (docs/pulsar-functions.md §1.6)."""
    try:
        context.incr_counter(PROBE_KEY, 1)
        return context.get_counter(PROBE_KEY) is not None
    except Exception:  # a runtime whose state calls raise has no usable state either
        return False


def fingerprint(text: str) -> str:
    """Identical after folding: "Buy NOW!!" and "buy now" are the same message."""
    folded = fold_text(text) or text
    return hashlib.blake2b(folded.encode("utf-8"), digest_size=8).hexdigest()


def count_recent(record: list[list[Any]], fp: str, now_ms: int, window_ms: int) -> tuple[list[list[Any]], int]:
    """Add `fp` at `now_ms` to a user's recent list; return the new list and how many of it
    (this one included) carry `fp` within the window."""
    fresh = [item for item in record if isinstance(item, list) and len(item) == 2 and now_ms - item[1] < window_ms]
    fresh.append([fp, now_ms])
    fresh = fresh[-RECENT_KEEP:]
    return fresh, sum(1 for item in fresh if item[0] == fp)


class Limits(Protocol):
    def rate_count(self, user: str, now_ms: int, window_ms: int) -> int:
        """Messages from `user` in the current window, this one included."""

    def repeat_count(self, user: str, fp: str, now_ms: int, window_ms: int) -> int:
        """Messages from `user` with fingerprint `fp` in the window, this one included."""


class MemoryLimits:
    """Counters in this instance's memory, bounded to `max_users` (LRU)."""

    def __init__(self, max_users: int = DEFAULT_MAX_USERS) -> None:
        self.max_users = max_users
        self._sent: OrderedDict[str, deque[int]] = OrderedDict()
        self._recent: OrderedDict[str, list[list[Any]]] = OrderedDict()

    def _touch(self, table: OrderedDict[str, Any], user: str, default: Any) -> Any:
        value = table.get(user)
        if value is None:
            value = table[user] = default
            if len(table) > self.max_users:
                table.popitem(last=False)
        else:
            table.move_to_end(user)
        return value

    def rate_count(self, user: str, now_ms: int, window_ms: int) -> int:
        times: deque[int] = self._touch(self._sent, user, deque())
        while times and now_ms - times[0] >= window_ms:
            times.popleft()
        times.append(now_ms)
        return len(times)

    def repeat_count(self, user: str, fp: str, now_ms: int, window_ms: int) -> int:
        record, count = count_recent(self._recent.get(user, []), fp, now_ms, window_ms)
        self._touch(self._recent, user, record)
        self._recent[user] = record
        return count

    def __len__(self) -> int:
        return max(len(self._sent), len(self._recent))


class StateLimits:
    """Counters in the function's state table (BookKeeper table service via the Context)."""

    def __init__(self, context: Any) -> None:
        self.context = context

    def rate_count(self, user: str, now_ms: int, window_ms: int) -> int:
        window = now_ms // window_ms
        key = f"rate:{user}:{window}"
        self.context.incr_counter(key, 1)
        count = self.context.get_counter(key)
        if count is None:
            raise StateUnavailable(f"get_counter({key!r}) returned None after incr_counter")
        if count == 1:
            self._forget_old_window(user, window)
        return int(count)

    def _forget_old_window(self, user: str, window: int) -> None:
        # The table service has no TTL: delete the user's previous window counter when a new
        # window starts, remembering which one that was, so keys do not pile up.
        marker = f"ratewin:{user}"
        previous = self.context.get_state(marker)
        self.context.put_state(marker, str(window))
        if previous and previous.decode("ascii", "replace") != str(window):
            try:
                self.context.del_counter(f"rate:{user}:{previous.decode('ascii', 'replace')}")
            except Exception:  # cleanup only; a leftover key costs space, not correctness
                pass

    def repeat_count(self, user: str, fp: str, now_ms: int, window_ms: int) -> int:
        key = f"recent:{user}"
        raw = self.context.get_state(key)
        try:
            record = json.loads(raw) if raw else []
            if not isinstance(record, list):
                record = []
        except ValueError:
            record = []
        record, count = count_recent(record, fp, now_ms, window_ms)
        self.context.put_state(key, json.dumps(record, separators=(",", ":")))
        return count
