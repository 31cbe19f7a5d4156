"""Offline wheels for the packaging tests: a hand-made tiny wheel, and wheels re-packed from the
distributions installed in this venv (pulsar-client, certifi, av, numpy), so that nothing is
downloaded and a clean venv can still install them."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def tiny_wheel(out_dir: Path, name: str = "tinydep", version: str = "1.0", value: str = "tiny:") -> Path:
    """A pure-Python wheel whose package holds ``VALUE``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = {value!r}\n".encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: wtpulsar-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [_record_line(n, d) for n, d in files.items()] + [f"{info}/RECORD,,"]
    path = out_dir / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for n, d in files.items():
            wheel.writestr(n, d)
        wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def wheel_from_installed(dist_name: str, out_dir: Path) -> Path:
    """Re-pack an installed distribution into a wheel from its RECORD (stored, not deflated: fast)."""
    dist = importlib.metadata.distribution(dist_name)
    wheel_meta = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip().split("-") for line in wheel_meta.splitlines() if line.startswith("Tag:")]
    # the compressed tag set of PEP 425, e.g. cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64
    tag = "-".join(".".join(dict.fromkeys(t[i] for t in tags)) for i in range(3))
    name = dist.metadata["Name"].replace("-", "_")
    path = out_dir / f"{name}-{dist.version}-{tag}.whl"
    if path.exists():
        return path
    out_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as wheel:
        for file in dist.files or []:
            text = str(file)
            if text.startswith("..") or "__pycache__" in text or text.endswith((".pyc", "INSTALLER", "REQUESTED")):
                continue
            if text.endswith("direct_url.json"):
                continue
            located = Path(str(dist.locate_file(file)))
            if located.is_file():
                wheel.write(located, text)
    return path


def pip_for(python: Path) -> list[str]:
    """This venv's pip acting on another interpreter (``pip --python``): no ensurepip, same result."""
    return [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]


def make_clean_venv(path: Path, wheel_dir: Path) -> Path:
    """A venv with only pulsar-client (and its one dependency) installed, from local wheels."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    subprocess.run([*pip_for(python), "install", "--quiet", "--no-index", "--find-links", str(wheel_dir),
                    "pulsar-client"], check=True)  # fmt: skip
    return python
