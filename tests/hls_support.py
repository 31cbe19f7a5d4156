"""Helpers for the HLS tests: the messages chunk/route put on a room topic, and the playlist rules as a checker."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

T0_MS = 1_800_000_000_000.0


@dataclass
class FakeTrack:
    """Writes the messages of one rendition topic: init, media fragments (one frame each), end."""

    stream: str = "cam1"
    kind: str = "video"
    fps: float = 30.0
    timescale: int = 90_000
    keyint: int = 30
    width: int = 640
    height: int = 360
    frames: int = 0
    late: float = 0.0  # frame times by which the fragments from now on start late (a packet lost before chunk)
    t0_ms: float = T0_MS
    messages: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)

    def base(self) -> dict[str, str]:
        props = {"stream": self.stream, "kind": self.kind, "timescale": str(self.timescale)}
        if self.kind == "video":
            props.update(rendition="360p", width=str(self.width), height=str(self.height), codec_string="avc1.42c01e")
        else:
            props.update(codec_string="opus", channels="1", sample_rate="48000")
        return props

    def init(self, payload: bytes = b"INIT") -> None:
        self.messages.append(({**self.base(), "segment_type": "init"}, payload, len(self.messages)))

    def media(self, n: int) -> None:
        step = self.timescale / self.fps
        for _ in range(n):
            i = self.frames
            t = i + self.late
            props = {**self.base(), "segment_type": "media", "decode_time": str(round(t * step)),
                     "duration": str(round(step)), "keyframe": "1" if i % self.keyint == 0 else "0",
                     "capture_ts": str(self.t0_ms + t * 1000.0 / self.fps), "first_seq": str(i), "last_seq": str(i)}
            self.messages.append((props, b"F%d;" % i, len(self.messages)))
            self.frames += 1

    def end(self) -> None:
        self.messages.append(({**self.base(), "segment_type": "end", "end_of_stream": "1"}, b"", len(self.messages)))


ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def attrs(line: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in ATTR.findall(line.split(":", 1)[1])}


def check_rules(text: str) -> list[str]:
    """The media playlist rules a tool can check (docs/hls.md "Rules the tests check"); [] when all hold."""
    problems: list[str] = []
    lines = text.splitlines()
    if lines[:1] != ["#EXTM3U"]:
        problems.append("first line is not #EXTM3U")
    tags = {line.split(":", 1)[0]: line for line in lines if line.startswith("#EXT")}
    target = int(tags["#EXT-X-TARGETDURATION"].split(":")[1])
    part_target = float(attrs(tags["#EXT-X-PART-INF"])["PART-TARGET"])
    control = attrs(tags["#EXT-X-SERVER-CONTROL"])
    if float(control["PART-HOLD-BACK"]) < 2 * part_target:
        problems.append("PART-HOLD-BACK below twice the part target")
    if float(control.get("HOLD-BACK", 3 * target)) < 3 * target:
        problems.append("HOLD-BACK below three target durations")
    msn = int(tags["#EXT-X-MEDIA-SEQUENCE"].split(":")[1])
    expected_msn, part_index, parts_of_segment = msn, 0, []
    map_seen = False
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-MAP"):
            map_seen = True
        elif line.startswith("#EXT-X-PART:"):
            if not map_seen:
                problems.append(f"line {i}: a part before any EXT-X-MAP")
            a = attrs(line)
            duration = float(a["DURATION"])
            if duration > part_target + 1e-6:
                problems.append(f"line {i}: part of {duration} s above the part target {part_target}")
            want = f"part-{expected_msn}.{part_index}.m4s"
            if a["URI"].rsplit("/", 1)[-1] != want:
                problems.append(f"line {i}: part {a['URI']} where {want} was due (a gap or a repeat)")
            parts_of_segment.append(duration)
            part_index += 1
        elif line.startswith("#EXTINF:"):
            duration = float(line[8:].rstrip(","))
            if round(duration) > target:
                problems.append(f"line {i}: segment of {duration} s rounds above the target duration {target}")
            if lines[i + 1].rsplit("/", 1)[-1] != f"seg-{expected_msn}.m4s":
                problems.append(f"line {i + 1}: {lines[i + 1]} where seg-{expected_msn}.m4s was due")
            if any(d < 0.85 * part_target - 1e-6 for d in parts_of_segment[:-1]):
                problems.append(f"line {i}: a part other than the last of segment {expected_msn} is under 85% "
                                "of the part target")
            if parts_of_segment and abs(sum(parts_of_segment) - duration) > 0.01:
                problems.append(f"line {i}: parts of segment {expected_msn} add up to {sum(parts_of_segment)} s, "
                                f"not {duration}")
            expected_msn += 1
            part_index, parts_of_segment = 0, []
        elif line.startswith("#EXT-X-PRELOAD-HINT"):
            wants = (f"part-{expected_msn}.{part_index}.m4s", f"part-{expected_msn + 1}.0.m4s")
            if attrs(line)["URI"].rsplit("/", 1)[-1] not in wants:
                problems.append(f"preload hint {attrs(line)['URI']} where one of {wants} is next")
    return problems
