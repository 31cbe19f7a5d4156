from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pytest

from ingress import cli, tokens
from ingress.tokens import Role
from wtpulsar.cli import build_parser, main


def test_token_command_prints_a_verifiable_token(tmp_path, capsys) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("z" * 64)
    assert main(["token", "--room", "room1", "--user", "alice", "--role", "viewer", "--ttl", "30m",
                 "--secret-file", str(secret_file)]) == 0
    token = capsys.readouterr().out.strip()
    claims = tokens.verify(b"z" * 64, token, time.time())
    assert (claims.room, claims.user, claims.role) == ("room1", "alice", Role.VIEWER)
    assert 1790 < claims.expires_at - time.time() <= 1800


def test_token_command_refuses_bad_names(tmp_path, capsys) -> None:
    assert main(["token", "--room", "../etc", "--user", "a", "--role", "publisher",
                 "--state-dir", str(tmp_path)]) == 2
    assert "room" in capsys.readouterr().err


def test_token_with_a_state_dir_without_secret_refuses_and_creates_none(tmp_path, capsys) -> None:
    assert main(["token", "--room", "r", "--user", "u", "--role", "publisher", "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no secret at {tmp_path / 'ingress-secret'}" in err and "S/ingress" in err
    assert not (tmp_path / "ingress-secret").exists()


def _pipeline_secret(root: Path) -> bytes:
    """The secret as `wtpulsar up --state <root>/.wtpulsar` makes it (its ingress runs with state .../ingress)."""
    return tokens.load_or_create_secret(root / ".wtpulsar" / "ingress" / "ingress-secret")


def test_token_signs_with_the_secret_of_up_run_in_this_folder(tmp_path, monkeypatch, capsys) -> None:
    secret = _pipeline_secret(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["token", "--room", "demo", "--user", "v", "--role", "viewer"]) == 0
    out = capsys.readouterr()
    assert tokens.verify(secret, out.out.strip(), time.time()).user == "v"
    assert str(tmp_path / ".wtpulsar" / "ingress" / "ingress-secret") in out.err
    assert not (tmp_path / ".wtpulsar" / "ingress-secret").exists()  # the old second secret is not made


def test_token_finds_the_pipeline_secret_from_a_subfolder(tmp_path, monkeypatch, capsys) -> None:
    secret = _pipeline_secret(tmp_path)
    sub = tmp_path / "docs" / "deeper"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert main(["token", "--room", "demo", "--user", "v", "--role", "viewer"]) == 0
    assert tokens.verify(secret, capsys.readouterr().out.strip(), time.time()).room == "demo"
    assert not (sub / ".wtpulsar").exists()


def test_token_elsewhere_uses_the_checkout_pipeline_secret(tmp_path, monkeypatch) -> None:
    checkout, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    elsewhere.mkdir()
    secret = _pipeline_secret(checkout)
    args = build_parser().parse_args(["token", "--room", "demo", "--user", "v", "--role", "viewer"])
    key, source = cli.token_secret(args, elsewhere, repo=checkout)
    assert key == secret and source == str(checkout / ".wtpulsar" / "ingress" / "ingress-secret")
    assert not (elsewhere / ".wtpulsar").exists()


def test_token_without_any_pipeline_secret_refuses_and_says_where(tmp_path, monkeypatch) -> None:
    checkout, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    checkout.mkdir()
    elsewhere.mkdir()
    args = build_parser().parse_args(["token", "--room", "demo", "--user", "v", "--role", "viewer"])
    with pytest.raises(cli.NoSecret) as info:
        cli.token_secret(args, elsewhere, repo=checkout)
    text = str(info.value)
    assert ".wtpulsar/ingress/ingress-secret" in text and str(elsewhere) in text and "--state-dir" in text
    assert not any(tmp_path.rglob("ingress-secret"))


def test_token_url_prints_the_publisher_and_viewer_page_links(tmp_path, capsys) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("q" * 64)
    assert main(["token", "--room", "demo", "--user", "p", "--role", "publisher", "--url",
                 "--secret-file", str(secret_file)]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith("http://127.0.0.1:8000/?room=demo&token=") and "mode=view" not in url
    assert tokens.verify(b"q" * 64, url.split("token=")[1], time.time()).role == Role.PUBLISHER
    assert main(["token", "--room", "demo", "--user", "v", "--role", "viewer", "--url", "--http", "127.0.0.1:9000",
                 "--secret-file", str(secret_file)]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith("http://127.0.0.1:9000/?room=demo&token=") and url.endswith("&mode=view")
    assert tokens.verify(b"q" * 64, url.split("token=")[1].removesuffix("&mode=view"), time.time()).user == "v"


def test_ingress_and_token_default_to_the_secret_up_uses() -> None:
    ingress_args = build_parser().parse_args(["ingress"])
    assert ingress_args.state_dir / "ingress-secret" == tokens.PIPELINE_SECRET


def test_a_token_signed_with_another_secret_is_refused_with_what_to_run() -> None:
    token = tokens.issue(b"a" * 64, "demo", "v", "viewer", time.time())
    with pytest.raises(tokens.TokenError) as info:
        tokens.verify(b"b" * 64, token, time.time())
    assert "another secret" in info.value.reason and "wtpulsar token --url" in info.value.reason


def test_ttl_parsing() -> None:
    assert cli.parse_ttl("90") == 90 and cli.parse_ttl("2h") == 7200 and cli.parse_ttl("1.5d") == 129600
    for bad in ("0", "-1", "5y", "soon"):
        with pytest.raises(argparse.ArgumentTypeError, match="ttl"):
            cli.parse_ttl(bad)


def test_ingress_flags_become_config(tmp_path) -> None:
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


def test_ingress_log_carries_no_per_connection_quic_info_lines(broker, tmp_path) -> None:
    import asyncio

    from clients.webtransport import open_webtransport
    from tests.browser_support import start_ingress_process

    ingress = start_ingress_process(broker.service_url, tmp_path / "ingress")
    try:
        wt_port = json_get(ingress.http_url + "/cert-hash")["port"]

        async def connect_twice() -> None:
            for _ in range(2):
                url = f"https://127.0.0.1:{wt_port}/wt?token={ingress.token('viewer')}&mode=view"
                async with open_webtransport(url) as client:
                    assert client.state.status == 200

        asyncio.run(asyncio.wait_for(connect_twice(), 30))
    finally:
        ingress.stop()
    log = ingress.log_path.read_text()
    assert "ingress: WebTransport" in log
    noisy = [line for line in log.splitlines() if " quic INFO " in line]  # e.g. ALPN negotiated, Duplicate CRYPTO
    assert noisy == [], noisy[:5]


def json_get(url: str) -> dict[str, Any]:
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())
