"""`wtpulsar publish`: frames reach the ingress over WebTransport as the page sends them (H.264 Annex B with
parameter sets on keyframes, 20 ms Opus, seq from 0 per stream), every one is acknowledged, the test pattern
carries its capture time, and a refused token or a wrong room ends it with a sentence."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import av
import numpy as np

from clients import capture_stamp
from clients.publish_cli import publish, run_publish_cli
from tests.ingress_support import FakePublisher, ingress
from wtpulsar.cli import build_parser, main


def args_for(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["publish", "room1", *extra])


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_test_pattern_arrives_like_the_page_sends_it(tmp_path: Path) -> None:
    async def go() -> tuple[Any, list[Any]]:
        fake = FakePublisher()
        async with ingress(tmp_path, fake) as h:
            url = f"{h.wt_url}?token={h.issue_token('room1', 'alice', 'publisher')}&mode=publish"
            args = args_for("--test-pattern", "--seconds", "2", "--size", "320x240", "--fps", "15", "--chat-every", "0.5")
            result = await publish(url, args)
        return result, fake.sent

    result, sent = run(go())
    video = [p for p in sent if p.topic == "raw-video" and "seq" in p.properties]
    audio = [p for p in sent if p.topic == "raw-audio" and "seq" in p.properties]
    ends = [p.properties for p in sent if "end_of_stream" in p.properties]
    assert sorted((e["kind"], e["reason"]) for e in ends) == [("audio", "left"), ("video", "left")]  # it said goodbye
    assert result.refused == "" and result.unacked == 0
    assert result.clock_replies >= 3 and abs(result.clock_offset_ms) < 50  # measured as the page does; one machine
    chat = [json.loads(p.payload) for p in sent if p.topic == "chat-in"]
    assert [m["text"] for m in chat] == [f"test pattern chat {i}" for i in range(4)] and result.chat == 4
    assert {m["user"] for m in chat} == {"cli"} and {m["room"] for m in chat} == {"room1"}
    assert len(video) == result.video == 30 and len(audio) == result.audio == 100
    assert result.acked == result.video + result.audio + result.chat
    assert [int(p.properties["seq"]) for p in video] == list(range(30))
    assert {p.properties["codec"] for p in video} == {"h264"} and {p.properties["codec"] for p in audio} == {"opus"}
    assert [p.properties["keyframe"] for p in video].count("1") == 2  # one a second
    first = video[0]
    assert first.payload.startswith(b"\x00\x00\x00\x01") and first.properties["width"] == "320"
    # SPS (NAL type 7) in front of every keyframe, as a joiner and a restarted transcoder need
    for p in video:
        if p.properties["keyframe"] == "1":
            assert b"\x00\x00\x00\x01\x67" in p.payload[:64] or b"\x00\x00\x01\x67" in p.payload[:64]
    # the burned-in capture time is the frame's capture_ts
    decoder = av.CodecContext.create("h264", "r")
    stamps, captures = [], []
    for p in video:
        for picture in decoder.decode(av.Packet(p.payload)):
            stamps.append(capture_stamp.read(picture.to_ndarray(format="yuv420p")[:240]))
        captures.append(int(float(p.properties["capture_ts"])))
    assert stamps == captures[:len(stamps)] and len(stamps) >= 28


def test_a_file_is_re_encoded_to_the_page_codecs(tmp_path: Path) -> None:
    source = tmp_path / "clip.mkv"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        sound = out.add_stream("mp2", rate=44_100)
        sound.layout = "stereo"
        for i in range(15):
            picture = av.VideoFrame.from_ndarray(np.full((120, 160, 3), i * 10, np.uint8), format="rgb24")
            for packet in stream.encode(picture):
                out.mux(packet)
        for i in range(int(1.5 * 44_100) // 1152):
            block = (np.sin(np.arange(1152 * 2) / 10) * 8000).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 44_100, i * 1152
            for packet in sound.encode(frame):
                out.mux(packet)
        for s in (stream, sound):
            for packet in s.encode(None):
                out.mux(packet)

    async def go() -> list[Any]:
        fake = FakePublisher()
        async with ingress(tmp_path, fake) as h:
            url = f"{h.wt_url}?token={h.issue_token('room1', 'alice', 'publisher')}"
            result = await publish(url, args_for("--file", str(source)))
            assert result.video == 15 and 55 <= result.audio <= 75 and result.unacked == 0, vars(result)
        return fake.sent

    sent = run(go())
    frames = [p for p in sent if "seq" in p.properties]
    assert [p.properties["codec"] for p in frames if p.topic == "raw-video"] == ["h264"] * 15
    assert {p.properties["codec"] for p in frames if p.topic == "raw-audio"} == {"opus"}  # mp2 44.1 kHz became Opus
    first = next(p for p in frames if p.topic == "raw-video")
    assert first.properties["keyframe"] == "1" and first.properties["width"] == "160"


def test_a_refused_token_is_reported_not_retried_forever(tmp_path: Path) -> None:
    async def go() -> Any:
        async with ingress(tmp_path, FakePublisher()) as h:
            url = f"{h.wt_url}?token=not-a-token"
            return await publish(url, args_for("--seconds", "30", "--size", "64x64"))

    result = run(go())
    assert result.refused.startswith("4002 ") and result.video < 30 * 30
    assert "the ingress refused the session: 4002" in result.summary("room1")


def test_bad_arguments_get_a_sentence(capsys: Any, tmp_path: Path) -> None:
    from ingress import tokens

    token = tokens.issue(b"k" * 32, "other", "alice", "publisher", 1e10 - 100, 60)
    assert main(["publish", "room1", "--token", token]) == 2
    assert "the token is for room other, not room1" in capsys.readouterr().err
    assert main(["publish", "bad room!", "--token", token]) == 2
    assert "room" in capsys.readouterr().err
    args = args_for("--file", str(tmp_path / "missing.mp4"), "--token", "x.y.z", "--server", "https://127.0.0.1:1/wt")
    assert run_publish_cli(args) == 2
    assert f"--file {tmp_path / 'missing.mp4'}: cannot open it" in capsys.readouterr().err


def test_the_clock_offset_is_the_sample_with_the_smallest_round_trip() -> None:
    from clients.publish_clock import Sample, best_offset, sample
    from schemas.framing_codec import Clock

    # ingress 1000 ms ahead; 10 ms each way, 1 ms in the ingress
    assert sample(Clock(0.0, 1010.0, 1011.0), 21.0) == Sample(1000.0, 20.0)
    assert best_offset([Sample(900.0, 300.0), Sample(1000.0, 20.0), Sample(1100.0, 80.0)]) == 1000.0
    assert best_offset([]) == 0.0 and best_offset([Sample(5.0, -1.0)]) == 0.0  # a clock step mid-sample


def test_without_token_it_signs_a_publisher_token_with_the_pipelines_secret(tmp_path: Path, capsys: Any) -> None:
    import time

    from clients.publish_cli import _token
    from ingress import tokens

    secret = tmp_path / "ingress-secret"
    secret.write_bytes(b"q" * 40)
    claims = tokens.verify(b"q" * 40, _token(args_for("--secret-file", str(secret), "--user", "bob")), time.time())
    assert (claims.room, claims.user, claims.role) == ("room1", "bob", "publisher")
    assert main(["publish", "room1", "--state-dir", str(tmp_path / "nowhere")]) == 2
    assert "no secret at" in capsys.readouterr().err
