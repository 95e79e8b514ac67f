"""Fixtures for the contract suites: the same tests against every store implementation.

`store` runs each test on SQLite (a fresh file per test, copied from one migrated template) and on
PostgreSQL (one database `sb_test_<hex>` per session, migrated once, emptied before each test, dropped at
the end). The PostgreSQL runs are skipped when no server answers at `SWITCHBOARD_TEST_POSTGRES_URL`
(default postgresql://postgres@127.0.0.1:5432/postgres; the URL names the database to connect to for
creating and dropping the test databases).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from switchboard.domain.ids import IdGenerator
from switchboard.domain.statuses import SmsStatus
from switchboard.store import migrate
from switchboard.store.base import Store
from switchboard.store.postgres import PostgresStore
from switchboard.store.records import (
    Account,
    ApiKey,
    DestinationView,
    NewDestination,
    NewErrorLog,
    NewMessage,
    Outcome,
)
from switchboard.store.sqlite import SqliteStore
from tests.clock import FakeClock

T = TypeVar("T")
P = ParamSpec("P")

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TABLES = (
    "accounts",
    "api_keys",
    "messages",
    "destinations",
    "status_history",
    "error_logs",
    "callbacks",
    "callback_attempts",
    "call_requests",
    "calls",
    "campaigns",
    "destination_parts",
    "inbound_messages",
    "inbound_parts",
    "inbound_seen",
    "held_receipts",
    "numbers",
    "account_limits",
    "rate_buckets",
    "daily_counts",
    "opt_outs",
    "account_replies",
    "opt_out_replies",
)
START_MS = 1_750_000_000_000
INVALID_NUMBER = "International Number Invalid"


def in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking code (Alembic, and `asyncio.run` inside it for PostgreSQL) away from pytest-asyncio's
    event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args, **kwargs).result(timeout=60)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(":" + parts.password + "@", ":***@")))


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url, timeout=3)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def create_database(admin_url: str) -> str:
    """A new empty database; returns its URL."""
    name = f"sb_test_{secrets.token_hex(6)}"
    in_thread(asyncio.run, _admin(admin_url, f'CREATE DATABASE "{name}"'))
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    in_thread(asyncio.run, _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = os.environ.get("SWITCHBOARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        in_thread(asyncio.run, _admin(url, "SELECT 1"))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        pytest.skip(f"PostgreSQL not reachable at {shown(url)}: {e}")
    return url


@pytest.fixture(scope="session")
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """One migrated database for the session's store tests."""
    url = create_database(pg_admin_url)
    try:
        in_thread(migrate.upgrade, url)
        yield url
    finally:
        drop_database(pg_admin_url, url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "switchboard.db"
    in_thread(migrate.upgrade, f"sqlite:///{path}")
    return path


@dataclass
class Backend:
    dialect: str
    url: str

    async def count(self, table: str) -> int:
        """Rows in a table, read over a connection of its own."""
        if self.dialect == "sqlite":
            return await asyncio.to_thread(_sqlite_count, self.url.removeprefix("sqlite:///"), table)
        conn = await asyncpg.connect(self.url)
        try:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        finally:
            await conn.close()


def _sqlite_count(path: str, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "switchboard.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return Backend("sqlite", f"sqlite:///{path}")
    return Backend("postgresql", request.getfixturevalue("pg_url"))


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    s: Store
    if backend.dialect == "sqlite":
        s = SqliteStore.from_url(backend.url)
    else:
        await _admin(backend.url, f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
        s = PostgresStore.from_url(backend.url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def clock() -> FakeClock:
    """The tests' one fake clock, from START_MS; the store tests move it in milliseconds (`advance(ms=…)`)."""
    return FakeClock(START_MS)


class Factory:
    """Builds accounts, keys and Send requests with fresh ids, and stores them."""

    def __init__(self, store: Store, clock: FakeClock) -> None:
        self.store = store
        self.clock = clock
        self.ids = IdGenerator(node=0, clock_ms=clock.now_ms)
        self._names = 0

    async def account(self, name: str | None = None) -> Account:
        self._names += 1
        account = Account(
            id=self.ids.next(),
            name=name or f"account-{self._names}",
            sms_callback_url=None,
            voice_callback_url=None,
            webhook_secret="whsec_test",
            created_at=self.clock.now_ms(),
        )
        await self.store.create_account(account)
        return account

    async def key(self, account: Account, digest: str | None = None) -> ApiKey:
        key = ApiKey(
            id=self.ids.next(),
            account_id=account.id,
            digest=digest or secrets.token_hex(32),
            prefix="sbk_test",
            label=None,
            created_at=self.clock.now_ms(),
            revoked_at=None,
        )
        await self.store.add_api_key(key)
        return key

    def message(
        self,
        account: Account,
        numbers: list[str] | None = None,
        *,
        reference_id: str | None = None,
        idempotency_key: str | None = None,
        delay: int | None = 0,
        callback: str = "no",
        callback_url: str | None = None,
    ) -> tuple[NewMessage, list[NewDestination], list[NewErrorLog]]:
        """A Send request. A number starting with "+" is valid and due `delay` ms from now (never when
        `delay` is None); any other is stored Failed with an error log, as the API does."""
        numbers = ["+16175550100"] if numbers is None else numbers
        now = self.clock.now_ms()
        message_id = self.ids.block(len(numbers) + 1)
        destinations: list[NewDestination] = []
        errors: list[NewErrorLog] = []
        for position, number in enumerate(numbers):
            valid = number.startswith("+")
            destinations.append(NewDestination(number, number if valid else None))
            if not valid:
                dest_id = message_id + 1 + position
                errors.append(NewErrorLog(self.ids.next(), account.id, dest_id, "InvalidNumber", INVALID_NUMBER, now))
        message = NewMessage(
            id=message_id,
            account_id=account.id,
            reference_id=reference_id,
            sender="Switchboard",
            body="hello",
            encoding="gsm7",
            segments=1,
            callback=callback,
            callback_url=callback_url,
            destination_count=len(numbers),
            created_at=now,
            schedule_at=None,
            expires_at=None,
            idempotency_key=idempotency_key,
            status="Received",
            due_at=None if delay is None else now + delay,
        )
        return message, destinations, errors

    async def send(self, account: Account, numbers: list[str] | None = None, **kw: Any) -> int:
        return await self.store.accept(*self.message(account, numbers, **kw))

    async def sent(self, account: Account, carrier: str = "sim", **kw: Any) -> Sent:
        """A one-destination message that a carrier accepted."""
        message_id = await self.send(account, **kw)
        [claimed] = await self.store.claim(now=self.clock.now_ms(), limit=1, lease_ms=30_000)
        ref = secrets.token_hex(8)
        outcome = Outcome(claimed.id, claimed.attempt, SmsStatus.SENT, carrier=carrier, carrier_ref=ref)
        await self.store.finish([outcome], now=self.clock.now_ms())
        return Sent(account.id, message_id, claimed.id, carrier, ref)

    async def destination(self, sent: Sent) -> DestinationView:
        """The one destination of a message, as GetStatus reads it."""
        view = await self.store.get_message(sent.account_id, sent.message_id)
        assert view is not None
        [dest] = view.destinations
        return dest


class Sent(NamedTuple):
    account_id: int
    message_id: int
    destination_id: int
    carrier: str
    ref: str


@pytest.fixture
def make(store: Store, clock: FakeClock) -> Factory:
    return Factory(store, clock)
