"""Nothing lost, nothing stuck: kill -9 every part while four publishers stream.

Four synthetic publishers (two JPEG cameras, one Opus microphone, one chat) stream through the
ingress's WebSocket fallback with resend-until-acked (test_faults_publisher.py). In turn the broker,
each function's instance and the ingress are SIGKILLed and restarted. Afterwards the audit
(audit/room_audit.py) must show:
  * every frame the ingress acknowledged to a publisher is on the room's output (at-least-once end to
    end, FRAMING.md "Ack": OK means broker-acknowledged);
  * every publisher got every frame acknowledged in the end (nothing stuck);
  * every stream resumed after each restart: a frame captured after the restart reached the output.
How fast it resumed is printed (and measured by bench/soak.py), not asserted: a speed figure on a
shared 2-core CI box is not a correctness bound.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from audit.cli import collect_room
from audit.room_audit import RoomAudit, resume_delay
from schemas.framing_codec import Kind
from tests.test_faults_harness import RENDITION, Pipeline
from tests.test_faults_publisher import WsPublisher, synthetic_frames

FUNCTIONS_DIR = str(Path(__file__).resolve().parents[1] / "functions")
if FUNCTIONS_DIR not in sys.path:
    sys.path.insert(0, FUNCTIONS_DIR)

ROOM = "faults"
STREAMS = [("cam0", Kind.VIDEO, 0.1), ("cam1", Kind.VIDEO, 0.1), ("mic0", Kind.AUDIO, 0.02), ("chat0", Kind.CHAT, 0.25)]
OUTPUTS = [f"room-{ROOM}-video-{RENDITION}", f"room-{ROOM}-audio", f"room-{ROOM}-chat"]
# Which streams each fault can interrupt (moderate only carries chat; transcode and chunk only media).
AFFECTS = {"broker": {"cam0", "cam1", "mic0", "chat0"}, "ingress": {"cam0", "cam1", "mic0", "chat0"},
           "transcode": {"cam0", "cam1", "mic0"}, "chunk": {"cam0", "cam1", "mic0"}, "moderate": {"chat0"},
           "route": {"cam0", "cam1", "mic0", "chat0"}}
ALL_FAULTS = ["broker", "transcode", "chunk", "moderate", "route", "ingress"]


def inject(pipeline: Pipeline, fault: str) -> float:
    """SIGKILL one part and bring it back; returns the wall-clock ms when it was running again."""
    if fault == "broker":
        pipeline.broker.kill()
        pipeline.broker.start()
    elif fault == "ingress":
        pipeline.kill_ingress()
        pipeline.start_ingress()
    else:
        old = pipeline.kill_function(fault)
        pipeline.restarted(fault, old)
    return time.time() * 1000.0


async def stream_through(pipeline: Pipeline, faults: list[str], warmup_s: float, gap_s: float, video_codec: str,
                         ) -> tuple[list[WsPublisher], list[tuple[str, float]]]:
    stop = asyncio.Event()
    publishers = [
        WsPublisher(pipeline.ws_url(ROOM, f"user{i}"), kind, stream,
                    synthetic_frames(kind, stream, ROOM, f"user{i}", codec=video_codec), interval)
        for i, (stream, kind, interval) in enumerate(STREAMS)
    ]
    tasks = [asyncio.create_task(p.run(stop, drain_s=45.0)) for p in publishers]
    events: list[tuple[str, float]] = []
    await asyncio.sleep(warmup_s)
    for fault in faults:
        events.append((fault, await asyncio.to_thread(inject, pipeline, fault)))
        await asyncio.sleep(gap_s)
    stop.set()
    await asyncio.gather(*tasks)
    return publishers, events


def settle(pipeline: Pipeline, confirmed: dict[str, set[int]], timeout: float) -> tuple[RoomAudit, dict[tuple[str, str], list[tuple[int, int]]]]:
    """Re-audit until every confirmed frame is on the output (the pipeline drains redeliveries)."""
    import pulsar

    client = pulsar.Client(pipeline.broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        deadline = time.monotonic() + timeout
        while True:
            audit = collect_room(client, ROOM, "public", "wtpulsar", ["video", "audio", "chat"], OUTPUTS)
            missing = audit.confirmed_missing(confirmed)
            if not missing or time.monotonic() > deadline:
                return audit, missing
            time.sleep(1.0)
    finally:
        client.close()


def run_fault_drill(root: Path, faults: list[str], warmup_s: float = 3.0, gap_s: float = 5.0,
                    video_codec: str = "jpeg") -> dict[str, Any]:
    pipeline = Pipeline(root)
    try:
        pipeline.start()
        publishers, events = asyncio.run(stream_through(pipeline, faults, warmup_s, gap_s, video_codec))
        confirmed = {p.stream: set(p.ledger.confirmed) for p in publishers}
        audit, missing = settle(pipeline, confirmed, timeout=45.0)
        report = audit.report()
        resumed = {
            fault: {s: resume_delay(audit.output_times(s), at) for s in sorted(AFFECTS[fault])}
            for fault, at in events
        }
        return {
            "publishers": {p.stream: {"captured": len(p.ledger.confirmed) + len(p.ledger.unacked),
                                      "confirmed": len(p.ledger.confirmed), "unacked": len(p.ledger.unacked),
                                      "resent": p.ledger.resent, "sessions": p.sessions} for p in publishers},
            "missing": {f"{s}/{r}": ranges for (s, r), ranges in missing.items()},
            "duplicates_out": {f"{t.stream}/{t.rendition}": t.duplicates_out for t in report.tracks},
            "duplicates_in": {f"{t.stream}/{t.rendition}": t.duplicates_in for t in report.tracks},
            "resume_ms": resumed,
            "tracks": sorted(f"{t.stream}/{t.rendition}" for t in report.tracks),
        }
    finally:
        pipeline.stop()


def _check(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=1))  # the measured recovery, for the log
    for stream, fig in result["publishers"].items():
        assert fig["confirmed"] > 0, f"{stream}: nothing was ever acknowledged"
        assert fig["unacked"] == 0, f"{stream}: {fig['unacked']} frames never acknowledged (stuck)"
    assert result["missing"] == {}, f"acknowledged frames missing from the output: {result['missing']}"
    assert {"cam0/120p", "cam1/120p", "mic0/audio", "chat0/chat"} <= set(result["tracks"])
    never = {fault: [s for s, d in delays.items() if d is None] for fault, delays in result["resume_ms"].items()}
    assert not any(never.values()), f"streams that never resumed after a restart: {never}"


def test_kill_every_part_in_turn_loses_nothing(tmp_path: Path) -> None:
    _check(run_fault_drill(tmp_path, ALL_FAULTS))


@pytest.mark.slow
def test_repeated_fault_rounds_lose_nothing(tmp_path: Path) -> None:
    _check(run_fault_drill(tmp_path, ALL_FAULTS * 3, warmup_s=5.0, gap_s=10.0))


def test_transcode_restart_with_h264_publishers_loses_nothing(tmp_path: Path) -> None:
    _check(run_fault_drill(tmp_path, ["transcode"], warmup_s=4.5, gap_s=6.0, video_codec="h264"))
