"""Shared helpers for the browser tests and bench/glass_to_glass.py: the whole pipeline on free loopback
ports (via `wtpulsar up`) and Debian's Chromium under Playwright with a fake camera and microphone.

Flags follow docs/media-and-webtransport.md §3.2: the fake camera and microphone, no --disable-quic
(it silently breaks WebTransport); the page gets the certificate hash
from the ingress's /cert-hash, so no SPKI flags are needed (§3.1).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")


def browser_tier(timeout: float) -> list[pytest.MarkDecorator]:
    """The marks of a browser test module: `browser`, its timeout, and a skip where Debian's chromium is
    missing (CI installs it, so there it never skips)."""
    return [
        pytest.mark.browser,
        pytest.mark.timeout(timeout),
        pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                         "(apt-get install chromium; CI installs it)"),
    ]


def chromium_args(fps: int = 30, grant_media: bool = True) -> list[str]:
    args = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--use-fake-device-for-media-stream=fps={fps}",  # default fake camera runs at 20 fps (docs/media-and-webtransport.md §3.2)
        "--autoplay-policy=no-user-gesture-required",
        # keep Chromium's background lookups off the network (docs/media-and-webtransport.md §3.3)
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    ]
    if grant_media:
        args.append("--use-fake-ui-for-media-stream")  # auto-grant; without it headless gUM is denied (docs/media-and-webtransport.md §3.2)
    return args


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports() -> tuple[int, int, int, int]:
    """broker TCP, broker HTTP, ingress UDP (WebTransport), ingress HTTP; distinct."""
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    udp = free_port(socket.SOCK_DGRAM)
    while udp in ports:
        udp = free_port(socket.SOCK_DGRAM)
    a, b, c = sorted(ports)
    return a, b, udp, c


@dataclass
class Pipeline:
    """`wtpulsar up` as a child process; the page URLs and tokens it printed."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    http_url: str
    publisher_url: str = ""
    viewer_url: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # up stops its children in reverse order
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_pipeline(state_dir: Path, room: str = "demo", timeout: float = 60.0,
                   functions_dir: Path | None = None, service_url: str | None = None) -> Pipeline:
    """Start broker + every deploy/functions/*.yaml (or `functions_dir`) + ingress on free ports; wait for the
    printed URLs and for every function to have subscribed. With `service_url` (a Pulsar whose functions
    are already deployed there) no broker is started and `functions_dir` should be an empty folder."""
    broker, broker_http, wt, http = free_ports()
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "up.log"
    log = log_path.open("wb")
    argv = [sys.executable, "-m", "wtpulsar.cli", "up", "--state", str(state_dir), "--room", room,
            "--broker-listen", f"127.0.0.1:{broker}", "--broker-http", f"127.0.0.1:{broker_http}",
            "--ingress-listen", f"127.0.0.1:{wt}", "--ingress-http", f"127.0.0.1:{http}"]
    if functions_dir is not None:
        argv += ["--functions", str(functions_dir)]
    if service_url is not None:
        argv += ["--broker-service-url", service_url]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pipeline = Pipeline(proc, log_path, f"http://127.0.0.1:{http}")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"wtpulsar up exited with {proc.returncode}:\n{pipeline.log_tail()}")
            text = log_path.read_text(errors="replace")
            page = re.search(r"^\s+page\s+(\S+)", text, re.M)
            viewer = re.search(r"^\s+viewer\s+(\S+)", text, re.M)
            if page and viewer:
                pipeline.publisher_url, pipeline.viewer_url = page.group(1), viewer.group(1)
                for role, url in (("publisher", page.group(1)), ("viewer", viewer.group(1))):
                    token = re.search(r"token=([^&]+)", url)
                    assert token is not None, f"no token in the {role} URL that wtpulsar up printed: {url}"
                    pipeline.tokens[role] = token.group(1)
                if service_url is None:
                    wait_functions_ready(pipeline, deadline)
                return pipeline
            time.sleep(0.2)
        raise TimeoutError(f"wtpulsar up printed no page URL within {timeout:.0f}s:\n{pipeline.log_tail()}")
    except BaseException:
        pipeline.stop()
        raise


FUNCTIONS = ("transcode", "chunk", "moderate", "route")


def wait_functions_ready(pipeline: Pipeline, deadline: float) -> None:
    """Each function logs 'instance N of public/wtpulsar/<name> started' once subscribed; transcode and chunk
    subscribe at Latest, so frames sent before that would be skipped."""
    while time.monotonic() < deadline:
        text = pipeline.log_path.read_text(errors="replace")
        if all(re.search(rf"instance \d+ of \S+/{name} started", text) for name in FUNCTIONS):
            health = json.loads(urllib.request.urlopen(pipeline.http_url + "/health", timeout=2).read())
            if health.get("status") == "ok":
                return
        if pipeline.proc.poll() is not None:
            raise RuntimeError(f"wtpulsar up exited:\n{pipeline.log_tail()}")
        time.sleep(0.2)
    raise TimeoutError(f"functions did not start in time:\n{pipeline.log_tail()}")


def launch_browser(playwright: Any, user_data_dir: Path, fps: int = 30, grant_media: bool = True) -> Any:
    """A persistent Chromium context (Debian's binary, never a downloaded one) with fake media devices."""
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=str(CHROMIUM), headless=True, args=chromium_args(fps, grant_media),
        viewport={"width": 1280, "height": 900},
    )


def collect_console(page: Any, sink: list[str]) -> None:
    page.on("console", lambda msg: sink.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: sink.append(f"pageerror: {exc}"))


def stats(page: Any) -> dict[str, Any]:
    """The page's window.wtpulsar state (JSON-safe parts)."""
    return page.evaluate("() => JSON.parse(JSON.stringify(window.wtpulsar))")


@dataclass
class IngressProcess:
    """`wtpulsar ingress` alone (no functions) on free ports, with a known token secret."""

    proc: subprocess.Popen[bytes]
    http_url: str
    secret: bytes
    log_path: Path

    def token(self, role: str, room: str = "lobby", user: str = "tester", ttl: float = 3600.0,
              now: float | None = None) -> str:
        from ingress import tokens

        return tokens.issue(self.secret, room, user, role, time.time() if now is None else now, ttl)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def new_secret() -> bytes:
    return b"browser-test-secret-" + os.urandom(8).hex().encode()


def start_ingress_process(service_url: str, state_dir: Path, http_port: int | None = None,
                          secret: bytes | None = None, timeout: float = 30.0) -> IngressProcess:
    http, wt = http_port or free_port(), free_port(socket.SOCK_DGRAM)
    secret = secret or new_secret()
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "ingress.log"
    argv = [sys.executable, "-m", "wtpulsar.cli", "ingress", "--listen", f"127.0.0.1:{wt}", "--http",
            f"127.0.0.1:{http}", "--broker-service-url", service_url, "--state-dir", str(state_dir)]
    env = {**os.environ, "WTPULSAR_INGRESS_SECRET": secret.decode()}  # never on the command line (SECURITY.md)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    handle = IngressProcess(proc, f"http://127.0.0.1:{http}", secret, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ingress exited with {proc.returncode}: {log_path.read_text(errors='replace')}")
        try:
            urllib.request.urlopen(handle.http_url + "/health", timeout=1).read()
            return handle
        except OSError:
            time.sleep(0.1)
    handle.stop()
    raise TimeoutError(f"ingress did not answer /health: {log_path.read_text(errors='replace')}")


# The page is ES modules (ingress/static/); their functions and state are not globals. A test imports the
# very module instances the page runs (same URL, same instance) and reaches them as window.mods.<name>.
PAGE_MODULES = ("framing", "fmp4", "clock", "resend", "publisher", "viewer", "chat")
IMPORT_PAGE_MODULES = """async (names) => {
  const app = document.querySelector('script[type="module"][src$="app.js"]');
  if (!app) throw new Error("the page has no app.js module script");
  const mods = {};
  for (const name of names) mods[name] = await import(new URL(name + ".js", app.src).href);
  window.mods = mods;
}"""


def import_page_modules(page: Any) -> None:
    """window.mods.<name>: the page's own instance of ingress/static/<name>.js, for the tests to drive."""
    page.evaluate(IMPORT_PAGE_MODULES, list(PAGE_MODULES))


@contextmanager
def ingress_in_thread(state_dir: Path, page: Path | None = None) -> Iterator[Any]:
    """An in-process ingress serving the packaged page (or the file `page`), with a publisher that acks
    everything and no broker (for tests of the page alone). Runs on its own event loop thread; yields
    its IngressHandle."""
    from ingress.config import IngressConfig
    from ingress.server import start_ingress
    from tests.ingress_support import FakePublisher

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="ingress-for-page", daemon=True)
    thread.start()
    config = IngressConfig(listen="127.0.0.1:0", http="127.0.0.1:0", state_dir=state_dir, secret=new_secret(),
                           page=page)
    try:
        handle = asyncio.run_coroutine_threadsafe(start_ingress(config, publisher=FakePublisher()), loop).result(30)
        try:
            yield handle
        finally:
            asyncio.run_coroutine_threadsafe(handle.stop(), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
