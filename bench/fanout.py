"""Fan-out benchmark: one synthetic publisher, N viewers on one ingress process, N stepped up.

    .venv/bin/python -m bench.fanout [--quick] [--steps 10,25,50,...] [--seconds 5] [--json FILE]
                                     [--only webtransport|websocket] [--workers 1 | --workers 1,2]
                                     [--quic-stack aioquic] [--quic-stack qh3] [--viewer-stack aioquic|qh3]

The publisher stands in for route's output: it writes a room's output topics directly (a 720p and a
360p rendition of ~1 Mbit/s each, 30 fps fragments with a keyframe fragment every 2 s; 50 audio
packets/s; one chat message/s), stamping each message's ``t_route`` as route does (ENVELOPE.md).
Viewers alternate renditions and take video, audio and chat. Per transport (WebTransport, then
WebSocket, each on a fresh ingress) the viewers are added in steps; after each step's viewers have
joined, a window of ``--seconds`` is measured:

  viewers served (got >= 90 % of the video frames published in the window), delivered frames/s and
  Mbit/s (every DELIVERY record the viewers got), egress CPU per delivered frame and per viewer (the
  ingress process, all threads, from /proc), delivery latency route output -> viewer p50/p99
  (``t_route`` to the viewer's parse of the record), frames skipped by the slow-viewer policy (the
  ingress's wtpulsar_egress_skipped_total) and the ingress's RSS.

A step passes when every viewer is served, p99 < 50 ms and nothing was skipped; steps stop at the
first that fails. On a machine with 2 or more cores the ingress is pinned to CPU 0 and everything
else (broker, publisher, viewers) to CPU 1 (taskset), so the ingress has exactly one core: its
largest passing N is its viewers per core. The load generator's CPU is printed apart; when it used
its whole core the limit found may be the generator's, and the report says so.
The last line: ``fanout: N viewers per core (webtransport), M (websocket)``.

The WebTransport viewers run on qh3 clients (bench/_qh3_viewer.py); ``--viewer-stack aioquic`` runs
them on aioquic ones (clients/webtransport.py): the same records, read the same way, for several times
the load generator's CPU. ``--workers 1,2`` (a list) runs every transport once per worker count, the first count
being the baseline whose rows keep their names (others are labelled ``<transport>@<N>w``), measures
each count's WebTransport publish rate with ``bench.ingress``'s max-webtransport phase, and prints a
``workers:`` table of both side by side before the last line, which keeps reporting the baseline. With a
list the viewers default to qh3, worker i is pinned to CPU i (mod the cores) and the load stays on CPU 1.
``BENCH_PROFILE=FILE`` profiles the (one-worker) ingress by its event loop thread's CPU time
(bench/_cpu_profile.py); ``BENCH_UDP_GSO=0`` and ``BENCH_MAX_DATAGRAM=N`` set the ingress's
``udp_gso`` and ``max_datagram_size`` for before/after comparisons (docs/fanout.md §6).

``--quic-stack`` (repeatable; default the ingress's default, qh3) runs the WebTransport part once per QUIC stack of the
ingress (ingress/quic_stack.py), each on a fresh ingress, so one run shows aioquic and qh3 side by side
with WebSocket as the baseline. Rows of a stack other than the default are labelled ``webtransport:<stack>``
(the default's keep ``webtransport``), and each gets its own ``fanout: N viewers per core (...)`` line
before the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ingress.quic_stack import DEFAULT_STACK

REPO = Path(__file__).resolve().parent.parent
SECRET = b"f" * 64
ROOM = "fanout"
RENDITIONS = ("720p", "360p")
FPS = 30
GOP_FRAMES = 60  # a keyframe fragment every 2 s
KEY_FACTOR = 8  # a keyframe fragment is this many times a delta fragment
BITRATE = 1_000_000  # per rendition, bit/s
AUDIO_PER_S, AUDIO_BYTES = 50, 160  # 20 ms Opus packets at 64 kbit/s
P99_LIMIT_MS = 50.0
SERVED_FRACTION = 0.9
FULL_STEPS = (10, 25, 50, 100, 150, 200, 300, 400, 500)
QUICK_STEPS = (5, 20, 40)
MEASURED_CPU, LOAD_CPU = 0, 1


def delta_bytes() -> int:
    """Delta fragment size so that a GOP (one keyframe fragment of KEY_FACTOR deltas) is BITRATE."""
    return int(BITRATE / 8 * GOP_FRAMES / FPS / (GOP_FRAMES - 1 + KEY_FACTOR))


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its threads, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the workers of `wtpulsar ingress --workers N`), from /proc."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return out


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in tree(pid) if Path(f"/proc/{p}").exists())


def tree_rss_mb(pid: int) -> float:
    return sum(rss_mb(p) for p in tree(pid) if Path(f"/proc/{p}").exists())


def pinning() -> bool:
    return (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None


def pin_all_threads(pid: int, cpu: int) -> None:
    subprocess.run(["taskset", "-a", "-cp", str(cpu), str(pid)], check=True, stdout=subprocess.DEVNULL)


# ---- the ingress (child process, CPU 0) -------------------------------------------------------
async def serve(broker_url: str, state_dir: Path, quic_stack: str) -> None:
    from ingress.config import IngressConfig
    from ingress.server import start_ingress

    config = IngressConfig(listen="127.0.0.1:0", http="127.0.0.1:0", broker_service_url=broker_url,
                           state_dir=state_dir, secret=SECRET, sessions_per_address=100_000,
                           max_sessions=100_000, quic_stack=quic_stack,
                           udp_gso=os.environ.get("BENCH_UDP_GSO", "1") != "0",  # A/B of ingress/udp_batch.py
                           max_datagram_size=int(os.environ.get("BENCH_MAX_DATAGRAM", "0")) or None)
    handle = await start_ingress(config)
    print(json.dumps({"wt_url": handle.wt_url, "http_url": handle.http_url}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await handle.stop()


# ---- the viewers (child process, CPU 1) -------------------------------------------------------
@dataclass
class ViewerCount:
    video: int = 0
    records: int = 0
    bytes: int = 0
    missing: int = 0  # video frames the viewer never got (gaps in first_seq): what slow-viewer skips cost it
    last_seq: int = -1
    closed: bool = False


@dataclass
class Tally:
    """What all viewers of the load process got since the last reset."""

    counts: list[ViewerCount] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # ms, t_route -> parsed by the viewer

    def got(self, viewer: ViewerCount, record: Any) -> None:
        from schemas.framing_codec import Delivery, Kind

        if not isinstance(record, Delivery):
            return
        viewer.records += 1
        viewer.bytes += len(record.payload)
        if record.kind == Kind.VIDEO:
            viewer.video += 1
            seq = record.properties.get("first_seq")
            if seq is not None:
                n = int(seq)
                if viewer.last_seq >= 0 and n > viewer.last_seq + 1:
                    viewer.missing += n - viewer.last_seq - 1
                viewer.last_seq = max(viewer.last_seq, n)
        stamp = record.properties.get("t_route")
        if stamp:
            self.latencies.append(time.time() * 1000.0 - float(stamp))

    def reset(self) -> None:
        for c in self.counts:
            c.video = c.records = c.bytes = c.missing = 0
        self.latencies = []


class _CountingRecords(list):  # type: ignore[type-arg]  # stands in for the client's list of any records
    """Replaces a WebTransport client's record list: each record is counted as it is parsed, none is kept."""

    def __init__(self, tally: Tally, viewer: ViewerCount) -> None:
        super().__init__()
        self.tally, self.viewer = tally, viewer

    def append(self, item: Any) -> None:
        self.tally.got(self.viewer, item[1])


async def wt_viewer(url: str, tally: Tally, viewer: ViewerCount, joined: asyncio.Future[bool],
                    stack: str = "aioquic") -> None:
    from clients.webtransport import open_webtransport

    if stack == "qh3":
        await _qh3_wt_viewer(url, tally, viewer, joined)
        return
    try:
        async with open_webtransport(url, timeout=60, idle_timeout=60) as client:
            client.state.records = _CountingRecords(tally, viewer)
            if not joined.done():
                joined.set_result(client.state.status == 200)
            await client.wait_for(lambda s: s.closed is not None, timeout=1e9)
    except Exception:
        if not joined.done():
            joined.set_result(False)
    finally:
        viewer.closed = True


async def _qh3_wt_viewer(url: str, tally: Tally, viewer: ViewerCount, joined: asyncio.Future[bool]) -> None:
    """The same viewer on a qh3 client (bench/_qh3_viewer.py): much cheaper for the load generator."""
    from bench._qh3_viewer import view

    def answered(ok: bool) -> None:
        if not joined.done():
            joined.set_result(ok)

    try:
        await view(url, lambda record: tally.got(viewer, record), answered, timeout=60)
    except Exception:
        answered(False)
    finally:
        viewer.closed = True


async def ws_viewer(http: Any, url: str, tally: Tally, viewer: ViewerCount, joined: asyncio.Future[bool]) -> None:
    import aiohttp

    from schemas.framing_codec import FramingError, parse

    try:
        async with http.ws_connect(url, max_msg_size=0, compress=0) as ws:
            if not joined.done():
                joined.set_result(True)
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    break
                try:
                    tally.got(viewer, parse(msg.data))
                except FramingError:
                    pass
    except Exception:
        if not joined.done():
            joined.set_result(False)
    finally:
        viewer.closed = True


async def run_load(transport: str, info: dict[str, str], viewer_stack: str = "qh3") -> None:
    """Commands on stdin, one JSON line each: {"add": k}, {"reset": 1}, {"report": 1}; EOF ends."""
    import aiohttp

    from ingress import tokens

    tally = Tally()
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        if "add" in cmd:
            joins = []
            for _ in range(cmd["add"]):
                n = len(tally.counts)
                token = tokens.issue(SECRET, ROOM, f"v{n}", "viewer", time.time())
                query = f"token={token}&mode=view&rendition={RENDITIONS[n % 2]}&kinds=video,audio,chat"
                viewer = ViewerCount()
                tally.counts.append(viewer)
                joined: asyncio.Future[bool] = loop.create_future()
                joins.append(joined)
                if transport == "webtransport":
                    tasks.append(asyncio.create_task(wt_viewer(f"{info['wt_url']}?{query}", tally, viewer, joined,
                                                                       viewer_stack)))
                else:
                    tasks.append(asyncio.create_task(ws_viewer(http, f"{info['http_url']}/ws?{query}", tally,
                                                               viewer, joined)))
                if len(joins) % 10 == 0:
                    await asyncio.sleep(0.05)  # do not stampede the handshakes
            ok = await asyncio.gather(*joins)
            reply: dict[str, Any] = {"joined": sum(ok), "failed": len(ok) - sum(ok)}
        elif "reset" in cmd:
            tally.reset()
            reply = {"cpu": _own_cpu()}
        else:
            reply = {"cpu": _own_cpu(), "video": [c.video for c in tally.counts],
                     "records": sum(c.records for c in tally.counts), "bytes": sum(c.bytes for c in tally.counts),
                     "missing": sum(c.missing for c in tally.counts),
                     "closed": sum(c.closed for c in tally.counts), "p50": pct(tally.latencies, 50),
                     "p99": pct(tally.latencies, 99), "max": max(tally.latencies, default=float("nan"))}
        print(json.dumps(reply), flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await http.close()


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---- the publisher (thread of the parent, CPU 1) ----------------------------------------------
class SyntheticPublisher:
    """Writes the room's output topics as route would: init segments first, then paced media and chat."""

    def __init__(self, service_url: str, tenant: str = "public", namespace: str = "wtpulsar") -> None:
        import pulsar

        self.client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
        from ingress.names import room_topic_url

        prefix = room_topic_url(tenant, namespace, f"room-{ROOM}-")  # where route writes them
        self.video = {r: self.client.create_producer(prefix + f"video-{r}", batching_enabled=False)
                      for r in RENDITIONS}
        self.audio = self.client.create_producer(prefix + "audio", batching_enabled=False)
        self.chat = self.client.create_producer(prefix + "chat", batching_enabled=False)
        self.video_sent = dict.fromkeys(RENDITIONS, 0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="publisher")
        self.errors = 0

    def _send(self, producer: Any, payload: bytes, props: dict[str, str]) -> None:
        props["t_route"] = f"{time.time() * 1000.0:.3f}"
        producer.send_async(payload, self._done, properties=props)

    def _done(self, result: Any, msg_id: Any) -> None:
        import pulsar

        if result != pulsar.Result.Ok:
            self.errors += 1

    def start(self) -> None:
        common = {"room": ROOM, "user": "pub", "codec": "h264"}
        for r in RENDITIONS:
            self._send(self.video[r], b"\x00" * 700, dict(common, stream="cam", rendition=r, segment_type="init"))
        self._send(self.audio, b"\x00" * 500, {"room": ROOM, "user": "pub", "stream": "mic", "kind": "audio",
                                               "segment_type": "init"})
        self.thread.start()

    def _run(self) -> None:
        delta = delta_bytes()
        start = time.monotonic()
        frame = audio = chat = 0
        while not self.stop.is_set():
            now = time.monotonic() - start
            while frame <= now * FPS:
                key = frame % GOP_FRAMES == 0
                payload = os.urandom(16) * ((delta * (KEY_FACTOR if key else 1)) // 16)
                for r in RENDITIONS:
                    self._send(self.video[r], payload, {
                        "room": ROOM, "user": "pub", "stream": "cam", "rendition": r, "segment_type": "media",
                        "keyframe": "1" if key else "0", "first_seq": str(frame), "last_seq": str(frame)})
                    self.video_sent[r] += 1
                frame += 1
            while audio <= now * AUDIO_PER_S:
                self._send(self.audio, os.urandom(AUDIO_BYTES), {
                    "room": ROOM, "user": "pub", "stream": "mic", "kind": "audio", "segment_type": "media",
                    "first_seq": str(audio), "last_seq": str(audio)})
                audio += 1
            while chat <= now:
                body = json.dumps({"text": f"message {chat}", "msg_id": f"pub.1.{chat}"}).encode()
                self._send(self.chat, body, {"room": ROOM, "user": "pub", "stream": "chat", "seq": str(chat)})
                chat += 1
            time.sleep(0.002)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.client.close()


# ---- the parent: steps, report ----------------------------------------------------------------
@dataclass
class Step:
    transport: str
    viewers: int
    served: int
    failed_joins: int
    frames_per_s: float
    mbit_per_s: float
    cpu_us_per_frame: float
    cpu_ms_per_viewer_s: float  # ingress CPU ms per second per viewer
    ingress_cores: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    skipped: int  # the ingress's skip counter (-1: not read, several workers)
    missing: int  # video frames viewers saw missing (gaps in first_seq)
    rss_mb: float
    load_cores: float  # viewers' process
    publisher_cores: float  # the parent (publisher thread) and the broker

    @property
    def passed(self) -> bool:
        return (self.served == self.viewers and self.failed_joins == 0 and self.p99_ms < P99_LIMIT_MS
                and self.skipped <= 0 and self.missing == 0)


def skipped_total(http_url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{http_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("wtpulsar_egress_skipped_total{")))


class Child:
    def __init__(self, args: list[str], cpu: int | None, module: str = "bench.fanout") -> None:
        prefix = ["taskset", "-c", str(cpu)] if cpu is not None else []
        profile = os.environ.get("BENCH_PROFILE")  # a cProfile output path for the ingress process
        if profile and "--serve" in args:
            prefix += [sys.executable, "-m", "bench._cpu_profile", profile]  # CPU time of the loop thread
        else:
            prefix += [sys.executable]
        self.command = [*prefix, "-m", module, *args]
        self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)

    def ready_line(self) -> dict[str, str]:
        """`wtpulsar ingress --workers N`: its start line, once every worker listens."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("ingress: WebTransport") and "workers)" in line:
                words = line.split()
                threading.Thread(target=lambda: [None for _ in self.proc.stdout or []], daemon=True).start()
                return {"wt_url": words[words.index("WebTransport") + 1], "http_url": words[words.index("HTTP") + 1]}
        raise RuntimeError(f"the ingress workers did not start ({self.proc.wait()})")

    def ask(self, cmd: dict[str, Any] | None = None, timeout: float = 600) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if cmd is not None:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench.fanout child {shlex.join(self.command)} exited with {self.proc.wait(timeout)}")
        return json.loads(line)

    def close(self, timeout: float = 60) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if "wtpulsar.cli" in self.command:  # the workers' supervisor stops on SIGTERM, not on stdin
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def label(transport: str, quic_stack: str) -> str:
    """A row's transport: ``webtransport`` on the default stack, ``webtransport:<stack>`` on another one."""
    return transport if transport != "webtransport" or quic_stack == DEFAULT_STACK else f"{transport}:{quic_stack}"


def run_transport(transport: str, broker: Any, publisher: SyntheticPublisher, workdir: Path, steps: list[int],
                  seconds: float, pin: bool, workers: int, quic_stack: str = DEFAULT_STACK, viewer_stack: str = "qh3",
                  name: str | None = None) -> list[Step]:
    name = name or label(transport, quic_stack)
    if workers > 1:
        (workdir / "secret").write_bytes(SECRET)
        ingress = Child(["ingress", "--workers", str(workers), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                         "--broker-service-url", broker.service_url, "--state-dir", str(workdir / "state"),
                         "--secret-file", str(workdir / "secret"), "--sessions-per-address", "100000",
                         "--max-sessions", "100000", "--quic-stack", quic_stack], None, module="wtpulsar.cli")
    else:
        ingress = Child(["--serve", "--broker", broker.service_url, "--state-dir", str(workdir / "state"),
                         "--quic-stack", quic_stack], MEASURED_CPU if pin else None)
    load: Child | None = None
    rows: list[Step] = []
    try:
        info = ingress.ready_line() if workers > 1 else ingress.ask()
        if workers > 1 and pin:
            spread_workers(ingress.proc.pid)
        load = Child(["--load", transport, "--info", json.dumps(info), "--viewer-stack", viewer_stack],
                     LOAD_CPU if pin else None)
        have = 0
        for n in steps:
            joined = load.ask({"add": n - have})
            have = n
            time.sleep(1.0)  # joiners get their join point; the window counts live delivery only
            skipped0 = skipped_total(info["http_url"]) if workers == 1 else 0  # /metrics is per worker
            sent0 = dict(publisher.video_sent)
            cpu0, parent0, broker0 = tree_cpu(ingress.proc.pid), _parent_cpu(), cpu_seconds(broker.proc.pid)
            load0 = load.ask({"reset": 1})["cpu"]
            t0 = time.monotonic()
            time.sleep(seconds)
            got = load.ask({"report": 1})
            elapsed = time.monotonic() - t0
            cpu = tree_cpu(ingress.proc.pid) - cpu0
            others = _parent_cpu() - parent0 + cpu_seconds(broker.proc.pid) - broker0
            published = {r: publisher.video_sent[r] - sent0[r] for r in RENDITIONS}
            served = sum(1 for i, v in enumerate(got["video"])
                         if v >= SERVED_FRACTION * published[RENDITIONS[i % 2]])
            frames = got["records"]
            row = Step(name, n, served, joined["failed"], frames / elapsed, got["bytes"] * 8 / 1e6 / elapsed,
                       cpu / max(1, frames) * 1e6, cpu / elapsed / n * 1000.0, cpu / elapsed,
                       got["p50"], got["p99"], got["max"],
                       skipped_total(info["http_url"]) - skipped0 if workers == 1 else -1, got["missing"],
                       tree_rss_mb(ingress.proc.pid), (got["cpu"] - load0) / elapsed, others / elapsed)
            rows.append(row)
            print(f"bench: {name} {n} viewers: served {served}, p99 {row.p99_ms:.1f} ms, skipped {row.skipped}"
                  f", ingress {row.ingress_cores:.2f} cores, viewers' process {row.load_cores:.2f} "
                  f"(load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
            if not row.passed:
                break
    finally:
        if load is not None:
            load.close()
        ingress.close()
    return rows


def spread_workers(supervisor: int) -> None:
    """Worker i of `wtpulsar ingress --workers N` on CPU i (mod the CPUs): on 2 cores the second worker shares
    CPU 1 with the broker, the publisher and the viewers; the supervisor only waits."""
    cpus = os.cpu_count() or 1
    for i, pid in enumerate(p for p in tree(supervisor) if p != supervisor):
        pin_all_threads(pid, (MEASURED_CPU + i) % cpus)


def _parent_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def per_core(rows: list[Step]) -> int:
    passing = [r.viewers for r in rows if r.passed]
    return max(passing, default=0)


def report(results: dict[str, list[Step]], args: argparse.Namespace, pin: bool, load_start: float) -> None:
    print(f"\nfan-out benchmark: 1 publisher (video {'+'.join(RENDITIONS)} at ~{BITRATE / 1e6:g} Mbit/s each, "
          f"{FPS} fps, keyframe every {GOP_FRAMES} frames; audio {AUDIO_PER_S}/s; chat 1/s), viewers alternate "
          f"renditions and take video+audio+chat; {args.seconds:g} s measured per step")
    print(f"ingress: {args.workers} worker(s); " + ("pinned to CPU 0, broker + publisher + viewers to CPU 1 (taskset)"
          if pin else "not pinned: the ingress shares every core with the load"))
    print(f"viewers: WebTransport on {args.viewer_stack} clients, WebSocket on aiohttp, all in one load process")
    head = ("transport", "viewers", "served", "frames/s", "Mbit/s", "us/frame", "ms/s/viewer", "ingr cores",
            "p50 ms", "p99 ms", "skipped", "missing", "RSS MB", "viewers' cores", "pub+broker")
    print("{:<16} {:>7} {:>6} {:>8} {:>7} {:>8} {:>11} {:>10} {:>7} {:>7} {:>7} {:>7} {:>6} {:>14} {:>10}".format(*head))
    for rows in results.values():
        for r in rows:
            print(f"{r.transport:<16} {r.viewers:>7} {r.served:>6} {r.frames_per_s:>8.0f} {r.mbit_per_s:>7.1f} "
                  f"{r.cpu_us_per_frame:>8.1f} {r.cpu_ms_per_viewer_s:>11.2f} {r.ingress_cores:>10.2f} "
                  f"{r.p50_ms:>7.1f} {r.p99_ms:>7.1f} {r.skipped if r.skipped >= 0 else '-':>7} {r.missing:>7} {r.rss_mb:>6.0f} {r.load_cores:>14.2f} "
                  f"{r.publisher_cores:>10.2f}" + ("" if r.passed else "  <- limit"))
    print("served: viewers that got >= 90 % of the window's video frames; frames/s, Mbit/s: DELIVERY records "
          "all viewers got; us/frame: ingress CPU (all threads) per delivered record; ms/s/viewer: ingress CPU per "
          "viewer; p50/p99: t_route -> parsed by the viewer; skipped: slow-viewer policy (ingress metric, one worker "
          "only); missing: video frames the viewers saw missing (gaps in first_seq)")
    for transport, rows in results.items():
        if rows and rows[-1].load_cores > 0.9 and not rows[-1].passed:
            print(f"note: {transport}: the viewers' process used {rows[-1].load_cores:.2f} cores at the limit: "
                  "the load generator may have been the bottleneck, not the ingress")
        if rows and all(r.passed for r in rows):
            print(f"note: {transport}: every step passed; the limit is above {rows[-1].viewers} viewers")
    for transport, rows in results.items():
        ok = [r for r in rows if r.passed] or rows[:1]
        if ok:
            r = ok[-1]
            print(f"CPU-bound estimate, {transport}: {1000.0 / r.cpu_ms_per_viewer_s:.0f} viewers per fully used core "
                  f"(1 s / {r.cpu_ms_per_viewer_s:.2f} ms of ingress CPU per viewer-second at {r.viewers} viewers); "
                  "an estimate from CPU cost, not a measured limit: on a shared machine the measured limit can "
                  "come from CPU the ingress did not get")
    wt, ws = results.get("webtransport", []), results.get("websocket", [])
    wt_runs = {name: rows for name, rows in results.items() if name.startswith("webtransport")}
    for name, rows in wt_runs.items():
        both = [(a, b) for a in rows for b in ws if a.viewers == b.viewers and a.passed and b.passed]
        if both:
            a, b = both[-1]
            stack = name.partition(":")[2] or DEFAULT_STACK
            print(f"WebTransport ({stack}) CPU per delivered frame at {a.viewers} viewers: {a.cpu_us_per_frame:.1f} us vs "
                  f"WebSocket {b.cpu_us_per_frame:.1f} us ({a.cpu_us_per_frame / b.cpu_us_per_frame:.2f}x; "
                  "target <= 1.5x)")
    print(f"load average at the start: {load_start:.2f}, at the end: {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores)")
    if len(args.worker_counts) > 1:
        compare_workers(results, args, pin)
    cores = ingress_cores(args.workers, pin)
    for name, rows in wt_runs.items():
        if name != "webtransport":
            print(f"fanout: {per_core(rows) // ingress_cores(_run_workers(name, args.workers), pin)} viewers per core ({name})")
    print(f"fanout: {per_core(wt) // cores} viewers per core (webtransport), {per_core(ws) // cores} (websocket)")


def ingress_cores(workers: int, pin: bool) -> int:
    """Cores the ingress may use: one when one process is pinned (one process uses one core at most)."""
    return 1 if pin and workers == 1 else max(1, min(workers, os.cpu_count() or 1))


def worker_label(name: str, workers: int, baseline: int) -> str:
    """Rows of a worker count other than the baseline's are labelled ``<transport>@<N>w``."""
    return name if workers == baseline else f"{name}@{workers}w"


def _run_workers(name: str, default: int) -> int:
    tail = name.rpartition("@")[2]
    return int(tail[:-1]) if "@" in name and tail.endswith("w") and tail[:-1].isdigit() else default


def compare_workers(results: dict[str, list[Step]], args: argparse.Namespace, pin: bool) -> None:
    """The 1 -> N workers comparison, fan-out and publish, each row beside the baseline (first count) of this run."""
    base_n = args.worker_counts[0]
    print(f"\nworkers: {' -> '.join(map(str, args.worker_counts))} on {os.cpu_count()} cores, same run; viewers on "
          f"{args.viewer_stack} clients; " + ("worker i pinned to CPU i mod cores, broker + publisher + viewers to CPU 1"
                                             if pin else "nothing pinned"))
    print("{:<16} {:>7} {:>16} {:>9} {:>10} {:>9} {:>14} {:>14} {:>12}".format(
        "transport", "workers", "viewers (passed)", "frames/s", "ingr cores", "us/frame", "viewers' cores",
        "publish fr/s", "pub us/frame"))
    transports = [t for t in ("webtransport", "websocket") if t in results]
    for transport in transports:
        base_rows = results[transport]
        for n in args.worker_counts:
            rows = results.get(worker_label(transport, n, base_n), [])
            ok = [r for r in rows if r.passed]
            top = ok[-1] if ok else (rows[0] if rows else None)
            pub = args.publish.get(n) if transport == "webtransport" else None
            if top is None:
                continue
            gain = "" if n == base_n or not base_rows else f"  ({per_core(rows)} vs {per_core(base_rows)} viewers"
            if gain and pub and args.publish.get(base_n):
                gain += f"; publish {pub['frames_per_s'] / max(1.0, args.publish[base_n]['frames_per_s']):.2f}x"
            print(f"{transport:<16} {n:>7} {per_core(rows):>16} {top.frames_per_s:>9.0f} {top.ingress_cores:>10.2f} "
                  f"{top.cpu_us_per_frame:>9.1f} {top.load_cores:>14.2f} "
                  f"{(pub or {}).get('frames_per_s', float('nan')):>14.0f} {(pub or {}).get('cpu_us', float('nan')):>12.0f}"
                  + (gain + ")" if gain else ""))
    print("viewers (passed): the largest step that passed (all served, p99 < 50 ms, nothing skipped); frames/s, ingr "
          "cores, us/frame, viewers' cores: at that step; publish: bench.ingress max-webtransport with the same workers "
          "(broker-acked frames/s, ingress CPU per frame)")
    cpus = os.cpu_count() or 1
    if max(args.worker_counts) >= cpus:
        busy = max((r.load_cores + r.publisher_cores for rows in results.values() for r in rows), default=0.0)
        print(f"note: {cpus} cores: with {max(args.worker_counts)} workers one worker shares its core with the load "
              f"generator, broker and publisher (up to {busy:.2f} cores of them in this run), so the second worker "
              "cannot add a whole core here; a gain needs cores beyond the load's")


def worker_counts(text: str) -> list[int]:
    """--workers: ``2`` or a comma-separated list such as ``1,2`` (each a whole number of at least 1)."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: worker counts, whole numbers of at least 1, e.g. 1,2")
    return list(dict.fromkeys(counts))


def publish_rate(workers: int, seconds: float) -> dict[str, float]:
    """Max publish rate of `wtpulsar ingress --workers N` over WebTransport: bench.ingress's max-webtransport
    phase (its own broker; unpinned), read from its table row."""
    cmd = [sys.executable, "-m", "bench.ingress", "--only", "max-webtransport", "--seconds", f"{max(3.0, seconds):g}",
           "--workers", str(workers)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    for line in out.stdout.splitlines():
        words = line.split()
        if len(words) >= 16 and words[0] == "webtransport" and words[2].startswith("unpaced"):
            return {"frames_per_s": float(words[10]), "cpu_us": float(words[12]), "ingress_cores": float(words[13])}
    raise RuntimeError(f"{shlex.join(cmd)} printed no max-webtransport row (exit {out.returncode}): "
                       f"{(out.stderr or out.stdout)[-500:]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fanout", description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"steps {','.join(map(str, QUICK_STEPS))}, 2 s windows")
    ap.add_argument("--steps", help=f"viewer counts, comma-separated (default {','.join(map(str, FULL_STEPS))})")
    ap.add_argument("--seconds", type=float, help="measured window per step (default 5, --quick 2)")
    ap.add_argument("--only", choices=["webtransport", "websocket"], help="run one transport")
    ap.add_argument("--json", metavar="FILE", type=Path, help="write the figures as JSON")
    ap.add_argument("--workers", type=worker_counts, default=[1], metavar="N[,N...]",
                    help="run the ingress as `wtpulsar ingress --workers N`; a list (e.g. 1,2) runs each count and "
                         "prints them side by side with the first as the baseline, publish included (bench.ingress)")
    ap.add_argument("--viewer-stack", choices=["aioquic", "qh3"], default=None,
                    help="QUIC stack of the WebTransport viewers (load generator): qh3 (default), which costs the "
                         "load's core far less, or aioquic")
    ap.add_argument("--quic-stack", action="append", choices=["aioquic", "qh3"],
                    help=f"QUIC stack of the ingress for the WebTransport runs; repeat for both (default {DEFAULT_STACK})")
    ap.add_argument("--no-pin", action="store_true", help="do not pin (to compare 1 worker with N on equal terms)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--load", help=argparse.SUPPRESS)
    ap.add_argument("--info", help=argparse.SUPPRESS)
    ap.add_argument("--broker", help=argparse.SUPPRESS)
    ap.add_argument("--state-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.broker, args.state_dir, (args.quic_stack or [DEFAULT_STACK])[0]))
        return 0
    if args.load:
        asyncio.run(run_load(args.load, json.loads(args.info), args.viewer_stack or "qh3"))
        return 0
    steps = [int(s) for s in args.steps.split(",")] if args.steps else list(QUICK_STEPS if args.quick else FULL_STEPS)
    args.seconds = args.seconds or (2.0 if args.quick else 5.0)
    args.worker_counts, args.workers = args.workers, args.workers[0]
    if args.viewer_stack is None:
        args.viewer_stack = "qh3"
    # one worker: pinned to CPU 0; several: spread over the CPUs (spread_workers); the load stays on CPU 1
    pin = pinning() and not args.no_pin and (args.workers == 1 or len(args.worker_counts) > 1)
    load_start = os.getloadavg()[0]

    from tests.broker_process import BrokerProcess

    results: dict[str, list[Step]] = {}
    with tempfile.TemporaryDirectory(prefix="wtpulsar-fanout-") as tmp:
        workdir = Path(tmp)
        if pin:
            os.sched_setaffinity(0, {LOAD_CPU})  # the publisher's threads (pulsar-client) inherit it
        broker = BrokerProcess(workdir / "broker-data")
        broker.start()
        publisher = None
        try:
            if pin and broker.proc is not None:
                pin_all_threads(broker.proc.pid, LOAD_CPU)
            publisher = SyntheticPublisher(broker.service_url)
            publisher.start()
            runs = [("webtransport", stack) for stack in dict.fromkeys(args.quic_stack or [DEFAULT_STACK])]
            runs.append(("websocket", DEFAULT_STACK))  # WebSocket does not use QUIC: its one run is the baseline
            for workers in args.worker_counts:
                for transport, stack in runs:
                    if args.only and transport != args.only:
                        continue
                    name = worker_label(label(transport, stack), workers, args.workers)
                    print(f"bench: {name} ... (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
                    results[name] = run_transport(transport, broker, publisher, workdir, steps, args.seconds, pin,
                                                  workers, stack, args.viewer_stack, name)
        finally:
            if publisher is not None:
                publisher.close()
            broker.close()
    args.publish = {}
    if len(args.worker_counts) > 1 and args.only != "websocket":
        if pin:
            os.sched_setaffinity(0, range(os.cpu_count() or 1))  # bench.ingress places its own processes
        for workers in args.worker_counts:
            print(f"bench: publish, {workers} worker(s) (bench.ingress) ... (load {os.getloadavg()[0]:.2f})",
                  file=sys.stderr, flush=True)
            args.publish[workers] = publish_rate(workers, args.seconds)
    report(results, args, pin, load_start)
    if args.json:
        args.json.write_text(json.dumps({"pinned": pin, "p99_limit_ms": P99_LIMIT_MS, "viewer_stack": args.viewer_stack,
                                         "workers": args.worker_counts, "publish": args.publish,
                                         "steps": [dict(asdict(r), passed=r.passed) for rows in results.values()
                                                   for r in rows],
                                         "per_core": {t: per_core(rows) for t, rows in results.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
