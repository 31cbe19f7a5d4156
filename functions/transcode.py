"""transcode: browser frames (VP8, VP9, H.264 Annex B, JPEG, I420) in, H.264 renditions out.

Inputs `raw-video`, `raw-screen`, `raw-audio` (one frame per message, ENVELOPE.md). Output
`encoded`: one Annex B access unit per rendition per input frame, keyed by stream id, with the
frame header carried through plus `rendition`, `codec=h264` and `t_transcode`. Opus/AAC audio
passes through unchanged, or Opus becomes AAC-LC when configured. Properties:
schemas/encoded.schema.json.

Acks (MANUAL guarantee, docs/pulsar-functions.md §2.2/§2.4), never before the publish callbacks:
  * inter-coded video (VP8, VP9, H.264): acks are held per GOP (media_gop.py). An input is acked
    only when every input of its GOP has its outputs persisted (or legitimately had none: dropped
    while waiting for a keyframe, no decoder output, stale seq) AND the keyframe opening the next
    GOP of the stream has its outputs persisted. A failed publish leaves the whole GOP unacked.
    So after a kill -9 redelivery starts at a keyframe and the fresh decoder re-produces every
    frame; re-published outputs keep their `seq` (downstream dedups by stream+seq). This defers
    all acks per GOP, not only those of dropped frames: the Context exposes no redelivery count,
    and a drop "while waiting for a keyframe" is only safe to ack once a keyframe is out, which
    is also right for a stream that truly began without one (those drops are acked when its
    first keyframe is published). Bounds: a GOP is closed without a keyframe after
    `gop_max_frames` inputs (default 600) or `gop_hold_ms` (default 5 x keyframe_interval_ms) and
    when the stream is evicted; only then can a crash cost the frames up to the next keyframe.
  * intra-only video (JPEG, I420), audio, dead letters: each input is acked in the callback of
    its last output (or at once when it yields nothing); bad input goes to the dead-letter topic
    and is acked once that is persisted.

End of stream (ENVELOPE.md): when the ingress ends a stream, the AAC samples still buffered are
encoded and published, the last GOP's acks are released (acked once their publishes are back),
the end goes on to `encoded` behind the stream's last output, and the stream's state is dropped;
so a stopped stream's tail never waits for the next message or the idle sweep.

userConfig: `renditions` (list of {name, height, bitrate}), `preset`, `profile`, `fps`,
`threads`, `keyframe_interval_ms` (default 2000), `gap_policy` (`wait_keyframe` | `decode`),
`stream_idle_s` (default 60; checked by wall clock about once a second), `gop_max_frames`,
`gop_hold_ms`, `audio_output` (`passthrough` | `aac`: Opus -> AAC-LC ADTS frames,
acked once the AAC frame holding an input's last samples is published), `aac_bitrate`,
`output_topic`, `deadLetterTopic`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import av
import pulsar
from media_audio import SAMPLE_RATE, AacFrame, OpusToAac
from media_config import number, text, user_config
from media_decode import INTRA_ONLY_CODECS, VideoDecoder, sniff_keyframe
from media_encode import X264_PRESETS, EncoderSettings, RenditionEncoder, Rung, parse_ladder, plan_ladder
from media_envelope import (
    AUDIO_CODECS,
    KIND_AUDIO,
    SERDE,
    TOPIC_DEAD_LETTER,
    TOPIC_ENCODED,
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
from media_gop import GopAckHolder
from output_ack import OutputBatch, ack_current, publish_dead_letter

log = logging.getLogger(__name__)

FUNCTION = "transcode"
SWEEP_INTERVAL_S = 1.0  # how often process() looks for idle streams and over-age GOPs


@dataclass
class StreamState:
    """Everything kept per stream id (Key_Shared pins a stream to this instance)."""

    last_seq: int = -1
    last_seen: float = 0.0
    decoder: VideoDecoder | None = None
    need_keyframe: bool = True
    source_size: tuple[int, int] = (0, 0)
    encoders: dict[str, RenditionEncoder] = field(default_factory=dict)
    last_key_pts: int | None = None
    wait_logged: bool = False
    aac: OpusToAac | None = None
    aac_seq: int = 0
    aac_props: dict[str, str] = field(default_factory=dict)  # of the newest input, for flushed frames
    # inputs whose samples are not all inside a published AAC frame yet: (end sample, msg id, topic)
    aac_waiting: list[tuple[int, Any, str]] = field(default_factory=list)
    gop: GopAckHolder | None = None  # held acks of the video inputs (media_gop.py); None for audio


class TranscodeFunction(pulsar.Function):
    def __init__(self) -> None:
        # Pulsar constructs the class with no arguments (docs/pulsar-functions.md §1.1); config is read on first process().
        self._configured = False
        self._streams: dict[StreamIdentity, StreamState] = {}
        self._clock = time.time
        self._last_sweep = 0.0

    # --- configuration ---
    def _configure(self, context: Any) -> None:
        cfg = user_config(context)
        tenant, namespace = context.get_function_tenant(), context.get_function_namespace()
        # Not context.get_output_topic(): the official ContextImpl reads a FunctionDetails field that
        # does not exist and raises (found by localrun/context.py), so the topic comes from userConfig.
        self._output_topic = text(cfg, "output_topic", topic_in_namespace(tenant, namespace, TOPIC_ENCODED))
        self._dead_letter_topic = text(cfg, "deadLetterTopic", topic_in_namespace(tenant, namespace, TOPIC_DEAD_LETTER))
        try:
            self._ladder: list[Rung] = parse_ladder(cfg.get("renditions"))
        except ValueError as exc:
            log.error("transcode: userConfig renditions rejected (%s); using the default ladder", exc)
            self._ladder = parse_ladder(None)
        defaults = EncoderSettings()
        self._settings = EncoderSettings(
            preset=text(cfg, "preset", defaults.preset, choices=X264_PRESETS),
            profile=text(cfg, "profile", defaults.profile, choices=("baseline", "main")),
            fps=number(cfg, "fps", defaults.fps, minimum=1),
            threads=number(cfg, "threads", defaults.threads, minimum=0),
        )
        self._keyframe_interval_us = number(cfg, "keyframe_interval_ms", 2000, minimum=100) * 1000
        self._gap_waits_for_keyframe = text(cfg, "gap_policy", "wait_keyframe",
                                            choices=("wait_keyframe", "decode")) == "wait_keyframe"
        self._idle_s = number(cfg, "stream_idle_s", 60.0, minimum=1, integer=False)
        self._audio_to_aac = text(cfg, "audio_output", "passthrough", choices=("passthrough", "aac")) == "aac"
        self._aac_bitrate = number(cfg, "aac_bitrate", 64_000, minimum=8_000)
        self._gop_max_frames = number(cfg, "gop_max_frames", 600, minimum=1)
        self._gop_hold_s = number(cfg, "gop_hold_ms", 5 * self._keyframe_interval_us // 1000, minimum=100) / 1000.0
        self._last_sweep = self._clock()
        self._configured = True

    # --- entry point ---
    def process(self, input: Any, context: Any) -> None:  # noqa: A002 - Pulsar's signature
        if not self._configured:
            self._configure(context)
        started = time.perf_counter()
        props = context.get_message_properties()
        topic = context.get_current_message_topic_name()
        try:
            if not isinstance(input, bytes | bytearray | memoryview):
                raise BadInput("not_bytes", f"payload is {type(input).__name__}; set serdeClassName {SERDE}")
            payload = bytes(input)
            if is_end_of_stream(props):
                self._end(parse_end(props, context.get_message_key()), props, context)
            else:
                header = parse_header(props, context.get_message_key(), topic, context.get_message_eventtime())
                self._handle(payload, header, props, context)
        except BadInput as exc:
            self._dead_letter(context, input, exc)
        except Exception as exc:  # bad input must never crash the instance
            log.exception("transcode: unexpected error on %s", topic)
            self._dead_letter(context, input, BadInput("internal_error", repr(exc)[:200]))
        context.record_metric("transcode_ms", (time.perf_counter() - started) * 1000.0)
        now = self._clock()
        if now - self._last_sweep >= SWEEP_INTERVAL_S:  # one clock read per message; the sweep ~1/s
            self._last_sweep = now
            self._sweep(context, now)

    # --- per message ---
    def _handle(self, payload: bytes, header: FrameHeader, props: dict[str, str], context: Any) -> None:
        ident = stream_identity(props, header.stream)
        state = self._streams.get(ident)
        if state is None:
            state = self._streams[ident] = StreamState()
        state.last_seen = self._clock()
        if header.seq <= state.last_seq:
            log.warning("transcode: stream %s seq %d <= last %d, dropped as stale", header.stream, header.seq,
                        state.last_seq)
            context.record_metric("stale_seq", 1)
            self._no_output(state, context)  # video: with its GOP, the original copy may still be in flight
            return
        previous = state.last_seq
        gap = previous >= 0 and header.seq > previous + 1
        state.last_seq = header.seq
        if header.kind == KIND_AUDIO:
            if self._audio_to_aac and header.codec == "opus":
                self._opus_to_aac(payload, header, props, state, context)
            else:
                self._pass_audio(payload, header, props, context)
            return
        if gap:
            log.warning("transcode: stream %s seq gap %d -> %d", header.stream, previous, header.seq)
            context.record_metric("seq_gap", 1)
            if self._gap_waits_for_keyframe and header.codec not in INTRA_ONLY_CODECS:
                state.need_keyframe = True
        self._transcode(payload, header, props, state, context)

    def _pass_audio(self, payload: bytes, header: FrameHeader, props: dict[str, str], context: Any) -> None:
        if header.codec not in AUDIO_CODECS:
            raise BadInput("unknown_codec", f"audio codec {header.codec[:40]!r} is not opus or aac")
        out = dict(props, stream=header.stream, kind=KIND_AUDIO, t_transcode=self._now_ms())
        batch = OutputBatch(context)
        batch.add_current_input()
        batch.publish(self._output_topic, payload, SERDE, self._conf(header, out))
        batch.seal()
        context.record_metric("audio_passed", 1)

    def _opus_to_aac(self, payload: bytes, header: FrameHeader, props: dict[str, str], state: StreamState,
                     context: Any) -> None:
        if state.aac is None:
            state.aac = OpusToAac(payload, header.pts, self._aac_bitrate)
        frames = state.aac.push(payload)  # BadInput -> dead letter; earlier inputs stay waiting
        state.aac_props = props
        state.aac_waiting.append((state.aac.samples_decoded, context.get_message_id(),
                                  context.get_current_message_topic_name()))
        if not frames:
            context.record_metric("audio_buffered", 1)  # acked with the AAC frame that completes it
            return
        self._publish_aac(frames, header.stream, props, state, context, header.capture_ts)

    def _publish_aac(self, frames: list[AacFrame], stream: str, props: dict[str, str], state: StreamState,
                     context: Any, capture_ts: float, flushed: bool = False) -> None:
        assert state.aac is not None
        batch = OutputBatch(context)
        covered = state.aac.samples_covered
        done = [w for w in state.aac_waiting if flushed or w[0] <= covered]
        state.aac_waiting = [w for w in state.aac_waiting if not (flushed or w[0] <= covered)]
        for _end, msg_id, topic in done:
            batch.add_input(msg_id, topic)
        for frame in frames:
            out = dict(props, stream=stream, kind=KIND_AUDIO, codec="aac", seq=str(state.aac_seq), pts=str(frame.pts),
                       keyframe="1", sample_rate=str(SAMPLE_RATE), channels=str(state.aac.channels),
                       t_transcode=self._now_ms())
            state.aac_seq += 1
            conf: dict[str, Any] = {"partition_key": stream, "properties": out}
            if capture_ts > 0:
                conf["event_timestamp"] = int(capture_ts)
            batch.publish(self._output_topic, frame.data, SERDE, conf)
        batch.seal()

    def _transcode(self, payload: bytes, header: FrameHeader, props: dict[str, str], state: StreamState,
                   context: Any) -> None:
        if header.codec in INTRA_ONLY_CODECS or header.keyframe is None:
            keyframe = bool(sniff_keyframe(header.codec, payload))  # JPEG/I420: every frame stands alone
        else:
            keyframe = header.keyframe
        fresh = False
        if state.decoder is None or state.decoder.codec != header.codec:
            if state.decoder is not None:
                log.warning("transcode: stream %s codec %s -> %s", header.stream, state.decoder.codec, header.codec)
            state.decoder = VideoDecoder(header.codec)  # raises BadInput for an unknown codec
            state.need_keyframe = fresh = True
        if state.need_keyframe and not keyframe:
            if not state.wait_logged:  # one line per wait, not one per dropped frame
                log.info("transcode: stream %s seq %d: dropping frames until a keyframe", header.stream, header.seq)
                state.wait_logged = True
            context.record_metric("waiting_keyframe", 1)
            self._hold(state, context, keyframe=False, standalone=False)(True)
            return
        if state.need_keyframe:
            if not fresh:
                state.decoder = VideoDecoder(header.codec)  # fresh decoder: no state from before the gap
            state.need_keyframe = state.wait_logged = False
        try:
            frames = state.decoder.decode(payload, width=header.width, height=header.height)
        except BadInput:
            state.need_keyframe = True  # references are now broken: resume at the next keyframe
            raise
        done = self._hold(state, context, keyframe=keyframe, standalone=header.codec in INTRA_ONLY_CODECS)
        if not frames:
            context.record_metric("no_output", 1)
            done(True)
            return
        batch = OutputBatch(context, on_done=done)
        try:
            for frame in frames:
                self._encode_frame(frame, header, props, keyframe, state, batch, context)
        except Exception:
            done(True)  # the input goes to the dead-letter topic (acked there); its GOP must not wait for it
            raise
        batch.seal()

    def _encode_frame(self, frame: av.VideoFrame, header: FrameHeader, props: dict[str, str], keyframe: bool,
                      state: StreamState, batch: OutputBatch, context: Any) -> None:
        size = (frame.width, frame.height)
        if size != state.source_size:
            if state.source_size != (0, 0):
                log.warning("transcode: stream %s resolution %dx%d -> %dx%d", header.stream, *state.source_size,
                            *size)
                context.record_metric("resolution_change", 1)
            state.source_size = size
            plan = plan_ladder(self._ladder, *size)
            kept: dict[str, RenditionEncoder] = {}
            for rung, width, height in plan:
                old = state.encoders.get(rung.name)
                if old is not None and (old.width, old.height) == (width, height):
                    kept[rung.name] = old
                else:
                    kept[rung.name] = RenditionEncoder(rung, width, height, self._settings)
            state.encoders = kept
            keyframe = True  # new encoders start with an IDR anyway; keep all rungs aligned
        force = keyframe or (
            state.last_key_pts is None or header.pts - state.last_key_pts >= self._keyframe_interval_us
        )
        if force:
            state.last_key_pts = header.pts
        for name, encoder in state.encoders.items():
            for packet in encoder.encode(frame, header.pts, force):
                out = dict(
                    props,
                    stream=header.stream,
                    kind=header.kind,
                    codec="h264",
                    seq=str(header.seq),
                    pts=str(header.pts),
                    capture_ts=_fmt_ms(header.capture_ts),
                    keyframe="1" if packet.is_keyframe else "0",
                    width=str(encoder.width),
                    height=str(encoder.height),
                    rendition=name,
                    t_transcode=self._now_ms(),  # when this hop publishes (ENVELOPE.md)
                )
                batch.publish(self._output_topic, bytes(packet), SERDE, self._conf(header, out))

    # --- end of stream (ENVELOPE.md "End of stream") ---
    def _end(self, end: EndOfStream, props: dict[str, str], context: Any) -> None:
        """The publisher's stream is over: flush and ack everything held for it (the AAC samples still
        buffered, the last GOP's acks), pass the end on to `encoded` behind the stream's last output,
        and forget the stream. An end older than frames already seen (the stream went on in a newer
        session) is acked and dropped."""
        ident = stream_identity(props, end.stream)
        state = self._streams.get(ident)
        if state is not None and state.last_seq > end.last_seq:
            log.info("transcode: stream %s: end at seq %d is stale (seen %d), ignored", end.stream, end.last_seq,
                     state.last_seq)
            context.record_metric("stale_end", 1)
            ack_current(context)
            return
        out = dict(props, stream=end.stream, t_transcode=self._now_ms())
        if end.kind != KIND_AUDIO:
            out["codec"] = "h264"  # what this stream's outputs on `encoded` were
        if state is not None:
            del self._streams[ident]
            if state.aac is not None:
                self.flush_audio(state, end.stream, context)  # its frames go out before the end
                out.update(codec="aac", last_seq=str(state.aac_seq - 1))  # chunk sees the AAC numbering
            if state.gop is not None:
                state.gop.release_all()  # the last GOP is acked once its publishes are back
        log.info("transcode: stream %s ended (%s) after seq %d", end.stream, end.reason, end.last_seq)
        context.record_metric("stream_ended", 1)
        batch = OutputBatch(context)
        batch.add_current_input()
        batch.publish(self._output_topic, b"", SERDE, {"partition_key": end.stream, "properties": out,
                                                       "event_timestamp": int(self._clock() * 1000)})
        batch.seal()

    # --- acks of video inputs ---
    def _hold(self, state: StreamState, context: Any, *, keyframe: bool, standalone: bool) -> Any:
        """Register the input in hand with the stream's GOP holder; returns its `done(ok)`."""
        if state.gop is None:
            state.gop = GopAckHolder(context.ack, max_frames=self._gop_max_frames, max_age_s=self._gop_hold_s,
                                     clock=self._clock)
        forced = state.gop.forced
        done = state.gop.add(context.get_message_id(), context.get_current_message_topic_name(), keyframe=keyframe,
                             standalone=standalone)
        if state.gop.forced != forced:
            log.warning("transcode: GOP of a stream held %d frames / %.1f s without a keyframe; acks released",
                        self._gop_max_frames, self._gop_hold_s)
            context.record_metric("gop_forced_close", 1)
        return done

    def _no_output(self, state: StreamState, context: Any) -> None:
        if state.gop is not None:
            self._hold(state, context, keyframe=False, standalone=False)(True)
        else:
            ack_current(context)

    # --- helpers ---
    def _conf(self, header: FrameHeader, properties: dict[str, str]) -> dict[str, Any]:
        conf: dict[str, Any] = {"partition_key": header.stream, "properties": properties}
        if header.capture_ts > 0:
            conf["event_timestamp"] = int(header.capture_ts)
        return conf

    def _now_ms(self) -> str:
        return _fmt_ms(self._clock() * 1000.0)

    def _dead_letter(self, context: Any, payload: Any, exc: BadInput) -> None:
        context.record_metric(f"dead_letter_{exc.code}", 1)
        publish_dead_letter(context, self._dead_letter_topic, FUNCTION, payload, exc.reason, SERDE)

    def flush_audio(self, state: StreamState, stream: str, context: Any) -> None:
        """Encode the samples still buffered for `stream` and ack the inputs waiting on them."""
        assert state.aac is not None
        frames = state.aac.flush()
        if frames or state.aac_waiting:
            self._publish_aac(frames, stream, state.aac_props, state, context, 0.0, flushed=True)
        state.aac = None

    def _sweep(self, context: Any, now: float) -> None:
        """Release over-age GOPs and the state of idle streams (wall clock, about once a second)."""
        cutoff = now - self._idle_s
        for ident in [s for s, st in self._streams.items() if st.last_seen < cutoff]:
            stream = ident[2]
            log.info("transcode: stream %s idle for %.0f s, state released", stream, self._idle_s)
            state = self._streams.pop(ident)
            if state.aac is not None and state.aac_waiting:
                self.flush_audio(state, stream, context)
            if state.gop is not None:
                state.gop.release_all()
            context.record_metric("stream_evicted", 1)
        for state in self._streams.values():
            if state.gop is not None:
                state.gop.expire()


def _fmt_ms(value: float) -> str:
    """Milliseconds as a decimal string: integral values without a fraction."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
