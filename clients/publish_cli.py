"""``wtpulsar publish``: a publisher without a browser, over WebTransport exactly like the page.

Same session URL and token, same framing (FRAMING.md Frame records, one unidirectional stream per
media stream id, capture times on the ingress's clock measured with CLOCK datagrams: publish_clock), same codecs (H.264 Annex B and Opus, clients.publish_source) and the same
at-least-once rules: every frame is kept until the ingress's Ack says the broker has it, and resent
after a dropped session (clients.webtransport.ResendingPublisher). Frames are sent at their capture
pace, so HLS, DVR, recording and load can be tried from a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from pathlib import Path
from urllib.parse import quote

DEFAULT_SERVER = "https://127.0.0.1:4433/wt"
REFUSALS = range(4001, 4015)  # FRAMING.md close codes that mean "this session will never be taken"


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: use WIDTHxHEIGHT, e.g. 1280x720") from None
    if width % 2 or height % 2 or not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise argparse.ArgumentTypeError(f"size {text!r}: width and height must be even, 16..4096")
    return width, height


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "publish", help="publish a test pattern or a file to a room over WebTransport, as the page does",
        description="Publish to ROOM over WebTransport exactly as the page does (same framing, H.264 and Opus, "
                    "acks and resends): a test pattern with its capture time burned in, or a file re-encoded to "
                    "the page's codecs. Without --token it signs a publisher token with the pipeline's secret, "
                    "as `wtpulsar token` does.")
    p.add_argument("room")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--test-pattern", action="store_true", help="a moving test pattern and a tone (the default)")
    source.add_argument("--file", type=Path, help="a media file (any format ffmpeg reads), re-encoded to H.264/Opus")
    p.add_argument("--token", help="publisher token (default: signed with the pipeline's secret)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C or the file ends)")
    p.add_argument("--server", default=DEFAULT_SERVER, help=f"the ingress's WebTransport URL (default {DEFAULT_SERVER})")
    p.add_argument("--user", default="cli", help="user name in the signed token (default cli)")
    p.add_argument("--size", type=parse_size, default=(1280, 720), help="test pattern size (default 1280x720)")
    p.add_argument("--fps", type=float, default=30.0, help="test pattern frame rate (default 30)")
    p.add_argument("--keyframe-every", type=float, default=1.0, help="seconds between keyframes (default 1)")
    p.add_argument("--no-audio", action="store_true", help="video only")
    p.add_argument("--noise", action="store_true",
                   help="test pattern: noise in the lower third, for a camera-like bitrate (benchmarks)")
    p.add_argument("--chat-every", type=float, default=None, metavar="SECONDS",
                   help="also send a chat message every SECONDS, as the page's chat box does")
    p.add_argument("--secret-file", type=Path, help="file holding the token HMAC key (instead of the pipeline's)")
    p.add_argument("--state-dir", type=Path, default=None, help="the ingress's state folder holding ingress-secret")
    p.set_defaults(func=run_publish_cli, secret=None)


def _token(args: argparse.Namespace) -> str:
    from ingress import tokens
    from ingress.cli import token_secret

    if args.token:
        return str(args.token)
    secret, _ = token_secret(args, Path.cwd())
    return tokens.issue(secret, args.room, args.user, "publisher", time.time(), 12 * 3600.0)


def _token_claims(token: str) -> tuple[str | None, str | None]:
    """(room, user) the token names, unverified (the ingress verifies); (None, None) when unreadable."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None, None  # the ingress will say what is wrong with it (4002)
    room, user = claims.get("room"), claims.get("sub")
    return (room if isinstance(room, str) else None), (user if isinstance(user, str) else None)


def run_publish_cli(args: argparse.Namespace) -> int:
    from ingress.cli import NoSecret
    from ingress.names import BadName, check_name

    try:
        check_name("room", args.room)
        check_name("user", args.user)
        token = _token(args)
    except (NoSecret, BadName, ValueError) as exc:
        print(f"wtpulsar publish: {exc}", file=sys.stderr)
        return 2
    room, user = _token_claims(token)
    args.user = user or args.user
    if room is not None and room != args.room:
        print(f"wtpulsar publish: the token is for room {room}, not {args.room}", file=sys.stderr)
        return 2
    if args.seconds is not None and args.seconds <= 0:
        print(f"wtpulsar publish: --seconds {args.seconds}: must be above 0", file=sys.stderr)
        return 2
    if args.chat_every is not None and args.chat_every <= 0:
        print(f"wtpulsar publish: --chat-every {args.chat_every}: must be above 0", file=sys.stderr)
        return 2
    if args.fps <= 0 or args.fps > 120 or args.keyframe_every <= 0:
        print("wtpulsar publish: --fps must be in (0, 120] and --keyframe-every above 0", file=sys.stderr)
        return 2
    url = f"{args.server}{'&' if '?' in args.server else '?'}token={quote(token)}&mode=publish"
    try:
        result = asyncio.run(publish(url, args))
    except KeyboardInterrupt:
        return 0
    except ValueError as exc:
        print(f"wtpulsar publish: {exc}", file=sys.stderr)
        return 2
    print(result.summary(args.room), file=sys.stderr)
    return 1 if result.refused else 0


class Result:
    def __init__(self) -> None:
        self.video = 0
        self.keyframes = 0
        self.audio = 0
        self.chat = 0
        self.acked = 0
        self.unacked = 0
        self.refused = ""
        self.sessions = 0
        self.clock_offset_ms = 0.0
        self.clock_replies = 0

    def summary(self, room: str) -> str:
        if self.refused:
            return f"wtpulsar publish: the ingress refused the session: {self.refused}"
        return (f"wtpulsar publish: sent {self.video} video frames ({self.keyframes} keyframes) and {self.audio} audio "
                f"packets{f' and {self.chat} chat messages' if self.chat else ''} to room {room} in {self.sessions} session(s); the ingress acknowledged {self.acked}, "
                f"{self.unacked} unacknowledged; clock offset to the ingress {self.clock_offset_ms:+.1f} ms "
                f"({self.clock_replies} CLOCK replies)")


async def publish(url: str, args: argparse.Namespace, stop: asyncio.Event | None = None) -> Result:
    """Send frames at capture pace until --seconds, the file's end or ``stop``; then wait for the acks."""
    from clients import publish_source as src
    from clients.publish_clock import measure_offset
    from clients.webtransport import ResendingPublisher
    from schemas.framing_codec import Codec, Frame, Kind

    stop = stop or asyncio.Event()
    offset_ms, result_replies = await measure_offset(url)  # capture times go out on the ingress's clock
    publisher = ResendingPublisher(url)
    sending_done = asyncio.Event()
    result = Result()
    result.clock_offset_ms, result.clock_replies = offset_ms, result_replies
    runner = asyncio.create_task(publisher.run(sending_done, drain_s=10.0))
    tag = secrets.token_hex(3)
    maker = src.FrameMaker(f"cam-{tag}", f"mic-{tag}")
    audio_on = not args.no_audio
    if args.file is not None:
        file_source = src.FileSource(args.file)
        width, height, fps, has_audio = file_source.probe()
        audio_on = audio_on and has_audio
        items = file_source.items()
    else:
        (width, height), fps, items = args.size, args.fps, None
    maker.width, maker.height = width, height
    video = src.VideoEncoder(width, height, fps, max(1, round(fps * args.keyframe_every)))
    audio = src.AudioEncoder() if audio_on else None
    loop = asyncio.get_running_loop()
    started = loop.time()
    wall0 = time.time() * 1000.0 + offset_ms
    limit = args.seconds if args.seconds is not None else float("inf")

    def check_refused() -> bool:
        for error in publisher.errors:
            parts = error.split(" ", 3)
            if error.startswith("session closed:") and len(parts) > 2 and parts[2].isdigit() \
                    and int(parts[2]) in REFUSALS:
                result.refused = error.removeprefix("session closed: ")
                return True
        return False

    def send_video(picture: object, t_us: int, capture_ms: float) -> None:
        for chunk in video.encode(picture, t_us):  # type: ignore[arg-type]  # a PyAV VideoFrame, typed loosely here
            publisher.publish(maker.video(chunk, capture_ms))
            result.video += 1
            result.keyframes += chunk.keyframe

    chat_every = getattr(args, "chat_every", None)
    chat_stream, chat_sent = f"chat-{tag}", [0]

    def maybe_chat(t_s: float) -> None:
        if chat_every is None or t_s < chat_sent[0] * chat_every:
            return
        n = chat_sent[0]
        chat_sent[0] += 1
        now_ms = time.time() * 1000.0 + offset_ms
        body = {"v": 1, "room": args.room, "user": args.user, "msg_id": f"{tag}-{n}", "stream": chat_stream,
                "text": f"test pattern chat {n}", "sent_at": int(time.time() * 1000)}  # the page: Date.now()
        publisher.publish(Frame(Kind.CHAT, Codec.JSON, chat_stream, n, 0, now_ms, json.dumps(body).encode()))
        result.chat += 1

    def send_audio(pcm: object, capture_ms: float) -> None:
        assert audio is not None
        for chunk in audio.encode(pcm):  # type: ignore[arg-type]  # a PyAV AudioFrame, typed loosely here
            publisher.publish(maker.audio(chunk, capture_ms))
            result.audio += 1

    try:
        if items is None:
            frame_i = block = 0
            while not stop.is_set() and not check_refused():
                t_video, t_audio = frame_i / fps, block * 0.02
                due = min(t_video, t_audio if audio else float("inf"))
                if due >= limit:
                    break
                delay = started + due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                capture_ms = time.time() * 1000.0 + offset_ms
                maybe_chat(due)
                if due == t_video:
                    send_video(src.pattern_picture(frame_i, width, height, int(capture_ms), args.noise),
                               round(t_video * 1e6), capture_ms)
                    frame_i += 1
                else:
                    send_audio(src.tone(block), capture_ms)
                    block += 1
        else:
            for what, payload, t_us in items:
                if stop.is_set() or t_us / 1e6 >= limit or check_refused():
                    break
                if what == "audio" and audio is None:
                    continue
                delay = started + t_us / 1e6 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                capture_ms = wall0 + t_us / 1000.0
                maybe_chat(t_us / 1e6)
                if what == "video":
                    send_video(payload, t_us, capture_ms)
                else:
                    send_audio(payload, capture_ms)
    finally:
        sending_done.set()
        while not runner.done() and not check_refused():
            await asyncio.sleep(0.05)
        runner.cancel()
        try:
            await runner
        except asyncio.CancelledError:
            pass
    result.acked = publisher.buffer.confirmed
    result.unacked = len(publisher.buffer)
    result.sessions = publisher.sessions
    return result
