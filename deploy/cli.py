"""``wtpulsar deploy`` and ``wtpulsar undeploy``: put the pipeline on a Pulsar cluster, or take it off.

With ``pulsar-admin`` (``--pulsar-admin PATH`` or on PATH) the exact commands ``--dry-run`` prints
are run; without it (no JVM here) the same steps go to the admin REST API with urllib. ``--rest``
forces the REST path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_ADMIN_URL = "http://localhost:8080"  # Pulsar's web service port (standalone and brokers)


def _common(p: argparse.ArgumentParser) -> None:
    from deploy.packaging import add_target_arguments

    p.add_argument("--admin-url", default=DEFAULT_ADMIN_URL, help=f"Pulsar admin URL (default {DEFAULT_ADMIN_URL})")
    p.add_argument("--pulsar-admin", metavar="PATH", help="pulsar-admin to run (default: the one on PATH, "
                                                          "else the REST API is used directly)")
    p.add_argument("--rest", action="store_true", help="use the REST API even if pulsar-admin is there")
    p.add_argument("--dry-run", action="store_true", help="print the pulsar-admin commands and REST calls only")
    p.add_argument("--root", type=Path, default=Path("."), help="project root (default .)")
    p.add_argument("--pipeline", type=Path, help="topology file (default ROOT/deploy/pipeline.yaml)")
    add_target_arguments(p)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser("deploy", help="create tenant, namespace, topics, schemas and functions on a cluster",
                       description="Package the functions (build/functions/*.zip) and create or update "
                                   "everything deploy/pipeline.yaml names. Safe to run twice.")
    _common(d)
    d.add_argument("--skip-package", action="store_true", help="use the archives already in build/functions")
    d.add_argument("--chat-signing-key", default=None, metavar="KEY|file:///PATH",
                   help="the key the ingress signs chat with (the ingress's --chat-signing-key), given to moderate "
                        "as its secret chatSigningKey so it dead-letters chat the ingress did not write "
                        "(default: $WTPULSAR_CHAT_SIGNING_KEY; none: moderate checks no signature). A file:// "
                        "path keeps it out of the process list; see deploy/README.md \"Chat signing key\"")
    d.set_defaults(func=run_deploy)
    u = sub.add_parser("undeploy", help="delete what deploy created (functions, topics, namespace)")
    _common(u)
    u.set_defaults(func=run_undeploy)


def _plan(args: argparse.Namespace, undeploy: bool) -> tuple[Path, Any, list[Any]]:
    from deploy.deployer import DeployError, deploy_plan, undeploy_plan
    from deploy.topology import load_pipeline
    from ingress.chat_signing import resolve_key

    root = args.root.resolve()
    pipeline = load_pipeline(args.pipeline or root / "deploy" / "pipeline.yaml")
    if undeploy:
        return root, pipeline, undeploy_plan(root, pipeline)
    try:
        key = resolve_key(args.chat_signing_key)
    except ValueError as exc:
        raise DeployError(str(exc)) from None
    if key is None:
        print("deploy: no chat signing key (--chat-signing-key or $WTPULSAR_CHAT_SIGNING_KEY): moderate will "
              "accept chat without checking that the ingress wrote it (deploy/README.md \"Chat signing key\")",
              file=sys.stderr)
    return root, pipeline, deploy_plan(root, pipeline, key.decode("utf-8") if key else None)


def _run(args: argparse.Namespace, undeploy: bool) -> int:
    from deploy.deployer import (
        AdminCliRunner,
        DeployError,
        RestRunner,
        check_cluster_version,
        execute,
        find_pulsar_admin,
        render_plan,
    )
    from deploy.function_config import FunctionConfigError
    from deploy.imports import ImportScanError
    from deploy.packaging import PackagingError, package_functions, target_from_args
    from deploy.pulsar_schema import SchemaConversionError
    from deploy.topology import PipelineError

    verb = "undeploy" if undeploy else "deploy"
    try:
        root, pipeline, steps = _plan(args, undeploy)
        admin = None if args.rest else find_pulsar_admin(args.pulsar_admin)
        if args.dry_run:
            print(f"# {verb} {pipeline.namespace_path} at {args.admin_url} (dry run: nothing is changed)")
            for line in render_plan(steps, admin or "pulsar-admin", args.admin_url):
                print(line)
            return 0
        names = [f.name for f in pipeline.functions]
        if not undeploy and names and not args.skip_package:
            package_functions(root, target=target_from_args(args), only=names)
        missing = [f"build/functions/{n}.zip" for n in names if not (root / "build" / "functions" / f"{n}.zip").is_file()]
        if not undeploy and missing:
            raise DeployError(f"no archive {', '.join(missing)}: run `make package` (or deploy without --skip-package)")
        runner: AdminCliRunner | RestRunner
        if admin:
            print(f"# {verb} {pipeline.namespace_path} with {admin} --admin-url {args.admin_url}")
            runner = AdminCliRunner(admin, args.admin_url, root)
        else:
            print(f"# {verb} {pipeline.namespace_path} through the REST API at {args.admin_url} (no pulsar-admin)")
            runner = RestRunner(args.admin_url, root)
        if not undeploy:
            check_cluster_version(root, pipeline, runner, args.admin_url)
        execute(steps, runner)
    except (DeployError, FunctionConfigError, PipelineError, PackagingError, SchemaConversionError,
            ImportScanError) as exc:
        print(f"{verb}: {exc}", file=sys.stderr)
        return 1
    print(f"# {verb}: done")
    return 0


def run_deploy(args: argparse.Namespace) -> int:
    return _run(args, undeploy=False)


def run_undeploy(args: argparse.Namespace) -> int:
    return _run(args, undeploy=True)
