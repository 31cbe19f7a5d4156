"""moderate keeps no per-message state: its counters stay bounded however long it runs.

Structural, not timed: the in-memory tables are looked at after many messages from many users
across many rate and duplicate windows, and in state mode the keys left in the state table are
counted. Each bound is the documented one (chat_limits): at most `max_users_in_memory` users,
per user the timestamps of one rate window and RECENT_KEEP fingerprints.
"""

from __future__ import annotations

from tests.test_functions_chat_support import NOW_MS, chat, chat_limits, moderate, moderate_context, send

USERS = 40
MAX_USERS = 16
RATE_WINDOW_MS = 10_000
STEP_MS = 250  # each user writes every USERS * STEP_MS ms


def run(ctx, fn, messages: int) -> None:
    for i in range(messages):
        user = f"user{i % USERS}"
        now = NOW_MS + i * STEP_MS
        # half of the texts repeat, half are new: both the duplicate and the rate tables are used
        text = f"hello {i % 3}" if i % 2 else f"message number {i}"
        send(fn, ctx, chat(text, user=user, msg_id=f"m{i}", sent_at=now), user=user, t_ingress=now)
        ctx.published.clear()
        ctx.acked.clear()


def test_memory_counters_stay_bounded_over_many_windows() -> None:
    config = {"state": "memory", "limits": {"max_users_in_memory": MAX_USERS, "rate_window_ms": RATE_WINDOW_MS,
                                             "rate_messages": 1_000_000, "duplicate_max": 1_000_000}}  # fmt: skip
    ctx = moderate_context(config)
    fn = moderate.ModerateFunction()
    run(ctx, fn, 4000)  # 1000 s of chat: 100 rate windows
    limits = fn._limits
    assert isinstance(limits, chat_limits.MemoryLimits)
    assert len(limits._sent) <= MAX_USERS and len(limits._recent) <= MAX_USERS
    per_window = RATE_WINDOW_MS // (USERS * STEP_MS) + 1
    assert all(len(times) <= per_window for times in limits._sent.values())
    assert all(len(recent) <= chat_limits.RECENT_KEEP for recent in limits._recent.values())


def test_state_keys_stay_bounded_over_many_windows() -> None:
    config = {"state": "auto", "limits": {"rate_window_ms": RATE_WINDOW_MS, "rate_messages": 1_000_000,
                                          "duplicate_max": 1_000_000}}  # fmt: skip
    ctx = moderate_context(config)
    fn = moderate.ModerateFunction()
    run(ctx, fn, 4000)
    assert fn.state_mode == "state"
    # per user: the current rate window's counter, the window marker, the recent list; plus the probe
    keys = set(ctx.counters) | set(ctx.state)
    assert len(keys) <= 3 * USERS + 1, sorted(keys)[:10]
