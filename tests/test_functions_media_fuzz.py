"""Property tests: whatever bytes and properties arrive, transcode and chunk never raise, ack
every input exactly once, and the pure parsers fail only with ValueError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fake_context import FakeContext
from tests.test_functions_media_support import (
    ENCODED,
    RAW_AUDIO,
    RAW_VIDEO,
    function_module,
    load_function_module,
    release_idle,
)

h264 = function_module("media_h264")
fmp4 = function_module("media_fmp4")
audio = function_module("media_audio")
decode = function_module("media_decode")
transcode = load_function_module("transcode")
chunk = load_function_module("chunk")

CODECS = st.sampled_from(["vp8", "vp9", "h264", "jpeg", "i420", "opus", "aac", "av1", ""])
PROPS = st.fixed_dictionaries(
    {"codec": CODECS, "seq": st.one_of(st.integers(-2, 50).map(str), st.just("x"))},
    optional={"kind": st.sampled_from(["video", "screen", "audio", "file", "x"]),
              "keyframe": st.sampled_from(["0", "1", ""]), "width": st.sampled_from(["640", "0", "-4", "w"]),
              "height": st.sampled_from(["480", "2", "h"]), "pts": st.integers(-5, 10**7).map(str),
              "rendition": st.sampled_from(["360p", ""]), "capture_ts": st.sampled_from(["1700000000000", "x"])},
)
MESSAGES = st.lists(st.tuples(st.sampled_from([RAW_VIDEO, RAW_AUDIO, ENCODED]), st.sampled_from(["s1", "s2", ""]),
                              PROPS, st.binary(max_size=300)), min_size=1, max_size=12)


def start_code_heavy(data: bytes) -> bytes:
    return b"\x00\x00\x01" + data.replace(b"\xff", b"\x00\x00\x01")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGES)
def test_functions_never_raise_and_ack_each_input_once(messages: list[tuple[str, str, dict[str, str], bytes]]) -> None:
    for function in (transcode.TranscodeFunction(), chunk.ChunkFunction()):
        # one-frame fragments: nothing legitimately waits in an open fragment, so all must be acked
        ctx = FakeContext(user_config={"renditions": [{"name": "240p", "height": 240, "bitrate": 200_000}],
                                       "fragment_frames": 1, "audio_fragment_frames": 1})
        for topic, key, props, payload in messages:
            ctx.set_message(topic=topic, key=key, properties=props)
            function.process(start_code_heavy(payload) if props["codec"] == "h264" else payload, ctx)
        release_idle(function, ctx)  # transcode holds the acks of an open GOP until the stream is released
        entries = sorted(m.entry for m, _ in ctx.acked)
        assert entries == sorted({ctx.current_message_id.entry - i for i in range(len(messages))})  # each once
        for p in ctx.published_to("/dead-letter"):
            assert p.properties["reason"] and p.properties["function"] in ("transcode", "chunk")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parsers_fail_only_with_value_error(data: bytes) -> None:
    nals = h264.split_annexb(data)
    assert all(nals)
    h264.to_avcc_sample(nals)
    for codec in ("vp8", "vp9", "h264", "jpeg"):
        decode.sniff_keyframe(codec, data)
    for parser in (h264.sps_dimensions, h264.codec_string, audio.parse_adts, audio.opus_packet_samples,
                   fmp4.iter_boxes):
        try:
            parser(data)
        except ValueError:
            pass
    try:
        h264.sps_dimensions(b"\x67" + data)
    except ValueError:
        pass
