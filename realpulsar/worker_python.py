"""The Python the functions worker starts our function instances with.

docs/real-pulsar.md §4: the process runtime runs `python3` from PATH with Pulsar's
`python_instance_main.py`, which imports `pulsar`, the BookKeeper state client and grpc, and installs
a `.zip` function's `deps/*.whl` with the first `pip` on PATH. So the worker gets a virtualenv of its
own (in the cache, never in the repo) holding `pulsar-client[functions]` at the version our own
code is tested with, and its `bin` goes first on the standalone's PATH. Our functions' own
dependencies (PyAV, numpy) are not installed here: they arrive as wheels inside each archive,
exactly as on a cluster.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path

from realpulsar.distribution import DistributionError

# The same client the rest of the project pins (pyproject.toml), with the extra the instance needs.
WORKER_REQUIREMENT = "pulsar-client[functions]==3.13.0"
MARKER = ".wtpulsar-requirement"

Log = Callable[[str], None]


def worker_python_dir(cache: Path) -> Path:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return cache / f"worker-python-{version}"


def ensure_worker_python(cache: Path, log: Log = print) -> Path:
    """The virtualenv's folder; created, or refreshed when the requirement changed."""
    target = worker_python_dir(cache)
    marker = target / MARKER
    if marker.exists() and marker.read_text().strip() == WORKER_REQUIREMENT and (target / "bin" / "python3").exists():
        return target
    log(f"creating the functions worker's Python environment in {target} ({WORKER_REQUIREMENT}) …")
    marker.unlink(missing_ok=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    pip = [str(target / "bin" / "python3"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    out = subprocess.run([*pip, WORKER_REQUIREMENT], capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        tail = " ".join(out.stderr.strip().splitlines()[-3:])[:400]
        raise DistributionError(f"pip could not install {WORKER_REQUIREMENT} for the functions worker: {tail}")
    marker.write_text(WORKER_REQUIREMENT + "\n")
    return target
