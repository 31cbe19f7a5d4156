"""Ingress benchmark: publish latency and throughput over WebTransport and WebSocket, side by side.

    .venv/bin/python -m bench.ingress [--seconds 10] [--streams 30] [--fps 30] [--frame-bytes 4000]
                                      [--only paced-webtransport] [--aligned] [--broker-tmpfs]

Starts a broker (tests/broker_process.py BrokerProcess); then, per phase and transport, an ingress in its own
process and the load generator in ``--load-procs`` other processes (so neither the publishers' event
loops nor the measurement share the ingress's loop, and 30 QUIC connections do not share one loop):
  * paced: STREAMS publishers x FPS frames/s over SESSIONS sessions (one uni stream per 2 s GOP on
    WebTransport, keyframes 8x the frame size);
  * max: a few publishers sending as fast as flow control allows (32 unacked frames per stream).
Publish latency, as the ingress's requirement defines it: frame fully received by the ingress -> broker ack, measured
inside the ingress (publisher.latency_sink, split into ingress / broker receipt / event-loop parts), so
load-generator slowness is not counted. Beside it the publishers' own view is printed (frame written ->
ack arrived): it also counts what waits in QUIC/TCP send queues and kernel socket buffers, which is where
an ingress that cannot keep up shows (frames wait before the ingress ever "receives" them).

Independent publishers do not tick together: by default each session's frame clock is offset by
session/SESSIONS of a frame interval, and each stream's keyframe by stream/STREAMS of a GOP.
``--aligned`` sends every stream's frame at the same instant and all keyframes together (worst case).

The ingress's required figures, judged on the same run and printed as PASS/FAIL:
  1. WebTransport p99 < 5 ms at 30 streams x 30 fps, every frame broker-acked;
  2. WebTransport not slower than WebSocket: at that same paced load, WT p50 and p99 each at most the
     WebSocket figure + NOISE (max(25 %, 0.5 ms) of it), for the issue's latency and for the
     publishers' view alike. Max throughput is printed side by side for information; WebTransport
     (pure-Python QUIC) sustaining less than WebSocket there is reported, not hidden, and is not what
     "slower" means in target 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGET_P99_MS = 5.0
NOISE_FRACTION = 0.25  # target 2 tolerance: max(25 % of the WebSocket figure, NOISE_FLOOR_MS)
NOISE_FLOOR_MS = 0.5
CHROMIUM_DATAGRAM = 1350  # QUIC UDP payload Chromium sends (aioquic's default is 1200)
UNPACED_WINDOW = 32  # unacked frames per stream in the max phase
REPO = Path(__file__).resolve().parent.parent
SECRET = b"b" * 64


# ---- the ingress side (child process) ---------------------------------------------------------
async def serve(broker_url: str, state_dir: Path, samples_path: Path) -> None:
    from ingress.config import IngressConfig
    from ingress.publisher import BrokerPublisher
    from ingress.server import start_ingress
    from ingress.session import Limits

    config = IngressConfig(listen="127.0.0.1:0", http="127.0.0.1:0", broker_service_url=broker_url,
                           state_dir=state_dir, secret=SECRET, sessions_per_address=256,
                           limits=Limits(max_bitrate=500_000_000))
    handle = await start_ingress(config)
    publisher = handle.app.publisher
    assert isinstance(publisher, BrokerPublisher)  # the ingress publishes to the broker at broker_url
    publisher.latency_sink = []
    print(json.dumps({"wt_url": handle.wt_url, "http_url": handle.http_url}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    samples = list(publisher.latency_sink or [])
    await handle.stop()
    samples_path.write_text(json.dumps(samples))


# ---- the load side (child processes) ----------------------------------------------------------
@dataclass
class Spec:
    """What one load process drives: some sessions, each with its streams and clock offset."""

    transport: str
    urls: list[str]
    streams: list[list[str]]  # per session
    offsets: list[float]  # per session: seconds added to the frame clock
    key_phase: dict[str, int]  # stream -> seq offset of its keyframes
    fps: float | None
    seconds: float
    size: int
    gop: int


class Counter:
    def __init__(self) -> None:
        self.acked = 0
        self.sent = 0
        self.bytes = 0
        self.ticks = 0  # paced: frame ticks, and those that started over a frame interval late
        self.late_ticks = 0
        self.max_late = 0.0
        self.client_latencies: list[float] = []  # s, publisher write -> ack arrival (AckTracker)


def frame_bytes(seq: int, stream: str, size: int, keyframe: bool) -> bytes:
    from schemas.framing_codec import Codec, Frame, Kind, serialize

    payload = os.urandom(16) * ((size * (8 if keyframe else 1)) // 16)
    return serialize(Frame(Kind.VIDEO, Codec.H264, stream, seq, seq * 33_333, time.time() * 1000.0, payload,
                           keyframe, 640, 360))


class AckTracker:
    """Cumulative acks per stream as the publisher sees them, and for each acked frame how long it took
    from the publisher's write to the ack's arrival (client-observed latency, seconds)."""

    def __init__(self, streams: list[str]) -> None:
        self.next = dict.fromkeys(streams, 0)  # frames acked = seq of the last ack + 1
        self.written: dict[str, list[float]] = {s: [] for s in streams}  # monotonic write time per seq
        self.latencies: list[float] = []
        self._seen = 0

    def wrote(self, stream: str) -> None:
        self.written[stream].append(time.monotonic())

    def ack(self, stream: str, seq: int, now: float) -> None:
        if stream not in self.next:
            return
        times = self.written[stream]
        for k in range(self.next[stream], min(seq + 1, len(times))):
            self.latencies.append(now - times[k])
        self.next[stream] = max(self.next[stream], seq + 1)

    def update(self, records: list[Any]) -> int:
        """Read new records of a WebTransport client (its record list only grows); returns the lowest stream mark."""
        from schemas.framing_codec import Ack, AckStatus

        now = time.monotonic()
        for _, rec in records[self._seen:]:
            if isinstance(rec, Ack) and rec.status == AckStatus.OK:
                self.ack(rec.stream, rec.seq, now)
        self._seen = len(records)
        return min(self.next.values())


async def pace(start: float, seq: int, fps: float, counter: Counter) -> None:
    """Sleep until tick ``seq``; count ticks that are already over one frame interval late (the load
    generator could not keep up: its frames then arrive in bursts, which the report must show)."""
    late = time.monotonic() - (start + seq / fps)
    counter.ticks += 1
    counter.max_late = max(counter.max_late, late)
    if late > 1 / fps:
        counter.late_ticks += 1
    await asyncio.sleep(max(0.0, -late))


async def wt_publisher(url: str, streams: list[str], start: float, spec: Spec, counter: Counter) -> None:
    """One session carrying several streams: one frame per stream per tick, one transmit per tick."""
    from clients.webtransport import open_webtransport

    async with open_webtransport(url, timeout=30, max_datagram_size=CHROMIUM_DATAGRAM) as client:
        quic = client._quic
        acks = AckTracker(streams)
        sids: dict[str, int] = {}
        seq = 0

        progress = asyncio.Event()

        async def watch_acks() -> None:  # timestamps acks as they arrive, not at the next tick
            while True:
                await client.changed.wait()
                client.changed.clear()
                acks.update(client.state.records)
                progress.set()

        async def until_acked(target: int, timeout: float) -> None:
            while acks.update(client.state.records) < target:
                progress.clear()
                await asyncio.wait_for(progress.wait(), timeout)

        watcher = asyncio.create_task(watch_acks())
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        while time.monotonic() - start < spec.seconds:
            for stream in streams:
                key = (seq + spec.key_phase[stream]) % spec.gop == 0
                if key or stream not in sids:  # one uni stream per group of pictures (FRAMING.md)
                    if stream in sids:
                        quic.send_stream_data(sids[stream], b"", end_stream=True)
                    sids[stream] = client.open_stream()
                data = frame_bytes(seq, stream, spec.size, key)
                quic.send_stream_data(sids[stream], data)
                acks.wrote(stream)
                counter.sent += 1
                counter.bytes += len(data)
            client.transmit()
            seq += 1
            if spec.fps:
                await pace(start, seq, spec.fps, counter)
            else:
                await until_acked(seq - UNPACED_WINDOW, 10)
        for sid in sids.values():
            quic.send_stream_data(sid, b"", end_stream=True)
        client.transmit()
        await until_acked(seq, 120)
        watcher.cancel()
        counter.acked += sum(acks.next.values())
        counter.client_latencies += acks.latencies


async def ws_publisher(url: str, streams: list[str], start: float, spec: Spec, counter: Counter) -> None:
    import aiohttp

    from schemas.framing_codec import Ack, AckStatus, parse

    acks = AckTracker(streams)
    acked = acks.next
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        async def read_acks() -> None:
            async for msg in ws:
                rec = parse(msg.data)
                if isinstance(rec, Ack) and rec.status == AckStatus.OK:
                    acks.ack(rec.stream, rec.seq, time.monotonic())

        reader = asyncio.create_task(read_acks())
        seq = 0
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        while time.monotonic() - start < spec.seconds:
            for stream in streams:
                key = (seq + spec.key_phase[stream]) % spec.gop == 0
                data = frame_bytes(seq, stream, spec.size, key)
                acks.wrote(stream)
                await ws.send_bytes(data)
                counter.sent += 1
                counter.bytes += len(data)
            seq += 1
            if spec.fps:
                await pace(start, seq, spec.fps, counter)
            else:
                while seq - min(acked.values()) > UNPACED_WINDOW:
                    await asyncio.sleep(0.001)
        deadline = time.monotonic() + 120
        while min(acked.values()) < seq and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        counter.acked += sum(acked.values())
        counter.client_latencies += acks.latencies
        reader.cancel()


async def run_load(spec: Spec) -> dict[str, Any]:
    """Connect, tell the parent we are ready, start at the parent's 'go', report counts."""
    counter = Counter()
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    start0 = time.monotonic() + float(line or 0)
    publisher = wt_publisher if spec.transport == "webtransport" else ws_publisher
    await asyncio.gather(*(publisher(url, streams, start0 + offset, spec, counter)
                           for url, streams, offset in zip(spec.urls, spec.streams, spec.offsets, strict=True)))
    return {"sent": counter.sent, "acked": counter.acked, "bytes": counter.bytes, "ticks": counter.ticks,
            "late_ticks": counter.late_ticks, "max_late": counter.max_late, "end": time.time(),
            "client_ms": [round(v * 1000.0, 3) for v in counter.client_latencies]}


def load_main(spec_json: str, nice: int) -> int:
    spec = Spec(**json.loads(spec_json))
    if nice:
        # The publishers stand in for browsers on other machines: on this shared 2-core box they yield the
        # CPU to the ingress and the broker first (both transports alike).
        os.nice(nice)
    result = asyncio.run(run_load(spec))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(result), flush=True)
    return 0


# ---- the parent: processes, phases, report ----------------------------------------------------
def start_workers_process(broker_url: str, workdir: Path, workers: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """`wtpulsar ingress --workers N` (ingress/workers.py): no in-ingress latency samples, only the
    publishers' own view; its CPU is summed over the supervisor and its workers."""
    (workdir / "secret").write_bytes(SECRET)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wtpulsar.cli", "ingress", "--workers", str(workers), "--listen", "127.0.0.1:0",
         "--http", "127.0.0.1:0", "--broker-service-url", broker_url, "--state-dir", str(workdir / "state"),
         "--secret-file", str(workdir / "secret"), "--sessions-per-address", "256", "--max-bitrate", "500000000"],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("ingress: WebTransport") and "workers)" in line:
            words = line.split()
            return proc, {"wt_url": words[words.index("WebTransport") + 1], "http_url": words[words.index("HTTP") + 1]}
    raise RuntimeError(f"the ingress workers did not start ({proc.wait()})")


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its children (the workers), from /proc."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += cpu_seconds(p)
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return total


def start_ingress_process(broker_url: str, workdir: Path, name: str) -> tuple[subprocess.Popen[str], dict[str, str], Path]:
    samples = workdir / f"{name}-samples.json"
    profile = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"] + name] if os.environ.get("BENCH_PROFILE") else []
    proc = subprocess.Popen(
        [sys.executable, *profile, "-m", "bench.ingress", "--serve", "--broker", broker_url, "--state-dir",
         str(workdir / "state"), "--samples", str(samples)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("ingress process did not start")
    return proc, json.loads(line), samples


def stop_ingress_process(proc: subprocess.Popen[str], samples: Path) -> list[tuple[float, float, float]]:
    """The ingress's latency parts per acked frame, in ms (publisher.BrokerPublisher.latency_sink)."""
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(60)
    return [(a * 1000.0, b * 1000.0, c * 1000.0) for a, b, c in json.loads(samples.read_text())]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its threads, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def load_specs(transport: str, info: dict[str, str], sessions: int, streams: int, fps: float | None,
               args: argparse.Namespace, gop: int) -> list[Spec]:
    from ingress import tokens

    procs = max(1, min(args.load_procs, sessions))
    specs = [Spec(transport, [], [], [], {}, fps, args.seconds, args.frame_bytes, gop) for _ in range(procs)]
    for n in range(sessions):
        token = tokens.issue(SECRET, "benchroom", f"u{n}", "publisher", time.time())
        url = (f"{info['wt_url']}?token={token}" if transport == "webtransport"
               else f"{info['http_url']}/ws?token={token}")
        names = [f"s{i}" for i in range(streams) if i % sessions == n]
        spec = specs[n % procs]
        spec.urls.append(url)
        spec.streams.append(names)
        spec.offsets.append(0.0 if args.aligned or not fps else n / sessions / fps)
        for name in names:
            i = int(name[1:])
            spec.key_phase[name] = 0 if args.aligned else (i * gop) // streams
    return specs


@dataclass
class Row:
    transport: str
    load: str
    sent: int
    acked: int
    parts: list[tuple[float, float, float]]  # ms: received -> handed to client, -> receipt, -> loop
    elapsed: float
    mbytes: float
    ingress_cpu: float
    load_cpu: float
    broker_cpu: float
    late_fraction: float  # paced: share of load-generator ticks over a frame interval late
    max_late: float  # s
    client_ms: list[float]  # publisher write -> ack arrival, per acked frame

    @property
    def samples(self) -> list[float]:
        return [sum(p) for p in self.parts]

    def part(self, i: int) -> list[float]:
        return [p[i] for p in self.parts]

    @property
    def p50(self) -> float:
        return pct(self.samples, 50)

    @property
    def p99(self) -> float:
        return pct(self.samples, 99)


def run_phase(broker: Any, workdir: Path, transport: str, sessions: int, streams: int, fps: float | None,
              args: argparse.Namespace, gop: int) -> Row:
    name = f"{'paced' if fps else 'max'}-{transport}"
    if args.workers > 1:
        proc, info = start_workers_process(broker.service_url, workdir, args.workers)
        samples_path = None
    else:
        proc, info, samples_path = start_ingress_process(broker.service_url, workdir, name)
    loaders: list[subprocess.Popen[str]] = []
    try:
        for spec in load_specs(transport, info, sessions, streams, fps, args, gop):
            loaders.append(subprocess.Popen([sys.executable, "-m", "bench.ingress", "--load", json.dumps(spec.__dict__),
                                             "--load-nice", str(args.load_nice)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO))
        time.sleep(0.5)  # let the interpreters start before the clocks do
        cpu0, broker0, t0 = tree_cpu_seconds(proc.pid), cpu_seconds(broker.proc.pid), time.time()
        for loader in loaders:
            assert loader.stdin is not None
            loader.stdin.write(f"{args.connect_grace}\n")  # connect now, start sending after the grace
            loader.stdin.flush()
        results = []
        for loader in loaders:
            out, _ = loader.communicate(timeout=args.seconds + 300)
            results.append(json.loads(out.strip().splitlines()[-1]))
        end = max(r["end"] for r in results)
        cpu, broker_cpu = tree_cpu_seconds(proc.pid) - cpu0, cpu_seconds(broker.proc.pid) - broker0
    finally:
        for loader in loaders:
            if loader.poll() is None:
                loader.kill()
        if samples_path is None:
            proc.send_signal(signal.SIGTERM)  # the workers' supervisor stops them all
            proc.wait(60)
            samples = []
        else:
            samples = stop_ingress_process(proc, samples_path)
    # the window counted for rates starts when sending starts (after connecting), ends at the last ack
    elapsed = max(1e-6, end - t0 - args.connect_grace)
    load = f"{streams}x{fps:g}fps/{sessions}s" if fps else f"{streams} unpaced/{sessions}s"
    return Row(transport, load, sum(r["sent"] for r in results), sum(r["acked"] for r in results), samples,
               elapsed, sum(r["bytes"] for r in results) / 1e6, cpu, sum(r["cpu"] for r in results), broker_cpu,
               sum(r["late_ticks"] for r in results) / max(1, sum(r["ticks"] for r in results)),
               max(r["max_late"] for r in results), [v for r in results for v in r["client_ms"]])


def not_slower(wt: float, ws: float) -> bool:
    return wt <= ws + max(NOISE_FRACTION * ws, NOISE_FLOOR_MS)


def report(rows: list[Row], args: argparse.Namespace, gop: int, load_start: float) -> int:
    print(f"\ningress publish benchmark: {args.seconds:g} s per phase, delta frames {args.frame_bytes} B, "
          f"keyframe every {gop} frames (8x), {'aligned' if args.aligned else 'staggered'} publishers, "
          f"{args.load_procs} load processes at nice +{args.load_nice}, WT client datagrams {CHROMIUM_DATAGRAM} B")
    print("latency = frame fully received by the ingress -> broker ack, measured inside the ingress; broker data "
          f"on {'tmpfs (no fdatasync cost)' if args.broker_tmpfs else 'disk (fdatasync per group commit)'}")
    head = ("transport", "load", "sent", "acked", "p50 ms", "p99 ms", "max ms", "cli p50", "cli p99", "frames/s",
            "MB/s", "cpu us/fr", "ingr", "loadgen", "broker")
    print("{:<13} {:<18} {:>6} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>6} {:>9} {:>5} {:>7} {:>6}".format(*head))
    for r in rows:
        print(f"{r.transport:<13} {r.load:<18} {r.sent:>6} {r.acked:>6} {r.p50:>7.2f} {r.p99:>7.2f} "
              f"{max(r.samples or [float('nan')]):>7.2f} {pct(r.client_ms, 50):>7.2f} {pct(r.client_ms, 99):>7.2f} "
              f"{r.acked / r.elapsed:>8.0f} {r.mbytes / r.elapsed:>6.2f} "
              f"{r.ingress_cpu / max(1, r.acked) * 1e6:>9.0f} {r.ingress_cpu / r.elapsed:>5.2f} "
              f"{r.load_cpu / r.elapsed:>7.2f} {r.broker_cpu / r.elapsed:>6.2f}")
    print("p50/p99/max: the issue's publish latency (inside the ingress); cli p50/p99: what the publisher sees, "
          "frame written -> ack arrived (adds client QUIC/TCP queueing, socket buffers, the ack's way back)")
    print("latency parts, p50/p99 ms: ingress (frame received -> handed to pulsar-client), broker (-> receipt "
          "callback on the client's thread: network, broker, GIL), loop (-> handled on the event loop)")
    for r in rows:
        parts = "  ".join(f"{name} {pct(r.part(i), 50):.2f}/{pct(r.part(i), 99):.2f}"
                          for i, name in enumerate(("ingress", "broker", "loop")))
        gen = (f"  generator late ticks {r.late_fraction:.0%} (max {r.max_late * 1000:.0f} ms)"
               if "fps" in r.load else "")
        print(f"  {r.transport:<13} {r.load:<18} {parts}{gen}")
    print("frames/s, MB/s: broker-acked over sending + drain; cpu us/fr: ingress CPU (all threads) per acked frame;"
          " ingr/loadgen/broker: cores used (CPU s / wall s)")
    print(f"load average at the start: {load_start:.2f}, at the end: {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores)")
    paced = {r.transport: r for r in rows if "fps" in r.load}
    maxed = {r.transport: r for r in rows if "unpaced" in r.load}
    wt, ws = paced.get("webtransport"), paced.get("websocket")
    failed = False
    for r in paced.values():
        if r.late_fraction > 0.05:
            print(f"warning: the {r.transport} load generator started {r.late_fraction:.0%} of its ticks over a "
                  "frame late (CPU-starved machine): frames arrived in bursts, not at the paced rate")
    if args.workers > 1:
        print(f"ingress: {args.workers} workers (wtpulsar ingress --workers); targets 1 and 2 are not judged: the "
              "workers' own publish latency is not sampled, compare cli p50/p99 and cpu us/fr with a --workers 1 run")
        wt = ws = None
    if wt:
        complete = wt.acked == wt.sent
        ok1 = complete and wt.p99 < TARGET_P99_MS
        failed |= not ok1
        print(f"{'PASS' if ok1 else 'FAIL'} target 1: WebTransport p99 {wt.p99:.2f} ms < {TARGET_P99_MS:g} ms at "
              f"{wt.load}, {wt.acked}/{wt.sent} frames acked"
              + ("" if (args.streams, args.fps) == (30, 30.0) else " (the target is set at 30 x 30 fps)"))
    if wt and ws:
        cli = [pct(r.client_ms, q) for r in (wt, ws) for q in (50, 99)]
        ok2 = (not_slower(wt.p50, ws.p50) and not_slower(wt.p99, ws.p99) and not_slower(cli[0], cli[2])
               and not_slower(cli[1], cli[3]) and wt.acked == wt.sent)
        failed |= not ok2
        print(f"{'PASS' if ok2 else 'FAIL'} target 2: WebTransport not slower than WebSocket at {wt.load}: "
              f"p50 {wt.p50:.2f} vs {ws.p50:.2f} ms, p99 {wt.p99:.2f} vs {ws.p99:.2f} ms; publisher-observed "
              f"p50 {cli[0]:.2f} vs {cli[2]:.2f} ms, p99 {cli[1]:.2f} vs {cli[3]:.2f} ms "
              f"(each allowed: WS + max({NOISE_FRACTION:.0%}, {NOISE_FLOOR_MS} ms))")
    if maxed.get("webtransport") and maxed.get("websocket"):
        mwt, mws = maxed["webtransport"], maxed["websocket"]
        print(f"info: max throughput WebTransport {mwt.acked / mwt.elapsed:.0f} frames/s "
              f"({mwt.mbytes / mwt.elapsed:.2f} MB/s) vs WebSocket {mws.acked / mws.elapsed:.0f} frames/s "
              f"({mws.mbytes / mws.elapsed:.2f} MB/s); ingress CPU per frame {mwt.ingress_cpu / max(1, mwt.acked) * 1e6:.0f}"
              f" vs {mws.ingress_cpu / max(1, mws.acked) * 1e6:.0f} us")
    return 1 if failed and args.exit_code else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ingress", description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--streams", type=int, default=30)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--frame-bytes", type=int, default=4000, help="delta frame size (keyframes are 8x)")
    ap.add_argument("--sessions", type=int, default=5, help="sessions carrying the streams (paced phase)")
    ap.add_argument("--max-streams", type=int, default=4, help="streams in the max-rate phase (2 sessions)")
    ap.add_argument("--load-procs", type=int, default=2, help="load generator processes per phase")
    ap.add_argument("--load-nice", type=int, default=0,
                    help="nice increment of the load processes (they stand in for remote browsers)")
    ap.add_argument("--connect-grace", type=float, default=2.0, help="seconds to connect before sending starts")
    ap.add_argument("--aligned", action="store_true",
                    help="all publishers tick together and all keyframes coincide (worst case)")
    ap.add_argument("--only", action="append", choices=[f"{p}-{t}" for p in ("paced", "max")
                                                         for t in ("webtransport", "websocket")],
                    help="run only this phase (repeatable)")
    ap.add_argument("--broker-tmpfs", action="store_true",
                    help="broker data on /dev/shm: takes the broker's fdatasync out of the latency")
    ap.add_argument("--exit-code", action="store_true", help="exit 1 when a target fails")
    ap.add_argument("--workers", type=int, default=1,
                    help="run the ingress as `wtpulsar ingress --workers N`: only publisher-observed latency "
                         "(cli p50/p99) and CPU, summed over the workers")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--load", help=argparse.SUPPRESS)
    ap.add_argument("--broker", help=argparse.SUPPRESS)
    ap.add_argument("--state-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--samples", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.broker, args.state_dir, args.samples))
        return 0
    if args.load:
        return load_main(args.load, args.load_nice)

    import shutil
    import tempfile

    from tests.broker_process import BrokerProcess

    load_start = os.getloadavg()[0]
    gop = int(args.fps * 2) or 60
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="wtpulsar-bench-") as tmp:
        workdir = Path(tmp)
        shm = Path(tempfile.mkdtemp(dir="/dev/shm")) if args.broker_tmpfs else None
        broker = BrokerProcess((shm or workdir) / "broker-data")
        broker.start()
        try:
            phases = (("paced", args.sessions, args.streams, args.fps), ("max", 2, args.max_streams, None))
            for phase, sessions, streams, fps in phases:
                for transport in ("webtransport", "websocket"):
                    if args.only and f"{phase}-{transport}" not in args.only:
                        continue
                    print(f"bench: {phase}-{transport} ... (load {os.getloadavg()[0]:.2f})", file=sys.stderr,
                          flush=True)
                    rows.append(run_phase(broker, workdir, transport, sessions, streams, fps, args, gop))
        finally:
            broker.close()
            if shm is not None:
                shutil.rmtree(shm, ignore_errors=True)
    return report(rows, args, gop, load_start)


if __name__ == "__main__":
    sys.exit(main())
