"""How calls change, and the call record (CDR) each one leaves: one decision, shared by both stores (the voice
twin of `changes`).

A call is a work-queue row like an SMS destination: Received (queued, due) → Dialing → InProgress →
one final status with its `CallReason`. While a dialer holds it, `due_at` is its lease: a call whose dialer
dies is due again and claimed with its status, so that the next dialer ends it (never dials it twice).
Every change carries the claim's attempt token and is ignored once a later claim was made; a final status
never changes again.

When a call ends (`end_calls`, a cancel of a queued call, or a number found invalid at accept) its call
record is written to the callback outbox in the same transaction: ONE "voice" event, sequence 1, to the
request's URL (callback "url") or the account's voice URL read at delivery ("yes"), none for "no". It is
the call's only event, so it is due at once: no earlier event of the subject can be pending.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from switchboard.domain.clock import format_time
from switchboard.domain.statuses import CallReason, CallStatus
from switchboard.store.records import (
    CallbackEvent,
    CallEnd,
    CallProgress,
    CallView,
    CancelResult,
    ClaimedCall,
    NewCall,
    NewCallRequest,
)

VOICE = "voice"
NO_CALLBACK = "no"
URL_CALLBACK = "url"
INVALID_NUMBER_DETAIL = "not a valid international number"
CANCEL_DETAIL = "cancelled through the API"

class CallRow(NamedTuple):
    """A new `calls` row, every column the accept writes."""

    id: int
    request_id: int
    position: int
    guid: str
    mobile_no: str
    e164: str | None
    status: str
    reason: str
    detail: str | None
    due_at: int | None
    end_time: int | None
    updated_at: int


CALL_ROW_COLUMNS = ", ".join(CallRow._fields)


def new_calls(request: NewCallRequest, calls: list[NewCall]) -> tuple[list[CallRow], list[CallbackEvent]]:
    """The rows of a request's calls (call number `position` has the id `request.id + 1 + position`), and the
    records of those ended at once: a number that is not valid is Failed / General Error, never dialled."""
    now = request.created_at
    rows: list[CallRow] = []
    events: list[CallbackEvent] = []
    for position, call in enumerate(calls):
        call_id = request.id + 1 + position
        if call.e164 is not None:
            rows.append(
                CallRow(call_id, request.id, position, call.guid, call.mobile_no, call.e164,
                        CallStatus.RECEIVED.value, "", None, now, None, now)
            )  # fmt: skip
            continue
        rows.append(
            CallRow(call_id, request.id, position, call.guid, call.mobile_no, None, CallStatus.FAILED.value,
                    CallReason.GENERAL_ERROR.value, INVALID_NUMBER_DETAIL, None, now, now)
        )  # fmt: skip
        record = Record(call.guid, call.mobile_no, CallStatus.FAILED, CallReason.GENERAL_ERROR, None, None, now)
        event = record_event(request.account_id, call_id, request.id, request.reference_id, request.callback,
                             request.callback_url, record)  # fmt: skip
        if event is not None:
            events.append(event)
    return rows, events


# The call record (ARCHITECTURE.md §2, "Calls and call records").


class Record(NamedTuple):
    """What a call record says about a call that ended."""

    guid: str
    mobile_no: str
    status: CallStatus
    reason: CallReason
    call_time: int | None
    answer_time: int | None
    end_time: int


def duration_seconds(answer_time: int | None, end_time: int | None) -> int:
    """Whole seconds from answer to hang-up, rounded down (a call answered for 10.9 s lasted "10"); 0 when it
    was not answered or has not ended."""
    if answer_time is None or end_time is None:
        return 0
    return max(0, (end_time - answer_time) // 1000)


_encode = msgspec.json.Encoder().encode


def record_body(record: Record, request_id: int, reference_id: str | None) -> str:
    """The CDR callback body: the vendor's keys in the vendor's order, then the extensions `ID` and
    `ReferenceID`; `MobileNo` as the client wrote it, every value a string as in the vendor's sample."""
    return _encode(
        {
            "GUID": record.guid,
            "MobileNo": record.mobile_no,
            "Status": record.status.value,
            "Calltime": format_time(record.call_time),
            "AnswerTime": format_time(record.answer_time),
            "Duration": str(duration_seconds(record.answer_time, record.end_time)),
            "Reason": record.reason.value,
            "ID": str(request_id),
            "ReferenceID": reference_id or "",
        }
    ).decode()


def record_event(
    account_id: int,
    call_id: int,
    request_id: int,
    reference_id: str | None,
    callback: str,
    callback_url: str | None,
    record: Record,
) -> CallbackEvent | None:
    """The outbox row of a call's record; None when the request asked for no records."""
    if callback == NO_CALLBACK:
        return None
    url = callback_url if callback == URL_CALLBACK else None
    body = record_body(record, request_id, reference_id)
    return CallbackEvent(account_id, VOICE, call_id, 1, url, body, record.end_time, True)


# Changes to calls a dialer (or a cancel) makes: read the rows as `Current`, plan, write the plan.


class Current(NamedTuple):
    """A call as a change finds it, with what its record needs from the request."""

    id: int
    status: str
    attempts: int
    guid: str
    mobile_no: str
    call_time: int | None
    answer_time: int | None
    trunk: str | None
    request_id: int
    account_id: int
    reference_id: str | None
    callback: str
    callback_url: str | None

    def event(self, record: Record) -> CallbackEvent | None:
        return record_event(self.account_id, self.id, self.request_id, self.reference_id, self.callback,
                            self.callback_url, record)  # fmt: skip


CURRENT_COLUMNS = (
    "c.id, c.status, c.attempts, c.guid, c.mobile_no, c.call_time, c.answer_time, c.trunk, c.request_id, "
    "r.account_id, r.reference_id, r.callback, r.callback_url"
)
"""The columns of `Current`, from `calls c JOIN call_requests r ON r.id = c.request_id`."""


class ProgressUpdate(NamedTuple):
    status: str
    trunk: str
    call_time: int | None
    answer_time: int | None
    due_at: int
    updated_at: int
    id: int


_UNDER_WAY = (CallStatus.DIALING, CallStatus.IN_PROGRESS)


def plan_progress(current: dict[int, Current], changes: list[CallProgress]) -> list[ProgressUpdate]:
    """At most one update per call: what applying the changes in turn leaves; its calls are those whose
    change was applied. A change of a superseded claim, to a call that ended meanwhile (cancelled), or
    backwards (Dialing after InProgress) is ignored. A change to the status the call has
    already only moves its lease (`due_at`) on: a dialer renews the lease of a long call that way, and the
    first call_time / answer_time stay."""
    updates: dict[int, ProgressUpdate] = {}
    for p in changes:
        if p.status not in _UNDER_WAY:
            raise ValueError(f"progress to {p.status.value}: only Dialing and InProgress are progress")
        row = current.get(p.call_id)
        if row is None or row.attempts != p.attempt:
            continue
        status = CallStatus(row.status)
        if status.terminal or status.rank > p.status.rank:
            continue
        call_time = row.call_time if row.call_time is not None else p.at  # InProgress without a Dialing: both
        answer_time = row.answer_time
        if p.status is CallStatus.IN_PROGRESS and answer_time is None:
            answer_time = p.at
        update = ProgressUpdate(p.status.value, p.trunk, call_time, answer_time, p.lease_until, p.at, row.id)
        updates[row.id] = update
        current[row.id] = row._replace(status=p.status.value, call_time=call_time, answer_time=answer_time,
                                       trunk=p.trunk)  # fmt: skip
    return list(updates.values())


class EndUpdate(NamedTuple):
    status: str
    reason: str
    call_time: int | None
    answer_time: int | None
    end_time: int
    trunk: str | None
    detail: str | None
    updated_at: int
    id: int


class EndPlan(NamedTuple):
    updates: list[EndUpdate]
    callbacks: list[CallbackEvent]
    """The records of the calls that ended, written in the same transaction (the outbox)."""


def plan_ends(current: dict[int, Current], ends: list[CallEnd]) -> EndPlan:
    """A call ends once: an end of a superseded claim, or of a call already final (cancelled meanwhile, or
    ended earlier in the same batch), changes nothing and writes no second record."""
    plan = EndPlan([], [])
    for e in ends:
        if not e.status.terminal:
            raise ValueError(f"a call cannot end as {e.status.value}")
        row = current.get(e.call_id)
        if row is None or row.attempts != e.attempt or CallStatus(row.status).terminal:
            continue
        call_time = e.call_time if e.call_time is not None else row.call_time
        answer_time = e.answer_time if e.answer_time is not None else row.answer_time
        trunk = e.trunk if e.trunk is not None else row.trunk
        plan.updates.append(
            EndUpdate(e.status.value, e.reason.value, call_time, answer_time, e.end_time, trunk, e.detail,
                      e.end_time, row.id)
        )  # fmt: skip
        current[row.id] = row._replace(status=e.status.value)
        event = row.event(Record(row.guid, row.mobile_no, e.status, e.reason, call_time, answer_time, e.end_time))
        if event is not None:
            plan.callbacks.append(event)
    return plan


class CancelPlan(NamedTuple):
    result: CancelResult
    ends: EndPlan
    """The queued calls, ended now as Failed / Cancel with their records."""
    flagged: list[int]
    """Every call asked to stop (queued or under way): `cancels_requested` reports them to their dialer."""


def plan_cancel(rows: list[Current], now: int) -> CancelPlan:
    """Queued calls end at once; calls under way are flagged for their dialer to hang up; final ones stay.

    A queued call is flagged too: a dialer may hold it already (claimed, waiting for a channel), and asks
    `cancels_requested` before it dials."""
    ends = EndPlan([], [])
    flagged: list[int] = []
    ended = stopping = finished = 0
    for row in rows:
        status = CallStatus(row.status)
        if status.terminal:
            finished += 1
            continue
        flagged.append(row.id)
        if status in _UNDER_WAY:
            stopping += 1
            continue
        ended += 1
        ends.updates.append(
            EndUpdate(CallStatus.FAILED.value, CallReason.CANCEL.value, row.call_time, row.answer_time, now,
                      row.trunk, CANCEL_DETAIL, now, row.id)
        )  # fmt: skip
        event = row.event(Record(row.guid, row.mobile_no, CallStatus.FAILED, CallReason.CANCEL, row.call_time,
                                 row.answer_time, now))  # fmt: skip
        if event is not None:
            ends.callbacks.append(event)
    return CancelPlan(CancelResult(ended, stopping, finished), ends, flagged)


# Reading calls back.

CALL_VIEW_COLUMNS = (
    "id, position, guid, mobile_no, status, reason, call_time, answer_time, end_time, trunk, detail, updated_at"
)
"""From `calls`; `call_view` reads a row of them."""


def call_view(row: Any) -> CallView:
    (call_id, position, guid, mobile_no, status, reason, call_time, answer_time, end_time, trunk, detail,
     updated_at) = row  # fmt: skip
    return CallView(
        id=call_id, position=position, guid=guid, mobile_no=mobile_no, status=CallStatus(status), reason=reason,
        call_time=call_time, answer_time=answer_time, end_time=end_time,
        duration=duration_seconds(answer_time, end_time), trunk=trunk, detail=detail, updated_at=updated_at,
    )  # fmt: skip


CLAIM_COLUMNS = (
    "c.id, c.attempts, c.status, c.request_id, r.account_id, a.name, c.guid, c.mobile_no, c.e164, r.sender, "
    "r.message, r.locale, r.campaign_id, r.ring_timeout, c.call_time, c.answer_time"
)
"""The fields of `ClaimedCall`, from `calls c JOIN call_requests r ON r.id = c.request_id JOIN accounts a ON
a.id = r.account_id`, read after the claim's update (`attempts` is then the claim's token)."""


def claimed_call(row: Any) -> ClaimedCall:
    fields = tuple(row)
    return ClaimedCall(fields[0], fields[1], CallStatus(fields[2]), *fields[3:])


