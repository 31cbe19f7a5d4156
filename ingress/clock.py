"""The ingress's side of the clock-offset exchange (FRAMING.md "Clock"; method in docs/clock-sync.md).

Sans-I/O: a CLOCK request and the ingress's clock readings in, the reply record out. Pages measure
their offset to this clock and stamp capture times with it, so every timestamp the pipeline carries
(capture_ts, t_ingress, t_transcode, ...) is on one clock and no hop comes out negative.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.framing_codec import Clock, FramingError, InvalidField, parse, serialize_clock


@dataclass(frozen=True, slots=True)
class Answer:
    reply: bytes = b""  # the CLOCK reply record to send back where the request came from
    error: str = ""  # why a CLOCK record was refused (for a Notice); '' when answered


def answer(data: bytes, received_ms: float, transmitted_ms: float) -> Answer:
    """Reply to one CLOCK request (a whole record). ``received_ms``: the ingress clock when it arrived;
    ``transmitted_ms``: when the reply goes out (read as late as possible)."""
    try:
        record = parse(data)
        if not isinstance(record, Clock):
            raise InvalidField(f"{type(record).__name__} record where a CLOCK request was expected")
        if not record.is_request:
            raise InvalidField("clock record from a client must have received = transmitted = 0 (a request)")
        return Answer(serialize_clock(Clock(record.origin, received_ms, max(transmitted_ms, received_ms))))
    except FramingError as exc:
        return Answer(error=f"clock {exc.code}: {exc}")
