"""functions/chat_limits.py: the state probe, the state-backed and in-memory counters."""

from __future__ import annotations

from typing import Any

from tests.fake_context import FakeContext
from tests.test_functions_chat_support import chat_limits


class RaisingContext(FakeContext):
    def incr_counter(self, key: str, amount: int) -> None:
        raise RuntimeError("state backend exploded")


def test_probe_sees_state_storage() -> None:
    assert chat_limits.state_available(FakeContext(state_enabled=True)) is True


def test_probe_sees_no_state_storage() -> None:
    # docs/pulsar-functions.md §1.6: without state storage incr_counter does nothing and get_counter returns None
    assert chat_limits.state_available(FakeContext(state_enabled=False)) is False


def test_probe_treats_raising_state_api_as_absent() -> None:
    assert chat_limits.state_available(RaisingContext()) is False


def test_memory_rate_is_a_sliding_window() -> None:
    limits = chat_limits.MemoryLimits()
    counts = [limits.rate_count("u", t, 1000) for t in (0, 400, 800, 1000, 1400, 2401)]
    assert counts == [1, 2, 3, 3, 3, 1]  # each count covers the last 1000 ms only


def test_memory_forgets_least_recent_users_beyond_the_bound() -> None:
    limits = chat_limits.MemoryLimits(max_users=2)
    for user in ("a", "b", "a", "c"):
        limits.rate_count(user, 0, 1000)
    assert limits.rate_count("a", 1, 1000) == 3  # a was used recently, kept
    assert limits.rate_count("b", 1, 1000) == 1  # b was evicted when c arrived
    assert len(limits) == 2


def test_state_rate_uses_fixed_windows_and_cleans_up() -> None:
    ctx = FakeContext()
    limits = chat_limits.StateLimits(ctx)
    assert [limits.rate_count("u", t, 1000) for t in (0, 10, 999)] == [1, 2, 3]
    assert limits.rate_count("u", 1000, 1000) == 1
    assert ctx.counters == {"rate:u:1": 1}
    assert limits.rate_count("u", 5000, 1000) == 1  # skipped windows: the last one is still deleted
    assert ctx.counters == {"rate:u:5": 1}


def test_state_rate_raises_when_state_stops_answering() -> None:
    ctx = FakeContext(state_enabled=False)
    limits = chat_limits.StateLimits(ctx)
    try:
        limits.rate_count("u", 0, 1000)
    except chat_limits.StateUnavailable as exc:
        assert "returned None" in str(exc)
    else:  # pragma: no cover - the assertion below explains
        raise AssertionError("StateLimits must not count silently without state")


def test_duplicates_count_within_window_and_survive_garbage_state() -> None:
    ctx = FakeContext()
    limits = chat_limits.StateLimits(ctx)
    ctx.state["recent:u"] = b"{not json"
    fp = chat_limits.fingerprint("Hello!!")
    assert chat_limits.fingerprint("hello") == fp
    assert [limits.repeat_count("u", fp, t, 100) for t in (0, 50, 99, 100, 250)] == [1, 2, 3, 3, 1]


def test_recent_list_is_bounded() -> None:
    record: list[Any] = []
    for n in range(100):
        record, _ = chat_limits.count_recent(record, f"fp{n}", n, 10_000)
    assert len(record) == chat_limits.RECENT_KEEP
