"""The page's JavaScript speaks the same wire format as the Python side: records built by its framing
module (ingress/static/framing.js) parse with schemas/framing_codec.py and vice versa (schemas/FRAMING.md), and
its fMP4 reader (fmp4.js) understands what functions/media_fmp4.py writes; chat deliveries render as
moderation decided, as text. Runs the page's own modules in Chromium, the page served by an in-process
ingress (no broker, no token: the page only shows a banner)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from schemas.framing_codec import (
    Ack,
    AckStatus,
    Codec,
    Delivery,
    Frame,
    Kind,
    Notice,
    Verdict,
    VerdictAction,
    parse,
    serialize,
    serialize_ack,
    serialize_delivery,
    serialize_notice,
    serialize_verdict,
)
from tests.browser_support import (
    browser_tier,
    import_page_modules,
    ingress_in_thread,
    launch_browser,
)
from tests.test_functions_media_support import media_fmp4

pytestmark = browser_tier(60)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as pw:
        with ingress_in_thread(tmp_path_factory.mktemp("ingress-framing")) as ingress:
            context = launch_browser(pw, tmp_path_factory.mktemp("chromium-framing"))
            page = context.new_page()
            page.goto(ingress.http_url + "/")  # no token: the page only shows a banner
            import_page_modules(page)
            yield page
            context.close()


def test_frame_built_by_the_page_parses_in_python(page: Any) -> None:
    payload = bytes(range(256)) * 3
    data = page.evaluate(
        """([payload]) => Array.from(mods.framing.frameRecord(mods.framing.KIND.video, mods.framing.CODEC.h264, true, 2 ** 40 + 7, 1234567,
             1795309482165.25, 640, 360, "cam-x_1", new Uint8Array(payload)))""", [list(payload)])
    frame = parse(bytes(data))
    assert frame == Frame(Kind.VIDEO, Codec.H264, "cam-x_1", 2**40 + 7, 1234567, 1795309482165.25, payload, True, 640, 360)


def test_page_encodes_a_frame_byte_for_byte_as_schemas_framing(page: Any) -> None:
    frame = Frame(Kind.AUDIO, Codec.OPUS, "mic-x_2", 2**53 - 1, -20_833, 1795309482165.125, bytes(range(7)), True, 0, 0)
    data = page.evaluate("""([payload]) => { const f = mods.framing;
        return Array.from(f.frameRecord(f.KIND.audio, f.CODEC.opus, true, 2 ** 53 - 1, -20833, 1795309482165.125,
                                        0, 0, "mic-x_2", new Uint8Array(payload))); }""", [list(range(7))])
    assert bytes(data) == serialize(frame)


def test_chat_frame_built_by_the_page_parses_in_python(page: Any) -> None:
    data = page.evaluate("""() => Array.from(mods.framing.frameRecord(mods.framing.KIND.chat, mods.framing.CODEC.json, false, 0, 0, 5.5, 0, 0, "chat",
                                mods.framing.te.encode('{"text":"héllo"}')))""")
    frame = parse(bytes(data))
    assert isinstance(frame, Frame)
    assert (frame.kind, frame.codec, frame.keyframe, frame.stream) == (Kind.CHAT, Codec.JSON, False, "chat")
    assert frame.payload.decode() == '{"text":"héllo"}'


def parse_in_page(page: Any, record: bytes) -> dict[str, Any]:
    return page.evaluate("""([bytes]) => { const r = mods.framing.parseRecord(new Uint8Array(bytes));
                              if (r.payload) r.payload = Array.from(r.payload); return r; }""", [list(record)])


def test_page_parses_delivery_ack_and_notice_from_python(page: Any) -> None:
    props = {"segment_type": "media", "capture_ts": "1795309482165.5", "mime": 'video/mp4; codecs="avc1.42c01e"',
             "note": "ünïcode ✓"}
    delivery = parse_in_page(page, serialize_delivery(Delivery(Kind.VIDEO, props, b"\x00\x01moof")))
    assert delivery == {"type": 0x20, "kind": 1, "props": props, "payload": list(b"\x00\x01moof")}
    ack = parse_in_page(page, serialize_ack(Ack("cam-1", 2**33 + 1, AckStatus.REJECTED, 4012, "broker said no")))
    assert ack == {"type": 0x10, "status": 1, "code": 4012, "seq": 2**33 + 1, "stream": "cam-1", "reason": "broker said no"}
    notice = parse_in_page(page, serialize_notice(Notice(4010, "stream 14: bad record", "cam-1")))
    assert notice == {"type": 0x11, "code": 4010, "stream": "cam-1", "reason": "stream 14: bad record"}


@pytest.mark.parametrize("action", list(VerdictAction))
def test_page_parses_a_verdict_from_python(page: Any, action: VerdictAction) -> None:
    payload = json.dumps({"v": 1, "msg_id": "a.1", "action": action.name.lower(), "reason": "ünïcode ✓"}).encode()
    verdict = parse_in_page(page, serialize_verdict(Verdict("chat_2", 2**40 + 9, action, payload)))
    assert verdict == {"type": 0x12, "action": int(action), "seq": 2**40 + 9, "stream": "chat_2",
                       "payload": list(payload)}
    # the page's action names are the schema's (verdict.schema.json "action")
    assert page.evaluate("([a]) => mods.framing.VERDICT_ACTION[a]", [int(action)]) == action.name.lower()


def test_page_rejects_a_record_of_another_version(page: Any) -> None:
    record = bytearray(serialize_notice(Notice(4000, "bye")))
    record[4] = 2
    error = page.evaluate("""([b]) => { try { mods.framing.parseRecord(new Uint8Array(b)); return null; }
                                        catch (e) { return e.message; } }""", [list(record)])
    assert error == "unsupported record version 2"


def test_page_record_reader_reassembles_records_split_anywhere(page: Any) -> None:
    records = [serialize_delivery(Delivery(Kind.CHAT, {"i": str(i)}, bytes([i]) * (i * 37 % 300))) for i in range(40)]
    stream = b"".join(records)
    rng = random.Random(6)
    cuts = sorted(rng.sample(range(1, len(stream)), 60))
    pieces = [list(stream[a:b]) for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    out = page.evaluate("""([pieces]) => { const rr = new mods.framing.RecordReader(); const got = [];
                             for (const p of pieces) for (const r of rr.feed(new Uint8Array(p))) got.push(Array.from(r));
                             return [got, rr.buf.length]; }""", [pieces])
    got, leftover = out
    assert [bytes(r) for r in got] == records
    assert leftover == 0


def test_page_reads_the_fmp4_that_chunk_writes(page: Any) -> None:
    avcc = bytes([1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x1E, 1, 0, 2, 0x68, 0xCE])
    init = media_fmp4.init_segment(sample_entry=media_fmp4.avc1_entry(640, 360, avcc), timescale=90000,
                                   width=640, height=360)
    samples = [media_fmp4.Sample(b"\x00\x00\x00\x03key", 3000, True),
               media_fmp4.Sample(b"\x00\x00\x00\x02d1", 3003, False),
               media_fmp4.Sample(b"\x00\x00\x00\x02d2", 2997, False)]
    fragment = media_fmp4.media_segment(sequence_number=5, base_decode_time=900_000, samples=samples)
    description = page.evaluate("([b]) => Array.from(mods.fmp4.avcDescription(new Uint8Array(b)))", [list(init)])
    assert bytes(description) == avcc
    parsed = page.evaluate("""([b]) => mods.fmp4.fragmentSamples(new Uint8Array(b)).map(
                                s => ({data: Array.from(s.data), dts: s.dts, dur: s.dur, key: s.key}))""", [list(fragment)])
    assert parsed == [
        {"data": list(samples[0].data), "dts": 900_000, "dur": 3000, "key": True},
        {"data": list(samples[1].data), "dts": 903_000, "dur": 3003, "key": False},
        {"data": list(samples[2].data), "dts": 906_003, "dur": 2997, "key": False},
    ]


def test_page_ignores_a_truncated_fragment(page: Any) -> None:
    fragment = media_fmp4.media_segment(sequence_number=1, base_decode_time=0,
                                        samples=[media_fmp4.Sample(b"\x00\x00\x00\x01k", 3000, True)])
    parsed = page.evaluate("([b]) => mods.fmp4.fragmentSamples(new Uint8Array(b)).length", [list(fragment[:20])])
    assert parsed == 0


def deliver_chat(page: Any, message: dict[str, Any], props: dict[str, str]) -> None:
    record = serialize_delivery(Delivery(Kind.CHAT, props, json.dumps(message).encode()))
    page.evaluate("([b]) => mods.chat.onChatDelivery(mods.framing.parseRecord(new Uint8Array(b)))", [list(record)])


def test_chat_shows_flagged_and_masked_messages_and_never_runs_their_html(page: Any) -> None:
    base = {"v": 1, "room": "r", "user": "ann", "sent_at": 1.0}
    deliver_chat(page, dict(base, msg_id="m1", text="<img src=x onerror=window.pwned=1>", flagged=True),
                 {"moderation": "flag"})
    deliver_chat(page, dict(base, msg_id="m2", text="what a **** day", masked=True), {"moderation": "mask"})
    deliver_chat(page, dict(base, msg_id="m2", text="what a **** day", masked=True), {"moderation": "mask"})  # again
    log = page.inner_text("#chatLog")
    assert "<img src=x onerror=window.pwned=1>" in log  # shown as text
    assert page.evaluate("() => window.pwned === undefined && !document.querySelector('#chatLog img')")
    assert "flagged for review" in log
    assert log.count("what a **** day") == 1  # a message delivered twice is shown once
    chat = page.evaluate("() => window.wtpulsar.chat")
    assert [(m["msg_id"], m["masked"], m["flagged"]) for m in chat[-2:]] == [("m1", False, True), ("m2", True, False)]


def test_chat_ignores_a_delivery_that_is_not_json(page: Any) -> None:
    before = page.evaluate("() => window.wtpulsar.chat.length")
    record = serialize_delivery(Delivery(Kind.CHAT, {}, b"\xff not json"))
    page.evaluate("([b]) => mods.chat.onChatDelivery(mods.framing.parseRecord(new Uint8Array(b)))", [list(record)])
    assert page.evaluate("() => window.wtpulsar.chat.length") == before


def send_verdict(page: Any, seq: int, action: VerdictAction, body: dict[str, Any] | bytes) -> None:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    record = serialize_verdict(Verdict("chat", seq, action, payload))
    page.evaluate("([b]) => mods.publisher.onPublisherRecord(mods.framing.parseRecord(new Uint8Array(b)))", [list(record)])


def test_drop_verdict_tells_the_sender_at_once_with_its_reason(page: Any) -> None:
    page.evaluate("""() => { mods.chat.chat.pending.set("me.1", { text: "please <b>go</b>", seq: 901, sent: Date.now() });
                             mods.chat.chat.pending.set("me.2", { text: "fine", seq: 902, sent: Date.now() }); }""")
    send_verdict(page, 901, VerdictAction.DROP, {"v": 1, "msg_id": "me.1", "action": "drop", "rules": ["harassment"],
                                                 "reason": "harassment: blocked word (kys)"})
    send_verdict(page, 902, VerdictAction.ALLOW, {"v": 1, "msg_id": "me.2", "action": "allow", "rules": [],
                                                  "reason": ""})
    notes = page.evaluate("() => window.wtpulsar.chatNotes")
    removed = [n for n in notes if "was removed" in n]
    # notes hold the escaped HTML of the chat line: the user's text is never markup
    assert removed == ["Your message &quot;please &lt;b&gt;go&lt;/b&gt;&quot; was removed: "
                       "harassment: blocked word (kys)"]
    # both settled: the 8-s fallback for a lost verdict will not fire for them
    assert page.evaluate("() => mods.chat.chat.pending.has('me.1') || mods.chat.chat.pending.has('me.2')") is False
    verdicts = page.evaluate("() => window.wtpulsar.verdicts.slice(-2)")
    assert [(v["msg_id"], v["action"], v["rules"]) for v in verdicts] == [("me.1", "drop", ["harassment"]),
                                                                          ("me.2", "allow", [])]


def test_verdict_with_unreadable_json_still_reports_a_drop(page: Any) -> None:
    page.evaluate("""() => mods.chat.chat.pending.set("me.3", { text: "x", seq: 903, sent: Date.now() })""")
    send_verdict(page, 903, VerdictAction.DROP, b"\xff not json")  # matched by seq; the action byte says drop
    notes = page.evaluate("() => window.wtpulsar.chatNotes")
    assert notes[-1] == "Your message &quot;x&quot; was removed: no reason given"
    assert page.evaluate("() => mods.chat.chat.pending.has('me.3')") is False


def test_mask_and_flag_verdicts_tell_the_sender_why_even_after_the_message_was_delivered(page: Any) -> None:
    # the masked copy came back on the room topic before the verdict: the message is no longer pending
    page.evaluate("""() => { mods.chat.chat.texts.set("me.4", "what a shit day"); mods.chat.chat.texts.set("me.5", "buy here");
                             mods.chat.chat.pending.delete("me.4"); mods.chat.chat.pending.delete("me.5"); }""")
    send_verdict(page, 904, VerdictAction.MASK, {"v": 1, "msg_id": "me.4", "action": "mask", "rules": ["profanity"],
                                                 "reason": "profanity: blocked word (shit)"})
    send_verdict(page, 905, VerdictAction.FLAG, {"v": 1, "msg_id": "me.5", "action": "flag", "rules": ["spam"],
                                                 "reason": "spam: blocked word (buy)"})
    notes = page.evaluate("() => window.wtpulsar.chatNotes")
    assert notes[-2:] == ["Your message &quot;what a shit day&quot; was shown masked: profanity: blocked word (shit)",
                          "Your message &quot;buy here&quot; was flagged for review: spam: blocked word (buy)"]


def test_page_clock_request_parses_in_python_and_replies_set_the_offset(page: Any) -> None:
    from schemas.framing_codec import Clock, serialize_clock

    request = parse(bytes(page.evaluate("() => Array.from(mods.framing.clockRequest(mods.clock.now()))")))
    assert isinstance(request, Clock) and request.is_request
    assert abs(request.origin - page.evaluate("() => mods.clock.now()")) < 1000

    def reply(offset_ms: float, rtt_ms: float) -> None:
        # the ingress's clock is `offset_ms` ahead of the page's; the exchange took `rtt_ms` on the wire
        page.evaluate("""([offset, rtt, rec]) => { const t0 = mods.clock.now() - rtt; const r = mods.framing.parseRecord(new Uint8Array(rec));
                           r.origin = t0; r.received = t0 + rtt / 2 + offset; r.transmitted = r.received;
                           mods.clock.onClockReply(r); }""", [offset_ms, rtt_ms, list(serialize_clock(Clock(1.0, 2.0, 3.0)))])

    for rtt in (40.0, 8.0, 30.0):
        reply(8_000.0, rtt)
    state = page.evaluate("() => window.wtpulsar.clock")
    assert abs(state["offset"] - 8_000.0) < 5 and abs(state["rtt"] - 8.0) < 5, state  # the shortest round trip wins
    steps = state["steps"]
    reply(-3_000.0, 20.0)  # the page's clock stepped (a suspend): the old samples are dropped at once
    state = page.evaluate("() => window.wtpulsar.clock")
    assert abs(state["offset"] + 3_000.0) < 5 and state["steps"] == steps + 1, state
    assert abs(page.evaluate("() => mods.clock.serverNow() - mods.clock.now()") + 3_000.0) < 5
    reply(0.0, 20_000.0)  # a reply slower than any real exchange is not a sample
    assert abs(page.evaluate("() => window.wtpulsar.clock.offset") + 3_000.0) < 5
