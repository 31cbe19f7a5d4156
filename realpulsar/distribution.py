"""The Apache Pulsar binary distribution, fetched with Maven into a cache outside the repo.

docs/real-pulsar.md §1: the tarball is the `bin` classifier of
`org.apache.pulsar:pulsar-server-distribution`. It is downloaded once (about 240 MiB), checked
against the SHA-512 we pinned for that version (Maven also checks the repository's SHA-1 with
`--strict-checksums`), and unpacked next to it. An unpacked tree carries a marker naming the
tarball's digest, so a half-finished unpack is never taken for a whole one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# 4.2.x, 4.1.x and 4.0.9+ are not served as server distributions by the Maven Central this project
# reaches; 4.0.8 (the 4.0 LTS line) is (docs/real-pulsar.md §1).
DEFAULT_VERSION = "4.0.8"
# Digest of the tarball as first downloaded here; a download that differs is refused.
KNOWN_SHA512 = {
    "4.0.8": "65b769b10696cdfebf7fc5bcdc95dd663702e27051e616c1a13cb100e91279525"
             "be35352171befe7b0011176330aab29bd0a6c8a0f2f0646641af46d2e33cbd6",
}
MIN_JAVA = 17  # the 4.x broker's class files are Java 17 (major 61)
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
MARKER = ".wtpulsar-unpacked"

Log = Callable[[str], None]


class DistributionError(RuntimeError):
    """One sentence: what stops Apache Pulsar from being fetched or run, and what to do."""


def cache_root() -> Path:
    """`$WTPULSAR_CACHE`, else `$XDG_CACHE_HOME/wtpulsar`, else `~/.cache/wtpulsar`."""
    if os.environ.get("WTPULSAR_CACHE"):
        return Path(os.environ["WTPULSAR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wtpulsar"


def java_major(java: str) -> int | None:
    """The major version `java -version` reports, or None when it cannot be run."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def find_java_home(jvm_dir: Path = Path("/usr/lib/jvm")) -> str | None:
    """A JAVA_HOME whose java is at least MIN_JAVA: $JAVA_HOME, the `java` on PATH, then jvm_dir."""
    candidates: list[str] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(os.environ["JAVA_HOME"])
    on_path = shutil.which("java")
    if on_path:
        candidates.append(str(Path(os.path.realpath(on_path)).parent.parent))
    if jvm_dir.is_dir():
        candidates += sorted((str(p) for p in jvm_dir.iterdir() if (p / "bin" / "java").exists()), reverse=True)
    for home in candidates:
        major = java_major(str(Path(home) / "bin" / "java"))
        if major is not None and major >= MIN_JAVA:
            return home
    return None


def check_tools(need_maven: bool = True) -> str:
    """JAVA_HOME to run Pulsar with; DistributionError naming what is missing otherwise."""
    java_home = find_java_home()
    if java_home is None:
        found = java_major("java") if shutil.which("java") else None
        if found is None:
            raise DistributionError(
                f"Apache Pulsar needs Java {MIN_JAVA} or newer and no `java` was found: install it "
                f"(Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME.")
        raise DistributionError(
            f"Apache Pulsar needs Java {MIN_JAVA} or newer, but the java found is Java {found}: install "
            f"a newer one (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME to it.")
    if need_maven and shutil.which("mvn") is None:
        raise DistributionError(
            "Fetching Apache Pulsar needs Maven (`mvn`) and none was found: install it "
            "(Debian: apt-get install maven).")
    return java_home


@dataclass(frozen=True)
class Distribution:
    """Where one version lives in the cache."""

    version: str = DEFAULT_VERSION
    cache: Path = Path()

    @property
    def folder(self) -> Path:
        return self.cache / "pulsar"

    @property
    def tarball(self) -> Path:
        return self.folder / f"pulsar-server-distribution-{self.version}-bin.tar.gz"

    @property
    def home(self) -> Path:
        return self.folder / f"apache-pulsar-{self.version}"

    @property
    def artifact(self) -> str:
        return f"org.apache.pulsar:pulsar-server-distribution:{self.version}:tar.gz:bin"


def sha512_of(path: Path) -> str:
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_tarball(dist: Distribution) -> str:
    """The tarball's SHA-512; DistributionError (and the file deleted) when it is not the pinned one."""
    digest = sha512_of(dist.tarball)
    expected = KNOWN_SHA512.get(dist.version)
    if expected is not None and digest != expected:
        size = dist.tarball.stat().st_size
        dist.tarball.unlink()
        raise DistributionError(
            f"{dist.tarball.name} is corrupt or incomplete ({size} bytes, SHA-512 {digest[:16]}… instead of "
            f"{expected[:16]}…); it was deleted: run the command again to download it anew.")
    return digest


def download(dist: Distribution, log: Log) -> None:
    """`mvn dependency:copy` of the tarball into the cache folder (strict checksums)."""
    dist.folder.mkdir(parents=True, exist_ok=True)
    log(f"downloading Apache Pulsar {dist.version} (about 240 MiB) from Maven Central with mvn into {dist.folder} …")
    cmd = ["mvn", "-B", "-q", "--strict-checksums", f"{DEPENDENCY_PLUGIN}:copy",
           f"-Dartifact={dist.artifact}", f"-DoutputDirectory={dist.folder}"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired as exc:
        raise DistributionError(f"mvn did not finish downloading {dist.artifact} within 30 minutes.") from exc
    if out.returncode != 0 or not dist.tarball.exists():
        detail = " ".join(line.strip() for line in (out.stdout + out.stderr).splitlines() if "ERROR" in line)[:400]
        raise DistributionError(
            f"mvn could not fetch {dist.artifact} (exit {out.returncode}): {detail or 'no error printed'}; "
            f"check that Maven Central is reachable and that version {dist.version} is served.")


def unpack(dist: Distribution, digest: str, log: Log) -> None:
    """Unpack into a scratch folder, then rename: a crash never leaves a tree that looks whole."""
    scratch = dist.folder / f".unpack-{dist.version}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    log(f"unpacking {dist.tarball.name} …")
    try:
        with tarfile.open(dist.tarball) as tar:
            tar.extractall(scratch, filter="tar")
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        dist.tarball.unlink(missing_ok=True)
        raise DistributionError(
            f"{dist.tarball.name} could not be unpacked ({exc}); it was deleted: run the command again "
            f"to download it anew.") from exc
    inner = scratch / dist.home.name
    if not (inner / "bin" / "pulsar").exists():
        shutil.rmtree(scratch, ignore_errors=True)
        raise DistributionError(f"{dist.tarball.name} holds no {dist.home.name}/bin/pulsar: not a Pulsar binary distribution.")
    (inner / MARKER).write_text(digest + "\n")
    shutil.rmtree(dist.home, ignore_errors=True)
    inner.rename(dist.home)
    shutil.rmtree(scratch, ignore_errors=True)


def is_unpacked(dist: Distribution) -> bool:
    marker = dist.home / MARKER
    if not marker.exists():
        return False
    expected = KNOWN_SHA512.get(dist.version)
    return expected is None or marker.read_text().strip() == expected


def ensure_distribution(version: str = DEFAULT_VERSION, cache: Path | None = None, log: Log = print) -> Path:
    """PULSAR_HOME of `version`, downloading and unpacking it first when the cache lacks it."""
    dist = Distribution(version, cache or cache_root())
    if is_unpacked(dist):
        return dist.home
    if dist.tarball.exists():
        log(f"checking {dist.tarball} …")
        try:
            digest = verify_tarball(dist)
        except DistributionError as exc:
            log(f"{exc} Downloading it again.")
            download(dist, log)
            digest = verify_tarball(dist)
    else:
        check_tools(need_maven=True)
        download(dist, log)
        digest = verify_tarball(dist)
    unpack(dist, digest, log)
    return dist.home
