"""The cluster store: PostgreSQL through an asyncpg pool, shared by any number of api and worker processes.

Workers claim with `FOR UPDATE SKIP LOCKED`, so two processes never hold the same destination at once.
`finish` and `apply_receipts` lock the rows they change (in id order, so two of them cannot deadlock),
decide with `changes` (the same decision as the SQLite store) and write the plan with set-based statements
over `unnest` arrays. `retry_held_receipts` takes the held receipts with `FOR UPDATE SKIP LOCKED` too, so
two workers never apply the same one (and never wait for each other's: only the destinations are waited
for). Every statement runs through `_connection`, the one place asyncpg's errors become `StoreError`s. What is the
same on SQLite is written once in `SqlStore` (store/sqlstore.py) over `PostgresConnection`; this module keeps
what only PostgreSQL does: the pool, node ids by advisory lock, LISTEN/NOTIFY, Sends grouped into one
statement, and `SKIP LOCKED` claims.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import msgspec

from switchboard.domain.statuses import SmsStatus
from switchboard.errors import IntegrityViolation, StoreError
from switchboard.store import calls, changes, queries
from switchboard.store import operations as ops
from switchboard.store.records import (
    ClaimedCall,
    ClaimedCallback,
    ClaimedDestination,
    NewDestination,
    NewErrorLog,
    NewMessage,
)
from switchboard.store.sql import Dialect, Query, Rows, bind, transpose
from switchboard.store.sqlstore import Operation, SqlStore

T = TypeVar("T")
log = logging.getLogger("switchboard.store.postgres")

_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
"""Server errors, client-side misuse and lost connections (TimeoutError is an OSError)."""


def _translate(e: BaseException) -> StoreError:
    """asyncpg's errors as the store's, by type: a refused constraint is an IntegrityViolation."""
    if isinstance(e, asyncpg.IntegrityConstraintViolationError):
        return IntegrityViolation(f"postgresql: {type(e).__name__}: {e}")
    return StoreError(f"postgresql: {type(e).__name__}: {e}")


class PostgresConnection:
    """The `sql.Connection` primitives on an asyncpg connection (inside `PostgresStore._connection`, which
    translates its errors); sets of rows go in as one array per column (`unnest`)."""

    dialect: Dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, query: Query, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self._conn.fetch(query.sql("postgresql"), *bind(query, args, "postgresql"))]

    async def fetch_into(self, into: type[T], query: Query, *args: Any) -> list[T]:
        rows = await self._conn.fetch(query.sql("postgresql"), *bind(query, args, "postgresql"))
        records = [tuple(r) for r in rows] if issubclass(into, tuple) else [dict(r) for r in rows]
        return msgspec.convert(records, list[into])  # type: ignore[valid-type]

    async def fetchval(self, query: Query, *args: Any) -> Any:
        return await self._conn.fetchval(query.sql("postgresql"), *bind(query, args, "postgresql"))

    async def execute(self, query: Query, *args: Any) -> int:
        status: str = await self._conn.execute(query.sql("postgresql"), *bind(query, args, "postgresql"))
        count = status.rsplit(" ", 1)[-1]  # "UPDATE 3", "INSERT 0 3"
        return int(count) if count.isdigit() else 0


class PostgresStore(SqlStore):
    dialect = "postgresql"

    def __init__(self, *, dsn: str, pool_size: int = 10, min_size: int = 1, connect_timeout: float = 10.0) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._min_size = min(min_size, pool_size)
        self._connect_timeout = connect_timeout
        self._pool: Any = None
        self._listener: Any = None
        self._wakers: list[Callable[[], None]] = []
        self._relistening: asyncio.Task[None] | None = None
        self._node_holder: Any = None
        self._node: int | None = None
        self._announcing: asyncio.Task[None] | None = None
        self._accepts: list[tuple[NewMessage, list[NewDestination], asyncio.Future[int]]] = []
        self._accepting: set[asyncio.Task[None]] = set()
        self._announce_again = False

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 10) -> PostgresStore:
        """`postgresql://user:password@host:port/database?...`, as libpq and asyncpg read it; `pool_size`
        connections at most."""
        return cls(dsn=url.replace("postgresql+asyncpg://", "postgresql://", 1), pool_size=pool_size)

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._pool_size,
                timeout=self._connect_timeout,
                reset=_keep_session,
            )
        except _DRIVER_ERRORS as e:
            raise _translate(e) from e

    async def watch_for_work(self, wake: Callable[[], None]) -> None:
        """LISTEN on a connection of its own for the NOTIFY that follows the commit of an `accept` or an
        `accept_calls`; every caller (the SMS worker, the dialer) shares that connection. When it is lost
        (the server restarted, the backend was terminated), it is opened again with a capped backoff
        (RELISTEN_BACKOFF) and every caller is woken once then: work committed meanwhile was announced to
        nobody. Until then the callers poll."""
        self._wakers.append(wake)
        if self._listener is None and self._relistening is None:
            try:
                self._listener = await self._listen()
            except _DRIVER_ERRORS as e:
                self._wakers.remove(wake)
                raise _translate(e) from e

    async def _listen(self) -> Any:
        conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
        try:
            await conn.add_listener(WORK_CHANNEL, self._wake_all)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._listener_lost)
        return conn

    def _wake_all(self, *_: object) -> None:
        for wake in self._wakers:
            wake()

    def _listener_lost(self, conn: Any) -> None:
        if conn is not self._listener:  # closed by `close`, which let go of it first
            return
        log.warning("the LISTEN connection for new work was lost; workers poll until it is open again")
        self._listener = None
        self._relistening = asyncio.create_task(self._relisten(), name="postgres-relisten")

    async def _relisten(self) -> None:
        delay, cap = RELISTEN_BACKOFF
        try:
            while True:
                try:
                    listener = await self._listen()
                except _DRIVER_ERRORS as e:
                    log.warning("opening the LISTEN connection again failed (%s); next try in %.1f s", e, delay)
                    await asyncio.sleep(delay)
                    delay = min(cap, delay * 2)
                    continue
                self._listener = listener
                log.info("the LISTEN connection for new work is open again")
                self._wake_all()
                return
        finally:
            self._relistening = None

    def _announce_work(self) -> None:
        """NOTIFY the workers that work was committed, once for however many commits came meanwhile.

        Not in the committing transaction: a transaction that NOTIFYs holds one lock, for the whole
        database cluster, from its pre-commit through its commit's WAL flush (PostgreSQL's async.c, to keep
        the queue in commit order), so every accept committed one after the other: 720 messages/s end to
        end (docs/benchmarks.md). Here a NOTIFY starts only after the commit it announces (a worker woken by
        it sees the rows), at most one at a time per process, and one more after it when accepts committed
        while it was on its way. It needs no durability: synchronous_commit is off for its own transaction."""
        if self._announcing is not None:
            self._announce_again = True
            return
        self._announcing = asyncio.create_task(self._announce(), name="postgres-notify")

    async def _announce(self) -> None:
        try:
            while True:
                self._announce_again = False
                try:
                    await self._notify()
                except StoreError as e:  # the workers still poll: the work is found, later
                    log.warning("could not notify the workers of new work: %s", e)
                if not self._announce_again:
                    return
        finally:
            self._announcing = None

    async def _notify(self) -> None:
        async with self._connection() as conn:
            await conn.execute(_NOTIFY_WORK)

    async def close(self) -> None:
        if self._accepting:
            await asyncio.gather(*self._accepting, return_exceptions=True)
        if self._announcing is not None:
            await asyncio.gather(self._announcing, return_exceptions=True)
        if self._node_holder is not None:
            holder, self._node_holder, self._node = self._node_holder, None, None
            await holder.close()
        if self._relistening is not None:
            self._relistening.cancel()
            await asyncio.gather(self._relistening, return_exceptions=True)
        if self._listener is not None:
            listener, self._listener = self._listener, None  # let go first: its end is not a loss
            await listener.close()
        self._wakers.clear()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @asynccontextmanager
    async def _connection(self, *, transaction: bool = False) -> AsyncIterator[Any]:
        if self._pool is None:
            raise StoreError("the store is not open")
        try:
            async with self._pool.acquire() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except _DRIVER_ERRORS as e:
            raise _translate(e) from e

    async def _read(self, op: Operation[T], *args: Any) -> T:
        async with self._connection() as conn:
            return await op(PostgresConnection(conn), *args)

    async def _write(self, op: Operation[T], *args: Any) -> T:
        async with self._connection(transaction=True) as conn:
            return await op(PostgresConnection(conn), *args)

    async def _execute(self, query: Query, *args: Any) -> int:
        """One statement commits on its own: no BEGIN and COMMIT around it (two round trips fewer)."""
        return await self._read(ops.execute, query, *args)

    def _work_stored(self) -> None:
        self._announce_work()

    async def _fetch_written(self, query: Query, *args: Any) -> list[tuple[Any, ...]]:
        """One statement commits on its own (a lease, on the api's hot path when it runs out): no BEGIN and
        COMMIT around it."""
        return await self._read(ops.fetch, query, *args)

    async def node_id(self) -> int:
        """A node no live process holds: an advisory lock on it, held by a connection of this process's
        own until it closes (or dies, when PostgreSQL lets the lock go)."""
        if self._node is not None:
            return self._node
        if self._node_holder is None:
            try:
                self._node_holder = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
            except _DRIVER_ERRORS as e:
                raise _translate(e) from e
        try:
            for _ in range(1024):
                node = int(await self._node_holder.fetchval("SELECT nextval('switchboard_node_seq') % 1024"))
                if await self._node_holder.fetchval("SELECT pg_try_advisory_lock($1, $2)", _NODE_LOCKS, node):
                    self._node = node
                    return node
        except _DRIVER_ERRORS as e:
            raise _translate(e) from e
        raise StoreError("all 1,024 id nodes are held by live processes")

    # what only PostgreSQL does: Sends grouped into one statement, claims with SKIP LOCKED

    async def accept(self, message: NewMessage, destinations: list[NewDestination], errors: list[NewErrorLog]) -> int:
        if errors:  # invalid numbers have more to write: a transaction of its own
            return await self._accept_one(message, destinations, errors)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._accepts.append((message, destinations, future))
        if len(self._accepting) < ACCEPT_WRITERS:
            task = asyncio.create_task(self._write_accepts(), name="postgres-accept")
            self._accepting.add(task)
            task.add_done_callback(self._accepting.discard)
        return await future

    async def _write_accepts(self) -> None:
        """Write what is queued, ACCEPT_GROUP at a time, until nothing is: every accept that arrived while
        the statements before were on their way goes in one statement and one commit (as the SQLite writer
        commits whatever arrived meanwhile). If a group fails, its accepts are written one by one, so one
        that the server refuses fails alone."""
        while self._accepts:
            group, self._accepts = self._accepts[:ACCEPT_GROUP], self._accepts[ACCEPT_GROUP:]
            try:
                ids = await self._accept_group(group)
            except Exception:
                for m, destinations, future in group:
                    try:
                        result = await self._accept_one(m, destinations, [])
                    except Exception as e:
                        if not future.done():
                            future.set_exception(e)
                    else:
                        if not future.done():
                            future.set_result(result)
                continue
            for (_, _, future), ident in zip(group, ids, strict=True):
                if not future.done():  # its request may be gone (cancelled); what it sent is stored
                    future.set_result(ident)

    async def _accept_group(
        self, group: list[tuple[NewMessage, list[NewDestination], asyncio.Future[int]]]
    ) -> list[int]:
        """One statement for the group's messages and destinations; each message's id, or for one whose
        idempotency key the account used before, that earlier message's."""
        messages = [g[0] for g in group]
        rows = [
            queries.DestinationRow(m.id + 1 + i, m.id, i, d.mobile_no, d.e164, m.status, m.due_at, m.created_at)
            for m, destinations, _ in group
            for i, d in enumerate(destinations)
        ]
        async with self._connection() as conn:
            c = PostgresConnection(conn)
            inserted = {r[0] for r in await c.fetch(_INSERT_MESSAGES, [queries.message_row(m) for m in messages], rows)}
            ids = []
            for m in messages:
                if m.id in inserted:
                    ids.append(m.id)
                    continue
                # The account used this idempotency key before (perhaps earlier in this group, or in a
                # transaction that committed while this insert waited on the index): that message's id.
                existing = await c.fetchval(queries.MESSAGE_BY_KEY, m.account_id, m.idempotency_key)
                if existing is None:
                    raise StoreError("idempotency key conflict without a message")
                ids.append(int(existing))
        if any(m.id in inserted and m.schedule_at is None for m in messages):
            self._announce_work()  # to every worker process listening (watch_for_work)
        return ids

    async def _accept_one(
        self, message: NewMessage, destinations: list[NewDestination], errors: list[NewErrorLog]
    ) -> int:
        m = message
        numbers, e164s = transpose(destinations) if destinations else ([], [])
        # The message and its destinations in one statement: one round trip, and no BEGIN and COMMIT of
        # its own, unless invalid numbers have more to write in the same transaction.
        async with self._connection(transaction=bool(errors)) as conn:
            c = PostgresConnection(conn)
            inserted = await conn.fetchval(_INSERT_MESSAGE, *queries.message_row(m), m.status, m.due_at, numbers, e164s)
            if inserted is None:
                # The account used this idempotency key before (perhaps in a transaction that committed
                # while this insert waited on the index): answer with that message, store nothing.
                existing = await c.fetchval(queries.MESSAGE_BY_KEY, m.account_id, m.idempotency_key)
                if existing is None:
                    raise StoreError("idempotency key conflict without a message")
                return int(existing)
            await ops.accept_errors(c, [(m, destinations, errors)])
        if m.schedule_at is None:
            self._announce_work()  # to every worker process listening (watch_for_work)
        return m.id

    async def claim(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedDestination]:
        async with self._connection() as conn:
            rows = await conn.fetch(_CLAIM, now, limit, now + lease_ms)
        return [ClaimedDestination(**dict(r, status=SmsStatus(r["status"]))) for r in rows]

    async def claim_callbacks(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedCallback]:
        async with self._connection() as conn:
            rows = await conn.fetch(_CLAIM_CALLBACKS, now, limit, now + lease_ms)
        return [changes.claimed_callback(tuple(r)) for r in rows]

    async def claim_calls(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedCall]:
        async with self._connection() as conn:
            rows = await conn.fetch(_CLAIM_CALLS, now, limit, now + lease_ms)
        return [calls.claimed_call(r) for r in rows]


WORK_CHANNEL = "switchboard_work"
RELISTEN_BACKOFF = (0.5, 30.0)
"""Seconds before opening a lost LISTEN connection again: the first wait, doubling up to the second."""
_NOTIFY_WORK = f"BEGIN; SET LOCAL synchronous_commit TO off; NOTIFY {WORK_CHANNEL}; COMMIT"
_NODE_LOCKS = 0x5357  # the advisory lock class of id nodes ("SW")

# A message and its destinations, or nothing when the idempotency key was used before: the conflict target
# names the partial unique index ux_messages_idempotency (its WHERE clause is part of the target), and a
# message without a key never conflicts; the destinations are inserted only for the message row `m` returns.
# Destination number `position` of message $1 has the id $1 + 1 + position (Store.accept). One statement
# over arrays rather than executemany: measured 2x faster for a 1,000-destination request.
_INSERT_MESSAGE = f"""
WITH m AS (
    INSERT INTO messages ({queries.MESSAGE_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
), d AS (
    INSERT INTO destinations (id, message_id, position, mobile_no, e164, status, due_at, updated_at)
    SELECT m.id + n.position, m.id, n.position - 1, n.mobile_no, n.e164, $15, $16, $11
    FROM m CROSS JOIN unnest($17::text[], $18::text[]) WITH ORDINALITY AS n(mobile_no, e164, position)
)
SELECT id FROM m
"""

# Many messages at once (PostgresStore._accept_group): a message whose idempotency key its account used
# before is not inserted, and neither are its destinations.
_DESTINATION_COLUMNS = queries.columns(queries.DestinationRow)
_INSERT_MESSAGES = Query(
    f"""
WITH m AS (
    INSERT INTO messages ({queries.MESSAGE_COLUMNS}) SELECT {queries.MESSAGE_COLUMNS} FROM {{new}}
    ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
), d AS (
    INSERT INTO destinations ({_DESTINATION_COLUMNS}) SELECT {_DESTINATION_COLUMNS} FROM {{n}}
    WHERE n.message_id IN (SELECT id FROM m)
)
SELECT id FROM m
""",
    [Rows("new", queries.MessageRow), Rows("n", queries.DestinationRow)],
)
ACCEPT_WRITERS = 2
"""Group statements of accepts on their way at once per process: while one commits, the next group forms."""
ACCEPT_GROUP = 200
"""Accepts in one statement at most."""

# SKIP LOCKED: rows another worker is claiming right now are passed over, not waited for. The rows are
# returned in due order (then id order), as the SQLite store returns them. The claimed rows and their
# messages are found by `id = ANY(ARRAY(...))`, an index lookup of the ids the CTE before found: joined by
# `d.id = c.id` instead, the planner hashed a sequential scan of all of destinations and of messages for
# every claim, however few rows it claimed (EXPLAIN ANALYZE, 10,000 destinations: both read in full for a
# claim of 500, 8.4 ms; 3.9 ms this way, and no longer growing with the tables).
_CLAIM = """
WITH c AS (
    SELECT id, due_at FROM destinations
    WHERE due_at IS NOT NULL AND due_at <= $1
    ORDER BY due_at LIMIT $2
    FOR UPDATE SKIP LOCKED
), u AS (
    UPDATE destinations d SET due_at = $3, attempts = d.attempts + 1
    WHERE d.id = ANY(ARRAY(SELECT id FROM c))
    RETURNING d.id, d.attempts, d.status, d.e164, d.mobile_no, d.message_id
), m AS (
    SELECT id, account_id, sender, body, encoding, expires_at FROM messages
    WHERE id = ANY(ARRAY(SELECT message_id FROM u))
)
SELECT u.id, u.attempts AS attempt, u.status, u.e164, u.mobile_no, u.message_id, m.account_id,
       a.name AS account_name, m.sender, m.body, m.encoding, m.expires_at
FROM u JOIN c ON c.id = u.id JOIN m ON m.id = u.message_id JOIN accounts a ON a.id = m.account_id
ORDER BY c.due_at, u.id
"""

_CLAIM_CALLBACKS = f"""
WITH due AS (
    SELECT id FROM callbacks WHERE due_at IS NOT NULL AND due_at <= $1
    ORDER BY due_at LIMIT $2
    FOR UPDATE SKIP LOCKED
), c AS (
    UPDATE callbacks x SET due_at = $3, attempts = x.attempts + 1 FROM due WHERE x.id = due.id
    RETURNING x.id, x.attempts - 1 AS attempts, x.account_id, x.kind, x.subject_id, x.sequence, x.url, x.body
)
SELECT {changes.CLAIM_CALLBACK_COLUMNS} FROM c JOIN accounts a ON a.id = c.account_id ORDER BY c.id
"""
# SKIP LOCKED: calls another dialer is claiming right now are passed over, not waited for. Returned in due
# order (then id order), as the SQLite store returns them. The claimed columns come from RETURNING: the
# main query would see the rows as they were before the CTE's update.
_CLAIM_CALLS = f"""
WITH due AS (
    SELECT id, due_at FROM calls
    WHERE due_at IS NOT NULL AND due_at <= $1
    ORDER BY due_at, id LIMIT $2
    FOR UPDATE SKIP LOCKED
), u AS (
    UPDATE calls x SET due_at = $3, attempts = x.attempts + 1 FROM due WHERE x.id = due.id
    RETURNING x.id, x.attempts, x.status, x.request_id, x.guid, x.mobile_no, x.e164, x.call_time, x.answer_time,
        due.due_at AS was_due
)
SELECT {calls.CLAIM_COLUMNS}
FROM u AS c JOIN call_requests r ON r.id = c.request_id JOIN accounts a ON a.id = r.account_id
ORDER BY c.was_due, c.id
"""


async def _keep_session(conn: Any) -> None:
    """The pool's reset: nothing. asyncpg's default sends `SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL` at every release, one more round trip per statement or transaction, to undo
    session state that no pool connection of this store makes (its advisory lock and its LISTEN have
    connections of their own; the pool rolls back an open transaction itself before this is called)."""
