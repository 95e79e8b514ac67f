"""How outcomes and receipts change destination rows: one decision, shared by both stores.

A change is applied only when the status graph allows it (`domain.statuses.can_transition`); anything
else (a late receipt for a destination that is already final, a contradictory one) is kept in the history
with a note and changes nothing else.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from switchboard.domain.statuses import SmsStatus, can_transition
from switchboard.store.records import Outcome, Receipt


class Current(NamedTuple):
    id: int
    status: str
    attempts: int
    sequence: int


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


class Plan(NamedTuple):
    updates: list[StatusUpdate]
    retries: list[RetryUpdate]
    history: list[HistoryRow]


def plan_outcomes(current: dict[int, Current], outcomes: list[Outcome], now: int) -> Plan:
    plan = Plan([], [], [])
    for o in outcomes:
        row = current.get(o.destination_id)
        if row is None or row.attempts != o.attempt:
            continue  # a later claim owns it now
        if o.status is None:
            if o.retry_at is None:
                raise ValueError("an outcome without a status needs retry_at")
            plan.retries.append(RetryUpdate(o.retry_at, o.error, now, row.id))
            continue
        if _change(plan, row, o.status, o.error, o.carrier, o.carrier_ref, now):
            # A second outcome for the same claim in this batch is judged against this change.
            current[o.destination_id] = row._replace(status=o.status.value, sequence=row.sequence + 1)
    return plan


def plan_receipts(
    current: dict[tuple[str, str], Current], receipts: list[Receipt], now: int
) -> tuple[Plan, list[Receipt]]:
    """`current` is keyed by (carrier, carrier_ref); returns the plan and the receipts that matched
    nothing."""
    plan = Plan([], [], [])
    unmatched: list[Receipt] = []
    for r in receipts:
        key = (r.carrier, r.carrier_ref)
        row = current.get(key)
        if row is None:
            unmatched.append(r)
            continue
        if _change(plan, row, r.status, r.error, None, None, now):
            current[key] = row._replace(status=r.status.value, sequence=row.sequence + 1)
    return plan, unmatched


def _change(
    plan: Plan,
    row: Current,
    status: SmsStatus,
    error: str | None,
    carrier: str | None,
    carrier_ref: str | None,
    now: int,
) -> bool:
    if not can_transition(SmsStatus(row.status), status):
        plan.history.append(HistoryRow(row.id, status.value, now, f"ignored: already {row.status}"))
        return False
    delivered_at = now if status is SmsStatus.DELIVERED else None
    plan.updates.append(
        StatusUpdate(status.value, error, carrier, carrier_ref, row.sequence + 1, now, delivered_at, row.id)
    )
    plan.history.append(HistoryRow(row.id, status.value, now, error))
    return True


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
    return Plan(list(updates.values()), list(retries.values()), plan.history)


def _coalesce(a: object, b: object) -> Any:
    return a if a is not None else b
