"""The SQLite writer thread never leaves a request waiting forever."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from switchboard.store import migrate
from switchboard.store.base import StoreError
from switchboard.store.sqlite import SqliteStore


async def test_when_the_writer_dies_every_waiting_and_later_write_fails_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sb.db'}"
    migrate.upgrade(url)
    store = SqliteStore.from_url(url)
    await store.open()

    def disk_gone(c: sqlite3.Connection) -> None:
        raise SystemExit("the disk went away")  # not an Exception: escapes the batch's own handling

    try:
        with pytest.raises(StoreError, match="writer stopped"):
            await store._write(disk_gone)
        with pytest.raises(StoreError, match="writer stopped"):
            await store.revoke_api_key(1, 1, 0)
    finally:
        await store.close()


async def test_writes_after_close_begins_are_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sb.db'}"
    migrate.upgrade(url)
    store = SqliteStore.from_url(url)
    await store.open()
    writer = store._writer
    assert writer is not None
    writer.stop()
    with pytest.raises(StoreError, match="closing"):
        writer.submit(lambda c: None)
    await store.close()
