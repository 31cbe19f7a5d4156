"""``wtpulsar record ROOM --from T1 --to T2 --rendition R --out FILE.mp4``: a past interval of a room as an MP4.

Everything comes from the retained room topics (``room-<room>-video-<R>``, ``-audio``, ``-chat``), read
from their earliest message: the window a broker keeps (``--retention-minutes``, or Pulsar's retention
policy) is what can be recorded. ``select_runs`` (sans-I/O) picks, per stream and init segment, the
fragments from the last keyframe at or before T1 to the last one captured by T2. They are decoded and
the pictures captured in [T1, T2] encoded again (H.264, AAC), so the file starts at its first picture
at 0 and lasts what was asked for, frame-exact, instead of beginning up to a GOP early; a publisher
restart inside the interval simply continues the file. Chat of the interval is written beside it as
``FILE.chat.jsonl``, one message a line with ``t`` in seconds from the file's start.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

READ_TIMEOUT_MS = 500


@dataclass
class Run:
    """Consecutive fragments of one stream under one init segment; ``captures``: per fragment
    (decode_time, capture_ms) so every decoded picture gets its capture time."""

    stream: str
    init: bytes
    timescale: int
    fragments: list[bytes] = field(default_factory=list)
    captures: list[tuple[int, float]] = field(default_factory=list)

    def capture_of(self, ticks: float) -> float:
        best = self.captures[0]
        for decode, capture in self.captures:
            if decode <= ticks:
                best = (decode, capture)
            else:
                break
        return best[1] + (ticks - best[0]) * 1000.0 / self.timescale


def select_runs(messages: Iterable[tuple[dict[str, str], bytes]], t1_ms: float, t2_ms: float) -> list[Run]:
    """The runs of fragments that cover [t1, t2] (capture clock), in topic order. Each run starts at a
    keyframe: the last one at or before t1, or the first after it for a stream that began later."""
    runs: list[Run] = []
    inits: dict[str, tuple[bytes, int]] = {}
    current: dict[str, Run] = {}  # stream -> run being collected
    for props, payload in messages:
        stream = props.get("stream", "")
        kind = props.get("segment_type")
        if kind == "init":
            inits[stream] = (payload, int(props.get("timescale", "90000") or 90000))
            current.pop(stream, None)
            continue
        if kind == "end":
            current.pop(stream, None)
            continue
        if kind != "media" or stream not in inits:
            continue
        try:
            capture, decode = float(props["capture_ts"]), int(props["decode_time"])
        except (KeyError, ValueError):
            continue
        if capture > t2_ms:
            current.pop(stream, None)
            continue
        key = props.get("keyframe", "1") != "0"
        run = current.get(stream)
        if key and (run is None or capture <= t1_ms):
            # a keyframe at or before t1 restarts the run (a later one is a better start), one after
            # t1 starts the run only if none is open
            if run is not None and run in runs:
                runs.remove(run)
            init, timescale = inits[stream]
            run = current[stream] = Run(stream, init, timescale)
            runs.append(run)
        if run is None:
            continue
        run.fragments.append(payload)
        run.captures.append((decode, capture))
    return [r for r in runs if r.fragments and r.captures[-1][1] >= t1_ms]


def read_topic(client: Any, url: str) -> list[tuple[dict[str, str], bytes]]:
    """Every retained message of a topic, oldest first (the reader stops at the end it found)."""
    import pulsar

    reader = client.create_reader(url, pulsar.MessageId.earliest)
    out = []
    try:
        while reader.has_message_available():
            try:
                msg = reader.read_next(READ_TIMEOUT_MS)
            except pulsar.Timeout:
                break
            out.append((dict(msg.properties()), msg.data()))
    finally:
        reader.close()
    return out


@dataclass
class Recording:
    video_frames: int = 0
    audio_samples: int = 0
    first_capture_ms: float = 0.0
    last_capture_ms: float = 0.0
    chat_messages: int = 0


def write_mp4(out: Path, video_runs: list[Run], audio_runs: list[Run], t1_ms: float, t2_ms: float) -> Recording:
    """Decode the runs, keep what was captured in [t1, t2], encode H.264 + AAC into ``out`` starting at 0."""
    import av

    pictures: list[tuple[float, Any]] = []
    for run in video_runs:
        pictures += [(c, f) for c, f in _decoded(run) if t1_ms <= c <= t2_ms]
    pictures.sort(key=lambda item: item[0])
    if not pictures:
        raise LookupError("no picture was captured in that interval")
    result = Recording(first_capture_ms=pictures[0][0], last_capture_ms=pictures[-1][0])
    zero = pictures[0][0]
    width, height = pictures[0][1].width, pictures[0][1].height
    with av.open(str(out), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = Fraction(1, 1000)
        video.codec_context.time_base = Fraction(1, 1000)
        video.codec_context.options = {"preset": "veryfast", "crf": "20"}
        audio = None
        sounds = [(c, f) for run in audio_runs for c, f in _decoded(run) if zero <= c <= t2_ms]
        if sounds:
            audio = container.add_stream("aac", rate=48_000)
            audio.codec_context.layout = "mono"
            audio.time_base = Fraction(1, 48_000)
        last_pts = -1
        for capture, picture in pictures:
            pts = round(capture - zero)
            if pts <= last_pts:
                continue  # two pictures in one millisecond: keep the first
            last_pts = pts
            frame = picture.reformat(width=width, height=height, format="yuv420p")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            container.mux(video.encode(frame))
            result.video_frames += 1
        container.mux(video.encode(None))
        if audio is not None:
            result.audio_samples = _encode_audio(container, audio, sorted(sounds, key=lambda s: s[0]), zero)
    return result


def _encode_audio(container: Any, stream: Any, sounds: list[tuple[float, Any]], zero: float) -> int:
    import av

    resampler = av.AudioResampler(format="fltp", layout="mono", rate=48_000)
    fifo = av.AudioFifo()
    start = round((sounds[0][0] - zero) * 48)
    for _, frame in sounds:
        frame.pts = None
        for out in resampler.resample(frame):
            fifo.write(out)
    samples = 0
    size = stream.codec_context.frame_size or 1024
    while fifo.samples >= size:
        chunk = fifo.read(size)
        if chunk is None:
            break
        chunk.pts, chunk.time_base = start + samples, Fraction(1, 48_000)
        samples += size
        container.mux(stream.encode(chunk))
    container.mux(stream.encode(None))
    return samples


def _decoded(run: Run) -> list[tuple[float, Any]]:
    import av

    out = []
    with av.open(io.BytesIO(run.init + b"".join(run.fragments)), mode="r", format="mp4") as container:
        stream = container.streams[0]
        for frame in container.decode(stream):
            if frame.pts is None or stream.time_base is None:
                continue
            ticks = float(frame.pts * stream.time_base * run.timescale)
            out.append((run.capture_of(ticks), frame))
    return out


def chat_lines(messages: Iterable[tuple[dict[str, str], bytes]], t1_ms: float, t2_ms: float, zero_ms: float) -> list[str]:
    """The interval's chat as JSON lines: t (s from the recording's start), user, text, msg_id, moderation."""
    lines = []
    for props, payload in messages:
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if not isinstance(body, dict):
            continue
        when = _number(props.get("capture_ts")) or _number(body.get("sent_at"))
        if when is None or not t1_ms <= when <= t2_ms:
            continue
        line = {"t": round((when - zero_ms) / 1000.0, 3), "user": body.get("user", props.get("user", "")),
                "text": body.get("text", ""), "msg_id": body.get("msg_id", "")}
        if props.get("moderation"):
            line["moderation"] = props["moderation"]
        lines.append(json.dumps(line, ensure_ascii=False))
    return lines


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def parse_time(text: str, flag: str) -> float:
    """An ISO 8601 time (UTC when no zone is given) as ms since the epoch."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{flag} {text!r} is not an ISO 8601 time, e.g. 2026-12-04T15:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ingress.cli import DEFAULT_BROKER, _add_broker_token, _add_namespace

    p = sub.add_parser(
        "record", help="a past interval of a room as a playable MP4 (from the retained topics), chat beside it",
        description="Write the interval [--from, --to] of ROOM's --rendition video and its audio, read from the "
                    "retained output topics, as an MP4 that starts at 0 with the first picture captured at --from; "
                    "the interval's chat goes to FILE.chat.jsonl with times relative to the video.")
    p.add_argument("room")
    p.add_argument("--from", dest="start", required=True, metavar="T1", help="ISO 8601 time, e.g. 2026-12-04T15:00:00Z")
    p.add_argument("--to", dest="end", required=True, metavar="T2", help="ISO 8601 time after --from")
    p.add_argument("--rendition", default="360p", help="video rendition (default 360p)")
    p.add_argument("--out", required=True, type=Path, help="the MP4 to write")
    p.add_argument("--broker-service-url", default=DEFAULT_BROKER, help=f"default {DEFAULT_BROKER}")
    _add_broker_token(p)
    _add_namespace(p)
    p.set_defaults(func=run_record_cli)


def chat_path(out: Path) -> Path:
    return out.with_name(out.stem + ".chat.jsonl")


def run_record_cli(args: argparse.Namespace) -> int:
    import pulsar

    from ingress.broker_auth import client_kwargs, resolve
    from ingress.names import BadName, check_name, check_rendition, room_topic, room_topic_url
    from schemas.framing_codec import Kind

    try:
        check_name("room", args.room)
        check_rendition(args.rendition)
        t1, t2 = parse_time(args.start, "--from"), parse_time(args.end, "--to")
        if t2 <= t1:
            raise ValueError(f"--to {args.end} is not after --from {args.start}")
        if args.out.suffix.lower() != ".mp4":
            raise ValueError(f"--out {args.out}: name an .mp4 file")
    except (BadName, ValueError) as exc:
        print(f"wtpulsar record: {exc}", file=sys.stderr)
        return 2
    client = pulsar.Client(args.broker_service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
                           operation_timeout_seconds=10, **client_kwargs(resolve(args.broker_token)))

    def url(kind: Kind, rendition: str | None = None) -> str:
        return room_topic_url(args.tenant, args.namespace, room_topic(args.room, kind, rendition))

    try:
        video_msgs = read_topic(client, url(Kind.VIDEO, args.rendition))
        audio_msgs = read_topic(client, url(Kind.AUDIO))
        chat_msgs = read_topic(client, url(Kind.CHAT))
    except pulsar.PulsarException as exc:
        print(f"wtpulsar record: the broker refused: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    video_runs = select_runs(video_msgs, t1, t2)
    captured = [float(p["capture_ts"]) for p, _ in video_msgs if p.get("segment_type") == "media" and p.get("capture_ts")]
    try:
        if not video_runs:
            raise LookupError("nothing retained in that interval")
        result = write_mp4(args.out, video_runs, select_runs(audio_msgs, t1, t2), t1, t2)
    except LookupError as exc:
        kept = (f"the topic keeps {_iso(min(captured))} to {_iso(max(captured))}" if captured
                else "the topic keeps no video at all")
        print(f"wtpulsar record: room {args.room} has no {args.rendition} video between {args.start} and "
              f"{args.end} ({exc}); {kept}. Nothing was written.", file=sys.stderr)
        args.out.unlink(missing_ok=True)
        return 1
    lines = chat_lines(chat_msgs, t1, t2, result.first_capture_ms)
    chat_path(args.out).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    seconds = (result.last_capture_ms - result.first_capture_ms) / 1000.0
    print(f"wtpulsar record: {args.out}: {result.video_frames} pictures ({seconds:.2f} s, first captured at "
          f"{_iso(result.first_capture_ms)}), {result.audio_samples / 48_000:.2f} s of audio; "
          f"{len(lines)} chat messages in {chat_path(args.out)}", file=sys.stderr)
    return 0


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000.0, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
