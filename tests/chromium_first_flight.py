"""Chromium's first QUIC flight to the ingress, recorded at a UDP relay, for tests that replay it offline
(docs/quic-stack.md §1).

``python -m tests.chromium_first_flight [--stack qh3|aioquic] [--out FILE]`` starts an in-process ingress
on that stack, puts a UDP relay in front of it, has Debian's Chromium open a WebTransport session through
the relay (serverCertificateHashes, as the page does), and writes every datagram of both directions with
its time to FILE (those that begin with a long-header packet: the handshake) (default: the fixture the tests read, tests/fixtures/chromium_first_flight.json). It
prints whether the session opened.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "chromium_first_flight.json"

PAGE = """<!doctype html><html><body><script>
async function openSession(url, hashBytes) {
  try {
    const wt = new WebTransport(url, {serverCertificateHashes: [{algorithm: 'sha-256', value: new Uint8Array(hashBytes)}]});
    await wt.ready; wt.close(); return 'ready';
  } catch (e) { return String(e); }
}
</script></body></html>"""


@dataclass(frozen=True)
class Datagram:
    at: float  # seconds since the first datagram
    direction: str  # "c2s" (Chromium to server) or "s2c"
    data: bytes


def load(path: Path = FIXTURE) -> list[Datagram]:
    record = json.loads(path.read_text())
    return [Datagram(d["at"], d["direction"], bytes.fromhex(d["hex"])) for d in record["datagrams"]]


class Relay(asyncio.DatagramProtocol):
    """Forwards the one client's datagrams to the server and back, keeping a copy of each."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.client: Any = None
        self.seen: list[tuple[float, str, bytes]] = []
        self.transport: Any = None  # the loop's datagram transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if tuple(addr[:2]) == self.server:
            self.seen.append((time.monotonic(), "s2c", data))
            if self.client is not None:
                self.transport.sendto(data, self.client)
        else:
            self.client = addr
            self.seen.append((time.monotonic(), "c2s", data))
            self.transport.sendto(data, self.server)


async def record(stack: str, workdir: Path) -> tuple[str, list[tuple[float, str, bytes]]]:
    """Open one session from Chromium to an ingress on ``stack`` through the relay: (outcome, datagrams)."""
    from playwright.async_api import async_playwright

    from tests.browser_support import CHROMIUM
    from tests.ingress_support import FakePublisher, ingress

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "live_client.html").write_text(PAGE)
    async with ingress(workdir, FakePublisher(), quic_stack=stack) as handle, async_playwright() as pw:
        loop = asyncio.get_running_loop()
        relay = Relay(("127.0.0.1", handle.wt_port))
        transport, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            await page.goto(handle.http_url + "/")
            url = f"https://127.0.0.1:{port}/wt?token={handle.issue_token('r1', 'u', 'viewer')}"
            outcome = str(await page.evaluate("([u, h]) => openSession(u, h)", [url, list(handle.cert.sha256)]))
        finally:
            await browser.close()
            transport.close()
    return outcome, relay.seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", choices=["aioquic", "qh3"], default="qh3")
    parser.add_argument("--out", type=Path, default=FIXTURE)
    parser.add_argument("--workdir", type=Path, default=Path(".chromium-first-flight"))
    args = parser.parse_args(argv)
    outcome, seen = asyncio.run(record(args.stack, args.workdir))
    version = subprocess.run([str(Path("/usr/bin/chromium")), "--version"], capture_output=True, text=True).stdout.strip()
    start = seen[0][0] if seen else 0.0
    kept = [(at, d, data) for at, d, data in seen if data and data[0] & 0x80]  # long header: the handshake (RFC 9000 §17.2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "what": f"Chromium's datagrams to and from an ingress on {args.stack}, recorded by tests/chromium_first_flight.py",
        "chromium": version, "outcome": outcome,
        "datagrams": [{"at": round(at - start, 4), "direction": d, "hex": data.hex()} for at, d, data in kept],
    }, indent=1) + "\n")
    print(f"{args.stack}: {outcome}; {len(kept)} of {len(seen)} datagrams written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
