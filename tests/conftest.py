"""Shared fixtures. No test may reach beyond loopback: a guard fails any other connection."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    host = address[0] if isinstance(address, tuple) else address
    if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
        raise AssertionError(f"test tried to reach {address!r}: only loopback is allowed")
    return _real_connect(self, address)


# The files that take longest, longest first. pytest-xdist hands out whole files (`--dist loadfile`
# in pyproject.toml) in collection order, so these start first and none of them starts last and
# holds the run alone. Measured with `pytest --durations=0`; a file missing here only runs later.
LONGEST_FIRST = (
    "test_faults.py", "test_serve_clients.py", "test_serve_workers.py", "test_search_index.py",
    "test_evidence.py", "test_figures.py", "test_faults_running.py", "test_differential.py",
    "test_complete_answers.py", "test_remote.py", "test_security.py", "test_cli_boundaries.py",
    "test_serve_queries.py", "test_compact.py", "test_memo.py", "test_clients.py", "test_hostile.py",
    "test_validate.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file keeps its order


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Any:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_dir: Path) -> Any:
    from konbini_ld import open_store

    with open_store(store_dir) as s:
        yield s

