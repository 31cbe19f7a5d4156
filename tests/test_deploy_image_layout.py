"""The ingress container image serves the page: the files deploy/Dockerfile copies, installed the way its
RUN line installs them (`pip install .`, here into a scratch venv, without the source tree on the path),
answer `/` and every module of the page from the installed package.

Offline and quick: the scratch venv sees the dependencies of this checkout's .venv through a .pth line
(its nested .pth files, such as the editable install of this checkout, are not processed), and pip
builds with the setuptools already there (--no-build-isolation --no-index --no-deps)."""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import site
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import free_port, new_secret

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "deploy" / "Dockerfile"
IMPORT = re.compile(r'^import (?:[^"]* from )?"\./([a-z0-9_]+\.js)";$', re.MULTILINE)

pytestmark = pytest.mark.timeout(240)


def dockerfile_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY line of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "COPY":
            assert not any(w.startswith("--") for w in words), f"COPY with flags is not handled here: {line}"
            out.append((words[1:-1], words[-1]))
    return out


def build_image_layout(app: Path) -> None:
    """What the COPY lines put under WORKDIR /app, from this checkout (build context: the repository root)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    for sources, dest in dockerfile_copies():
        for pattern in sources:
            for found in sorted(glob.glob(str(REPO / pattern))):
                src = Path(found)
                target = app / dest / src.name if dest.endswith("/") else app / dest
                if src.is_dir():
                    shutil.copytree(src, target, ignore=ignore)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target)


def install_image_layout(tmp_path: Path) -> tuple[Path, str]:
    """What the image's RUN line does: `pip install .` of the Dockerfile's copies, into a scratch venv
    (the checkout's dependencies on its path, not our packages), then the copies removed, so only the
    installed package is left. Returns the venv's python and its site-packages."""
    app = tmp_path / "app"
    build_image_layout(app)
    assert (app / "ingress" / "static" / "live_client.html").is_file(), "the Dockerfile copies no page"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    scratch_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  check=True, capture_output=True, text=True).stdout.strip()
    (Path(scratch_site) / "checkout-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--ignore-installed", "--disable-pip-version-check", str(app)],
                   check=True, cwd=tmp_path, capture_output=True)
    shutil.rmtree(app)  # from here on only the installed package exists: no source tree to fall back on
    return python, scratch_site


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get_content_type(), r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get_content_type(), err.read()


def test_the_installed_ingress_serves_the_page_and_its_modules(broker: Any, tmp_path: Path) -> None:
    python, scratch_site = install_image_layout(tmp_path)
    where = subprocess.run([str(python), "-c", "import ingress; print(ingress.__file__)"], check=True,
                           capture_output=True, text=True, cwd=tmp_path).stdout.strip()
    assert where.startswith(scratch_site), where

    http, wt = free_port(), free_port(socket.SOCK_DGRAM)
    log_path = tmp_path / "ingress.log"
    env = {**os.environ, "WTPULSAR_INGRESS_SECRET": new_secret().decode()}
    env.pop("PYTHONPATH", None)
    with log_path.open("wb") as log:  # the image's ENTRYPOINT and CMD, on loopback and free ports
        proc = subprocess.Popen([str(python.parent / "wtpulsar"), "ingress", "--listen", f"127.0.0.1:{wt}",
                                 "--http", f"127.0.0.1:{http}", "--state-dir", str(tmp_path / "state"),
                                 "--broker-service-url", broker.service_url],
                                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            try:
                urllib.request.urlopen(base + "/health", timeout=1).read()
                break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")
                time.sleep(0.2)
        status, kind, body = get(base + "/")
        assert (status, kind) == (200, "text/html"), body[:300]
        assert body == (REPO / "ingress" / "static" / "live_client.html").read_bytes()
        modules, todo = set(), ["app.js"]
        while todo:
            name = todo.pop()
            if name in modules:
                continue
            modules.add(name)
            status, kind, body = get(f"{base}/static/{name}")
            assert (status, kind) == (200, "text/javascript"), (name, body[:300])
            assert body == (REPO / "ingress" / "static" / name).read_bytes(), name
            todo += IMPORT.findall(body.decode())
        assert modules == {p.name for p in (REPO / "ingress" / "static").glob("*.js")}
    finally:
        proc.terminate()
        proc.wait(15)
