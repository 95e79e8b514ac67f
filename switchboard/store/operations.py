"""The store's operations, each written once over a `sql.Connection` (the way procrastinate's manager is
written over its connectors): read what a change is about, decide with `changes` or `calls`, write the plan.

An operation that writes runs inside one transaction (`SqlStore._write`): on SQLite inside the writer
thread's group commit, on PostgreSQL in a transaction of its own, where the reads of what it changes lock
those rows (`Query.lock`). An operation that only reads runs on a reading connection (`SqlStore._read`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from switchboard.domain import optout
from switchboard.domain.statuses import CallStatus, SmsStatus
from switchboard.errors import DuplicateName, StoreError
from switchboard.store import calls, changes, inbound, optouts
from switchboard.store import queries as q
from switchboard.store.base import CallbackCancel, Replay
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
    DestinationView,
    HeldReceipts,
    InboundMessage,
    MessageCancel,
    MessageView,
    NewCall,
    NewCallRequest,
    NewDestination,
    NewErrorLog,
    NewMessage,
    Outcome,
    Receipt,
)
from switchboard.store.sql import Connection, Query

T = TypeVar("T")


def values(record: Any) -> tuple[Any, ...]:
    """A dataclass record's fields, in order: the values of its `queries.columns`."""
    return tuple(getattr(record, f.name) for f in dataclasses.fields(record))


async def first(rows: Any) -> Any:
    found = await rows
    return found[0] if found else None


# one statement


async def fetch(c: Connection, query: Query, *args: Any) -> list[tuple[Any, ...]]:
    return await c.fetch(query, *args)


async def fetch_into(c: Connection, into: type[T], query: Query, *args: Any) -> list[T]:
    return await c.fetch_into(into, query, *args)


async def fetchval(c: Connection, query: Query, *args: Any) -> Any:
    return await c.fetchval(query, *args)


async def execute(c: Connection, query: Query, *args: Any) -> int:
    return await c.execute(query, *args)


# accounts and keys


async def create_account(c: Connection, account: Account) -> None:
    if await c.fetchval(q.INSERT_ACCOUNT, *values(account)) is None:
        raise DuplicateName("an account with that name exists already")


async def get_account(c: Connection, query: Query, value: object) -> Account | None:
    account: Account | None = await first(c.fetch_into(Account, query, value))
    return account


async def revoke_api_key(c: Connection, account_id: int, key_id: int, at: int) -> bool:
    return await c.execute(q.REVOKE_KEY, at, key_id, account_id) == 1


async def find_api_key(c: Connection, digest: str) -> tuple[ApiKey, Account] | None:
    row = await first(c.fetch(q.FIND_KEY, digest))
    if row is None:
        return None
    width = len(dataclasses.fields(ApiKey))
    return ApiKey(*row[:width]), Account(*row[width:])


# messages


Request = tuple[NewMessage, list[NewDestination], list[NewErrorLog]]
"""A Send request as `Store.accept` takes it."""


async def accept_errors(c: Connection, requests: list[Request]) -> None:
    """What accepts write besides their messages and destinations when some numbers are not valid: the error
    log entries, those destinations Failed, and the callbacks that say so; three statements however many
    requests there are."""
    errors = [e for _, _, es in requests for e in es]
    if not errors:
        return
    await c.execute(q.INSERT_ERROR_LOGS, errors)
    await c.execute(
        q.FAIL_DESTINATIONS, SmsStatus.FAILED.value, [q.Failure(e.destination_id, e.text, e.id) for e in errors]
    )
    events = [event for m, ds, es in requests for event in changes.accept_callbacks(m, [d.mobile_no for d in ds], es)]
    if events:  # new destinations: no other transaction sees them, nothing to lock
        await c.execute(q.INSERT_CALLBACKS, events)


async def select_message(c: Connection, account_id: int, where: str, value: object) -> MessageView | None:
    row = await first(c.fetch(q.MESSAGE_BY[where], account_id, value))
    if row is None:
        return None
    destinations = await c.fetch_into(DestinationView, q.DESTINATIONS_OF, row[0], row[0] + row[-1])
    return MessageView(*row[:-1], destinations=destinations)  # type: ignore[misc]


async def cancel_message(
    c: Connection, account_id: int, message_id: int, mobile_no: str | None, now: int
) -> MessageCancel | None:
    span = await first(c.fetch(q.MESSAGE_SPAN, message_id, account_id))
    if span is None:
        return None
    rows = await c.fetch_into(changes.Current, q.LOCK_DESTINATIONS_TO, span[0], span[0] + span[1], mobile_no)
    plan, after = changes.plan_cancel(rows, now)
    await apply_plan(c, plan)
    return MessageCancel(len(plan.updates), [(r.mobile_no, SmsStatus(r.status)) for r in after])


# the work queue


async def finish(c: Connection, outcomes: list[Outcome], now: int) -> None:
    ids = sorted({o.destination_id for o in outcomes})
    current = {r.id: r for r in await c.fetch_into(changes.Current, q.LOCK_CURRENT, ids)}
    await apply_plan(c, changes.plan_outcomes(current, outcomes, now))


async def apply_plan(c: Connection, plan: changes.Plan) -> None:
    plan = changes.one_per_row(plan)
    if plan.updates:
        await c.execute(q.UPDATE_STATUS, plan.updates)
    if plan.parts:
        await c.execute(q.INSERT_PARTS, plan.parts)
    if plan.part_updates:
        await c.execute(q.UPDATE_PARTS, plan.part_updates)
    if plan.retries:
        await c.execute(q.UPDATE_RETRY, plan.retries)
    if plan.history:
        await c.execute(q.INSERT_HISTORY, plan.history)
    if plan.callbacks:  # the destinations are locked (finish, apply_receipts): see queries.LOCK_SUBJECTS
        await c.execute(q.INSERT_CALLBACKS, plan.callbacks)


async def apply_receipts(c: Connection, receipts: list[Receipt], now: int) -> list[Receipt]:
    """Apply the receipts; those that match nothing are held (held_receipts) in the same transaction: stored
    before the carrier acknowledges them."""
    unmatched = await match_receipts(c, receipts, now)
    if unmatched:
        await c.execute(q.INSERT_HELD, [q.HeldInsert(r.carrier, r.carrier_ref, str(r.status), r.error, now)
                                        for r in unmatched])  # fmt: skip
    return unmatched


async def match_receipts(c: Connection, receipts: list[Receipt], now: int) -> list[Receipt]:
    """Apply the receipts that match a destination or a part; returns the others."""
    keys = sorted({q.Reference(r.carrier, r.carrier_ref) for r in receipts})
    # The destinations the receipts name, by their own reference or a part's, locked in one statement in
    # id order (two transactions cannot deadlock); parts rows change only under their destination's lock,
    # so they are read after it.
    ids = sorted(r.id for r in await c.fetch_into(q.Id, q.IDS_BY_REFERENCE, keys))
    if not ids:
        return changes.plan_receipts({}, receipts, now)[1]
    wanted = set(keys)
    current: dict[tuple[str, str], changes.Current] = {}
    by_id: dict[int, changes.Current] = {}
    locked = sorted(await c.fetch_into(changes.Current, q.LOCK_CURRENT, ids), key=lambda row: row.id)
    for row in locked:  # in id order: where two share a reference (an id used again), the newest wins
        by_id[row.id] = row
        if (row.carrier, row.carrier_ref) in wanted:
            current[(row.carrier, row.carrier_ref)] = row  # type: ignore[index]
    parts = changes.NO_PARTS
    part_rows = await c.fetch_into(changes.PartRow, q.PARTS_OF, ids)
    if part_rows:
        parts = changes.parts_from_rows(part_rows, {p.destination_id: by_id[p.destination_id] for p in part_rows
                                                    if p.destination_id in by_id})  # fmt: skip
    plan, unmatched = changes.plan_receipts(current, receipts, now, parts)
    await apply_plan(c, plan)
    return unmatched


async def retry_held_receipts(c: Connection, now: int, drop_before: int) -> HeldReceipts:
    total = int(await c.fetchval(q.COUNT_HELD))
    if not total:
        return HeldReceipts(0, [], 0)
    rows = await c.fetch_into(q.Held, q.HELD_DUE, drop_before)
    if not rows:
        return HeldReceipts(0, [], total)
    held = [changes.HeldRow(r.id, Receipt(r.carrier, r.carrier_ref, r.status, r.error), r.received_at) for r in rows]
    unmatched = await match_receipts(c, [h.receipt for h in held], now)
    done, result = changes.settle_held(held, unmatched, drop_before, total)
    if done:
        await c.execute(q.DELETE_HELD, done)
    return result


# the callback outbox


async def finish_callbacks(c: Connection, results: list[CallbackResult]) -> None:
    ids = sorted({r.callback_id for r in results})
    await c.execute(q.LOCK_SUBJECTS, sorted({r[0] for r in await c.fetch(q.CALLBACK_SUBJECTS, ids)}))
    current = {r.id: r for r in await c.fetch_into(changes.CallbackCurrent, q.LOCK_CALLBACKS, ids)}
    plan = changes.plan_callback_results(current, results)
    if plan.attempts:
        await c.execute(q.INSERT_ATTEMPTS, plan.attempts)
    if plan.deferrals:
        await c.execute(q.DEFER_CALLBACKS, plan.deferrals)
    if plan.updates:
        await c.execute(q.UPDATE_CALLBACKS, plan.updates)
    if plan.finished_subjects:
        await c.execute(q.PROMOTE_CALLBACKS, max(r.at for r in results), plan.finished_subjects)
    for account_id, kind, url, reason in plan.disable:
        await c.execute(q.DISABLE_CALLBACK_URL[kind], reason, account_id, url)


async def get_callback(c: Connection, account_id: int, callback_id: int) -> CallbackView | None:
    row = await first(c.fetch(q.CALLBACK, callback_id, account_id))
    if row is None:
        return None
    attempts = await c.fetch_into(CallbackAttempt, q.ATTEMPTS_OF, callback_id)
    return callback_view(row, attempts)


def callback_view(row: tuple[Any, ...], history: list[CallbackAttempt]) -> CallbackView:
    return CallbackView(*row[:7], CallbackState(row[7]), *row[8:], history=history)  # type: ignore[misc, call-arg]


async def replay_callback(c: Connection, account_id: int, callback_id: int, now: int) -> Replay:
    subject = await first(c.fetch(q.CALLBACK_SUBJECT, callback_id, account_id))
    if subject is None:
        return "missing"
    await c.execute(q.LOCK_SUBJECTS, [subject[0]])
    if await c.fetchval(q.CALLBACK_STATE, callback_id) == CallbackState.PENDING.value:
        return "pending"
    await c.execute(q.REPLAY_CALLBACK, now, callback_id)
    return "replayed"


async def cancel_callback(c: Connection, account_id: int, callback_id: int, now: int) -> CallbackCancel:
    subject = await first(c.fetch(q.CALLBACK_SUBJECT, callback_id, account_id))
    if subject is None:
        return "missing"
    await c.execute(q.LOCK_SUBJECTS, [subject[0]])
    if await c.fetchval(q.CALLBACK_STATE, callback_id) != CallbackState.PENDING.value:
        return "final"
    await c.execute(q.CANCEL_CALLBACK, now, callback_id)
    await c.execute(q.PROMOTE_CALLBACKS, now, [subject[0]])  # its destination's next callback, as if delivered
    return "cancelled"


# voice (store/calls.py decides)


async def accept_calls(c: Connection, request: NewCallRequest, new: list[NewCall]) -> tuple[int, bool]:
    """The request's id, and whether a call was queued to dial (none for a replay of its idempotency key)."""
    if await c.fetchval(q.INSERT_CALL_REQUEST, *values(request)) is None:
        # The account used this idempotency key before (perhaps in a transaction that committed while this
        # insert waited on the index): answer with that request, store nothing.
        existing = await c.fetchval(q.CALL_REQUEST_BY_KEY, request.account_id, request.idempotency_key)
        if existing is None:
            raise StoreError("idempotency key conflict without a call request")
        return int(existing), False
    rows, events = calls.new_calls(request, new)
    if rows:
        await c.execute(q.INSERT_CALLS, rows)
    if events:
        await c.execute(q.INSERT_RECORDS, events)
    return request.id, any(r.status == CallStatus.RECEIVED.value for r in rows)


async def select_call_request(c: Connection, account_id: int, where: str, value: object) -> CallRequestView | None:
    row = await first(c.fetch(q.CALL_REQUEST_BY[where], account_id, value))
    if row is None:
        return None
    rows = await c.fetch(q.CALLS_OF, row[0], row[0] + row[-1])
    return CallRequestView(*row[:-1], calls=[calls.call_view(r) for r in rows])  # type: ignore[misc]


async def _lock_calls(c: Connection, ids: list[int]) -> dict[int, calls.Current]:
    return {r.id: r for r in await c.fetch_into(calls.Current, q.LOCK_CALLS, sorted(set(ids)))}


async def progress_calls(c: Connection, changes_: list[CallProgress]) -> list[int]:
    updates = calls.plan_progress(await _lock_calls(c, [p.call_id for p in changes_]), changes_)
    if updates:
        await c.execute(q.UPDATE_PROGRESS, updates)
    return [u.id for u in updates]


async def _apply_ends(c: Connection, plan: calls.EndPlan) -> None:
    if plan.updates:
        await c.execute(q.UPDATE_END, plan.updates)
    if plan.callbacks:
        await c.execute(q.INSERT_RECORDS, plan.callbacks)


async def end_calls(c: Connection, ends: list[CallEnd]) -> None:
    await _apply_ends(c, calls.plan_ends(await _lock_calls(c, [e.call_id for e in ends]), ends))


async def cancel_calls(
    c: Connection, account_id: int, request_id: int, mobile_no: str | None, now: int
) -> CancelResult | None:
    request = await first(c.fetch(q.CALL_REQUEST_SPAN, request_id, account_id))
    if request is None:
        return None
    rows = await c.fetch_into(calls.Current, q.LOCK_CALLS_TO, request[0], request[0] + request[1], mobile_no)
    plan = calls.plan_cancel(rows, now)
    await _apply_ends(c, plan.ends)
    if plan.flagged:
        await c.execute(q.FLAG_CANCEL, plan.flagged)
    return plan.result


async def campaign_audio(c: Connection, campaign_id: str) -> bytes | None:
    audio = await c.fetchval(q.CAMPAIGN_AUDIO, campaign_id)
    return None if audio is None else bytes(audio)


async def get_campaign(c: Connection, account_id: int, campaign_id: str) -> Campaign | None:
    campaign: Campaign | None = await first(c.fetch_into(Campaign, q.CAMPAIGN, campaign_id, account_id))
    return campaign


# two-way messaging (store/inbound.py decides)


async def store_inbound(c: Connection, messages: list[InboundMessage]) -> None:
    """Store the messages that are not resends; keep parts until their message is whole and join it then;
    route each message to its owner and store it, the callbacks of those whose account has an inbound
    callback URL in the outbox in the same transaction (store/inbound.py)."""
    new = {r[0] for r in await c.fetch(q.RECORD_SEEN, inbound.DUPLICATE_WINDOW_MS, inbound.seen_rows(messages))}
    taken = inbound.fresh(messages, new)
    wholes: list[inbound.Whole] = []
    parts: list[inbound.PartRow] = []
    for m in taken:
        part = inbound.part_row(m)
        if part is None:
            wholes.append(inbound.Whole(m))
        else:
            parts.append(part)
    if parts:
        keys = sorted({inbound.part_key(p) for p in parts})
        await c.execute(q.LOCK_PART_GROUPS, keys)
        await c.execute(q.INSERT_INBOUND_PARTS, parts)
        stored = await c.fetch_into(inbound.StoredPart, q.INBOUND_PARTS_OF, keys)
        joined, used = inbound.join(stored, complete_only=True)
        if used:
            await c.execute(q.DELETE_INBOUND_PARTS, used)
            wholes += joined
    if wholes:
        await _store_wholes(c, wholes)


async def sweep_inbound(c: Connection, parts_before: int, seen_before: int) -> int:
    """Store as what came the messages whose first part came before `parts_before` and that are still not
    whole, and forget the digests seen before `seen_before`; how many messages were stored."""
    await c.execute(q.FORGET_SEEN, seen_before)
    # Sorted here as store_inbound sorts its keys (the database's collation may order text otherwise), so two
    # transactions take the message locks in one order and never wait for each other.
    keys = sorted(await c.fetch_into(inbound.PartKey, q.STALE_PART_GROUPS, parts_before))
    if not keys:
        return 0
    await c.execute(q.LOCK_PART_GROUPS, keys)
    # Read again under the lock: a message whose last part was just stored has been joined and is gone.
    wholes, used = inbound.join(await c.fetch_into(inbound.StoredPart, q.INBOUND_PARTS_OF, keys), complete_only=False)
    if used:
        await c.execute(q.DELETE_INBOUND_PARTS, used)
        await _store_wholes(c, wholes)
    return len(wholes)


async def _store_wholes(c: Connection, wholes: list[inbound.Whole]) -> None:
    owners = await c.fetch_into(inbound.Owner, q.OWNERS_OF, inbound.number_keys(wholes))
    rows = inbound.route(wholes, owners)
    ids = sorted(int(r[0]) for r in await c.fetch(q.INSERT_ROUTED_INBOUND, rows))
    events = inbound.callbacks(rows, ids, owners)
    if events:  # a message's only event: due at once, as a call record is
        await c.execute(q.INSERT_RECORDS, events)
    await apply_keywords(c, rows)


async def apply_keywords(c: Connection, rows: list[inbound.InboundRow]) -> None:
    """Opt-out: the routed messages whose whole text is STOP, START, HELP (and their synonyms) change their
    account's list and write their replies to the outbox, in the transaction that stores them; nothing is read
    when none is a keyword."""
    found = optouts.keywords(rows)
    if not found:
        return
    texts = {
        t.account_id: t
        for t in await c.fetch_into(optouts.ReplyTexts, q.REPLY_TEXTS_OF, sorted({k.account_id for k in found}))
    }
    replies = []
    for k in found:  # in the order they came: a STOP then a START leaves the number subscribed
        if k.kind is optout.Keyword.OPT_OUT:
            await c.execute(q.ADD_OPT_OUT, k.account_id, k.mobile_no, optouts.KEYWORD, k.received_at)
        elif k.kind is optout.Keyword.OPT_IN:
            await c.execute(q.REMOVE_OPT_OUT, k.account_id, k.mobile_no)
        reply = optouts.reply(k, texts.get(k.account_id))
        if reply is not None:
            replies.append(reply)
    if replies:
        await c.execute(q.INSERT_REPLIES, replies)


async def assign_number(c: Connection, number: str, keyword: str, account_id: int, now: int) -> int:
    """The account the number (with the keyword) is assigned to: `account_id`, or the one it was already."""
    owner = await c.fetchval(q.INSERT_NUMBER, number, keyword, account_id, now)
    if owner is None:
        owner = await c.fetchval(q.NUMBER_OWNER, number, keyword)
        if owner is None:
            raise StoreError("number assignment conflict without an assignment")
    return int(owner)
