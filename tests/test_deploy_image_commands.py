"""The image's `wtpulsar` has every subcommand of the packages deploy/Dockerfile copies: installed as its
RUN line installs them (`pip install .`, into a scratch venv, without the source tree on the path).

`wtpulsar/cli.py` skips a subcommand whose package is missing, so a package the Dockerfile forgets to
copy would silently take `wtpulsar consume` or `wtpulsar audit` out of the image.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.test_deploy_image_layout import dockerfile_copies, install_image_layout
from wtpulsar.cli import SUBCOMMAND_MODULES

pytestmark = pytest.mark.timeout(240)

LIST_SUBCOMMANDS = ("import argparse, json\nfrom wtpulsar.cli import build_parser\n"
                    "sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))\n"
                    "print(json.dumps(sorted(sub.choices)))\n")


def subcommands_of(modules: list[str]) -> set[str]:
    sub = argparse.ArgumentParser().add_subparsers()
    for name in modules:
        importlib.import_module(name).add_parser(sub)
    return set(sub.choices)


def test_the_image_has_every_subcommand_of_the_packages_it_copies(tmp_path: Path) -> None:
    copied = {Path(source).name for sources, _ in dockerfile_copies() for source in sources}
    expected = subcommands_of([m for m in SUBCOMMAND_MODULES if m.split(".")[0] in copied])
    assert {"ingress", "consume", "publish", "record", "audit", "deploy"} <= expected

    python, _ = install_image_layout(tmp_path)
    listed = subprocess.run([str(python), "-c", LIST_SUBCOMMANDS], capture_output=True, text=True, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin"})
    assert listed.returncode == 0, listed.stderr
    assert set(json.loads(listed.stdout)) == expected
