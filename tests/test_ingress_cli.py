from __future__ import annotations

import argparse
import time

import pytest

from ingress import cli, tokens
from ingress.tokens import Role
from wtpulsar.cli import build_parser, main


def test_token_command_prints_a_verifiable_token(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    secret_file = tmp_path / "secret"
    secret_file.write_text("z" * 64)
    assert main(["token", "--room", "room1", "--user", "alice", "--role", "viewer", "--ttl", "30m",
                 "--secret-file", str(secret_file)]) == 0
    token = capsys.readouterr().out.strip()
    claims = tokens.verify(b"z" * 64, token, time.time())
    assert (claims.room, claims.user, claims.role) == ("room1", "alice", Role.VIEWER)
    assert 1790 < claims.expires_at - time.time() <= 1800


def test_token_command_refuses_bad_names(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["token", "--room", "../etc", "--user", "a", "--role", "publisher",
                 "--state-dir", str(tmp_path)]) == 2
    assert "room" in capsys.readouterr().err


def test_token_default_secret_is_created_under_state_dir(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["token", "--room", "r", "--user", "u", "--role", "publisher", "--state-dir", str(tmp_path)]) == 0
    token = capsys.readouterr().out.strip()
    secret = (tmp_path / "ingress-secret").read_bytes().strip()
    assert tokens.verify(secret, token, time.time()).role == Role.PUBLISHER


def test_ttl_parsing() -> None:
    assert cli.parse_ttl("90") == 90 and cli.parse_ttl("2h") == 7200 and cli.parse_ttl("1.5d") == 129600
    for bad in ("0", "-1", "5y", "soon"):
        with pytest.raises(argparse.ArgumentTypeError, match="ttl"):
            cli.parse_ttl(bad)


def test_ingress_flags_become_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = build_parser().parse_args([
        "ingress", "--listen", "127.0.0.1:5000", "--http", "127.0.0.1:5001", "--broker-service-url",
        "pulsar://h:1", "--secret", "k" * 40, "--max-frame-bytes", "1000", "--max-streams", "3",
        "--tenant", "t1", "--namespace", "n1", "--state-dir", str(tmp_path)])
    config = cli.config_from_args(args)
    assert config.listen == "127.0.0.1:5000" and config.http == "127.0.0.1:5001"
    assert config.broker_service_url == "pulsar://h:1" and config.secret == b"k" * 40
    assert config.limits.max_frame_bytes == 1000 and config.limits.max_open_streams == 3
    assert (config.tenant, config.namespace) == ("t1", "n1")


def test_consume_parser_defaults() -> None:
    args = build_parser().parse_args(["consume", "room1", "--kind", "chat"])
    assert args.room == "room1" and args.kind == "chat" and args.rendition == "360p" and args.out is None
