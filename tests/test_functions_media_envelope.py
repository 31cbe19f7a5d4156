"""functions/media_envelope.py: its copy of the contract agrees with schemas/ENVELOPE.md, and
frame headers are validated with errors that name the problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_functions_media_support import FUNCTIONS_DIR, function_module

env = function_module("media_envelope")

ENVELOPE = (FUNCTIONS_DIR.parent / "schemas" / "ENVELOPE.md").read_text()


def test_topic_names_are_in_envelope_table() -> None:
    table_topics = set(re.findall(r"^\| `([a-z-]+)`", ENVELOPE, flags=re.M))
    for name in (env.TOPIC_RAW_VIDEO, env.TOPIC_RAW_SCREEN, env.TOPIC_RAW_AUDIO, env.TOPIC_FILE_IN,
                 env.TOPIC_ENCODED, env.TOPIC_SEGMENTS, env.TOPIC_DEAD_LETTER):
        assert name in table_topics or f"`{name}`" in ENVELOPE, name


def test_codecs_and_kinds_are_in_envelope() -> None:
    codec_line = next(line for line in ENVELOPE.splitlines() if line.startswith("| `codec`"))
    for codec in (*env.VIDEO_CODECS, *env.AUDIO_CODECS):
        assert f"`{codec}`" in codec_line
    kind_line = next(line for line in ENVELOPE.splitlines() if line.startswith("| `kind`"))
    for kind in env.KIND_BY_TOPIC.values():
        assert f"`{kind}`" in kind_line


def test_stream_id_pattern_matches_envelope() -> None:
    assert env.STREAM_ID_RE.pattern in ENVELOPE


def test_segment_property_names_are_in_envelope_and_schema() -> None:
    schema = (Path(FUNCTIONS_DIR.parent) / "schemas" / "segment.schema.json").read_text()
    for prop in ("segment_type", "segment_seq", "decode_time", "duration", "timescale", "codec_string", "mime",
                 "first_seq", "last_seq", "chunk_id", "chunk_index", "chunk_count", "total_size"):
        assert f"`{prop}`" in ENVELOPE and f'"{prop}"' in schema, prop


GOOD = {"kind": "video", "codec": "vp8", "stream": "cam-1", "seq": "4", "pts": "133332", "capture_ts": "1700000000000.5",
        "keyframe": "0", "width": "640", "height": "480"}


def test_parse_header_good() -> None:
    h = env.parse_header(GOOD, "cam-1", "persistent://public/wtpulsar/raw-video", 0)
    assert (h.stream, h.kind, h.codec, h.seq, h.pts, h.keyframe, h.width, h.height) == (
        "cam-1", "video", "vp8", 4, 133332, False, 640, 480)
    assert h.capture_ts == 1700000000000.5


def test_parse_header_defaults_kind_from_topic_and_pts_from_capture() -> None:
    props = {k: v for k, v in GOOD.items() if k not in ("kind", "pts", "keyframe")}
    h = env.parse_header(props, "", "persistent://public/wtpulsar/raw-screen-partition-2", 0)
    assert h.kind == "screen" and h.pts == 1700000000000500 and h.keyframe is None and h.stream == "cam-1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stream": "bad id!"}, "stream id"),
        ({"seq": "x1"}, "'seq' is not an integer"),
        ({"seq": "-3"}, "negative"),
        ({"kind": "hologram"}, "unknown kind"),
        ({"width": "wide"}, "'width' is not an integer"),
        ({"capture_ts": "noon"}, "capture_ts is not a number"),
    ],
)
def test_parse_header_rejects(change: dict[str, str], message: str) -> None:
    with pytest.raises(env.BadInput, match=message) as info:
        env.parse_header(dict(GOOD, **change), "", "persistent://public/wtpulsar/raw-video", 0)
    assert info.value.code == "bad_header" and info.value.reason.startswith("bad_header: ")


def test_parse_header_requires_seq() -> None:
    props = {k: v for k, v in GOOD.items() if k != "seq"}
    with pytest.raises(env.BadInput, match="'seq' is missing"):
        env.parse_header(props, "cam-1", "persistent://public/wtpulsar/raw-video", 0)
