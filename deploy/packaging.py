"""Build ``build/functions/<name>.zip`` in the layout Pulsar's Python runtime installs.

docs/pulsar-functions.md §4: ``X.zip`` holds ``X/src/`` (put on ``sys.path``; className ``module.Class``
means ``X/src/module.py``) and ``X/deps/*.whl``, which the instance installs at every start with
``pip install -t <dir> --no-index --find-links X/deps <every wheel>``. So every transitive
dependency must be a wheel there, each one installable by the *worker's* Python: its minor version,
its C library and its CPU.

The default target is the official ``apachepulsar/pulsar`` 4.x image. Its Dockerfile
(docker/pulsar/Dockerfile in apache/pulsar) is Alpine since 3.3 (PIP-324) and installs Python with
``apk add python3``; Alpine 3.20 to 3.23, the bases of the 4.x images, ship CPython 3.12. Alpine is
musl, and pip there accepts ``musllinux`` wheels only (a manylinux wheel is "not a supported wheel
on this platform"), so the default platform is ``musllinux_1_2_x86_64``. For a glibc worker pass
``--platform manylinux_2_28_x86_64`` (PyAV 18 publishes no manylinux2014 wheel). Check a worker with
``python3 -c 'import sys, packaging.tags as t; print(sys.version, next(t.sys_tags()))'``.

Run as ``python -m deploy.packaging`` (what ``make package`` calls).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.function_config import FunctionConfigError, load_function_config
from deploy.imports import ImportScanError, import_closure

OFFICIAL_IMAGE_PYTHON = "3.12"  # apachepulsar/pulsar 4.x: Alpine 3.20-3.23, `apk add python3`
OFFICIAL_IMAGE_PLATFORMS = ("musllinux_1_2_x86_64",)  # Alpine's musl 1.2
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same inputs give the same archive bytes

Log = Callable[[str], None]


class PackagingError(RuntimeError):
    """Something stops an archive from being built; the message says what and where."""


@dataclass(frozen=True)
class WheelTarget:
    """The worker's interpreter, as ``pip download`` wants it described."""

    python_version: str = OFFICIAL_IMAGE_PYTHON
    platforms: tuple[str, ...] = OFFICIAL_IMAGE_PLATFORMS

    def __post_init__(self) -> None:
        parts = self.python_version.split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or parts[0] != "3":
            raise PackagingError(f"python version {self.python_version!r}: use MAJOR.MINOR, e.g. 3.12")
        if not self.platforms:
            raise PackagingError("at least one wheel platform is needed")

    @property
    def abi(self) -> str:
        return "cp" + self.python_version.replace(".", "")

    @property
    def key(self) -> str:
        """Cache folder name: wheels for different targets never mix."""
        return f"{self.abi}-{'+'.join(self.platforms)}"

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:"]
        for platform in self.platforms:
            args += ["--platform", platform]
        return args + ["--python-version", self.python_version, "--implementation", "cp", "--abi", self.abi]


@dataclass(frozen=True)
class FunctionSource:
    """One function to package: its archive name and the modules its code starts from."""

    name: str
    entry_modules: tuple[str, ...]  # className module, then custom serde modules
    config_path: Path


def _module_of(class_name: str) -> str:
    return class_name.split(".", 1)[0]


def function_sources(config_dir: Path) -> list[FunctionSource]:
    """Every FunctionConfig in ``config_dir``, checked; raises FunctionConfigError listing all problems."""
    sources: list[FunctionSource] = []
    problems = []
    for path in sorted(config_dir.glob("*.yaml")):
        try:
            config = load_function_config(path)
        except FunctionConfigError as exc:
            problems.extend(exc.problems)
            continue
        modules = [_module_of(config["className"])]
        serdes: list[Any] = [config.get("outputSerdeClassName")]
        serdes += list((config.get("customSerdeInputs") or {}).values())
        serdes += [spec.get("serdeClassName") for spec in (config.get("inputSpecs") or {}).values()]
        for serde in serdes:
            # docs/pulsar-functions.md §1.7: module `serde` is the SDK's own (pulsar.functions.serde), not ours.
            if isinstance(serde, str) and serde and _module_of(serde) != "serde":
                modules.append(_module_of(serde))
        sources.append(FunctionSource(config["name"], tuple(dict.fromkeys(modules)), path))
    if problems:
        raise FunctionConfigError(problems)
    return sources


def installed_requirement(module: str) -> str | None:
    """``dist==version`` of the installed distribution that provides top-level ``module``."""
    dists = importlib.metadata.packages_distributions().get(module)
    if not dists:
        return None
    dist = dists[0]
    return f"{dist}=={importlib.metadata.version(dist)}"


def requirements_for(third_party: Mapping[str, set[str]], pins: Mapping[str, str]) -> list[str]:
    """Pinned requirements for the imported modules: ``pins`` first, else the installed version.

    Pinning to what is installed here means the cluster runs the versions the tests ran.
    """
    requirements: list[str] = []
    for module in sorted(third_party):
        requirement = pins.get(module) or installed_requirement(module)
        if requirement is None:
            files = ", ".join(sorted(third_party[module]))
            raise PackagingError(f"{files} import {module!r}, which is not installed here, so its version "
                                 f"cannot be pinned: install it, or pass --pin {module}=DIST==VERSION")
        requirements.append(requirement)
    return sorted(set(requirements))


class WheelCache:
    """``pip download`` results kept under ``root/<target>/<hash of requirements>/``.

    One folder per requirement set, so the folder holds exactly that set's transitive closure and
    a second ``make package`` needs no network.
    """

    def __init__(self, root: Path, target: WheelTarget, pip_extra: Sequence[str] = (), log: Log = print) -> None:
        self.root = root
        self.target = target
        self.pip_extra = list(pip_extra)
        self.log = log

    def pip_command(self, requirements: Sequence[str], dest: Path) -> list[str]:
        return [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--progress-bar", "off",
                *self.target.pip_args(), *self.pip_extra, "-d", str(dest), *requirements]  # fmt: skip

    def fetch(self, requirements: Sequence[str]) -> list[Path]:
        if not requirements:
            return []
        wanted = "\n".join(sorted(requirements)) + "\n"
        folder = self.root / self.target.key / hashlib.sha256(wanted.encode()).hexdigest()[:16]
        marker = folder / "requirements.txt"
        if marker.is_file() and marker.read_text() == wanted:
            wheels = sorted(folder.glob("*.whl"))
            self.log(f"[wheels] {self.target.key}: cached {', '.join(w.name for w in wheels)}")
            return wheels
        self.log(f"[wheels] {self.target.key}: pip download {' '.join(requirements)}")
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=folder.parent))
        try:
            done = subprocess.run(self.pip_command(requirements, staging), capture_output=True, text=True)
            if done.returncode != 0:
                tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
                raise PackagingError(f"pip download for {self.target.key} failed for {' '.join(requirements)}:\n"
                                     f"{tail}")
            not_wheels = [p.name for p in staging.iterdir() if p.suffix != ".whl"]
            if not_wheels:  # --only-binary should make this impossible; the worker could not use them
                raise PackagingError(f"pip download gave non-wheel files: {', '.join(not_wheels)}")
            (staging / "requirements.txt").write_text(wanted)
            if folder.exists():
                shutil.rmtree(folder)
            staging.rename(folder)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        wheels = sorted(folder.glob("*.whl"))
        self.log(f"[wheels] {self.target.key}: got {', '.join(w.name for w in wheels)}")
        return wheels


def write_archive(name: str, src_dir: Path, wheels: Sequence[Path], out_dir: Path) -> Path:
    """``out_dir/<name>.zip`` with ``<name>/src/*.py`` and ``<name>/deps/*.whl`` (docs/pulsar-functions.md §4)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.zip"
    partial = out_dir / f".{name}.zip.partial"
    with zipfile.ZipFile(partial, "w") as archive:
        for source in sorted(src_dir.glob("*.py")):
            info = zipfile.ZipInfo(f"{name}/src/{source.name}", ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, source.read_bytes())
        for wheel in sorted(wheels, key=lambda w: w.name):
            info = zipfile.ZipInfo(f"{name}/deps/{wheel.name}", ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED  # wheels are zips already
            info.external_attr = 0o644 << 16
            with wheel.open("rb") as data, archive.open(info, "w") as entry:
                shutil.copyfileobj(data, entry, 1 << 20)
    partial.replace(target)  # never leave a half-written archive under the real name
    return target


def package_functions(root: Path, *, target: WheelTarget, config_dir: Path | None = None,
                      functions_dir: Path | None = None, out_dir: Path | None = None,
                      cache_dir: Path | None = None, pins: Mapping[str, str] | None = None,
                      pip_extra: Sequence[str] = (), only: Sequence[str] = (), log: Log = print) -> list[Path]:
    """Build one archive per FunctionConfig in ``config_dir``; return the archive paths."""
    config_dir = config_dir or root / "deploy" / "functions"
    functions_dir = functions_dir or root / "functions"
    out_dir = out_dir or root / "build" / "functions"
    cache = WheelCache(cache_dir or root / "build" / "wheels", target, pip_extra, log)
    sources = function_sources(config_dir)
    if not sources:
        raise PackagingError(f"no FunctionConfig (*.yaml) in {config_dir}")
    unknown = set(only) - {s.name for s in sources}
    if unknown:
        raise PackagingError(f"no FunctionConfig named {', '.join(sorted(unknown))} in {config_dir}")
    built: list[Path] = []
    for source in sources:
        if only and source.name not in only:
            continue
        missing = [m for m in source.entry_modules if not (functions_dir / f"{m}.py").is_file()]
        if missing:
            raise PackagingError(f"{source.config_path}: module {', '.join(missing)} is not "
                                 f"{functions_dir}/<module>.py, so the instance could not import it (docs/pulsar-functions.md §1.1)")
        closure = import_closure(functions_dir, list(source.entry_modules))
        requirements = requirements_for(closure.third_party, pins or {})
        log(f"[{source.name}] code: {len(list(functions_dir.glob('*.py')))} modules from {functions_dir}; "
            f"imports beyond the worker: {', '.join(sorted(closure.third_party)) or 'none'}")
        wheels = cache.fetch(requirements)
        archive = write_archive(source.name, functions_dir, wheels, out_dir)
        log(f"[{source.name}] {archive} ({archive.stat().st_size / 1e6:.1f} MB, {len(wheels)} wheels)")
        built.append(archive)
    return built


def _parse_pin(text: str) -> tuple[str, str]:
    module, sep, requirement = text.partition("=")
    if not sep or not module or not requirement:
        raise argparse.ArgumentTypeError(f"--pin {text!r}: use MODULE=REQUIREMENT, e.g. av=av==18.1.0")
    return module, requirement


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    """The worker-interpreter flags, shared with ``wtpulsar deploy``."""
    p.add_argument("--python-version", default=OFFICIAL_IMAGE_PYTHON, metavar="X.Y",
                   help=f"worker CPython version (default {OFFICIAL_IMAGE_PYTHON}: the apachepulsar/pulsar 4.x image)")
    p.add_argument("--platform", action="append", dest="platforms", metavar="TAG",
                   help="wheel platform tag, repeatable (default musllinux_1_2_x86_64: the official image is "
                        "Alpine; use manylinux_2_28_x86_64 for a glibc worker)")


def target_from_args(args: argparse.Namespace) -> WheelTarget:
    return WheelTarget(args.python_version, tuple(args.platforms or OFFICIAL_IMAGE_PLATFORMS))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deploy.packaging",
                                description="Build build/functions/<name>.zip for every deploy/functions/*.yaml.")
    p.add_argument("--root", type=Path, default=Path("."), help="project root (default .)")
    add_target_arguments(p)
    p.add_argument("--out", type=Path, help="archive folder (default ROOT/build/functions)")
    p.add_argument("--wheel-cache", type=Path, help="wheel cache (default ROOT/build/wheels)")
    p.add_argument("--find-links", action="append", default=[], metavar="DIR", help="extra wheel folder for pip")
    p.add_argument("--no-index", action="store_true", help="pip may not use any index (offline)")
    p.add_argument("--pin", action="append", type=_parse_pin, default=[], metavar="MODULE=REQ",
                   help="requirement for an imported module instead of the installed version")
    p.add_argument("--function", action="append", default=[], metavar="NAME", help="only this function")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    pip_extra = [a for d in args.find_links for a in ("--find-links", str(d))] + (["--no-index"] * args.no_index)
    try:
        package_functions(args.root.resolve(), target=target_from_args(args), out_dir=args.out,
                          cache_dir=args.wheel_cache, pins=dict(args.pin), pip_extra=pip_extra, only=args.function)
    except (PackagingError, FunctionConfigError, ImportScanError) as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
