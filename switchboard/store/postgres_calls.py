"""The voice queries of the PostgreSQL store: calls, their records and campaigns.

Each function takes an asyncpg connection from `PostgresStore._connection` (inside a transaction for the
writes), which is where driver errors become `StoreError`. Dialers claim calls with `FOR UPDATE SKIP
LOCKED`; every other write locks the calls it changes in id order (two transactions cannot deadlock) and
then decides with `store.calls`, the same decision as the SQLite store.

`accept_calls` says whether it queued a call to dial: the store announces it after the commit, as it does a
message (`PostgresStore._announce_work`: a NOTIFY inside the transaction would serialize every commit), so
a dialer that watches for work wakes for them (and polls as a fallback).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from switchboard.domain.statuses import CallStatus
from switchboard.errors import StoreError
from switchboard.store import calls
from switchboard.store.records import (
    CallbackEvent,
    CallEnd,
    CallProgress,
    CallRequestView,
    Campaign,
    CancelResult,
    ClaimedCall,
    NewCall,
    NewCallRequest,
)


def _columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows to one list per column, the arguments of an `unnest($1::t1[], $2::t2[], ...)`."""
    return [list(column) for column in zip(*rows, strict=True)]


# Idempotency: the conflict target names the partial unique index ux_call_requests_idempotency.
_INSERT_REQUEST = (
    f"INSERT INTO call_requests ({calls.REQUEST_COLUMNS}) "
    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) "
    "ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id"
)
_INSERT_CALLS = (
    f"INSERT INTO calls ({calls.CALL_ROW_COLUMNS}) "
    "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], "
    "$8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[])"
)
# A record is its call's only event, so it is due at once: no earlier one can be pending (store/calls.py).
_INSERT_RECORDS = (
    "INSERT INTO callbacks (account_id, kind, subject_id, sequence, url, body, state, due_at, attempts, "
    "created_at, updated_at) "
    "SELECT e.account_id, e.kind, e.subject_id, e.sequence, e.url, e.body, 'pending', e.created_at, 0, "
    "e.created_at, e.created_at "
    "FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::int[], $5::text[], $6::text[], $7::bigint[]) "
    "AS e(account_id, kind, subject_id, sequence, url, body, created_at)"
)


async def _insert_records(conn: Any, events: list[CallbackEvent]) -> None:
    if events:
        await conn.execute(_INSERT_RECORDS, *_columns([e[:7] for e in events]))


async def accept_calls(conn: Any, request: NewCallRequest, new: list[NewCall]) -> tuple[int, bool]:
    """In a transaction: the request's id, and whether a call was queued to dial (none for a replay)."""
    inserted = await conn.fetchrow(_INSERT_REQUEST, *calls.request_row(request))
    if inserted is None:
        # The account used this idempotency key before (perhaps in a transaction that committed while this
        # insert waited on the index): answer with that request, store nothing.
        existing = await conn.fetchval(
            "SELECT id FROM call_requests WHERE account_id=$1 AND idempotency_key=$2",
            request.account_id, request.idempotency_key,
        )  # fmt: skip
        if existing is None:
            raise StoreError("idempotency key conflict without a call request")
        return int(existing), False
    rows, events = calls.new_calls(request, new)
    if rows:
        await conn.execute(_INSERT_CALLS, *_columns(rows))
    await _insert_records(conn, events)
    return request.id, any(r.status == CallStatus.RECEIVED.value for r in rows)


async def select_call_request(conn: Any, account_id: int, where: str, value: object) -> CallRequestView | None:
    """The newest of the account's requests matching `where` (on `$2`, given `value`), with its calls."""
    row = await conn.fetchrow(
        f"SELECT {calls.REQUEST_VIEW_COLUMNS}, destination_count FROM call_requests WHERE account_id=$1 AND {where} "
        "ORDER BY id DESC LIMIT 1",
        account_id, value,
    )  # fmt: skip
    if row is None:
        return None
    # A request's calls are the ids right after its own (Store.accept_calls).
    rows = await conn.fetch(
        f"SELECT {calls.CALL_VIEW_COLUMNS} FROM calls WHERE id > $1 AND id <= $2 ORDER BY id",
        row["id"], row["id"] + row["destination_count"],
    )  # fmt: skip
    fields = dict(row)
    del fields["destination_count"]
    return CallRequestView(**fields, calls=[calls.call_view(tuple(r)) for r in rows])


# SKIP LOCKED: calls another dialer is claiming right now are passed over, not waited for. Returned in due
# order (then id order), as the SQLite store returns them. The claimed columns come from RETURNING: the
# main query would see the rows as they were before the CTE's update.
_CLAIM = f"""
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


async def claim_calls(conn: Any, now: int, limit: int, lease_ms: int) -> list[ClaimedCall]:
    rows = await conn.fetch(_CLAIM, now, limit, now + lease_ms)
    return [calls.claimed_call(r) for r in rows]


_LOCK_CURRENT = (
    f"SELECT {calls.CURRENT_COLUMNS} FROM calls c JOIN call_requests r ON r.id = c.request_id "
    "WHERE c.id = ANY($1::bigint[]) ORDER BY c.id FOR UPDATE OF c"
)


async def _lock_current(conn: Any, ids: list[int]) -> dict[int, calls.Current]:
    return calls.current_by_id(tuple(r) for r in await conn.fetch(_LOCK_CURRENT, sorted(set(ids))))


_UPDATE_PROGRESS = (
    "UPDATE calls c SET status=u.status, trunk=u.trunk, call_time=u.call_time, answer_time=u.answer_time, "
    "due_at=u.due_at, updated_at=u.updated_at "
    "FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[]) "
    "AS u(status, trunk, call_time, answer_time, due_at, updated_at, id) WHERE c.id = u.id"
)


async def progress_calls(conn: Any, changes: list[CallProgress]) -> list[int]:
    """In a transaction."""
    current = await _lock_current(conn, [p.call_id for p in changes])
    updates = calls.plan_progress(current, changes)
    if updates:
        await conn.execute(_UPDATE_PROGRESS, *_columns(updates))
    return [u.id for u in updates]


_UPDATE_END = (
    "UPDATE calls c SET status=u.status, reason=u.reason, call_time=u.call_time, answer_time=u.answer_time, "
    "end_time=u.end_time, trunk=u.trunk, detail=u.detail, updated_at=u.updated_at, due_at=NULL "
    "FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], "
    "$8::bigint[], $9::bigint[]) AS u(status, reason, call_time, answer_time, end_time, trunk, detail, updated_at, "
    "id) WHERE c.id = u.id"
)


async def _apply_ends(conn: Any, plan: calls.EndPlan) -> None:
    if plan.updates:
        await conn.execute(_UPDATE_END, *_columns(plan.updates))
    await _insert_records(conn, plan.callbacks)


async def end_calls(conn: Any, ends: list[CallEnd]) -> None:
    """In a transaction."""
    current = await _lock_current(conn, [e.call_id for e in ends])
    await _apply_ends(conn, calls.plan_ends(current, ends))


async def cancel_calls(
    conn: Any, account_id: int, request_id: int, mobile_no: str | None, now: int
) -> CancelResult | None:
    """In a transaction."""
    request = await conn.fetchrow(
        "SELECT id, destination_count FROM call_requests WHERE id=$1 AND account_id=$2", request_id, account_id
    )
    if request is None:
        return None
    rows = await conn.fetch(
        f"SELECT {calls.CURRENT_COLUMNS} FROM calls c JOIN call_requests r ON r.id = c.request_id "
        "WHERE c.id > $1 AND c.id <= $2 AND ($3::text IS NULL OR c.mobile_no = $3 OR c.e164 = $3) "
        "ORDER BY c.id FOR UPDATE OF c",
        request["id"], request["id"] + request["destination_count"], mobile_no,
    )  # fmt: skip
    plan = calls.plan_cancel([calls.Current(*r) for r in rows], now)
    await _apply_ends(conn, plan.ends)
    if plan.flagged:
        await conn.execute("UPDATE calls SET cancel_requested=1 WHERE id = ANY($1::bigint[])", plan.flagged)
    return plan.result


async def cancels_requested(conn: Any, call_ids: list[int]) -> list[int]:
    rows = await conn.fetch(
        "SELECT id FROM calls WHERE id = ANY($1::bigint[]) AND cancel_requested=1 ORDER BY id", call_ids
    )
    return [int(r[0]) for r in rows]


# campaigns


async def create_campaign(conn: Any, campaign: Campaign, audio: bytes) -> None:
    await conn.execute(
        f"INSERT INTO campaigns ({calls.CAMPAIGN_COLUMNS}, audio) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
        *calls.campaign_row(campaign, audio),
    )


async def get_campaign(conn: Any, account_id: int, campaign_id: str) -> Campaign | None:
    row = await conn.fetchrow(
        f"SELECT {calls.CAMPAIGN_COLUMNS} FROM campaigns WHERE id=$1 AND account_id=$2 AND deleted_at IS NULL",
        campaign_id, account_id,
    )  # fmt: skip
    return None if row is None else Campaign(*row)


async def campaign_audio(conn: Any, campaign_id: str) -> bytes | None:
    audio = await conn.fetchval("SELECT audio FROM campaigns WHERE id=$1", campaign_id)
    return None if audio is None else bytes(audio)


async def list_campaigns(conn: Any, account_id: int) -> list[Campaign]:
    rows = await conn.fetch(
        f"SELECT {calls.CAMPAIGN_COLUMNS} FROM campaigns WHERE account_id=$1 AND deleted_at IS NULL "
        "ORDER BY created_at DESC, id DESC",
        account_id,
    )
    return [Campaign(*r) for r in rows]


async def delete_campaign(conn: Any, account_id: int, campaign_id: str, now: int) -> bool:
    row = await conn.fetchrow(
        "UPDATE campaigns SET deleted_at=$1 WHERE id=$2 AND account_id=$3 AND deleted_at IS NULL RETURNING id",
        now, campaign_id, account_id,
    )  # fmt: skip
    return row is not None
