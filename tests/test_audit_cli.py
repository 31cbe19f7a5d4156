"""`wtpulsar audit ROOM` against a real broker: topics written by hand, report read back."""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path

import pytest

from audit.cli import output_topics
from wtpulsar.cli import main

pulsar = pytest.importorskip("pulsar")


def _create_namespace(admin_url: str, namespace: str) -> None:
    request = urllib.request.Request(f"{admin_url}/admin/v2/namespaces/public/{namespace}", method="PUT")
    urllib.request.urlopen(request, timeout=10).close()


def _publish(client, topic: str, messages: list[dict[str, str]], key: str) -> None:
    producer = client.create_producer(topic)
    for props in messages:
        producer.send(b"x", properties=props, partition_key=key)
    producer.close()


def test_audit_reports_loss_duplicates_and_exit_status(broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace = f"audit{uuid.uuid4().hex[:8]}"
    room = "r1"
    base = f"persistent://public/{namespace}/"
    _create_namespace(broker.admin_url, namespace)
    _create_namespace(broker.admin_url, f"{namespace}-rooms")  # the room topics
    client = pulsar.Client(broker.service_url)
    try:
        raw = [{"stream": "cam", "seq": str(s), "kind": "video", "room": room, "capture_ts": "1000",
                "t_ingress": "1005"} for s in range(5)]
        raw.append({"stream": "other", "seq": "0", "kind": "video", "room": "r2"})  # another room: ignored
        _publish(client, base + "raw-video", raw, "cam")
        out = [{"stream": "cam", "rendition": "360p", "segment_type": "init"}]
        out += [{"stream": "cam", "rendition": "360p", "segment_type": "media", "first_seq": str(s),
                 "last_seq": str(s), "capture_ts": "1000", "t_route": "1050"} for s in (0, 1, 1, 3)]
        out.append({"stream": "cam", "rendition": "360p", "first_seq": "zz", "last_seq": "1"})
        _publish(client, f"persistent://public/{namespace}-rooms/room-{room}-video-360p", out, "cam")
    finally:
        client.close()

    report_path = tmp_path / "audit.json"
    code = main(["audit", room, "--broker-service-url", broker.service_url,
                 "--admin-url", broker.admin_url, "--namespace", namespace, "--json", str(report_path)])
    text = capsys.readouterr().out
    assert code == 1, text  # frames 2 and 4 never reached the output
    data = json.loads(report_path.read_text())
    (track,) = data["tracks"]
    assert (track["stream"], track["rendition"]) == ("cam", "360p")
    assert (track["frames_in"], track["frames_out"], track["missing"]) == (5, 3, 2)
    assert track["missing_ranges"] == [[2, 2], [4, 4]]
    assert track["duplicates_out"] == 1
    assert len(data["bad_messages"]) == 1 and "first_seq" in data["bad_messages"][0]
    assert "missing seq: 2, 4" in text


def test_audit_refuses_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "r1", "--kinds", "video,smell"]) == 2
    assert "--kinds" in capsys.readouterr().err


def test_output_topics_from_listing_or_defaults() -> None:
    listed = ["room-r1-video-360p", "room-r1-video-1080p", "room-r10-video-360p", "room-r1-audio", "raw-video"]
    assert output_topics("r1", ["video", "audio"], ["720p"], listed) == [
        "room-r1-video-1080p", "room-r1-video-360p", "room-r1-audio"]
    assert output_topics("r1", ["video", "chat"], ["720p", "360p"], None) == [
        "room-r1-video-720p", "room-r1-video-360p", "room-r1-chat"]
