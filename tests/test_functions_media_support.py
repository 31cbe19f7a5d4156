"""Shared helpers for the media function tests (transcode, chunk, media_* modules), plus tests of
the synthetic source they rely on.

Pulsar puts the function code's folder first on sys.path and imports `transcode`/`chunk` by
module name (docs/pulsar-functions.md §1.1), so the tests do the same with functions/. `chunk` is
loaded from its file under a private name because Python 3.11's standard library also has a
(deprecated) `chunk` module.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

FUNCTIONS_DIR = Path(__file__).resolve().parents[1] / "functions"
if str(FUNCTIONS_DIR) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS_DIR))

import av  # noqa: E402
import media_fmp4 as media_fmp4  # noqa: E402  # re-exported, typed, for the tests that build fMP4

from tests import media_synth  # noqa: E402
from tests.fake_context import FakeContext, Published  # noqa: E402

NS = "persistent://public/wtpulsar/"
RAW_VIDEO = NS + "raw-video"
RAW_SCREEN = NS + "raw-screen"
RAW_AUDIO = NS + "raw-audio"
ENCODED = NS + "encoded"
SEGMENTS = NS + "segments"
FILE_IN = NS + "file-in"
DEAD_LETTER = NS + "dead-letter"
TWO_RUNGS = [{"name": "360p", "height": 360, "bitrate": 600_000}, {"name": "240p", "height": 240, "bitrate": 300_000}]


def function_module(name: str) -> ModuleType:
    """Import a module from functions/ by its plain name, as the Pulsar instance would."""
    return importlib.import_module(name)


def load_function_module(name: str) -> ModuleType:
    module_name = f"wtpulsar_functions_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, FUNCTIONS_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def frame_props(stream: str, codec: str, seq: int, chunk: media_synth.EncodedChunk | None, *,
                kind: str = "video", width: int = 640, height: int = 480, pts: int | None = None) -> dict[str, str]:
    pts_us = pts if pts is not None else (chunk.pts if chunk else seq * media_synth.FRAME_US)
    props = {"kind": kind, "codec": codec, "stream": stream, "room": "room1", "user": "alice", "seq": str(seq),
             "pts": str(pts_us), "capture_ts": str(1_700_000_000_000 + pts_us // 1000),
             "width": str(width), "height": str(height), "t_ingress": "1700000000000"}
    if chunk is not None:
        props["keyframe"] = "1" if chunk.keyframe else "0"
    return props


def feed(function: Any, ctx: FakeContext, topic: str, key: str, props: dict[str, str], payload: Any) -> None:
    ctx.set_message(topic=topic, key=key, properties=props, event_time=int(float(props.get("capture_ts", "0"))))
    function.process(payload, ctx)


def feed_published(function: Any, ctx: FakeContext, outputs: list[Published]) -> None:
    """Deliver another function's publishes as this function's inputs, in order."""
    for out in outputs:
        ctx.set_message(topic=out.topic, key=out.key or "", properties=out.properties,
                        event_time=out.event_timestamp or 0)
        function.process(out.payload, ctx)


def decode_fmp4(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data), mode="r", format="mp4") as container:
        return list(container.decode(video=0))


def load_schema(name: str) -> dict[str, Any]:
    return json.loads((FUNCTIONS_DIR.parent / "schemas" / name).read_text())


def check_props(schema: dict[str, Any], props: dict[str, str]) -> None:
    """The JSON Schema subset our property schemas use (required, pattern, enum, if/const/then/else,
    dependentRequired), so the tests need no jsonschema dependency."""
    for name in schema.get("required", []):
        assert name in props, f"missing {name} in {props}"
    for name, value in props.items():
        assert isinstance(value, str), name
        rule = schema.get("properties", {}).get(name, {})
        if "pattern" in rule:
            assert re.search(rule["pattern"], value), f"{name}={value!r} does not match {rule['pattern']}"
        if "enum" in rule:
            assert value in rule["enum"], f"{name}={value!r} not in {rule['enum']}"
    for part in schema.get("allOf", []):
        if "if" in part:
            matches = all(props.get(k) == v["const"] for k, v in part["if"]["properties"].items())
            if matches:
                check_props(part["then"], props)
            elif "else" in part:
                check_props(part["else"], props)
        for key, needed in part.get("dependentRequired", {}).items():
            if key in props:
                assert all(n in props for n in needed), f"{key} needs {needed}"


def release_idle(function: Any, ctx: Any) -> None:
    """An hour later: the function's idle sweep releases every stream (transcode: its held GOP acks;
    chunk: its open fragments)."""
    later = time.time() + 3600
    function._clock = lambda: later
    function._sweep(ctx, later)


def acked_entries(ctx: FakeContext) -> list[int]:
    return [msg_id.entry for msg_id, _topic in ctx.acked]


# --- tests of the synthetic source itself (everything else depends on its marker) ---

def test_pattern_marker_survives_scaling_and_lossy_coding() -> None:
    frames = media_synth.pattern_frames(80)
    assert [media_synth.marker_of(f) for f in frames] == [i % media_synth.MARKER_PERIOD for i in range(80)]
    chunks = media_synth.encode_chunks(frames[:10], "h264", keyint=5)
    decoder = av.CodecContext.create("h264", "r")
    decoded = [f for c in chunks for f in decoder.decode(av.Packet(c.data))]
    assert [media_synth.marker_of(f.reformat(width=320, height=240)) for f in decoded] == list(range(10))


def test_encode_chunks_keyframe_interval() -> None:
    chunks = media_synth.encode_chunks(media_synth.pattern_frames(12, 160, 120), "vp8", keyint=5)
    assert [i for i, c in enumerate(chunks) if c.keyframe] == [0, 5, 10]
    assert [c.pts for c in chunks] == [i * media_synth.FRAME_US for i in range(12)]


def test_check_props_rejects_what_the_schemas_forbid() -> None:
    import pytest

    segment = load_schema("segment.schema.json")
    good = {"stream": "s", "kind": "video", "rendition": "360p", "codec": "h264", "segment_type": "media",
            "segment_seq": "0", "timescale": "90000", "codec_string": "avc1.42c01e",
            "mime": 'video/mp4; codecs="avc1.42c01e"', "width": "480", "height": "360", "t_chunk": "1.5",
            "decode_time": "0", "duration": "3000", "keyframe": "1", "first_seq": "0", "last_seq": "0"}
    check_props(segment, good)
    for bad in ({"codec_string": "avc1.42E01F"}, {"segment_type": "part"}, {"decode_time": None},
                {"chunk_id": "x"}, {"segment_seq": "01"}):
        props = {k: v for k, v in {**good, **bad}.items() if v is not None}
        with pytest.raises(AssertionError):
            check_props(segment, props)
