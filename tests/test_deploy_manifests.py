"""deploy/docker-compose.yml, deploy/Dockerfile and deploy/k8s/: they parse, follow their schemas
where an offline validator exists (Kubernetes: kubernetes-validate's bundled OpenAPI schemas), and
refer to files, images and CLI flags that exist. There is no Docker engine here and no offline
validator for the compose spec, so compose gets structural checks against the spec's field names."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy.__main__ import build_parser as deploy_parser
from deploy.packaging import build_parser as packaging_parser
from wtpulsar.cli import build_parser as wtpulsar_parser

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
K8S = {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in sorted((DEPLOY / "k8s").glob("*.yaml"))}
K8S_DOCS = [(name, doc) for name, docs in K8S.items() for doc in docs]
INGRESS_IMAGE = "wtpulsar-ingress:0.1.0"
PULSAR_IMAGE = re.compile(r"^apachepulsar/pulsar:4\.\d+\.\d+$")
KUBERNETES_VERSION = "1.30.0"  # mixed-protocol LoadBalancer Services need >= 1.26

# Compose specification field names (compose-spec.io), for the structural check.
COMPOSE_TOP = {"version", "name", "include", "services", "networks", "volumes", "secrets", "configs"}
COMPOSE_SERVICE = {
    "build", "command", "container_name", "depends_on", "deploy", "entrypoint", "env_file", "environment",
    "expose", "healthcheck", "image", "labels", "networks", "ports", "restart", "volumes", "working_dir", "user",
    "ulimits", "stop_grace_period", "profiles", "secrets", "configs", "cap_add", "cap_drop", "init", "read_only",
}  # fmt: skip
COMPOSE_HEALTHCHECK = {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def parse_wtpulsar(argv: list[str]) -> Any:
    args = wtpulsar_parser().parse_args(argv)
    assert getattr(args, "func", None), argv
    return args


# --- docker compose --------------------------------------------------------------------------


def test_compose_uses_only_compose_spec_fields() -> None:
    assert set(COMPOSE) <= COMPOSE_TOP
    assert set(COMPOSE["services"]) == {"pulsar", "deploy", "ingress"}
    for name, service in COMPOSE["services"].items():
        assert set(service) <= COMPOSE_SERVICE, (name, set(service) - COMPOSE_SERVICE)
        assert "image" in service or "build" in service
        for port in service.get("ports", []):
            assert re.fullmatch(r"\d+:\d+(/(tcp|udp))?", port), (name, port)
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in COMPOSE["services"] and spec["condition"] in DEPENDS_CONDITIONS
        if "healthcheck" in service:
            assert set(service["healthcheck"]) <= COMPOSE_HEALTHCHECK
        if "restart" in service:
            assert re.fullmatch(r"no|always|unless-stopped|on-failure(:\d+)?", service["restart"])
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source in COMPOSE["volumes"], (name, source)  # named volumes are declared


def test_compose_pulsar_is_the_official_standalone_with_functions_worker() -> None:
    pulsar = COMPOSE["services"]["pulsar"]
    assert PULSAR_IMAGE.match(pulsar["image"])
    command = " ".join(pulsar["command"])
    assert "bin/pulsar standalone" in command
    for flag in ("-nfw", "--no-functions-worker", "-nss", "--no-stream-storage"):  # workers and state stay on
        assert flag not in command.split()
    assert pulsar["environment"]["PULSAR_PREFIX_functionsWorkerEnabled"] == "true"
    assert {"6650:6650", "8080:8080"} <= set(pulsar["ports"])


def test_compose_ingress_publishes_quic_and_runs_a_real_command() -> None:
    ingress = COMPOSE["services"]["ingress"]
    assert "4433:4433/udp" in ingress["ports"]
    args = parse_wtpulsar(ingress["command"])
    assert args.listen == "0.0.0.0:4433" and args.broker_service_url == "pulsar://pulsar:6650"
    assert ingress["depends_on"]["deploy"]["condition"] == "service_completed_successfully"


def test_compose_deploy_is_a_one_shot_wtpulsar_deploy() -> None:
    deploy = COMPOSE["services"]["deploy"]
    args = parse_wtpulsar(deploy["command"])
    assert args.func.__name__ == "run_deploy" and args.rest and args.admin_url == "http://pulsar:8080"
    assert args.python_version == "3.12"  # the pulsar image's Python
    assert deploy["depends_on"]["pulsar"]["condition"] == "service_healthy"


def test_compose_builds_refer_to_files_that_exist() -> None:
    for name in ("deploy", "ingress"):
        service = COMPOSE["services"][name]
        context = (DEPLOY / service["build"]["context"]).resolve()
        assert context == ROOT
        assert (context / service["build"]["dockerfile"]).is_file()
        assert service["image"] == INGRESS_IMAGE


# --- Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_base_copies_and_command() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    copied: set[str] = set()
    for op, arg in instructions:
        if op == "COPY":
            *sources, _dest = arg.split()
            for source in sources:
                if any(c in source for c in "*?["):
                    continue  # optional file (README.m[d])
                assert (ROOT / source).exists(), source
                copied.add(source)
    # every package pyproject installs, and what the one-shot deploy reads
    assert {"pyproject.toml", "wtpulsar", "audit", "clients", "broker", "localrun", "ingress", "schemas", "deploy",
            "functions"} <= copied
    exposed = " ".join(arg for op, arg in instructions if op == "EXPOSE").split()
    assert "4433/udp" in exposed
    entrypoint = yaml.safe_load(next(arg for op, arg in instructions if op == "ENTRYPOINT"))
    command = yaml.safe_load(next(arg for op, arg in instructions if op == "CMD"))
    assert entrypoint == ["wtpulsar"]
    assert parse_wtpulsar(command).listen == "0.0.0.0:4433"


# --- Kubernetes --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "doc"), K8S_DOCS, ids=[f"{n}:{d['kind']}" for n, d in K8S_DOCS])
def test_k8s_manifest_follows_the_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_k8s_schema_check_catches_a_mistake() -> None:
    (deployment,) = K8S["ingress-deployment.yaml"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "4433"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def kinds() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for _name, doc in K8S_DOCS if doc["kind"] != "Secret"}


def test_k8s_service_exposes_udp_quic_and_tcp_to_the_ingress_pods() -> None:
    service, deployment = kinds()["Service"], kinds()["Deployment"]
    ports = {(p["port"], p["protocol"]) for p in service["spec"]["ports"]}
    assert (4433, "UDP") in ports and any(proto == "TCP" for _port, proto in ports)
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    container_ports = {p["name"]: p for p in pod["spec"]["containers"][0]["ports"]}
    for port in service["spec"]["ports"]:
        assert container_ports[port["targetPort"]]["protocol"] == port["protocol"]


def test_k8s_ingress_command_secrets_and_hpa_fit_together() -> None:
    deployment, hpa = kinds()["Deployment"], kinds()["HorizontalPodAutoscaler"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == INGRESS_IMAGE
    args = parse_wtpulsar(container["args"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    for path in (args.cert, args.key, args.secret_file):
        assert str(path.parent) in mounts, path  # the file is inside a mounted volume
    secret_names = {doc["metadata"]["name"] for doc in K8S["ingress-secret.yaml"]}
    for volume in pod["volumes"]:
        if "secret" in volume:
            assert volume["secret"]["secretName"] in secret_names
    tls = next(d for d in K8S["ingress-secret.yaml"] if d["type"] == "kubernetes.io/tls")
    assert set(tls["stringData"]) == {"tls.crt", "tls.key"}
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert container["resources"]["requests"]["cpu"]  # utilisation targets need a request


def test_k8s_deploy_job_runs_real_commands() -> None:
    job = kinds()["Job"]["spec"]["template"]["spec"]
    (init,) = job["initContainers"]
    (main,) = job["containers"]
    assert init["image"] == INGRESS_IMAGE and PULSAR_IMAGE.match(main["image"])
    script = shlex.split(init["command"][-1])
    assert script[:3] == ["python", "-m", "deploy.packaging"]
    packaging_args = packaging_parser().parse_args(script[3:script.index("&&")])
    assert str(packaging_args.out).startswith(main["workingDir"])
    assert main["command"][:3] == ["python3", "-m", "deploy"]
    args = deploy_parser().parse_args(main["command"][3:])
    assert args.func.__name__ == "run_deploy" and args.skip_package and args.pulsar_admin == "/pulsar/bin/pulsar-admin"
    assert str(args.root) == main["workingDir"]
