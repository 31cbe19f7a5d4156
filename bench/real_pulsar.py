"""Our embedded broker and localrun against Apache Pulsar 4.0.8 standalone, side by side in one run.

    .venv/bin/python -m bench.real_pulsar [--quick] [--json FILE] [--seconds N] [--streams N] [--fps F]
                                          [--latency-seconds S] [--backlog-frames N]

1. Broker: the scenarios of bench/broker.py (same load generator, bench/_broker_load.py) against
   `wtpulsar broker` (default `--sync write`) and against Apache Pulsar standalone (its bookie runs with
   journalSyncData=false, so neither fsyncs): 1 KB and 64 KB unbatched and 1 KB batched at the
   highest rate one Python producer offers (msg/s, MB/s), and 1 KB at 1,000 msg/s paced (p50/p99).
2. Pipeline: transcode, chunk and route from the shipped deploy/functions/*.yaml, under our localrun
   on our broker, then under Pulsar's functions worker on Pulsar (created with Pulsar's own
   bin/pulsar-admin from `python -m deploy.packaging` archives, as the real-Pulsar test tier does).
   H.264 640x480 frames made with tests/media_synth.py go straight onto `raw-video` from a
   pulsar-client producer (no ingress): first at a fixed modest rate (latency), then a backlog of
   frames published unpaced and drained (maximum frames/s). The shipped rendition ladder is used
   unchanged; transcode never upscales, so a 640x480 source yields the 360p rung only.

Per-hop latency comes from audit/room_audit.py (RoomAudit) over the frames' capture_ts /
t_transcode / t_chunk / t_route stamps and the messages' publish times. The bench stamps capture_ts =
t_ingress = the moment it hands a frame to the producer, so the "ingress" hop is zero by construction.
End to end = the moment this process's reader receives the 360p fragment minus capture_ts (one clock).

Both systems run in turn on the same machine (ours first, with Pulsar not yet started; then Pulsar),
so they never compete with each other, but other work on the machine does: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.room_audit import HOPS, LatencyStats, RoomAudit, input_frame, output_segment  # noqa: E402
from bench._broker_load import Limits  # noqa: E402
from bench._broker_report import Figures, machine  # noqa: E402
from bench._broker_servers import RunningBroker, process_cpu_seconds, run_ours  # noqa: E402
from bench.broker import SCENARIOS, limits_for, run_scenarios  # noqa: E402

NS = "persistent://public/wtpulsar/"
ROOMS_NS = "persistent://public/wtpulsar-rooms/"
RAW_VIDEO = NS + "raw-video"
PIPELINE_FUNCTIONS = ("transcode", "chunk", "route")  # moderate only handles chat: not on this path
SUBSCRIBED_TOPICS = ("raw-video", "encoded", "segments")
RENDITION = "360p"
WIDTH, HEIGHT = 640, 480
SOURCE_FRAMES = 120  # encoded once and cycled; a multiple of KEYINT so keyframes stay in step
KEYINT = 60
WARM_UP_SECONDS = 2.0
READ_POLL_MS = 200
THROUGHPUT_SCENARIOS = ("tput-1k", "tput-64k", "batch-1k")
LATENCY_SCENARIO = "lat-1k"
TARGET_THROUGHPUT_RATIO = 0.5
TARGET_E2E_RATIO = 1.5
OURS, PULSAR = "ours", "pulsar"


@dataclass(frozen=True)
class Settings:
    quick: bool
    limits: Limits
    streams: int
    fps: float
    """Frames per second per stream in the paced phase."""
    latency_seconds: float
    backlog_frames: int
    """Frames per stream in the unpaced phase."""
    stall_s: float
    """Give up waiting for a room's output after this long without a new fragment."""

    @property
    def skip(self) -> int:
        """Frames per stream left out of the latency figures (a new stream's decoder and encoder open)."""
        return max(1, int(self.fps))


@dataclass
class PipelineRun:
    system: str
    label: str
    paced_fps: float = 0.0
    """Offered frames/s of the paced phase, all streams together."""
    paced_sent: int = 0
    paced_audited: int = 0
    """Frames of the paced phase counted for latency (after the first `skip` of each stream)."""
    paced_lost: int = 0
    hops_ms: dict[str, dict[str, float] | None] = field(default_factory=dict)
    """room_audit hop -> {count, p50, p95, p99}, plus "to_viewer" (output publish time -> our reader)."""
    end_to_end_ms: dict[str, float] | None = None
    backlog_sent: int = 0
    backlog_out: int = 0
    backlog_missing: dict[str, list[list[int]]] = field(default_factory=dict)
    """Stream -> inclusive seq ranges of backlog frames that never reached the 360p output."""
    backlog_seconds: float = 0.0
    """First send of the backlog to the last 360p fragment received."""
    max_fps: float = 0.0
    function_cpu_ms_per_frame: float | None = None
    """CPU of the function instance processes (all of them) per frame, during the backlog."""
    broker_cpu_ms_per_frame: float | None = None
    """CPU of the broker process (Pulsar: the whole standalone JVM, worker included) per frame, backlog."""
    error: str | None = None


@dataclass(frozen=True)
class Received:
    props: dict[str, str]
    publish_ms: float
    key: str
    received_ms: float


class Tap(threading.Thread):
    """A reader on one topic that keeps every message it sees, with the wall time it arrived."""

    def __init__(self, client: Any, topic: str, from_start: bool) -> None:
        import pulsar

        super().__init__(name=f"tap-{topic.rsplit('/', 1)[-1]}", daemon=True)
        start = pulsar.MessageId.earliest if from_start else pulsar.MessageId.latest
        self.reader = client.create_reader(topic, start)
        self.rows: list[Received] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        import pulsar

        try:
            while not self.stop.is_set():
                try:
                    msg = self.reader.read_next(READ_POLL_MS)
                except pulsar.Timeout:
                    continue
                self.rows.append(Received(dict(msg.properties()), float(msg.publish_timestamp()),
                                          msg.partition_key(), time.time() * 1000.0))
        except BaseException as exc:  # reported with the figures
            self.error = exc

    def close(self) -> None:
        self.stop.set()
        self.join(READ_POLL_MS / 1000 * 5)
        try:
            self.reader.close()
        except Exception:  # the broker may already be gone
            pass


# ---- frames ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceFrame:
    data: bytes
    keyframe: bool


def make_source() -> list[SourceFrame]:
    """H.264 640x480 access units as a browser's realtime encoder makes them (media_synth)."""
    functions = str(ROOT / "functions")
    if functions not in sys.path:
        sys.path.insert(0, functions)
    from tests import media_synth

    chunks = media_synth.encode_chunks(media_synth.pattern_frames(SOURCE_FRAMES, WIDTH, HEIGHT), "h264", keyint=KEYINT)
    return [SourceFrame(c.data, c.keyframe) for c in chunks]


def frame_properties(room: str, stream: str, seq: int, frame: SourceFrame, fps: float, now_ms: float) -> dict[str, str]:
    """ENVELOPE.md properties of one raw frame; capture_ts = t_ingress = now (no browser, no ingress)."""
    stamp = f"{now_ms:.3f}"
    return {"kind": "video", "codec": "h264", "stream": stream, "room": room, "user": "bench", "seq": str(seq),
            "pts": str(int(seq * 1_000_000 / fps)), "capture_ts": stamp, "t_ingress": stamp,
            "width": str(WIDTH), "height": str(HEIGHT), "keyframe": "1" if frame.keyframe else "0"}


class Feeder:
    """One producer on raw-video; frames of several streams, paced or not."""

    def __init__(self, client: Any, source: list[SourceFrame]) -> None:
        self.producer = client.create_producer(RAW_VIDEO, batching_enabled=False, block_if_queue_full=True,
                                               send_timeout_millis=30_000)
        self.source = source
        self.failed = 0

    def _on_sent(self, res: Any, _msg_id: Any) -> None:
        import pulsar

        if res != pulsar.Result.Ok:
            self.failed += 1

    def send(self, room: str, stream: str, seq: int, fps: float) -> None:
        frame = self.source[seq % len(self.source)]
        now_ms = time.time() * 1000.0
        self.producer.send_async(frame.data, self._on_sent, properties=frame_properties(room, stream, seq, frame, fps, now_ms),
                                 partition_key=stream, event_timestamp=int(now_ms))

    def paced(self, room: str, streams: Sequence[str], fps: float, seconds: float) -> int:
        """`fps` frames/s per stream for `seconds`, the streams staggered within each frame interval."""
        count = max(1, int(seconds * fps))
        start = time.monotonic()
        for seq in range(count):
            for i, stream in enumerate(streams):
                due = start + (seq + i / len(streams)) / fps
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self.send(room, stream, seq, fps)
        self.producer.flush()
        return count

    def unpaced(self, room: str, streams: Sequence[str], count: int, fps: float) -> None:
        for seq in range(count):
            for stream in streams:
                self.send(room, stream, seq, fps)
        self.producer.flush()


def media_rows(tap: Tap) -> list[Received]:
    return [r for r in list(tap.rows) if r.props.get("segment_type") == "media"]


def delivered(tap: Tap) -> dict[str, set[int]]:
    """Frames (seq) per stream that reached the output topic inside a media fragment."""
    out: dict[str, set[int]] = {}
    for row in media_rows(tap):
        try:
            first, last = int(row.props["first_seq"]), int(row.props["last_seq"])
        except (KeyError, ValueError):
            continue
        out.setdefault(row.props.get("stream", row.key), set()).update(range(first, last + 1))
    return out


def wait_for_output(tap: Tap, streams: Sequence[str], count: int, stall_s: float) -> str | None:
    """Until every stream's frames 0..count-1 are out; a reason if the output went quiet first."""
    last_size, last_change = -1, time.monotonic()
    while True:
        got = delivered(tap)
        if all(len(got.get(s, set()) & set(range(count))) == count for s in streams):
            return None
        size = sum(len(v) for v in got.values())
        if size != last_size:
            last_size, last_change = size, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            return f"{size} of {count * len(streams)} frames out, none new for {stall_s:.0f} s"
        if tap.error is not None:
            return f"reader failed: {tap.error}"
        time.sleep(0.1)


def audit_room(room: str, inputs: Tap, output: Tap, skip: int) -> tuple[RoomAudit, list[float], list[float]]:
    """RoomAudit of the room's frames from seq `skip` on, end-to-end and to-viewer samples (ms)."""
    audit = RoomAudit(room)
    for row in list(inputs.rows):
        if row.props.get("room") == room and int(row.props.get("seq", "-1")) >= skip:
            frame = input_frame(row.props, row.publish_ms, row.key)
            if frame is not None:  # None is an end of stream, not a frame
                audit.add_input(frame)
    end_to_end: list[float] = []
    to_viewer: list[float] = []
    for row in media_rows(output):
        segment = output_segment(row.props, row.publish_ms, row.key)
        if segment is None or segment.first_seq < skip:
            continue
        audit.add_output(segment)
        if "capture_ts" in segment.stamps:
            end_to_end.append(row.received_ms - segment.stamps["capture_ts"])
        to_viewer.append(row.received_ms - row.publish_ms)
    return audit, end_to_end, to_viewer


def seq_ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for seq in seqs:
        if out and out[-1][1] == seq - 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def stats(samples: list[float]) -> dict[str, float] | None:
    s = LatencyStats.of(samples)
    return None if s is None else {"count": s.count, "p50": s.p50, "p95": s.p95, "p99": s.p99}


def cpu_of(pids: Sequence[int]) -> float | None:
    values = [process_cpu_seconds(pid) for pid in pids]
    return None if not values or any(v is None for v in values) else sum(v for v in values if v is not None)


def measure_pipeline(run: PipelineRun, service_url: str, settings: Settings, source: list[SourceFrame],
                     function_pids: Callable[[], list[int]], broker_pid: int, client_log: Path) -> PipelineRun:
    """Warm up, then the paced phase (latency), then the backlog (max frames/s), on running functions."""
    import pulsar

    token = uuid.uuid4().hex[:6]
    rooms = {phase: f"{phase}{token}" for phase in ("warm", "lat", "max")}
    # transcode keeps per-stream state keyed by the stream id alone: every phase gets its own ids.
    streams = {phase: [f"{room}cam{i}" for i in range(settings.streams)] for phase, room in rooms.items()}
    client = pulsar.Client(service_url, operation_timeout_seconds=30,
                           logger=pulsar.FileLogger(pulsar.LoggerLevel.Warn, str(client_log)))
    taps: list[Tap] = []
    try:
        inputs = Tap(client, RAW_VIDEO, from_start=False)
        outputs = {phase: Tap(client, f"{ROOMS_NS}room-{room}-video-{RENDITION}", from_start=True)
                   for phase, room in rooms.items()}
        taps = [inputs, *outputs.values()]
        for tap in taps:
            tap.start()
        feeder = Feeder(client, source)

        # Warm-up (untimed): every transcode instance opens its codecs, every hop has seen a message.
        warm = feeder.paced(rooms["warm"], streams["warm"], settings.fps, WARM_UP_SECONDS)
        why = wait_for_output(outputs["warm"], streams["warm"], warm, settings.stall_s * 3)
        if why is not None:
            raise RuntimeError(f"warm-up never came through the pipeline: {why}")

        run.paced_fps = settings.fps * settings.streams
        count = feeder.paced(rooms["lat"], streams["lat"], settings.fps, settings.latency_seconds)
        run.paced_sent = count * settings.streams
        why = wait_for_output(outputs["lat"], streams["lat"], count, settings.stall_s)
        audit, end_to_end, to_viewer = audit_room(rooms["lat"], inputs, outputs["lat"], settings.skip)
        report = audit.report()
        run.paced_lost = report.lost
        run.paced_audited = sum(t.frames_in for t in report.tracks)
        run.hops_ms = {hop: stats(values) for hop, values in audit.hop_samples().items()}
        run.hops_ms["to_viewer"] = stats(to_viewer)
        run.end_to_end_ms = stats(end_to_end)
        if why is not None:
            run.error = f"paced phase: {why}"

        pids = function_pids()
        cpu0, broker0 = cpu_of(pids), process_cpu_seconds(broker_pid)
        started_ms = time.time() * 1000.0
        feeder.unpaced(rooms["max"], streams["max"], settings.backlog_frames, settings.fps)
        run.backlog_sent = settings.backlog_frames * settings.streams
        why = wait_for_output(outputs["max"], streams["max"], settings.backlog_frames, settings.stall_s)
        cpu1, broker1 = cpu_of(pids), process_cpu_seconds(broker_pid)
        got = delivered(outputs["max"])
        run.backlog_out = sum(len(v & set(range(settings.backlog_frames))) for v in got.values())
        run.backlog_missing = {stream: [list(r) for r in seq_ranges(sorted(set(range(settings.backlog_frames))
                                                                           - got.get(stream, set())))]
                               for stream in streams["max"] if set(range(settings.backlog_frames)) - got.get(stream, set())}
        rows = media_rows(outputs["max"])
        if rows:
            run.backlog_seconds = (max(r.received_ms for r in rows) - started_ms) / 1000.0
            run.max_fps = run.backlog_out / run.backlog_seconds if run.backlog_seconds > 0 else 0.0
        if run.backlog_out:
            if cpu0 is not None and cpu1 is not None:
                run.function_cpu_ms_per_frame = (cpu1 - cpu0) / run.backlog_out * 1000
            if broker0 is not None and broker1 is not None:
                run.broker_cpu_ms_per_frame = (broker1 - broker0) / run.backlog_out * 1000
        if why is not None:
            run.error = "; ".join(filter(None, [run.error, f"backlog: {why}"]))
        if feeder.failed:
            run.error = "; ".join(filter(None, [run.error, f"{feeder.failed} frames failed to send"]))
    except Exception as exc:  # one side failing still leaves a row and the other side's figures
        run.error = "; ".join(filter(None, [run.error, f"{type(exc).__name__}: {exc}"]))
    finally:
        for tap in taps:
            tap.close()
        client.close()
    return run


# ---- the two systems ----------------------------------------------------------------------------

def wait_subscribed(admin_url: str, topics: Sequence[str], timeout: float = 180.0) -> None:
    """Every topic has a consumer (transcode and chunk subscribe at Latest: frames before that are skipped)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    missing = list(topics)
    while time.monotonic() < deadline:
        missing = []
        for topic in topics:
            try:
                with urllib.request.urlopen(f"{admin_url}/admin/v2/persistent/public/wtpulsar/{topic}/stats",
                                            timeout=10) as resp:
                    body = json.loads(resp.read())
            except (OSError, ValueError):
                body = {}
            if not any(sub.get("consumers") for sub in (body.get("subscriptions") or {}).values()):
                missing.append(topic)
        if not missing:
            return
        time.sleep(0.5)
    raise TimeoutError(f"no function subscribed to {missing} within {timeout:.0f} s")


def config_files() -> list[Path]:
    return [ROOT / "deploy" / "functions" / f"{name}.yaml" for name in PIPELINE_FUNCTIONS]


def ours_pipeline(settings: Settings, source: list[SourceFrame], work: Path, client_log: Path) -> PipelineRun:
    from localrun.config import source_py
    from localrun.supervisor import run_functions
    from tests.broker_process import BrokerProcess

    run = PipelineRun(OURS, "localrun on wtpulsar broker")
    with BrokerProcess(work / "ours-pipeline-broker") as broker:
        assert broker.proc is not None
        configs = config_files()
        supervisor = run_functions(configs, broker.service_url, str(work / "ours-state"), run_dir=str(work / "ours-run"),
                                   log_level="WARNING",
                                   py_overrides={c: source_py(c, ROOT / "functions") for c in configs})
        try:
            wait_subscribed(broker.admin_url, SUBSCRIBED_TOPICS)

            def pids() -> list[int]:
                return [p for p in (inst.pid for inst in supervisor.instances()) if p is not None]

            measure_pipeline(run, broker.service_url, settings, source, pids, broker.proc.pid, client_log)
        except Exception as exc:
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            supervisor.stop()
    return run


def build_archives(out: Path) -> dict[str, Path]:
    """The deployable zips for the worker's Python (CPython 3.11, glibc), as `make package` builds them."""
    import subprocess

    from realpulsar.distribution import cache_root
    from tests.realpulsar_support import WORKER_PLATFORM, WORKER_PYTHON_VERSION

    done = subprocess.run([sys.executable, "-m", "deploy.packaging", "--root", str(ROOT), "--out", str(out),
                           "--wheel-cache", str(cache_root() / "wheels"), "--python-version", WORKER_PYTHON_VERSION,
                           "--platform", WORKER_PLATFORM], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"deploy.packaging failed: {(done.stderr or done.stdout)[-1500:]}")
    return {name: out / f"{name}.zip" for name in PIPELINE_FUNCTIONS}


def pulsar_pipeline(standalone: Any, settings: Settings, source: list[SourceFrame], work: Path,
                    client_log: Path) -> PipelineRun:
    from tests.realpulsar_support import instance_pids, wait_running

    run = PipelineRun(PULSAR, "Pulsar functions worker on Pulsar")
    try:
        archives = build_archives(work / "archives")
        standalone.admin("namespaces", "create", "public/wtpulsar", check=True)
        standalone.admin("namespaces", "create", "public/wtpulsar-rooms", check=True)  # route's per-room outputs
        for name in PIPELINE_FUNCTIONS:  # absolute paths: bin/pulsar-admin changes into PULSAR_HOME
            standalone.admin("functions", "create", "--function-config-file", str(ROOT / "deploy" / "functions" / f"{name}.yaml"),
                             "--py", str(archives[name].resolve()), check=True)
        for name in PIPELINE_FUNCTIONS:
            wait_running(standalone, name, timeout=300)
        wait_subscribed(standalone.admin_url, SUBSCRIBED_TOPICS)

        def pids() -> list[int]:
            return [pid for name in PIPELINE_FUNCTIONS for pid in instance_pids(standalone, name)]

        measure_pipeline(run, standalone.service_url, settings, source, pids, standalone.proc.pid, client_log)
    except Exception as exc:
        run.error = "; ".join(filter(None, [run.error, f"{type(exc).__name__}: {exc}"]))
    return run


def wait_namespace(admin_url: str, namespace: str, timeout: float = 120.0) -> float:
    """Seconds until `namespace` is listed. A fresh standalone answers its health checks (and the
    worker's) before it has created public/default: a producer there gets TopicNotFound meanwhile."""
    import urllib.request

    started = time.monotonic()
    tenant = namespace.split("/", 1)[0]
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"{admin_url}/admin/v2/namespaces/{tenant}", timeout=10) as resp:
                if namespace in json.loads(resp.read()):
                    return time.monotonic() - started
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"namespace {namespace} not created within {timeout:.0f} s of the standalone being ready")


def start_pulsar(work: Path) -> Any:
    from realpulsar.cli import prepare
    from realpulsar.standalone import Standalone, random_ports

    home, worker, java_home = prepare(log=lambda line: print(f"[real-pulsar] {line}", file=sys.stderr, flush=True))
    standalone = Standalone(home=home, data_dir=work / "pulsar", java_home=java_home, worker_python=worker,
                            ports=random_ports(), log=lambda line: print(f"[real-pulsar] {line}", file=sys.stderr))
    standalone.start()
    return standalone


def pulsar_version() -> str:
    from realpulsar.distribution import DEFAULT_VERSION

    return DEFAULT_VERSION


# ---- report ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    target: str
    passed: bool | None
    """None: a figure is missing on one side."""
    ours: float | None
    pulsar: float | None


def by_scenario(rows: Sequence[Figures]) -> dict[str, Figures]:
    return {f.scenario: f for f in rows}


def verdicts(broker: dict[str, list[Figures]], pipeline: dict[str, PipelineRun]) -> list[Verdict]:
    ours, pulsar = by_scenario(broker.get(OURS, [])), by_scenario(broker.get(PULSAR, []))
    out = []
    o, p = ours.get(LATENCY_SCENARIO), pulsar.get(LATENCY_SCENARIO)
    o99, p99 = (o.p99_ms if o and not o.lost else None), (p.p99_ms if p and not p.lost else None)
    out.append(Verdict("embedded broker p99 <= Pulsar p99 at 1,000 msg/s", None if o99 is None or p99 is None else o99 <= p99,
                       o99, p99))
    for key in THROUGHPUT_SCENARIOS:
        o, p = ours.get(key), pulsar.get(key)
        orate = o.msg_per_s if o and not o.lost and not o.error else None
        prate = p.msg_per_s if p and not p.lost and not p.error else None
        title = next(s.title for s in SCENARIOS if s.key == key)
        out.append(Verdict(f"embedded broker throughput >= {TARGET_THROUGHPUT_RATIO}x Pulsar's ({title})",
                           None if orate is None or prate is None else orate >= TARGET_THROUGHPUT_RATIO * prate,
                           orate, prate))
    oe, pe = (pipeline[s].end_to_end_ms if s in pipeline else None for s in (OURS, PULSAR))
    o50, p50 = (oe or {}).get("p50"), (pe or {}).get("p50")
    out.append(Verdict(f"pipeline end-to-end p50 on Pulsar <= {TARGET_E2E_RATIO}x ours",
                       None if o50 is None or p50 is None else p50 <= TARGET_E2E_RATIO * o50, o50, p50))
    return out


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(ours: float | None, pulsar: float | None) -> str:
    return "-" if ours is None or pulsar is None or pulsar == 0 else f"{ours / pulsar:.2f}"


def side_by_side(title: str, rows: Sequence[tuple[str, float | None, float | None, int]], right: str) -> str:
    header = f"{title:<44}{'ours':>14}{right:>14}{'ours/Pulsar':>13}"
    lines = [header, "-" * len(header)]
    for label, ours, pulsar, digits in rows:
        lines.append(f"{label:<44}{_num(ours, digits):>14}{_num(pulsar, digits):>14}{_ratio(ours, pulsar):>13}")
    return "\n".join(lines)


def broker_table(broker: dict[str, list[Figures]]) -> str:
    ours, pulsar = by_scenario(broker.get(OURS, [])), by_scenario(broker.get(PULSAR, []))
    rows: list[tuple[str, float | None, float | None, int]] = []
    keys = list(dict.fromkeys([*ours, *pulsar]))
    for key in keys:
        o, p = ours.get(key), pulsar.get(key)
        shown = o or p
        assert shown is not None  # the key came from ours or pulsar
        title = shown.title
        if key == LATENCY_SCENARIO:
            rows += [(f"{title}: p50 ms", o.p50_ms if o else None, p.p50_ms if p else None, 2),
                     (f"{title}: p99 ms", o.p99_ms if o else None, p.p99_ms if p else None, 2)]
        else:
            rows += [(f"{title}: msg/s", o.msg_per_s if o else None, p.msg_per_s if p else None, 0),
                     (f"{title}: MB/s", o.mb_per_s if o else None, p.mb_per_s if p else None, 1)]
        rows += [("  lost + duplicated", o.lost + o.duplicated if o else None, p.lost + p.duplicated if p else None, 0),
                 ("  broker CPU us/msg", o.broker_cpu_us_per_msg if o else None, p.broker_cpu_us_per_msg if p else None, 0)]
    text = side_by_side("1. broker: produce -> consume", rows, "Pulsar")
    notes = [f"  {f.broker_label} / {f.title}: {why}" for f in [*ours.values(), *pulsar.values()]
             for why in (f.error, f.gave_up and f"gave up waiting: {f.gave_up}") if why]
    return text + ("\nnotes:\n" + "\n".join(notes) if notes else "")


HOP_LABELS = {"ingress": "capture -> t_ingress (0: no ingress here)", "input_topic": "t_ingress -> raw publish time (client, ms)",
              "transcode": "raw publish time -> t_transcode", "chunk": "t_transcode -> t_chunk",
              "route": "t_chunk -> t_route", "output": "t_route -> output publish time",
              "to_viewer": "output publish time -> our reader"}


def pipeline_table(pipeline: dict[str, PipelineRun]) -> str:
    o, p = pipeline.get(OURS), pipeline.get(PULSAR)

    def hop(run: PipelineRun | None, name: str, q: str) -> float | None:
        s = run.hops_ms.get(name) if run else None
        return None if s is None else s[q]

    def e2e(run: PipelineRun | None, q: str) -> float | None:
        return None if run is None or run.end_to_end_ms is None else run.end_to_end_ms[q]

    rows: list[tuple[str, float | None, float | None, int]] = []
    for name in [*HOPS, "to_viewer"]:
        rows.append((f"{HOP_LABELS[name]} p50 ms", hop(o, name, "p50"), hop(p, name, "p50"), 1))
    rows += [("end to end (capture -> our reader) p50 ms", e2e(o, "p50"), e2e(p, "p50"), 1),
             ("end to end p95 ms", e2e(o, "p95"), e2e(p, "p95"), 1),
             ("end to end p99 ms", e2e(o, "p99"), e2e(p, "p99"), 1),
             ("frames audited (paced)", o.paced_audited if o else None, p.paced_audited if p else None, 0),
             ("  lost", o.paced_lost if o else None, p.paced_lost if p else None, 0),
             ("max frames/s (backlog drained)", o.max_fps if o else None, p.max_fps if p else None, 1),
             ("  backlog frames out of sent", o.backlog_out if o else None, p.backlog_out if p else None, 0),
             ("  function CPU ms/frame (all instances)", o.function_cpu_ms_per_frame if o else None,
              p.function_cpu_ms_per_frame if p else None, 2),
             ("  broker CPU ms/frame", o.broker_cpu_ms_per_frame if o else None, p.broker_cpu_ms_per_frame if p else None, 2)]
    text = side_by_side("2. pipeline: transcode -> chunk -> route", rows, "on Pulsar")
    notes = [f"  {run.label}: {run.error}" for run in (o, p) if run is not None and run.error]
    notes += [f"  {run.label}: backlog frames never out: " + "; ".join(
        f"{stream} " + ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in ranges)
        for stream, ranges in run.backlog_missing.items()) for run in (o, p) if run is not None and run.backlog_missing]
    return text + ("\nnotes:\n" + "\n".join(notes) if notes else "")


def verdict_lines(found: Sequence[Verdict]) -> str:
    lines = []
    for v in found:
        mark = "n/a " if v.passed is None else ("MET " if v.passed else "MISS")
        lines.append(f"{mark} {v.target}: ours {_num(v.ours, 2)}, Pulsar {_num(v.pulsar, 2)}")
    return "\n".join(lines)


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


# ---- main -----------------------------------------------------------------------------------------

def settings_from(args: argparse.Namespace) -> Settings:
    quick = bool(args.quick)
    return Settings(quick=quick, limits=limits_for(quick, args.seconds), streams=args.streams, fps=args.fps,
                    latency_seconds=args.latency_seconds or (5.0 if quick else 30.0),
                    backlog_frames=args.backlog_frames or (60 if quick else 600),
                    stall_s=15.0 if quick else 30.0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.real_pulsar", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (1 s per broker scenario, 5 s paced, "
                                                             "60 backlog frames per stream): a smoke run")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("--seconds", type=float, default=None, metavar="N",
                        help="sending time per broker scenario (default 5, or 1 with --quick)")
    parser.add_argument("--only", choices=(OURS, PULSAR), help="run one side only (the verdicts are then n/a)")
    parser.add_argument("--streams", type=int, default=4, help="camera streams (default %(default)s)")
    parser.add_argument("--fps", type=float, default=8.0, help="frames/s per stream when paced (default %(default)s)")
    parser.add_argument("--latency-seconds", type=float, default=None, help="paced phase (default 30, quick 5)")
    parser.add_argument("--backlog-frames", type=int, default=None, help="unpaced frames per stream (default 600, "
                                                                          "quick 60)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.streams < 1 or args.fps <= 0 or (args.seconds is not None and args.seconds <= 0):
        print("--streams, --fps and --seconds must be positive", file=sys.stderr)
        return 2
    settings = settings_from(args)
    from realpulsar.distribution import DistributionError

    started = time.monotonic()
    load_start = load_average()
    broker: dict[str, list[Figures]] = {}
    pipeline: dict[str, PipelineRun] = {}
    source = make_source()
    with tempfile.TemporaryDirectory(prefix="bench-real-pulsar-") as tmp:
        work = Path(tmp)
        client_log = work / "pulsar-client.log"
        if args.only != PULSAR:
            print("ours: broker scenarios ...", file=sys.stderr, flush=True)
            with run_ours() as ours:
                broker[OURS] = run_scenarios(ours, settings.limits, client_log)
            print("ours: pipeline under localrun ...", file=sys.stderr, flush=True)
            pipeline[OURS] = ours_pipeline(settings, source, work, client_log)
        if args.only != OURS:
            print("Apache Pulsar: starting standalone ...", file=sys.stderr, flush=True)
            try:
                standalone = start_pulsar(work)
            except DistributionError as exc:
                print(f"real Pulsar unavailable: {exc}", file=sys.stderr)
                return 3
            try:
                assert standalone.proc is not None
                waited = wait_namespace(standalone.admin_url, "public/default")
                print(f"Apache Pulsar: public/default listed {waited:.1f} s after the standalone reported ready",
                      file=sys.stderr, flush=True)
                label = f"Apache Pulsar {pulsar_version()}"
                broker[PULSAR] = run_scenarios(RunningBroker(PULSAR, label, standalone.service_url,
                                                             standalone.proc.pid, standalone.output_path),
                                               settings.limits, client_log)
                print("Apache Pulsar: pipeline under its functions worker ...", file=sys.stderr, flush=True)
                pipeline[PULSAR] = pulsar_pipeline(standalone, settings, source, work, client_log)
            finally:
                standalone.stop()
    found = verdicts(broker, pipeline)
    info = machine()
    print(f"\nreal Pulsar benchmark: wtpulsar broker + localrun vs Apache Pulsar {pulsar_version()} standalone "
          f"(+ functions worker), one run, one after the other; {info['cpus']} CPUs; load average "
          f"{_num(load_start, 1)} at start, {_num(load_average(), 1)} at end (other work shares the machine)")
    print(f"broker: bench/broker.py scenarios, {settings.limits.seconds:g} s of sending each; "
          "both without fsync (ours --sync write, Pulsar's standalone bookie journalSyncData=false)\n")
    print(broker_table(broker))
    print(f"\npipeline: {settings.streams} streams of H.264 {WIDTH}x{HEIGHT} onto raw-video, paced at "
          f"{settings.fps:g} frames/s each for {settings.latency_seconds:g} s (first {settings.skip} frames of each "
          f"stream left out), then {settings.backlog_frames} frames per stream unpaced; shipped FunctionConfigs and "
          f"rendition ladder (no override: a {HEIGHT}-line source gets the {RENDITION} rung only). Publish times are "
          "set by the producing client in Pulsar's protocol, so the input_topic / output hops are client-side. "
          "context.publish batches with a 10 ms maximum delay (Pulsar's Python instance; localrun does the same), "
          "which is most of the chunk, route and to-viewer hops on both sides.\n")
    print(pipeline_table(pipeline))
    print("\ntargets:")
    print(verdict_lines(found))
    print(f"\ntook {time.monotonic() - started:.0f} s")
    if args.json:
        doc = {"benchmark": "real_pulsar", "machine": info, "pulsar_version": pulsar_version(),
               "settings": {"quick": settings.quick, "only": args.only, "broker_seconds": settings.limits.seconds,
                            "streams": settings.streams, "fps": settings.fps,
                            "latency_seconds": settings.latency_seconds, "backlog_frames": settings.backlog_frames,
                            "skip_frames": settings.skip, "rendition": RENDITION, "source": f"{WIDTH}x{HEIGHT} h264"},
               "load_average": {"start": load_start, "end": load_average()},
               "broker": {system: [asdict(f) for f in rows] for system, rows in broker.items()},
               "pipeline": {system: asdict(run) for system, run in pipeline.items()},
               "verdicts": [asdict(v) for v in found]}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
