"""``python -m deploy deploy|undeploy ...``: the same subcommands without the rest of ``wtpulsar``.

For places that have only this folder, PyYAML and a Python 3 (the apachepulsar/pulsar image has
both, plus ``pulsar-admin``): the Kubernetes deploy Job runs it there.
"""

from __future__ import annotations

import argparse
import sys

from deploy import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
