"""The embedded database's files are its owner's alone: 0700 directory, 0600 database, -wal and -shm."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchboard.store import migrate
from switchboard.store.files import private_sqlite_files
from switchboard.store.sqlite import SqliteStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 000: what the process would otherwise create is world-readable and writable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


async def test_a_fresh_database_and_its_wal_and_shm_are_the_owners_alone(
    tmp_path: Path, permissive_umask: None
) -> None:
    data = tmp_path / "data"
    database = data / "switchboard.db"
    migrate.upgrade(f"sqlite:///{database}")
    store = SqliteStore(path=str(database))
    await store.open()
    try:
        await store.node_id()
        await store.list_accounts()
        # (the node lock files beside it are empty: only the directory's mode guards them)
        files = [p for p in data.iterdir() if p.name.startswith("switchboard.db") and ".node-" not in p.name]
        modes = {p.name: mode(p) for p in files}
    finally:
        await store.close()
    assert mode(data) == 0o700
    assert modes.keys() >= {"switchboard.db", "switchboard.db-wal", "switchboard.db-shm"}, modes
    assert set(modes.values()) == {0o600}, modes


def test_an_existing_world_readable_database_is_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "switchboard.db"
    for name in ("switchboard.db", "switchboard.db-wal"):
        (tmp_path / name).write_bytes(b"")
        (tmp_path / name).chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="switchboard.store"):
        private_sqlite_files(database)
    assert mode(database) == 0o600 and mode(tmp_path / "switchboard.db-wal") == 0o600
    assert "readable by others (mode 644); now 600" in caplog.text
    assert not (tmp_path / "switchboard.db-shm").exists()  # only what exists is changed; nothing is made


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    private_sqlite_files(tmp_path / "switchboard.db")
    assert mode(tmp_path) == 0o755  # the operator's (it may be shared): only the database files are ours
    assert mode(tmp_path / "switchboard.db") == 0o600
