"""Memory an ingress session can be made to hold, before and after the bounds of SECURITY.md.

    .venv/bin/python -m bench.ingress_memory [--json FILE]

Runs the sans-I/O session core (ingress/session.py) in this process, as the ingress does, and
prints the RSS growth and the tracemalloc peak for two floods an attacker can send:
  * partial: 4 streams each send a file-record header announcing 30 MiB and then 30 MiB minus one
    byte (the record never completes). Baseline: the bound before the fix is the largest record of
    any kind per stream, 64 streams x 32 MiB, about 2 GiB per session.
  * empty: 100,000 audio frames with empty payloads while the broker never acknowledges (one in
    flight). Baseline: before the fix they bypassed the byte-based backlog limit entirely.
For each: when the session closed (bytes or records taken in) and the memory it held.
"""

from __future__ import annotations

import argparse
import json
import resource
import struct
import sys
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingress.session import CloseSession, Limits, PublisherSession  # noqa: E402
from ingress.tokens import Claims, Role  # noqa: E402
from schemas import framing_codec as framing  # noqa: E402
from schemas.framing_codec import Codec, Frame, Kind  # noqa: E402

T0 = 1_800_000_000.0
CLAIMS = Claims(room="bench", user="attacker", role=Role.PUBLISHER, expires_at=T0 + 3600)
MIB = 1024 * 1024


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def partial_flood() -> dict[str, Any]:
    s = PublisherSession(CLAIMS, Limits(), T0)
    announced = 30 * MIB
    chunk = bytes(MIB)
    sent = 0
    closed_at = None
    for stream in range(4):
        channel = 2 + 4 * stream
        s.stream_data(channel, struct.pack(">IBB", announced, 1, int(Kind.FILE)), False, T0)
        for _ in range(29):
            out = s.stream_data(channel, chunk, False, T0)
            sent += len(chunk)
            if any(isinstance(a, CloseSession) for a in out):
                closed_at = sent
                break
        if closed_at is not None:
            break
    return {"sent_mib": sent / MIB, "closed_after_mib": None if closed_at is None else closed_at / MIB,
            "held_mib_at_end": s._buffered() / MIB}  # noqa: SLF001


def empty_flood() -> dict[str, Any]:
    s = PublisherSession(CLAIMS, Limits(max_inflight=1), T0)
    batch = b"".join(framing.serialize(Frame(Kind.AUDIO, Codec.OPUS, "mic", i, i, 1.0, b"")) for i in range(1000))
    taken = 0
    closed = False
    for _ in range(100):
        out = s.stream_data(2, batch, False, T0)
        taken += 1000
        if any(isinstance(a, CloseSession) for a in out):
            closed = True
            break
    return {"records_sent": taken, "closed": closed}


def measure(fn: Any) -> dict[str, Any]:
    before = rss_mib()
    tracemalloc.start()
    result = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {**result, "tracemalloc_peak_mib": round(peak / MIB, 1), "max_rss_growth_mib": round(rss_mib() - before, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = {"partial": measure(partial_flood), "empty": measure(empty_flood)}
    print("ingress session memory under floods (baseline before the bounds: partial ~2 GiB/session bound, "
          "4 x 30 MiB took the ingress from 151 to 270 MB; 100,000 empty records from 84 to 215 MB)")
    for name, row in figures.items():
        print(f"  {name:8s} " + ", ".join(f"{k} {v}" for k, v in row.items()))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
