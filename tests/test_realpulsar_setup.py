"""Getting Apache Pulsar ready, and what goes wrong on the way: realpulsar/distribution.py and standalone.py.

No Java or network here: a fake `mvn` "downloads" a tiny distribution tarball, a fake `java` reports
an old version, a fake `bin/pulsar` exits at once. Each failure must be one sentence naming the cause
and what to do, and must leave no process or half-unpacked tree behind.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile
from pathlib import Path

import pytest

from realpulsar import distribution
from realpulsar.distribution import (
    Distribution,
    DistributionError,
    check_tools,
    ensure_distribution,
    java_major,
)
from realpulsar.standalone import (
    Ports,
    Standalone,
    StandaloneError,
    check_ports_free,
    set_properties,
    set_yaml_keys,
)

VERSION = "0.0.1-test"


def fake_tarball(version: str = VERSION) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in ((f"apache-pulsar-{version}/bin/pulsar", "#!/bin/sh\nexit 0\n"),
                           (f"apache-pulsar-{version}/conf/standalone.conf", "brokerServicePort=6650\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """`mvn` on PATH that writes the fake tarball into -DoutputDirectory and counts its calls."""
    source = tmp_path / "served.tar.gz"
    source.write_bytes(fake_tarball())
    calls = tmp_path / "mvn-calls"
    bin_dir = tmp_path / "bin"
    executable(bin_dir / "mvn", f"""#!/bin/sh
echo "$@" >> {calls}
for a in "$@"; do case "$a" in -DoutputDirectory=*) out="${{a#-DoutputDirectory=}}";; esac; done
cp {source} "$out/pulsar-server-distribution-{VERSION}-bin.tar.gz"
""")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(distribution.KNOWN_SHA512, VERSION, hashlib.sha512(source.read_bytes()).hexdigest())
    return source, calls


def test_download_once_then_reuse_the_cache(fake_mvn: tuple[Path, Path], tmp_path: Path) -> None:
    _, calls = fake_mvn
    lines: list[str] = []
    home = ensure_distribution(VERSION, tmp_path / "cache", log=lines.append)
    assert home == tmp_path / "cache" / "pulsar" / f"apache-pulsar-{VERSION}"
    assert (home / "bin" / "pulsar").exists() and (home / distribution.MARKER).exists()
    assert any("downloading Apache Pulsar" in line for line in lines)
    assert "--strict-checksums" in calls.read_text()
    assert ensure_distribution(VERSION, tmp_path / "cache", log=lines.append) == home
    assert len(calls.read_text().splitlines()) == 1  # the second call used the cache


def test_a_corrupt_cached_tarball_is_deleted_and_fetched_again(fake_mvn: tuple[Path, Path], tmp_path: Path) -> None:
    _, calls = fake_mvn
    dist = Distribution(VERSION, tmp_path / "cache")
    dist.folder.mkdir(parents=True)
    dist.tarball.write_bytes(fake_tarball()[:100])  # a partial download
    lines: list[str] = []
    home = ensure_distribution(VERSION, tmp_path / "cache", log=lines.append)
    assert (home / "bin" / "pulsar").exists()
    assert any("is corrupt or incomplete (100 bytes" in line and "Downloading it again" in line for line in lines)
    assert len(calls.read_text().splitlines()) == 1


def test_a_download_that_does_not_match_the_pinned_digest_is_refused(fake_mvn: tuple[Path, Path],
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(distribution.KNOWN_SHA512, VERSION, "0" * 128)
    with pytest.raises(DistributionError, match=r"is corrupt or incomplete .* it was deleted: run the command again"):
        ensure_distribution(VERSION, tmp_path / "cache", log=lambda _: None)
    dist = Distribution(VERSION, tmp_path / "cache")
    assert not dist.tarball.exists() and not dist.home.exists()


def test_an_interrupted_unpack_is_not_taken_for_a_whole_tree(fake_mvn: tuple[Path, Path], tmp_path: Path) -> None:
    dist = Distribution(VERSION, tmp_path / "cache")
    (dist.home / "bin").mkdir(parents=True)  # a tree without the marker, as a crash mid-unpack would leave
    home = ensure_distribution(VERSION, tmp_path / "cache", log=lambda _: None)
    assert (home / distribution.MARKER).read_text().strip() == distribution.KNOWN_SHA512[VERSION]


def test_mvn_failing_names_the_artifact_and_what_to_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    executable(tmp_path / "bin" / "mvn", "#!/bin/sh\necho '[ERROR] Could not find artifact'\nexit 1\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(DistributionError, match=r"mvn could not fetch org.apache.pulsar:pulsar-server-distribution:"
                                                r"9.9.9:tar.gz:bin \(exit 1\): \[ERROR\] Could not find artifact; check"):
        distribution.download(Distribution("9.9.9", tmp_path / "cache"), log=lambda _: None)


def test_java_too_old_or_missing_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = executable(tmp_path / "jdk11" / "bin" / "java",
                     "#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n")
    assert java_major(str(old)) == 11
    monkeypatch.setenv("PATH", f"{old.parent}{os.pathsep}/usr/bin/false-dir")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk11"))
    monkeypatch.setattr(distribution, "find_java_home", lambda jvm_dir=None: None)
    with pytest.raises(DistributionError, match=r"^Apache Pulsar needs Java 17 or newer, but the java found is Java 11: "):
        check_tools()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DistributionError, match=r"needs Java 17 or newer and no `java` was found: install it"):
        check_tools()


def test_missing_maven_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distribution, "find_java_home", lambda jvm_dir=None: "/opt/jdk")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DistributionError, match=r"needs Maven \(`mvn`\) and none was found"):
        check_tools(need_maven=True)
    assert check_tools(need_maven=False) == "/opt/jdk"


def test_a_port_in_use_is_named_before_anything_starts() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = _free(5)
        ports[1] = port
        with pytest.raises(StandaloneError, match=rf"^port {port} \(admin/web\) is already in use by python"):
            check_ports_free(Ports(*ports))


def _free(count: int) -> list[int]:
    from realpulsar.standalone import free_ports

    return free_ports(count)


def test_a_standalone_that_dies_at_start_says_so_and_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "pulsar"
    executable(home / "bin" / "pulsar", "#!/bin/sh\necho 'Failed to start pulsar service: boom'\nsleep 0.3\nexit 7\n")
    (home / "conf").mkdir()
    (home / "conf" / "standalone.conf").write_text("brokerServicePort=6650\n")
    (home / "conf" / "functions_worker.yml").write_text("workerPort: 6750\n")
    standalone = Standalone(home=home, data_dir=tmp_path / "data", java_home="/nonexistent",
                            ports=Ports(*_free(5)), log=lambda _: None)
    with pytest.raises(StandaloneError, match=r"exited with status 7 before its broker was ready; its log is .*"
                                              r"Failed to start pulsar service: boom"):
        standalone.start(timeout=30)
    assert standalone.proc is not None and standalone.proc.poll() == 7


def test_configuration_is_written_with_the_ports_and_comments_kept() -> None:
    conf = "# the port\nbrokerServicePort=6650\nbindAddress=0.0.0.0\n"
    assert set_properties(conf, {"brokerServicePort": "16650", "numIOThreads": "2"}) == (
        "# the port\nbrokerServicePort=16650\nbindAddress=0.0.0.0\n\nnumIOThreads=2\n")
    yml = "workerPort: 6750\nfunctionRuntimeFactoryConfigs:\n    logDirectory: logs/\n"
    assert set_yaml_keys(yml, {"workerPort": "18080", "logDirectory": "/data/logs"}) == (
        "workerPort: 18080\nfunctionRuntimeFactoryConfigs:\n    logDirectory: /data/logs\n")
