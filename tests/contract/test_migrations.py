"""The migrations build exactly the schema that store/schema.py declares, on both databases, and undo
cleanly."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from switchboard.store import migrate
from switchboard.store.schema import metadata
from tests.contract.conftest import create_database, drop_database, in_thread

T = TypeVar("T")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with nothing in it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'switchboard.db'}"
        return
    admin_url: str = request.getfixturevalue("pg_admin_url")
    url = create_database(admin_url)
    try:
        yield url
    finally:
        drop_database(admin_url, url)


def inspect_with(url: str, fn: Callable[[Connection], T]) -> T:
    """Run `fn` on a synchronous SQLAlchemy connection (asyncpg's, through run_sync, for PostgreSQL)."""
    if url.startswith("sqlite:"):
        engine = create_engine(url, poolclass=pool.NullPool)
        try:
            with engine.connect() as conn:
                return fn(conn)
        finally:
            engine.dispose()

    async def run() -> T:
        async_engine = create_async_engine(migrate.sqlalchemy_url(url), poolclass=pool.NullPool)
        try:
            async with async_engine.connect() as conn:
                return await conn.run_sync(fn)
        finally:
            await async_engine.dispose()

    return in_thread(asyncio.run, run())


def schema_differences(conn: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


def table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def index_predicates(conn: Connection) -> dict[str, str | None]:
    """Each index's WHERE clause, which autogenerate does not compare: the work-queue index and the
    idempotency index are partial, and the claim and accept statements rely on that."""
    key = f"{conn.dialect.name}_where"
    inspector = inspect(conn)
    return {
        ix["name"]: _clause(ix.get("dialect_options", {}).get(key))
        for table in metadata.tables
        for ix in inspector.get_indexes(table)
        if ix["name"] is not None and "duplicates_constraint" not in ix  # UNIQUE columns: compared above
    }


def declared_predicates(dialect: str) -> dict[str, str | None]:
    return {
        str(ix.name): _clause(ix.dialect_options[dialect].get("where"))
        for table in metadata.tables.values()
        for ix in table.indexes
    }


def _clause(where: object) -> str | None:
    """The clause in one spelling: PostgreSQL writes literals back with their type ('pending'::text)."""
    if where is None:
        return None
    return re.sub(r"::[a-z ]+\b", "", " ".join(str(where).strip("()").split()).lower())


def test_migrated_schema_is_the_declared_schema(empty_database: str) -> None:
    in_thread(migrate.upgrade, empty_database)
    assert inspect_with(empty_database, table_names) == {*metadata.tables, "alembic_version"}
    assert inspect_with(empty_database, schema_differences) == []
    dialect = "sqlite" if empty_database.startswith("sqlite:") else "postgresql"
    assert inspect_with(empty_database, index_predicates) == declared_predicates(dialect)


def test_downgrade_to_base_then_upgrade_again(empty_database: str) -> None:
    in_thread(migrate.upgrade, empty_database)
    in_thread(migrate.downgrade, empty_database, "base")
    assert inspect_with(empty_database, table_names) == {"alembic_version"}
    in_thread(migrate.upgrade, empty_database)
    assert inspect_with(empty_database, schema_differences) == []
