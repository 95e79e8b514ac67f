"""Every statement both stores run, named and written once (`sql.Query`: `$n` placeholders, `{alias}` row
sets, PostgreSQL-only locks). What only one database runs stays in its module: the SQLite group-commit
accept and claims, PostgreSQL's grouped accept statements and `SKIP LOCKED` claims.

Column lists come from the record types (`columns`), so a field added to a record is read and written
everywhere it is listed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from switchboard.domain.statuses import SmsStatus
from switchboard.store import calls, changes, inbound, optouts
from switchboard.store.records import (
    Account,
    ApiKey,
    CallbackAttempt,
    CallbackEvent,
    CallbackView,
    CallRequestView,
    Campaign,
    DestinationView,
    HistoryEntry,
    MessageView,
    NewCallRequest,
    NewErrorLog,
    NewMessage,
    PendingReply,
    StoredInbound,
)
from switchboard.store.sql import ROW_NUMBER, AnyOf, Query, Rows


def columns(of: type[Any], *, prefix: str = "", skip: tuple[str, ...] = ()) -> str:
    """The column list of a record type (a NamedTuple or a dataclass), its fields in order."""
    names = getattr(of, "_fields", None) or [f.name for f in dataclasses.fields(of)]
    return ", ".join(prefix + name for name in names if name not in skip)


def placeholders(of: type[Any]) -> str:
    """`$1, $2, …`: one per field of a record type, for `VALUES` in the order of its `columns`."""
    return ", ".join(f"${n}" for n in range(1, len(columns(of).split(", ")) + 1))


def _any_of(column: str) -> AnyOf:
    return AnyOf("ids", column)


class Id(NamedTuple):
    id: int


class Held(NamedTuple):
    """A held_receipts row as read."""

    id: int
    carrier: str
    carrier_ref: str
    status: SmsStatus
    error: str | None
    received_at: int


class Reference(NamedTuple):
    carrier: str
    carrier_ref: str


class HeldInsert(NamedTuple):
    """A held_receipts row as inserted (its id is the database's: ids grow in arrival order)."""

    carrier: str
    carrier_ref: str
    status: str
    error: str | None
    received_at: int


class MessageRow(NamedTuple):
    """A new `messages` row."""

    id: int
    account_id: int
    reference_id: str | None
    sender: str
    body: str
    encoding: str
    segments: int
    callback: str
    callback_url: str | None
    destination_count: int
    created_at: int
    schedule_at: int | None
    expires_at: int | None
    idempotency_key: str | None


def message_row(m: NewMessage) -> MessageRow:
    return MessageRow(m.id, m.account_id, m.reference_id, m.sender, m.body, m.encoding, m.segments, m.callback,
                      m.callback_url, m.destination_count, m.created_at, m.schedule_at, m.expires_at,
                      m.idempotency_key)  # fmt: skip


class DestinationRow(NamedTuple):
    """A new `destinations` row (its message's id + 1 + position is its id: Store.accept)."""

    id: int
    message_id: int
    position: int
    mobile_no: str
    e164: str | None
    status: str
    due_at: int | None
    updated_at: int


class Failure(NamedTuple):
    """A destination stored Failed at accept: its number is not valid."""

    id: int
    error: str
    error_log_id: int


class Deferral(NamedTuple):
    due_at: int
    id: int


PART_COLUMNS = columns(changes.PartRow)
REQUEST_COLUMNS = columns(NewCallRequest)
REQUEST_VIEW_COLUMNS = columns(CallRequestView, skip=("calls",))
CAMPAIGN_COLUMNS = columns(Campaign)

# accounts and keys

ACCOUNT_COLUMNS = columns(Account)
KEY_COLUMNS = columns(ApiKey)

INSERT_ACCOUNT = Query(
    f"INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES ({placeholders(Account)}) "
    "ON CONFLICT (name) DO NOTHING RETURNING id"
)
"""No row back: the name is taken (DuplicateName), decided by the conflict, never by an error's text."""
ACCOUNT_BY_ID = Query(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1")
ACCOUNT_BY_NAME = Query(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1")
ALL_ACCOUNTS = Query(f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id")
_URL_KINDS = (changes.SMS, calls.VOICE, inbound.INBOUND)
SET_CALLBACK_URL = {
    kind: Query(f"UPDATE accounts SET {url} = $1, {disabled} = NULL WHERE id = $2")
    for kind, (url, disabled) in ((k, changes.account_url_columns(k)) for k in _URL_KINDS)
}
"""By kind: sets the URL, which enables it again."""
DISABLE_CALLBACK_URL = {
    kind: Query(f"UPDATE accounts SET {disabled} = $1 WHERE id = $2 AND {url} = $3")
    for kind, (url, disabled) in ((k, changes.account_url_columns(k)) for k in _URL_KINDS)
}
"""By kind: only if it is still the URL that answered 410 (it may have been changed meanwhile)."""
ROTATE_SECRET = Query(
    "UPDATE accounts SET previous_webhook_secret = webhook_secret, webhook_secret = $1, secret_rotated_at = $2 "
    "WHERE id = $3"
)
INSERT_KEY = Query(f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)")
KEYS_OF = Query(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY id")
REVOKE_KEY = Query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL")
FIND_KEY = Query(
    f"SELECT {columns(ApiKey, prefix='k.')}, {columns(Account, prefix='a.')} "
    "FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.digest = $1 AND k.revoked_at IS NULL"
)

# messages

MESSAGE_VIEW_COLUMNS = columns(MessageView, skip=("destinations",))
MESSAGE_BY = {
    where: Query(
        f"SELECT {MESSAGE_VIEW_COLUMNS}, destination_count FROM messages WHERE account_id = $1 AND {where} = $2 "
        "ORDER BY id DESC LIMIT 1"
    )
    for where in ("id", "reference_id")
}
DESTINATIONS_OF = Query(f"SELECT {columns(DestinationView)} FROM destinations WHERE id > $1 AND id <= $2 ORDER BY id")
"""A message's destinations are the ids right after its own (Store.accept): $1 the message, $2 its last."""
HISTORY = Query(f"SELECT {columns(HistoryEntry)} FROM status_history WHERE destination_id = $1 ORDER BY id")

MESSAGE_COLUMNS = columns(MessageRow)
INSERT_MESSAGES = Query(
    f"INSERT INTO messages ({MESSAGE_COLUMNS}) SELECT {MESSAGE_COLUMNS} FROM {{m}}", [Rows("m", MessageRow)]
)
MESSAGE_BY_KEY = Query("SELECT id FROM messages WHERE account_id = $1 AND idempotency_key = $2")
"""The message an account sent with this Idempotency-Key before."""
INSERT_ERROR_LOGS = Query(
    f"INSERT INTO error_logs ({columns(NewErrorLog)}) SELECT {columns(NewErrorLog)} FROM {{e}}",
    [Rows("e", NewErrorLog)],
)
FAIL_DESTINATIONS = Query(
    "UPDATE destinations SET status = $1, error = f.error, error_log_id = f.error_log_id, due_at = NULL, "
    "sequence = 1 FROM {f} WHERE destinations.id = f.id",
    [Rows("f", Failure)],
)

# the work queue: what `finish` and `apply_receipts` read and write

_CURRENT_FROM = "FROM destinations d JOIN messages m ON m.id = d.message_id"
LOCK_CURRENT = Query(
    f"SELECT {changes.CURRENT_COLUMNS} {_CURRENT_FROM} WHERE {{ids}} ORDER BY d.id",
    [_any_of("d.id")],
    lock="FOR UPDATE OF d",
)
"""The destinations a change is about, locked in id order on PostgreSQL (two transactions cannot deadlock)."""
MESSAGE_SPAN = Query("SELECT id, destination_count FROM messages WHERE id = $1 AND account_id = $2")
LOCK_DESTINATIONS_TO = Query(
    f"SELECT {changes.CURRENT_COLUMNS} {_CURRENT_FROM} WHERE d.id > $1 AND d.id <= $2 "
    "AND (CAST($3 AS TEXT) IS NULL OR d.mobile_no = $3 OR d.e164 = $3) ORDER BY d.id",
    lock="FOR UPDATE OF d",
)
"""A message's destinations ($1 the message, $2 its last destination), or only those to the number $3 (as
written or in E.164), locked in id order on PostgreSQL: a worker's claim (SKIP LOCKED) passes them over
meanwhile, and one it committed first shows in `attempts`."""
IDS_BY_REFERENCE = Query(
    "SELECT d.id AS id FROM destinations d JOIN {r} ON d.carrier = r.carrier AND d.carrier_ref = r.carrier_ref "
    "WHERE d.carrier_ref IS NOT NULL "
    "UNION SELECT p.destination_id FROM destination_parts p JOIN {r} "
    "ON p.carrier = r.carrier AND p.carrier_ref = r.carrier_ref",
    [Rows("r", Reference)],
)
"""The destinations receipts name, by their own reference or by a part's."""
PARTS_OF = Query(
    f"SELECT {PART_COLUMNS} FROM destination_parts WHERE {{ids}}",
    [_any_of("destination_id")],
)
"""Read after their destinations are locked: parts change only under their destination's lock."""
UPDATE_STATUS = Query(
    "UPDATE destinations SET status = u.status, error = COALESCE(u.error, destinations.error), "
    "carrier = COALESCE(u.carrier, destinations.carrier), "
    "carrier_ref = COALESCE(u.carrier_ref, destinations.carrier_ref), sequence = u.sequence, "
    "updated_at = u.updated_at, delivered_at = COALESCE(u.delivered_at, destinations.delivered_at), due_at = NULL "
    "FROM {u} WHERE destinations.id = u.id",
    [Rows("u", changes.StatusUpdate)],
)
UPDATE_RETRY = Query(
    "UPDATE destinations SET due_at = r.due_at, error = r.error, updated_at = r.updated_at "
    "FROM {r} WHERE destinations.id = r.id",
    [Rows("r", changes.RetryUpdate)],
)
INSERT_PARTS = Query(
    f"INSERT INTO destination_parts ({PART_COLUMNS}) SELECT {PART_COLUMNS} FROM {{p}}",
    [Rows("p", changes.PartRow)],
)
UPDATE_PARTS = Query(
    "UPDATE destination_parts SET status = u.status, updated_at = u.updated_at FROM {u} "
    "WHERE destination_parts.destination_id = u.destination_id AND destination_parts.part = u.part",
    [Rows("u", changes.PartUpdate)],
)
INSERT_HISTORY = Query(
    f"INSERT INTO status_history ({columns(changes.HistoryRow)}) SELECT {columns(changes.HistoryRow)} FROM {{h}}",
    [Rows("h", changes.HistoryRow)],
)
IN_FLIGHT = Query(
    "SELECT id AS destination_id, carrier_ref, e164, updated_at AS sent_at FROM destinations "
    "WHERE carrier = $1 AND carrier_ref IS NOT NULL AND status = $2 ORDER BY id LIMIT $3"
)

# held receipts (changes.HeldRow)

INSERT_HELD = Query(
    f"INSERT INTO held_receipts ({columns(HeldInsert)}) SELECT {columns(HeldInsert)} FROM {{h}} "
    f"ORDER BY h.{ROW_NUMBER}",
    [Rows("h", HeldInsert)],
)
COUNT_HELD = Query("SELECT count(*) FROM held_receipts")
HELD_DUE = Query(
    f"SELECT {columns(Held)} FROM held_receipts h WHERE h.received_at < $1 "
    "OR EXISTS (SELECT 1 FROM destinations d WHERE d.carrier = h.carrier AND d.carrier_ref = h.carrier_ref "
    "AND d.carrier_ref IS NOT NULL) "
    "OR EXISTS (SELECT 1 FROM destination_parts p WHERE p.carrier = h.carrier AND p.carrier_ref = h.carrier_ref) "
    "ORDER BY id",
    lock="FOR UPDATE OF h SKIP LOCKED",
)
"""The held receipts a sweep takes: those whose reference is now written (they can match) and those received
before $1 (old enough to drop). The rest stay unread: a carrier whose receipts never match (an SMPP account
shared with another system) holds rate × HELD_RECEIPT_SECONDS rows, and reading them all every second cost
0.12 s of the writer at 30,000 (measured). SKIP LOCKED: receipts another worker is matching right now are
its own, never applied twice."""
DELETE_HELD = Query("DELETE FROM held_receipts WHERE {ids}", [_any_of("id")])

# the callback outbox (store/schema.py, "callbacks"): an event is due at once only when it is the first of its
# subject in this write and no earlier event of that subject is still pending; otherwise it waits (due_at
# NULL) until finishing the one before makes it due.

INSERT_CALLBACKS = Query(
    "INSERT INTO callbacks (account_id, kind, subject_id, sequence, url, body, state, due_at, attempts, "
    "created_at, updated_at) "
    "SELECT e.account_id, e.kind, e.subject_id, e.sequence, e.url, e.body, 'pending', "
    "CASE WHEN e.first AND NOT EXISTS (SELECT 1 FROM callbacks p WHERE p.subject_id = e.subject_id "
    "AND p.state = 'pending') THEN e.created_at END, 0, e.created_at, e.created_at FROM {e}",
    [Rows("e", CallbackEvent)],
)
CALLBACK_SUBJECTS = Query("SELECT subject_id FROM callbacks WHERE {ids}", [_any_of("id")], postgresql_only=True)
LOCK_SUBJECTS = Query(
    "SELECT 1 FROM destinations WHERE {ids} ORDER BY id",
    [_any_of("id")],
    lock="FOR UPDATE",
    postgresql_only=True,
)
"""Serialise, per destination, writing its new callbacks with finishing or replaying its pending one (until
commit), by locking the destination rows, as `finish` and `apply_receipts` do before writing.

A new callback is due at once only when no earlier one of its destination is pending, and finishing a
callback makes the destination's next one due. Without a common lock each could miss the other's uncommitted
row and leave a callback waiting for ever. Row locks, in id order so that two transactions cannot deadlock,
and not advisory locks: those fill PostgreSQL's shared lock table on large batches. SQLite has one writer."""
LOCK_CALLBACKS = Query(
    f"SELECT {columns(changes.CallbackCurrent)} FROM callbacks WHERE {{ids}} ORDER BY id",
    [_any_of("id")],
    lock="FOR UPDATE",
)
INSERT_ATTEMPTS = Query(
    f"INSERT INTO callback_attempts ({columns(changes.AttemptRow)}) SELECT {columns(changes.AttemptRow)} FROM {{a}}",
    [Rows("a", changes.AttemptRow)],
)
DEFER_CALLBACKS = Query(
    "UPDATE callbacks SET due_at = u.due_at, attempts = callbacks.attempts - 1 FROM {u} WHERE callbacks.id = u.id",
    [Rows("u", Deferral)],
)
"""Handed back unattempted: the claim's attempt is taken back."""
UPDATE_CALLBACKS = Query(
    "UPDATE callbacks SET state = u.state, due_at = u.due_at, last_status = u.last_status, "
    "last_error = u.last_error, updated_at = u.updated_at FROM {u} WHERE callbacks.id = u.id",
    [Rows("u", changes.CallbackUpdate)],
)
PROMOTE_CALLBACKS = Query(
    "UPDATE callbacks SET due_at = $1 WHERE due_at IS NULL AND id IN ("
    "SELECT (SELECT n.id FROM callbacks n WHERE n.subject_id = s.id AND n.state = 'pending' "
    "ORDER BY n.sequence LIMIT 1) FROM {s})",
    [Rows("s", int)],
)
"""The next event of each finished subject: its oldest pending one, unless that one is due already."""
CALLBACK_VIEW_COLUMNS = columns(CallbackView, skip=("history",))
LIST_CALLBACKS = {
    (by_state, before): Query(
        f"SELECT {CALLBACK_VIEW_COLUMNS} FROM callbacks WHERE account_id = $1 "
        + ("AND state = $2 " if by_state else "AND CAST($2 AS TEXT) IS NULL ")
        + ("AND id < $3 " if before else "AND CAST($3 AS BIGINT) IS NULL ")
        + "ORDER BY id DESC LIMIT $4"
    )
    for by_state in (False, True)
    for before in (False, True)
}
"""By (a state is given, a page boundary is given): one text per case, so that SQLite, which plans a statement
without its values, uses the (account_id, state, id) index for each ($2 and $3 are bound either way)."""
CALLBACK = Query(f"SELECT {CALLBACK_VIEW_COLUMNS} FROM callbacks WHERE id = $1 AND account_id = $2")
ATTEMPTS_OF = Query(f"SELECT {columns(CallbackAttempt)} FROM callback_attempts WHERE callback_id = $1 ORDER BY id")
CALLBACK_SUBJECT = Query("SELECT subject_id FROM callbacks WHERE id = $1 AND account_id = $2")
CALLBACK_STATE = Query("SELECT state FROM callbacks WHERE id = $1", lock="FOR UPDATE")
REPLAY_CALLBACK = Query(
    "UPDATE callbacks SET state = 'pending', attempts = 0, updated_at = CAST($1 AS BIGINT), "
    "due_at = CASE WHEN EXISTS (SELECT 1 FROM callbacks p WHERE p.subject_id = callbacks.subject_id "
    "AND p.state = 'pending') THEN NULL ELSE CAST($1 AS BIGINT) END WHERE id = $2"
)
"""Pending again with a fresh schedule; due now unless another callback of its destination is pending, in
which case it waits its turn (made due when that one is done, as any waiting callback)."""
CANCEL_CALLBACK = Query(
    "UPDATE callbacks SET state = 'cancelled', due_at = NULL, updated_at = $1 WHERE id = $2 AND state = 'pending'"
)
PENDING_CALLBACKS = Query("SELECT count(*) FROM callbacks WHERE state = 'pending'")

# inbound messages

LIST_INBOUND = Query(
    f"SELECT {columns(StoredInbound)} FROM inbound_messages WHERE (CAST($1 AS BIGINT) IS NULL OR id < $1) "
    "ORDER BY id DESC LIMIT $2"
)

# two-way messaging: numbers assigned to accounts, inbound messages routed to them (store/inbound.py)

INBOUND_ROW_COLUMNS = columns(inbound.InboundRow)
OWNERS_OF = Query(
    "SELECT n.number, n.keyword, n.account_id, a.inbound_callback_url FROM numbers n "
    "JOIN accounts a ON a.id = n.account_id JOIN {k} ON n.number = k.number",
    [Rows("k", inbound.NumberKey)],
)
"""Every assignment of the numbers messages were sent to (each number's keywords and the number itself)."""
INSERT_ROUTED_INBOUND = Query(
    f"INSERT INTO inbound_messages ({INBOUND_ROW_COLUMNS}) SELECT {INBOUND_ROW_COLUMNS} FROM {{m}} "
    f"ORDER BY m.{ROW_NUMBER} RETURNING id",
    [Rows("m", inbound.InboundRow)],
)
"""In the order given: ids grow in the order the messages came, so the ids returned, sorted, are the rows'."""
_PART_KEY = (
    "p.carrier = k.carrier AND p.source_addr = k.source_addr AND p.destination_addr = k.destination_addr "
    "AND p.reference = k.reference AND p.total = k.total"
)
_PART_ORDER = "ORDER BY p.carrier, p.source_addr, p.destination_addr, p.reference, p.total, p.seq, p.id"
RECORD_SEEN = Query(
    "INSERT INTO inbound_seen (digest, seen_at) SELECT s.digest, s.seen_at FROM {s} WHERE true "
    "ON CONFLICT (digest) DO UPDATE SET seen_at = excluded.seen_at "
    "WHERE inbound_seen.seen_at < excluded.seen_at - $1 RETURNING digest",
    [Rows("s", inbound.SeenRow)],
)
"""The digests not seen within $1 ms (inserted, or seen longer ago), recorded as seen now; those that come back
are the messages to store, the others resends (store/inbound.py). `WHERE true`: SQLite's upsert after a
SELECT needs it to parse."""
FORGET_SEEN = Query("DELETE FROM inbound_seen WHERE seen_at < $1")
LOCK_PART_GROUPS = Query(
    "SELECT pg_advisory_xact_lock(21321, hashtext(k.carrier || ' ' || k.source_addr || ' ' || k.destination_addr "
    "|| ' ' || k.reference || ' ' || k.total)) FROM {k} ORDER BY k." + ROW_NUMBER,
    [Rows("k", inbound.PartKey)],
    postgresql_only=True,
)
"""Serialise, per message, storing its parts and joining them (until commit): two processes each taking one of
the last two parts would otherwise each see the other's uncommitted part missing. The keys are locked in the
order given (sorted), so two transactions never wait for each other; 21321 ("SI") is the lock class, apart
from the id nodes'."""
INSERT_INBOUND_PARTS = Query(
    f"INSERT INTO inbound_parts ({columns(inbound.PartRow)}) SELECT {columns(inbound.PartRow)} FROM {{p}} "
    "WHERE true ON CONFLICT (carrier, source_addr, destination_addr, reference, total, seq) DO NOTHING",
    [Rows("p", inbound.PartRow)],
)
"""A place of a message stored twice (the SMSC sent it again after the duplicate window): the first is kept."""
INBOUND_PARTS_OF = Query(
    f"SELECT {columns(inbound.StoredPart, prefix='p.')} FROM inbound_parts p JOIN {{k}} ON {_PART_KEY} {_PART_ORDER}",
    [Rows("k", inbound.PartKey)],
)
STALE_PART_GROUPS = Query(
    "SELECT carrier, source_addr, destination_addr, reference, total FROM inbound_parts "
    "GROUP BY carrier, source_addr, destination_addr, reference, total HAVING min(received_at) < $1 "
    "ORDER BY carrier, source_addr, destination_addr, reference, total LIMIT 500"
)
"""Messages whose first part came before $1 and that are still not whole: what the sweep stores as it is."""
DELETE_INBOUND_PARTS = Query("DELETE FROM inbound_parts WHERE {ids}", [_any_of("id")])
_INBOUND_FILTERS = (
    "AND (CAST($2 AS BIGINT) IS NULL OR id < $2) AND (CAST($3 AS BIGINT) IS NULL OR received_at >= $3) "
    "AND (CAST($4 AS TEXT) IS NULL OR to_number = $4) AND (CAST($5 AS TEXT) IS NULL OR from_number = $5) "
    "ORDER BY id DESC LIMIT $6"
)
ACCOUNT_INBOUND = Query(
    f"SELECT {columns(StoredInbound)} FROM inbound_messages WHERE account_id = $1 {_INBOUND_FILTERS}"
)
"""An account's inbound messages ($1), newest first: below the id $2, received at or after $3, to $4, from $5."""
UNROUTED_INBOUND = Query(
    f"SELECT {columns(StoredInbound)} FROM inbound_messages WHERE account_id IS NULL "
    f"AND CAST($1 AS BIGINT) IS NULL {_INBOUND_FILTERS}"
)
"""The operator's unrouted inbox, as `ACCOUNT_INBOUND` ($1 is bound, and NULL)."""
ASSIGNED_COLUMNS = "n.number, n.keyword, n.account_id, a.name AS account_name, n.created_at"
INSERT_NUMBER = Query(
    "INSERT INTO numbers (number, keyword, account_id, created_at) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (number, keyword) DO NOTHING RETURNING account_id"
)
"""No row back: that number (with that keyword) is assigned already."""
NUMBER_OWNER = Query("SELECT account_id FROM numbers WHERE number = $1 AND keyword = $2")
DELETE_NUMBER = Query("DELETE FROM numbers WHERE number = $1 AND keyword = $2")
NUMBERS = Query(
    f"SELECT {ASSIGNED_COLUMNS} FROM numbers n JOIN accounts a ON a.id = n.account_id "
    "WHERE CAST($1 AS BIGINT) IS NULL OR n.account_id = $1 ORDER BY n.number, n.keyword"
)

# voice: call requests, calls and their records (store/calls.py decides)

INSERT_CALL_REQUEST = Query(
    f"INSERT INTO call_requests ({REQUEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
    "$13) ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id"
)
"""No row back: the account used this idempotency key before (the conflict target names the partial unique
index ux_call_requests_idempotency)."""
CALL_REQUEST_BY_KEY = Query("SELECT id FROM call_requests WHERE account_id = $1 AND idempotency_key = $2")
INSERT_CALLS = Query(
    f"INSERT INTO calls ({calls.CALL_ROW_COLUMNS}) SELECT {calls.CALL_ROW_COLUMNS} FROM {{c}}",
    [Rows("c", calls.CallRow)],
)
INSERT_RECORDS = Query(
    "INSERT INTO callbacks (account_id, kind, subject_id, sequence, url, body, state, due_at, attempts, "
    "created_at, updated_at) SELECT e.account_id, e.kind, e.subject_id, e.sequence, e.url, e.body, 'pending', "
    "e.created_at, 0, e.created_at, e.created_at FROM {e}",
    [Rows("e", CallbackEvent)],
)
"""Call records into the callback outbox, due at once: a record is its call's only event, so no earlier one
can be pending (store/calls.py)."""
CALL_REQUEST_BY = {
    where: Query(
        f"SELECT {REQUEST_VIEW_COLUMNS}, destination_count FROM call_requests "
        f"WHERE account_id = $1 AND {where} = $2 ORDER BY id DESC LIMIT 1"
    )
    for where in ("id", "reference_id")
}
CALLS_OF = Query(f"SELECT {calls.CALL_VIEW_COLUMNS} FROM calls WHERE id > $1 AND id <= $2 ORDER BY id")
"""A request's calls are the ids right after its own (Store.accept_calls)."""
_CALL_CURRENT_FROM = "FROM calls c JOIN call_requests r ON r.id = c.request_id"
LOCK_CALLS = Query(
    f"SELECT {calls.CURRENT_COLUMNS} {_CALL_CURRENT_FROM} WHERE {{ids}} ORDER BY c.id",
    [_any_of("c.id")],
    lock="FOR UPDATE OF c",
)
UPDATE_PROGRESS = Query(
    "UPDATE calls SET status = u.status, trunk = u.trunk, call_time = u.call_time, answer_time = u.answer_time, "
    "due_at = u.due_at, updated_at = u.updated_at FROM {u} WHERE calls.id = u.id",
    [Rows("u", calls.ProgressUpdate)],
)
UPDATE_END = Query(
    "UPDATE calls SET status = u.status, reason = u.reason, call_time = u.call_time, answer_time = u.answer_time, "
    "end_time = u.end_time, trunk = u.trunk, detail = u.detail, updated_at = u.updated_at, due_at = NULL "
    "FROM {u} WHERE calls.id = u.id",
    [Rows("u", calls.EndUpdate)],
)
CALL_REQUEST_SPAN = Query("SELECT id, destination_count FROM call_requests WHERE id = $1 AND account_id = $2")
LOCK_CALLS_TO = Query(
    f"SELECT {calls.CURRENT_COLUMNS} {_CALL_CURRENT_FROM} WHERE c.id > $1 AND c.id <= $2 "
    "AND (CAST($3 AS TEXT) IS NULL OR c.mobile_no = $3 OR c.e164 = $3) ORDER BY c.id",
    lock="FOR UPDATE OF c",
)
"""A request's calls ($1 the request, $2 its last call), or only those to the number $3."""
FLAG_CANCEL = Query("UPDATE calls SET cancel_requested = 1 WHERE {ids}", [_any_of("id")])
CANCELS_REQUESTED = Query("SELECT id FROM calls WHERE {ids} AND cancel_requested = 1 ORDER BY id", [_any_of("id")])

# campaigns

INSERT_CAMPAIGN = Query(
    f"INSERT INTO campaigns ({CAMPAIGN_COLUMNS}, audio) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
CAMPAIGN = Query(f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL")
CAMPAIGN_AUDIO = Query("SELECT audio FROM campaigns WHERE id = $1")
CAMPAIGNS_OF = Query(
    f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE account_id = $1 AND deleted_at IS NULL "
    "ORDER BY created_at DESC, id DESC"
)
DELETE_CAMPAIGN = Query("UPDATE campaigns SET deleted_at = $1 WHERE id = $2 AND account_id = $3 AND deleted_at IS NULL")

# limits (store/base.py: get_limits, set_limits, lease_rate, lease_daily)

LIMITS_COLUMNS = "account_id, requests_per_second, burst, destinations_per_day, countries"
LIMITS_OF = Query(f"SELECT {LIMITS_COLUMNS} FROM account_limits WHERE account_id = $1")
ALL_LIMITS = Query(f"SELECT {LIMITS_COLUMNS} FROM account_limits ORDER BY account_id")
SET_LIMITS = Query(
    f"INSERT INTO account_limits ({LIMITS_COLUMNS}) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (account_id) DO UPDATE SET requests_per_second = excluded.requests_per_second, "
    "burst = excluded.burst, destinations_per_day = excluded.destinations_per_day, countries = excluded.countries"
)

# One statement takes a lease from the account's shared token bucket ($1 account, $2 tokens wanted, $3 rate in
# tokens a second, $4 burst, $5 now in ms): the bucket is refilled for the time since it was last touched (a
# clock behind the last writer's refills nothing), capped at the burst, and hands out what it has up to $2,
# nothing when it has less than one token. Both SET expressions read the row as it was. Written with CASE
# (not LEAST/GREATEST, which SQLite spells min/max) and casts, so both databases read one text.
_WANT = "CAST($2 AS DOUBLE PRECISION)"
_BURST = "CAST($4 AS DOUBLE PRECISION)"
_ELAPSED = "(CASE WHEN $5 > rate_buckets.updated_at THEN $5 - rate_buckets.updated_at ELSE 0 END)"
_FILLED = f"(rate_buckets.tokens + {_ELAPSED} * CAST($3 AS DOUBLE PRECISION) / 1000.0)"
_REFILLED = f"(CASE WHEN {_FILLED} > {_BURST} THEN {_BURST} ELSE {_FILLED} END)"
_GRANT = f"(CASE WHEN {_REFILLED} >= {_WANT} THEN {_WANT} WHEN {_REFILLED} >= 1 THEN {_REFILLED} ELSE 0 END)"
_FIRST_GRANT = f"(CASE WHEN {_BURST} >= {_WANT} THEN {_WANT} ELSE {_BURST} END)"
LEASE_RATE = Query(
    "INSERT INTO rate_buckets (account_id, tokens, granted, updated_at) "
    f"VALUES ($1, {_BURST} - {_FIRST_GRANT}, {_FIRST_GRANT}, $5) "
    f"ON CONFLICT (account_id) DO UPDATE SET granted = {_GRANT}, tokens = {_REFILLED} - {_GRANT}, "
    "updated_at = CASE WHEN $5 > rate_buckets.updated_at THEN $5 ELSE rate_buckets.updated_at END "
    "RETURNING granted, tokens"
)

# Count destinations against the account's daily cap ($1 account, $2 day, $3 wanted, $4 cap): grants what is
# left of the cap up to $3, and returns it with the day's count after it.
_LEFT = "(CAST($4 AS BIGINT) - daily_counts.used)"
_DAILY_GRANT = (
    f"(CASE WHEN {_LEFT} >= CAST($3 AS BIGINT) THEN CAST($3 AS BIGINT) WHEN {_LEFT} > 0 THEN {_LEFT} ELSE 0 END)"
)
_FIRST_DAILY = (
    "(CASE WHEN CAST($4 AS BIGINT) >= CAST($3 AS BIGINT) THEN CAST($3 AS BIGINT) ELSE CAST($4 AS BIGINT) END)"
)
LEASE_DAILY = Query(
    "INSERT INTO daily_counts (account_id, day, used, granted) "
    f"VALUES ($1, $2, {_FIRST_DAILY}, {_FIRST_DAILY}) "
    f"ON CONFLICT (account_id, day) DO UPDATE SET granted = {_DAILY_GRANT}, used = daily_counts.used + {_DAILY_GRANT} "
    "RETURNING granted, used"
)
DAILY_USED = Query("SELECT used FROM daily_counts WHERE account_id = $1 AND day = $2")

# opt-out (store/optouts.py decides; switchboard/optouts.py caches and sends the replies)

REPLY_TEXTS_OF = Query(
    "SELECT a.id AS account_id, a.name, r.opt_out_reply, r.opt_in_reply, r.help_reply FROM accounts a "
    "LEFT JOIN account_replies r ON r.account_id = a.id WHERE {a}",
    [AnyOf("a", "a.id")],
)
"""The reply texts of the accounts whose keywords came (a.id one of them)."""
SET_REPLY_TEXTS = Query(
    "INSERT INTO account_replies (account_id, opt_out_reply, opt_in_reply, help_reply) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (account_id) DO UPDATE SET opt_out_reply = excluded.opt_out_reply, "
    "opt_in_reply = excluded.opt_in_reply, help_reply = excluded.help_reply"
)
ADD_OPT_OUT = Query(
    "INSERT INTO opt_outs (account_id, number, source, created_at) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (account_id, number) DO NOTHING"
)
"""No row changed: the number was on the list already (its first source and time are kept)."""
REMOVE_OPT_OUT = Query("DELETE FROM opt_outs WHERE account_id = $1 AND number = $2")
LIST_OPT_OUTS = Query(
    "SELECT number, source, created_at FROM opt_outs WHERE account_id = $1 "
    "AND (CAST($2 AS TEXT) IS NULL OR number > $2) ORDER BY number LIMIT $3"
)
"""An account's list in number order, after the number $2 (keyset pages)."""
OPTED_OUT_AMONG = Query(
    "SELECT o.number FROM opt_outs o JOIN {k} ON o.number = k.number WHERE o.account_id = $1",
    [Rows("k", inbound.NumberKey)],
)
INSERT_REPLIES = Query(
    f"INSERT INTO opt_out_replies ({columns(optouts.NewReply)}) SELECT {columns(optouts.NewReply)} FROM {{r}}",
    [Rows("r", optouts.NewReply)],
)
PENDING_REPLIES = Query(f"SELECT {columns(PendingReply)} FROM opt_out_replies ORDER BY id LIMIT $1")
DELETE_REPLY = Query("DELETE FROM opt_out_replies WHERE id = $1")
