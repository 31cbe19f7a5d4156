"""Media pipeline benchmark: transcode (two renditions) + chunk vs a bare PyAV loop.

    .venv/bin/python -m bench.pipeline [--quick] [--codec h264|vp8] [--frames N]

Synthetic 640×480@30 frames are encoded like a browser would (media_synth), then in the same
run and on the same frames:
  * pipeline: TranscodeFunction -> ChunkFunction through the in-memory Context (no broker), as
    the Pulsar instance calls them: one message at a time, publishes completed at once;
  * baseline: a bare PyAV loop doing the same media work (decode, scale to each rung, libx264
    with the same settings), nothing else.
It prints frames/s of both (required: pipeline >= 0.8x baseline), the per-frame latency
added by transcode+chunk (p50/p99; target p50 < 15 ms), and how many 30 fps streams two cores
sustain, measured by running interleaved streams in two worker processes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
LADDER: list[dict[str, Any]] = [{"name": "360p", "height": 360, "bitrate": 800_000}, {"name": "240p", "height": 240, "bitrate": 400_000}]
FPS = 30
NS = "persistent://public/wtpulsar/"


def _setup_path() -> None:
    for path in (str(ROOT / "functions"), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)


def _load(name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_functions_{name}", ROOT / "functions" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def make_chunks(codec: str, count: int) -> list[tuple[bytes, bool, int]]:
    _setup_path()
    from tests import media_synth

    frames = media_synth.pattern_frames(count)
    return [(c.data, c.keyframe, c.pts) for c in media_synth.encode_chunks(frames, codec, keyint=2 * FPS)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_pipeline(chunks: list[tuple[bytes, bool, int]], codec: str, streams: int = 1) -> tuple[float, list[float], int]:
    """Frames per CPU-second, per-frame wall latency (ms) and segments out, for `streams` interleaved copies.

    Throughput is counted in process CPU time so that other jobs on a shared box do not show up
    as our slowness; latency is wall time, as a viewer would feel it."""
    _setup_path()
    from tests.fake_context import FakeContext

    transcode, chunk = _load("transcode"), _load("chunk")
    tfn, cfn = transcode.TranscodeFunction(), chunk.ChunkFunction()
    tctx = FakeContext(user_config={"renditions": LADDER}, function_name="transcode")
    cctx = FakeContext(user_config={"fragment_frames": 1}, function_name="chunk")
    latencies: list[float] = []
    segments = 0
    started = time.process_time()
    for seq, (data, key, pts) in enumerate(chunks):
        for s in range(streams):
            stream = f"cam{s}"
            props = {"kind": "video", "codec": codec, "stream": stream, "room": "bench", "seq": str(seq),
                     "pts": str(pts), "capture_ts": str(1_700_000_000_000 + pts // 1000),
                     "keyframe": "1" if key else "0", "width": "640", "height": "480"}
            t0 = time.perf_counter()
            tctx.set_message(topic=NS + "raw-video", key=stream, properties=props)
            tfn.process(data, tctx)
            outputs, tctx.published = tctx.published, []
            for out in outputs:
                cctx.set_message(topic=out.topic, key=out.key or "", properties=out.properties,
                                 event_time=out.event_timestamp or 0)
                cfn.process(out.payload, cctx)
            segments += len(cctx.published)
            cctx.published.clear()
            latencies.append((time.perf_counter() - t0) * 1000.0)
    elapsed = time.process_time() - started
    dead = [p for p in tctx.published + cctx.published if p.topic.endswith("dead-letter")]
    if dead:
        raise RuntimeError(f"pipeline dead-lettered {len(dead)} messages: {dead[0].properties.get('reason')}")
    return len(chunks) * streams / elapsed, latencies, segments


def run_baseline(chunks: list[tuple[bytes, bool, int]], codec: str) -> tuple[float, list[float]]:
    """The same decode + scale + encode work in a bare PyAV loop (same encoder and scaler settings,
    a cached swscale context per rung as a careful hand-written loop would have)."""
    from fractions import Fraction

    import av
    from av.video.frame import PictureType
    from av.video.reformatter import VideoReformatter

    decoder = cast(av.VideoCodecContext, av.CodecContext.create({"jpeg": "mjpeg"}.get(codec, codec), "r"))
    decoder.thread_type = "SLICE"
    encoders = []
    for rung in LADDER:
        height = int(rung["height"])
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = height * 4 // 3, height, "yuv420p"
        ctx.time_base, ctx.framerate, ctx.bit_rate = Fraction(1, 1_000_000), Fraction(FPS), int(rung["bitrate"])
        ctx.thread_count = 1
        ctx.options = {"preset": "veryfast", "tune": "zerolatency", "profile": "baseline", "forced-idr": "1",
                       "x264-params": "keyint=300:min-keyint=1:scenecut=0:bframes=0"}
        encoders.append((ctx, VideoReformatter()))
    latencies: list[float] = []
    started = time.process_time()
    for data, key, pts in chunks:
        t0 = time.perf_counter()
        for frame in decoder.decode(av.Packet(data)):
            for ctx, reformatter in encoders:
                scaled = reformatter.reformat(frame, width=ctx.width, height=ctx.height, format="yuv420p",
                                              interpolation="AREA")
                scaled.pts = pts
                scaled.pict_type = PictureType.I if key else PictureType.NONE
                for packet in ctx.encode(scaled):
                    bytes(packet)
        latencies.append((time.perf_counter() - t0) * 1000.0)
    return len(chunks) / (time.process_time() - started), latencies


def _worker(args: tuple[list[tuple[bytes, bool, int]], str, int]) -> float:
    chunks, codec, streams = args
    fps, _, _ = run_pipeline(chunks, codec, streams)
    return fps


def streams_on_two_cores(chunks: list[tuple[bytes, bool, int]], codec: str, per_worker: int) -> tuple[float, float]:
    """Frames/s of two worker processes (one per core), each with `per_worker` interleaved streams:
    the sum of their frames per CPU-second, and the wall time the run took."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        started = time.perf_counter()
        rates = pool.map(_worker, [(chunks, codec, per_worker)] * 2)
        wall = time.perf_counter() - started
    return sum(rates), wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="90 frames instead of 300, smaller concurrency run")
    parser.add_argument("--codec", choices=["h264", "vp8", "vp9"], default="h264", help="what the browser sends")
    parser.add_argument("--frames", type=int, default=0, help="frames per stream (default 300, quick 90)")
    parser.add_argument("--streams-per-core", type=int, default=0, help="interleaved streams per worker (default 4)")
    args = parser.parse_args(argv)
    count = args.frames or (90 if args.quick else 300)
    per_worker = args.streams_per_core or (2 if args.quick else 4)

    chunks = make_chunks(args.codec, count)
    run_pipeline(chunks[:10], args.codec)  # warm up imports and encoder setup
    run_baseline(chunks[:10], args.codec)
    # Alternate the two a few times and keep each one's best round: on a shared box even CPU time
    # moves with cache and frequency pressure from other jobs.
    best_pipe: tuple[float, list[float], int] = (0.0, [], 0)
    best_base: tuple[float, list[float]] = (0.0, [])
    for _ in range(2 if args.quick else 3):
        base = run_baseline(chunks, args.codec)
        pipe = run_pipeline(chunks, args.codec)
        best_base = max(best_base, base, key=lambda r: r[0])
        best_pipe = max(best_pipe, pipe, key=lambda r: r[0])
    (base_fps, base_lat), (pipe_fps, pipe_lat, segments) = best_base, best_pipe
    agg_fps, wall = streams_on_two_cores(chunks, args.codec, per_worker)
    streams = agg_fps / FPS

    ladder = "+".join(r["name"] for r in LADDER)
    print(f"\nmedia pipeline: {count} frames 640x480@{FPS} {args.codec} -> {ladder} (libx264 veryfast, zerolatency)")
    print(f"{'measure':<46}{'pipeline':>11}{'bare PyAV':>11}{'ratio':>7}  target")
    print("-" * 84)
    print(f"{'frames per CPU-second, one stream':<46}{pipe_fps:>11.1f}{base_fps:>11.1f}{pipe_fps / base_fps:>7.2f}  >= 0.80")
    for name, q in (("p50", 0.50), ("p99", 0.99)):
        p, b = percentile(pipe_lat, q), percentile(base_lat, q)
        target = "< 15 ms" if name == "p50" else ""
        label = f"latency added per frame {name} (ms)"
        print(f"{label:<46}{p:>11.2f}{b:>11.2f}{p / b:>7.2f}  {target}")
    label = f"frames per CPU-s, 2 processes x {per_worker} streams"
    print(f"{label:<46}{agg_fps:>11.1f}")
    print(f"{'=> real-time 30 fps streams on two cores':<46}{streams:>11.1f}{'':>18}  (report)")
    wall_fps = 2 * per_worker * len(chunks) / wall
    print(f"{'   same run in wall-clock frames/s (streams)':<46}{wall_fps:>11.1f}{'(' + format(wall_fps / FPS, '.1f') + ')':>11}"
          "         incl. process start; other jobs share the box")
    print("\nthroughput in process CPU time (the box may be shared); latency in wall time:")
    print("latency = transcode.process() start to the last fragment published by chunk (pipeline), or")
    print("decode start to the last rung encoded (bare loop); publishes complete at once (no broker).")
    print(f"\nsegments out: {segments} (init + one fragment per frame per rendition); concurrency run {wall:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
