"""Opt-out at run time: the Send path's view of each account's list, and the sender of replies to keywords.

`OptOutList` answers which of a Send's numbers are opted out without a database round trip for an account
whose list is empty or small: each process reads an account's list once per `CACHE_SECONDS` (up to
`CACHED_NUMBERS` of them; a longer list is asked about per Send, one indexed read). A change made in this
process (a keyword stored by its worker, POST or DELETE /api/OptOuts) forgets the cache at once; one made by
another process of a cluster applies here within `CACHE_SECONDS`.

`ReplySender` turns the outbox of replies (written with the keyword, store/optouts.py) into Sends of the
account, through the normal send path, from the number that received the keyword. A reply's Idempotency-Key
is made of its outbox id and time, so a reply accepted but not yet deleted when the process stopped is not sent
twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from switchboard.domain.clock import Clock
from switchboard.domain.sms_request import SendRequest, validate_send
from switchboard.sms.service import SmsService
from switchboard.store.base import Store
from switchboard.store.records import PendingReply

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
CACHED_NUMBERS = 10_000
_CACHE_MAX = 100_000
REPLY_BATCH = 100


class OptOutList:
    def __init__(self, *, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._cache: dict[int, tuple[float, frozenset[str] | None]] = {}
        """By account: until when, and its whole list (None: longer than CACHED_NUMBERS, ask per Send)."""

    async def among(self, account_id: int, numbers: list[str]) -> set[str]:
        """Which of the numbers (E.164) are on the account's list."""
        now = self._clock.monotonic()
        hit = self._cache.get(account_id)
        if hit is None or hit[0] <= now:
            rows = await self._store.list_opt_outs(account_id, limit=CACHED_NUMBERS + 1)
            whole = frozenset(r.number for r in rows) if len(rows) <= CACHED_NUMBERS else None
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            hit = self._cache[account_id] = (now + CACHE_SECONDS, whole)
        listed = hit[1]
        if listed is None:
            return await self._store.opted_out_among(account_id, numbers)
        if not listed:
            return set()
        return {n for n in numbers if n in listed}

    def forget(self, account_id: int | None = None) -> None:
        """The account's list (None: any account's) changed: read it again at the next Send."""
        if account_id is None:
            self._cache.clear()
        else:
            self._cache.pop(account_id, None)


class ReplySender:
    """Sends the replies to STOP, START and HELP that the store wrote with them (the worker's side)."""

    def __init__(self, *, store: Store, sms: SmsService, clock: Clock, poll_interval: float) -> None:
        self._store = store
        self._sms = sms
        self._clock = clock
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="opt-out-replies")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()  # before looking: a wake while sending is not lost
            try:
                while await self.send_pending():
                    pass
            except Exception:
                log.exception("sending replies to opt-out keywords failed; trying again")
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(self._wake.wait(), self._poll_interval)

    async def send_pending(self) -> int:
        """Make Sends of the replies waiting (up to REPLY_BATCH); how many there were."""
        pending = await self._store.pending_replies(limit=REPLY_BATCH)
        for reply in pending:
            await self._send(reply)
            await self._store.delete_reply(reply.id)
        return len(pending)

    async def _send(self, reply: PendingReply) -> None:
        account = await self._store.get_account(reply.account_id)
        request = validate_send(
            {"Destination": [reply.mobile_no], "Message": reply.body, "Sender": reply.sender.lstrip("+"),
             "CallBack": "No"},
            now=datetime.fromtimestamp(self._clock.now_ms() / 1000, UTC),
        )  # fmt: skip
        if account is None or not isinstance(request, SendRequest):
            log.warning("reply %d to a keyword cannot be sent (%s); dropped", reply.id, account and request)
            return
        # The id alone is not enough: SQLite gives a deleted row's id to the next row, and a reply with a key
        # used before would be answered with the earlier message and never sent.
        key = f"opt-out-reply-{reply.id}-{reply.created_at}"
        await self._sms.send(account, request, idempotency_key=key, exempt=True)
