"""The embedded store: one SQLite file in WAL mode with `synchronous=FULL`.

Every write goes through one writer thread that takes whatever jobs are pending, runs them in one
transaction and commits them together (group commit): one fsync serves every request that arrived
meanwhile, and each request's future is resolved only after the commit that holds its rows. Reads run on a
small pool of reader threads with their own connections; WAL lets them read while the writer writes.
Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import functools
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO, TypeVar

import msgspec

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
from switchboard.store.sql import Dialect, Query, bind, run_sync
from switchboard.store.sqlstore import Operation, SqlStore

T = TypeVar("T")
_Job = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]
_Done = tuple["asyncio.Future[Any]", Any, BaseException | None]

MIN_SQLITE = (3, 35)
MAX_JOBS_PER_COMMIT = 4096
MAX_ROWS_PER_COMMIT = 50_000
CHECKPOINT_SECONDS = 0.5
WAL_LIMIT_BYTES = 64 * 1024 * 1024
"""Bound one transaction; more pending jobs wait for the next commit."""


def connect(path: str) -> sqlite3.Connection:
    """A connection to a database already in WAL mode (`enable_wal`): changing the journal mode takes a
    lock that the busy timeout does not wait for, so it is done once, before any other connection."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")  # what a checkpoint leaves of the WAL file
    return conn


def enable_wal(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"sqlite: {path} cannot use WAL (journal mode stays {mode})")
    finally:
        conn.close()


class _Writer(threading.Thread):
    def __init__(self, path: str, loop: asyncio.AbstractEventLoop, wal_limit_bytes: int) -> None:
        super().__init__(name="sqlite-writer", daemon=True)
        self._path = path
        self._wal_limit = wal_limit_bytes
        self._loop = loop
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.failure: BaseException | None = None
        self._stopping = False

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self.failure is not None or self._stopping:
            raise StoreError(f"sqlite writer stopped: {self.failure or 'the store is closing'}")
        fut: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((fn, args, fut))
        if self.failure is not None:  # it failed between the check and the put: nobody else will drain
            self._drain(StoreError(f"sqlite writer stopped: {self.failure}"))
        return fut

    def stop(self) -> None:
        self._stopping = True
        self._jobs.put(None)

    def run(self) -> None:
        try:
            conn = connect(self._path)
            # Checkpoints run in their own thread (_Checkpointer), not inside a commit that requests wait on.
            conn.execute("PRAGMA wal_autocheckpoint=0")
        except Exception as e:
            self._fail(e)
            return
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                batch = [first]
                rows = _weight(first)
                stopping = False
                while len(batch) < MAX_JOBS_PER_COMMIT and rows < MAX_ROWS_PER_COMMIT:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stopping = True
                        break
                    batch.append(job)
                    rows += _weight(job)
                try:
                    done = self._run_batch(conn, batch)
                except BaseException as e:
                    error = StoreError(f"sqlite writer stopped: {e}")
                    failed: list[_Done] = [(job[2], None, error) for job in batch]
                    self._loop.call_soon_threadsafe(_resolve, failed)
                    raise
                self._loop.call_soon_threadsafe(_resolve, done)
                self._bound_wal(conn)
                if stopping:
                    return
        except BaseException as e:  # never die silently: every waiting request would hang
            self._fail(e)
        finally:
            conn.close()

    def _bound_wal(self, conn: sqlite3.Connection) -> None:
        """Keep the WAL from growing without end under back-to-back commits.

        The checkpointer's PASSIVE checkpoints copy pages back, but SQLite starts the WAL over only when
        a checkpoint completes with no commit in between, which never happens while commits follow each
        other (measured: 3.3 GB in 8 s of busy writing). So past its limit (`WAL_LIMIT_BYTES`) the writer, the
        only writer, restarts the WAL between two commits: it waits for readers only, and costs one pause
        every so many megabytes rather than a file, and a memory map, that grow until the load stops.
        """
        try:  # a stat per commit: about 2 µs
            size = os.stat(self._path + "-wal").st_size
        except OSError:
            return
        if size > self._wal_limit:
            with contextlib.suppress(sqlite3.Error):  # busy readers: the next check tries again
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _fail(self, e: BaseException) -> None:
        self.failure = e
        self._drain(StoreError(f"sqlite writer stopped: {e}"))

    def _drain(self, error: StoreError) -> None:
        failed: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                failed.append((job[2], None, error))
        self._loop.call_soon_threadsafe(_resolve, failed)

    def _run_batch(
        self, conn: sqlite3.Connection, batch: list[_Job]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Send requests without an idempotency key are written together, a few statements for the
            # whole group (_insert_requests): every statement lets go of the GIL and has to win it back
            # from the event loop, so fewer, larger steps are what makes the group commit fast.
            plain = [job for job in batch if job[0] is _accept and job[1][0].idempotency_key is None]
            if plain:
                _insert_requests(conn, [job[1] for job in plain])
            results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = [
                (fut, args[0].id, None) if fn is _accept and args[0].idempotency_key is None
                else (fut, fn(conn, *args), None)
                for fn, args, fut in batch
            ]  # fmt: skip
            conn.execute("COMMIT")
            return results
        except Exception as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.OperationalError) and e.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                # Another process held the database past the busy timeout: trying each job alone would
                # wait that long again for every one of them.
                busy = StoreError("sqlite: the database is locked by another process")
                return [(fut, None, busy) for _, _, fut in batch]
        # One job failed and took the batch with it: run each alone so only that one fails.
        out: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        for fn, args, fut in batch:
            try:
                conn.execute("BEGIN IMMEDIATE")
                result = fn(conn, *args)
                conn.execute("COMMIT")
                out.append((fut, result, None))
            except Exception as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                out.append((fut, None, _translate(e)))
        return out


def _lease_node(path: str) -> tuple[TextIO, int]:
    for node in range(1024):
        try:
            f = open(f"{path}.node-{node}.lock", "a")  # held open, and so locked, until the store closes
        except OSError as e:
            raise StoreError(f"sqlite: cannot create a node lock beside {path}: {e}") from e
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        return f, node
    raise StoreError("all 1,024 id nodes are held by live processes")


class _Checkpointer(threading.Thread):
    """Copies the WAL back into the database every `interval` seconds with its own connection.

    SQLite would otherwise checkpoint inside whichever commit crosses 1,000 WAL pages, and every request
    waiting on that commit would wait for the checkpoint's copying and fsync too (the p99 of Send).
    A PASSIVE checkpoint never blocks the writer; the WAL is reused from the start once one completes.
    """

    def __init__(self, path: str, interval: float) -> None:
        super().__init__(name="sqlite-checkpoint", daemon=True)
        self._path = path
        self._interval = interval
        self._done = threading.Event()

    def run(self) -> None:
        conn = connect(self._path)
        try:
            while not self._done.wait(self._interval):
                with contextlib.suppress(sqlite3.Error):  # busy now: the next round catches up
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            with contextlib.suppress(sqlite3.Error):  # the next start checkpoints what is left
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    def stop(self) -> None:
        self._done.set()


def _weight(job: _Job) -> int:
    """Rows a job writes, roughly: a Send request writes one per destination."""
    return len(job[1][1]) if job[0] is _accept else 1


def _resolve(done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, result, exc in done:
        if fut.done():
            continue  # the caller went away; its rows are committed all the same
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)


def _translate(e: Exception) -> Exception:
    """sqlite3's errors as the store's, by type: a refused constraint is an IntegrityViolation."""
    if isinstance(e, sqlite3.IntegrityError):
        return IntegrityViolation(f"sqlite: {e}")
    if isinstance(e, sqlite3.Error):
        return StoreError(f"sqlite: {e}")
    return e


_encode = msgspec.json.Encoder().encode


class SqliteConnection:
    """The `sql.Connection` primitives on a sqlite3 connection. Its methods never suspend (they run in the
    writer's or a reader's thread, `sql.run_sync`); sets of rows go in as one JSON document each, and rows
    come back as one (json_group_array), decoded by msgspec: SQLite hands rows over one at a time, letting go
    of the GIL for each and winning it back from the event loop, so fewer, larger steps keep both going."""

    dialect: Dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _run(self, query: Query, args: tuple[Any, ...]) -> sqlite3.Cursor:
        return self._conn.execute(query.sql("sqlite"), bind(query, args, "sqlite", _encode))

    async def fetch(self, query: Query, *args: Any) -> list[tuple[Any, ...]]:
        return [] if query.postgresql_only else self._run(query, args).fetchall()

    async def fetch_into(self, into: type[T], query: Query, *args: Any) -> list[T]:
        if query.postgresql_only:
            return []
        record_type: Any = into
        text, decode = _as_json(query, record_type)
        return decode(self._conn.execute(text, bind(query, args, "sqlite", _encode)).fetchone()[0])  # type: ignore[no-any-return]

    async def fetchval(self, query: Query, *args: Any) -> Any:
        row = None if query.postgresql_only else self._run(query, args).fetchone()
        return None if row is None else row[0]

    async def execute(self, query: Query, *args: Any) -> int:
        return 0 if query.postgresql_only else self._run(query, args).rowcount


@functools.cache
def _as_json(query: Query, into: Any) -> tuple[str, Callable[[str], Any]]:
    """The query wrapped to return its rows as one JSON array of records of `into`: arrays for a NamedTuple,
    objects for a dataclass (msgspec decodes those shapes)."""
    if hasattr(into, "_fields"):
        record = f"json_array({', '.join(into._fields)})"
    else:
        pairs = ", ".join(f"'{f.name}', {f.name}" for f in dataclasses.fields(into))
        record = f"json_object({pairs})"
    text = f"SELECT json_group_array({record}) FROM ({query.sql('sqlite')})"
    return text, msgspec.json.Decoder(list[into]).decode


def _run_op(conn: sqlite3.Connection, op: Operation[T], *args: Any) -> T:
    return run_sync(op(SqliteConnection(conn), *args))


class SqliteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, *, path: str, readers: int = 2, wal_limit_bytes: int = WAL_LIMIT_BYTES) -> None:
        self.path = path
        self._wal_limit = wal_limit_bytes
        self._reader_count = readers
        self._writer: _Writer | None = None
        self._checkpointer: _Checkpointer | None = None
        self._node_file: TextIO | None = None
        self._node = 0
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        return cls(path=url.removeprefix("sqlite:///"))

    async def open(self) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(
                f"SQLite {'.'.join(map(str, MIN_SQLITE))} or newer is needed (UPDATE … FROM, JSON functions); "
                f"this Python has {sqlite3.sqlite_version}"
            )
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(enable_wal, self.path)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"sqlite: cannot open {self.path}: {e}") from e
        self._writer = _Writer(self.path, asyncio.get_running_loop(), self._wal_limit)
        self._writer.start()
        self._checkpointer = _Checkpointer(self.path, CHECKPOINT_SECONDS)
        self._checkpointer.start()
        self._readers = ThreadPoolExecutor(self._reader_count, thread_name_prefix="sqlite-read")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._checkpointer is not None:
            self._checkpointer.stop()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        if self._node_file is not None:
            self._node_file.close()  # lets the lock go
            self._node_file = None

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """`fn(connection, *args)` in the writer thread, in its next group commit."""
        if self._writer is None:
            raise StoreError("the store is not open")
        return self._writer.submit(fn, *args)

    async def _write(self, op: Operation[T], *args: Any) -> T:
        return await self._submit(_run_op, op, *args)

    async def _read(self, op: Operation[T], *args: Any) -> T:
        if self._readers is None:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, self._in_reader, op, args)
        except sqlite3.Error as e:
            raise _translate(e) from e

    def _in_reader(self, op: Operation[T], args: Sequence[Any]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
        return _run_op(conn, op, *args)

    async def node_id(self) -> int:
        """A node no live process holds: an exclusive lock on a file beside the database, held until
        close (the CLI's administration commands run beside the server and make ids too)."""
        if self._node_file is None:
            self._node_file, self._node = await asyncio.to_thread(_lease_node, self.path)
        return self._node

    async def watch_for_work(self, wake: Callable[[], None]) -> None:
        return None  # one process: the service wakes its worker directly

    def _work_stored(self) -> None:
        return None  # one process: the service wakes its worker directly

    # what only SQLite does: Send requests merged in the group commit, and claims as JSON documents

    async def accept(self, message: NewMessage, destinations: list[NewDestination], errors: list[NewErrorLog]) -> int:
        return await self._submit(_accept, message, destinations, errors)

    async def claim(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedDestination]:
        return await self._submit(_claim, now, limit, lease_ms)

    async def claim_callbacks(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedCallback]:
        return await self._submit(_claim_callbacks, now, limit, lease_ms)

    async def claim_calls(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedCall]:
        return await self._submit(_claim_calls, now, limit, lease_ms)


_DESTINATION_COLUMNS = "id, message_id, position, mobile_no, e164, status, error, error_log_id, due_at, updated_at"

# Destinations go to SQLite as one JSON document per batch, [[message id, status, due_at, created_at,
# [[mobile_no, e164], ...]], ...], and SQLite fills in the rest: no value is bound one by one with the
# GIL held, and two values to unpack per destination instead of ten (3× faster than ten, measured).
_INSERT_DESTINATIONS = f"""
WITH m(id, status, due_at, created_at, numbers) AS MATERIALIZED (
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
           json_extract(value, '$[3]'), json_extract(value, '$[4]')
    FROM json_each(?)
)
INSERT INTO destinations ({_DESTINATION_COLUMNS})
SELECT m.id + 1 + n.key, m.id, n.key, json_extract(n.value, '$[0]'), json_extract(n.value, '$[1]'), m.status,
       NULL, NULL, m.due_at, m.created_at
FROM m, json_each(m.numbers) AS n
"""


def _insert_requests(c: sqlite3.Connection, requests: list[ops.Request]) -> None:
    """Send requests without an idempotency key are written together, a few statements for the whole group:
    every statement lets go of the GIL and has to win it back from the event loop, so fewer, larger steps
    are what makes the group commit fast."""
    connection = SqliteConnection(c)
    run_sync(connection.execute(queries.INSERT_MESSAGES, [queries.message_row(m) for m, _, _ in requests]))
    batch = [(m.id, m.status, m.due_at, m.created_at, ds) for m, ds, _ in requests]
    c.execute(_INSERT_DESTINATIONS, (_encode(batch),))
    run_sync(ops.accept_errors(connection, requests))


def _accept(c: sqlite3.Connection, m: NewMessage, destinations: list[NewDestination], errors: list[NewErrorLog]) -> int:
    """One request alone: the path of requests with an Idempotency-Key (the writer merges the others)."""
    if m.idempotency_key is not None:
        existing = run_sync(SqliteConnection(c).fetchval(queries.MESSAGE_BY_KEY, m.account_id, m.idempotency_key))
        if existing is not None:
            return int(existing)
    _insert_requests(c, [(m, destinations, errors)])
    return m.id


# Claims: one JSON document back (json_group_array) and the lease written for all of them in one statement.

_CLAIMED = {
    "id": "d.id", "attempt": "d.attempts + 1", "status": "d.status", "e164": "d.e164", "mobile_no": "d.mobile_no",
    "message_id": "d.message_id", "account_id": "m.account_id", "account_name": "a.name", "sender": "m.sender",
    "body": "m.body", "encoding": "m.encoding", "expires_at": "m.expires_at",
}  # fmt: skip
_CLAIM = f"""
SELECT json_group_array(json(claimed)) FROM (
    SELECT json_object({", ".join(f"'{k}', {v}" for k, v in _CLAIMED.items())}) AS claimed
    FROM destinations d JOIN messages m ON m.id = d.message_id JOIN accounts a ON a.id = m.account_id
    WHERE d.due_at IS NOT NULL AND d.due_at <= ? ORDER BY d.due_at LIMIT ?
)
"""
_decode_claimed = msgspec.json.Decoder(list[ClaimedDestination]).decode


def _lease(c: sqlite3.Connection, table: str, ids: list[int], until: int) -> None:
    c.execute(
        f"UPDATE {table} SET due_at=?, attempts=attempts+1 WHERE id IN (SELECT value FROM json_each(?))",
        (until, _encode(ids)),
    )


def _claim(c: sqlite3.Connection, now: int, limit: int, lease_ms: int) -> list[ClaimedDestination]:
    claimed = _decode_claimed(c.execute(_CLAIM, (now, limit)).fetchone()[0])
    if claimed:
        _lease(c, "destinations", [d.id for d in claimed], now + lease_ms)
    return claimed


def _claim_callbacks(c: sqlite3.Connection, now: int, limit: int, lease_ms: int) -> list[ClaimedCallback]:
    rows = c.execute(
        f"SELECT {changes.CLAIM_CALLBACK_COLUMNS} FROM callbacks c JOIN accounts a ON a.id = c.account_id "
        "WHERE c.due_at IS NOT NULL AND c.due_at <= ? ORDER BY c.due_at LIMIT ?",
        (now, limit),
    ).fetchall()
    if rows:
        _lease(c, "callbacks", [r[0] for r in rows], now + lease_ms)
    return [changes.claimed_callback(r) for r in rows]


def _claim_calls(c: sqlite3.Connection, now: int, limit: int, lease_ms: int) -> list[ClaimedCall]:
    ids = [
        r[0]
        for r in c.execute(
            "SELECT id FROM calls WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at, id LIMIT ?", (now, limit)
        )
    ]
    if not ids:
        return []
    _lease(c, "calls", ids, now + lease_ms)
    rows = c.execute(
        f"SELECT {calls.CLAIM_COLUMNS} FROM json_each(?) AS j JOIN calls c ON c.id = j.value "
        "JOIN call_requests r ON r.id = c.request_id JOIN accounts a ON a.id = r.account_id ORDER BY j.key",
        (_encode(ids),),
    ).fetchall()
    return [calls.claimed_call(r) for r in rows]
