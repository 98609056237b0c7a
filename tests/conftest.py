from __future__ import annotations

import os
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
    """Under pytest-xdist (``make test`` runs two workers) the tests against real peers, and the
    ones timing real audio or clocks (marker ``realtime``), run one at a time on one worker —
    they start servers, browsers and pjsua2 — while the other worker takes the unit tests."""
    for item in items:
        if _timed(item):
            item.add_marker(pytest.mark.xdist_group("interop"))


def _timed(item: pytest.Item) -> bool:
    """Tests against real peers, and tests that time real audio or a real clock."""
    return item.get_closest_marker("interop") is not None or item.get_closest_marker("realtime") is not None


@pytest.fixture(autouse=True)
def _yield_cpu_to_interop(request: pytest.FixtureRequest) -> None:
    """Under pytest-xdist the unit tests run at a lower CPU priority (nice 10), so the tests on
    the other worker, which time real audio through servers and peers they start (at nice 0),
    keep the cores they need on a two-core machine."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    want = 0 if _timed(request.node) else 10
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) != want:
            os.setpriority(os.PRIO_PROCESS, 0, want)
    except OSError:  # not allowed to lower it again (not root): stay where it is
        pass
