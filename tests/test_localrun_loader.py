"""Code loading like the official instance: className shapes (docs/pulsar-functions.md §1.1), serdes/schemas (§1.7),
and `.zip` packages with offline-installed dependency wheels (§4)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from localrun import loader

FIXTURES = Path(__file__).parent / "localrun_fixtures"


@pytest.fixture
def fixtures_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))


def test_py_file_directory_goes_on_sys_path(tmp_path: Path) -> None:
    assert loader.prepare_package(str(FIXTURES / "identity.py"), tmp_path) == [str(FIXTURES.resolve())]


def test_module_dot_class_is_instantiated_and_gets_the_context(fixtures_on_path: None) -> None:
    fn = loader.instantiate_function("classname_cases.WithContext")
    assert fn.takes_context
    assert fn.process("x", object()) == "ctx:x:True"


def test_class_whose_init_fails_becomes_a_pure_function(fixtures_on_path: None) -> None:
    fn = loader.instantiate_function("classname_cases.NeedsArgs")
    assert not fn.takes_context
    assert fn.process("x", object()) == "pure:x"


def test_bare_module_uses_its_top_level_process(fixtures_on_path: None) -> None:
    fn = loader.instantiate_function("classname_cases")
    assert not fn.takes_context
    assert fn.process("x", object()) == "module:x"


def test_dotted_path_to_a_plain_function_does_not_work(fixtures_on_path: None) -> None:
    # fn() raises (missing argument) → treated as pure → fn.process does not exist.
    fn = loader.instantiate_function("classname_cases.plain_function")
    with pytest.raises(AttributeError):
        fn.process("x", object())


def test_unimportable_class_raises_name_error(fixtures_on_path: None) -> None:
    assert loader.import_class("no_such_module.Thing") is None
    with pytest.raises(NameError, match="Could not import User Function Module no_such_module.Thing"):
        loader.instantiate_function("no_such_module.Thing")


def test_default_serde_is_pulsars_identity_serde() -> None:
    from pulsar.functions.serde import IdentitySerDe

    serde = loader.load_serde("")
    # Pulsar's class, with the faster deserialize of localrun/identity_serde.py (same results).
    assert isinstance(serde, IdentitySerDe)
    assert type(serde).serialize is IdentitySerDe.serialize
    assert serde.deserialize(b"42") == 42
    assert serde.deserialize(b"1.5") == 1.5
    assert serde.deserialize(b"hello") == "hello"
    assert serde.deserialize(b"\xff\xfe") == b"\xff\xfe"
    with pytest.raises(TypeError):
        serde.serialize(True)
    with pytest.raises(TypeError):
        serde.serialize({"a": 1})


def test_serde_module_alias_and_pickle() -> None:
    serde = loader.load_serde("serde.PickleSerDe")
    assert serde.deserialize(serde.serialize({"a": [1]})) == {"a": [1]}


def test_custom_serde_from_user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "myserde_mod.py").write_text(
        "class Upper:\n    def serialize(self, x):\n        return x.upper().encode()\n"
        "    def deserialize(self, b):\n        return b.decode().lower()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    serde = loader.load_serde("myserde_mod.Upper")
    assert serde.serialize("ab") == b"AB" and serde.deserialize(b"AB") == "ab"
    with pytest.raises(NameError):
        loader.load_serde("myserde_mod.Missing")


def test_schemas() -> None:
    from pulsar import schema

    assert isinstance(loader.load_schema("", "", {}), schema.BytesSchema)
    assert isinstance(loader.load_schema("STRING", "", {}), schema.StringSchema)
    with pytest.raises(NameError):
        loader.load_schema("json", "", {})
    with pytest.raises(ValueError):
        loader.load_schema("protobuf", "", {})


def _write_wheel(path: Path, name: str, version: str, module_source: str) -> Path:
    """A minimal pure-Python wheel, written by hand (PEP 427 layout)."""
    wheel = path / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": module_source,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        for n, text in files.items():
            archive.writestr(n, text)
        archive.writestr(f"{dist}/RECORD", record)
    return wheel


def make_zip_package(tmp_path: Path, folder: str = "shouter") -> Path:
    build = tmp_path / "build"
    (build / folder / "src").mkdir(parents=True)
    (build / folder / "deps").mkdir()
    (build / folder / "src" / "shout.py").write_text(
        "import tinydep_lr\n\nclass Shout:\n    def process(self, input, context):\n"
        "        return tinydep_lr.shout(input)\n")
    _write_wheel(build / folder / "deps", "tinydep_lr", "0.1", "def shout(x):\n    return x.upper() + '!'\n")
    archive_path = tmp_path / f"{folder}.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for file in build.rglob("*"):
            archive.write(file, file.relative_to(build))
    return archive_path


def test_zip_package_with_a_dependency_wheel(tmp_path: Path) -> None:
    package = make_zip_package(tmp_path)
    dirs = loader.prepare_package(str(package), tmp_path / "work")
    assert dirs[0].endswith("shouter/src")
    assert (Path(dirs[1]) / "tinydep_lr" / "__init__.py").is_file()
    saved = list(sys.path)
    try:
        loader.add_to_sys_path(dirs)
        fn = loader.instantiate_function("shout.Shout")
        assert fn.process("hey", object()) == "HEY!"
    finally:
        sys.path[:] = saved
        for mod in ("shout", "tinydep_lr"):
            sys.modules.pop(mod, None)


def test_zip_without_its_named_folder_is_refused(tmp_path: Path) -> None:
    archive_path = tmp_path / "pkg.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("other/src/m.py", "")
    with pytest.raises(loader.PackageError, match="top-level folder named pkg/"):
        loader.prepare_package(str(archive_path), tmp_path / "work")


def test_zip_without_src_is_refused(tmp_path: Path) -> None:
    archive_path = tmp_path / "pkg.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("pkg/m.py", "")
    with pytest.raises(loader.PackageError, match="pkg/src/ is missing"):
        loader.prepare_package(str(archive_path), tmp_path / "work")


def test_broken_wheel_fails_the_install_with_pips_reason(tmp_path: Path) -> None:
    archive_path = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("bad/src/m.py", "")
        archive.writestr("bad/deps/broken-0.1-py3-none-any.whl", b"not a zip")
    with pytest.raises(loader.PackageError, match="installing dependency wheels"):
        loader.prepare_package(str(archive_path), tmp_path / "work")


def test_not_a_zip(tmp_path: Path) -> None:
    bogus = tmp_path / "x.zip"
    bogus.write_bytes(b"plain text")
    with pytest.raises(loader.PackageError, match="not a valid zip"):
        loader.prepare_package(str(bogus), tmp_path / "work")
