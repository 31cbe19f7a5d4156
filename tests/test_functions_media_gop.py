"""functions/media_gop.py: acks of an inter-coded stream held until the GOP is safely published."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_functions_media_support import function_module

media_gop = function_module("media_gop")


def holder(max_frames: int = 100, max_age_s: float = 10.0) -> tuple[Any, list[int], list[float]]:
    acked: list[int] = []
    now = [0.0]
    gop = media_gop.GopAckHolder(lambda msg_id, _topic: acked.append(msg_id), max_frames=max_frames,
                                 max_age_s=max_age_s, clock=lambda: now[0])
    return gop, acked, now


def test_gop_is_acked_only_after_its_frames_and_the_next_keyframe() -> None:
    gop, acked, _ = holder()
    done = [gop.add(i, "t", keyframe=i % 3 == 0) for i in range(7)]  # GOPs 0-2, 3-5, 6
    done[4](True)
    done[3](True)  # keyframe 3 is out, but 0..2 are not back yet
    assert acked == []
    done[1](True)
    done[0](True)
    assert acked == []
    done[2](True)
    assert acked == [0, 1, 2]
    done[5](True)
    assert acked == [0, 1, 2] and gop.held == 4
    done[6](True)
    assert acked == [0, 1, 2, 3, 4, 5] and gop.held == 1


def test_a_failed_publish_abandons_the_gop_and_the_next_still_acks() -> None:
    gop, acked, _ = holder()
    done = [gop.add(i, "t", keyframe=i in (0, 2, 4)) for i in range(5)]
    done[0](True)
    done[1](False)
    for d in done[2:]:
        d(True)
    assert acked == [2, 3] and gop.abandoned == 2 and gop.held == 1


def test_standalone_frames_ack_as_soon_as_published_and_close_the_gop_before() -> None:
    gop, acked, _ = holder()
    p = [gop.add(i, "t", keyframe=i == 0) for i in range(2)]
    jpeg = gop.add(2, "t", keyframe=True, standalone=True)
    p[0](True)
    p[1](True)
    assert acked == []
    jpeg(True)
    assert acked == [0, 1, 2] and gop.held == 0


def test_bounds_release_a_gop_without_keyframe() -> None:
    gop, acked, now = holder(max_frames=3, max_age_s=5.0)
    for i in range(4):
        gop.add(i, "t", keyframe=False)(True)
    assert acked == [0, 1, 2] and gop.forced == 1
    now[0] = 4.9
    gop.expire()
    assert acked == [0, 1, 2]
    now[0] = 6.0
    gop.expire()
    assert acked == [0, 1, 2, 3] and gop.forced == 2


def test_release_all_still_waits_for_outstanding_publishes() -> None:
    gop, acked, _ = holder()
    first = gop.add(0, "t", keyframe=True)
    gop.add(1, "t", keyframe=False)(True)
    gop.release_all()
    assert acked == []
    first(True)
    assert acked == [0, 1]


@pytest.mark.parametrize(("frames", "age"), [(0, 1.0), (5, 0.0), (5, -1.0)])
def test_bad_bounds_are_rejected(frames: int, age: float) -> None:
    with pytest.raises(ValueError, match="max_frames"):
        media_gop.GopAckHolder(lambda *_: None, max_frames=frames, max_age_s=age, clock=lambda: 0.0)
