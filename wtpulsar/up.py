"""`wtpulsar up`: the whole pipeline on one machine — broker, every function, ingress — in the foreground.

Each part runs as its own child process with the same CLI a user would type, so `up` shows
exactly how to run them separately. Every port is checked before anything starts (a taken one is
named with its holder, and `up` exits 1). Ctrl-C (SIGINT) or SIGTERM stops them in order: the
ingress, then the functions, then the broker, each waited for. `up` exits 1 when a part dies.

The FunctionConfigs name the deployable archive (`py: build/functions/X.zip`, built by `make
package` for the cluster's Python); on the laptop the functions run from source instead, with
`--py <functions-src>/<module>.py` as `pulsar-admin functions localrun --py` would. `--from-package`
runs the archives as the YAMLs say.

Security (SECURITY.md "make run"): a started broker has authentication on, with a role and token per
part (wtpulsar/roles.py); the ingress signs chat with `<state>/chat-signing-key`, which moderate gets
as its secret `chatSigningKey` (wtpulsar/chat_key.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ingress.cli import page_url, positive_int
from wtpulsar.ports import Need
from wtpulsar.ports import check as check_ports

REPO = Path(__file__).resolve().parent.parent


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "up",
        help="run the whole pipeline locally (broker, functions, ingress)",
        description=(
            "Start the embedded broker (unless PULSAR_URL or --broker-service-url names one), every "
            "function in deploy/functions/ under the local runtime, and the WebTransport ingress with "
            "the browser page. Prints the page URL and a development token. Ctrl-C stops everything."
        ),
    )
    p.add_argument("--broker-service-url", default=os.environ.get("PULSAR_URL"), help="use this Pulsar instead of starting the embedded broker (default: $PULSAR_URL)")
    p.add_argument("--state", default=".wtpulsar", metavar="DIR", help="where broker data, function state and certificates live (default %(default)s)")
    p.add_argument("--broker-listen", default="127.0.0.1:6650", metavar="HOST:PORT")
    p.add_argument("--broker-http", default="127.0.0.1:8080", metavar="HOST:PORT", help="broker admin REST and /metrics")
    p.add_argument("--ingress-listen", default="127.0.0.1:4433", metavar="HOST:PORT", help="WebTransport (UDP)")
    p.add_argument("--ingress-http", default="127.0.0.1:8000", metavar="HOST:PORT", help="page, /health, /metrics, WebSocket fallback")
    p.add_argument("--functions", default=str(REPO / "deploy" / "functions"), metavar="DIR", help="FunctionConfig files to run (default deploy/functions)")
    p.add_argument("--functions-src", default=str(REPO / "functions"), metavar="DIR",
                   help="run each function whose `py` is a .zip from DIR/<module of className>.py (default functions/)")
    p.add_argument("--from-package", action="store_true",
                   help="run the archives the FunctionConfigs name (build/functions/*.zip, see `make package`) "
                        "instead of the source")
    p.add_argument("--public", action="store_true",
                   help="open the ingress (WebTransport and page) on every interface, not just 127.0.0.1, "
                        "e.g. to publish from another device; the broker stays on its own address")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="ingress processes sharing its ports (`wtpulsar ingress --workers`; default %(default)s)")
    p.add_argument("--quic-stack", choices=["aioquic", "qh3"], default=None,
                   help="QUIC stack of the ingress's WebTransport side (`wtpulsar ingress --quic-stack`; default qh3)")
    p.add_argument("--room", default="demo", help="room of the printed development tokens (default %(default)s)")
    p.add_argument("--nack-delay-ms", type=int, default=1000, help="local redelivery delay for failed messages (default %(default)s; Pulsar's is 60000)")
    p.set_defaults(func=run)


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before it was ready")
        try:
            with socket.create_connection((host if host != "0.0.0.0" else "127.0.0.1", port), timeout=0.3):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{what} did not listen on {host}:{port} within {timeout:.0f}s")


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def code_override(config: Path, functions_src: str, from_package: bool) -> tuple[list[str], str]:
    """The `--py` arguments for one FunctionConfig, and a line saying which code runs.

    A `py` that is not a .zip is run as written; so is everything with `from_package`. A YAML that
    cannot be read gets no override: localrun then reports what is wrong with it.
    """
    import yaml

    from localrun.config import ConfigError, source_py

    try:
        raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return [], "as configured"
    py = raw.get("py") if isinstance(raw, dict) else None
    if not isinstance(py, str) or not py.endswith(".zip"):
        return [], f"py {py} from the config"
    if from_package:
        return [], f"package {py} (--from-package)"
    try:
        source = source_py(raw, functions_src)
    except ConfigError:
        return [], "as configured"
    return ["--py", source], f"source {source} (--py; the config's {py} runs with --from-package)"


def port_needs(args: argparse.Namespace) -> list[Need]:
    """Every address `up` is about to listen on (the broker's only when it starts one)."""
    needs = []
    if not args.broker_service_url:
        needs.append(Need("broker (Pulsar binary protocol)", *_split(args.broker_listen), "tcp", "--broker-listen"))
        needs.append(Need("broker admin REST and /metrics", *_split(args.broker_http), "tcp", "--broker-http"))
    needs.append(Need("ingress WebTransport", *_split(args.ingress_listen), "udp", "--ingress-listen"))
    needs.append(Need("ingress page, /health and /ws", *_split(args.ingress_http), "tcp", "--ingress-http"))
    return needs


# Stop order: what depends on a part stops before it (the ingress publishes to the broker and so do the
# functions), so no client is left talking to a broker that has gone.
STOP_ORDER = ("ingress", "function", "broker")
STOP_TIMEOUT = 15.0  # s per stage before SIGKILL


def stop_in_order(children: list[tuple[str, subprocess.Popen[bytes]]], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the ingress and wait for it, then every function together, then the broker."""
    for stage in STOP_ORDER:
        group = [(name, proc) for name, proc in children if name.split(" ")[0] == stage]
        for _name, proc in group:
            if proc.poll() is None:
                proc.terminate()  # the part itself; a localrun supervisor stops its instances
        deadline = time.monotonic() + timeout
        for name, proc in group:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"[up] {name} did not stop in {timeout:.0f} s; killing it", file=sys.stderr, flush=True)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)


def run(args: argparse.Namespace) -> int:
    if args.public:
        args.ingress_listen = "0.0.0.0:" + str(_split(args.ingress_listen)[1])
        args.ingress_http = "0.0.0.0:" + str(_split(args.ingress_http)[1])
    clashes = check_ports(port_needs(args))
    if clashes:
        for clash in clashes:
            print(f"[up] {clash.sentence()}", file=sys.stderr)
        print("[up] nothing was started", file=sys.stderr, flush=True)
        return 1
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "wtpulsar.cli"]
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)

    def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cli + argv, start_new_session=True, env={**os.environ, **env} if env else None)
        print(f"[up] starting {name} (pid {proc.pid}): wtpulsar {' '.join(argv)}", flush=True)
        children.append((name, proc))
        return proc

    status = 0
    try:
        service_url = args.broker_service_url
        admin_url = None
        configs = sorted(Path(args.functions).glob("*.yaml"))
        auth: dict[str, Path] = {}  # role -> token file, when up starts the broker (auth on, SECURITY.md)
        if not service_url:
            from wtpulsar import roles

            auth = roles.ensure(state / "broker-auth", [c.stem for c in configs])
            host, port = _split(args.broker_listen)
            proc = start("broker", ["broker", "--listen", args.broker_listen, "--http", args.broker_http, "--data", str(state / "broker"),
                                    "--auth-token-secret", f"file://{auth['secret'].resolve()}", "--superuser-roles", roles.SUPERUSER])
            _wait_port(host, port, proc, "the broker")
            _wait_port(*_split(args.broker_http), proc, "the broker's admin REST")
            service_url = f"pulsar://{host}:{port}"
            admin_url = f"http://{args.broker_http}"
            roles.apply(admin_url, auth[roles.SUPERUSER].read_text().strip(), [c.stem for c in configs])
        if not configs:
            print(f"[up] no FunctionConfig files in {args.functions}", file=sys.stderr)
        from wtpulsar import chat_key

        signing_key = chat_key.ensure(state).resolve()  # the ingress signs chat, moderate checks it
        for config in configs:
            py_args, code = code_override(config, args.functions_src, args.from_package)
            token_file = auth.get(f"fn-{config.stem}")
            auth_args = ["--client-auth-plugin", "org.apache.pulsar.client.impl.auth.AuthenticationToken",
                         "--client-auth-params", f"file://{token_file.resolve()}"] if token_file else []
            print(f"[up] function {config.stem} runs {code}", flush=True)
            checks_chat = config.stem in chat_key.CHECKED_BY
            start(
                f"function {config.stem}",
                [
                    "functions", "localrun", "--function-config-file", str(config), *py_args,
                    "--broker-service-url", service_url, *auth_args,
                    *(chat_key.localrun_args() if checks_chat else []),
                    "--state-dir", str(state / "functions"), "--nack-delay-ms", str(args.nack_delay_ms),
                ],
                env=chat_key.localrun_env(signing_key) if checks_chat else None,
            )
        ihost, iport = _split(args.ingress_http)
        ingress_token = ["--broker-token", f"file://{auth['ingress'].resolve()}"] if auth else []
        ingress = start("ingress", ["ingress", "--listen", args.ingress_listen, "--http", args.ingress_http, "--broker-service-url", service_url,
                                    *ingress_token, "--chat-signing-key", f"file://{signing_key}",
                                    "--state-dir", str(state / "ingress"),
                                    "--workers", str(args.workers),
                                    *(["--quic-stack", args.quic_stack] if args.quic_stack else [])])
        _wait_port(ihost, iport, ingress, "the ingress")
        for name, proc in children:  # a part that died while the others started
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode} while the pipeline started")
        tokens = {
            role: subprocess.run(
                cli + ["token", "--room", args.room, "--user", f"dev-{role}", "--role", role, "--state-dir", str(state / "ingress")],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
            for role in ("publisher", "viewer")
        }
        print("", flush=True)
        print("wtpulsar is up", flush=True)
        print(f"  broker      {service_url}" + (f"   admin {admin_url}/admin/v2   metrics {admin_url}/metrics" if admin_url else " (external)"))
        code = "archives from the configs" if args.from_package else f"source from {args.functions_src}"
        print(f"  functions   {', '.join(c.stem for c in configs)} (localrun, {code}, state in {state / 'functions'})")
        print(f"  ingress     https://{args.ingress_listen.replace('0.0.0.0', 'localhost')}/wt (WebTransport)   http://{args.ingress_http}/health   /metrics")
        print(f"  page        {page_url(args.ingress_http, args.room, tokens['publisher'], 'publisher')}")
        print(f"  viewer      {page_url(args.ingress_http, args.room, tokens['viewer'], 'viewer')}")
        default_state = state.resolve() == (Path.cwd() / ".wtpulsar").resolve()
        where = "" if default_state else f" --state-dir {state / 'ingress'}"
        print(f"  tokens      wtpulsar token --room R --user U --role publisher|viewer --url{where}")
        cli_token = f"PULSAR_TOKEN=$(cat {auth['cli']}) " if auth else ""
        print(f"  consume     {cli_token}wtpulsar consume {args.room} --kind chat")
        print(f"  hls         http://{args.ingress_http.replace('0.0.0.0', '127.0.0.1')}/hls/{args.room}/index.m3u8"
              "   (any HLS player; ?start=<ISO time> to go back)")
        wt = args.ingress_listen.replace("0.0.0.0", "127.0.0.1")
        print(f"  publish     wtpulsar publish {args.room} --test-pattern --server https://{wt}/wt{where}"
              "   (no browser: a test pattern and a tone over WebTransport, as the page sends them)")
        if auth:
            print(f"  broker auth on: tokens per role in {state / 'broker-auth'} (admin REST: Authorization: Bearer $(cat {auth['admin']}))")
        if args.public:
            print("  (--public: the ingress listens on every interface)")
        print("Ctrl-C stops everything.", flush=True)
        while not stopping:
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"[up] {name} exited with status {proc.returncode}; stopping the pipeline", file=sys.stderr, flush=True)
                    stopping = True
                    status = 1
                    break
            time.sleep(0.2)
        return status
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        print(f"[up] {exc} {detail}".strip(), file=sys.stderr)
        return 1
    finally:
        stop_in_order(children)
        print("[up] stopped", flush=True)
