"""The HLS window and playlist builder (sans-I/O): whole playlists compared, the rules a tool can check held
over many shapes of input (frame rates, GOPs, restarts, resolution changes, audio), the window bounded."""

from __future__ import annotations

import random

import pytest

from ingress.hls_playlist import Listing, Variant, media_playlist, multivariant_playlist
from ingress.hls_window import HlsConfig, TrackInfo, TrackWindow
from tests.hls_support import FakeTrack, check_rules

HEAD = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.00300,HOLD-BACK=6.00000
#EXT-X-PART-INF:PART-TARGET=0.33433
"""


def feed(window: TrackWindow, track: FakeTrack) -> None:
    for props, payload, ref in track.messages:
        window.add(props, payload, ref)
    track.messages.clear()


def parts(msn: int, n: int, duration: str = "0.33333") -> str:
    return "".join(f'#EXT-X-PART:DURATION={duration},URI="part-{msn}.{i}.m4s"' + (",INDEPENDENT=YES" if i == 0 else "")
                   + "\n" for i in range(n))


def test_live_playlist_whole_gops_parts_and_a_preload_hint() -> None:
    window = TrackWindow(HlsConfig(window=None))
    track = FakeTrack()
    track.init()
    track.media(75)  # 2.5 s at 30 fps, a keyframe every second
    feed(window, track)
    assert media_playlist(window) == HEAD + """#EXT-X-PLAYLIST-TYPE:EVENT
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-MAP:URI="init-0.mp4"
#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:00.000Z
""" + parts(0, 3) + """#EXTINF:1.00000,
seg-0.m4s
#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:01.000Z
""" + parts(1, 3) + """#EXTINF:1.00000,
seg-1.m4s
#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:02.000Z
""" + parts(2, 1) + """#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part-2.1.m4s"
"""
    seg = window.segment(0)
    assert seg is not None and seg.data() == b"".join(b"F%d;" % i for i in range(30))
    third = window.segment(2)
    assert third is not None and third.parts[0].data() == b"".join(b"F%d;" % i for i in range(60, 70))
    assert window.has_part(2, 0) and not window.has_part(2, 1) and window.last_position() == (2, 0)
    # the playlist's version moves only when its text would: a frame inside an open part changes nothing
    version = window.version
    track.media(1)
    feed(window, track)
    assert window.version == version
    track.media(4)  # the part fills up and closes
    feed(window, track)
    assert window.version == version + 1
    # past the last part of a complete segment: part 0 of the next one, which is there
    assert window.has_part(1, 3) and window.has_part(0, 7) and not window.has_part(3, 0)


def test_a_publisher_restart_and_a_resolution_change_are_discontinuities_with_their_own_init() -> None:
    window = TrackWindow(HlsConfig(window=None))
    first = FakeTrack()
    first.init(b"INIT-A")
    first.media(30)
    feed(window, first)
    resized = FakeTrack(width=1280, height=720, t0_ms=first.t0_ms)  # same stream, new SPS: chunk sends a new init
    resized.frames = first.frames
    resized.init(b"INIT-B")
    resized.media(30)
    feed(window, resized)
    restarted = FakeTrack(stream="cam2", t0_ms=first.t0_ms + 5000)  # a new stream: its timeline starts at 0
    restarted.init(b"INIT-C")
    restarted.media(31)
    feed(window, restarted)
    text = media_playlist(window)
    assert text == HEAD + """#EXT-X-PLAYLIST-TYPE:EVENT
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-MAP:URI="init-0.mp4"
#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:00.000Z
""" + parts(0, 3) + """#EXTINF:1.00000,
seg-0.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI="init-1.mp4"
#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:01.000Z
""" + parts(1, 3) + """#EXTINF:1.00000,
seg-1.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI="init-2.mp4"
#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:05.000Z
""" + parts(2, 3) + """#EXTINF:1.00000,
seg-2.m4s
#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:06.000Z
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part-3.0.m4s"
"""
    assert window.inits == {0: b"INIT-A", 1: b"INIT-B", 2: b"INIT-C"}
    assert window.init_info[1] == TrackInfo("video", "avc1.42c01e", 1280, 720)
    assert check_rules(text) == []


def test_the_old_stream_is_ignored_once_a_new_one_took_over_and_its_end_closes_nothing() -> None:
    window = TrackWindow(HlsConfig(window=None))
    old, new = FakeTrack(stream="old"), FakeTrack(stream="new")
    old.init()
    old.media(40)
    feed(window, old)
    new.init()
    new.media(30)
    feed(window, new)
    old.media(5)  # late frames of the old stream, then its end
    old.end()
    feed(window, old)
    assert window.following == "new" and window.ignored == 5 and not window.ended
    window.add({"stream": "new", "segment_type": "end"}, b"", 0)
    assert window.ended and "PRELOAD-HINT" not in media_playlist(window)
    # old's 40 frames: a 1 s GOP and the 10 frames the new init cut off; new's 30 frames, closed by its end
    assert [(s.stream, s.duration) for s in window.segments] == [("old", 1.0), ("old", pytest.approx(1 / 3)), ("new", 1.0)]


def test_sliding_window_counts_media_and_discontinuity_sequence() -> None:
    window = TrackWindow(HlsConfig(window=6))
    for n, stream in enumerate(("a", "b")):
        track = FakeTrack(stream=stream, t0_ms=1_800_000_000_000.0 + n * 10_000)
        track.init()
        track.media(300)  # 10 s each
        feed(window, track)
    text = media_playlist(window)
    # 6 s from the end: the open segment 19 (1 s so far) and segments 14..18; b's first segment (10) was a
    # discontinuity, so the playlist's first segment has discontinuity sequence 1
    assert "#EXT-X-MEDIA-SEQUENCE:14\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n" in text
    assert "#EXT-X-PLAYLIST-TYPE" not in text and text.count("#EXTINF") == 5
    assert check_rules(text) == []


def test_a_window_starting_at_a_discontinuity_counts_it_in_the_discontinuity_sequence() -> None:
    window = TrackWindow(HlsConfig(window=6))
    for n, stream in enumerate(("a", "b")):
        track = FakeTrack(stream=stream, t0_ms=1_800_000_000_000.0 + n * 10_000)
        track.init()
        track.media(300 if n == 0 else 165)  # b: 5.5 s, so the 6 s window starts at b's first segment
        feed(window, track)
    text = media_playlist(window)
    # b's first segment (10) follows a discontinuity; a playlist that starts there omits the tag and
    # counts it in EXT-X-DISCONTINUITY-SEQUENCE instead, so segment 10 keeps discontinuity number 1
    assert "#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n" in text, text[:600]
    assert "#EXT-X-DISCONTINUITY\n" not in text and check_rules(text) == []


def test_the_default_window_is_ten_minutes_sliding() -> None:
    window = TrackWindow(HlsConfig())
    track = FakeTrack()
    track.init()
    track.media(30 * 700)
    feed(window, track)
    text = media_playlist(window)
    assert "#EXT-X-PLAYLIST-TYPE" not in text and 599 <= text.count("#EXTINF") <= 601
    assert text.count("#EXTINF") + int(text.split("#EXT-X-MEDIA-SEQUENCE:")[1].split()[0]) == 699


def test_a_listing_from_a_moment_in_the_past_starts_there() -> None:
    window = TrackWindow(HlsConfig(window=6))
    track = FakeTrack()
    track.init()
    track.media(600)
    feed(window, track)
    seg = window.segment_at(track.t0_ms + 3_500)
    assert seg is not None and seg.msn == 3
    text = media_playlist(window, Listing(first_msn=seg.msn, start_offset=0.5))
    assert "#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n" \
           "#EXT-X-START:TIME-OFFSET=0.50000,PRECISE=YES\n" in text
    assert text.count("#EXTINF") == 16 and check_rules(text) == []
    before_start = window.segment_at(track.t0_ms - 10_000)
    assert before_start is not None and before_start.msn == 0


def test_memory_is_bounded_old_segments_keep_where_to_read_them_back() -> None:
    window = TrackWindow(HlsConfig(memory_bytes=2_000))
    track = FakeTrack()
    track.init()
    track.media(600)  # 20 segments of about 150 bytes
    feed(window, track)
    assert window.nbytes <= 2_000
    old = window.segment(0)
    assert old is not None and old.evicted and old.data() is None and old.first_ref == 1  # message 1: its first frame
    recent = window.segment(18)
    assert recent is not None and not recent.evicted and recent.data() is not None
    assert check_rules(media_playlist(window)) == []


@pytest.mark.parametrize("seed", range(40))
def test_playlist_rules_hold_for_any_mix_of_rates_gops_restarts_and_resizes(seed: int) -> None:
    rng = random.Random(seed)
    audio = seed % 4 == 0
    window = TrackWindow(HlsConfig(window=rng.choice([None, 8.0, 12.0])))
    t0 = 1_800_000_000_000.0
    for restart in range(rng.randint(1, 4)):
        if audio:
            track = FakeTrack(stream=f"s{restart}", kind="audio", fps=50 / 3, timescale=48_000, keyint=1, t0_ms=t0)
        else:
            fps = rng.choice([10, 15, 24, 25, 30, 60])
            track = FakeTrack(stream=f"s{restart}", fps=fps, keyint=max(1, round(fps * rng.choice([0.5, 1, 2, 2.5]))),
                              t0_ms=t0)
        track.init(b"I%d" % restart)
        for _ in range(rng.randint(1, 4)):
            track.media(rng.randint(1, 200))
            if rng.random() < 0.3 and not audio:
                track.init(b"I%d-%d" % (restart, track.frames))  # a resolution change mid-stream
        if rng.random() < 0.5:
            track.end()
        feed(window, track)
        t0 += 20_000
        text = media_playlist(window)
        assert check_rules(text) == [], text
    seqs = [s.msn for s in window.segments]
    assert seqs == list(range(len(seqs)))  # no gaps in the segment numbers


def test_multivariant_lists_renditions_with_codecs_resolution_bandwidth_and_the_audio_group() -> None:
    hd = Variant("720p", TrackInfo("video", "avc1.64001f", 1280, 720), 2_500_000)
    sd = Variant("360p", TrackInfo("video", "avc1.42c01e", 640, 360), 800_000)
    audio = Variant("audio", TrackInfo("audio", "opus", channels=1), 48_000)
    assert multivariant_playlist([sd, hd], audio, "?start=2027-01-15T08:00:03Z") == """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio",DEFAULT=YES,AUTOSELECT=YES,CHANNELS="1",URI="audio/index.m3u8?start=2027-01-15T08:00:03Z"
#EXT-X-STREAM-INF:BANDWIDTH=2548000,CODECS="avc1.64001f,opus",RESOLUTION=1280x720,AUDIO="audio"
720p/index.m3u8?start=2027-01-15T08:00:03Z
#EXT-X-STREAM-INF:BANDWIDTH=848000,CODECS="avc1.42c01e,opus",RESOLUTION=640x360,AUDIO="audio"
360p/index.m3u8?start=2027-01-15T08:00:03Z
"""
    assert multivariant_playlist([sd], None) == """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS="avc1.42c01e",RESOLUTION=640x360
360p/index.m3u8
"""


def test_bad_configuration_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="window 4 s: must be at least three target durations"):
        HlsConfig(window=4)
    with pytest.raises(ValueError, match="part target 5 s"):
        HlsConfig(part_target=5)


def test_an_hour_of_history_keeps_only_the_newest_bytes() -> None:
    window = TrackWindow(HlsConfig(memory_bytes=5_000))
    track = FakeTrack()
    track.init()
    track.media(30 * 3600)  # an hour at 30 fps, one message a frame
    feed(window, track)
    assert len(window.segments) == 3600 and window.nbytes <= 5_000
    flags = [s.evicted for s in window.segments]
    kept = flags.index(False)
    assert not any(flags[kept:]) and kept >= 3570  # the oldest gave up their bytes, the newest ~20 s kept theirs


def test_a_part_closed_on_an_estimate_gets_its_real_length_from_the_next_fragment() -> None:
    window = TrackWindow(HlsConfig(window=None))
    track = FakeTrack(kind="audio", fps=50 / 3, timescale=48_000, keyint=1)  # 60 ms fragments
    track.init()
    track.media(5)  # 300 ms: the part closes (one more would pass the part target)
    feed(window, track)
    first = window.segments[0].parts[0]
    assert first.complete and first.duration == pytest.approx(0.3)
    # the next fragment starts 20 ms late (a packet lost before chunk): the part was 320 ms long
    track.late += 1 / 3
    track.media(1)
    version = window.version
    feed(window, track)
    assert first.duration == pytest.approx(0.32) and window.version == version + 1
