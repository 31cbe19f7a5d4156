"""deploy/packaging.py and deploy/imports.py: archives in the layout Pulsar's Python runtime installs
(docs/pulsar-functions.md §4), checked by doing what the instance does in a clean venv that has only
pulsar-client. Everything offline: wheels are made by hand or re-packed from this venv."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy.function_config import FunctionConfigError
from deploy.imports import ImportScanError, import_closure, imported_names
from deploy.packaging import (
    PackagingError,
    WheelCache,
    WheelTarget,
    function_sources,
    package_functions,
    requirements_for,
    write_archive,
)
from tests.deploy_sample import ECHO_CONFIG, write_project
from tests.deploy_wheels import make_clean_venv, pip_for, tiny_wheel, wheel_from_installed

ROOT = Path(__file__).resolve().parent.parent
HOST = WheelTarget(f"{sys.version_info.major}.{sys.version_info.minor}", ("manylinux_2_28_x86_64",))


def test_default_target_is_the_official_image() -> None:
    target = WheelTarget()
    assert target.pip_args() == ["--only-binary=:all:", "--platform", "musllinux_1_2_x86_64", "--python-version",
                                 "3.12", "--implementation", "cp", "--abi", "cp312"]  # fmt: skip
    assert target.key == "cp312-musllinux_1_2_x86_64"


def test_pip_command_for_a_glibc_worker(tmp_path: Path) -> None:
    cache = WheelCache(tmp_path, WheelTarget("3.11", ("manylinux_2_28_x86_64", "manylinux2014_x86_64")))
    assert cache.pip_command(["av==18.1.0"], tmp_path / "d")[1:] == [
        "-m", "pip", "download", "--disable-pip-version-check", "--progress-bar", "off", "--only-binary=:all:",
        "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64", "--python-version", "3.11",
        "--implementation", "cp", "--abi", "cp311", "-d", str(tmp_path / "d"), "av==18.1.0"]  # fmt: skip


@pytest.mark.parametrize("version", ["3", "3.x", "2.7", "312", ""])
def test_bad_python_version(version: str) -> None:
    with pytest.raises(PackagingError, match="use MAJOR.MINOR"):
        WheelTarget(version)


def test_import_closure_follows_siblings_and_skips_stdlib_and_worker(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("from __future__ import annotations\nimport json\nimport helper\n"
                                      "from pulsar import Function\n")  # fmt: skip
    (tmp_path / "helper.py").write_text("import numpy as np\n\ndef f():\n    import av.video  # lazy\n")
    (tmp_path / "unused.py").write_text("import yaml\n")
    closure = import_closure(tmp_path, ["main"])
    assert closure.local == {"main", "helper"}
    assert closure.third_party == {"numpy": {"helper.py"}, "av": {"helper.py"}}


def test_unparsable_module_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("def (:\n")
    with pytest.raises(ImportScanError, match="bad.py: cannot scan imports"):
        imported_names(tmp_path / "bad.py")


def test_requirements_pin_installed_versions_or_fail_naming_the_importer() -> None:
    import av
    import numpy

    assert requirements_for({"av": {"x.py"}, "numpy": {"x.py"}}, {}) == [f"av=={av.__version__}",
                                                                          f"numpy=={numpy.__version__}"]
    assert requirements_for({"tinydep": {"x.py"}}, {"tinydep": "tinydep==1.0"}) == ["tinydep==1.0"]
    with pytest.raises(PackagingError, match="echo.py import 'nosuchmodule', which is not installed here"):
        requirements_for({"nosuchmodule": {"echo.py"}}, {})


@pytest.mark.skipif(not list((ROOT / "deploy" / "functions").glob("*.yaml")), reason="no FunctionConfig yet")
def test_repo_functions_need_only_pyav_and_numpy_beyond_the_worker() -> None:
    for source in function_sources(ROOT / "deploy" / "functions"):
        closure = import_closure(ROOT / "functions", list(source.entry_modules))
        assert set(source.entry_modules) <= closure.local
        assert set(closure.third_party) <= {"av", "numpy"}, (source.name, closure.third_party)
        requirements_for(closure.third_party, {})  # every one is installed here, so it can be pinned


def test_archive_layout_and_cache(tmp_path: Path) -> None:
    root = write_project(tmp_path / "project")
    wheels = tmp_path / "wheels"
    tiny_wheel(wheels)
    log: list[str] = []
    pip_extra = ["--no-index", "--find-links", str(wheels)]
    built = package_functions(root, target=HOST, pins={"tinydep": "tinydep==1.0"}, pip_extra=pip_extra,
                              log=log.append)  # fmt: skip
    assert built == [root / "build" / "functions" / "echo.zip"]
    assert built == [root / ECHO_CONFIG["py"]]  # what the FunctionConfig's py names (and pulsar-admin uploads)
    with zipfile.ZipFile(built[0]) as archive:
        assert sorted(archive.namelist()) == ["echo/deps/tinydep-1.0-py3-none-any.whl", "echo/src/bytes_serde.py",
                                              "echo/src/echo.py"]  # fmt: skip
        assert archive.read("echo/src/echo.py") == (root / "functions" / "echo.py").read_bytes()
    assert any("pip download tinydep==1.0" in line for line in log)
    first = built[0].read_bytes()

    log.clear()  # second build: wheels come from build/wheels, the archive is byte-identical
    package_functions(root, target=HOST, pins={"tinydep": "tinydep==1.0"}, pip_extra=["--no-index"], log=log.append)
    assert any("cached tinydep-1.0-py3-none-any.whl" in line for line in log)
    assert not any("pip download" in line for line in log)
    assert built[0].read_bytes() == first


def test_missing_wheel_fails_with_pips_reason(tmp_path: Path) -> None:
    root = write_project(tmp_path / "project")
    with pytest.raises(PackagingError, match="pip download for .* failed for tinydep==9.9"):
        package_functions(root, target=HOST, pins={"tinydep": "tinydep==9.9"},
                          pip_extra=["--no-index", "--find-links", str(tmp_path)], log=lambda _: None)
    assert not (root / "build" / "functions" / "echo.zip").exists()


def test_class_module_outside_functions_dir_is_refused(tmp_path: Path) -> None:
    root = write_project(tmp_path / "project")
    (root / "functions" / "echo.py").unlink()
    with pytest.raises(PackagingError, match="module echo is not .*functions/<module>.py"):
        package_functions(root, target=HOST, pins={}, log=lambda _: None)


def test_bad_config_is_reported_before_anything_is_built(tmp_path: Path) -> None:
    root = write_project(tmp_path / "project")
    (root / "deploy" / "functions" / "other.yaml").write_text("name: other\nparallelism: many\n")
    with pytest.raises(FunctionConfigError, match="other.yaml: parallelism: should be an integer"):
        package_functions(root, target=HOST, pins={}, log=lambda _: None)
    assert not (root / "build").exists()


def test_main_reports_errors_without_traceback(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "deploy.packaging", "--root", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("package: no FunctionConfig (*.yaml) in") and "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding only pulsar-client, installed offline from re-packed wheels."""
    wheels = tmp_path_factory.mktemp("client-wheels")
    wheel_from_installed("pulsar-client", wheels)
    wheel_from_installed("certifi", wheels)
    return make_clean_venv(tmp_path_factory.mktemp("venv") / "v", wheels)


def run_like_the_instance(python: Path, archive: Path, workdir: Path, class_name: str, code: str) -> str:
    """docs/pulsar-functions.md §4: unzip next to itself, pip install every deps/*.whl offline into that folder (for that
    interpreter, with ``pip --python``), put
    ``X/src`` on sys.path, import ``module.Class`` and call it with no arguments (§1.1)."""
    name = archive.stem
    with zipfile.ZipFile(archive) as z:
        z.extractall(workdir)
    wheels = sorted(str(w) for w in (workdir / name / "deps").glob("*.whl"))
    if wheels:
        subprocess.run([*pip_for(python), "install", "--quiet", "-t", str(workdir), "--no-index", "--find-links",
                        str(workdir / name / "deps"), *wheels], check=True)  # fmt: skip
    module, cls = class_name.split(".")
    script = (f"import sys; sys.path[:0] = [{str(workdir / name / 'src')!r}, {str(workdir)!r}]\n"
              f"import pulsar\nfrom {module} import {cls}\nfunction = {cls}()\n{code}")
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=workdir)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_archive_installs_in_a_clean_venv_and_imports_its_class(tmp_path: Path, clean_venv: Path) -> None:
    root = write_project(tmp_path / "project")
    wheels = tmp_path / "wheels"
    tiny_wheel(wheels)
    (archive,) = package_functions(root, target=HOST, pins={"tinydep": "tinydep==1.0"},
                                   pip_extra=["--no-index", "--find-links", str(wheels)], log=lambda _: None)
    out = run_like_the_instance(clean_venv, archive, tmp_path / "instance", "echo.Echo",
                                "print(function.process('x', None))")
    assert out == "tiny:x\n"
    # the venv is really clean: nothing of this project's venv leaks into it
    probe = subprocess.run([str(clean_venv), "-c", "import av"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'av'" in probe.stderr


def test_archive_without_its_wheel_fails_to_import_in_the_clean_venv(tmp_path: Path, clean_venv: Path) -> None:
    root = write_project(tmp_path / "project")
    archive = write_archive("echo", root / "functions", [], tmp_path / "out")  # deps/ left empty on purpose
    with pytest.raises(AssertionError, match="No module named 'tinydep'"):
        run_like_the_instance(clean_venv, archive, tmp_path / "instance", "echo.Echo", "")


@pytest.mark.skipif(not (ROOT / "deploy" / "functions" / "transcode.yaml").exists(), reason="no transcode.yaml yet")
def test_real_transcode_archive_runs_in_the_clean_venv(tmp_path: Path, clean_venv: Path) -> None:
    """The real transcode function, with PyAV and numpy wheels re-packed from this venv (host target)."""
    wheels = tmp_path / "wheels"
    wheel_from_installed("av", wheels)
    wheel_from_installed("numpy", wheels)
    (archive,) = package_functions(ROOT, target=HOST, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                                   pip_extra=["--no-index", "--find-links", str(wheels)], only=["transcode"],
                                   log=lambda _: None)  # fmt: skip
    with zipfile.ZipFile(archive) as z:
        deps = sorted(n.split("/")[-1].split("-")[0] for n in z.namelist() if n.startswith("transcode/deps/"))
    assert deps == ["av", "numpy"]
    out = run_like_the_instance(clean_venv, archive, tmp_path / "instance", "transcode.TranscodeFunction",
                                "import av, numpy; print(av.__version__, hasattr(function, 'process'))")
    import av

    assert out == f"{av.__version__} True\n"


@pytest.mark.slow
def test_official_image_wheels_download(tmp_path: Path) -> None:
    """Network: the real default target resolves PyAV and numpy as musllinux cp312 wheels."""
    log: list[str] = []
    built = package_functions(ROOT, target=WheelTarget(), out_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                              only=["transcode"], log=log.append)  # fmt: skip
    with zipfile.ZipFile(built[0]) as z:
        names = [n for n in z.namelist() if n.startswith("transcode/deps/")]
    assert names and all("musllinux_1_2_x86_64" in n and ("cp312" in n or "abi3" in n) for n in names), names
