"""deploy/deployer.py: the exact pulsar-admin commands and REST calls for a sample pipeline, and
running them twice (safe) through a fake pulsar-admin, a fake admin REST API and the embedded broker."""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import io
import json
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.admin_rest import Response
from deploy.deployer import (
    AdminCliRunner,
    DeployError,
    RestRunner,
    classify_status,
    classify_text,
    deploy_plan,
    execute,
    render_plan,
    undeploy_plan,
)
from deploy.topology import PipelineError, load_pipeline
from tests.deploy_sample import ECHO_CONFIG, PIPELINE, write_project
from wtpulsar.cli import main as wtpulsar_main

URL = "http://pulsar:8080"
A = f"pulsar-admin --admin-url {URL}"
CHAT_AVRO = {"type": "record", "name": "ChatMessage", "namespace": "wtpulsar", "fields": [
    {"name": "room", "type": "string"},
    {"name": "text", "type": "string"},
    {"name": "sent_at", "type": ["null", "double"], "default": None},
    {"name": "tags", "type": ["null", {"type": "array", "items": "string"}], "default": None},
    {"name": "reply_to", "type": ["null", "string"], "default": None},
]}  # fmt: skip
CHAT_PAYLOAD = {"type": "JSON", "schema": json.dumps(CHAT_AVRO, separators=(",", ":")),
                "properties": {"source": "chat.schema.json"}}  # fmt: skip

# Pulsar's bin/pulsar-admin runs in PULSAR_HOME, so every file is named by its absolute path.
DEPLOY_TEMPLATE = [
    "# tenant acme",
    f"{A} tenants create acme    # already exists: fine",
    f'    REST: PUT {URL}/admin/v2/tenants/acme {{"adminRoles":[],"allowedClusters":'
    f'"<every cluster from GET /admin/v2/clusters>"}}',
    "# namespace acme/media",
    f"{A} namespaces create acme/media    # already exists: fine",
    f"    REST: PUT {URL}/admin/v2/namespaces/acme/media",
    "# namespace acme/media-rooms (route's per-room topics)",
    f"{A} namespaces create acme/media-rooms    # already exists: fine",
    f"    REST: PUT {URL}/admin/v2/namespaces/acme/media-rooms",
    "# topic persistent://acme/media/in",
    f"{A} topics create persistent://acme/media/in    # already exists: fine",
    f"    REST: PUT {URL}/admin/v2/persistent/acme/media/in",
    "# topic persistent://acme/media/out (3 partitions)",
    f"{A} topics create-partitioned-topic persistent://acme/media/out --partitions 3    # already exists: fine",
    f"    REST: PUT {URL}/admin/v2/persistent/acme/media/out/partitions 3",
    "# topic persistent://acme/media/chat-in",
    f"{A} topics create persistent://acme/media/chat-in    # already exists: fine",
    f"    REST: PUT {URL}/admin/v2/persistent/acme/media/chat-in",
    "# schema of persistent://acme/media/chat-in from schemas/chat.schema.json",
    f"{A} schemas upload persistent://acme/media/chat-in --filename <ROOT>/build/schemas/chat-in.json",
    f"    REST: POST {URL}/admin/v2/schemas/acme/media/chat-in/schema "
    f"{json.dumps(CHAT_PAYLOAD, separators=(',', ':'))}",
    "# function acme/media/echo (py: build/functions/echo.zip, in the project root <ROOT>)",
    f"{A} functions get --tenant acme --namespace media --name echo    # found: update, not found: create",
    f"    REST: GET {URL}/admin/v3/functions/acme/media/echo",
    f"{A} functions create --function-config-file <ROOT>/deploy/functions/echo.yaml"
    " --py <ROOT>/build/functions/echo.zip    # when not found",
    f"    REST: POST {URL}/admin/v3/functions/acme/media/echo multipart functionConfig=<deploy/functions/echo.yaml "
    "as JSON, runtime PYTHON, py echo.zip> data=@build/functions/echo.zip",
    f"{A} functions update --function-config-file <ROOT>/deploy/functions/echo.yaml"
    " --py <ROOT>/build/functions/echo.zip    # when found",
    f"    REST: PUT {URL}/admin/v3/functions/acme/media/echo multipart functionConfig=<deploy/functions/echo.yaml "
    "as JSON, runtime PYTHON, py echo.zip> data=@build/functions/echo.zip",
]


def deploy_lines(root: Path) -> list[str]:
    return [line.replace("<ROOT>", str(root)) for line in DEPLOY_TEMPLATE]


UNDEPLOY_LINES = [
    "# function acme/media/echo",
    f"{A} functions delete --tenant acme --namespace media --name echo    # not found: fine",
    f"    REST: DELETE {URL}/admin/v3/functions/acme/media/echo",
    "# topics persistent://acme/media-rooms/room-*",
    f"{A} topics list acme/media-rooms",
    f"    REST: GET {URL}/admin/v2/persistent/acme/media-rooms",
    f"{A} topics list-partitioned-topics acme/media-rooms",
    f"    REST: GET {URL}/admin/v2/persistent/acme/media-rooms/partitioned",
    "#   then for each listed topic starting with persistent://acme/media-rooms/room-: topics delete -f / "
    "topics delete-partitioned-topic -f",
    "# namespace acme/media-rooms",
    f"{A} namespaces delete acme/media-rooms    # not found: fine",
    f"    REST: DELETE {URL}/admin/v2/namespaces/acme/media-rooms",
    "# topic persistent://acme/media/chat-in",
    f"{A} topics delete -f persistent://acme/media/chat-in    # not found: fine",
    f"    REST: DELETE {URL}/admin/v2/persistent/acme/media/chat-in?force=true",
    "# topic persistent://acme/media/out",
    f"{A} topics delete-partitioned-topic -f persistent://acme/media/out    # not found: fine",
    f"    REST: DELETE {URL}/admin/v2/persistent/acme/media/out/partitions?force=true",
    "# topic persistent://acme/media/in",
    f"{A} topics delete -f persistent://acme/media/in    # not found: fine",
    f"    REST: DELETE {URL}/admin/v2/persistent/acme/media/in?force=true",
    "# namespace acme/media",
    f"{A} namespaces delete acme/media    # not found: fine",
    f"    REST: DELETE {URL}/admin/v2/namespaces/acme/media",
    "# tenant acme",
    f"{A} tenants delete acme    # still in use or not found: fine",
    f"    REST: DELETE {URL}/admin/v2/tenants/acme",
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = write_project(tmp_path / "project")
    (root / "build" / "functions").mkdir(parents=True)
    (root / "build" / "functions" / "echo.zip").write_bytes(b"PK-not-really-a-zip")
    return root


def test_dry_run_deploy_commands_exactly(project: Path) -> None:
    steps = deploy_plan(project, load_pipeline(project / "deploy" / "pipeline.yaml"))
    assert render_plan(steps, "pulsar-admin", URL) == deploy_lines(project)


def test_dry_run_undeploy_commands_exactly(project: Path) -> None:
    steps = undeploy_plan(project, load_pipeline(project / "deploy" / "pipeline.yaml"))
    assert render_plan(steps, "pulsar-admin", URL) == UNDEPLOY_LINES


def test_cli_dry_run_prints_the_plan_and_changes_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    assert wtpulsar_main(["deploy", "--dry-run", "--rest", "--root", str(project), "--admin-url", URL]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"# deploy acme/media at {URL} (dry run: nothing is changed)", *deploy_lines(project)]
    assert wtpulsar_main(["undeploy", "--dry-run", "--rest", "--root", str(project), "--admin-url", URL]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == UNDEPLOY_LINES
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before


def test_python_m_deploy_runs_without_the_rest_of_wtpulsar(project: Path) -> None:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "deploy", "deploy", "--dry-run", "--root", str(project),
                           "--admin-url", URL, "--pulsar-admin", "pulsar-admin"],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == deploy_lines(project)


def test_skip_package_without_archives_says_what_to_run(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "build" / "functions" / "echo.zip").unlink()
    assert wtpulsar_main(["deploy", "--rest", "--skip-package", "--root", str(project), "--admin-url", URL]) == 1
    assert "no archive build/functions/echo.zip: run `make package`" in capsys.readouterr().err


def test_public_tenant_and_default_namespace_are_never_deleted(project: Path) -> None:
    pipeline = load_pipeline(project / "deploy" / "pipeline.yaml")
    from dataclasses import replace

    steps = undeploy_plan(project, replace(pipeline, tenant="public", namespace="default", rooms_namespace="default-rooms"))
    lines = render_plan(steps, "pulsar-admin", URL)
    assert not any("tenants delete" in line for line in lines)
    # only the rooms namespace the deploy created goes; public/default stays
    assert [line for line in lines if "namespaces delete" in line] == [f"{A} namespaces delete public/default-rooms    # not found: fine"]


def test_function_config_that_disagrees_with_the_pipeline(project: Path) -> None:
    (project / "deploy" / "functions" / "echo.yaml").write_text(yaml.safe_dump({**ECHO_CONFIG, "namespace": "other"}))
    with pytest.raises(DeployError, match="deploy/functions/echo.yaml: tenant/namespace/name: acme/other/echo does "
                                          "not match pipeline.yaml's acme/media/echo"):
        deploy_plan(project, load_pipeline(project / "deploy" / "pipeline.yaml"))


def test_bad_function_config_stops_the_plan_naming_file_and_field(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "deploy" / "functions" / "echo.yaml").write_text(yaml.safe_dump({**ECHO_CONFIG, "parallelism": "1"}))
    assert wtpulsar_main(["deploy", "--dry-run", "--root", str(project)]) == 1
    assert "deploy/functions/echo.yaml: parallelism: should be an integer, is a string" in capsys.readouterr().err


def test_function_config_whose_py_is_not_the_archive_is_not_deployed(project: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # pulsar-admin would upload a lone echo.py, without its sibling modules and wheels.
    (project / "deploy" / "functions" / "echo.yaml").write_text(yaml.safe_dump({**ECHO_CONFIG, "py": "functions/echo.py"}))
    assert wtpulsar_main(["deploy", "--dry-run", "--root", str(project), "--admin-url", URL]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert ("deploy/functions/echo.yaml: py: should be build/functions/echo.zip, the archive `make package` builds, "
            "is functions/echo.py (a .py runs locally with `functions localrun --py`, not on a cluster)") in captured.err


@pytest.mark.parametrize(("change", "message"), [
    ({"tenant": 5}, "tenant: should be str, is int"),
    ({"topics": [{"name": "x", "partitions": -1}]}, "topics[0].partitions: should be an integer >= 0"),
    ({"topics": [{"partitions": 1}]}, "topics[0].name: missing"),
    ({"functions": [{"name": "echo"}]}, "functions[0].config: missing"),
])  # fmt: skip
def test_bad_pipeline_names_the_field(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({**PIPELINE, **change}))
    with pytest.raises(PipelineError, match=f"pipeline.yaml: {message.replace('[', '.').replace(']', '.')}"):
        load_pipeline(path)


@pytest.mark.parametrize(("text", "kind"), [
    ("Tenant already exists", "exists"),
    ("This topic already exists\n\nReason: ...", "exists"),
    ("Function echo doesn't exist", "missing"),
    ("Topic not found", "missing"),
    ("Namespace does not exist", "missing"),
    ("Cannot delete non empty namespace", "conflict"),
    ("Connection refused: pulsar/10.0.0.1:8080", "failed"),
])  # fmt: skip
def test_pulsar_admin_messages_are_classified(text: str, kind: str) -> None:
    assert classify_text(text) == kind


@pytest.mark.parametrize(("method", "path", "status", "kind"), [
    ("PUT", "/admin/v2/tenants/a", 204, "done"),
    ("PUT", "/admin/v2/tenants/a", 409, "exists"),
    ("DELETE", "/admin/v2/tenants/a", 409, "conflict"),
    ("DELETE", "/admin/v2/tenants/a", 404, "missing"),
    ("POST", "/admin/v2/schemas/a/b/c/schema", 409, "conflict"),  # incompatible schema
    ("PUT", "/admin/v2/tenants/a", 401, "failed"),
])  # fmt: skip
def test_rest_statuses_are_classified(method: str, path: str, status: int, kind: str) -> None:
    assert classify_status(method, path, Response(status, "")) == kind


# --- a fake pulsar-admin: records argv, keeps state in a JSON file, answers like the real one -----

FAKE_PULSAR_ADMIN = r'''
import json, sys
from pathlib import Path
state_path = Path(sys.argv[0]).with_suffix(".state.json")
state = json.loads(state_path.read_text()) if state_path.exists() else {"things": [], "calls": []}
args = sys.argv[1:]
assert args[:2] == ["--admin-url", "http://pulsar:8080"], args
args = args[2:]
state["calls"].append(args)
things = set(state["things"])
def save(code, message=""):
    state["things"] = sorted(things)
    state_path.write_text(json.dumps(state))
    if message:
        print(message, file=sys.stderr if code else sys.stdout)
    sys.exit(code)
group, verb = args[0], args[1]
if (group, verb) == ("brokers", "version"):
    save(0, state.get("version", "4.0.8"))
def function_key():
    if "--name" in args:
        return "function " + args[args.index("--name") + 1]
    return "function " + Path(args[args.index("--function-config-file") + 1]).stem
if verb in ("create", "create-partitioned-topic"):
    key = function_key() if group == "functions" else args[2]
    if key in things:
        save(1, f"{group} {key} already exists")
    things.add(key)
    save(0)
if verb == "upload":
    json.loads(Path(args[args.index("--filename") + 1]).read_text())  # the payload file must be there
    save(0)
if group == "functions" and verb in ("get", "update", "delete"):
    key = function_key()
    if key not in things:
        save(1, f"Function {key} doesn't exist")
    if verb == "delete":
        things.discard(key)
    save(0, "{}" if verb == "get" else "")
if verb in ("delete", "delete-partitioned-topic"):
    key = args[-1]
    if key not in things:
        save(1, "Topic not found" if group == "topics" else f"{group} {key} does not exist")
    things.discard(key)
    save(0)
if verb == "list":
    save(0, "\n".join(t for t in things if t.startswith("persistent://") and "part" not in t))
if verb == "list-partitioned-topics":
    save(0, "\n".join(t for t in things if t.startswith("persistent://") and "part" in t))
save(2, f"fake pulsar-admin: unexpected {args}")
'''


def fake_admin(tmp_path: Path) -> tuple[Path, Path]:
    script = tmp_path / "pulsar-admin"
    script.write_text(f"#!{sys.executable}\n{FAKE_PULSAR_ADMIN}")
    script.chmod(0o755)
    return script, script.with_suffix(".state.json")


def test_pulsar_admin_runner_deploys_twice_and_undeploys_twice(project: Path, tmp_path: Path) -> None:
    script, state_file = fake_admin(tmp_path)
    pipeline = load_pipeline(project / "deploy" / "pipeline.yaml")
    runner = AdminCliRunner(str(script), URL, project)
    log: list[str] = []
    execute(deploy_plan(project, pipeline), runner, log.append)
    state = json.loads(state_file.read_text())
    expected_first = [
        ["tenants", "create", "acme"], ["namespaces", "create", "acme/media"], ["namespaces", "create", "acme/media-rooms"],
        ["topics", "create", "persistent://acme/media/in"],
        ["topics", "create-partitioned-topic", "persistent://acme/media/out", "--partitions", "3"],
        ["topics", "create", "persistent://acme/media/chat-in"],
        ["schemas", "upload", "persistent://acme/media/chat-in", "--filename", f"{project}/build/schemas/chat-in.json"],
        ["functions", "get", "--tenant", "acme", "--namespace", "media", "--name", "echo"],
        ["functions", "create", "--function-config-file", f"{project}/deploy/functions/echo.yaml",
         "--py", f"{project}/build/functions/echo.zip"],
    ]  # fmt: skip
    assert state["calls"] == expected_first
    assert json.loads((project / "build" / "schemas" / "chat-in.json").read_text()) == CHAT_PAYLOAD

    execute(deploy_plan(project, pipeline), runner, log.append)  # the second run: all there already
    second = json.loads(state_file.read_text())["calls"][len(expected_first):]
    assert second[:-1] == expected_first[:-1]
    assert second[-1][:2] == ["functions", "update"]
    assert "  tenant acme: exists, fine" in log and "  update function acme/media/echo: ok" in log

    # route created per-room topics at run time: undeploy finds and deletes them too
    state = json.loads(state_file.read_text())
    state["things"] += ["persistent://acme/media-rooms/room-r1-chat", "persistent://acme/media-rooms/room-r1-video-part"]
    state["calls"] = []
    state_file.write_text(json.dumps(state))
    execute(undeploy_plan(project, pipeline), runner, log.append)
    state = json.loads(state_file.read_text())
    assert state["things"] == []
    deletes = [c for c in state["calls"] if "delete" in c[1]]
    assert ["topics", "delete-partitioned-topic", "-f", "persistent://acme/media-rooms/room-r1-video-part"] in deletes
    assert ["topics", "delete", "-f", "persistent://acme/media-rooms/room-r1-chat"] in deletes
    assert ["namespaces", "delete", "acme/media-rooms"] in deletes
    execute(undeploy_plan(project, pipeline), runner, log.append)  # again: everything is "not found"
    assert "  namespace acme/media: missing, fine" in log


def test_failed_pulsar_admin_command_stops_with_its_message(project: Path, tmp_path: Path) -> None:
    script = tmp_path / "pulsar-admin"
    script.write_text(f"#!{sys.executable}\nimport sys\nprint('HTTP 401 Unauthorized', file=sys.stderr)\nsys.exit(1)\n")
    script.chmod(0o755)
    runner = AdminCliRunner(str(script), URL, project)
    with pytest.raises(DeployError, match="tenant acme failed \\(failed\\): HTTP 401 Unauthorized"):
        execute(deploy_plan(project, load_pipeline(project / "deploy" / "pipeline.yaml")), runner, lambda _: None)


# --- a fake admin REST API: enough of Pulsar's to check the REST runner, including the upload ----


class FakeAdmin(BaseHTTPRequestHandler):
    state: set[str]
    log: list[tuple[str, str, Any]]
    fail_update: bool = False

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _reply(self, status: int, body: Any = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = self.headers.get("Content-Type", "")
        if kind.startswith("multipart/"):
            message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
                f"Content-Type: {kind}\r\n\r\n".encode() + data)
            return {part.get_param("name", header="content-disposition"):
                    (part.get_filename(), part.get_payload(decode=True)) for part in message.iter_parts()}
        return json.loads(data) if data else None

    def _handle(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        body = self._body() if method in ("PUT", "POST") else None
        self.log.append((method, self.path, body))
        ns = "/admin/v2/persistent/acme/" + path.removeprefix("/admin/v2/persistent/acme/").split("/", 1)[0]
        if method == "GET" and path == "/admin/v2/clusters":
            return self._reply(200, ["standalone"])
        if method == "GET" and path == "/admin/v2/tenants":
            return self._reply(200, sorted(p.rsplit("/", 1)[1] for p in self.state if p.startswith("/admin/v2/tenants/")))
        if method == "GET" and path in (ns, ns + "/partitioned"):
            topics = [p.removeprefix("/admin/v2/").replace("persistent/", "persistent://", 1).removesuffix("/partitions")
                      for p in self.state if p.startswith(ns + "/")]  # fmt: skip
            partitioned = path.endswith("/partitioned")
            return self._reply(200, [t for t in topics if (f"/admin/v2/{t.replace('://', '/')}/partitions"
                                                           in self.state) == partitioned])
        if method == "POST" and path.endswith("/schema"):
            return self._reply(200, {"version": 0})
        if method == "GET":
            return self._reply(200 if path in self.state else 404, {"reason": "x"})
        if method == "DELETE":
            if path not in self.state:
                return self._reply(404, {"reason": "not found"})
            self.state.discard(path)
            return self._reply(204)
        if method == "PUT" and path.startswith("/admin/v3/functions/"):
            if self.fail_update:
                return self._reply(400, {"reason": "Processing Guarantees cannot be altered"})
            return self._reply(200 if path in self.state else 404)
        if method == "POST" and path.startswith("/admin/v3/functions/") and path in self.state:
            return self._reply(400, {"reason": "Function echo already exists"})
        if path in self.state:
            return self._reply(409, {"reason": "already exists"})
        self.state.add(path)
        return self._reply(204)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


@pytest.fixture
def fake_rest() -> Iterator[tuple[str, type[FakeAdmin]]]:
    handler = type("Handler", (FakeAdmin,), {"state": set(), "log": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_rest_runner_deploys_twice_and_uploads_the_package(project: Path, fake_rest: tuple[str, Any]) -> None:
    url, handler = fake_rest
    pipeline = load_pipeline(project / "deploy" / "pipeline.yaml")
    execute(deploy_plan(project, pipeline), RestRunner(url, project), lambda _: None)
    first = list(handler.log)
    assert [(m, p) for m, p, _ in first] == [
        ("GET", "/admin/v2/tenants"), ("GET", "/admin/v2/clusters"), ("PUT", "/admin/v2/tenants/acme"),
        ("PUT", "/admin/v2/namespaces/acme/media"), ("PUT", "/admin/v2/namespaces/acme/media-rooms"),
        ("PUT", "/admin/v2/persistent/acme/media/in"),
        ("PUT", "/admin/v2/persistent/acme/media/out/partitions"), ("PUT", "/admin/v2/persistent/acme/media/chat-in"),
        ("POST", "/admin/v2/schemas/acme/media/chat-in/schema"),
        ("GET", "/admin/v3/functions/acme/media/echo"), ("POST", "/admin/v3/functions/acme/media/echo"),
    ]  # fmt: skip
    assert first[2][2] == {"adminRoles": [], "allowedClusters": ["standalone"]}
    assert first[6][2] == 3
    assert first[8][2] == CHAT_PAYLOAD
    upload = first[10][2]
    config_name, config_json = upload["functionConfig"]
    assert config_name is None
    assert json.loads(config_json) == {**ECHO_CONFIG, "runtime": "PYTHON", "py": "echo.zip"}
    assert upload["data"] == ("echo.zip", b"PK-not-really-a-zip")  # docs/pulsar-functions.md §4: upload name = folder name

    handler.log.clear()
    execute(deploy_plan(project, pipeline), RestRunner(url, project), lambda _: None)
    assert [(m, p) for m, p, _ in handler.log][0] == ("GET", "/admin/v2/tenants")  # found: no PUT
    assert ("PUT", "/admin/v2/tenants/acme") not in [(m, p) for m, p, _ in handler.log]
    assert [(m, p) for m, p, _ in handler.log][-1] == ("PUT", "/admin/v3/functions/acme/media/echo")

    handler.state.add("/admin/v2/persistent/acme/media-rooms/room-r1-chat")
    execute(undeploy_plan(project, pipeline), RestRunner(url, project), lambda _: None)
    assert handler.state == set()
    execute(undeploy_plan(project, pipeline), RestRunner(url, project), lambda _: None)  # nothing left: fine


def test_rest_update_refused_says_how_to_recover(project: Path, fake_rest: tuple[str, Any]) -> None:
    url, handler = fake_rest
    pipeline = load_pipeline(project / "deploy" / "pipeline.yaml")
    execute(deploy_plan(project, pipeline), RestRunner(url, project), lambda _: None)
    handler.fail_update = True
    with pytest.raises(DeployError) as caught:
        execute(deploy_plan(project, pipeline), RestRunner(url, project), lambda _: None)
    assert "update function acme/media/echo failed" in str(caught.value)
    assert "Processing Guarantees cannot be altered" in str(caught.value)
    assert "run `wtpulsar undeploy` then deploy again" in str(caught.value)


def test_rest_runner_without_a_server_fails_clearly(project: Path) -> None:
    pipeline = load_pipeline(project / "deploy" / "pipeline.yaml")
    with pytest.raises(DeployError, match="no answer from http://127.0.0.1:9"):
        execute(deploy_plan(project, pipeline), RestRunner("http://127.0.0.1:9", project), lambda _: None)


def test_cli_deploy_reports_failure_without_traceback(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = wtpulsar_main(["deploy", "--rest", "--skip-package", "--root", str(project),
                          "--admin-url", "http://127.0.0.1:9"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("deploy: ") and "Traceback" not in err


# --- the real thing, as far as the embedded broker goes: tenants, namespaces, topics, schemas ----


def _get(url: str) -> Any:
    with contextlib.closing(urllib.request.urlopen(url, timeout=10)) as reply:
        return json.load(io.TextIOWrapper(reply, "utf-8"))


def test_rest_deploy_and_undeploy_against_the_embedded_broker(tmp_path: Path, broker: Any) -> None:
    pipeline_data = {**PIPELINE, "tenant": "public", "namespace": "deploytest", "functions": []}
    root = write_project(tmp_path / "project", pipeline=pipeline_data)
    pipeline = load_pipeline(root / "deploy" / "pipeline.yaml")
    for _ in range(2):  # safe to run twice
        execute(deploy_plan(root, pipeline), RestRunner(broker.admin_url, root), lambda _: None)
    base = f"{broker.admin_url}/admin/v2/persistent/public/deploytest"
    assert sorted(_get(base + "/partitioned")) == ["persistent://public/deploytest/out"]
    plain = [t for t in _get(base) if "-partition-" not in t]
    assert sorted(plain) == ["persistent://public/deploytest/chat-in", "persistent://public/deploytest/in"]
    schema = _get(f"{broker.admin_url}/admin/v2/schemas/public/deploytest/chat-in/schema")
    assert json.loads(schema["data"]) == CHAT_AVRO
    for _ in range(2):
        execute(undeploy_plan(root, pipeline), RestRunner(broker.admin_url, root), lambda _: None)
    assert "public/deploytest" not in _get(f"{broker.admin_url}/admin/v2/namespaces/public")


REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (REPO / "deploy" / "pipeline.yaml").exists(), reason="no deploy/pipeline.yaml yet")
def test_repo_pipeline_plans_every_topic_schema_and_function() -> None:
    pipeline = load_pipeline(REPO / "deploy" / "pipeline.yaml")
    lines = render_plan(deploy_plan(REPO, pipeline), "pulsar-admin", URL)
    commands = [line.removeprefix(f"{A} ") for line in lines if line.startswith(A)]
    for topic in pipeline.topics:
        name = pipeline.qualified(topic.name)
        expected = (f"topics create-partitioned-topic {name} --partitions {topic.partitions}" if topic.partitions
                    else f"topics create {name}")  # fmt: skip
        assert any(c.startswith(expected + " ") for c in commands), expected
    uploads = [c.split()[2] for c in commands if c.startswith("schemas upload")]
    assert uploads == [pipeline.qualified(n) for n in ("chat-in", "chat-approved", "moderation")]
    for fn in pipeline.functions:
        # `--py` names the archive the YAML's own py names, absolute (pulsar-admin runs in PULSAR_HOME)
        assert (f"functions create --function-config-file {REPO / fn.config} --py "
                f"{REPO / 'build' / 'functions' / (fn.name + '.zip')}    # when not found") in commands, fn.name
        config = yaml.safe_load((REPO / fn.config).read_text())
        assert config["py"] == f"build/functions/{fn.name}.zip"


def test_a_namespace_refused_as_not_empty_is_cleared_and_deleted(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A function instance still stopping (or a client) may create a topic again after undeploy deleted
    the pipeline's: the namespace delete answers 409, what is left is deleted, and it is tried again."""
    import deploy.deployer as deployer

    monkeypatch.setattr(deployer, "CONFLICT_WAIT_S", 0.0)

    class Runner:
        def __init__(self) -> None:
            self.calls: list[str] = []
            self.left = ["persistent://acme/media/recreated"]

        def run(self, action: deployer.Action) -> deployer.Outcome:
            self.calls.append(action.summary)
            if action.summary == "namespace acme/media" and self.left:
                return deployer.Outcome("conflict", 'HTTP 409 {"reason":"Cannot delete non empty namespace"}')
            if action.summary == "topic persistent://acme/media/recreated":
                self.left.clear()
            return deployer.Outcome("done")

        def list_topics(self, namespace: str) -> tuple[list[str], list[str]]:
            return list(self.left), []

        def cluster_version(self) -> str | None:
            return "4.0.8"

    runner = Runner()
    lines: list[str] = []
    execute(undeploy_plan(project, load_pipeline(project / "deploy" / "pipeline.yaml")), runner, lines.append)
    ns_calls = [c for c in runner.calls if c in ("namespace acme/media", "topic persistent://acme/media/recreated")]
    assert ns_calls == ["namespace acme/media", "topic persistent://acme/media/recreated", "namespace acme/media"]
    assert "  namespace acme/media: not empty yet, deleting what is left in it" in lines
    assert "  namespace acme/media: ok" in lines
