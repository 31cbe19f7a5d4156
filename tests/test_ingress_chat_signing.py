"""The ingress signs the chat it publishes (ingress/chat_signing.py) so that moderate's check
(functions/chat_signature.py) accepts it; media and an ingress without a key add no signature."""

from __future__ import annotations

import asyncio

from clients.webtransport import open_webtransport
from schemas import framing_codec as f
from tests.ingress_support import FakePublisher, chat, ingress, video
from tests.test_functions_chat_support import chat_signature

KEY = b"0123456789abcdef" * 4


def publish_session(tmp_path, key: bytes | None) -> FakePublisher:
    async def main() -> FakePublisher:
        pub = FakePublisher()
        async with ingress(tmp_path, pub, chat_signing_key=key) as h:
            url = f"{h.wt_url}?token={h.issue_token('r1', 'alice', 'publisher')}"
            async with open_webtransport(url) as c:
                c.send(c.open_stream(), b"".join(f.serialize(video(i)) for i in range(3)))
                c.send(c.open_stream(unidirectional=False), f.serialize(chat(0)) + f.serialize(chat(1, "again")))
                await c.wait_for(lambda s: sum(p.topic == "chat-in" for p in pub.sent) == 2
                                 and sum(p.topic == "raw-video" for p in pub.sent) == 3)
        return pub

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_chat_carries_a_signature_moderate_accepts(tmp_path) -> None:
    pub = publish_session(tmp_path, KEY)
    chats = [p for p in pub.sent if p.topic == "chat-in"]
    for p in chats:
        assert p.properties["chat_sig"].startswith("v1=")
        assert chat_signature.problem(KEY, p.properties, p.payload) is None
        wrong_key = chat_signature.problem(b"x" * 32, p.properties, p.payload)
        assert wrong_key is not None and wrong_key[0] == "bad_signature"
    assert all("chat_sig" not in p.properties for p in pub.sent if p.topic == "raw-video")


def test_without_a_key_chat_goes_unsigned(tmp_path) -> None:
    pub = publish_session(tmp_path, None)
    chats = [p for p in pub.sent if p.topic == "chat-in"]
    assert len(chats) == 2 and all("chat_sig" not in p.properties for p in chats)
    unsigned = chat_signature.problem(KEY, chats[0].properties, chats[0].payload)
    assert unsigned is not None and unsigned[0] == "unsigned"
