from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from acd.store import open_store
from acd.store.sqlite import SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = open_store(tmp_path / "data")
    assert isinstance(s, SqliteStore)
    yield s
    s.close()
