from __future__ import annotations

import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import RunningServer, start_server


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def make(**kwargs: object) -> RunningServer:
        sub = tmp_path / f"srv{len(started)}"
        sub.mkdir(exist_ok=True)
        srv = start_server(sub, **kwargs)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop(signal.SIGKILL)


@pytest.fixture
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory()


@pytest.fixture(scope="session")
def sipp() -> str:
    path = shutil.which("sipp")
    assert path, "sipp missing: make test installs Debian sip-tester"
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs two workers) the tests against real peers run one
    at a time on one worker — they time real audio and start servers, browsers and pjsua2 — while
    the other worker takes the unit tests."""
    for item in items:
        if item.get_closest_marker("interop") is not None:
            item.add_marker(pytest.mark.xdist_group("interop"))
