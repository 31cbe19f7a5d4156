"""functions/media_config.py: bad userConfig values fall back to defaults with a log line, and a
function given nonsense config still runs instead of nacking every message."""

from __future__ import annotations

import logging

import pytest

from tests.fake_context import FakeContext
from tests.test_functions_media_support import (
    RAW_VIDEO,
    feed,
    frame_props,
    function_module,
    load_function_module,
    media_synth,
)

config = function_module("media_config")
transcode = load_function_module("transcode")
chunk = load_function_module("chunk")


@pytest.mark.parametrize(
    ("raw", "expected"), [(5, 5), ("7", 7), ("x", 3), (-1, 3), (None, 3), (True, 3), ([1], 3)],
)
def test_number_falls_back_to_default(raw: object, expected: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert config.number({"n": raw}, "n", 3, minimum=0) == expected
    assert ("userConfig n=" in caplog.text) == (expected == 3 and raw != 3)


def test_text_choices_and_missing_config() -> None:
    assert config.text({"p": "main"}, "p", "baseline", choices=("baseline", "main")) == "main"
    assert config.text({"p": "high10"}, "p", "baseline", choices=("baseline", "main")) == "baseline"
    assert config.user_config(FakeContext(user_config=None)) == {}  # the instance gives [] then


def test_transcode_with_nonsense_config_still_transcodes() -> None:
    ctx = FakeContext(user_config={"renditions": "all of them", "fps": "fast", "preset": "placebo!",
                                   "keyframe_interval_ms": -5, "gap_policy": 3})
    fn = transcode.TranscodeFunction()
    (c,) = media_synth.encode_chunks(media_synth.pattern_frames(1), "jpeg")
    feed(fn, ctx, RAW_VIDEO, "cam1", dict(frame_props("cam1", "jpeg", 0, c), keyframe="0"), c.data)
    (out,) = ctx.published  # default ladder: 360p only for 640x480; JPEG counts as a keyframe
    assert out.properties["rendition"] == "360p" and out.properties["keyframe"] == "1"
    assert len(ctx.acked) == 1


def test_chunk_with_nonsense_config_uses_defaults() -> None:
    fn = chunk.ChunkFunction()
    ctx = FakeContext(user_config={"fragment_frames": "many", "max_chunk_bytes": 5, "timescale": "x"})
    feed(fn, ctx, RAW_VIDEO.replace("raw-video", "file-in"), "up1", {"kind": "file", "stream": "up1"}, b"x" * 2000)
    (out,) = ctx.published  # max_chunk_bytes=5 rejected (minimum 1024), default 1 MiB: not split
    assert out.payload == b"x" * 2000 and "chunk_id" not in out.properties
