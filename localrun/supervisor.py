"""Runs every instance of one or more functions as separate processes and keeps them running.

`parallelism: N` → N processes `python -m localrun.instance` with instance ids "0".."N-1"
(what the worker's process runtime does). A crashed or killed instance is restarted after a
backoff (0.5 s doubling to 30 s; reset once it has run for 30 s), and the reason (exit status
or signal) is logged. `stop()` sends SIGTERM to all and waits, then SIGKILLs stragglers.

Python API (tests and benches; `wtpulsar up` runs the `functions localrun` CLI)::

    handle = run_functions(["deploy/functions/moderate.yaml"], "pulsar://127.0.0.1:6650",
                           state_dir=".wtpulsar/state",
                           py_overrides={"deploy/functions/moderate.yaml": "functions/moderate.py"})
    ...
    handle.stop()

`py_overrides` does what `--py` does on the command line: the YAMLs name the deployable archive,
the override runs the source instead (`localrun.config.source_py` gives the file).

Status files: `<run_dir>/<tenant>__<ns>__<name>/supervisor.json` (supervisor pid, instances,
pids, restarts) and `instance-<id>.json` (written by each instance: pid, metrics port);
`wtpulsar functions status` reads them and scrapes the metrics endpoints.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from localrun.config import FunctionSpec, load_function_config
from localrun.instance import DEFAULT_NACK_DELAY_MS, fqfn_dirname
from localrun.loader import prepare_package

log = logging.getLogger("localrun.supervisor")

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 30.0  # an instance that ran this long starts its backoff from scratch again
STOP_GRACE_S = 10.0
POLL_S = 0.1


def default_run_dir() -> str:
    return os.environ.get("WTPULSAR_RUN_DIR") or os.path.join(tempfile.gettempdir(), f"wtpulsar-{os.getuid()}",
                                                             "functions")


@dataclass
class InstanceProcess:
    spec: FunctionSpec
    instance_id: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    consecutive_failures: int = 0
    restart_at: float | None = None
    last_exit: str = ""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


@dataclass
class FunctionRun:
    spec: FunctionSpec
    instances: list[InstanceProcess] = field(default_factory=list)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _set_parent_death_signal() -> None:
    """Linux: instances get SIGTERM if the supervisor dies without cleaning up."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort, non-Linux
        pass


class Supervisor:
    def __init__(
        self,
        specs: Sequence[FunctionSpec],
        service_url: str,
        *,
        state_dir: str | None = None,
        nack_delay_ms: int = DEFAULT_NACK_DELAY_MS,
        metrics_port_start: int | None = None,
        run_dir: str | None = None,
        work_dir: str | None = None,
        cluster: str = "local",
        secrets_provider: str = "",
        log_level: str = "INFO",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.specs = list(specs)
        self.service_url = service_url
        self.state_dir = state_dir
        self.nack_delay_ms = nack_delay_ms
        self.metrics_port_start = metrics_port_start
        self.run_dir = run_dir or default_run_dir()
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="wtpulsar-functions-")
        self.cluster = cluster
        self.secrets_provider = secrets_provider
        self.log_level = log_level
        self.clock = clock
        self.functions: list[FunctionRun] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._monitor: threading.Thread | None = None

    # --- lifecycle ---
    def start(self) -> Supervisor:
        next_port = self.metrics_port_start
        for spec in self.specs:
            if spec.processing_guarantees == "ATLEAST_ONCE" and not spec.auto_ack:
                # What the admin server says too (docs/pulsar-functions.md §2.2): nothing is acked unless the function does it.
                log.warning("%s: autoAck=false is deprecated; use processingGuarantees: MANUAL", spec.fqfn)
            fn_work = Path(self.work_dir) / fqfn_dirname(spec.fqfn)
            # Unzip and install wheels once per start, before any instance imports the code (docs/pulsar-functions.md §4).
            sys_path = prepare_package(spec.py, fn_work / "package")
            spec_file = fn_work / "spec.json"
            spec_file.parent.mkdir(parents=True, exist_ok=True)
            spec_file.write_text(spec.to_json())
            run_dir = Path(self.run_dir) / fqfn_dirname(spec.fqfn)
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True, exist_ok=True)
            run = FunctionRun(spec)
            for index in range(spec.parallelism):
                # Pulsar's local runner gives each instance a random UUID as
                # function id and another as version: LocalRunner.java in pulsar-functions/localrun.
                function_id, function_version = str(uuid.uuid4()), str(uuid.uuid4())
                port = 0
                if next_port is not None:
                    port = next_port
                    next_port += 1
                cmd = [sys.executable, "-m", "localrun.instance", "--spec-file", str(spec_file),
                       "--instance-id", str(index), "--service-url", self.service_url,
                       "--nack-delay-ms", str(self.nack_delay_ms), "--metrics-port", str(port),
                       "--run-dir", self.run_dir, "--cluster", self.cluster, "--log-level", self.log_level,
                       "--function-id", function_id, "--function-version", function_version]
                for directory in sys_path:
                    cmd += ["--sys-path", directory]
                if self.state_dir is not None:
                    cmd += ["--state-dir", str(Path(self.state_dir).resolve())]
                if self.secrets_provider:
                    cmd += ["--secrets-provider", self.secrets_provider]
                run.instances.append(InstanceProcess(spec, str(index), cmd))
            self.functions.append(run)
        for run in self.functions:
            for inst in run.instances:
                self._spawn(inst)
            self._write_status(run)
        self._monitor = threading.Thread(target=self._watch, name="localrun-supervisor", daemon=True)
        self._monitor.start()
        return self

    def _spawn(self, inst: InstanceProcess) -> None:
        env = dict(os.environ)
        # The instance imports `localrun` from this checkout even when not installed.
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        inst.process = subprocess.Popen(inst.command, env=env, preexec_fn=_set_parent_death_signal)
        inst.started_at = self.clock()
        inst.restart_at = None
        log.info("started %s instance %s (pid %d)", inst.spec.fqfn, inst.instance_id, inst.process.pid)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            now = self.clock()
            for run in self.functions:
                changed = False
                for inst in run.instances:
                    with self._lock:
                        if self._stopping.is_set():
                            return
                        changed |= self._check(inst, now)
                if changed:
                    self._write_status(run)
            self._stopping.wait(POLL_S)

    def _check(self, inst: InstanceProcess, now: float) -> bool:
        proc = inst.process
        if inst.restart_at is not None:
            if now >= inst.restart_at:
                inst.restarts += 1
                self._spawn(inst)
                return True
            return False
        if proc is None or proc.poll() is None:
            return False
        inst.last_exit = _describe_exit(proc.returncode)
        if now - inst.started_at >= STABLE_AFTER_S:
            inst.consecutive_failures = 0
        inst.consecutive_failures += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (inst.consecutive_failures - 1))
        inst.restart_at = now + delay
        log.warning("%s instance %s (pid %d) %s; restarting in %.1f s", inst.spec.fqfn, inst.instance_id,
                    proc.pid, inst.last_exit, delay)
        return True

    def stop(self, timeout: float = STOP_GRACE_S) -> None:
        """SIGTERM every instance, wait up to `timeout`, SIGKILL what is left. Idempotent."""
        with self._lock:
            if self._stopping.is_set() and not self.functions:
                return
            self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        procs = [inst.process for run in self.functions for inst in run.instances
                 if inst.process is not None and inst.process.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not stop within %.0f s; killing it", proc.pid, timeout)
                proc.kill()
                proc.wait()
        for run in self.functions:
            shutil.rmtree(Path(self.run_dir) / fqfn_dirname(run.spec.fqfn), ignore_errors=True)
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        self.functions = []

    def wait(self) -> None:
        """Block until `stop()` is called (from a signal handler or another thread)."""
        while not self._stopping.wait(0.5):
            pass

    def instances(self, fqfn: str | None = None) -> list[InstanceProcess]:
        return [inst for run in self.functions for inst in run.instances if fqfn is None or run.spec.fqfn == fqfn]

    def kill_instance(self, fqfn: str, instance_id: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to one instance (tests, chaos drills). Returns its pid."""
        for inst in self.instances(fqfn):
            if inst.instance_id == instance_id and inst.process is not None:
                inst.process.send_signal(sig)
                return inst.process.pid
        raise KeyError(f"{fqfn} has no running instance {instance_id}")

    def _write_status(self, run: FunctionRun) -> None:
        directory = Path(self.run_dir) / fqfn_dirname(run.spec.fqfn)
        directory.mkdir(parents=True, exist_ok=True)
        body = {
            "fqfn": run.spec.fqfn,
            "configFile": run.spec.source_file,
            "supervisorPid": os.getpid(),
            "parallelism": run.spec.parallelism,
            "instances": [
                {"instanceId": inst.instance_id, "pid": inst.pid, "numRestarts": inst.restarts,
                 "lastExit": inst.last_exit} for inst in run.instances
            ],
        }
        tmp = directory / ".supervisor.json.tmp"
        tmp.write_text(json.dumps(body))
        tmp.replace(directory / "supervisor.json")


def run_functions(
    config_files: Sequence[str | os.PathLike[str]],
    service_url: str,
    state_dir: str | None = None,
    *,
    nack_delay_ms: int = DEFAULT_NACK_DELAY_MS,
    metrics_port_start: int | None = None,
    run_dir: str | None = None,
    log_level: str = "INFO",
    py_overrides: Mapping[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
) -> Supervisor:
    """Validate every config (raising `ConfigError` before anything starts), start all
    instances of all functions, and return the running `Supervisor` (call `.stop()`).

    `py_overrides` maps a config file (as given in `config_files`) to the `py` that replaces the
    file's own, like `functions localrun --py` (see `load_function_config`)."""
    overrides = {Path(key): value for key, value in (py_overrides or {}).items()}
    unknown = set(overrides) - {Path(path) for path in config_files}
    if unknown:
        raise ValueError(f"py_overrides names config files that are not run: {', '.join(sorted(map(str, unknown)))}")
    specs = [load_function_config(path, overrides.get(Path(path))) for path in config_files]
    names = [s.fqfn for s in specs]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"the same function is configured twice: {', '.join(sorted(duplicates))}")
    return Supervisor(specs, service_url, state_dir=state_dir, nack_delay_ms=nack_delay_ms,
                      metrics_port_start=metrics_port_start, run_dir=run_dir, log_level=log_level).start()
