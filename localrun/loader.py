"""Loading user code the way the official Python instance does (docs/pulsar-functions.md §1.1, §1.7, §4).

* `prepare_package` turns the `py` of a FunctionConfig into import directories: a `.py` file's
  own directory, or for `X.zip` the extracted `X/src` plus a per-function directory where every
  `X/deps/*.whl` is installed offline (`pip install -t DIR --no-index --find-links X/deps`).
* `import_class` resolves `className`, serde and schema class names: `mod.Attr` imports `mod`
  and returns `Attr`; a bare `mod` returns the module; a failed import returns `None`. A name
  the user code does not provide is retried against `pulsar.functions` (that is how
  `serde.IdentitySerDe` resolves).
* `instantiate_function` calls the result with no arguments; if that raises anything the
  object itself is used as a "pure function" whose `process(input)` takes one argument.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import platform
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_SERDE = "serde.IdentitySerDe"
# Where the official instance retries a class name that the user code does not provide.
_PULSAR_FUNCTIONS_PACKAGE = "pulsar.functions"


class PackageError(RuntimeError):
    """The function package cannot be prepared (bad zip layout, dependency install failed)."""


@dataclass(frozen=True)
class UserFunction:
    """What `process()` is called on: `(input, context)` for an instance, `(input)` when pure."""

    target: Any
    takes_context: bool

    def process(self, value: Any, context: Any) -> Any:
        if self.takes_context:
            return self.target.process(value, context)
        return self.target.process(value)


def prepare_package(py: str, work_dir: str | os.PathLike[str]) -> list[str]:
    """Return the directories to put first on `sys.path` for this package (most important first).

    `work_dir` is this function's private directory; a zip is extracted there and its wheels are
    installed there, so two functions never share dependencies.
    """
    path = Path(py)
    if path.suffix == ".py":
        return [str(path.parent.resolve())]
    if path.suffix != ".zip":
        raise PackageError(f"{py}: localrun loads .py files and .zip packages")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    folder = path.stem
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(n == f"{folder}/" or n.startswith(f"{folder}/") for n in names):
                raise PackageError(
                    f"{py}: a Python function zip must contain a top-level folder named {folder}/ "
                    f"(same as the file name) holding src/ and optionally deps/; found {sorted(names)[:5]}"
                )
            for name in names:
                # Refuse path traversal before extracting anything.
                target = (work / name).resolve()
                if not str(target).startswith(str(work.resolve())):
                    raise PackageError(f"{py}: member {name!r} would extract outside the package directory")
            archive.extractall(work)
    except zipfile.BadZipFile as exc:
        raise PackageError(f"{py}: not a valid zip file ({exc})") from exc
    src = work / folder / "src"
    if not src.is_dir():
        raise PackageError(f"{py}: {folder}/src/ is missing; the function code must live under it")
    dirs = [str(src)]
    deps = work / folder / "deps"
    wheels = sorted(str(w) for w in deps.glob("*.whl")) if deps.is_dir() else []
    if wheels:
        site = work / "site-packages"
        try:
            install_wheels(wheels, str(deps), str(site))
        except IncompatibleWheelError as exc:
            raise PackageError(_incompatible_message(py, folder, exc, (src / f"{folder}.py").is_file())) from exc
        dirs.append(str(site))
    return dirs


# pip's reason when a wheel's tags do not match the running interpreter (pip/_internal/req/
# constructors.py, unchanged from pip 10 to 26): "<file>.whl is not a supported wheel on this platform."
_UNSUPPORTED_WHEEL = re.compile(r"(\S+\.whl)\s+is\s+not\s+a\s+supported\s+wheel\s+on\s+this\s+platform")


class IncompatibleWheelError(PackageError):
    """pip refused a wheel built for another Python version, ABI or platform."""

    def __init__(self, wheel: str, pip_output: str) -> None:
        self.wheel = wheel
        self.pip_output = pip_output
        super().__init__(f"{wheel} is not a supported wheel on this platform")


def install_wheels(wheels: list[str], find_links: str, target: str) -> None:
    """Offline install as the official instance does (docs/pulsar-functions.md §4); the pip of *this* interpreter is used
    (the official instance calls `pip` from PATH, which must match its Python anyway)."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
           "-t", target, "--no-index", "--find-links", find_links, *wheels]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        unsupported = _UNSUPPORTED_WHEEL.search(output)
        if unsupported:
            raise IncompatibleWheelError(os.path.basename(unsupported.group(1)), output)
        raise PackageError(
            f"installing dependency wheels from {find_links} failed (pip exit {result.returncode}):\n{output}"
        )


def _wheel_tags(wheel: str) -> str:
    """`python tag, ABI, platform` from a wheel file name (PEP 427: name-ver[-build]-py-abi-plat.whl)."""
    parts = wheel.removesuffix(".whl").split("-")
    if len(parts) < 5:
        return "tags unreadable from the file name"
    return f"Python {parts[-3]}, ABI {parts[-2]}, platform {parts[-1]}"


def _incompatible_message(py: str, folder: str, exc: IncompatibleWheelError, has_own_module: bool) -> str:
    """Why the archive's wheels do not fit this interpreter, and the two ways out (deploy/README.md
    "Function archives": archives target the worker's Python, by default the Pulsar image's)."""
    libc, libc_version = platform.libc_ver()
    machine = platform.machine() or "unknown"
    here = f"CPython {sys.version_info.major}.{sys.version_info.minor} on {sys.platform} {machine}"
    if libc:
        here += f" ({libc} {libc_version})"
    # PyAV 18 publishes manylinux_2_28 wheels only (no manylinux2014), musl systems need musllinux.
    platform_tag = f"musllinux_1_2_{machine}" if libc != "glibc" else f"manylinux_2_28_{machine}"
    source = f"functions/{folder}.py" if has_own_module else "functions/<module of className>.py"
    return (
        f"{py}: its dependency wheels ({folder}/deps/) do not install on this interpreter: pip says "
        f"{exc.wheel} is not a supported wheel on this platform ({_wheel_tags(exc.wheel)}; this is {here}). "
        f"The archive was built for another worker (`make package` targets CPython 3.12 musllinux, the "
        f"apachepulsar/pulsar image, by default). Run from source with --py {source}, or rebuild the archive "
        f"for this interpreter: make package PLATFORM={platform_tag} "
        f"PYTHON_VERSION={sys.version_info.major}.{sys.version_info.minor}"
    )


def add_to_sys_path(dirs: list[str]) -> None:
    for directory in reversed(dirs):
        if directory not in sys.path:
            sys.path.insert(0, directory)


def import_class(class_name: str) -> Any:
    """docs/pulsar-functions.md §1.1: `mod.Attr` → attribute, `mod` → module, failure → None (logged)."""
    try:
        return _import(class_name)
    except Exception as first:  # noqa: BLE001 - the official instance swallows everything here
        try:
            return _import(f"{_PULSAR_FUNCTIONS_PACKAGE}.{class_name}")
        except Exception:  # noqa: BLE001
            log.info("Failed to import class %s", class_name, exc_info=first)
            return None


def _import(full_name: str) -> Any:
    module_name, _, attr = full_name.rpartition(".")
    if not module_name:
        return importlib.import_module(attr)
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def instantiate_function(class_name: str) -> UserFunction:
    kclass = import_class(class_name)
    if kclass is None:
        # Same exception as the official instance; the process then exits with status 1.
        raise NameError(f"Could not import User Function Module {class_name}")
    try:
        return UserFunction(kclass(), True)
    except Exception:  # noqa: BLE001 - docs/pulsar-functions.md §1.1: any failure of the no-arg call means "pure function"
        return UserFunction(kclass, False)


def load_serde(class_name: str) -> Any:
    """A serde instance for `class_name` (default IdentitySerDe), constructed with no arguments."""
    kclass = import_class(class_name or DEFAULT_SERDE)
    if kclass is None:
        raise NameError(f"Could not import serde class {class_name}")
    from pulsar.functions.serde import IdentitySerDe

    if kclass is IdentitySerDe:
        # The official class itself (not a user subclass): the same results, faster (see the module).
        from localrun.identity_serde import FastIdentitySerDe

        return FastIdentitySerDe()
    return kclass()


def load_schema(schema_type: str, type_class_name: str, schema_properties: dict[str, str]) -> Any:
    """docs/pulsar-functions.md §1.7: '' → BytesSchema (serde used), string, json/avro of a Record class, or a custom class."""
    from pulsar import schema as pschema

    kind = (schema_type or "").lower()
    if kind == "":
        return pschema.BytesSchema()
    if kind == "string":
        return pschema.StringSchema()
    if kind in ("json", "avro"):
        record = import_class(type_class_name) if type_class_name else None
        if record is None:
            raise NameError(f"{kind} schema needs a pulsar.schema.Record class; could not import {type_class_name!r}")
        return pschema.JsonSchema(record) if kind == "json" else pschema.AvroSchema(record)
    if kind in ("protobuf", "keyvalue", "key_value"):
        raise ValueError(f"schema type {schema_type} is not supported by the Python instance")
    kclass = import_class(schema_type)
    if kclass is None:
        raise NameError(f"Could not import schema class {schema_type}")
    record = import_class(type_class_name) if type_class_name else None
    params = [p for p in inspect.signature(kclass.__init__).parameters.values() if p.name != "self"]
    if len(params) >= 2:
        return kclass(record, schema_properties)
    if len(params) == 1:
        return kclass(record)
    return kclass()
