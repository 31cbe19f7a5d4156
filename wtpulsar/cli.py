"""The one `wtpulsar` command. Each subcommand lives next to the code it fronts.

A subcommand module exposes ``add_parser(subparsers)``, which registers its parser and sets
``func`` (taking the parsed args, returning an exit code). Modules are listed here so that the
data flow stays visible: broker and runtime underneath, ingress in front, the clients and the audit
talking to it from outside, deploy for clusters.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, description) in the order `wtpulsar --help` shows them.
SUBCOMMAND_MODULES: list[str] = [
    "broker.cli",        # wtpulsar broker
    "localrun.cli",      # wtpulsar functions localrun|status
    "ingress.cli",       # wtpulsar ingress, token
    "clients.consume_cli",  # wtpulsar consume
    "clients.publish_cli",  # wtpulsar publish
    "clients.record",    # wtpulsar record
    "wtpulsar.up",       # wtpulsar up
    "deploy.cli",        # wtpulsar deploy, undeploy
    "realpulsar.cli",    # wtpulsar pulsar (Apache Pulsar standalone)
    "audit.cli",         # wtpulsar audit
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wtpulsar",
        description=(
            "Real-time media and chat pipeline on Pulsar. Browsers publish over WebTransport to the "
            "ingress, Pulsar Functions transcode/chunk/moderate/route, viewers read the output topics."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A part that has not landed yet simply has no subcommand.
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
