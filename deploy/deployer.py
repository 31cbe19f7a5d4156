"""Deploy and undeploy the pipeline: the plan (pure) and two ways of carrying it out.

A plan is a list of steps, each written both as the exact ``pulsar-admin`` command and as the
admin REST call it stands for, so ``--dry-run`` can print both and a machine without
``pulsar-admin`` (no JVM) can still deploy through the REST API with urllib.

Safe to run twice: creating something that exists (HTTP 409, "already exists") counts as done;
a function is probed first and then created or updated; deleting something missing (HTTP 404)
counts as done. ``functions update`` refuses some changes (docs/pulsar-functions.md §3: guarantees,
ordering flags, subscription name, new input topics...); then the message says to undeploy first.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from deploy.admin_rest import AdminRest, Response
from deploy.function_config import Problem, load_function_config
from deploy.pulsar_schema import schema_payload
from deploy.topology import Pipeline

ALL_CLUSTERS = "<every cluster from GET /admin/v2/clusters>"  # filled in by the REST runner
SCHEMA_DIR = Path("build/schemas")  # payload files for `pulsar-admin schemas upload --filename`
PARTITION_SUFFIX = re.compile(r"-partition-\d+$")

Log = Callable[[str], None]


class DeployError(RuntimeError):
    """A step failed; the message has the command and what Pulsar answered."""


@dataclass(frozen=True)
class RestCall:
    method: str
    path: str  # below the admin URL
    json_body: Any = None
    upload: tuple[Path, Path] | None = None  # (FunctionConfig file, package): multipart function upload
    # function secrets added to the uploaded FunctionConfig (`secrets`); never printed
    secrets: tuple[tuple[str, str], ...] = ()

    def render(self, admin_url: str) -> str:
        line = f"{self.method} {admin_url.rstrip('/')}{self.path}"
        if self.json_body is not None:
            line += " " + json.dumps(self.json_body, separators=(",", ":"))
        if self.upload:
            config, package = self.upload
            line += (f" multipart functionConfig=<{config} as JSON, runtime PYTHON, py {package.name}"
                     f"{_secret_names(self.secrets)}>"
                     f" data=@{package}")
        return line


@dataclass(frozen=True)
class Action:
    """One change, as a pulsar-admin command and as a REST call."""

    summary: str
    admin: tuple[str, ...]  # pulsar-admin arguments after the global --admin-url option
    rest: RestCall
    ok_if: frozenset[str] = frozenset()  # outcomes that also count as done: exists, missing, conflict
    writes: tuple[tuple[Path, str], ...] = ()  # files the pulsar-admin command reads, written first
    # files holding a secret the pulsar-admin command reads: written owner-only first, removed after
    secret_writes: tuple[tuple[Path, str], ...] = ()
    # On "conflict": carry this out, then try again (a few times). A namespace is refused while it holds
    # topics, and function instances that are still stopping, or clients, can create one again after
    # the pipeline's own topics were deleted.
    clear_on_conflict: DeleteMatching | None = None


@dataclass(frozen=True)
class Upsert:
    """Create the function unless the probe finds it; then update it instead."""

    summary: str
    probe: Action
    create: Action
    update: Action


@dataclass(frozen=True)
class DeleteMatching:
    """Delete topics created at run time (route's per-room topics) whose name starts with ``prefix``."""

    summary: str
    namespace: str  # tenant/namespace
    prefix: str  # persistent://tenant/namespace/room-


Step = Action | Upsert | DeleteMatching


# --- building plans (no I/O except reading the repo's own files) ---------------------------------


def _topic_path(topic: str) -> str:
    """``persistent://t/ns/x`` -> ``/admin/v2/persistent/t/ns/x``."""
    domain, rest = topic.split("://", 1)
    return f"/admin/v2/{domain}/{rest}"


def _function_configs(root: Path, pipeline: Pipeline) -> list[tuple[str, Path, dict[str, Any]]]:
    """Each pipeline function's checked FunctionConfig; raises DeployError listing every problem."""
    found: list[tuple[str, Path, dict[str, Any]]] = []
    problems: list[str] = []
    for entry in pipeline.functions:
        try:
            config = load_function_config(root / entry.config, str(entry.config), deployable=True)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        want = (pipeline.tenant, pipeline.namespace, entry.name)
        have = (config["tenant"], config["namespace"], config["name"])
        if have != want:
            problems.append(str(Problem(str(entry.config), "tenant/namespace/name",
                                        f"{'/'.join(have)} does not match pipeline.yaml's {'/'.join(want)}")))
        found.append((entry.name, entry.config, config))
    if problems:
        raise DeployError("\n".join(problems))
    return found


CHAT_SIGNING_SECRET = "chatSigningKey"  # moderate's function secret (functions/chat_signature.py SECRET_NAME)
CHAT_CHECKING_CLASS = "moderate."  # className prefix of the function that checks chat signatures


def function_secrets(config: dict[str, Any], chat_signing_key: str | None) -> tuple[tuple[str, str], ...]:
    """The secrets deploy adds to a function's FunctionConfig: the chat signing key for moderate."""
    if chat_signing_key and str(config.get("className", "")).startswith(CHAT_CHECKING_CLASS):
        return ((CHAT_SIGNING_SECRET, chat_signing_key),)
    return ()


def _add_secrets(config: dict[str, Any], secrets: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """The FunctionConfig with `secrets` added (the process runtime hands each value over as it is:
    docs/function-secrets.md)."""
    return {**config, "secrets": {**(config.get("secrets") or {}), **dict(secrets)}}


def _secret_names(secrets: tuple[tuple[str, str], ...]) -> str:
    """How a plan line mentions secrets: by name, never by value."""
    return f", secrets {', '.join(name for name, _ in secrets)}" if secrets else ""


def _with_secrets(config_text: str, secrets: tuple[tuple[str, str], ...]) -> str:
    """The FunctionConfig YAML text with `secrets` added, the rest as the file has it."""
    import yaml

    return yaml.safe_dump(_add_secrets(yaml.safe_load(config_text), secrets), sort_keys=False)


def deploy_plan(root: Path, pipeline: Pipeline, chat_signing_key: str | None = None) -> list[Step]:
    """Tenant, namespace, topics, schemas, then functions, in that order.

    `chat_signing_key`: given to moderate as its secret `chatSigningKey` (deploy/README.md "Chat signing
    key"), through a generated owner-only copy of its FunctionConfig that is removed after use, so the
    key is on no command line and in no file of the repository."""
    tenant, ns = pipeline.tenant, pipeline.namespace_path
    steps: list[Step] = [
        Action(f"tenant {tenant}", ("tenants", "create", tenant),
               RestCall("PUT", f"/admin/v2/tenants/{tenant}", {"adminRoles": [], "allowedClusters": ALL_CLUSTERS}),
               frozenset({"exists"})),
        Action(f"namespace {ns}", ("namespaces", "create", ns),
               RestCall("PUT", f"/admin/v2/namespaces/{ns}"), frozenset({"exists"})),
    ]
    if pipeline.room_topic_prefix:
        rooms = pipeline.rooms_namespace_path
        steps.append(Action(f"namespace {rooms} (route's per-room topics)", ("namespaces", "create", rooms),
                            RestCall("PUT", f"/admin/v2/namespaces/{rooms}"), frozenset({"exists"})))
    for topic in pipeline.topics:
        name = pipeline.qualified(topic.name)
        if topic.partitions > 0:
            steps.append(Action(f"topic {name} ({topic.partitions} partitions)",
                                ("topics", "create-partitioned-topic", name, "--partitions", str(topic.partitions)),
                                RestCall("PUT", _topic_path(name) + "/partitions", topic.partitions),
                                frozenset({"exists"})))
        else:
            steps.append(Action(f"topic {name}", ("topics", "create", name),
                                RestCall("PUT", _topic_path(name)), frozenset({"exists"})))
    for topic in pipeline.topics:
        if topic.schema is None:
            continue
        name = pipeline.qualified(topic.name)
        payload = schema_payload(root / "schemas" / topic.schema)
        file = SCHEMA_DIR / f"{topic.name}.json"
        # Uploading the same definition again returns the existing version: no special case needed.
        steps.append(Action(f"schema of {name} from schemas/{topic.schema}",
                            ("schemas", "upload", name, "--filename", str(root / file)),
                            RestCall("POST", f"/admin/v2/schemas/{ns}/{topic.name}/schema", payload),
                            writes=((file, json.dumps(payload, indent=2) + "\n"),)))
    for name, config_file, config in _function_configs(root, pipeline):
        # `py` is build/functions/<name>.zip (checked above), relative to the project root. Pulsar's
        # bin/pulsar-admin changes into PULSAR_HOME before it runs (docs/real-pulsar.md §6), so it gets
        # both files as absolute paths; `--py` names the same archive the YAML does.
        package = Path(config["py"])
        fqfn = ("--tenant", pipeline.tenant, "--namespace", pipeline.namespace, "--name", name)
        path = f"/admin/v3/functions/{ns}/{name}"
        secrets = function_secrets(config, chat_signing_key)
        secret_writes: tuple[tuple[Path, str], ...] = ()
        admin_config = config_file
        if secrets:
            admin_config = Path("build") / "functions" / f"{name}.with-secrets.yaml"
            secret_writes = ((admin_config, _with_secrets((root / config_file).read_text(encoding="utf-8"), secrets)),)
        code = ("--function-config-file", str(root / admin_config), "--py", str(root / package))
        steps.append(Upsert(
            f"function {ns}/{name} (py: {package}, in the project root {root}{_secret_names(secrets)})",
            probe=Action(f"does function {ns}/{name} exist", ("functions", "get", *fqfn), RestCall("GET", path)),
            create=Action(f"create function {ns}/{name}", ("functions", "create", *code),
                          RestCall("POST", path, upload=(config_file, package), secrets=secrets),
                          secret_writes=secret_writes),
            update=Action(f"update function {ns}/{name}", ("functions", "update", *code),
                          RestCall("PUT", path, upload=(config_file, package), secrets=secrets),
                          secret_writes=secret_writes),
        ))  # fmt: skip
    return steps


def undeploy_plan(root: Path, pipeline: Pipeline) -> list[Step]:
    """The reverse of deploy_plan: functions, run-time room topics, topics, namespace, tenant.

    The namespace is the pipeline's own; ``public/default`` and the ``public`` tenant are Pulsar's
    and are never deleted. A tenant that still holds other namespaces is kept (HTTP 409).
    """
    tenant, ns = pipeline.tenant, pipeline.namespace_path
    steps: list[Step] = []
    for entry in reversed(pipeline.functions):
        steps.append(Action(f"function {ns}/{entry.name}",
                            ("functions", "delete", "--tenant", tenant, "--namespace", pipeline.namespace,
                             "--name", entry.name),
                            RestCall("DELETE", f"/admin/v3/functions/{ns}/{entry.name}"), frozenset({"missing"})))
    if pipeline.room_topic_prefix:
        rooms, prefix = pipeline.rooms_namespace_path, pipeline.qualified_room(pipeline.room_topic_prefix)
        steps.append(DeleteMatching(f"topics {prefix}*", rooms, prefix))
        leftover_rooms = DeleteMatching(f"topics persistent://{rooms}/* still there", rooms, f"persistent://{rooms}/")
        steps.append(Action(f"namespace {rooms}", ("namespaces", "delete", rooms),
                            RestCall("DELETE", f"/admin/v2/namespaces/{rooms}"), frozenset({"missing"}),
                            clear_on_conflict=leftover_rooms))
    for topic in reversed(pipeline.topics):
        steps.append(_delete_topic(pipeline.qualified(topic.name), topic.partitions > 0))
    if ns != "public/default":
        leftovers = DeleteMatching(f"topics persistent://{ns}/* still there", ns, f"persistent://{ns}/")
        steps.append(Action(f"namespace {ns}", ("namespaces", "delete", ns),
                            RestCall("DELETE", f"/admin/v2/namespaces/{ns}"), frozenset({"missing"}),
                            clear_on_conflict=leftovers))
    if tenant != "public":
        steps.append(Action(f"tenant {tenant}", ("tenants", "delete", tenant),
                            RestCall("DELETE", f"/admin/v2/tenants/{tenant}"), frozenset({"missing", "conflict"})))
    return steps


def _delete_topic(name: str, partitioned: bool) -> Action:
    # -f: close the ingress's and viewers' producers/consumers rather than fail on them.
    if partitioned:
        return Action(f"topic {name}", ("topics", "delete-partitioned-topic", "-f", name),
                      RestCall("DELETE", _topic_path(name) + "/partitions?force=true"), frozenset({"missing"}))
    return Action(f"topic {name}", ("topics", "delete", "-f", name),
                  RestCall("DELETE", _topic_path(name) + "?force=true"), frozenset({"missing"}))


# --- printing ------------------------------------------------------------------------------------


def render_plan(steps: Sequence[Step], pulsar_admin: str, admin_url: str) -> list[str]:
    """The dry-run text: every pulsar-admin command, each followed by its REST equivalent."""
    prefix = (pulsar_admin, "--admin-url", admin_url)

    def command(action: Action, note: str) -> list[str]:
        return [f"{shlex.join(prefix + action.admin)}{note}", f"    REST: {action.rest.render(admin_url)}"]

    lines: list[str] = []
    for step in steps:
        lines.append(f"# {step.summary}")
        if isinstance(step, Action):
            notes = {"exists": "already exists", "missing": "not found", "conflict": "still in use"}
            ok = " or ".join(notes[o] for o in sorted(step.ok_if))
            lines += command(step, f"    # {ok}: fine" if ok else "")
        elif isinstance(step, Upsert):
            lines += command(step.probe, "    # found: update, not found: create")
            lines += command(step.create, "    # when not found")
            lines += command(step.update, "    # when found")
        else:
            listing = (("topics", "list", step.namespace), ("topics", "list-partitioned-topics", step.namespace))
            rest = (f"/admin/v2/persistent/{step.namespace}", f"/admin/v2/persistent/{step.namespace}/partitioned")
            for args, path in zip(listing, rest, strict=True):
                lines.append(shlex.join(prefix + args))
                lines.append(f"    REST: GET {admin_url.rstrip('/')}{path}")
            lines.append(f"#   then for each listed topic starting with {step.prefix}: "
                         f"topics delete -f / topics delete-partitioned-topic -f")
    return lines


# --- carrying plans out --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    kind: str  # done, exists, missing, conflict, failed
    detail: str = ""


class Runner(Protocol):
    def run(self, action: Action) -> Outcome: ...

    def list_topics(self, namespace: str) -> tuple[list[str], list[str]]: ...

    def cluster_version(self) -> str | None: ...


def classify_text(text: str) -> str:
    """What a failed pulsar-admin call means, from its message (it prints the server's reason)."""
    low = text.lower()
    if "already exist" in low:
        return "exists"
    if re.search(r"not found|does not exist|doesn't exist|not exist|404", low):
        return "missing"
    if re.search(r"409|conflict|not empty|non[ -]empty|still has", low):
        return "conflict"
    return "failed"


def classify_status(method: str, path: str, response: Response) -> str:
    if 200 <= response.status < 300:
        return "done"
    if response.status == 404:
        return "missing"
    if response.status == 409:
        # A schema upload answers 409 for an *incompatible* schema, never for "already there".
        return "exists" if method in ("PUT", "POST") and not path.endswith("/schema") else "conflict"
    return "failed"


class AdminCliRunner:
    """Runs ``pulsar-admin`` in the project root; the commands name files by absolute path (see deploy_plan)."""

    def __init__(self, pulsar_admin: str, admin_url: str, root: Path) -> None:
        self.base = [pulsar_admin, "--admin-url", admin_url]
        self.root = root

    def _call(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.base, *args], cwd=self.root, capture_output=True, text=True)

    def run(self, action: Action) -> Outcome:
        for path, text in action.writes:
            (self.root / path).parent.mkdir(parents=True, exist_ok=True)
            (self.root / path).write_text(text)
        for path, text in action.secret_writes:
            _write_owner_only(self.root / path, text)
        try:
            done = self._call(action.admin)
        finally:
            for path, _ in action.secret_writes:
                (self.root / path).unlink(missing_ok=True)
        output = (done.stderr + "\n" + done.stdout).strip()
        if done.returncode == 0:
            return Outcome("done")
        return Outcome(classify_text(output), output)

    def cluster_version(self) -> str | None:
        """`pulsar-admin brokers version`; None when the cluster does not say."""
        done = self._call(("brokers", "version"))
        return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None

    def list_topics(self, namespace: str) -> tuple[list[str], list[str]]:
        lists: list[list[str]] = []
        for args in (("topics", "list", namespace), ("topics", "list-partitioned-topics", namespace)):
            done = self._call(args)
            if done.returncode != 0 and classify_text(done.stderr + done.stdout) == "missing":
                return [], []  # the namespace is gone already: nothing to delete
            if done.returncode != 0:
                raise DeployError(f"{shlex.join([*self.base, *args])} failed: {done.stderr.strip()}")
            lists.append([line.strip().strip('"') for line in done.stdout.splitlines() if "://" in line])
        return lists[0], lists[1]


def _write_owner_only(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a new file, so the mode below is the one it gets
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


class RestRunner:
    """Runs the REST side of each action with urllib."""

    def __init__(self, admin_url: str, root: Path) -> None:
        self.api = AdminRest(admin_url)
        self.root = root
        self._clusters: list[str] | None = None

    def _fill(self, body: Any) -> Any:
        if isinstance(body, dict) and body.get("allowedClusters") == ALL_CLUSTERS:
            if self._clusters is None:
                reply = self.api.request("GET", "/admin/v2/clusters")
                if reply.status != 200:
                    raise DeployError(f"GET /admin/v2/clusters: {reply.status} {reply.body}")
                self._clusters = list(reply.json())
            return {**body, "allowedClusters": self._clusters}
        return body

    def run(self, action: Action) -> Outcome:
        call = action.rest
        if call.upload:
            config_file, package = call.upload
            config = load_function_config(self.root / config_file, str(config_file))
            # What pulsar-admin sends: the YAML as JSON, runtime inferred from py, the code as `data`.
            config = {**config, "runtime": "PYTHON", "py": package.name}
            if call.secrets:
                config = _add_secrets(config, call.secrets)
            reply = self.api.upload_function(call.method, call.path, config, self.root / package)
        else:
            if isinstance(call.json_body, dict) and call.json_body.get("allowedClusters") == ALL_CLUSTERS:
                # pulsar-admin looks the clusters up itself; over REST, an existing tenant needs no lookup.
                tenants = self.api.request("GET", "/admin/v2/tenants")
                if tenants.status == 200 and call.path.rsplit("/", 1)[1] in (tenants.json() or []):
                    return Outcome("exists", "tenant found")
            reply = self.api.request(call.method, call.path, json_body=self._fill(call.json_body))
        if reply.status == 0:
            return Outcome("failed", reply.body)
        return Outcome(classify_status(call.method, call.path, reply), f"HTTP {reply.status} {reply.body}".strip())

    def cluster_version(self) -> str | None:
        """GET /admin/v2/brokers/version; None when the cluster does not say."""
        reply = self.api.request("GET", "/admin/v2/brokers/version")
        return reply.body.strip() if reply.status == 200 and reply.body.strip() else None

    def list_topics(self, namespace: str) -> tuple[list[str], list[str]]:
        lists: list[list[str]] = []
        for path in (f"/admin/v2/persistent/{namespace}", f"/admin/v2/persistent/{namespace}/partitioned"):
            reply = self.api.request("GET", path)
            if reply.status == 404:  # the namespace is gone already: nothing to delete
                return [], []
            if reply.status != 200:
                raise DeployError(f"GET {path}: HTTP {reply.status} {reply.body}")
            lists.append(list(reply.json()))
        return lists[0], lists[1]


def _must(runner: Runner, action: Action, log: Log, hint: str = "") -> Outcome:
    outcome = runner.run(action)
    if outcome.kind == "done" or outcome.kind in action.ok_if:
        log(f"  {action.summary}: {'ok' if outcome.kind == 'done' else outcome.kind + ', fine'}")
        return outcome
    raise DeployError(f"{action.summary} failed ({outcome.kind}): {outcome.detail}{hint}")


UPDATE_HINT = ("\n(functions update cannot change the processing guarantees, ordering flags, subscription, "
               "runtime or output serde, nor add input topics: run `wtpulsar undeploy` then deploy again)")


def check_cluster_version(root: Path, pipeline: Pipeline, runner: Runner, admin_url: str) -> None:
    """DeployError when the cluster is too old for the FunctionConfigs (deploy/cluster_version.py)."""
    from deploy.cluster_version import version_problem

    configs = [config for _, _, config in _function_configs(root, pipeline)]
    problem = version_problem(runner.cluster_version(), configs, admin_url)
    if problem:
        raise DeployError(problem)


# Pulsar stops a deleted function's instances asynchronously; until each has exited, its consumers
# re-subscribe and so re-create its input topics. Seen on Apache Pulsar 4.0.8: up to ~10 s on 2 cores.
CONFLICT_RETRIES = 20
CONFLICT_WAIT_S = 1.5


def _must_clearing(runner: Runner, action: Action, log: Log) -> Outcome:
    """`_must`, but a conflict first clears what `clear_on_conflict` names and tries again."""
    assert action.clear_on_conflict is not None
    for _ in range(CONFLICT_RETRIES):
        outcome = runner.run(action)
        if outcome.kind != "conflict":
            break
        log(f"  {action.summary}: not empty yet, deleting what is left in it")
        _delete_matching(runner, action.clear_on_conflict, log)
        time.sleep(CONFLICT_WAIT_S)
    if outcome.kind == "done" or outcome.kind in action.ok_if:
        log(f"  {action.summary}: {'ok' if outcome.kind == 'done' else outcome.kind + ', fine'}")
        return outcome
    raise DeployError(f"{action.summary} failed ({outcome.kind}): {outcome.detail}")


def _delete_matching(runner: Runner, step: DeleteMatching, log: Log) -> None:
    plain, partitioned = runner.list_topics(step.namespace)
    for name in sorted(t for t in partitioned if t.startswith(step.prefix)):
        _must(runner, _delete_topic(name, True), log)
    for name in sorted(t for t in plain if t.startswith(step.prefix) and not PARTITION_SUFFIX.search(t)):
        _must(runner, _delete_topic(name, False), log)


def execute(steps: Sequence[Step], runner: Runner, log: Log = print) -> None:
    """Carry out a plan in order; stop at the first step that fails (raise DeployError)."""
    for step in steps:
        if isinstance(step, Action) and step.clear_on_conflict is not None:
            _must_clearing(runner, step, log)
        elif isinstance(step, Action):
            _must(runner, step, log)
        elif isinstance(step, Upsert):
            probe = runner.run(step.probe)
            if probe.kind == "done":
                _must(runner, step.update, log, UPDATE_HINT)
            elif probe.kind == "missing":
                _must(runner, step.create, log)
            else:
                raise DeployError(f"{step.probe.summary}: {probe.detail}")
        else:
            _delete_matching(runner, step, log)


def find_pulsar_admin(explicit: str | None) -> str | None:
    """``--pulsar-admin PATH`` if given, else ``pulsar-admin`` on PATH, else None (use REST)."""
    if explicit:
        return explicit
    return shutil.which("pulsar-admin")
