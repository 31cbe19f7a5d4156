"""chunk: encoded frames in, fragmented MP4 (CMAF) segments out; large payloads split.

Input `encoded` (from transcode) and `file-in`. One track per (stream, rendition) for H.264 and
per stream for audio (Opus or AAC from ADTS). Each track publishes an init segment (ftyp+moov)
when its codec configuration first appears or changes (SPS/PPS; Opus channel count; AAC
AudioSpecificConfig), then one fragment (moof+mdat) per `fragment_frames` video frames (default
1: a frame is on `segments` as soon as it is encoded; 0 = one fragment per GOP) or per
`audio_fragment_frames` audio packets (default 3, 60 ms of Opus). A video keyframe always
starts a new fragment, so a fragment that begins with one is a random-access point. A track
that receives nothing for `fragment_idle_ms` (default 200) has its open fragment published as
it is, so a stream that stops does not leave its last frames unpublished and unacked: every
message reads the clock once, and at most every min(fragment_idle_ms / 2, 1 s) the tracks are
swept (flush the idle ones, release tracks idle for `stream_idle_s`). process() is the only
thread that may touch the tracks (one message at a time, docs/pulsar-functions.md §1.2), so the sweep
runs there: if no message at all arrives on the instance, nothing is flushed until one does.
Properties: ENVELOPE.md "Segments", schemas/segment.schema.json. Any payload above
`max_chunk_bytes` is split into ordered parts with `chunk_id`, `chunk_index`, `chunk_count`,
`total_size`. Files pass through (split when large).

End of stream (ENVELOPE.md): each track of the stream publishes its open fragment and then an
end message (`segment_type` `end`, with the track's kind/rendition so route takes it to the
track's room topic), and is released; the end is acked after those publishes.

Inputs are acked in the publish callback of the last message that carries them (a buffered
frame waits for its fragment), MANUAL guarantee: docs/pulsar-functions.md §2.2. Bad input goes to
the dead-letter topic (`deadLetterTopic` in userConfig) and is acked.

userConfig: `fragment_frames`, `audio_fragment_frames`, `max_chunk_bytes` (default 1 MiB),
`timescale` (video, 90000), `fps` (duration guess for the newest video frame, default 30),
`fragment_idle_ms`, `stream_idle_s`, `output_topic`, `deadLetterTopic`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pulsar
from media_audio import opus_channels, opus_packet_samples, parse_adts
from media_config import number, text, user_config
from media_envelope import (
    KIND_AUDIO,
    KIND_FILE,
    SEGMENT_TYPE_END,
    SERDE,
    STREAM_ID_RE,
    TOPIC_DEAD_LETTER,
    TOPIC_SEGMENTS,
    BadInput,
    EndOfStream,
    FrameHeader,
    StreamIdentity,
    is_end_of_stream,
    parse_end,
    parse_header,
    stream_identity,
    topic_in_namespace,
)
from media_fmp4 import Sample, avc1_entry, init_segment, media_segment, mp4a_entry, opus_entry
from media_h264 import avcc_record, codec_string, parameter_sets, split_annexb, sps_dimensions, to_avcc_sample
from output_ack import OutputBatch, ack_current, publish_dead_letter

log = logging.getLogger(__name__)

FUNCTION = "chunk"
DEFAULT_MAX_CHUNK_BYTES = 1 << 20
OPUS_TIMESCALE = 48_000
AAC_FRAME_SAMPLES = 1024
AUDIO_TRACK = "audio"  # the track name of a stream's audio (video tracks are named by rendition)
# Per-frame properties that do not describe a whole fragment; replaced by first_seq/last_seq etc.
_FRAME_ONLY_PROPS = ("seq", "pts", "keyframe")


@dataclass
class PendingFrame:
    sample: bytes
    keyframe: bool
    seq: int
    decode_time: int  # timescale units
    duration: int  # timescale units; 0 = not known yet (video: set from the next frame)
    props: dict[str, str]
    msg_id: Any
    topic: str


@dataclass
class TrackState:
    """One track: codec configuration, timeline and the frames of the open fragment."""

    codec: str  # h264, opus, aac
    timescale: int
    config: bytes | None = None  # what the init segment was built from; a change means a new init
    codec_string: str = ""
    size: tuple[int, int] = (0, 0)  # video
    audio_format: tuple[int, int] = (0, 0)  # sample rate, channels
    init: bytes | None = None
    init_unpublished: bool = False
    segment_seq: int = 0
    base_pts: int | None = None
    last_decode_time: int = -1
    next_decode_time: int = 0  # audio: where the next packet starts when nothing jumped
    frame_duration: int = 0
    last_seq: int = -1
    last_seen: float = 0.0
    wait_logged: bool = False
    pending: list[PendingFrame] = field(default_factory=list)
    user: str = ""  # of the newest frame; an end of stream for the track names it (route, viewers)

    @property
    def mime(self) -> str:
        return f'{"video" if self.codec == "h264" else "audio"}/mp4; codecs="{self.codec_string}"'


class ChunkFunction(pulsar.Function):
    def __init__(self) -> None:
        self._configured = False
        self._tracks: dict[tuple[StreamIdentity, str], TrackState] = {}  # (whose stream, track name)
        self._clock = time.time
        self._last_sweep = 0.0

    def _configure(self, context: Any) -> None:
        cfg = user_config(context)
        tenant, namespace = context.get_function_tenant(), context.get_function_namespace()
        # Not context.get_output_topic(): the official ContextImpl reads a FunctionDetails field that
        # does not exist and raises (found by localrun/context.py), so the topic comes from userConfig.
        self._output_topic = text(cfg, "output_topic", topic_in_namespace(tenant, namespace, TOPIC_SEGMENTS))
        self._dead_letter_topic = text(cfg, "deadLetterTopic", topic_in_namespace(tenant, namespace, TOPIC_DEAD_LETTER))
        self._fragment_frames = number(cfg, "fragment_frames", 1, minimum=0)
        self._audio_fragment_frames = number(cfg, "audio_fragment_frames", 3, minimum=1)
        self._max_chunk_bytes = number(cfg, "max_chunk_bytes", DEFAULT_MAX_CHUNK_BYTES, minimum=1024)
        self._timescale = number(cfg, "timescale", 90_000, minimum=1000)
        fps = number(cfg, "fps", 30.0, minimum=1, integer=False)
        self._default_duration = max(1, round(self._timescale / fps))
        self._idle_s = number(cfg, "stream_idle_s", 60.0, minimum=1, integer=False)
        self._fragment_idle_s = number(cfg, "fragment_idle_ms", 200, minimum=10) / 1000.0
        self._sweep_every_s = min(self._fragment_idle_s / 2, 1.0)
        self._last_sweep = self._clock()
        self._configured = True

    # --- entry point ---
    def process(self, input: Any, context: Any) -> None:  # noqa: A002 - Pulsar's signature
        if not self._configured:
            self._configure(context)
        started = time.perf_counter()
        try:
            if not isinstance(input, bytes | bytearray | memoryview):
                raise BadInput("not_bytes", f"payload is {type(input).__name__}; set serdeClassName {SERDE}")
            payload = bytes(input)
            props = context.get_message_properties()
            topic = context.get_current_message_topic_name()
            if is_end_of_stream(props):
                self._end(parse_end(props, context.get_message_key()), props, context)
            elif props.get("kind") == KIND_FILE or topic.rsplit("/", 1)[-1].startswith("file-in"):
                self._pass_file(payload, props, context)
            else:
                header = parse_header(props, context.get_message_key(), topic, context.get_message_eventtime())
                self._frame(payload, header, props, context)
        except BadInput as exc:
            context.record_metric(f"dead_letter_{exc.code}", 1)
            publish_dead_letter(context, self._dead_letter_topic, FUNCTION, input, exc.reason, SERDE)
        except Exception as exc:  # never crash the instance
            log.exception("chunk: unexpected error")
            publish_dead_letter(context, self._dead_letter_topic, FUNCTION, input, f"internal_error: {exc!r}"[:200],
                                SERDE)
        context.record_metric("chunk_ms", (time.perf_counter() - started) * 1000.0)
        now = self._clock()
        if now - self._last_sweep >= self._sweep_every_s:  # one clock read per message, a sweep now and then
            self._last_sweep = now
            self._sweep(context, now)

    # --- frames ---
    def _frame(self, payload: bytes, header: FrameHeader, props: dict[str, str], context: Any) -> None:
        audio = header.kind == KIND_AUDIO
        if header.codec not in (("opus", "aac") if audio else ("h264",)):
            raise BadInput("unknown_codec", f"chunk packages h264 video and opus/aac audio, got {header.kind} codec "
                                            f"{header.codec[:40]!r}")
        name = AUDIO_TRACK if audio else props.get("rendition") or "source"
        key = (stream_identity(props, header.stream), name)
        track = self._tracks.get(key)
        if track is None or track.codec != header.codec:
            if track is not None:
                self._flush(track, header.stream, name, context)
            timescale = self._timescale if header.codec == "h264" else OPUS_TIMESCALE
            track = self._tracks[key] = TrackState(header.codec, timescale)
        track.last_seen = self._clock()
        track.user = props.get("user", track.user)
        if header.seq <= track.last_seq:
            log.warning("chunk: %s/%s seq %d <= last %d, dropped as stale", header.stream, name, header.seq,
                        track.last_seq)
            context.record_metric("stale_seq", 1)
            ack_current(context)
            return
        track.last_seq = header.seq
        if header.codec == "h264":
            parsed = self._h264_sample(payload, header, track, name, context)
        elif header.codec == "opus":
            parsed = self._opus_sample(payload, header, track, name, context)
        else:
            parsed = self._aac_sample(payload, header, track, name, context)
        if parsed is None:
            ack_current(context)
            return
        sample, keyframe, duration = parsed
        if not audio and keyframe and track.pending:
            self._flush(track, header.stream, name, context)  # a keyframe opens a fragment
        decode_time = self._audio_decode_time(track, header.pts) if audio else self._video_decode_time(track, header.pts)
        track.pending.append(PendingFrame(sample, keyframe, header.seq, decode_time, duration, props,
                                          context.get_message_id(), context.get_current_message_topic_name()))
        limit = self._audio_fragment_frames if audio else self._fragment_frames
        if limit and len(track.pending) >= limit:
            self._flush(track, header.stream, name, context)

    def _new_config(self, track: TrackState, config: bytes, stream: str, name: str, context: Any) -> bool:
        """Flush frames of the old configuration; True when `config` differs (caller builds the init)."""
        if config == track.config:
            return False
        self._flush(track, stream, name, context)
        if track.config is not None:
            log.info("chunk: %s/%s codec configuration changed, new init segment", stream, name)
            context.record_metric("init_changed", 1)
        track.config = config
        track.init_unpublished = True
        return True

    def _h264_sample(self, payload: bytes, header: FrameHeader, track: TrackState, name: str,
                     context: Any) -> tuple[bytes, bool, int] | None:
        nals = split_annexb(payload)
        if not nals:
            raise BadInput("bad_bitstream", f"no Annex B NAL units in {len(payload)} bytes")
        sps, pps = parameter_sets(nals)
        if sps is not None and pps is not None:
            try:
                avcc = avcc_record(sps, pps)
                codec = codec_string(sps)
                size = sps_dimensions(sps)  # the stream's truth, whatever the properties say
            except ValueError as exc:
                raise BadInput("bad_bitstream", f"SPS/PPS: {exc}") from None
            if self._new_config(track, sps + pps, header.stream, name, context):
                track.codec_string, track.size = codec, size
                track.init = init_segment(sample_entry=avc1_entry(*size, avcc), timescale=track.timescale,
                                          width=size[0], height=size[1])
        if track.config is None:
            self._waiting(track, header, name, context)
            return None
        sample = to_avcc_sample(nals)
        if not sample:
            context.record_metric("no_sample", 1)
            return None
        keyframe = header.keyframe if header.keyframe is not None else any(n[0] & 0x1F == 5 for n in nals)
        return sample, keyframe, 0

    def _opus_sample(self, payload: bytes, header: FrameHeader, track: TrackState, name: str,
                     context: Any) -> tuple[bytes, bool, int]:
        try:
            duration = opus_packet_samples(payload)
        except ValueError as exc:
            raise BadInput("bad_bitstream", f"opus: {exc}") from None
        channels = opus_channels(payload)
        if self._new_config(track, bytes([channels]), header.stream, name, context):
            track.codec_string, track.audio_format = "opus", (OPUS_TIMESCALE, channels)
            track.init = init_segment(sample_entry=opus_entry(channels), timescale=OPUS_TIMESCALE)
        return payload, True, duration

    def _aac_sample(self, payload: bytes, header: FrameHeader, track: TrackState, name: str,
                    context: Any) -> tuple[bytes, bool, int]:
        try:
            frame = parse_adts(payload)
        except ValueError as exc:
            raise BadInput("bad_bitstream", f"aac: {exc}") from None
        if self._new_config(track, frame.audio_specific_config, header.stream, name, context):
            track.codec_string = f"mp4a.40.{frame.audio_specific_config[0] >> 3}"
            track.audio_format = (frame.sample_rate, frame.channels)
            track.timescale = frame.sample_rate
            track.init = init_segment(sample_entry=mp4a_entry(frame.channels, frame.sample_rate,
                                                              frame.audio_specific_config),
                                      timescale=frame.sample_rate)
        return frame.raw, True, AAC_FRAME_SAMPLES

    def _waiting(self, track: TrackState, header: FrameHeader, name: str, context: Any) -> None:
        if not track.wait_logged:  # one line per wait, not one per dropped frame
            log.info("chunk: %s/%s seq %d: dropping frames until SPS/PPS arrive", header.stream, name, header.seq)
            track.wait_logged = True
        context.record_metric("waiting_init", 1)

    # --- timeline ---
    def _video_decode_time(self, track: TrackState, pts: int) -> int:
        """Decode time from the frame pts (µs) relative to the track's first frame, kept strictly
        increasing (no B-frames, so decode order is presentation order)."""
        if track.base_pts is None:
            track.base_pts = pts
        decode_time = round((pts - track.base_pts) * track.timescale / 1_000_000)
        if track.last_decode_time >= 0:
            delta = decode_time - track.last_decode_time
            if delta <= 0:
                decode_time = track.last_decode_time + 1
            else:
                track.frame_duration = delta
        track.last_decode_time = decode_time
        return decode_time

    def _audio_decode_time(self, track: TrackState, pts: int) -> int:
        """Audio packets butt together (their durations are exact); the pts only matters when it
        jumps ahead by more than a packet (packets lost or the sender paused), never backwards."""
        if track.base_pts is None:
            track.base_pts = pts
        from_pts = round((pts - track.base_pts) * track.timescale / 1_000_000)
        expected = track.next_decode_time
        gap_limit = track.frame_duration or track.timescale // 50
        decode_time = from_pts if from_pts > expected + gap_limit else expected
        track.last_decode_time = decode_time
        return decode_time

    # --- output ---
    def _flush(self, track: TrackState, stream: str, name: str, context: Any) -> None:
        """Publish the open fragment (and the init segment before it, if new); ack its frames after."""
        frames, track.pending = track.pending, []
        if not frames:
            return
        samples = []
        for i, frame in enumerate(frames):
            duration = frame.duration
            if not duration:
                if i + 1 < len(frames):
                    duration = frames[i + 1].decode_time - frame.decode_time
                else:
                    duration = track.frame_duration or self._default_duration  # the newest frame: a guess
            samples.append(Sample(frame.sample, duration, frame.keyframe))
        if track.codec != "h264":
            track.frame_duration = samples[-1].duration
            track.next_decode_time = frames[-1].decode_time + samples[-1].duration
        fragment = media_segment(sequence_number=track.segment_seq + 1, base_decode_time=frames[0].decode_time,
                                 samples=samples)
        first = frames[0]
        common = {k: v for k, v in first.props.items() if k not in _FRAME_ONLY_PROPS}
        common.update(stream=stream, codec=track.codec, codec_string=track.codec_string, mime=track.mime,
                      timescale=str(track.timescale), segment_seq=str(track.segment_seq), t_chunk=_now_ms(self._clock))
        if track.codec == "h264":
            common.update(rendition=name, width=str(track.size[0]), height=str(track.size[1]))
        else:
            common.update(kind=KIND_AUDIO, sample_rate=str(track.audio_format[0]), channels=str(track.audio_format[1]))
        event_time = _event_time(first.props)
        batch = OutputBatch(context)
        for frame in frames:
            batch.add_input(frame.msg_id, frame.topic)
        if track.init_unpublished and track.init is not None:
            self._publish(batch, track.init, dict(common, segment_type="init"), stream, event_time,
                          f"{stream}.{name}.init.{track.segment_seq}")
            track.init_unpublished = False
        media_props = dict(
            common,
            segment_type="media",
            decode_time=str(first.decode_time),
            duration=str(sum(s.duration for s in samples)),
            keyframe="1" if first.keyframe else "0",
            first_seq=str(first.seq),
            last_seq=str(frames[-1].seq),
        )
        self._publish(batch, fragment, media_props, stream, event_time, f"{stream}.{name}.media.{track.segment_seq}")
        batch.seal()
        track.segment_seq += 1
        context.record_metric("fragment_frames", len(frames))

    def _end(self, end: EndOfStream, props: dict[str, str], context: Any) -> None:
        """The stream is over (ENVELOPE.md "End of stream"): each of its tracks publishes its open
        fragment, then an end (segment_type `end`) that route takes to the track's room topic, and is
        forgotten. The input is acked once every end is published. A track that went on past the end's
        last_seq (a newer session) is left alone."""
        batch = OutputBatch(context)
        batch.add_current_input()
        ident = stream_identity(props, end.stream)
        for key in [k for k in self._tracks if k[0] == ident]:
            track = self._tracks[key]
            if track.last_seq > end.last_seq:
                context.record_metric("stale_end", 1)
                continue
            name = key[1]
            self._flush(track, end.stream, name, context)
            out = dict(props, segment_type=SEGMENT_TYPE_END, stream=end.stream, codec=track.codec,
                       codec_string=track.codec_string, mime=track.mime, timescale=str(track.timescale),
                       segment_seq=str(track.segment_seq), last_seq=str(track.last_seq), t_chunk=_now_ms(self._clock))
            if track.user and not out.get("user"):
                out["user"] = track.user
            if track.codec == "h264":
                out.update(rendition=name, width=str(track.size[0]), height=str(track.size[1]))
            else:
                out.update(kind=KIND_AUDIO, sample_rate=str(track.audio_format[0]), channels=str(track.audio_format[1]))
            self._publish(batch, b"", out, end.stream, int(self._clock() * 1000), f"{end.stream}.{name}.end")
            del self._tracks[key]
            context.record_metric("track_ended", 1)
        batch.seal()

    def _pass_file(self, payload: bytes, props: dict[str, str], context: Any) -> None:
        stream = context.get_message_key() or props.get("stream", "")
        if not STREAM_ID_RE.fullmatch(stream):
            raise BadInput("bad_header", f"stream id {stream[:70]!r} missing or not [A-Za-z0-9_-]{{1,64}}")
        msg_id = context.get_message_id()
        ident = props.get("seq") or f"{msg_id.ledger_id()}-{msg_id.entry_id()}"
        out = dict(props, stream=stream, kind=KIND_FILE, t_chunk=_now_ms(self._clock))
        batch = OutputBatch(context)
        batch.add_current_input()
        self._publish(batch, payload, out, stream, context.get_message_eventtime() or None, f"{stream}.file.{ident}")
        batch.seal()

    def _publish(self, batch: OutputBatch, payload: bytes, props: dict[str, str], key: str, event_time: int | None,
                 chunk_id: str) -> None:
        """One message, or ordered parts of at most `max_chunk_bytes` when the payload is larger."""
        conf: dict[str, Any] = {"partition_key": key}
        if event_time:
            conf["event_timestamp"] = event_time
        if len(payload) <= self._max_chunk_bytes:
            batch.publish(self._output_topic, payload, SERDE, dict(conf, properties=props))
            return
        size = self._max_chunk_bytes
        count = (len(payload) + size - 1) // size
        for index in range(count):
            part_props = dict(props, chunk_id=chunk_id, chunk_index=str(index), chunk_count=str(count),
                              total_size=str(len(payload)))
            batch.publish(self._output_topic, payload[index * size : (index + 1) * size], SERDE,
                          dict(conf, properties=part_props))

    def _sweep(self, context: Any, now: float) -> None:
        """Publish the open fragment of tracks quiet for `fragment_idle_ms`; release tracks quiet for
        `stream_idle_s`."""
        flush_before, evict_before = now - self._fragment_idle_s, now - self._idle_s
        for key, track in list(self._tracks.items()):
            if track.last_seen < evict_before:
                self._flush(track, key[0][2], key[1], context)
                del self._tracks[key]
                log.info("chunk: %s/%s idle for %.0f s, state released", key[0][2], key[1], self._idle_s)
                context.record_metric("track_evicted", 1)
            elif track.pending and track.last_seen < flush_before:
                self._flush(track, key[0][2], key[1], context)
                context.record_metric("idle_flush", 1)


def _event_time(props: dict[str, str]) -> int | None:
    try:
        value = int(float(props.get("capture_ts", "")))
    except ValueError:
        return None
    return value or None


def _now_ms(clock: Any) -> str:
    return f"{clock() * 1000.0:.3f}"
