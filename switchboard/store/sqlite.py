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

from switchboard.domain.statuses import SmsStatus
from switchboard.errors import DuplicateName, StoreError
from switchboard.store import changes, sqlite_calls
from switchboard.store.base import Replay
from switchboard.store.records import (
    Account,
    ApiKey,
    CallbackAttempt,
    CallbackEvent,
    CallbackResult,
    CallbackState,
    CallbackView,
    CallEnd,
    CallProgress,
    CallRequestView,
    Campaign,
    CancelResult,
    ClaimedCall,
    ClaimedCallback,
    ClaimedDestination,
    DestinationView,
    HeldReceipts,
    HistoryEntry,
    InboundMessage,
    InFlight,
    MessageView,
    NewCall,
    NewCallRequest,
    NewDestination,
    NewErrorLog,
    NewMessage,
    Outcome,
    Receipt,
    StoredInbound,
)

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
        f = open(f"{path}.node-{node}.lock", "a")  # held open, and so locked, until the store closes
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
    if isinstance(e, sqlite3.IntegrityError) and "accounts.name" in str(e):
        return DuplicateName("an account with that name exists already")
    if isinstance(e, sqlite3.Error):
        return StoreError(f"sqlite: {e}")
    return e


class SqliteStore:
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
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(enable_wal, self.path)
        except sqlite3.Error as e:
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

    def _write(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._writer is None:
            raise StoreError("the store is not open")
        return self._writer.submit(fn, *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._readers is None:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, self._in_reader, fn, args)
        except sqlite3.Error as e:
            raise StoreError(f"sqlite: {e}") from e

    def _in_reader(self, fn: Callable[..., T], args: Sequence[Any]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
        return fn(conn, *args)

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    async def node_id(self) -> int:
        """A node no live process holds: an exclusive lock on a file beside the database, held until
        close (the CLI's administration commands run beside the server and make ids too)."""
        if self._node_file is None:
            self._node_file, self._node = await asyncio.to_thread(_lease_node, self.path)
        return self._node

    # accounts and keys

    async def create_account(self, account: Account) -> None:
        await self._write(_insert_account, account)

    async def get_account(self, account_id: int) -> Account | None:
        return await self._read(_select_account, "id", account_id)

    async def get_account_by_name(self, name: str) -> Account | None:
        return await self._read(_select_account, "name", name)

    async def list_accounts(self) -> list[Account]:
        rows = await self._read(lambda c: c.execute(f"SELECT {_ACCOUNT_COLS} FROM accounts ORDER BY id").fetchall())
        return [Account(*r) for r in rows]

    async def set_callback_url(self, account_id: int, kind: str, url: str | None) -> None:
        url_column, disabled_column = changes.account_url_columns(kind)
        await self._write(
            lambda c: c.execute(
                f"UPDATE accounts SET {url_column}=?, {disabled_column}=NULL WHERE id=?", (url, account_id)
            )
        )

    async def rotate_secret(self, account_id: int, secret: str, *, now: int) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE accounts SET previous_webhook_secret=webhook_secret, webhook_secret=?, secret_rotated_at=? "
                "WHERE id=?",
                (secret, now, account_id),
            )
        )

    async def add_api_key(self, key: ApiKey) -> None:
        await self._write(
            lambda c: c.execute(
                f"INSERT INTO api_keys ({_KEY_COLS}) VALUES (?,?,?,?,?,?,?)",
                (key.id, key.account_id, key.digest, key.prefix, key.label, key.created_at, key.revoked_at),
            )
        )

    async def list_api_keys(self, account_id: int) -> list[ApiKey]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_KEY_COLS} FROM api_keys WHERE account_id=? ORDER BY id", (account_id,)
            ).fetchall()
        )
        return [ApiKey(*r) for r in rows]

    async def revoke_api_key(self, account_id: int, key_id: int, at: int) -> bool:
        def revoke(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE api_keys SET revoked_at=? WHERE id=? AND account_id=? AND revoked_at IS NULL",
                (at, key_id, account_id),
            )
            return cur.rowcount == 1

        return await self._write(revoke)

    async def find_api_key(self, digest: str) -> tuple[ApiKey, Account] | None:
        def find(c: sqlite3.Connection) -> tuple[ApiKey, Account] | None:
            row = c.execute(
                f"SELECT {_KEY_COLS} FROM api_keys WHERE digest=? AND revoked_at IS NULL", (digest,)
            ).fetchone()
            if row is None:
                return None
            key = ApiKey(*row)
            account = _select_account(c, "id", key.account_id)
            return None if account is None else (key, account)

        return await self._read(find)

    # messages

    async def accept(self, message: NewMessage, destinations: list[NewDestination], errors: list[NewErrorLog]) -> int:
        return await self._write(_accept, message, destinations, errors)

    async def get_message(self, account_id: int, message_id: int) -> MessageView | None:
        return await self._read(_select_message, account_id, "id=?", message_id)

    async def find_message_by_reference(self, account_id: int, reference_id: str) -> MessageView | None:
        return await self._read(_select_message, account_id, "reference_id=?", reference_id)

    async def history(self, destination_id: int) -> list[HistoryEntry]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT status, at, detail FROM status_history WHERE destination_id=? ORDER BY id",
                (destination_id,),
            ).fetchall()
        )
        return [HistoryEntry(*r) for r in rows]

    # the work queue

    async def claim(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedDestination]:
        return await self._write(_claim, now, limit, lease_ms)

    async def finish(self, outcomes: list[Outcome], *, now: int) -> None:
        if outcomes:
            await self._write(_finish, outcomes, now)

    async def apply_receipts(self, receipts: list[Receipt], *, now: int) -> list[Receipt]:
        if not receipts:
            return []
        return await self._write(_apply_receipts, receipts, now)

    async def retry_held_receipts(self, *, now: int, drop_before: int) -> HeldReceipts:
        return await self._write(_retry_held_receipts, now, drop_before)

    async def watch_for_work(self, wake: Callable[[], None]) -> None:
        return None  # one process: the service wakes its worker directly

    # the callback outbox

    async def claim_callbacks(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedCallback]:
        return await self._write(_claim_callbacks, now, limit, lease_ms)

    async def finish_callbacks(self, results: list[CallbackResult]) -> None:
        if results:
            await self._write(_finish_callbacks, results)

    async def list_callbacks(
        self, account_id: int, *, state: CallbackState | None, limit: int, before_id: int | None = None
    ) -> list[CallbackView]:
        return await self._read(_list_callbacks, account_id, state, limit, before_id)

    async def get_callback(self, account_id: int, callback_id: int) -> CallbackView | None:
        return await self._read(_get_callback, account_id, callback_id)

    async def replay_callback(self, account_id: int, callback_id: int, *, now: int) -> Replay:
        def replay(c: sqlite3.Connection) -> Replay:
            row = c.execute(
                "SELECT state FROM callbacks WHERE id=? AND account_id=?", (callback_id, account_id)
            ).fetchone()
            if row is None:
                return "missing"
            if row[0] == CallbackState.PENDING.value:
                return "pending"
            c.execute(changes.REPLAY_CALLBACK.replace("$", "?"), (now, callback_id))  # ?1, ?2: numbered
            return "replayed"

        return await self._write(replay)

    async def pending_callbacks(self) -> int:
        row = await self._read(lambda c: c.execute("SELECT count(*) FROM callbacks WHERE state='pending'").fetchone())
        return int(row[0])

    async def in_flight(self, carrier: str, *, limit: int) -> list[InFlight]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT id, carrier_ref, e164, updated_at FROM destinations "
                "WHERE carrier=? AND carrier_ref IS NOT NULL AND status=? ORDER BY id LIMIT ?",
                (carrier, SmsStatus.SENT.value, limit),
            ).fetchall()
        )
        return [InFlight(*r) for r in rows]

    # inbound messages

    async def store_inbound(self, messages: list[InboundMessage]) -> None:
        if messages:
            await self._write(_insert_rows, "inbound_messages", _INBOUND_COLUMNS, len(InboundMessage._fields), messages)

    async def list_inbound(self, *, limit: int, before_id: int | None = None) -> list[StoredInbound]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT id, {_INBOUND_COLUMNS} FROM inbound_messages WHERE ? IS NULL OR id < ? ORDER BY id DESC "
                "LIMIT ?",
                (before_id, before_id, limit),
            ).fetchall()
        )
        return [StoredInbound(*r) for r in rows]

    # voice (store/sqlite_calls.py)

    async def accept_calls(self, request: NewCallRequest, calls: list[NewCall]) -> int:
        return await self._write(sqlite_calls.accept_calls, request, calls)

    async def get_call_request(self, account_id: int, request_id: int) -> CallRequestView | None:
        return await self._read(sqlite_calls.select_call_request, account_id, "id=?", request_id)

    async def find_call_request_by_reference(self, account_id: int, reference_id: str) -> CallRequestView | None:
        return await self._read(sqlite_calls.select_call_request, account_id, "reference_id=?", reference_id)

    async def claim_calls(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedCall]:
        return await self._write(sqlite_calls.claim_calls, now, limit, lease_ms)

    async def progress_calls(self, changes: list[CallProgress]) -> list[int]:
        return await self._write(sqlite_calls.progress_calls, changes) if changes else []

    async def end_calls(self, ends: list[CallEnd]) -> None:
        if ends:
            await self._write(sqlite_calls.end_calls, ends)

    async def cancel_calls(
        self, account_id: int, request_id: int, *, mobile_no: str | None = None, now: int
    ) -> CancelResult | None:
        return await self._write(sqlite_calls.cancel_calls, account_id, request_id, mobile_no, now)

    async def cancels_requested(self, call_ids: list[int]) -> list[int]:
        return await self._read(sqlite_calls.cancels_requested, call_ids) if call_ids else []

    async def create_campaign(self, campaign: Campaign, audio: bytes) -> None:
        await self._write(sqlite_calls.create_campaign, campaign, audio)

    async def get_campaign(self, account_id: int, campaign_id: str) -> Campaign | None:
        return await self._read(sqlite_calls.get_campaign, account_id, campaign_id)

    async def campaign_audio(self, campaign_id: str) -> bytes | None:
        return await self._read(sqlite_calls.campaign_audio, campaign_id)

    async def list_campaigns(self, account_id: int) -> list[Campaign]:
        return await self._read(sqlite_calls.list_campaigns, account_id)

    async def delete_campaign(self, account_id: int, campaign_id: str, *, now: int) -> bool:
        return await self._write(sqlite_calls.delete_campaign, account_id, campaign_id, now)


_ACCOUNT_COLS = (
    "id, name, sms_callback_url, voice_callback_url, webhook_secret, created_at, previous_webhook_secret, "
    "secret_rotated_at, sms_callback_disabled, voice_callback_disabled"
)
_KEY_COLS = "id, account_id, digest, prefix, label, created_at, revoked_at"
_DEST_VIEW_COLS = (
    "id, position, mobile_no, e164, status, error, error_log_id, updated_at, delivered_at, carrier, sequence"
)
_MESSAGE_VIEW_COLS = (
    "id, account_id, reference_id, sender, body, encoding, segments, created_at, schedule_at, expires_at"
)


def _insert_account(c: sqlite3.Connection, a: Account) -> None:
    c.execute(
        f"INSERT INTO accounts ({_ACCOUNT_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            a.id,
            a.name,
            a.sms_callback_url,
            a.voice_callback_url,
            a.webhook_secret,
            a.created_at,
            a.previous_webhook_secret,
            a.secret_rotated_at,
            a.sms_callback_disabled,
            a.voice_callback_disabled,
        ),
    )


def _select_account(c: sqlite3.Connection, column: str, value: object) -> Account | None:
    row = c.execute(f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE {column}=?", (value,)).fetchone()
    return None if row is None else Account(*row)


_MESSAGE_COLUMNS = (
    "id, account_id, reference_id, sender, body, encoding, segments, callback, callback_url, "
    "destination_count, created_at, schedule_at, expires_at, idempotency_key"
)
_DESTINATION_COLUMNS = "id, message_id, position, mobile_no, e164, status, error, error_log_id, due_at, updated_at"
_ERROR_LOG_COLUMNS = "id, account_id, destination_id, code, text, at"
_INBOUND_COLUMNS = ", ".join(InboundMessage._fields)


_encode = msgspec.json.Encoder().encode


@functools.cache
def _json_insert(table: str, columns: str, width: int) -> str:
    values = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(width))
    return f"INSERT INTO {table} ({columns}) SELECT {values} FROM json_each(?)"


def _insert_rows(c: sqlite3.Connection, table: str, columns: str, width: int, rows: Sequence[Sequence[Any]]) -> None:
    """INSERT any number of rows with one statement and one bound parameter: the rows as a JSON array that
    SQLite unpacks itself. Binding values one by one holds the GIL (≈ 90 ns each, measured), while SQLite
    works with the GIL released, so this keeps the event loop running while the writer writes."""
    c.execute(_json_insert(table, columns, width), (_encode(rows),))


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


def _insert_requests(
    c: sqlite3.Connection, requests: list[tuple[NewMessage, list[NewDestination], list[NewErrorLog]]]
) -> None:
    messages = [
        (m.id, m.account_id, m.reference_id, m.sender, m.body, m.encoding, m.segments, m.callback, m.callback_url,
         m.destination_count, m.created_at, m.schedule_at, m.expires_at, m.idempotency_key)
        for m, _, _ in requests
    ]  # fmt: skip
    _insert_rows(c, "messages", _MESSAGE_COLUMNS, 14, messages)
    batch = [(m.id, m.status, m.due_at, m.created_at, ds) for m, ds, _ in requests]
    c.execute(_INSERT_DESTINATIONS, (_encode(batch),))
    errors = [e for _, _, es in requests for e in es]
    if errors:
        _insert_rows(c, "error_logs", _ERROR_LOG_COLUMNS, 6, errors)
        c.executemany(
            "UPDATE destinations SET status=?, error=?, error_log_id=?, due_at=NULL, sequence=1 WHERE id=?",
            [(SmsStatus.FAILED.value, e.text, e.id, e.destination_id) for e in errors],
        )
        events = [
            event for m, ds, es in requests for event in changes.accept_callbacks(m, [d.mobile_no for d in ds], es)
        ]
        if events:
            _insert_callbacks(c, events)


def _accept(c: sqlite3.Connection, m: NewMessage, destinations: list[NewDestination], errors: list[NewErrorLog]) -> int:
    """One request alone: the path of requests with an Idempotency-Key (the writer merges the others)."""
    if m.idempotency_key is not None:
        row = c.execute(
            "SELECT id FROM messages WHERE account_id=? AND idempotency_key=?",
            (m.account_id, m.idempotency_key),
        ).fetchone()
        if row is not None:
            return int(row[0])
    _insert_requests(c, [(m, destinations, errors)])
    return m.id


def _select_message(c: sqlite3.Connection, account_id: int, where: str, value: object) -> MessageView | None:
    row = c.execute(
        f"SELECT {_MESSAGE_VIEW_COLS}, destination_count FROM messages WHERE account_id=? AND {where} "
        "ORDER BY id DESC LIMIT 1",
        (account_id, value),
    ).fetchone()
    if row is None:
        return None
    dests = c.execute(
        f"SELECT {_DEST_VIEW_COLS} FROM destinations WHERE id > ? AND id <= ? ORDER BY id",
        (row[0], row[0] + row[-1]),
    ).fetchall()
    return MessageView(
        *row[:-1],
        destinations=[DestinationView(*d[:4], SmsStatus(d[4]), *d[5:]) for d in dests],  # type: ignore[misc, call-arg]
    )


# The worker's writes, like the Send path's, hand SQLite one JSON document per statement (see
# _insert_rows): a claim, a batch of outcomes or of receipts is a few statements, not one per row.


# ... and reads that return many rows come back as one JSON document too (json_group_array): SQLite hands
# rows over one at a time, letting go of the GIL for each and winning it back from the event loop (up to a
# switch interval each time), so a 500-row claim fetched row by row kept the writer, and every request
# waiting on its commit, waiting; msgspec then builds the records in C.

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
_decode_current = msgspec.json.Decoder(list[changes.Current]).decode
_decode_current_by_ref = msgspec.json.Decoder(list[tuple[str, str, changes.Current]]).decode


def _claim(c: sqlite3.Connection, now: int, limit: int, lease_ms: int) -> list[ClaimedDestination]:
    claimed = _decode_claimed(c.execute(_CLAIM, (now, limit)).fetchone()[0])
    if claimed:
        c.execute(
            "UPDATE destinations SET due_at=?, attempts=attempts+1 WHERE id IN (SELECT value FROM json_each(?))",
            (now + lease_ms, _encode([d.id for d in claimed])),
        )
    return claimed


def _current_by_id(c: sqlite3.Connection, ids: list[int]) -> dict[int, changes.Current]:
    rows = c.execute(
        f"SELECT json_group_array(json_array({changes.CURRENT_COLUMNS})) "
        "FROM destinations d JOIN messages m ON m.id = d.message_id WHERE d.id IN (SELECT value FROM json_each(?))",
        (_encode(ids),),
    ).fetchone()[0]
    return {r.id: r for r in _decode_current(rows)}


def _json_columns(*names: str) -> str:
    return ", ".join(f"json_extract(value, '$[{i}]') AS {name}" for i, name in enumerate(names))


_UPDATE_STATUS = f"""
UPDATE destinations SET status = u.status, error = COALESCE(u.error, destinations.error),
    carrier = COALESCE(u.carrier, destinations.carrier),
    carrier_ref = COALESCE(u.carrier_ref, destinations.carrier_ref),
    sequence = u.sequence, updated_at = u.updated_at,
    delivered_at = COALESCE(u.delivered_at, destinations.delivered_at), due_at = NULL
FROM (SELECT {_json_columns(*changes.StatusUpdate._fields)} FROM json_each(?)) AS u
WHERE destinations.id = u.id
"""
_UPDATE_RETRY = f"""
UPDATE destinations SET due_at = r.due_at, error = r.error, updated_at = r.updated_at
FROM (SELECT {_json_columns(*changes.RetryUpdate._fields)} FROM json_each(?)) AS r
WHERE destinations.id = r.id
"""


_UPDATE_PARTS = f"""
UPDATE destination_parts SET status = u.status, updated_at = u.updated_at
FROM (SELECT {_json_columns(*changes.PartUpdate._fields)} FROM json_each(?)) AS u
WHERE destination_parts.destination_id = u.destination_id AND destination_parts.part = u.part
"""


def _apply_plan(c: sqlite3.Connection, plan: changes.Plan) -> None:
    plan = changes.one_per_row(plan)
    if plan.updates:
        c.execute(_UPDATE_STATUS, (_encode(plan.updates),))
    if plan.parts:
        _insert_rows(c, "destination_parts", changes.PART_COLUMNS, 6, plan.parts)
    if plan.part_updates:
        c.execute(_UPDATE_PARTS, (_encode(plan.part_updates),))
    if plan.retries:
        c.execute(_UPDATE_RETRY, (_encode(plan.retries),))
    if plan.history:
        _insert_rows(c, "status_history", "destination_id, status, at, detail", 4, plan.history)
    if plan.callbacks:
        _insert_callbacks(c, plan.callbacks)


def _finish(c: sqlite3.Connection, outcomes: list[Outcome], now: int) -> None:
    current = _current_by_id(c, [o.destination_id for o in outcomes])
    _apply_plan(c, changes.plan_outcomes(current, outcomes, now))


def _apply_receipts(c: sqlite3.Connection, receipts: list[Receipt], now: int) -> list[Receipt]:
    """Apply the receipts; those that match nothing are held (held_receipts) in the same transaction."""
    unmatched = _match_receipts(c, receipts, now)
    if unmatched:
        _insert_rows(c, "held_receipts", changes.HELD_COLUMNS, 5, changes.held_rows(unmatched, now))
    return unmatched


_decode_held = msgspec.json.Decoder(list[tuple[int, str, str, SmsStatus, str | None, int]]).decode


_HELD_DUE = changes.HELD_DUE.format(drop_before="?")


def _retry_held_receipts(c: sqlite3.Connection, now: int, drop_before: int) -> HeldReceipts:
    total = c.execute("SELECT count(*) FROM held_receipts").fetchone()[0]
    if not total:
        return HeldReceipts(0, [], 0)
    rows = c.execute(
        "SELECT json_group_array(json_array(id, carrier, carrier_ref, status, error, received_at)) "
        f"FROM (SELECT * FROM held_receipts h WHERE {_HELD_DUE} ORDER BY id)",
        (drop_before,),
    ).fetchone()[0]
    held = [changes.HeldRow(i, Receipt(carrier, ref, status, error), at)
            for i, carrier, ref, status, error, at in _decode_held(rows)]  # fmt: skip
    if not held:
        return HeldReceipts(0, [], total)
    unmatched = _match_receipts(c, [h.receipt for h in held], now)
    done, result = changes.settle_held(held, unmatched, drop_before, total)
    if done:
        c.execute("DELETE FROM held_receipts WHERE id IN (SELECT value FROM json_each(?))", (_encode(done),))
    return result


def _match_receipts(c: sqlite3.Connection, receipts: list[Receipt], now: int) -> list[Receipt]:
    """Apply the receipts that match a destination or a part; returns the others."""
    refs = _encode(receipts)  # [[carrier, carrier_ref, status, error], ...]: the queries read $[0] and $[1]
    rows = c.execute(
        f"SELECT json_group_array(json_array(carrier, carrier_ref, json(current))) FROM ("
        f"SELECT d.carrier, d.carrier_ref, json_array({changes.CURRENT_COLUMNS}) AS current FROM json_each(?) AS r "
        "JOIN destinations d ON d.carrier = json_extract(r.value, '$[0]') "
        "AND d.carrier_ref = json_extract(r.value, '$[1]') AND d.carrier_ref IS NOT NULL "
        "JOIN messages m ON m.id = d.message_id ORDER BY d.id)",
        (refs,),
    ).fetchone()[0]
    # Where destinations share a reference (an SMSC that used an id again), the newest one: the last.
    current = {(carrier, ref): row for carrier, ref, row in _decode_current_by_ref(rows)}
    # Every part of the destinations that a receipt's reference names a part of.
    part_rows = c.execute(
        "SELECT destination_id, part, carrier, carrier_ref, status FROM destination_parts "
        "WHERE destination_id IN (SELECT p.destination_id FROM json_each(?) AS r "
        "JOIN destination_parts p ON p.carrier = json_extract(r.value, '$[0]') "
        "AND p.carrier_ref = json_extract(r.value, '$[1]'))",
        (refs,),
    ).fetchall()
    parts = changes.NO_PARTS
    if part_rows:
        parts = changes.parts_from_rows(part_rows, _current_by_id(c, sorted({r[0] for r in part_rows})))
    plan, unmatched = changes.plan_receipts(current, receipts, now, parts)
    _apply_plan(c, plan)
    return unmatched


# The callback outbox (store/schema.py, "callbacks"): an event is due at once only when it is the first of
# its subject in this write and no earlier event of that subject is still pending; otherwise it waits
# (due_at NULL) until _finish_callbacks makes it due.
_INSERT_CALLBACKS = f"""
INSERT INTO callbacks (account_id, kind, subject_id, sequence, url, body, state, due_at, attempts, created_at,
                       updated_at)
SELECT e.account_id, e.kind, e.subject_id, e.sequence, e.url, e.body, 'pending',
       CASE WHEN e.first AND NOT EXISTS (
           SELECT 1 FROM callbacks p WHERE p.subject_id = e.subject_id AND p.state = 'pending'
       ) THEN e.created_at END,
       0, e.created_at, e.created_at
FROM (SELECT {_json_columns(*CallbackEvent._fields)} FROM json_each(?)) AS e
"""


def _insert_callbacks(c: sqlite3.Connection, events: list[CallbackEvent]) -> None:
    c.execute(_INSERT_CALLBACKS, (_encode(events),))


def _claim_callbacks(c: sqlite3.Connection, now: int, limit: int, lease_ms: int) -> list[ClaimedCallback]:
    rows = c.execute(
        f"SELECT {changes.CLAIM_CALLBACK_COLUMNS} FROM callbacks c JOIN accounts a ON a.id = c.account_id "
        "WHERE c.due_at IS NOT NULL AND c.due_at <= ? ORDER BY c.due_at LIMIT ?",
        (now, limit),
    ).fetchall()
    if not rows:
        return []
    c.execute(
        "UPDATE callbacks SET due_at=?, attempts=attempts+1 WHERE id IN (SELECT value FROM json_each(?))",
        (now + lease_ms, _encode([r[0] for r in rows])),
    )
    return [changes.claimed_callback(r) for r in rows]


_UPDATE_CALLBACKS = f"""
UPDATE callbacks SET state = u.state, due_at = u.due_at, last_status = u.last_status, last_error = u.last_error,
    updated_at = u.updated_at
FROM (SELECT {_json_columns(*changes.CallbackUpdate._fields)} FROM json_each(?)) AS u
WHERE callbacks.id = u.id
"""
# The next event of each finished subject: its oldest pending one, unless that one is due already (replayed).
_PROMOTE_CALLBACKS = """
UPDATE callbacks SET due_at = ? WHERE due_at IS NULL AND id IN (
    SELECT (SELECT n.id FROM callbacks n WHERE n.subject_id = s.value AND n.state = 'pending'
            ORDER BY n.sequence LIMIT 1)
    FROM json_each(?) AS s
)
"""


def _finish_callbacks(c: sqlite3.Connection, results: list[CallbackResult]) -> None:
    rows = c.execute(
        "SELECT id, attempts, state, subject_id FROM callbacks WHERE id IN (SELECT value FROM json_each(?))",
        (_encode([r.callback_id for r in results]),),
    )
    plan = changes.plan_callback_results({r[0]: changes.CallbackCurrent(*r) for r in rows}, results)
    if plan.attempts:
        _insert_rows(c, "callback_attempts", "callback_id, at, url, status_code, latency_ms, error", 6, plan.attempts)
    if plan.deferrals:
        c.executemany("UPDATE callbacks SET due_at=?, attempts=attempts-1 WHERE id=?", plan.deferrals)
    if plan.updates:
        c.execute(_UPDATE_CALLBACKS, (_encode(plan.updates),))
    if plan.finished_subjects:
        c.execute(_PROMOTE_CALLBACKS, (max(r.at for r in results), _encode(plan.finished_subjects)))
    for account_id, kind, url, reason in plan.disable:
        url_column, disabled_column = changes.account_url_columns(kind)
        # Only if it is still the URL that answered 410: it may have been changed meanwhile.
        c.execute(f"UPDATE accounts SET {disabled_column}=? WHERE id=? AND {url_column}=?", (reason, account_id, url))


_CALLBACK_VIEW_COLS = changes.CALLBACK_VIEW_COLUMNS


def _callback_view(row: Sequence[Any], history: list[CallbackAttempt]) -> CallbackView:
    return CallbackView(*row[:7], CallbackState(row[7]), *row[8:], history=history)  # type: ignore[misc, call-arg]


def _list_callbacks(
    c: sqlite3.Connection, account_id: int, state: CallbackState | None, limit: int, before_id: int | None
) -> list[CallbackView]:
    where, args = "account_id=?", list[object]([account_id])
    if state is not None:
        where, args = where + " AND state=?", [*args, state.value]
    if before_id is not None:
        where, args = where + " AND id<?", [*args, before_id]
    rows = c.execute(
        f"SELECT {_CALLBACK_VIEW_COLS} FROM callbacks WHERE {where} ORDER BY id DESC LIMIT ?", (*args, limit)
    ).fetchall()
    return [_callback_view(r, []) for r in rows]


def _get_callback(c: sqlite3.Connection, account_id: int, callback_id: int) -> CallbackView | None:
    row = c.execute(
        f"SELECT {_CALLBACK_VIEW_COLS} FROM callbacks WHERE id=? AND account_id=?", (callback_id, account_id)
    ).fetchone()
    if row is None:
        return None
    attempts = c.execute(
        "SELECT at, url, status_code, latency_ms, error FROM callback_attempts WHERE callback_id=? ORDER BY id",
        (callback_id,),
    ).fetchall()
    return _callback_view(row, [CallbackAttempt(*a) for a in attempts])
