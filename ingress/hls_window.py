"""The bounded in-memory window of one HLS rendition of a room (sans-I/O).

Fed the messages of a room output topic in order (init segments, fMP4 fragments and ends, as chunk and
route write them: schemas/ENVELOPE.md "Segments"), it cuts them into what HLS serves (docs/hls.md):

- a **part** (LL-HLS partial segment) is the fragments of about ``part_target`` seconds, closed as
  soon as one more frame would make it longer than that, so it is listed without waiting for the
  next fragment;
- a **segment** starts at a keyframe fragment once the open one is at least ``segment_min`` long
  (whole GOPs), or is cut anyway before it would round above the target duration;
- a new init segment (a new publisher stream, or a resolution/codec change of the same one) or a
  decode time that goes back starts a segment marked **discontinuity**, with its own init.

Only one publisher stream is followed at a time: the one whose init segment came last (a restarted
publisher takes over). The window keeps every segment's metadata (duration, capture time, where its
first fragment is in the topic) but the bytes only of the newest ``memory_bytes``; an older segment is
read back from the topic by the I/O side (ingress.hls_feed) with ``Segment.first_ref``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

RECENT_TARGETS = 3  # parts are listed, and never evicted, for the last 3 target durations (docs/hls.md)


@dataclass(frozen=True, slots=True)
class HlsConfig:
    part_target: float = 1 / 3 + 0.001  # s; ten 30 fps frames fit
    target_duration: int = 2  # s; transcode puts a keyframe at least every 2 s
    segment_min: float = 0.95  # s; a keyframe starts a new segment once the open one is this long
    # the last N s (a sliding DVR window; playlists stay small however long the topic's history), or
    # None: an EVENT playlist from the oldest segment the topic retains
    window: float | None = 600.0
    memory_bytes: int = 48 * 1024 * 1024  # per rendition: segment bytes kept in memory
    max_segments: int = 50_000  # segment metadata kept (about 14 h of 1 s segments)

    def __post_init__(self) -> None:
        if not 0.05 <= self.part_target <= self.target_duration:
            raise ValueError(f"HLS part target {self.part_target} s: must be between 0.05 s and the target duration")
        if self.window is not None and self.window < 3 * self.target_duration:
            raise ValueError(f"HLS window {self.window} s: must be at least three target durations "
                             f"({3 * self.target_duration} s), or none for an EVENT playlist")


@dataclass(slots=True)
class Fragment:
    data: bytes
    decode_time: int  # track timescale
    ref: Any  # where the fragment is in the topic (a message id), for reading evicted segments back


@dataclass(slots=True)
class Part:
    index: int
    independent: bool  # starts with a keyframe
    duration: float = 0.0  # s, set when the part closes (estimated while open)
    fragments: list[Fragment] = field(default_factory=list)
    complete: bool = False

    def data(self) -> bytes:
        return b"".join(f.data for f in self.fragments)


@dataclass(slots=True)
class Segment:
    msn: int
    init_id: int
    discontinuity: bool
    stream: str
    pdt_ms: float  # capture time of its first frame (ms since the epoch)
    start_time: int  # decode time of its first fragment, track timescale
    first_ref: Any
    parts: list[Part] = field(default_factory=list)
    duration: float = 0.0  # s; final once complete
    complete: bool = False
    fragments: int = 0
    nbytes: int = 0
    evicted: bool = False  # bytes dropped from memory; read back from the topic by first_ref
    dseq: int = 0  # discontinuity sequence number: discontinuities up to and including this segment

    def data(self) -> bytes | None:
        return None if self.evicted else b"".join(p.data() for p in self.parts)


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """What the multivariant playlist says about a rendition (from its newest init segment)."""

    kind: str  # video or audio
    codec_string: str
    width: int = 0
    height: int = 0
    channels: int = 0


class TrackWindow:
    """Segments and parts of one rendition, built from the topic's messages in order."""

    def __init__(self, config: HlsConfig) -> None:
        self.config = config
        self.inits: dict[int, bytes] = {}
        self.init_info: dict[int, TrackInfo] = {}
        self.segments: deque[Segment] = deque()
        self.discontinuities = 0  # so far; each segment keeps its discontinuity sequence number (dseq)
        self.following = ""  # the stream followed
        self.timescale = 90_000
        self.init_id = -1
        self.waiting_key = True
        self.pending_discontinuity = False
        self.next_msn = 0
        self.last_decode = -1
        self.frame_ticks = 0  # the newest decode-time step between fragments (a fragment's duration guess)
        self.nbytes = 0
        self._kept_from = 0  # msn of the oldest segment that may still hold its bytes
        self.ignored = 0  # fragments of streams not followed, or before their init/keyframe
        self.ended = False  # the followed stream ended (its end came)
        self.version = 0  # counts playlist changes

    # ---- input ---------------------------------------------------------------------------------
    def add(self, props: dict[str, str], payload: bytes, ref: Any) -> bool:
        """One message of the topic; True when the playlist changed (a part or segment closed or opened,
        the stream ended), and then ``version`` counts up (what a cached playlist text is keyed by)."""
        changed = self._add(props, payload, ref)
        if changed:
            self.version += 1
        return changed

    def _add(self, props: dict[str, str], payload: bytes, ref: Any) -> bool:
        kind = props.get("segment_type")
        if kind == "init":
            return self._init(props, payload)
        if kind == "end":
            if props.get("stream", "") == self.following and not self.ended:
                self.ended = True
                self._close_segment()
                return True  # the preload hint goes even when no segment was open
            return False
        if kind != "media":
            return False
        return self._fragment(props, payload, ref)

    def _init(self, props: dict[str, str], payload: bytes) -> bool:
        stream = props.get("stream", "")
        if stream == self.following and not self.ended and self.init_id >= 0 and self.inits[self.init_id] == payload:
            return False  # the same init again (a repeated copy): nothing changes
        changed = self._close_segment()
        self.init_id += 1
        self.inits[self.init_id] = payload
        self.init_info[self.init_id] = _info(props)
        self.following, self.ended = stream, False
        self.timescale = _int(props.get("timescale"), self.timescale) or self.timescale
        self.waiting_key = True
        self.pending_discontinuity = bool(self.segments)
        self.last_decode = -1
        return changed

    def _fragment(self, props: dict[str, str], payload: bytes, ref: Any) -> bool:
        if props.get("stream", "") != self.following or self.init_id < 0 or self.ended:
            self.ignored += 1
            return False
        key = props.get("keyframe", "1") != "0"
        decode = _int(props.get("decode_time"), -1)
        if decode < 0:
            self.ignored += 1
            return False
        if self.waiting_key and not key:
            self.ignored += 1
            return False
        changed = False
        if 0 <= decode < self.last_decode:  # the timeline went back without a new init
            changed |= self._close_segment()
            self.pending_discontinuity = True
            self.waiting_key = not key
            if not key:
                self.ignored += 1
                return changed
        elif self.last_decode >= 0 and decode > self.last_decode:
            self.frame_ticks = decode - self.last_decode
        if self.frame_ticks <= 0:
            self.frame_ticks = max(1, _int(props.get("duration"), self.timescale // 30))
        open_seg = self.segments[-1] if self.segments and not self.segments[-1].complete else None
        cfg = self.config
        if open_seg is not None:
            span = self._seconds(decode - open_seg.start_time)
            if (key and span >= cfg.segment_min) or span + self._seconds(self.frame_ticks) >= cfg.target_duration + 0.5:
                changed |= self._close_segment(end_decode=decode)
                open_seg = None
        if open_seg is None:
            open_seg = self._open_segment(props, decode, ref)
            changed = True
        if open_seg.parts and open_seg.parts[-1].complete:
            # the part closed on an estimate of its last frame's length; this fragment's start is its end
            closed = open_seg.parts[-1]
            actual = self._seconds(decode - closed.fragments[0].decode_time)
            if abs(actual - closed.duration) > 0.0005:
                closed.duration = actual
                changed = True
        part = open_seg.parts[-1] if open_seg.parts and not open_seg.parts[-1].complete else None
        if part is None:
            part = Part(len(open_seg.parts), independent=key)
            open_seg.parts.append(part)
        part.fragments.append(Fragment(payload, decode, ref))
        open_seg.fragments += 1
        open_seg.nbytes += len(payload)
        self.nbytes += len(payload)
        self.last_decode = decode
        self.waiting_key = False
        start = part.fragments[0].decode_time
        part.duration = self._seconds(decode + self.frame_ticks - start)
        if part.duration + self._seconds(self.frame_ticks) > cfg.part_target:
            part.complete = True  # one more frame would not fit: list it now
            changed = True
        self._evict()
        return changed

    # ---- segments ------------------------------------------------------------------------------
    def _open_segment(self, props: dict[str, str], decode: int, ref: Any) -> Segment:
        capture = _float(props.get("capture_ts"), 0.0)
        self.discontinuities += self.pending_discontinuity
        seg = Segment(self.next_msn, self.init_id, self.pending_discontinuity, self.following, capture, decode, ref,
                      dseq=self.discontinuities)
        self.next_msn += 1
        self.pending_discontinuity = False
        self.segments.append(seg)
        while len(self.segments) > self.config.max_segments:
            dropped = self.segments.popleft()
            self.nbytes -= 0 if dropped.evicted else dropped.nbytes
        return seg

    def _close_segment(self, end_decode: int | None = None) -> bool:
        if not self.segments or self.segments[-1].complete:
            return False
        seg = self.segments[-1]
        if end_decode is None:
            end_decode = self.last_decode + self.frame_ticks
        if seg.parts and not seg.parts[-1].complete:
            last = seg.parts[-1]
            last.duration = self._seconds(end_decode - last.fragments[0].decode_time)
            last.complete = True
        elif seg.parts:  # the part closed on an estimate: the next fragment tells its real end
            last = seg.parts[-1]
            last.duration = self._seconds(end_decode - last.fragments[0].decode_time)
        seg.duration = self._seconds(end_decode - seg.start_time)
        seg.complete = True
        return True

    def _evict(self) -> None:
        """Drop the bytes of the oldest segments until the window is within ``memory_bytes`` (never those
        of the last RECENT_TARGETS target durations). Segments lose their bytes oldest first, so the
        scan starts at the first one still holding them (``_kept_from``): linear over a catch-up."""
        if self.nbytes <= self.config.memory_bytes or not self.segments:
            return
        keep_after = self._recent_boundary()
        index = max(0, self._kept_from - self.segments[0].msn)
        while index < len(self.segments) and self.nbytes > self.config.memory_bytes:
            seg = self.segments[index]
            if seg.msn >= keep_after or not seg.complete:
                break
            if not seg.evicted:
                seg.evicted = True
                self.nbytes -= seg.nbytes
                seg.parts = []
            index += 1
            self._kept_from = seg.msn + 1

    def _recent_boundary(self) -> int:
        """The msn from which on segments are within RECENT_TARGETS target durations of the end."""
        total = 0.0
        limit = RECENT_TARGETS * self.config.target_duration
        for seg in reversed(self.segments):
            total += seg.duration if seg.complete else sum(p.duration for p in seg.parts)
            if total > limit:
                return seg.msn
        return self.segments[0].msn if self.segments else 0

    def _seconds(self, ticks: int) -> float:
        return ticks / self.timescale

    # ---- queries -------------------------------------------------------------------------------
    def segment(self, msn: int) -> Segment | None:
        if not self.segments:
            return None
        index = msn - self.segments[0].msn
        return self.segments[index] if 0 <= index < len(self.segments) else None

    def has_part(self, msn: int, part: int) -> bool:
        """Is part ``part`` of segment ``msn`` complete? A part index past the last part of a complete
        segment means part 0 of the next one (docs/hls.md "Blocking reload")."""
        seg = self.segment(msn)
        if seg is None:
            return bool(self.segments) and msn < self.segments[0].msn
        if seg.complete:
            return part < len(seg.parts) or seg.evicted or self.has_part(msn + 1, 0)
        return part < len(seg.parts) and seg.parts[part].complete

    def last_position(self) -> tuple[int, int]:
        """(msn, part index) of the newest complete part; (-1, -1) when there is none."""
        for seg in reversed(self.segments):
            done = [p.index for p in seg.parts if p.complete]
            if done:
                return seg.msn, done[-1]
            if seg.complete:
                return seg.msn, max(0, len(seg.parts) - 1)
        return -1, -1

    def segment_due(self) -> bool:
        """Will the next fragment probably start a new segment? True when the open segment is as long as
        the previous one (the GOP repeats) and at least ``segment_min``."""
        if len(self.segments) < 2 or self.segments[-1].complete:
            return True
        open_seg, previous = self.segments[-1], self.segments[-2]
        span = self._seconds(self.last_decode + self.frame_ticks - open_seg.start_time)
        return span >= self.config.segment_min and span >= previous.duration - self._seconds(self.frame_ticks) / 2

    def info(self) -> TrackInfo | None:
        return self.init_info.get(self.init_id)

    def segment_at(self, capture_ms: float) -> Segment | None:
        """The segment holding the moment ``capture_ms`` (capture clock), or the first after it."""
        found = None
        for seg in self.segments:
            if seg.pdt_ms <= capture_ms:
                found = seg
            else:
                return found or seg
        return found


def _info(props: dict[str, str]) -> TrackInfo:
    audio = props.get("kind") == "audio"
    return TrackInfo("audio" if audio else "video", props.get("codec_string", ""),
                     _int(props.get("width"), 0), _int(props.get("height"), 0), _int(props.get("channels"), 0))


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _float(text: str | None, default: float) -> float:
    try:
        return float(text) if text is not None else default
    except ValueError:
        return default
