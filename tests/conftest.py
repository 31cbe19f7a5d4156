"""Shared fixtures: a real broker process on free loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from broker.testing import BrokerProcess


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the whole session: `.service_url`, `.admin_url`."""
    process = BrokerProcess(tmp_path_factory.mktemp("broker-session") / "data")
    process.start()
    yield process
    process.close()


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., BrokerProcess]]:
    """`broker_factory(data_dir=None, extra_args=None)` -> a started broker; all stopped at teardown."""
    started: list[BrokerProcess] = []

    def make(data_dir: str | Path | None = None, extra_args: list[str] | None = None) -> BrokerProcess:
        process = BrokerProcess(data_dir or tmp_path / f"broker-{len(started)}", extra_args=extra_args)
        process.start()
        started.append(process)
        return process

    yield make
    for process in started:
        process.close()
