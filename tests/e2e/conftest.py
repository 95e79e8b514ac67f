from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchboard.testing import ServerProcess

FAST = """
[worker]
poll_interval = 0.2
lease_seconds = 5
"""


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One embedded server for the session's end-to-end tests (a slow peer, started once)."""
    s = ServerProcess(tmp_path_factory.mktemp("server"), config=FAST)
    s.write_config()
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def account(server: ServerProcess) -> dict[str, Any]:
    return server.create_account("acme")


@pytest.fixture(scope="session")
def other_account(server: ServerProcess) -> dict[str, Any]:
    return server.create_account("globex")


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path / "server", config=FAST)
    s.write_config()
    yield s
    s.stop()
