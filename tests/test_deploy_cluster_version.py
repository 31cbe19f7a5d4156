"""The deploy refuses a cluster too old for retainKeyOrdering in Python functions (deploy/cluster_version.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from deploy.cluster_version import parse_version, version_problem
from deploy.deployer import AdminCliRunner, DeployError, check_cluster_version
from deploy.topology import load_pipeline
from tests.test_deploy_deployer import URL, fake_admin, write_project


@pytest.mark.parametrize(("text", "version"), [
    ("4.0.8", (4, 0, 8)), ('"3.3.2"\n', (3, 3, 2)), ("3.1.0-SNAPSHOT", (3, 1, 0)), ("2.11", (2, 11, 0)),
    ("unknown", None), ("", None),
])  # fmt: skip
def test_versions_are_read_from_what_the_cluster_prints(text: str, version: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == version


def test_older_clusters_are_refused_with_the_reason_and_the_functions_named() -> None:
    configs = [{"name": "route", "retainKeyOrdering": True}, {"name": "chunk", "retainKeyOrdering": True}]
    problem = version_problem("3.0.2", configs, "http://pulsar:8080")
    assert problem == ("Apache Pulsar 3.0.2 at http://pulsar:8080 is older than 3.1.0, the first release whose Python "
                       "runtime honours retainKeyOrdering (a Key_Shared input), which chunk, route set to keep each "
                       "stream on one instance: upgrade the cluster to 3.1.0 or newer.")
    assert version_problem("3.1.0", configs, "u") is None
    assert version_problem("4.0.8", configs, "u") is None
    assert version_problem("2.10.4", [{"name": "x", "retainKeyOrdering": False}], "u") is None  # flag not used
    assert version_problem(None, configs, "u") is None  # a cluster that does not say is not refused


def test_deploy_to_an_old_cluster_stops_before_creating_anything(tmp_path: Path) -> None:
    project = write_project(tmp_path / "project")
    config_path = project / "deploy" / "functions" / "echo.yaml"
    config = yaml.safe_load(config_path.read_text())
    config_path.write_text(yaml.safe_dump({**config, "retainKeyOrdering": True}))
    script, state_file = fake_admin(tmp_path)
    state_file.write_text(json.dumps({"things": [], "calls": [], "version": "3.0.2"}))
    runner = AdminCliRunner(str(script), URL, project)
    with pytest.raises(DeployError, match="Apache Pulsar 3.0.2 at http://pulsar:8080 is older than 3.1.0"):
        check_cluster_version(project, load_pipeline(project / "deploy" / "pipeline.yaml"), runner, URL)
    assert json.loads(state_file.read_text())["calls"] == [["brokers", "version"]]
