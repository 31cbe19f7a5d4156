"""`wtpulsar pulsar`: Apache Pulsar standalone on 127.0.0.1, fetched from Maven Central on first use."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from realpulsar.distribution import (
    DEFAULT_VERSION,
    DistributionError,
    cache_root,
    check_tools,
    ensure_distribution,
)
from realpulsar.standalone import DEFAULT_MEM, Ports, Standalone, StandaloneError
from realpulsar.worker_python import ensure_worker_python

DEFAULTS = Ports()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "pulsar",
        help="run Apache Pulsar standalone (fetched with Maven, cached outside the repo)",
        description=(
            "Fetch the Apache Pulsar binary distribution with Maven into the cache ($WTPULSAR_CACHE, default "
            "~/.cache/wtpulsar; about 240 MiB, once, SHA-512 checked), make the Python environment its functions "
            "worker starts our functions with, and run `bin/pulsar standalone` on 127.0.0.1 with the table service "
            "on (function state works). Needs Java 17+ and Maven. Prints the service and admin URLs; Ctrl-C stops "
            "it. Point the pipeline at it with PULSAR_URL=<service URL>, and deploy with "
            "`wtpulsar deploy --admin-url <admin URL>` or Pulsar's own bin/pulsar-admin."),
    )
    p.add_argument("--data", default=".wtpulsar/pulsar", metavar="DIR", help="data, configuration and logs (default %(default)s)")
    p.add_argument("--version", default=DEFAULT_VERSION, help="Apache Pulsar version (default %(default)s)")
    p.add_argument("--service-port", type=int, default=DEFAULTS.service, help="binary protocol port (default %(default)s)")
    p.add_argument("--web-port", type=int, default=DEFAULTS.web, help="admin REST, functions worker (default %(default)s)")
    p.add_argument("--bookie-port", type=int, default=DEFAULTS.bookie, help="default %(default)s")
    p.add_argument("--table-service-port", type=int, default=DEFAULTS.stream_storage, help="function state (default %(default)s)")
    p.add_argument("--zookeeper-port", type=int, default=DEFAULTS.zookeeper, help="default %(default)s")
    p.add_argument("--no-state", action="store_true", help="without the table service (function state calls then do nothing)")
    p.add_argument("--mem", default=DEFAULT_MEM, help="JVM memory flags (default %(default)r)")
    p.add_argument("--fetch-only", action="store_true", help="download and prepare everything, print PULSAR_HOME, do not start")
    p.set_defaults(func=run)


def prepare(version: str = DEFAULT_VERSION, log: Callable[[str], None] = print) -> tuple[Path, Path, str]:
    """(PULSAR_HOME, worker Python, JAVA_HOME), fetching what the cache lacks."""
    java_home = check_tools(need_maven=False)
    cache = cache_root()
    home = ensure_distribution(version, cache, log=log)
    worker = ensure_worker_python(cache, log=log)
    return home, worker, java_home


def run(args: argparse.Namespace) -> int:
    try:
        home, worker, java_home = prepare(args.version)
    except DistributionError as exc:
        print(f"wtpulsar pulsar: {exc}", file=sys.stderr)
        return 1
    if args.fetch_only:
        print(home)
        return 0
    ports = Ports(args.service_port, args.web_port, args.bookie_port, args.table_service_port, args.zookeeper_port)
    standalone = Standalone(home=home, data_dir=Path(args.data).resolve(), java_home=java_home, worker_python=worker,
                            ports=ports, state=not args.no_state, mem=args.mem)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"starting Apache Pulsar {args.version} standalone in {standalone.data_dir} (log {standalone.output_path}) …",
          flush=True)
    try:
        standalone.start()
    except StandaloneError as exc:
        print(f"wtpulsar pulsar: {exc}", file=sys.stderr)
        return 1
    print(f"Apache Pulsar {args.version} standalone is up\n"
          f"  service URL  {standalone.service_url}\n"
          f"  admin URL    {standalone.admin_url}\n"
          f"  function state {'on (table service :' + str(ports.stream_storage) + ')' if standalone.state else 'off'}\n"
          f"  pipeline:    PULSAR_URL={standalone.service_url} wtpulsar up    deploy: wtpulsar deploy "
          f"--admin-url {standalone.admin_url}\nCtrl-C stops it.", flush=True)
    while not stop.is_set():
        if standalone.proc is not None and standalone.proc.poll() is not None:
            print(f"wtpulsar pulsar: the standalone exited with status {standalone.proc.returncode}; "
                  f"see {standalone.output_path}", file=sys.stderr)
            return 1
        stop.wait(1.0)
    print("stopping Apache Pulsar …", flush=True)
    standalone.stop()
    print("stopped", flush=True)
    return 0
