"""The voice queries of the SQLite store: calls, their records and campaigns.

Each function takes the connection it runs on: the writer thread's for writes (run inside its group
commit, `SqliteStore._write`), a reader's for reads (`SqliteStore._read`). The writer is the only writer,
so a write reads the rows it changes and decides (`store.calls`) without anything changing them meanwhile.
Batches of rows go to SQLite as one JSON document per statement, as the SMS queries do (see
`sqlite._insert_rows`).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

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

_encode = msgspec.json.Encoder().encode


def _json_columns(*names: str) -> str:
    return ", ".join(f"json_extract(value, '$[{i}]') AS {name}" for i, name in enumerate(names))


@functools.cache
def _json_insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {_json_columns(*columns)} FROM json_each(?)"


def _insert(c: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]) -> None:
    c.execute(_json_insert(table, columns), (_encode(rows),))


_CALLBACK_COLUMNS = ("account_id", "kind", "subject_id", "sequence", "url", "body", "created_at")


def _insert_records(c: sqlite3.Connection, events: list[CallbackEvent]) -> None:
    """Call records into the callback outbox, due at once: a record is its call's only event, so no earlier
    one can be pending (store/calls.py)."""
    if events:
        c.execute(
            "INSERT INTO callbacks (account_id, kind, subject_id, sequence, url, body, state, due_at, attempts, "
            "created_at, updated_at) "
            "SELECT account_id, kind, subject_id, sequence, url, body, 'pending', created_at, 0, created_at, "
            f"created_at FROM (SELECT {_json_columns(*_CALLBACK_COLUMNS)} FROM json_each(?))",
            (_encode([e[: len(_CALLBACK_COLUMNS)] for e in events]),),
        )


# accept and read


def accept_calls(c: sqlite3.Connection, request: NewCallRequest, new: list[NewCall]) -> int:
    if request.idempotency_key is not None:
        row = c.execute(
            "SELECT id FROM call_requests WHERE account_id=? AND idempotency_key=?",
            (request.account_id, request.idempotency_key),
        ).fetchone()
        if row is not None:
            return int(row[0])
    c.execute(
        f"INSERT INTO call_requests ({calls.REQUEST_COLUMNS}) VALUES ({', '.join('?' * 13)})",
        calls.request_row(request),
    )
    rows, events = calls.new_calls(request, new)
    if rows:
        _insert(c, "calls", calls.CallRow._fields, rows)
    _insert_records(c, events)
    return request.id


def select_call_request(c: sqlite3.Connection, account_id: int, where: str, value: object) -> CallRequestView | None:
    """The newest of the account's requests matching `where` (one `?`, given `value`), with its calls."""
    row = c.execute(
        f"SELECT {calls.REQUEST_VIEW_COLUMNS}, destination_count FROM call_requests WHERE account_id=? AND {where} "
        "ORDER BY id DESC LIMIT 1",
        (account_id, value),
    ).fetchone()
    if row is None:
        return None
    # A request's calls are the ids right after its own (Store.accept_calls).
    rows = c.execute(
        f"SELECT {calls.CALL_VIEW_COLUMNS} FROM calls WHERE id > ? AND id <= ? ORDER BY id",
        (row[0], row[0] + row[-1]),
    ).fetchall()
    return CallRequestView(*row[:-1], calls=[calls.call_view(r) for r in rows])  # type: ignore[misc]


# the dialer's queue


def claim_calls(c: sqlite3.Connection, now: int, limit: int, lease_ms: int) -> list[ClaimedCall]:
    ids = [
        r[0]
        for r in c.execute(
            "SELECT id FROM calls WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at, id LIMIT ?", (now, limit)
        )
    ]
    if not ids:
        return []
    chosen = _encode(ids)
    c.execute(
        "UPDATE calls SET due_at=?, attempts=attempts+1 WHERE id IN (SELECT value FROM json_each(?))",
        (now + lease_ms, chosen),
    )
    rows = c.execute(
        f"SELECT {calls.CLAIM_COLUMNS} FROM json_each(?) AS j JOIN calls c ON c.id = j.value "
        "JOIN call_requests r ON r.id = c.request_id JOIN accounts a ON a.id = r.account_id ORDER BY j.key",
        (chosen,),
    ).fetchall()
    return [calls.claimed_call(r) for r in rows]


def _current(c: sqlite3.Connection, ids: list[int]) -> dict[int, calls.Current]:
    rows = c.execute(
        f"SELECT {calls.CURRENT_COLUMNS} FROM calls c JOIN call_requests r ON r.id = c.request_id "
        "WHERE c.id IN (SELECT value FROM json_each(?))",
        (_encode(ids),),
    )
    return calls.current_by_id(rows)


_UPDATE_PROGRESS = f"""
UPDATE calls SET status = u.status, trunk = u.trunk, call_time = u.call_time, answer_time = u.answer_time,
    due_at = u.due_at, updated_at = u.updated_at
FROM (SELECT {_json_columns(*calls.ProgressUpdate._fields)} FROM json_each(?)) AS u
WHERE calls.id = u.id
"""


def progress_calls(c: sqlite3.Connection, changes: list[CallProgress]) -> list[int]:
    current = _current(c, [p.call_id for p in changes])
    updates = calls.plan_progress(current, changes)
    if updates:
        c.execute(_UPDATE_PROGRESS, (_encode(updates),))
    return [u.id for u in updates]


_UPDATE_END = f"""
UPDATE calls SET status = u.status, reason = u.reason, call_time = u.call_time, answer_time = u.answer_time,
    end_time = u.end_time, trunk = u.trunk, detail = u.detail, updated_at = u.updated_at, due_at = NULL
FROM (SELECT {_json_columns(*calls.EndUpdate._fields)} FROM json_each(?)) AS u
WHERE calls.id = u.id
"""


def _apply_ends(c: sqlite3.Connection, plan: calls.EndPlan) -> None:
    if plan.updates:
        c.execute(_UPDATE_END, (_encode(plan.updates),))
    _insert_records(c, plan.callbacks)


def end_calls(c: sqlite3.Connection, ends: list[CallEnd]) -> None:
    current = _current(c, [e.call_id for e in ends])
    _apply_ends(c, calls.plan_ends(current, ends))


def cancel_calls(
    c: sqlite3.Connection, account_id: int, request_id: int, mobile_no: str | None, now: int
) -> CancelResult | None:
    request = c.execute(
        "SELECT id, destination_count FROM call_requests WHERE id=? AND account_id=?", (request_id, account_id)
    ).fetchone()
    if request is None:
        return None
    rows = c.execute(
        f"SELECT {calls.CURRENT_COLUMNS} FROM calls c JOIN call_requests r ON r.id = c.request_id "
        "WHERE c.id > ? AND c.id <= ? AND (? IS NULL OR c.mobile_no = ? OR c.e164 = ?) ORDER BY c.id",
        (request[0], request[0] + request[1], mobile_no, mobile_no, mobile_no),
    ).fetchall()
    plan = calls.plan_cancel([calls.Current(*r) for r in rows], now)
    _apply_ends(c, plan.ends)
    if plan.flagged:
        c.execute(
            "UPDATE calls SET cancel_requested=1 WHERE id IN (SELECT value FROM json_each(?))", (_encode(plan.flagged),)
        )
    return plan.result


def cancels_requested(c: sqlite3.Connection, call_ids: list[int]) -> list[int]:
    rows = c.execute(
        "SELECT id FROM calls WHERE id IN (SELECT value FROM json_each(?)) AND cancel_requested=1 ORDER BY id",
        (_encode(call_ids),),
    )
    return [int(r[0]) for r in rows]


# campaigns


def create_campaign(c: sqlite3.Connection, campaign: Campaign, audio: bytes) -> None:
    c.execute(
        f"INSERT INTO campaigns ({calls.CAMPAIGN_COLUMNS}, audio) VALUES (?,?,?,?,?,?,?,?,?)",
        calls.campaign_row(campaign, audio),
    )


def get_campaign(c: sqlite3.Connection, account_id: int, campaign_id: str) -> Campaign | None:
    row = c.execute(
        f"SELECT {calls.CAMPAIGN_COLUMNS} FROM campaigns WHERE id=? AND account_id=? AND deleted_at IS NULL",
        (campaign_id, account_id),
    ).fetchone()
    return None if row is None else Campaign(*row)


def campaign_audio(c: sqlite3.Connection, campaign_id: str) -> bytes | None:
    row = c.execute("SELECT audio FROM campaigns WHERE id=?", (campaign_id,)).fetchone()
    return None if row is None else bytes(row[0])


def list_campaigns(c: sqlite3.Connection, account_id: int) -> list[Campaign]:
    rows = c.execute(
        f"SELECT {calls.CAMPAIGN_COLUMNS} FROM campaigns WHERE account_id=? AND deleted_at IS NULL "
        "ORDER BY created_at DESC, id DESC",
        (account_id,),
    ).fetchall()
    return [Campaign(*r) for r in rows]


def delete_campaign(c: sqlite3.Connection, account_id: int, campaign_id: str, now: int) -> bool:
    cur = c.execute(
        "UPDATE campaigns SET deleted_at=? WHERE id=? AND account_id=? AND deleted_at IS NULL",
        (now, campaign_id, account_id),
    )
    return cur.rowcount == 1
