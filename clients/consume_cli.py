"""``wtpulsar consume``: the subcommand's parser; the reading itself is clients/consume.py.

It shares the broker and namespace options of ``wtpulsar ingress`` (ingress/cli.py), so both take
the same ``--broker-service-url``, ``--broker-token``, ``--tenant`` and ``--namespace``.
"""

from __future__ import annotations

import argparse
import sys

from ingress.cli import DEFAULT_BROKER, _add_broker_token, _add_namespace


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser(
        "consume", help="read a room's output: video to .mp4, chat to stdout, latency of what arrived live at exit",
        description="Read ROOM's output topic from the broker: video/screen/audio into --out as a playable fMP4 "
                    "that starts at 0 (consume stops when the stream ends), chat to stdout. At exit it prints the "
                    "latency (now - capture time) of the messages that arrived while it ran, or why there is none.")
    c.add_argument("room")
    c.add_argument("--kind", default="video", choices=["video", "audio", "chat", "screen", "file"])
    c.add_argument("--rendition", default="360p", help="for video/screen (default 360p)")
    c.add_argument("--out", help="file for video/screen/audio/file payloads (fMP4 for media)")
    c.add_argument("--broker-service-url", default=DEFAULT_BROKER, help=f"default {DEFAULT_BROKER}")
    _add_broker_token(c)
    c.add_argument("--admin-url", help="broker admin REST, to name the renditions a room has when --rendition has "
                                       "none (default: http://<broker host>:8080)")
    c.add_argument("--duration", type=float, help="stop after this many seconds")
    c.add_argument("--count", type=int, help="stop after this many live messages")
    c.add_argument("--from-start", action="store_true", help="replay the whole topic, not just the join point")
    _add_namespace(c)
    c.set_defaults(func=run_consume_cli)


def run_consume_cli(args: argparse.Namespace) -> int:
    from clients import consume
    from ingress.names import BadName

    try:
        return consume.run(args)
    except (BadName, ValueError) as exc:
        print(f"wtpulsar consume: {exc}", file=sys.stderr)
        return 2
