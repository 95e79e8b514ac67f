"""`SqlStore`: every `Store` method that is the same on SQLite and PostgreSQL, written once.

Each runs an operation (`store/operations.py`) or a named query (`store/queries.py`) through the two
primitives a backend provides: `_write` (one transaction: SQLite's group commit, or a PostgreSQL transaction)
and `_read` (a reading connection). A backend adds only what truly differs: its lifecycle and node ids,
waking workers (LISTEN/NOTIFY), how Send requests are written together (the SQLite writer's group commit, or
PostgreSQL's grouped statements), and claims (`SKIP LOCKED` on PostgreSQL).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from switchboard.domain.statuses import SmsStatus
from switchboard.store import operations as ops
from switchboard.store import queries as q
from switchboard.store.base import CallbackCancel, Replay
from switchboard.store.inbound import NumberKey
from switchboard.store.optouts import ReplyTexts
from switchboard.store.records import (
    Account,
    AccountLimits,
    ApiKey,
    AssignedNumber,
    CallbackResult,
    CallbackState,
    CallbackView,
    CallEnd,
    CallProgress,
    CallRequestView,
    Campaign,
    CancelResult,
    HeldReceipts,
    HistoryEntry,
    InboundMessage,
    InFlight,
    Lease,
    MessageCancel,
    MessageView,
    NewCall,
    NewCallRequest,
    OptOut,
    Outcome,
    PendingReply,
    Receipt,
    StoredInbound,
)
from switchboard.store.sql import Query

T = TypeVar("T")
Operation = Callable[..., Coroutine[Any, Any, T]]


class SqlStore(abc.ABC):
    """The shared half of a store; subclasses provide `_read`, `_write` and `_work_stored`."""

    @abc.abstractmethod
    async def _read(self, op: Operation[T], *args: Any) -> T:
        """Run `op(connection, *args)` on a reading connection."""

    @abc.abstractmethod
    async def _write(self, op: Operation[T], *args: Any) -> T:
        """Run `op(connection, *args)` in one transaction; returns once it is committed."""

    @abc.abstractmethod
    def _work_stored(self) -> None:
        """Work was committed that other processes' workers should hear of."""

    async def _fetch_into(self, into: type[T], query: Query, *args: Any) -> list[T]:
        return await self._read(ops.fetch_into, into, query, *args)

    async def _execute(self, query: Query, *args: Any) -> int:
        return await self._write(ops.execute, query, *args)

    async def ping(self) -> None:
        await self._read(ops.fetchval, Query("SELECT 1"))

    # accounts and keys

    async def create_account(self, account: Account) -> None:
        await self._write(ops.create_account, account)

    async def get_account(self, account_id: int) -> Account | None:
        return await self._read(ops.get_account, q.ACCOUNT_BY_ID, account_id)

    async def get_account_by_name(self, name: str) -> Account | None:
        return await self._read(ops.get_account, q.ACCOUNT_BY_NAME, name)

    async def list_accounts(self) -> list[Account]:
        return await self._fetch_into(Account, q.ALL_ACCOUNTS)

    async def set_callback_url(self, account_id: int, kind: str, url: str | None) -> None:
        await self._execute(q.SET_CALLBACK_URL[kind], url, account_id)

    async def rotate_secret(self, account_id: int, secret: str, *, now: int) -> None:
        await self._execute(q.ROTATE_SECRET, secret, now, account_id)

    async def add_api_key(self, key: ApiKey) -> None:
        await self._execute(q.INSERT_KEY, *ops.values(key))

    async def list_api_keys(self, account_id: int) -> list[ApiKey]:
        return await self._fetch_into(ApiKey, q.KEYS_OF, account_id)

    async def revoke_api_key(self, account_id: int, key_id: int, at: int) -> bool:
        return await self._write(ops.revoke_api_key, account_id, key_id, at)

    async def find_api_key(self, digest: str) -> tuple[ApiKey, Account] | None:
        return await self._read(ops.find_api_key, digest)

    # messages

    async def get_message(self, account_id: int, message_id: int) -> MessageView | None:
        return await self._read(ops.select_message, account_id, "id", message_id)

    async def find_message_by_reference(self, account_id: int, reference_id: str) -> MessageView | None:
        return await self._read(ops.select_message, account_id, "reference_id", reference_id)

    async def cancel_message(
        self, account_id: int, message_id: int, *, mobile_no: str | None = None, now: int
    ) -> MessageCancel | None:
        return await self._write(ops.cancel_message, account_id, message_id, mobile_no, now)

    async def history(self, destination_id: int) -> list[HistoryEntry]:
        return await self._fetch_into(HistoryEntry, q.HISTORY, destination_id)

    # the work queue

    async def finish(self, outcomes: list[Outcome], *, now: int) -> None:
        if outcomes:
            await self._write(ops.finish, outcomes, now)

    async def apply_receipts(self, receipts: list[Receipt], *, now: int) -> list[Receipt]:
        return await self._write(ops.apply_receipts, receipts, now) if receipts else []

    async def retry_held_receipts(self, *, now: int, drop_before: int) -> HeldReceipts:
        return await self._write(ops.retry_held_receipts, now, drop_before)

    async def in_flight(self, carrier: str, *, limit: int) -> list[InFlight]:
        return await self._fetch_into(InFlight, q.IN_FLIGHT, carrier, SmsStatus.SENT.value, limit)

    # the callback outbox

    async def finish_callbacks(self, results: list[CallbackResult]) -> None:
        if results:
            await self._write(ops.finish_callbacks, results)

    async def list_callbacks(
        self, account_id: int, *, state: CallbackState | None, limit: int, before_id: int | None = None
    ) -> list[CallbackView]:
        query = q.LIST_CALLBACKS[state is not None, before_id is not None]
        rows = await self._read(ops.fetch, query, account_id, None if state is None else state.value, before_id, limit)
        return [ops.callback_view(r, []) for r in rows]

    async def get_callback(self, account_id: int, callback_id: int) -> CallbackView | None:
        return await self._read(ops.get_callback, account_id, callback_id)

    async def replay_callback(self, account_id: int, callback_id: int, *, now: int) -> Replay:
        return await self._write(ops.replay_callback, account_id, callback_id, now)

    async def cancel_callback(self, account_id: int, callback_id: int, *, now: int) -> CallbackCancel:
        return await self._write(ops.cancel_callback, account_id, callback_id, now)

    async def pending_callbacks(self) -> int:
        return int(await self._read(ops.fetchval, q.PENDING_CALLBACKS))

    # inbound messages

    async def store_inbound(self, messages: list[InboundMessage]) -> None:
        if messages:
            await self._write(ops.store_inbound, messages)

    async def sweep_inbound(self, *, parts_before: int, seen_before: int) -> int:
        result: int = await self._write(ops.sweep_inbound, parts_before, seen_before)
        return result

    async def list_inbound(self, *, limit: int, before_id: int | None = None) -> list[StoredInbound]:
        return await self._fetch_into(StoredInbound, q.LIST_INBOUND, before_id, limit)

    async def list_account_inbound(
        self,
        account_id: int | None,
        *,
        limit: int,
        before_id: int | None = None,
        since: int | None = None,
        to_number: str | None = None,
        from_number: str | None = None,
    ) -> list[StoredInbound]:
        query = q.UNROUTED_INBOUND if account_id is None else q.ACCOUNT_INBOUND
        return await self._fetch_into(StoredInbound, query, account_id, before_id, since, to_number, from_number, limit)

    # numbers

    async def assign_number(self, number: str, keyword: str, account_id: int, *, now: int) -> int:
        return await self._write(ops.assign_number, number, keyword, account_id, now)

    async def unassign_number(self, number: str, keyword: str) -> bool:
        return await self._execute(q.DELETE_NUMBER, number, keyword) == 1

    async def list_numbers(self, account_id: int | None = None) -> list[AssignedNumber]:
        return await self._fetch_into(AssignedNumber, q.NUMBERS, account_id)

    # voice

    async def accept_calls(self, request: NewCallRequest, calls: list[NewCall]) -> int:
        request_id, queued = await self._write(ops.accept_calls, request, calls)
        if queued:
            self._work_stored()  # after the commit, as for a message
        return request_id

    async def get_call_request(self, account_id: int, request_id: int) -> CallRequestView | None:
        return await self._read(ops.select_call_request, account_id, "id", request_id)

    async def find_call_request_by_reference(self, account_id: int, reference_id: str) -> CallRequestView | None:
        return await self._read(ops.select_call_request, account_id, "reference_id", reference_id)

    async def progress_calls(self, changes: list[CallProgress]) -> list[int]:
        return await self._write(ops.progress_calls, changes) if changes else []

    async def end_calls(self, ends: list[CallEnd]) -> None:
        if ends:
            await self._write(ops.end_calls, ends)

    async def cancel_calls(
        self, account_id: int, request_id: int, *, mobile_no: str | None = None, now: int
    ) -> CancelResult | None:
        return await self._write(ops.cancel_calls, account_id, request_id, mobile_no, now)

    async def cancels_requested(self, call_ids: list[int]) -> list[int]:
        if not call_ids:
            return []
        return [int(r[0]) for r in await self._read(ops.fetch, q.CANCELS_REQUESTED, call_ids)]

    async def create_campaign(self, campaign: Campaign, audio: bytes) -> None:
        await self._execute(q.INSERT_CAMPAIGN, *ops.values(campaign), audio)

    async def get_campaign(self, account_id: int, campaign_id: str) -> Campaign | None:
        return await self._read(ops.get_campaign, account_id, campaign_id)

    async def campaign_audio(self, campaign_id: str) -> bytes | None:
        return await self._read(ops.campaign_audio, campaign_id)

    async def list_campaigns(self, account_id: int) -> list[Campaign]:
        return await self._fetch_into(Campaign, q.CAMPAIGNS_OF, account_id)

    async def delete_campaign(self, account_id: int, campaign_id: str, *, now: int) -> bool:
        return await self._execute(q.DELETE_CAMPAIGN, now, campaign_id, account_id) == 1

    # limits

    async def _fetch_written(self, query: Query, *args: Any) -> list[tuple[Any, ...]]:
        """The rows of one statement that writes (RETURNING), committed."""
        return await self._write(ops.fetch, query, *args)

    async def get_limits(self, account_id: int) -> AccountLimits | None:
        rows = await self._fetch_into(AccountLimits, q.LIMITS_OF, account_id)
        return rows[0] if rows else None

    async def set_limits(self, limits: AccountLimits) -> None:
        await self._execute(q.SET_LIMITS, *ops.values(limits))

    async def list_limits(self) -> list[AccountLimits]:
        return await self._fetch_into(AccountLimits, q.ALL_LIMITS)

    async def lease_rate(self, account_id: int, *, want: float, rate: float, burst: float, now: int) -> Lease:
        rows = await self._fetch_written(q.LEASE_RATE, account_id, float(want), float(rate), float(burst), now)
        return Lease(float(rows[0][0]), float(rows[0][1]))

    async def lease_daily(self, account_id: int, *, day: int, want: int, cap: int) -> Lease:
        rows = await self._fetch_written(q.LEASE_DAILY, account_id, day, want, cap)
        return Lease(float(rows[0][0]), float(rows[0][1]))

    async def daily_used(self, account_id: int, *, day: int) -> int:
        used = await self._read(ops.fetchval, q.DAILY_USED, account_id, day)
        return 0 if used is None else int(used)

    # opt-out

    async def add_opt_out(self, account_id: int, number: str, *, source: str, now: int) -> bool:
        return await self._execute(q.ADD_OPT_OUT, account_id, number, source, now) == 1

    async def remove_opt_out(self, account_id: int, number: str) -> bool:
        return await self._execute(q.REMOVE_OPT_OUT, account_id, number) == 1

    async def list_opt_outs(self, account_id: int, *, limit: int, after: str | None = None) -> list[OptOut]:
        return await self._fetch_into(OptOut, q.LIST_OPT_OUTS, account_id, after, limit)

    async def opted_out_among(self, account_id: int, numbers: list[str]) -> set[str]:
        keys = [NumberKey(n) for n in sorted(set(numbers))]
        return {r[0] for r in await self._read(ops.fetch, q.OPTED_OUT_AMONG, account_id, keys)}

    async def set_reply_texts(
        self, account_id: int, *, opt_out: str | None, opt_in: str | None, help_text: str | None
    ) -> None:
        await self._execute(q.SET_REPLY_TEXTS, account_id, opt_out, opt_in, help_text)

    async def get_reply_texts(self, account_id: int) -> tuple[str | None, str | None, str | None]:
        rows = await self._fetch_into(ReplyTexts, q.REPLY_TEXTS_OF, [account_id])
        return (rows[0].opt_out_reply, rows[0].opt_in_reply, rows[0].help_reply) if rows else (None, None, None)

    async def pending_replies(self, *, limit: int) -> list[PendingReply]:
        return await self._fetch_into(PendingReply, q.PENDING_REPLIES, limit)

    async def delete_reply(self, reply_id: int) -> None:
        await self._execute(q.DELETE_REPLY, reply_id)
