"""Sans-I/O end-to-end audit of one room: what went in, what came out, and how long each hop took.

Input side: one message per browser frame on `raw-video`/`raw-screen`/`raw-audio` (ENVELOPE.md
"Properties": `stream`, `seq`, `kind`, `room`, `capture_ts`, `t_ingress`). Output side: the room
topics `room-<room>-<kind>[-<rendition>]`, where chunk has folded frames into fMP4 fragments that
name the frames they hold with `first_seq`/`last_seq` (ENVELOPE.md "Segments"). A track is
(stream, rendition); audio has the rendition `audio`.

Everything here takes decoded properties and publish times and returns plain dataclasses, so tests
drive it with dicts and `wtpulsar audit` (cli.py) feeds it from pulsar-client readers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Hops in pipeline order (ENVELOPE.md "t_ingress, t_transcode, t_chunk, t_route"), each measured
# from the timestamp before it. "input topic" is the broker's publish time of the raw message and
# "output" the publish time of the room-topic message.
HOPS: tuple[str, ...] = ("ingress", "input_topic", "transcode", "chunk", "route", "output")
_STAMPS: tuple[str, ...] = ("capture_ts", "t_ingress", "publish_in", "t_transcode", "t_chunk", "t_route",
                            "publish_out")
PERCENTILES: tuple[int, ...] = (50, 95, 99)
MAX_LISTED_GAPS = 20  # gap ranges kept per track in a report; the count stays exact


@dataclass(frozen=True, slots=True)
class InputFrame:
    """One raw frame as stored on an input topic."""

    stream: str
    kind: str
    seq: int
    capture_ts: float | None  # ms since epoch
    t_ingress: float | None  # ms, when the ingress published it
    publish_ms: float | None  # ms, the broker's publish time


@dataclass(frozen=True, slots=True)
class OutputSegment:
    """One room-topic message that carries frames (a media fragment; init segments carry none)."""

    stream: str
    rendition: str  # `720p`, `360p`, … or `audio`
    first_seq: int
    last_seq: int
    stamps: Mapping[str, float]  # capture_ts, t_ingress, t_transcode, t_chunk, t_route, publish_out


class BadMessage(ValueError):
    """A message whose properties cannot be audited; the message names the property."""


def _number(props: Mapping[str, str], key: str) -> float | None:
    raw = props.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadMessage(f"property {key}={raw[:40]!r} is not a number") from None
    return value if math.isfinite(value) else None


def _seq(props: Mapping[str, str], key: str) -> int:
    raw = props.get(key)
    if raw is None or not raw.isdigit():
        raise BadMessage(f"property {key}={str(raw)[:40]!r} is not a decimal sequence number")
    return int(raw)


def input_frame(props: Mapping[str, str], publish_ms: float | None, key: str = "") -> InputFrame | None:
    """Decode an input-topic message's properties (the key is the stream id when `stream` is absent);
    None for an end of stream (ENVELOPE.md "End of stream"), which is not a frame."""
    if props.get("end_of_stream") == "1":
        return None
    stream = props.get("stream") or key
    if not stream:
        raise BadMessage("no stream id (property `stream` or message key)")
    return InputFrame(stream, props.get("kind", ""), _seq(props, "seq"), _number(props, "capture_ts"),
                      _number(props, "t_ingress"), publish_ms)


def output_segment(props: Mapping[str, str], publish_ms: float | None, key: str = "") -> OutputSegment | None:
    """Decode a room-topic message; None for messages that carry no frames (init segments, ends)."""
    if props.get("segment_type") in ("init", "end"):
        return None
    stream = props.get("stream") or key
    if not stream:
        raise BadMessage("no stream id (property `stream` or message key)")
    if "first_seq" in props:
        first, last = _seq(props, "first_seq"), _seq(props, "last_seq")
        if last < first:
            raise BadMessage(f"last_seq {last} < first_seq {first}")
    else:  # a message routed unchunked still names its one frame
        first = last = _seq(props, "seq")
    rendition = props.get("rendition") or props.get("kind") or "source"  # audio/chat tracks: the kind
    stamps = {name: v for name in ("capture_ts", "t_ingress", "t_transcode", "t_chunk", "t_route")
              if (v := _number(props, name)) is not None}
    if publish_ms is not None:
        stamps["publish_out"] = publish_ms
    return OutputSegment(stream, rendition, first, last, stamps)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (the value a p-th share of samples stay under)."""
    if not sorted_values:
        raise ValueError("no samples")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(slots=True)
class LatencyStats:
    count: int
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, samples: Iterable[float]) -> LatencyStats | None:
        ordered = sorted(samples)
        if not ordered:
            return None
        return cls(len(ordered), *(percentile(ordered, p) for p in PERCENTILES))


@dataclass(slots=True)
class SeqLedger:
    """Which sequence numbers of one track were seen, how often, and in what order."""

    counts: dict[int, int] = field(default_factory=dict)
    reorderings: int = 0  # times a seq arrived below the highest seen before it (not a duplicate)
    _highest: int = -1

    def add(self, seq: int) -> None:
        seen = self.counts.get(seq, 0)
        if not seen and seq < self._highest:
            self.reorderings += 1
        self.counts[seq] = seen + 1
        self._highest = max(self._highest, seq)

    @property
    def distinct(self) -> int:
        return len(self.counts)

    @property
    def duplicates(self) -> int:
        return sum(c - 1 for c in self.counts.values())

    def gaps(self, upto: int | None = None) -> list[tuple[int, int]]:
        """Missing inclusive ranges between the lowest seq seen and `upto` (default: highest seen)."""
        if not self.counts:
            return []
        top = self._highest if upto is None else upto
        out: list[tuple[int, int]] = []
        expected = min(self.counts)
        for seq in sorted(self.counts):
            if seq > top:
                break
            if seq > expected:
                out.append((expected, seq - 1))
            expected = seq + 1
        if expected <= top:
            out.append((expected, top))
        return out


@dataclass(slots=True)
class TrackReport:
    stream: str
    rendition: str
    frames_in: int  # distinct frames of the stream on its input topic
    frames_out: int  # distinct frames of this rendition on the room topic
    duplicates_in: int
    duplicates_out: int  # frame copies beyond the first on the output (what a viewer must dedup)
    reorderings_out: int
    missing: int  # frames on the input topic absent from this output
    missing_ranges: list[tuple[int, int]]
    gaps_out: int  # holes inside the output's own seq range
    latency: dict[str, LatencyStats | None]  # hop -> stats (ms)


@dataclass(slots=True)
class AuditReport:
    room: str
    tracks: list[TrackReport]
    inputs_without_output: list[str]  # streams seen on an input topic with no output track
    bad_messages: list[str]
    # Streams whose input topic no longer holds their first frames (output has lower seqs): the broker
    # deleted acknowledged messages (no retention), so frames_in/missing only cover what is left.
    inputs_trimmed: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(t.missing for t in self.tracks)

    def to_json(self) -> dict[str, object]:
        def stats(s: LatencyStats | None) -> dict[str, float] | None:
            return None if s is None else {"count": s.count, "p50": s.p50, "p95": s.p95, "p99": s.p99}

        return {
            "room": self.room,
            "lost": self.lost,
            "inputs_without_output": self.inputs_without_output,
            "inputs_trimmed": self.inputs_trimmed,
            "bad_messages": self.bad_messages,
            "tracks": [
                {"stream": t.stream, "rendition": t.rendition, "frames_in": t.frames_in, "frames_out": t.frames_out,
                 "duplicates_in": t.duplicates_in, "duplicates_out": t.duplicates_out,
                 "reorderings_out": t.reorderings_out, "missing": t.missing,
                 "missing_ranges": [list(r) for r in t.missing_ranges], "gaps_out": t.gaps_out,
                 "latency_ms": {hop: stats(s) for hop, s in t.latency.items()}}
                for t in self.tracks
            ],
        }


class RoomAudit:
    """Accumulates input frames and output segments of one room, then reports per track."""

    def __init__(self, room: str) -> None:
        self.room = room
        self._inputs: dict[str, SeqLedger] = {}
        self._input_stamps: dict[tuple[str, int], tuple[float | None, float | None, float | None]] = {}
        self._outputs: dict[tuple[str, str], SeqLedger] = {}
        self._hops: dict[tuple[str, str], dict[str, list[float]]] = {}
        self._times: dict[str, list[tuple[float, float]]] = {}
        self.bad_messages: list[str] = []

    # ---- feeding ---------------------------------------------------------------------------
    def add_input(self, frame: InputFrame) -> None:
        self._inputs.setdefault(frame.stream, SeqLedger()).add(frame.seq)
        # the first copy is the one whose timing counts (a resend after a fault is a new publish)
        self._input_stamps.setdefault((frame.stream, frame.seq), (frame.capture_ts, frame.t_ingress,
                                                                  frame.publish_ms))

    def add_output(self, segment: OutputSegment) -> None:
        track = (segment.stream, segment.rendition)
        ledger = self._outputs.setdefault(track, SeqLedger())
        for seq in range(segment.first_seq, segment.last_seq + 1):
            ledger.add(seq)
        stamps = dict(segment.stamps)
        inp = self._input_stamps.get((segment.stream, segment.first_seq))
        if inp is not None and inp[2] is not None:
            stamps["publish_in"] = inp[2]
        if "capture_ts" in stamps and "publish_out" in stamps:
            self._times.setdefault(segment.stream, []).append((stamps["capture_ts"], stamps["publish_out"]))
        hops = self._hops.setdefault(track, {hop: [] for hop in HOPS})
        # A hop is timed only when both of its ends are known (a property may be absent on old data).
        for hop, start, end in zip(HOPS, _STAMPS[:-1], _STAMPS[1:], strict=True):
            if start in stamps and end in stamps:
                hops[hop].append(stamps[end] - stamps[start])

    def confirmed_missing(self, confirmed: Mapping[str, Iterable[int]]) -> dict[tuple[str, str], list[tuple[int, int]]]:
        """Frames a publisher was told are stored (an OK Ack, FRAMING.md "Ack") that some output track
        of their stream lacks; a stream with no output track at all is keyed (stream, "*").
        Empty means at-least-once held end to end."""
        out: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for stream, seqs in confirmed.items():
            wanted = sorted(set(seqs))
            tracks = [key for key in self._outputs if key[0] == stream]
            if not tracks and wanted:
                out[(stream, "*")] = _ranges(wanted)
            for key in tracks:
                have = self._outputs[key].counts
                holes = [s for s in wanted if s not in have]
                if holes:
                    out[key] = _ranges(holes)
        return out

    def hop_samples(self) -> dict[str, list[float]]:
        """Every per-hop latency sample (ms) over all tracks, for histograms."""
        out: dict[str, list[float]] = {hop: [] for hop in HOPS}
        for hops in self._hops.values():
            for hop, values in hops.items():
                out[hop].extend(values)
        return out

    def output_times(self, stream: str) -> list[tuple[float, float]]:
        """(capture_ts, output publish time) of every output segment of `stream`, in arrival order."""
        return list(self._times.get(stream, []))

    def add_bad(self, where: str, error: Exception) -> None:
        self.bad_messages.append(f"{where}: {error}")

    # ---- reporting -------------------------------------------------------------------------
    def report(self) -> AuditReport:
        tracks = []
        for (stream, rendition), out in sorted(self._outputs.items()):
            inp = self._inputs.get(stream, SeqLedger())
            missing_seqs = [s for s in sorted(inp.counts) if s not in out.counts]
            tracks.append(TrackReport(
                stream=stream, rendition=rendition, frames_in=inp.distinct, frames_out=out.distinct,
                duplicates_in=inp.duplicates, duplicates_out=out.duplicates, reorderings_out=out.reorderings,
                missing=len(missing_seqs), missing_ranges=_ranges(missing_seqs)[:MAX_LISTED_GAPS],
                gaps_out=sum(b - a + 1 for a, b in out.gaps()),
                latency={hop: LatencyStats.of(v) for hop, v in self._hops[(stream, rendition)].items()},
            ))
        with_output = {s for s, _ in self._outputs}
        orphans = sorted(s for s in self._inputs if s not in with_output)
        trimmed = sorted({
            stream for (stream, _), out in self._outputs.items()
            if out.counts and stream in self._inputs and min(out.counts) < min(self._inputs[stream].counts)
        })
        return AuditReport(self.room, tracks, orphans, list(self.bad_messages), trimmed)


def _ranges(sorted_seqs: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for seq in sorted_seqs:
        if out and out[-1][1] == seq - 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def resume_delay(times: Iterable[tuple[float, float]], event_ms: float) -> float | None:
    """How long after `event_ms` (a restart) the first frame *captured* after it reached the output:
    the stream has resumed, not merely flushed what was in flight. None if it never did."""
    after = [published for captured, published in times if captured >= event_ms]
    return min(after) - event_ms if after else None


def render_text(report: AuditReport) -> str:
    """The human-readable table `wtpulsar audit` prints."""
    lines = [f"room {report.room}: {len(report.tracks)} tracks, {report.lost} frames lost"]
    header = f"{'stream':<20} {'rend':<6} {'in':>7} {'out':>7} {'lost':>6} {'dup_in':>6} {'dup_out':>7} {'reord':>5}"
    lines.append(header)
    for t in report.tracks:
        lines.append(f"{t.stream[:20]:<20} {t.rendition[:6]:<6} {t.frames_in:>7} {t.frames_out:>7} {t.missing:>6} "
                     f"{t.duplicates_in:>6} {t.duplicates_out:>7} {t.reorderings_out:>5}")
        if t.missing_ranges:
            shown = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in t.missing_ranges)
            lines.append(f"    missing seq: {shown}")
        for hop in HOPS:
            s = t.latency.get(hop)
            if s is not None:
                lines.append(f"    {hop:<12} p50 {s.p50:8.1f} ms  p95 {s.p95:8.1f} ms  p99 {s.p99:8.1f} ms  (n={s.count})")
    if report.inputs_trimmed:
        lines.append("input topics no longer hold the first frames of: " + ", ".join(report.inputs_trimmed)
                     + " (acknowledged messages were deleted; run the broker with retention, e.g. "
                     "`wtpulsar broker --retention-minutes 60`, to audit them fully)")
    if report.inputs_without_output:
        lines.append("streams with input but no output: " + ", ".join(report.inputs_without_output))
    for bad in report.bad_messages[:MAX_LISTED_GAPS]:
        lines.append(f"skipped: {bad}")
    return "\n".join(lines)
