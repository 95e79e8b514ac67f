"""How outcomes and receipts change destination rows: one decision, shared by both stores.

A change is applied only when the status graph allows it (`domain.statuses.can_transition`); anything
else (a late receipt for a destination that is already final, a contradictory one) is kept in the history
with a note and changes nothing else.

Long messages. A destination sent in several parts (an `Outcome` with `part_refs`) gets one
destination_parts row per part, written with its Sent change; its `carrier_ref` is the first part's. A
receipt that matches a part (looked up before the destinations' own references) changes that part only,
and is kept in the history with a "part i/n" note; a second receipt for a part already final is only
history. The destination changes, once, when every part is final: to `statuses.parts_status` of them
(Delivered when all are; else Rejected, Undelivered or Expired, the worst), so its callback fires once.
A single-part destination has no parts rows: receipts match its `carrier_ref` as before.

A receipt that matches nothing (its submit response is not written yet) is held in held_receipts by the
store, in the same transaction, and later goes through `plan_receipts` again (`settle_held` says which
held rows are then done).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from switchboard.domain.clock import format_time
from switchboard.domain.statuses import SmsStatus, can_transition, parts_status
from switchboard.store.records import (
    CallbackEvent,
    CallbackResult,
    CallbackState,
    ClaimedCallback,
    HeldReceipts,
    NewErrorLog,
    NewMessage,
    Outcome,
    Receipt,
)

SMS = "sms"
NO_CALLBACK = "no"


class Current(NamedTuple):
    """A destination as a change finds it, with what its callback needs from the message."""

    id: int
    status: str
    attempts: int
    sequence: int
    message_id: int
    mobile_no: str
    error_log_id: int | None
    account_id: int
    reference_id: str | None
    segments: int
    callback: str
    callback_url: str | None
    carrier: str | None = None
    carrier_ref: str | None = None
    """The reference a receipt matches it by (none before it is `Sent`)."""


CURRENT_COLUMNS = (
    "d.id, d.status, d.attempts, d.sequence, d.message_id, d.mobile_no, d.error_log_id, "
    "m.account_id, m.reference_id, m.segments, m.callback, m.callback_url, d.carrier, d.carrier_ref"
)
"""The columns of `Current`, from `destinations d JOIN messages m ON m.id = d.message_id`."""


class StatusUpdate(NamedTuple):
    status: str
    error: str | None
    carrier: str | None
    carrier_ref: str | None
    sequence: int
    updated_at: int
    delivered_at: int | None
    id: int


class RetryUpdate(NamedTuple):
    due_at: int
    error: str | None
    updated_at: int
    id: int


class HistoryRow(NamedTuple):
    destination_id: int
    status: str
    at: int
    detail: str | None


class PartRow(NamedTuple):
    """A destination_parts row: one part of a destination sent in several parts."""

    destination_id: int
    part: int
    carrier: str
    carrier_ref: str
    status: str
    updated_at: int




class PartUpdate(NamedTuple):
    status: str
    updated_at: int
    destination_id: int
    part: int


class Parts(NamedTuple):
    """What receipts need of the parts of the destinations they may be about."""

    by_ref: dict[tuple[str, str], list[tuple[int, int]]]
    """(carrier, carrier_ref) → the (destination id, part)s it names, newest destination first, then by part.
    Usually one; several when an SMSC answers every part of a message with one id, or reuses ids."""
    statuses: dict[int, dict[int, SmsStatus]]
    """Destination id → part → its status."""
    current: dict[int, Current]
    """The destinations that have parts, by id."""


def parts_from_rows(rows: list[PartRow], current: dict[int, Current]) -> Parts:
    """`Parts` from destination_parts rows and those destinations."""
    by_ref: dict[tuple[str, str], list[tuple[int, int]]] = {}
    statuses: dict[int, dict[int, SmsStatus]] = {}
    for destination_id, part, carrier, carrier_ref, status, _ in rows:
        by_ref.setdefault((carrier, carrier_ref), []).append((destination_id, part))
        statuses.setdefault(destination_id, {})[part] = SmsStatus(status)
    for named in by_ref.values():
        named.sort(key=lambda dp: (-dp[0], dp[1]))
    return Parts(by_ref, statuses, current)


NO_PARTS = Parts({}, {}, {})


class Plan(NamedTuple):
    updates: list[StatusUpdate]
    retries: list[RetryUpdate]
    history: list[HistoryRow]
    callbacks: list[CallbackEvent]
    """Written in the same transaction as the updates (the outbox)."""
    subjects: set[int]
    """Destinations that already have an event in `callbacks`."""
    parts: list[PartRow]
    """New destination_parts rows (a destination sent in several parts)."""
    part_updates: list[PartUpdate]


def _new_plan() -> Plan:
    return Plan([], [], [], [], set(), [], [])


def plan_outcomes(current: dict[int, Current], outcomes: list[Outcome], now: int) -> Plan:
    plan = _new_plan()
    repeated = len({o.destination_id for o in outcomes}) < len(outcomes)
    for o in outcomes:
        row = current.get(o.destination_id)
        if row is None or row.attempts != o.attempt:
            continue  # a later claim owns it now
        if o.status is None:
            if o.retry_at is None:
                raise ValueError("an outcome without a status needs retry_at")
            plan.retries.append(RetryUpdate(o.retry_at, o.error, now, row.id))
            continue
        carrier_ref = o.part_refs[0] if o.part_refs else o.carrier_ref
        if _change(plan, row, o.status, o.error, o.carrier, carrier_ref, now):
            if repeated:  # a second outcome for the same claim in this batch is judged against this change
                current[o.destination_id] = _changed(row, str(o.status))
            if o.status is SmsStatus.SENT and len(o.part_refs) > 1:
                if o.carrier is None:
                    raise ValueError("an outcome with part_refs needs its carrier")
                plan.parts.extend(
                    PartRow(row.id, part, o.carrier, ref, SmsStatus.SENT.value, now)
                    for part, ref in enumerate(o.part_refs, start=1)
                )
    return plan


def plan_receipts(
    current: dict[tuple[str, str], Current], receipts: list[Receipt], now: int, parts: Parts = NO_PARTS
) -> tuple[Plan, list[Receipt]]:
    """`current` is keyed by (carrier, carrier_ref); `parts`, the parts the receipts may match (matched
    first). Returns the plan and the receipts that matched nothing."""
    plan = _new_plan()
    unmatched: list[Receipt] = []
    repeated = len({(r.carrier, r.carrier_ref) for r in receipts}) < len(receipts)
    for r in receipts:
        key = (r.carrier, r.carrier_ref)
        named = parts.by_ref.get(key)
        if named:
            # The first part it names that still waits for its receipt; if none waits and a destination
            # of its own has this reference (an id the SMSC used again), that destination's; else it is a
            # late receipt for a finished part, kept in the history.
            waiting = [dp for dp in named if not parts.statuses[dp[0]][dp[1]].terminal]
            if waiting or key not in current or current[key].id in parts.statuses:
                destination_id, part = (waiting or named)[0]
                _part_receipt(plan, parts, destination_id, part, r, now)
                continue
        row = current.get(key)
        if row is None:
            unmatched.append(r)
            continue
        if _change(plan, row, r.status, r.error, None, None, now) and repeated:
            current[key] = _changed(row, str(r.status))  # what a second receipt for it in this batch meets
    return plan, unmatched


class HeldRow(NamedTuple):
    """A held_receipts row (store/schema.py): a receipt that matched nothing when it came."""

    id: int
    receipt: Receipt
    received_at: int


def settle_held(
    held: list[HeldRow], unmatched: list[Receipt], drop_before: int, remaining: int
) -> tuple[list[int], HeldReceipts]:
    """After `held` (in id order) went through `plan_receipts` again and `unmatched` came back: the ids of
    the rows to delete (those applied, and those that still match nothing and were received before
    `drop_before`) and what to report; `remaining`, the rows held in all before. A receipt matches or not by
    its (carrier, carrier_ref) alone, so the unmatched references say which rows were applied."""
    waiting = {(r.carrier, r.carrier_ref) for r in unmatched}
    done: list[int] = []
    dropped: list[Receipt] = []
    applied = 0
    for h in held:
        if (h.receipt.carrier, h.receipt.carrier_ref) not in waiting:
            applied += 1
        elif h.received_at < drop_before:
            dropped.append(h.receipt)
        else:
            continue
        done.append(h.id)
    return done, HeldReceipts(applied, dropped, remaining - len(done))


def _part_receipt(plan: Plan, parts: Parts, destination_id: int, part: int, r: Receipt, now: int) -> None:
    statuses = parts.statuses[destination_id]
    total = len(statuses)
    note = f"part {part}/{total}"
    was = statuses[part]
    if was.terminal or not can_transition(was, r.status):
        plan.history.append(HistoryRow(destination_id, r.status.value, now, f"{note} ignored: already {was.value}"))
        return
    statuses[part] = r.status
    plan.part_updates.append(PartUpdate(r.status.value, now, destination_id, part))
    plan.history.append(HistoryRow(destination_id, r.status.value, now, note + (f": {r.error}" if r.error else "")))
    final = parts_status(list(statuses.values()))
    row = parts.current.get(destination_id)
    if final is None or row is None:
        return
    error = None
    if final is not SmsStatus.DELIVERED:
        which = [str(p) for p, s in sorted(statuses.items()) if s is final]
        error = f"part {', '.join(which)} of {total} {final.value}"
        if r.status is final and r.error:
            error += f" ({r.error})"
    if _change(plan, row, final, error, None, None, now):
        parts.current[destination_id] = _changed(row, final.value)


_STATUSES = {s.value: s for s in SmsStatus}
"""SmsStatus by value: a dict lookup, not the enum's call (which is several times slower), per row."""


def _changed(row: Current, status: str) -> Current:
    """`row` after a change to `status`: what a later change in the same batch is judged against (made only
    when the batch names a row twice). Built directly rather than with `_replace`, which costs ≈ 1.5 µs."""
    return Current(row.id, status, row.attempts, row.sequence + 1, *row[4:])


def _change(
    plan: Plan,
    row: Current,
    status: SmsStatus,
    error: str | None,
    carrier: str | None,
    carrier_ref: str | None,
    now: int,
) -> bool:
    if not can_transition(_STATUSES[row.status], status):
        plan.history.append(HistoryRow(row.id, str(status), now, f"ignored: already {row.status}"))
        return False
    delivered_at = now if status is SmsStatus.DELIVERED else None
    value = str(status)  # a StrEnum's str() is its value, and far cheaper than `.value` (a Python property)
    plan.updates.append(StatusUpdate(value, error, carrier, carrier_ref, row.sequence + 1, now, delivered_at, row.id))
    plan.history.append(HistoryRow(row.id, value, now, error))
    if row.callback != NO_CALLBACK:
        body = callback_body(row, value, now, error, row.sequence + 1)
        first = row.id not in plan.subjects
        plan.subjects.add(row.id)
        plan.callbacks.append(
            CallbackEvent(row.account_id, SMS, row.id, row.sequence + 1, row.callback_url, body, now, first)
        )
    return True


_encode = msgspec.json.Encoder().encode


def callback_body(row: Current, status: str, at: int, error: str | None, sequence: int) -> str:
    """The SMS callback of the contract (ARCHITECTURE.md §2 "SMS callback"), MobileNo as the client wrote it."""
    return _encode(
        {
            "ID": str(row.message_id),
            "MobileNo": row.mobile_no,
            "Status": status,
            "DateTime": format_time(at),
            "ReferenceID": row.reference_id or "",
            "Error": error or "",
            "ErrorLogsID": "" if row.error_log_id is None else str(row.error_log_id),
            "Sequence": sequence,
            "Segments": row.segments,
        }
    ).decode()


def plan_cancel(rows: list[Current], now: int) -> tuple[Plan, list[Current]]:
    """Scheduled destinations that no worker has claimed yet (`attempts` 0) become Cancelled, with a callback
    each when their message asked for callbacks; any other is left as it is: one that was claimed may be
    with a carrier already. Also returns the rows as they are after the plan."""
    plan = _new_plan()
    after = []
    for row in rows:
        if row.status == SmsStatus.SCHEDULED.value and row.attempts == 0:
            if _change(plan, row, SmsStatus.CANCELLED, None, None, None, now):
                row = _changed(row, SmsStatus.CANCELLED.value)
        after.append(row)
    return plan, after


def accept_callbacks(message: NewMessage, mobile_numbers: list[str], errors: list[NewErrorLog]) -> list[CallbackEvent]:
    """The callbacks of destinations stored Failed at once (an invalid number): their first change."""
    if message.callback == NO_CALLBACK or not errors:
        return []
    events = []
    for e in errors:
        position = e.destination_id - message.id - 1
        row = Current(
            e.destination_id, SmsStatus.FAILED.value, 0, 0, message.id, mobile_numbers[position], e.id,
            message.account_id, message.reference_id, message.segments, message.callback, message.callback_url,
        )  # fmt: skip
        body = callback_body(row, SmsStatus.FAILED.value, e.at, e.text, 1)
        events.append(
            CallbackEvent(message.account_id, SMS, e.destination_id, 1, message.callback_url, body, e.at, True)
        )
    return events


def one_per_row(plan: Plan) -> Plan:
    """The plan with at most one update and one retry per destination: what applying each change in turn
    would leave behind. Set-based `UPDATE ... FROM` applies only one source row to each target row."""
    updates: dict[int, StatusUpdate] = {}
    for u in plan.updates:
        p = updates.get(u.id)
        if p is not None:
            u = u._replace(
                error=_coalesce(u.error, p.error),
                carrier=_coalesce(u.carrier, p.carrier),
                carrier_ref=_coalesce(u.carrier_ref, p.carrier_ref),
                delivered_at=_coalesce(u.delivered_at, p.delivered_at),
            )
        updates[u.id] = u
    retries = {r.id: r for r in plan.retries}
    return plan._replace(updates=list(updates.values()), retries=list(retries.values()))


def _coalesce(a: object, b: object) -> Any:
    return a if a is not None else b


# The callback outbox: claiming and applying what the dispatcher reports, shared by both stores.

CLAIM_CALLBACK_COLUMNS = (
    "c.id, c.attempts + 1, c.account_id, c.kind, c.subject_id, c.sequence, c.url, "
    "CASE c.kind WHEN 'sms' THEN a.sms_callback_url WHEN 'inbound' THEN a.inbound_callback_url "
    "ELSE a.voice_callback_url END, "
    "CASE c.kind WHEN 'sms' THEN a.sms_callback_disabled WHEN 'inbound' THEN a.inbound_callback_disabled "
    "ELSE a.voice_callback_disabled END, "
    "c.body, a.webhook_secret, a.previous_webhook_secret, a.secret_rotated_at"
)
"""From `callbacks c JOIN accounts a ON a.id = c.account_id`; `claimed_callback` reads a row of them."""


def claimed_callback(row: Any) -> ClaimedCallback:
    (cid, attempt, account_id, kind, subject_id, sequence, own_url, account_url, disabled, body,
     secret, previous, rotated_at) = row  # fmt: skip
    return ClaimedCallback(
        id=cid, attempt=attempt, account_id=account_id, kind=kind, subject_id=subject_id, sequence=sequence,
        url=own_url or account_url, from_account=own_url is None, disabled=None if own_url else disabled,
        body=body, secret=secret, previous_secret=previous, secret_rotated_at=rotated_at,
    )  # fmt: skip


class CallbackCurrent(NamedTuple):
    id: int
    attempts: int
    state: str
    subject_id: int


class AttemptRow(NamedTuple):
    callback_id: int
    at: int
    url: str | None
    status_code: int | None
    latency_ms: int
    error: str | None


class CallbackUpdate(NamedTuple):
    state: str
    due_at: int | None
    last_status: int | None
    last_error: str | None
    updated_at: int
    id: int


class CallbackPlan(NamedTuple):
    attempts: list[AttemptRow]
    updates: list[CallbackUpdate]
    finished_subjects: list[int]
    """Subjects whose pending event is done: their next event, if any, becomes due."""
    disable: list[tuple[int, str, str | None, str]]
    """(account id, kind, URL, reason): the account's URL of that kind answered 410."""
    deferrals: list[tuple[int, int]]
    """(due_at, id): handed back unattempted; the claim's attempt is taken back."""


def plan_callback_results(current: dict[int, CallbackCurrent], results: list[CallbackResult]) -> CallbackPlan:
    """Every attempt is logged; only the result of the current claim of a pending event changes it (a
    replay or a later claim superseded the others)."""
    plan = CallbackPlan([], [], [], [], [])
    for r in results:
        if not r.deferred:
            plan.attempts.append(AttemptRow(r.callback_id, r.at, r.url, r.status_code, r.latency_ms, r.error))
        row = current.get(r.callback_id)
        if row is None or row.attempts != r.attempt or row.state != CallbackState.PENDING.value:
            continue
        if r.deferred:
            if r.retry_at is None:
                raise ValueError("a deferred callback result needs retry_at")
            plan.deferrals.append((r.retry_at, r.callback_id))
            continue
        if r.state is CallbackState.PENDING:
            if r.retry_at is None:
                raise ValueError("a pending callback result needs retry_at")
            plan.updates.append(CallbackUpdate(r.state.value, r.retry_at, r.status_code, r.error, r.at, r.callback_id))
            continue
        plan.updates.append(CallbackUpdate(r.state.value, None, r.status_code, r.error, r.at, r.callback_id))
        plan.finished_subjects.append(row.subject_id)
        current[r.callback_id] = row._replace(state=r.state.value)
        if r.disable is not None:
            plan.disable.append((r.account_id, r.kind, r.url, r.disable))
    return plan


def account_url_columns(kind: str) -> tuple[str, str]:
    """The accounts columns of a kind's callback URL and of its disabled reason."""
    if kind == SMS:
        return "sms_callback_url", "sms_callback_disabled"
    if kind == "voice":
        return "voice_callback_url", "voice_callback_disabled"
    if kind == "inbound":
        return "inbound_callback_url", "inbound_callback_disabled"
    raise ValueError(f"no callback URL of kind {kind!r}")
