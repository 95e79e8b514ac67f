"""The cluster store: PostgreSQL through an asyncpg pool, shared by any number of api and worker processes.

Workers claim with `FOR UPDATE SKIP LOCKED`, so two processes never hold the same destination at once.
`finish` and `apply_receipts` lock the rows they change (in id order, so two of them cannot deadlock),
decide with `changes` (the same decision as the SQLite store) and write the plan with set-based statements
over `unnest` arrays. `retry_held_receipts` takes the held receipts with `FOR UPDATE SKIP LOCKED` too, so
two workers never apply the same one (and never wait for each other's: only the destinations are waited
for). Every statement runs through `_connection`, the one place asyncpg's errors become `StoreError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from switchboard.domain.statuses import SmsStatus
from switchboard.errors import DuplicateName, StoreError
from switchboard.store import changes, postgres_calls
from switchboard.store.base import Replay
from switchboard.store.records import (
    Account,
    ApiKey,
    CallbackAttempt,
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

log = logging.getLogger("switchboard.store.postgres")

_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
"""Server errors, client-side misuse and lost connections (TimeoutError is an OSError)."""


def _translate(e: BaseException) -> StoreError:
    if isinstance(e, asyncpg.UniqueViolationError) and e.constraint_name == "accounts_name_key":
        return DuplicateName("an account with that name exists already")
    return StoreError(f"postgresql: {type(e).__name__}: {e}")


class PostgresStore:
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
                    await self._execute(_NOTIFY_WORK)
                except StoreError as e:  # the workers still poll: the work is found, later
                    log.warning("could not notify the workers of new work: %s", e)
                if not self._announce_again:
                    return
        finally:
            self._announcing = None

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

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        async with self._connection() as conn:
            rows: list[Any] = await conn.fetch(query, *args)
            return rows

    async def _fetchrow(self, query: str, *args: Any) -> Any:
        async with self._connection() as conn:
            return await conn.fetchrow(query, *args)

    async def _execute(self, query: str, *args: Any) -> None:
        async with self._connection() as conn:
            await conn.execute(query, *args)

    async def ping(self) -> None:
        await self._fetchrow("SELECT 1")

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
        for _ in range(1024):
            node = int(await self._node_holder.fetchval("SELECT nextval('switchboard_node_seq') % 1024"))
            if await self._node_holder.fetchval("SELECT pg_try_advisory_lock($1, $2)", _NODE_LOCKS, node):
                self._node = node
                return node
        raise StoreError("all 1,024 id nodes are held by live processes")

    # accounts and keys

    async def create_account(self, account: Account) -> None:
        a = account
        await self._execute(
            f"INSERT INTO accounts ({_ACCOUNT_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
            a.id, a.name, a.sms_callback_url, a.voice_callback_url, a.webhook_secret, a.created_at,
            a.previous_webhook_secret, a.secret_rotated_at, a.sms_callback_disabled, a.voice_callback_disabled,
        )  # fmt: skip

    async def get_account(self, account_id: int) -> Account | None:
        row = await self._fetchrow(f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE id=$1", account_id)
        return None if row is None else Account(*row)

    async def get_account_by_name(self, name: str) -> Account | None:
        row = await self._fetchrow(f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE name=$1", name)
        return None if row is None else Account(*row)

    async def list_accounts(self) -> list[Account]:
        return [Account(*r) for r in await self._fetch(f"SELECT {_ACCOUNT_COLS} FROM accounts ORDER BY id")]

    async def set_callback_url(self, account_id: int, kind: str, url: str | None) -> None:
        url_column, disabled_column = changes.account_url_columns(kind)
        await self._execute(f"UPDATE accounts SET {url_column}=$1, {disabled_column}=NULL WHERE id=$2", url, account_id)

    async def rotate_secret(self, account_id: int, secret: str, *, now: int) -> None:
        await self._execute(
            "UPDATE accounts SET previous_webhook_secret=webhook_secret, webhook_secret=$1, secret_rotated_at=$2 "
            "WHERE id=$3",
            secret, now, account_id,
        )  # fmt: skip

    async def add_api_key(self, key: ApiKey) -> None:
        k = key
        await self._execute(
            f"INSERT INTO api_keys ({_KEY_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7)",
            k.id, k.account_id, k.digest, k.prefix, k.label, k.created_at, k.revoked_at,
        )  # fmt: skip

    async def list_api_keys(self, account_id: int) -> list[ApiKey]:
        rows = await self._fetch(f"SELECT {_KEY_COLS} FROM api_keys WHERE account_id=$1 ORDER BY id", account_id)
        return [ApiKey(*r) for r in rows]

    async def revoke_api_key(self, account_id: int, key_id: int, at: int) -> bool:
        row = await self._fetchrow(
            "UPDATE api_keys SET revoked_at=$1 WHERE id=$2 AND account_id=$3 AND revoked_at IS NULL "
            "RETURNING id",
            at, key_id, account_id,
        )  # fmt: skip
        return row is not None

    async def find_api_key(self, digest: str) -> tuple[ApiKey, Account] | None:
        row = await self._fetchrow(_FIND_KEY, digest)
        return None if row is None else (ApiKey(*row[:7]), Account(*row[7:]))

    # messages

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
        rows: list[tuple[Any, ...]] = []
        for m, destinations, _ in group:
            rows.extend(
                (m.id + 1 + i, m.id, i, d.mobile_no, d.e164, m.status, m.due_at, m.created_at)
                for i, d in enumerate(destinations)
            )
        async with self._connection() as conn:
            inserted = {
                r[0]
                for r in await conn.fetch(
                    _INSERT_MESSAGES,
                    *_columns([
                        (m.id, m.account_id, m.reference_id, m.sender, m.body, m.encoding, m.segments, m.callback,
                         m.callback_url, m.destination_count, m.created_at, m.schedule_at, m.expires_at,
                         m.idempotency_key)
                        for m in messages
                    ]),
                    *(_columns(rows) if rows else [[]] * 8),
                )
            }  # fmt: skip
            ids = []
            for m in messages:
                if m.id in inserted:
                    ids.append(m.id)
                    continue
                # The account used this idempotency key before (perhaps earlier in this group, or in a
                # transaction that committed while this insert waited on the index): that message's id.
                existing = await conn.fetchval(
                    "SELECT id FROM messages WHERE account_id=$1 AND idempotency_key=$2", m.account_id,
                    m.idempotency_key,
                )  # fmt: skip
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
        numbers, e164s = _columns(destinations) if destinations else ([], [])
        # The message and its destinations in one statement: one round trip, and no BEGIN and COMMIT of
        # its own, unless invalid numbers have more to write in the same transaction.
        async with self._connection(transaction=bool(errors)) as conn:
            inserted = await conn.fetchval(
                _INSERT_MESSAGE,
                m.id, m.account_id, m.reference_id, m.sender, m.body, m.encoding, m.segments, m.callback,
                m.callback_url, m.destination_count, m.created_at, m.schedule_at, m.expires_at,
                m.idempotency_key, m.status, m.due_at, numbers, e164s,
            )  # fmt: skip
            if inserted is None:
                # The account used this idempotency key before (perhaps in a transaction that committed
                # while this insert waited on the index): answer with that message, store nothing.
                existing = await conn.fetchrow(
                    "SELECT id FROM messages WHERE account_id=$1 AND idempotency_key=$2",
                    m.account_id, m.idempotency_key,
                )  # fmt: skip
                if existing is None:
                    raise StoreError("idempotency key conflict without a message")
                return int(existing[0])
            if errors:
                await conn.execute(_INSERT_ERROR_LOGS, *_columns(errors))
                await conn.execute(
                    _FAIL_DESTINATIONS, SmsStatus.FAILED.value, [e.destination_id for e in errors],
                    [e.text for e in errors], [e.id for e in errors],
                )  # fmt: skip
                events = changes.accept_callbacks(m, [d.mobile_no for d in destinations], errors)
                if events:  # new destinations: no other transaction sees them, nothing to lock
                    await conn.execute(
                        _INSERT_CALLBACKS, *_columns([e[:-1] for e in events]), [e.first for e in events]
                    )
        if m.schedule_at is None:
            self._announce_work()  # to every worker process listening (watch_for_work)
        return m.id

    async def get_message(self, account_id: int, message_id: int) -> MessageView | None:
        return await self._select_message(account_id, "id=$2", message_id)

    async def find_message_by_reference(self, account_id: int, reference_id: str) -> MessageView | None:
        return await self._select_message(account_id, "reference_id=$2", reference_id)

    async def _select_message(self, account_id: int, where: str, value: object) -> MessageView | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_MESSAGE_VIEW_COLS}, destination_count FROM messages WHERE account_id=$1 AND {where} "
                "ORDER BY id DESC LIMIT 1",
                account_id, value,
            )  # fmt: skip
            if row is None:
                return None
            # A message's destinations are the ids right after its own (Store.accept).
            dests = await conn.fetch(
                f"SELECT {_DEST_VIEW_COLS} FROM destinations WHERE id > $1 AND id <= $2 ORDER BY id",
                row["id"], row["id"] + row["destination_count"],
            )  # fmt: skip
        fields = dict(row)
        del fields["destination_count"]
        return MessageView(
            **fields,
            destinations=[DestinationView(**dict(d, status=SmsStatus(d["status"]))) for d in dests],
        )

    async def history(self, destination_id: int) -> list[HistoryEntry]:
        rows = await self._fetch(
            "SELECT status, at, detail FROM status_history WHERE destination_id=$1 ORDER BY id",
            destination_id,
        )
        return [HistoryEntry(*r) for r in rows]

    # the work queue

    async def claim(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedDestination]:
        rows = await self._fetch(_CLAIM, now, limit, now + lease_ms)
        return [ClaimedDestination(**dict(r, status=SmsStatus(r["status"]))) for r in rows]

    async def finish(self, outcomes: list[Outcome], *, now: int) -> None:
        if not outcomes:
            return
        ids = sorted({o.destination_id for o in outcomes})
        async with self._connection(transaction=True) as conn:
            rows = await conn.fetch(
                f"SELECT {changes.CURRENT_COLUMNS} FROM destinations d JOIN messages m ON m.id = d.message_id "
                "WHERE d.id = ANY($1::bigint[]) ORDER BY d.id FOR UPDATE OF d",
                ids,
            )
            current = {r[0]: changes.Current(*r) for r in rows}
            await _apply_plan(conn, changes.plan_outcomes(current, outcomes, now))

    async def apply_receipts(self, receipts: list[Receipt], *, now: int) -> list[Receipt]:
        if not receipts:
            return []
        async with self._connection(transaction=True) as conn:
            unmatched = await _match_receipts(conn, receipts, now)
            if unmatched:  # held in this transaction: stored before the carrier acknowledges them
                await conn.execute(_INSERT_HELD, *_columns(changes.held_rows(unmatched, now)))
        return unmatched

    async def retry_held_receipts(self, *, now: int, drop_before: int) -> HeldReceipts:
        async with self._connection(transaction=True) as conn:
            # SKIP LOCKED: receipts another worker is matching right now are its own, never applied twice.
            total = int(await conn.fetchval("SELECT count(*) FROM held_receipts"))
            if not total:
                return HeldReceipts(0, [], 0)
            rows = await conn.fetch(
                "SELECT id, carrier, carrier_ref, status, error, received_at FROM held_receipts h "
                f"WHERE {_HELD_DUE} ORDER BY id FOR UPDATE OF h SKIP LOCKED",
                drop_before,
            )
            if not rows:
                return HeldReceipts(0, [], total)
            held = [changes.HeldRow(r[0], Receipt(r[1], r[2], SmsStatus(r[3]), r[4]), r[5]) for r in rows]
            unmatched = await _match_receipts(conn, [h.receipt for h in held], now)
            done, result = changes.settle_held(held, unmatched, drop_before, total)
            if done:
                await conn.execute("DELETE FROM held_receipts WHERE id = ANY($1::bigint[])", done)
        return result

    # the callback outbox

    async def claim_callbacks(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedCallback]:
        rows = await self._fetch(_CLAIM_CALLBACKS, now, limit, now + lease_ms)
        return [changes.claimed_callback(tuple(r)) for r in rows]

    async def finish_callbacks(self, results: list[CallbackResult]) -> None:
        if not results:
            return
        async with self._connection(transaction=True) as conn:
            ids = sorted({r.callback_id for r in results})
            subjects = await conn.fetch("SELECT subject_id FROM callbacks WHERE id = ANY($1::bigint[])", ids)
            await _lock_subjects(conn, [r[0] for r in subjects])
            rows = await conn.fetch(
                "SELECT id, attempts, state, subject_id FROM callbacks WHERE id = ANY($1::bigint[]) "
                "ORDER BY id FOR UPDATE",
                ids,
            )
            plan = changes.plan_callback_results({r[0]: changes.CallbackCurrent(*r) for r in rows}, results)
            if plan.attempts:
                await conn.execute(_INSERT_ATTEMPTS, *_columns(plan.attempts))
            if plan.deferrals:
                await conn.execute(
                    "UPDATE callbacks c SET due_at=u.due_at, attempts=c.attempts-1 "
                    "FROM unnest($1::bigint[], $2::bigint[]) AS u(due_at, id) WHERE c.id = u.id",
                    *_columns(plan.deferrals),
                )
            if plan.updates:
                await conn.execute(_UPDATE_CALLBACKS, *_columns(plan.updates))
            if plan.finished_subjects:
                await conn.execute(_PROMOTE_CALLBACKS, max(r.at for r in results), plan.finished_subjects)
            for account_id, kind, url, reason in plan.disable:
                url_column, disabled_column = changes.account_url_columns(kind)
                # Only if it is still the URL that answered 410: it may have been changed meanwhile.
                await conn.execute(
                    f"UPDATE accounts SET {disabled_column}=$1 WHERE id=$2 AND {url_column}=$3", reason, account_id, url
                )

    async def list_callbacks(
        self, account_id: int, *, state: CallbackState | None, limit: int, before_id: int | None = None
    ) -> list[CallbackView]:
        rows = await self._fetch(
            f"SELECT {_CALLBACK_VIEW_COLS} FROM callbacks WHERE account_id=$1 AND ($2::text IS NULL OR state=$2) "
            "AND ($3::bigint IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
            account_id, None if state is None else state.value, before_id, limit,
        )  # fmt: skip
        return [_callback_view(r, []) for r in rows]

    async def get_callback(self, account_id: int, callback_id: int) -> CallbackView | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_CALLBACK_VIEW_COLS} FROM callbacks WHERE id=$1 AND account_id=$2", callback_id, account_id
            )
            if row is None:
                return None
            attempts = await conn.fetch(
                "SELECT at, url, status_code, latency_ms, error FROM callback_attempts WHERE callback_id=$1 "
                "ORDER BY id",
                callback_id,
            )
        return _callback_view(row, [CallbackAttempt(*a) for a in attempts])

    async def replay_callback(self, account_id: int, callback_id: int, *, now: int) -> Replay:
        async with self._connection(transaction=True) as conn:
            row = await conn.fetchrow(
                "SELECT subject_id FROM callbacks WHERE id=$1 AND account_id=$2", callback_id, account_id
            )
            if row is None:
                return "missing"
            await _lock_subjects(conn, [row[0]])
            state = await conn.fetchval("SELECT state FROM callbacks WHERE id=$1 FOR UPDATE", callback_id)
            if state == CallbackState.PENDING.value:
                return "pending"
            await conn.execute(changes.REPLAY_CALLBACK, now, callback_id)
        return "replayed"

    async def pending_callbacks(self) -> int:
        return int((await self._fetchrow("SELECT count(*) FROM callbacks WHERE state='pending'"))[0])

    async def in_flight(self, carrier: str, *, limit: int) -> list[InFlight]:
        rows = await self._fetch(
            "SELECT id, carrier_ref, e164, updated_at FROM destinations "
            "WHERE carrier=$1 AND carrier_ref IS NOT NULL AND status=$2 ORDER BY id LIMIT $3",
            carrier, SmsStatus.SENT.value, limit,
        )  # fmt: skip
        return [InFlight(*r) for r in rows]

    # inbound messages

    async def store_inbound(self, messages: list[InboundMessage]) -> None:
        if messages:
            await self._execute(_INSERT_INBOUND, *_columns(messages))

    async def list_inbound(self, *, limit: int, before_id: int | None = None) -> list[StoredInbound]:
        rows = await self._fetch(
            f"SELECT id, {_INBOUND_COLUMNS} FROM inbound_messages WHERE ($1::bigint IS NULL OR id < $1) "
            "ORDER BY id DESC LIMIT $2",
            before_id, limit,
        )  # fmt: skip
        return [StoredInbound(*r) for r in rows]

    # voice (store/postgres_calls.py)

    async def accept_calls(self, request: NewCallRequest, calls: list[NewCall]) -> int:
        async with self._connection(transaction=True) as conn:
            request_id, queued = await postgres_calls.accept_calls(conn, request, calls)
        if queued:
            self._announce_work()  # after the commit, as for a message
        return request_id

    async def get_call_request(self, account_id: int, request_id: int) -> CallRequestView | None:
        async with self._connection() as conn:
            return await postgres_calls.select_call_request(conn, account_id, "id=$2", request_id)

    async def find_call_request_by_reference(self, account_id: int, reference_id: str) -> CallRequestView | None:
        async with self._connection() as conn:
            return await postgres_calls.select_call_request(conn, account_id, "reference_id=$2", reference_id)

    async def claim_calls(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedCall]:
        async with self._connection() as conn:
            return await postgres_calls.claim_calls(conn, now, limit, lease_ms)

    async def progress_calls(self, changes: list[CallProgress]) -> list[int]:
        if not changes:
            return []
        async with self._connection(transaction=True) as conn:
            return await postgres_calls.progress_calls(conn, changes)

    async def end_calls(self, ends: list[CallEnd]) -> None:
        if ends:
            async with self._connection(transaction=True) as conn:
                await postgres_calls.end_calls(conn, ends)

    async def cancel_calls(
        self, account_id: int, request_id: int, *, mobile_no: str | None = None, now: int
    ) -> CancelResult | None:
        async with self._connection(transaction=True) as conn:
            return await postgres_calls.cancel_calls(conn, account_id, request_id, mobile_no, now)

    async def cancels_requested(self, call_ids: list[int]) -> list[int]:
        if not call_ids:
            return []
        async with self._connection() as conn:
            return await postgres_calls.cancels_requested(conn, call_ids)

    async def create_campaign(self, campaign: Campaign, audio: bytes) -> None:
        async with self._connection() as conn:
            await postgres_calls.create_campaign(conn, campaign, audio)

    async def get_campaign(self, account_id: int, campaign_id: str) -> Campaign | None:
        async with self._connection() as conn:
            return await postgres_calls.get_campaign(conn, account_id, campaign_id)

    async def campaign_audio(self, campaign_id: str) -> bytes | None:
        async with self._connection() as conn:
            return await postgres_calls.campaign_audio(conn, campaign_id)

    async def list_campaigns(self, account_id: int) -> list[Campaign]:
        async with self._connection() as conn:
            return await postgres_calls.list_campaigns(conn, account_id)

    async def delete_campaign(self, account_id: int, campaign_id: str, *, now: int) -> bool:
        async with self._connection() as conn:
            return await postgres_calls.delete_campaign(conn, account_id, campaign_id, now)


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

_FIND_KEY = (
    "SELECT k.id, k.account_id, k.digest, k.prefix, k.label, k.created_at, k.revoked_at, "
    "a.id, a.name, a.sms_callback_url, a.voice_callback_url, a.webhook_secret, a.created_at, "
    "a.previous_webhook_secret, a.secret_rotated_at, a.sms_callback_disabled, a.voice_callback_disabled "
    "FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.digest=$1 AND k.revoked_at IS NULL"
)

_HELD_DUE = changes.HELD_DUE.format(drop_before="$1")
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
_INSERT_MESSAGE = """
WITH m AS (
    INSERT INTO messages (id, account_id, reference_id, sender, body, encoding, segments, callback,
        callback_url, destination_count, created_at, schedule_at, expires_at, idempotency_key)
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
_INSERT_MESSAGES = """
WITH m AS (
    INSERT INTO messages (id, account_id, reference_id, sender, body, encoding, segments, callback,
        callback_url, destination_count, created_at, schedule_at, expires_at, idempotency_key)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::int[], $8::text[], $9::text[], $10::int[], $11::bigint[], $12::bigint[], $13::bigint[], $14::text[])
    ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
), d AS (
    INSERT INTO destinations (id, message_id, position, mobile_no, e164, status, due_at, updated_at)
    SELECT n.* FROM unnest($15::bigint[], $16::bigint[], $17::int[], $18::text[], $19::text[], $20::text[],
        $21::bigint[], $22::bigint[]) AS n(id, message_id, position, mobile_no, e164, status, due_at, updated_at)
    WHERE n.message_id IN (SELECT id FROM m)
)
SELECT id FROM m
"""
ACCEPT_WRITERS = 2
"""Group statements of accepts on their way at once per process: while one commits, the next group forms."""
ACCEPT_GROUP = 200
"""Accepts in one statement at most."""

_FAIL_DESTINATIONS = (
    "UPDATE destinations d SET status = $1, error = f.text, error_log_id = f.log_id, due_at = NULL, sequence = 1 "
    "FROM unnest($2::bigint[], $3::text[], $4::bigint[]) AS f(id, text, log_id) WHERE d.id = f.id"
)
_INSERT_ERROR_LOGS = (
    "INSERT INTO error_logs (id, account_id, destination_id, code, text, at) "
    "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bigint[])"
)

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

_IDS_BY_REFERENCE = (
    "SELECT d.id FROM destinations d JOIN unnest($1::text[], $2::text[]) AS r(carrier, carrier_ref) "
    "ON d.carrier = r.carrier AND d.carrier_ref = r.carrier_ref WHERE d.carrier_ref IS NOT NULL "
    "UNION SELECT p.destination_id FROM destination_parts p "
    "JOIN unnest($1::text[], $2::text[]) AS r(carrier, carrier_ref) "
    "ON p.carrier = r.carrier AND p.carrier_ref = r.carrier_ref"
)
_LOCK_BY_ID = (
    f"SELECT d.carrier, d.carrier_ref, {changes.CURRENT_COLUMNS} FROM destinations d "
    "JOIN messages m ON m.id = d.message_id "
    "WHERE d.id = ANY($1::bigint[]) ORDER BY d.id FOR UPDATE OF d"
)
_PARTS_OF = (
    "SELECT destination_id, part, carrier, carrier_ref, status FROM destination_parts "
    "WHERE destination_id = ANY($1::bigint[])"
)

_UPDATE_STATUS = (
    "UPDATE destinations d SET status=u.status, error=COALESCE(u.error, d.error), "
    "carrier=COALESCE(u.carrier, d.carrier), carrier_ref=COALESCE(u.carrier_ref, d.carrier_ref), "
    "sequence=u.sequence, updated_at=u.updated_at, delivered_at=COALESCE(u.delivered_at, d.delivered_at), "
    "due_at=NULL FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[], "
    "$7::bigint[], $8::bigint[]) AS u(status, error, carrier, carrier_ref, sequence, updated_at, "
    "delivered_at, id) WHERE d.id = u.id"
)
_UPDATE_RETRY = (
    "UPDATE destinations d SET due_at=u.due_at, error=u.error, updated_at=u.updated_at "
    "FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[]) AS u(due_at, error, updated_at, id) "
    "WHERE d.id = u.id"
)
_INSERT_PARTS = (
    f"INSERT INTO destination_parts ({changes.PART_COLUMNS}) "
    "SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::bigint[])"
)
_UPDATE_PARTS = (
    "UPDATE destination_parts p SET status=u.status, updated_at=u.updated_at "
    "FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::int[]) AS u(status, updated_at, destination_id, part) "
    "WHERE p.destination_id = u.destination_id AND p.part = u.part"
)
_INSERT_HISTORY = (
    "INSERT INTO status_history (destination_id, status, at, detail) "
    "SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[])"
)


async def _match_receipts(conn: Any, receipts: list[Receipt], now: int) -> list[Receipt]:
    """Apply the receipts that match a destination or a part; returns the others. In the caller's
    transaction."""
    keys = sorted({(r.carrier, r.carrier_ref) for r in receipts})
    carriers, refs = [k[0] for k in keys], [k[1] for k in keys]
    # The destinations the receipts name, by their own reference or a part's, locked in one statement in
    # id order (two transactions cannot deadlock); parts rows change only under their destination's lock,
    # so they are read after it.
    ids = [r[0] for r in await conn.fetch(_IDS_BY_REFERENCE, carriers, refs)]
    rows = await conn.fetch(_LOCK_BY_ID, ids) if ids else []
    wanted = set(keys)
    current: dict[tuple[str, str], changes.Current] = {}
    by_id: dict[int, changes.Current] = {}
    for r in rows:  # in id order: where two share a reference (an id used again), the newest, as on SQLite
        row = changes.Current(*r[2:])
        by_id[row.id] = row
        if (r[0], r[1]) in wanted:
            current[(r[0], r[1])] = row
    parts = changes.NO_PARTS
    if ids:
        part_rows = await conn.fetch(_PARTS_OF, ids)
        if part_rows:
            parts = changes.parts_from_rows(
                [tuple(p) for p in part_rows], {p[0]: by_id[p[0]] for p in part_rows if p[0] in by_id}
            )
    plan, unmatched = changes.plan_receipts(current, receipts, now, parts)
    await _apply_plan(conn, plan)
    return unmatched


# WITH ORDINALITY: ids are given in the order the receipts came (see _INSERT_INBOUND).
_INSERT_HELD = (
    f"INSERT INTO held_receipts ({changes.HELD_COLUMNS}) SELECT {changes.HELD_COLUMNS} "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) "
    f"WITH ORDINALITY AS h({changes.HELD_COLUMNS}, n) ORDER BY n"
)


async def _apply_plan(conn: Any, plan: changes.Plan) -> None:
    plan = changes.one_per_row(plan)
    if plan.updates:
        await conn.execute(_UPDATE_STATUS, *_columns(plan.updates))
    if plan.parts:
        await conn.execute(_INSERT_PARTS, *_columns(plan.parts))
    if plan.part_updates:
        await conn.execute(_UPDATE_PARTS, *_columns(plan.part_updates))
    if plan.retries:
        await conn.execute(_UPDATE_RETRY, *_columns(plan.retries))
    if plan.history:
        await conn.execute(_INSERT_HISTORY, *_columns(plan.history))
    if plan.callbacks:  # the caller locked the destinations (finish, apply_receipts): see _lock_subjects
        events = plan.callbacks
        await conn.execute(_INSERT_CALLBACKS, *_columns([e[:-1] for e in events]), [e.first for e in events])


async def _lock_subjects(conn: Any, subjects: list[int]) -> None:
    """Serialise, per destination, writing its new callbacks with finishing or replaying its pending one
    (until commit), by locking the destination rows, as `finish` and `apply_receipts` do before writing.

    A new callback is due at once only when no earlier one of its destination is pending, and finishing a
    callback makes the destination's next one due. Without a common lock each could miss the other's
    uncommitted row and leave a callback waiting for ever. Row locks, in id order so that two transactions
    cannot deadlock, and not advisory locks: those fill PostgreSQL's shared lock table on large batches.
    """
    await conn.execute(
        "SELECT 1 FROM destinations WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE", sorted(set(subjects))
    )


async def _keep_session(conn: Any) -> None:
    """The pool's reset: nothing. asyncpg's default sends `SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL` at every release, one more round trip per statement or transaction, to undo
    session state that no pool connection of this store makes (its advisory lock and its LISTEN have
    connections of their own; the pool rolls back an open transaction itself before this is called)."""


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows to one list per column, the arguments of an `unnest($1::t1[], $2::t2[], ...)`."""
    return [list(column) for column in zip(*rows, strict=True)]


# See the SQLite store's _INSERT_CALLBACKS: due at once only as the first of its subject with none pending.
_INSERT_CALLBACKS = (
    "INSERT INTO callbacks (account_id, kind, subject_id, sequence, url, body, state, due_at, attempts, "
    "created_at, updated_at) "
    "SELECT e.account_id, e.kind, e.subject_id, e.sequence, e.url, e.body, 'pending', "
    "CASE WHEN e.first AND NOT EXISTS (SELECT 1 FROM callbacks p WHERE p.subject_id = e.subject_id "
    "AND p.state = 'pending') THEN e.created_at END, 0, e.created_at, e.created_at "
    "FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::int[], $5::text[], $6::text[], $7::bigint[], "
    "$8::bool[]) AS e(account_id, kind, subject_id, sequence, url, body, created_at, first)"
)
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
_INSERT_ATTEMPTS = (
    "INSERT INTO callback_attempts (callback_id, at, url, status_code, latency_ms, error) "
    "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::int[], $6::text[])"
)
_UPDATE_CALLBACKS = (
    "UPDATE callbacks c SET state=u.state, due_at=u.due_at, last_status=u.last_status, last_error=u.last_error, "
    "updated_at=u.updated_at FROM unnest($1::text[], $2::bigint[], $3::int[], $4::text[], $5::bigint[], "
    "$6::bigint[]) AS u(state, due_at, last_status, last_error, updated_at, id) WHERE c.id = u.id"
)
_PROMOTE_CALLBACKS = (
    "UPDATE callbacks SET due_at = $1 WHERE due_at IS NULL AND id IN ("
    "SELECT (SELECT n.id FROM callbacks n WHERE n.subject_id = s.id AND n.state = 'pending' "
    "ORDER BY n.sequence LIMIT 1) FROM unnest($2::bigint[]) AS s(id))"
)
_CALLBACK_VIEW_COLS = changes.CALLBACK_VIEW_COLUMNS


def _callback_view(row: Any, history: list[CallbackAttempt]) -> CallbackView:
    fields = dict(row)
    fields["state"] = CallbackState(fields["state"])
    return CallbackView(**fields, history=history)


_INBOUND_COLUMNS = ", ".join(InboundMessage._fields)
# WITH ORDINALITY: ids are given in the order the messages came (unnest alone promises no order).
_INSERT_INBOUND = (
    f"INSERT INTO inbound_messages ({_INBOUND_COLUMNS}) SELECT {_INBOUND_COLUMNS} "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::bigint[]) "
    f"WITH ORDINALITY AS m({_INBOUND_COLUMNS}, n) ORDER BY n"
)
