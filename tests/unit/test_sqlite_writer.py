"""The SQLite writer thread never leaves a request waiting forever."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from switchboard.errors import StoreError
from switchboard.store import migrate
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


@pytest.mark.parametrize(("limit", "bounded"), [(1 << 20, True), (1 << 40, False)])
async def test_the_wal_stays_bounded_under_back_to_back_commits(tmp_path: Path, limit: int, bounded: bool) -> None:
    """With commits following each other the PASSIVE checkpoints never let SQLite start the WAL over; the
    writer restarts it past its limit. The unbounded case shows the test would see the growth."""
    url = f"sqlite:///{tmp_path / 'sb.db'}"
    migrate.upgrade(url)
    store = SqliteStore(path=str(tmp_path / "sb.db"), wal_limit_bytes=limit)
    await store.open()
    payload = "x" * 4000

    def write(c: sqlite3.Connection) -> None:
        c.executemany("INSERT INTO status_history (destination_id, status, at, detail) VALUES (1, 's', 0, ?)",
                      [(payload,)] * 50)  # fmt: skip

    largest = 0
    try:
        for _ in range(40):  # 40 rounds of 8 concurrent writes: about 64 MB through the WAL
            await asyncio.gather(*(store._submit(write) for _ in range(8)))
            largest = max(largest, (tmp_path / "sb.db-wal").stat().st_size)
    finally:
        await store.close()
    if bounded:
        assert largest < 24 << 20, largest
    else:
        assert largest > 32 << 20, largest


async def test_a_database_path_that_cannot_be_made_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    store = SqliteStore(path=str(tmp_path / "file" / "sb.db"))
    with pytest.raises(StoreError, match="cannot open"):
        await store.open()
    await store.close()
