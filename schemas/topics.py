"""The input topic of each frame kind (schemas/ENVELOPE.md, the topic table): the one list that the
ingress (which writes these topics) and `wtpulsar audit` (which reads them back) both use."""

from __future__ import annotations

from schemas.framing_codec import Kind

INPUT_TOPIC: dict[Kind, str] = {
    Kind.VIDEO: "raw-video",
    Kind.SCREEN: "raw-screen",
    Kind.AUDIO: "raw-audio",
    Kind.CHAT: "chat-in",
    Kind.FILE: "file-in",
}
