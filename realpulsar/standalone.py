"""Run `bin/pulsar standalone` on 127.0.0.1, sized for 2 cores, with the table service on.

docs/real-pulsar.md §3–§5 has the facts: the ports are moved off 6650/8080 (our broker and `make
run` use them); the function worker's URLs follow them; function state needs the table service,
which standalone starts only with the ZooKeeper metadata store (`PULSAR_STANDALONE_USE_ZOOKEEPER=1`);
the worker starts instances with the first `python3` on PATH. Configuration is written from the
distribution's own files into the data folder, so the cached distribution is never modified and
several data folders can share it. `auth=TokenAuth(...)` turns on token authentication and
authorization (docs/real-pulsar.md §9).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Log = Callable[[str], None]

# Small JVM for a 2-core machine; Pulsar's defaults (2 GiB heap, 4 GiB direct memory) are for servers.
DEFAULT_MEM = "-Xms512m -Xmx1g -XX:MaxDirectMemorySize=1g"
DEFAULT_GC = "-XX:+UseG1GC -XX:ParallelGCThreads=2 -XX:ConcGCThreads=1"


class StandaloneError(RuntimeError):
    """One sentence: why the standalone could not start, and what to do."""


@dataclass(frozen=True)
class Ports:
    """Every port the standalone opens. The defaults collide with neither our broker nor `make run`."""

    service: int = 16650
    web: int = 18080
    bookie: int = 13181
    stream_storage: int = 14181
    zookeeper: int = 12181

    def named(self) -> list[tuple[str, int]]:
        return [("broker service", self.service), ("admin/web", self.web), ("bookie", self.bookie),
                ("table service", self.stream_storage), ("zookeeper", self.zookeeper)]


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def random_ports() -> Ports:
    return Ports(*free_ports(5))


def port_holder(port: int) -> str:
    """Who listens on `port`, as `ss` says (best effort: empty when unknown)."""
    try:
        out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
    return f"{match.group(1)} (pid {match.group(2)})" if match else ""


def check_ports_free(ports: Ports) -> None:
    for name, port in ports.named():
        for host in ("127.0.0.1", "0.0.0.0"):  # the bookie and ZooKeeper bind every interface
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, port))
                except OSError:
                    holder = port_holder(port)
                    raise StandaloneError(
                        f"port {port} ({name}) is already in use{' by ' + holder if holder else ''}: stop "
                        f"that process or choose other ports (see `wtpulsar pulsar --help`).") from None


TOKEN_PROVIDER = "org.apache.pulsar.broker.authentication.AuthenticationProviderToken"
TOKEN_CLIENT_PLUGIN = "org.apache.pulsar.client.impl.auth.AuthenticationToken"


@dataclass(frozen=True)
class TokenAuth:
    """HS256 token authentication with Pulsar's own authorization provider (docs/real-pulsar.md §9).

    ``secret_file`` holds the key bytes exactly as `tokenSecretKey=file://` reads them (the whole
    file, so no trailing newline); ``superuser_token_file`` a token whose role is one of
    ``superuser_roles``. The broker's internal client and the functions worker (and so every function
    instance it starts) authenticate with that token, and so do `admin()` and the readiness checks.
    """

    secret_file: Path
    superuser_token_file: Path
    superuser_roles: tuple[str, ...] = ("admin",)

    def broker_conf(self) -> dict[str, str]:
        return {
            "authenticationEnabled": "true",
            "authorizationEnabled": "true",
            "authenticationProviders": TOKEN_PROVIDER,
            "tokenSecretKey": f"file://{self.secret_file.resolve()}",
            "superUserRoles": ",".join(self.superuser_roles),
            "brokerClientAuthenticationPlugin": TOKEN_CLIENT_PLUGIN,
            "brokerClientAuthenticationParameters": f"file://{self.superuser_token_file.resolve()}",
        }

    def client_conf(self) -> str:
        return (f"authPlugin={TOKEN_CLIENT_PLUGIN}\n"
                f"authParams=file://{self.superuser_token_file.resolve()}\n")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.superuser_token_file.read_text().strip()}"}


def set_properties(text: str, values: dict[str, str]) -> str:
    """`key=value` lines of a .conf file replaced (or appended), comments kept."""
    for key, value in values.items():
        pattern = re.compile(rf"^{re.escape(key)}=.*$", re.MULTILINE)
        line = f"{key}={value}"

        def literal(_m: re.Match[str], line: str = line) -> str:
            return line

        text, count = pattern.subn(literal, text)
        if count == 0:
            text += f"\n{line}\n"
    return text


def set_yaml_keys(text: str, values: dict[str, str]) -> str:
    """`key: value` lines of functions_worker.yml (at any indent) replaced, comments kept."""
    for key, value in values.items():
        pattern = re.compile(rf"^(\s*){re.escape(key)}:.*$", re.MULTILINE)

        def replaced(m: re.Match[str], key: str = key, value: str = value) -> str:
            return f"{m.group(1)}{key}: {value}"

        text, count = pattern.subn(replaced, text)
        if count == 0:
            text += f"\n{key}: {value}\n"
    return text


@dataclass
class Standalone:
    """One standalone: `start()`, `stop()`, `service_url`, `admin_url`, `admin(...)`."""

    home: Path
    data_dir: Path
    java_home: str
    worker_python: Path | None = None
    ports: Ports = field(default_factory=Ports)
    state: bool = True
    mem: str = DEFAULT_MEM
    extra_broker_conf: dict[str, str] = field(default_factory=dict)
    auth: TokenAuth | None = None
    log: Log = print
    proc: subprocess.Popen[bytes] | None = None

    @property
    def service_url(self) -> str:
        return f"pulsar://127.0.0.1:{self.ports.service}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.web}"

    @property
    def conf_dir(self) -> Path:
        return self.data_dir / "conf"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def output_path(self) -> Path:
        return self.log_dir / "standalone.out"

    def function_log(self, tenant: str, namespace: str, name: str, instance: int = 0) -> Path:
        return self.log_dir / "functions" / tenant / namespace / name / f"{name}-{instance}.log"

    def write_config(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        broker = set_properties((self.home / "conf" / "standalone.conf").read_text(), {
            "brokerServicePort": str(self.ports.service),
            "webServicePort": str(self.ports.web),
            "bindAddress": "127.0.0.1",
            "advertisedAddress": "127.0.0.1",
            "numIOThreads": "2",
            "numOrderedExecutorThreads": "2",
            "numWorkerThreadsForNonPersistentTopic": "2",
            **(self.auth.broker_conf() if self.auth else {}),
            **self.extra_broker_conf,
        })
        (self.conf_dir / "standalone.conf").write_text(broker)
        worker = set_yaml_keys((self.home / "conf" / "functions_worker.yml").read_text(), {
            "workerHostname": "127.0.0.1",
            "workerPort": str(self.ports.web),
            "pulsarServiceUrl": f"pulsar://127.0.0.1:{self.ports.service}",
            "pulsarWebServiceUrl": f"http://127.0.0.1:{self.ports.web}",
            "downloadDirectory": str(self.data_dir / "functions-download"),
            "logDirectory": str(self.log_dir),
        })
        if self.auth is not None:
            # The embedded worker takes authentication, authorization, super users and its broker client
            # credentials from the broker's configuration; the token provider it would build for itself
            # reads its key from the worker's `properties` (docs/real-pulsar.md §9).
            worker += f"\nproperties:\n  tokenSecretKey: \"file://{self.auth.secret_file.resolve()}\"\n"
        (self.conf_dir / "functions_worker.yml").write_text(worker)
        client = f"webServiceUrl={self.admin_url}\nbrokerServiceUrl={self.service_url}\n"
        (self.conf_dir / "client.conf").write_text(client + (self.auth.client_conf() if self.auth else ""))

    def environment(self) -> dict[str, str]:
        env = {**os.environ, "JAVA_HOME": self.java_home, "PULSAR_MEM": self.mem, "PULSAR_GC": DEFAULT_GC,
               "PULSAR_LOG_DIR": str(self.log_dir), "PULSAR_STANDALONE_USE_ZOOKEEPER": "1"}
        env.pop("PULSAR_EXTRA_OPTS", None)
        if self.worker_python is not None:
            env["PATH"] = f"{self.worker_python / 'bin'}{os.pathsep}{env.get('PATH', '')}"
            env.pop("VIRTUAL_ENV", None)
            env.pop("PYTHONPATH", None)
        return env

    def command(self) -> list[str]:
        cmd = [str(self.home / "bin" / "pulsar"), "standalone",
               "--config", str(self.conf_dir / "standalone.conf"),
               "--functions-worker-conf", str(self.conf_dir / "functions_worker.yml"),
               "--advertised-address", "127.0.0.1",
               "--bookkeeper-dir", str(self.data_dir / "bookkeeper"),
               "--zookeeper-dir", str(self.data_dir / "zookeeper"),
               "--bookkeeper-port", str(self.ports.bookie),
               "--zookeeper-port", str(self.ports.zookeeper),
               "--stream-storage-port", str(self.ports.stream_storage)]
        if not self.state:
            cmd.append("--no-stream-storage")
        return cmd

    def start(self, timeout: float = 240.0) -> Standalone:
        check_ports_free(self.ports)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        out = open(self.output_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(self.command(), cwd=self.data_dir, env=self.environment(), stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _get(self, path: str) -> tuple[int, str]:
        headers = self.auth.headers() if self.auth else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(self.admin_url + path, headers=headers), timeout=5) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (OSError, urllib.error.URLError):
            return 0, ""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # Standalone creates public/default after the broker answers: clients that use it right away
        # would get "Namespace not found".
        checks: Sequence[tuple[str, str, str]] = (("/admin/v2/brokers/health", "broker", ""),
                                                  ("/admin/v2/namespaces/public", "namespace public/default",
                                                   "public/default"),
                                                  ("/admin/v2/worker/cluster", "functions worker", ""))
        for path, what, needle in checks:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise StandaloneError(
                        f"Apache Pulsar standalone exited with status {self.proc.returncode} before its {what} was "
                        f"ready; its log is {self.output_path}. Last lines: {self.tail(6)}")
                status, body = self._get(path)
                if status == 200 and body.strip() not in ("", "[]") and needle in body:
                    break
                if time.monotonic() > deadline:
                    raise StandaloneError(f"Apache Pulsar standalone's {what} was not ready within {timeout:.0f} s; "
                                          f"its log is {self.output_path}.")
                time.sleep(0.5)

    def tail(self, lines: int = 20) -> str:
        if not self.output_path.exists():
            return ""
        text = self.output_path.read_text(errors="replace").splitlines()
        return " | ".join(line.strip() for line in text[-lines:])

    def admin(self, *args: str, cwd: str | Path | None = None, timeout: float = 120.0,
              check: bool = False) -> subprocess.CompletedProcess[str]:
        """Pulsar's own `bin/pulsar-admin --admin-url URL args...`."""
        env = {**os.environ, "JAVA_HOME": self.java_home, "PULSAR_CLIENT_CONF": str(self.conf_dir / "client.conf")}
        client_conf = self.conf_dir / "client.conf"
        if not client_conf.exists():
            self.conf_dir.mkdir(parents=True, exist_ok=True)
            client_conf.write_text(f"webServiceUrl={self.admin_url}\nbrokerServiceUrl={self.service_url}\n"
                                   + (self.auth.client_conf() if self.auth else ""))
        cmd = [str(self.home / "bin" / "pulsar-admin"), "--admin-url", self.admin_url, *args]
        out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise StandaloneError(f"pulsar-admin {' '.join(args)} failed ({out.returncode}): "
                                  f"{(out.stderr or out.stdout).strip()[-600:]}")
        return out

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM to the whole process group (broker and the function instances it started)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        try:  # instances the worker started and did not reap
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return int(self.proc.returncode or 0)
