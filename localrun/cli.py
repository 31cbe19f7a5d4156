"""`wtpulsar functions localrun|status`: run Pulsar Functions from their FunctionConfig files.

Heavy imports (pulsar, prometheus_client) stay inside the command functions so that
`wtpulsar --help` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
from typing import Any

DEFAULT_SERVICE_URL = "pulsar://127.0.0.1:6650"
DEFAULT_STATE_DIR = os.path.join(".wtpulsar", "state")

STATUS_HELP = """\
Finds running instances through status files: every `functions localrun` supervisor writes
<run-dir>/<tenant>__<namespace>__<name>/supervisor.json, and every instance writes
instance-<id>.json there with its pid and Prometheus port; the counters are scraped from
that port. run-dir defaults to $WTPULSAR_RUN_DIR or <tmp>/wtpulsar-<uid>/functions and must
match the one localrun used. Output: JSON like `pulsar-admin functions status`.
"""


def add_parser(sub: Any) -> None:
    functions = sub.add_parser("functions", help="run Pulsar Functions locally (localrun, status)",
                               description="Run Pulsar Functions from FunctionConfig YAML, like "
                                           "`pulsar-admin functions localrun`.")
    fsub = functions.add_subparsers(dest="functions_command", metavar="ACTION")
    functions.set_defaults(func=lambda args: (functions.print_help(), 2)[1])

    lr = fsub.add_parser(
        "localrun", help="run every instance of one function against a broker",
        description="Run one function (all `parallelism` instances, one process each) with the behaviour of "
                    "Pulsar's official Python instance. Stops cleanly on SIGTERM/SIGINT.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="A config Pulsar's admin server would reject is rejected with the same reason (exit 2).\n"
               "State: counters/values persist in <state-dir>/<tenant>_<ns>/<name>.sqlite; with --no-state the\n"
               "context behaves as with no state storage (incr/put ignored, get → None, del_counter raises).",
    )
    lr.add_argument("--function-config-file", required=True, action="append", metavar="FILE",
                    help="FunctionConfig YAML (repeat to run several functions)")
    lr.add_argument("--py", default=None, metavar="FILE",
                    help="the function's .py file or .zip package, replacing the config's `py` as "
                         "`pulsar-admin functions localrun --py` does (one --function-config-file only); "
                         "e.g. --py functions/transcode.py runs deploy/functions/transcode.yaml from source")
    lr.add_argument("--broker-service-url", default=None,
                    help=f"broker URL (default: $PULSAR_URL or {DEFAULT_SERVICE_URL})")
    state = lr.add_mutually_exclusive_group()
    state.add_argument("--state-dir", default=None, help=f"where state is persisted (default: {DEFAULT_STATE_DIR})")
    state.add_argument("--no-state", action="store_true", help="run without state storage, as Pulsar does by default")
    lr.add_argument("--metrics-port-start", type=int, default=None, metavar="N",
                    help="instances serve Prometheus metrics on consecutive ports from N, function by function "
                         "(default: free ports)")
    lr.add_argument("--nack-delay-ms", type=int, default=60_000, metavar="N",
                    help="redelivery delay after a failure (default 60000 as in Pulsar; localrun-only, for development)")
    lr.add_argument("--secrets", default=None, metavar="JSON",
                    help="as pulsar-admin: a JSON map of secret name to what the secrets provider resolves "
                         "(with EnvironmentBasedSecretsProvider, the environment variable of the same name); "
                         "merged over the config's `secrets`")
    lr.add_argument("--secrets-provider-classname", default="",
                    help="secretsprovider.ClearTextSecretsProvider (default) or "
                         "secretsprovider.EnvironmentBasedSecretsProvider")
    lr.add_argument("--client-auth-plugin", default=None, metavar="CLASS",
                    help="as pulsar-admin: org.apache.pulsar.client.impl.auth.AuthenticationToken")
    lr.add_argument("--client-auth-params", default=None, metavar="PARAMS",
                    help="as pulsar-admin: token:<jwt> or file:///path/to/token (prefer file://: the command line is public)")
    lr.add_argument("--run-dir", default=None, help="where status files go (see `functions status --help`)")
    lr.add_argument("--log-level", default="INFO", help="instance log level (default INFO)")
    lr.set_defaults(func=cmd_localrun)

    st = fsub.add_parser("status", help="counters of each running instance",
                         description=STATUS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    st.add_argument("--fqfn", default=None, help="only this function (tenant/namespace/name)")
    st.add_argument("--tenant", default=None)
    st.add_argument("--namespace", default=None)
    st.add_argument("--name", default=None)
    st.add_argument("--run-dir", default=None, help="status directory used by localrun")
    st.set_defaults(func=cmd_status)


def cmd_localrun(args: argparse.Namespace) -> int:
    from localrun.config import ConfigError, load_function_config
    from localrun.loader import PackageError
    from localrun.supervisor import Supervisor

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(levelname)s] %(name)s: %(message)s",
                        stream=sys.stderr)
    if args.py is not None and len(args.function_config_file) != 1:
        print(f"error: --py replaces the `py` of one FunctionConfig, but {len(args.function_config_file)} "
              "--function-config-file were given: run one localrun per function to override each `py`",
              file=sys.stderr)
        return 2
    try:
        specs = [load_function_config(path, args.py) for path in args.function_config_file]
    except ConfigError as exc:
        print(f"error: invalid function config: {exc}", file=sys.stderr)
        return 2
    if args.secrets is not None:
        try:
            extra = json.loads(args.secrets)
        except json.JSONDecodeError as exc:
            print(f"error: --secrets is not JSON: {exc}", file=sys.stderr)
            return 2
        if not isinstance(extra, dict) or not all(isinstance(name, str) and name for name in extra):
            print("error: --secrets must be a JSON object of secret name to value, e.g. "
                  '\'{"chatSigningKey": "chatSigningKey"}\'', file=sys.stderr)
            return 2
        specs = [dataclasses.replace(spec, secrets={**(spec.secrets or {}), **extra}) for spec in specs]
    if args.nack_delay_ms < 0:
        print("error: --nack-delay-ms must be >= 0", file=sys.stderr)
        return 2
    from localrun import client_auth

    auth_problem = client_auth.problem(args.client_auth_plugin, args.client_auth_params)
    if auth_problem:
        print(f"error: {auth_problem}", file=sys.stderr)
        return 2
    if args.client_auth_plugin:  # instances read them from the environment, not their command line
        os.environ[client_auth.ENV_PLUGIN] = args.client_auth_plugin
        os.environ[client_auth.ENV_PARAMS] = args.client_auth_params
    url = args.broker_service_url or os.environ.get("PULSAR_URL") or DEFAULT_SERVICE_URL
    state_dir = None if args.no_state else (args.state_dir or DEFAULT_STATE_DIR)
    supervisor = Supervisor(specs, url, state_dir=state_dir, nack_delay_ms=args.nack_delay_ms,
                            metrics_port_start=args.metrics_port_start, run_dir=args.run_dir,
                            secrets_provider=args.secrets_provider_classname, log_level=args.log_level)

    def on_signal(signum: int, _frame: Any) -> None:
        supervisor._stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        supervisor.start()
    except PackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        supervisor.stop()
        return 1
    for spec in specs:
        print(f"running {spec.fqfn} ({spec.parallelism} instance(s)) from {spec.source_file} "
              f"(code: {spec.py}) on {url}", file=sys.stderr)
    print(f"state: {state_dir or 'off (--no-state)'}; counters: wtpulsar functions status --run-dir {supervisor.run_dir}",
          file=sys.stderr)
    supervisor.wait()
    supervisor.stop()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from localrun.status import collect_status
    from localrun.supervisor import default_run_dir

    fqfn = args.fqfn
    if fqfn is None and args.name:
        fqfn = f"{args.tenant or 'public'}/{args.namespace or 'default'}/{args.name}"
    statuses = collect_status(args.run_dir or default_run_dir(), fqfn)
    if not statuses:
        print(f"no running functions found{' for ' + fqfn if fqfn else ''}", file=sys.stderr)
        return 1
    print(json.dumps(statuses[0] if fqfn and len(statuses) == 1 else statuses, indent=2))
    return 0
