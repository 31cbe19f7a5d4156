"""Ingress memory bounds, token expiry during a session, idle sessions, secrets (SECURITY.md).

Memory is measured here (tracemalloc peak, bytes the session reports holding), never timed;
bench/ingress_memory.py prints the process figures."""

from __future__ import annotations

import struct
import tracemalloc

import pytest

from ingress import cli, tokens
from ingress.session import (
    RECORD_OVERHEAD,
    Action,
    CloseSession,
    CloseStream,
    Limits,
    Publish,
    PublisherSession,
)
from ingress.tokens import Claims, Role
from schemas import framing_codec as f
from schemas.framing_codec import CloseCode, Codec, Frame, Kind
from wtpulsar.cli import build_parser

T0 = 1_800_000_000.0
CLAIMS = Claims(room="room1", user="alice", role=Role.PUBLISHER, expires_at=T0 + 3600)


def header(kind: Kind, length: int) -> bytes:
    """The first bytes of a record that announces `length` bytes of a frame of `kind`."""
    return struct.pack(">IBB", length, 1, int(kind))


def closes(actions: list[Action]) -> list[CloseSession | CloseStream]:
    return [a for a in actions if isinstance(a, CloseSession | CloseStream)]


def test_each_kind_is_held_to_its_own_limit_before_its_payload_arrives() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    for channel, kind, limit in ((2, Kind.CHAT, Limits().max_chat_bytes), (6, Kind.AUDIO, Limits().max_frame_bytes)):
        out = s.stream_data(channel, header(kind, limit + 1024), False, T0)
        (close,) = closes(out)
        assert isinstance(close, CloseStream) and close.code == CloseCode.LIMIT_EXCEEDED
        assert f"{kind.name.lower()} record length {limit + 1024} exceeds the {kind.name.lower()} limit" in close.reason
    out = s.stream_data(10, header(Kind.FILE, 1024 * 1024), False, T0)  # within the file limit: waits for the rest
    assert closes(out) == [] and not s.closed


def test_partial_records_count_against_the_session() -> None:
    """Four streams each holding most of a large file record: the session stops at its bound."""
    limits = Limits(max_file_bytes=1024 * 1024, max_buffered_bytes=2 * 1024 * 1024)
    s = PublisherSession(CLAIMS, limits, T0)
    chunk = header(Kind.FILE, 1000 * 1024) + bytes(900 * 1024)
    results = [s.stream_data(2 + 4 * i, chunk, False, T0) for i in range(4)]
    assert [closes(r) for r in results[:2]] == [[], []]
    (close,) = closes(results[2])
    assert isinstance(close, CloseSession) and close.code == CloseCode.LIMIT_EXCEEDED and "partial records" in close.reason
    assert s.closed and s._buffered() == 0  # noqa: SLF001 - what the session holds after refusing
    assert closes(s.stream_data(14, chunk, False, T0)) == []  # nothing more is taken in


def test_empty_payload_records_are_bounded_by_count_and_memory() -> None:
    """The broker never acks: records with no payload pile up. The backlog counts each one, so the
    session is closed long before 100,000 of them; memory is measured while it happens."""
    s = PublisherSession(CLAIMS, Limits(max_inflight=1), T0)
    empty = b"".join(f.serialize(Frame(Kind.AUDIO, Codec.OPUS, "mic", i, i, 1.0, b"")) for i in range(1000))
    tracemalloc.start()
    published = 0
    close: CloseSession | None = None
    try:
        for _ in range(100):
            out = s.stream_data(2, empty, False, T0)
            published += sum(isinstance(a, Publish) for a in out)
            found = [a for a in out if isinstance(a, CloseSession)]
            if found:
                close = found[0]
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert close is not None and close.code == CloseCode.LIMIT_EXCEEDED
    assert published == 1
    assert peak < 4 * Limits().max_backlog_bytes, f"peak {peak} bytes"
    assert Limits().max_backlog_bytes // RECORD_OVERHEAD < 100_000


def test_token_expiry_is_enforced_during_the_session() -> None:
    claims = Claims(room="room1", user="alice", role=Role.PUBLISHER, expires_at=T0 + 10)
    s = PublisherSession(claims, Limits(), T0)
    frame = f.serialize(Frame(Kind.AUDIO, Codec.OPUS, "mic", 0, 0, 1.0, b"x"))
    assert any(isinstance(a, Publish) for a in s.stream_data(2, frame, False, T0 + 1))
    assert s.tick(T0 + 9) == []
    out = s.stream_data(2, frame, False, T0 + 11)
    assert not any(isinstance(a, Publish) for a in out)
    (close,) = closes(out)
    assert close.code == CloseCode.TOKEN_EXPIRED and "expired" in close.reason
    late = PublisherSession(claims, Limits(), T0)  # the timer catches a session that sends nothing
    (close,) = closes(late.tick(T0 + 10))
    assert close.code == CloseCode.TOKEN_EXPIRED
    assert closes(PublisherSession(claims, Limits(), T0).message(frame, T0 + 20))[0].code == CloseCode.TOKEN_EXPIRED


def test_idle_sessions_are_closed_after_the_configured_time() -> None:
    s = PublisherSession(CLAIMS, Limits(idle_timeout=30), T0)
    assert s.tick(T0 + 29) == []
    s.stream_data(2, header(Kind.VIDEO, 200)[:3], False, T0 + 20)  # any byte is activity
    assert s.tick(T0 + 45) == []
    (close,) = closes(s.tick(T0 + 51))
    assert close.code == CloseCode.IDLE_TIMEOUT and "30 s" in close.reason
    assert PublisherSession(CLAIMS, Limits(idle_timeout=0), T0).tick(T0 + 3000) == []


def test_secrets_come_from_file_or_environment_and_must_be_long(tmp_path, monkeypatch, capsys) -> None:
    def config(*extra: str):
        args = build_parser().parse_args(["ingress", "--state-dir", str(tmp_path / "state"), *extra])
        return cli.config_from_args(args)

    with pytest.raises(ValueError, match="--secret: secret is 1 bytes, need at least 32"):
        config("--secret", "x")
    (tmp_path / "short").write_bytes(b"tiny\n")
    with pytest.raises(ValueError, match="secret is 4 bytes"):
        config("--secret-file", str(tmp_path / "short"))
    (tmp_path / "good").write_bytes(b"g" * 40 + b"\n")
    assert config("--secret-file", str(tmp_path / "good")).secret == b"g" * 40
    monkeypatch.setenv(cli.SECRET_ENV, "e" * 33)
    assert config().secret == b"e" * 33
    monkeypatch.setenv(cli.SECRET_ENV, "short")
    with pytest.raises(ValueError, match=r"\$WTPULSAR_INGRESS_SECRET: secret is 5 bytes"):
        config()
    monkeypatch.delenv(cli.SECRET_ENV)
    assert len(config().secret) >= tokens.MIN_SECRET_BYTES  # created in the state dir
    config("--secret", "k" * 40)
    assert "visible in the process list" in capsys.readouterr().err


def test_ingress_cli_refuses_a_short_secret_cleanly(monkeypatch, capsys) -> None:
    monkeypatch.setenv(cli.SECRET_ENV, "short")
    args = build_parser().parse_args(["ingress"])
    assert cli.run_ingress_cli(args) == 2
    assert "need at least 32" in capsys.readouterr().err
