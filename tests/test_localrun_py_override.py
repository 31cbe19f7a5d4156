"""`py` that names the deployable archive, and `--py` / `py_overrides` that run the source instead
(what `pulsar-admin functions localrun --py` does: CLI flags apply on top of the file, docs/pulsar-functions.md §3)."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pulsar
import pytest
import yaml

from localrun import loader
from localrun.config import ConfigError, load_function_config, source_py
from localrun.supervisor import run_functions
from tests.localrun_harness import FIXTURES, topic, wait_ready, write_config

REPO = Path(__file__).resolve().parents[1]
IN = "persistent://public/default/in"


def shipped_copy(project: Path, name: str = "transcode") -> Path:
    """deploy/functions/<name>.yaml copied into a repo-shaped tmp dir that has no build/ folder."""
    target = project / "deploy" / "functions" / f"{name}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "deploy" / "functions" / f"{name}.yaml", target)
    return target


def archive_config(directory: Path, **fields: object) -> Path:
    """A config like the shipped ones: `py` is an archive relative to the root, which is not built."""
    fields.setdefault("name", "ident")
    fields.setdefault("className", "identity.Identity")
    fields.setdefault("py", "build/functions/ident.zip")
    return write_config(directory, f"{fields['name']}.yaml", **fields)


def test_missing_archive_says_how_to_build_it_or_run_from_source(tmp_path: Path, monkeypatch) -> None:
    shipped_copy(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_function_config("deploy/functions/transcode.yaml")
    assert str(caught.value) == (
        "deploy/functions/transcode.yaml: py: build/functions/transcode.zip does not exist: run `make package` "
        "to build it, or run from source with --py functions/transcode.py")


def test_py_override_replaces_the_archive(tmp_path: Path, monkeypatch) -> None:
    config = shipped_copy(tmp_path / "project")
    monkeypatch.chdir(REPO)
    spec = load_function_config(config, py="functions/transcode.py")
    assert spec.py == str(REPO / "functions" / "transcode.py")
    assert spec.fqfn == "public/wtpulsar/transcode" and spec.parallelism == 2  # the rest is the file's
    assert source_py(config, "functions") == "functions/transcode.py"
    assert source_py(yaml.safe_load(config.read_text()), REPO / "functions") == str(REPO / "functions" / "transcode.py")


def test_py_override_is_checked_like_py_and_named_as_the_flag(tmp_path: Path, monkeypatch) -> None:
    config = archive_config(tmp_path / "cfg", inputs=[IN])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("")
    cases = {
        "missing.py": "--py: The supplied python file does not exist: missing.py",
        "gone.zip": "--py: gone.zip does not exist: run `make package` to build it, or run from source with "
                    "--py functions/identity.py",
        "notes.txt": "--py: notes.txt: localrun loads .py files and .zip packages",
        "https://example.org/f.py": "--py: https://example.org/f.py: localrun loads local files only",
        "": "--py: is empty",
    }
    for py, message in cases.items():
        with pytest.raises(ConfigError) as caught:
            load_function_config(config, py=py)
        assert str(caught.value).startswith(f"{config}: {message}"), py


def test_py_override_is_resolved_against_the_working_directory_only(tmp_path: Path, monkeypatch) -> None:
    """As pulsar-admin resolves --py; the file's own `py` is also looked up next to the config."""
    config = archive_config(tmp_path / "cfg", inputs=[IN], py="identity.py")
    shutil.copy(FIXTURES / "identity.py", tmp_path / "cfg" / "identity.py")
    monkeypatch.chdir("/")
    assert load_function_config(config).py == str(tmp_path / "cfg" / "identity.py")
    with pytest.raises(ConfigError, match="--py: The supplied python file does not exist: identity.py"):
        load_function_config(config, py="identity.py")


def test_archive_relative_to_the_repo_root_is_found_from_anywhere(tmp_path: Path, monkeypatch) -> None:
    config = shipped_copy(tmp_path / "project", "route")
    archive = tmp_path / "project" / "build" / "functions" / "route.zip"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"PK")
    monkeypatch.chdir("/")
    assert load_function_config(config).py == str(archive)


def test_source_py_needs_a_class_name(tmp_path: Path) -> None:
    config = write_config(tmp_path, inputs=[IN], py="x.py")
    with pytest.raises(ConfigError, match="className: required to find the function's source file"):
        source_py(config, "functions")
    with pytest.raises(ConfigError, match=r"\(file\): cannot read className"):
        source_py(tmp_path / "absent.yaml", "functions")


def cli(*argv: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wtpulsar.cli", "functions", "localrun", *argv],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_cli_refuses_py_with_two_config_files(tmp_path: Path) -> None:
    first = archive_config(tmp_path, name="a", inputs=[IN])
    second = archive_config(tmp_path, name="b", inputs=[IN])
    done = cli("--function-config-file", str(first), "--function-config-file", str(second),
               "--py", str(FIXTURES / "identity.py"), "--broker-service-url", "pulsar://127.0.0.1:1")
    assert done.returncode == 2
    assert "--py replaces the `py` of one FunctionConfig, but 2 --function-config-file were given" in done.stderr
    assert "started" not in done.stderr


def test_cli_missing_archive_is_a_config_error(tmp_path: Path) -> None:
    shipped_copy(tmp_path)
    done = cli("--function-config-file", "deploy/functions/transcode.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert ("error: invalid function config: deploy/functions/transcode.yaml: py: build/functions/transcode.zip "
            "does not exist: run `make package` to build it, or run from source with --py functions/transcode.py"
            ) in done.stderr


def foreign_wheel(deps: Path) -> str:
    """A valid wheel whose tags are those `make package` uses by default (CPython 3.12, musl)."""
    name = "tinyfast-1.0-cp312-cp312-musllinux_1_2_x86_64.whl"
    dist = "tinyfast-1.0.dist-info"
    files = {"tinyfast/__init__.py": "",
             f"{dist}/METADATA": "Metadata-Version: 2.1\nName: tinyfast\nVersion: 1.0\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: false\n"
                              "Tag: cp312-cp312-musllinux_1_2_x86_64\n"}  # fmt: skip
    with zipfile.ZipFile(deps / name, "w") as wheel:
        for member, text in files.items():
            wheel.writestr(member, text)
        wheel.writestr(f"{dist}/RECORD", "".join(f"{m},,\n" for m in files) + f"{dist}/RECORD,,\n")
    return name


def musl_archive(tmp_path: Path) -> Path:
    build = tmp_path / "build"
    (build / "transcode" / "src").mkdir(parents=True)
    (build / "transcode" / "deps").mkdir()
    shutil.copy(FIXTURES / "identity.py", build / "transcode" / "src" / "transcode.py")
    foreign_wheel(build / "transcode" / "deps")
    archive = tmp_path / "transcode.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for file in sorted(build.rglob("*")):
            out.write(file, file.relative_to(build))
    return archive


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or sys.version_info[:2] == (3, 12),
                    reason="needs an interpreter that a CPython 3.12 musllinux wheel does not fit")
def test_archive_for_another_interpreter_says_so_and_how_to_run(tmp_path: Path) -> None:
    archive = musl_archive(tmp_path)
    with pytest.raises(loader.PackageError) as caught:
        loader.prepare_package(str(archive), tmp_path / "work")
    message = str(caught.value)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert message.startswith(f"{archive}: its dependency wheels (transcode/deps/) do not install on this "
                              "interpreter: pip says tinyfast-1.0-cp312-cp312-musllinux_1_2_x86_64.whl is not a "
                              "supported wheel on this platform (Python cp312, ABI cp312, platform "
                              f"musllinux_1_2_x86_64; this is CPython {version} on linux ")
    assert "`make package` targets CPython 3.12 musllinux, the apachepulsar/pulsar image, by default" in message
    assert message.endswith(f"Run from source with --py functions/transcode.py, or rebuild the archive for this "
                            f"interpreter: make package PLATFORM=manylinux_2_28_{platform.machine()} "
                            f"PYTHON_VERSION={version}")
    assert not (tmp_path / "work" / "site-packages" / "tinyfast").exists()

    # through the CLI: the same message, exit 1, nothing started
    config = archive_config(tmp_path / "cfg", name="transcode", className="transcode.Identity", inputs=[IN],
                            py=str(archive))
    done = cli("--function-config-file", str(config), "--broker-service-url", "pulsar://127.0.0.1:1", "--no-state",
               "--run-dir", str(tmp_path / "run"))
    assert done.returncode == 1
    assert f"error: {archive}: its dependency wheels (transcode/deps/) do not install" in done.stderr
    assert "started public/default/transcode instance" not in done.stderr


def test_run_functions_py_overrides_run_the_source(broker, tmp_path: Path) -> None:
    t_in, t_out = topic("in"), topic("out")
    name = f"ovr-{uuid.uuid4().hex[:6]}"
    config = archive_config(tmp_path / "cfg", name=name, inputs=[t_in], output=t_out,
                            subscriptionPosition="Earliest")
    with pytest.raises(ConfigError, match="py: build/functions/ident.zip does not exist"):
        run_functions([config], broker.service_url, run_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="py_overrides names config files that are not run: .*other.yaml"):
        run_functions([config], broker.service_url, run_dir=str(tmp_path / "run"),
                      py_overrides={tmp_path / "other.yaml": str(FIXTURES / "identity.py")})
    assert not (tmp_path / "run").exists()  # nothing started

    sup = run_functions([config], broker.service_url, run_dir=str(tmp_path / "run"), nack_delay_ms=300,
                        py_overrides={str(config): source_py(config, FIXTURES)})
    client = pulsar.Client(broker.service_url, operation_timeout_seconds=30)
    try:
        assert [run.spec.py for run in sup.functions] == [str(FIXTURES / "identity.py")]
        wait_ready(sup)
        consumer = client.subscribe(t_out, "check", initial_position=pulsar.InitialPosition.Earliest)
        client.create_producer(t_in).send(b"from source")
        deadline = time.monotonic() + 30
        msg = consumer.receive(timeout_millis=int((deadline - time.monotonic()) * 1000))
        assert msg.data() == b"from source"
    finally:
        client.close()
        sup.stop()


def test_cli_py_runs_the_given_file_instead_of_the_archive(broker, tmp_path: Path) -> None:
    t_in, t_out = topic("in"), topic("out")
    config = archive_config(tmp_path / "cfg", name=f"cli-{uuid.uuid4().hex[:6]}", inputs=[t_in], output=t_out)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wtpulsar.cli", "functions", "localrun", "--function-config-file", str(config),
         "--py", str(FIXTURES / "identity.py"), "--broker-service-url", broker.service_url, "--no-state",
         "--run-dir", str(tmp_path / "run")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    client = pulsar.Client(broker.service_url, operation_timeout_seconds=30)
    try:
        consumer = client.subscribe(t_out, "check", initial_position=pulsar.InitialPosition.Earliest)
        producer = client.create_producer(t_in)
        got = None
        deadline = time.monotonic() + 60
        while got is None and time.monotonic() < deadline:  # the function subscribes at Earliest
            assert proc.poll() is None, proc.communicate()[0]
            producer.send(b"ping")
            try:
                got = consumer.receive(timeout_millis=1000)
            except pulsar.Timeout:
                continue
        assert got is not None and got.data() == b"ping"
    finally:
        client.close()
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert f"(code: {FIXTURES / 'identity.py'})" in output


def test_wtpulsar_up_runs_archives_from_source_unless_from_package(tmp_path: Path) -> None:
    from wtpulsar.up import code_override

    shipped = REPO / "deploy" / "functions" / "chunk.yaml"
    assert code_override(shipped, "/src", from_package=False) == (
        ["--py", "/src/chunk.py"], "source /src/chunk.py (--py; the config's build/functions/chunk.zip runs "
                                   "with --from-package)")
    assert code_override(shipped, "/src", from_package=True) == (
        [], "package build/functions/chunk.zip (--from-package)")
    plain = archive_config(tmp_path, inputs=[IN], py="functions/ident.py")
    assert code_override(plain, "/src", from_package=False) == ([], "py functions/ident.py from the config")
    # unreadable or without className: no override, localrun then reports the config's own problem
    nameless = write_config(tmp_path, "nameless.yaml", inputs=[IN], py="build/functions/x.zip")
    assert code_override(nameless, "/src", from_package=False) == ([], "as configured")
    (tmp_path / "broken.yaml").write_text("py: [")
    assert code_override(tmp_path / "broken.yaml", "/src", from_package=False) == ([], "as configured")
