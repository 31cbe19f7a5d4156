"""bench/ingress.py's own logic: how the load is split and staggered, and what "not slower" means."""

from __future__ import annotations

import argparse

import pytest

from bench import ingress as bench

INFO = {"wt_url": "https://127.0.0.1:1/wt", "http_url": "http://127.0.0.1:2"}


def args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"load_procs": 2, "aligned": False, "seconds": 1.0, "frame_bytes": 4000}
    base.update(kw)
    return argparse.Namespace(**base)


def test_every_stream_is_driven_once_across_processes() -> None:
    specs = bench.load_specs("webtransport", INFO, 5, 30, 30.0, args(), 60)
    assert len(specs) == 2
    streams = [s for spec in specs for session in spec.streams for s in session]
    assert sorted(streams) == sorted(f"s{i}" for i in range(30))
    assert sum(len(spec.urls) for spec in specs) == 5
    assert all(url.startswith(INFO["wt_url"] + "?token=") for spec in specs for url in spec.urls)
    ws = bench.load_specs("websocket", INFO, 5, 30, 30.0, args(), 60)
    assert all(url.startswith(INFO["http_url"] + "/ws?token=") for spec in ws for url in spec.urls)


def test_publishers_are_staggered_unless_aligned() -> None:
    specs = bench.load_specs("webtransport", INFO, 5, 30, 30.0, args(), 60)
    offsets = sorted(o for spec in specs for o in spec.offsets)
    assert offsets == pytest.approx([n / 5 / 30 for n in range(5)])  # spread over one frame interval
    phases = {k: v for spec in specs for k, v in spec.key_phase.items()}
    assert len(set(phases.values())) == 30  # no two keyframes coincide
    aligned = bench.load_specs("webtransport", INFO, 5, 30, 30.0, args(aligned=True), 60)
    assert all(o == 0 for spec in aligned for o in spec.offsets)
    assert all(v == 0 for spec in aligned for v in spec.key_phase.values())


def test_not_slower_allows_noise_only() -> None:
    assert bench.not_slower(2.4, 2.0)  # within 25 %
    assert bench.not_slower(0.9, 0.5)  # within the 0.5 ms floor
    assert not bench.not_slower(2.6, 2.0)
    assert not bench.not_slower(10.0, 5.0)


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert bench.pct(values, 50) == pytest.approx(50.0, abs=1)
    assert bench.pct(values, 99) == pytest.approx(99.0, abs=1)
    assert bench.pct([], 99) != bench.pct([], 99)  # nan: no samples is not a zero latency


def test_pace_counts_ticks_the_generator_started_late() -> None:
    import asyncio
    import time

    counter = bench.Counter()
    now = time.monotonic()
    asyncio.run(bench.pace(now - 1.0, 0, 30.0, counter))  # a whole second behind: late
    asyncio.run(bench.pace(now, 1, 10.0, counter))  # tick 1 due 100 ms after now: on time
    assert counter.ticks == 2
    assert counter.late_ticks == 1
    assert counter.max_late >= 0.99
