"""`wtpulsar deploy --chat-signing-key`: moderate gets the key as its secret `chatSigningKey`, through an
owner-only FunctionConfig copy for pulsar-admin (removed after use) and in the uploaded FunctionConfig for
the REST API; the key is never printed and never on a command line; a bad key stops the deploy."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.deployer import CHAT_SIGNING_SECRET, AdminCliRunner, RestRunner, deploy_plan, execute, render_plan
from deploy.topology import load_pipeline
from tests.deploy_sample import ECHO_CONFIG, write_project
from tests.test_deploy_deployer import URL, fake_rest  # noqa: F401  (fixture)
from tests.test_functions_chat_support import chat_signature
from wtpulsar.cli import main as wtpulsar_main

KEY = "k" * 40
MODERATE_CLASS = "moderate.ModerateFunction"

# A pulsar-admin that records, for each functions create/update, its argv and the FunctionConfig file's
# mode and text at the moment it ran.
RECORDING_ADMIN = r'''
import json, os, stat, sys
from pathlib import Path
log = Path(sys.argv[0]).with_suffix(".log.json")
calls = json.loads(log.read_text()) if log.exists() else []
args = sys.argv[3:]
entry = {"args": args}
if "--function-config-file" in args:
    path = Path(args[args.index("--function-config-file") + 1])
    entry["mode"] = stat.S_IMODE(path.stat().st_mode)
    entry["text"] = path.read_text()
calls.append(entry)
log.write_text(json.dumps(calls))
if args[:2] == ["functions", "get"]:
    print("Function not found", file=sys.stderr)
    sys.exit(1)
sys.exit(0)
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = write_project(tmp_path / "project")
    config = root / "deploy" / "functions" / "echo.yaml"
    config.write_text(config.read_text().replace(str(ECHO_CONFIG["className"]), MODERATE_CLASS))
    (root / "build" / "functions").mkdir(parents=True)
    (root / "build" / "functions" / "echo.zip").write_bytes(b"PK-not-really-a-zip")
    return root


def test_the_secret_name_is_the_one_moderate_reads() -> None:
    assert CHAT_SIGNING_SECRET == chat_signature.SECRET_NAME


def test_pulsar_admin_gets_an_owner_only_config_with_the_secret_and_it_is_removed(project: Path, tmp_path: Path) -> None:
    script = tmp_path / "pulsar-admin"
    script.write_text(f"#!{sys.executable}\n{RECORDING_ADMIN}")
    script.chmod(0o755)
    steps = deploy_plan(project, load_pipeline(project / "deploy" / "pipeline.yaml"), KEY)
    execute(steps, AdminCliRunner(str(script), URL, project), lambda _: None)
    calls = json.loads(script.with_suffix(".log.json").read_text())
    create = [c for c in calls if c["args"][:2] == ["functions", "create"]]
    assert len(create) == 1
    assert all(KEY not in arg for call in calls for arg in call["args"])  # never on a command line
    assert create[0]["mode"] == 0o600
    sent = yaml.safe_load(create[0]["text"])
    assert sent["secrets"] == {"chatSigningKey": KEY}
    original = yaml.safe_load((project / "deploy" / "functions" / "echo.yaml").read_text())
    assert {k: v for k, v in sent.items() if k != "secrets"} == original  # nothing else changed
    assert "secrets" not in original  # the repository's file is untouched
    assert not list((project / "build" / "functions").glob("*.with-secrets.yaml"))  # removed after use


def test_rest_upload_carries_the_secret(project: Path, fake_rest: tuple[str, Any]) -> None:  # noqa: F811
    url, handler = fake_rest
    steps = deploy_plan(project, load_pipeline(project / "deploy" / "pipeline.yaml"), KEY)
    execute(steps, RestRunner(url, project), lambda _: None)
    uploads = [body for method, path, body in handler.log if method == "POST" and path.startswith("/admin/v3/")]
    assert len(uploads) == 1
    config = json.loads(uploads[0]["functionConfig"][1])
    assert config["secrets"] == {"chatSigningKey": KEY}
    assert config["className"] == MODERATE_CLASS


def test_only_the_chat_checking_function_gets_it_and_the_plan_never_shows_it(tmp_path: Path) -> None:
    root = write_project(tmp_path / "plain")  # its function is not moderate
    steps = deploy_plan(root, load_pipeline(root / "deploy" / "pipeline.yaml"), KEY)
    text = "\n".join(render_plan(steps, "pulsar-admin", URL))
    assert "secrets" not in text and "with-secrets" not in text


def test_dry_run_names_the_secret_not_the_key(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = project / "chat-signing-key"
    key_file.write_text(KEY + "\n")
    code = wtpulsar_main(["deploy", "--root", str(project), "--dry-run", "--chat-signing-key", f"file://{key_file}"])
    out = capsys.readouterr().out
    assert code == 0
    assert KEY not in out
    assert "secrets chatSigningKey" in out
    assert f"--function-config-file {project}/build/functions/echo.with-secrets.yaml" in out


@pytest.mark.parametrize(("value", "message"), [
    ("short", "the chat signing key is 5 bytes; at least 32 are needed"),
    ("file:///nonexistent/key", "chat signing key file /nonexistent/key: No such file or directory"),
])  # fmt: skip
def test_a_bad_key_stops_the_deploy_with_a_clear_message(project: Path, capsys: pytest.CaptureFixture[str],
                                                         value: str, message: str) -> None:
    code = wtpulsar_main(["deploy", "--root", str(project), "--dry-run", "--chat-signing-key", value])
    captured = capsys.readouterr()
    assert code == 1
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_without_a_key_deploy_says_moderate_will_not_check(project: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WTPULSAR_CHAT_SIGNING_KEY", raising=False)
    assert wtpulsar_main(["deploy", "--root", str(project), "--dry-run"]) == 0
    assert "no chat signing key" in capsys.readouterr().err
