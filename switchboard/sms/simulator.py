"""The built-in carrier simulator, the default carrier: no SMSC needed to try the gateway out.

Every number is delivered after `delay` seconds, except the reserved test numbers +1 500 555 00NN
(ARCHITECTURE.md §3, docs/api.md "Test numbers"), which choose the outcome. Its receipts are derived from
the number alone, so after a restart it re-creates the receipts of what it had accepted (`resume`).

Like an SMSC, it hands receipts over again when the sink fails (RECEIPT_RETRY_SECONDS later), and `stop`
lets a hand-over in progress finish: a receipt is never lost to a failed or interrupted write.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque

from switchboard.domain.clock import Clock
from switchboard.domain.rate import TokenBucket
from switchboard.domain.statuses import SmsStatus
from switchboard.sms.carrier import InboundSink, OutboundSms, ReceiptSink, SubmitResult
from switchboard.store.records import InFlight, Receipt

log = logging.getLogger("switchboard.sms.simulator")

TEST_PREFIX = "+15005550"
SLOW_DELIVERY_SECONDS = 5.0
TICK_SECONDS = 0.05
RECEIPT_RETRY_SECONDS = 1.0
"""How long after the sink failed to take receipts they are handed over again (an SMSC sends them again)."""


def scripted_outcome(e164: str) -> tuple[SmsStatus | None, float | None]:
    """(receipt status, fixed delay) for a reserved test number; (DELIVERED, None) for any other number.
    A None status with no delay means the submit is refused; None status with a delay: no receipt ever."""
    if e164.startswith(TEST_PREFIX) and len(e164) == 12:
        match e164[-2:]:
            case "00":
                return SmsStatus.DELIVERED, None
            case "01":
                return SmsStatus.UNDELIVERED, None
            case "02":
                return SmsStatus.EXPIRED, None
            case "03":
                return None, None
            case "04":
                return None, 0.0
            case "05":
                return SmsStatus.DELIVERED, SLOW_DELIVERY_SECONDS
    return SmsStatus.DELIVERED, None


class SimulatedCarrier:
    simulated = True

    def __init__(self, *, name: str, delay: float, clock: Clock, rate: float = 0.0) -> None:
        """`rate`: submits a second it takes, like a real carrier link (0: as fast as asked)."""
        self.name = name
        self._delay = delay
        self._clock = clock
        self._bucket = TokenBucket(rate=rate, burst=max(rate / 10, 1.0), clock=clock)
        self._refs = itertools.count(1)
        self._prefix = f"sim{clock.now_ms():x}-"
        # One FIFO per delay keeps due times in order without a heap: (due, receipt).
        self._queues: dict[float, deque[tuple[float, Receipt]]] = {}
        self._sink: ReceiptSink | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._handing_over = False

    @property
    def up(self) -> bool:
        return self._task is not None

    async def start(self, receipts: ReceiptSink, inbound: InboundSink | None = None) -> None:
        """`inbound` is not used: the simulator has no handsets that write back."""
        self._sink = receipts
        self._stopping = False
        self._task = asyncio.create_task(self._emit_receipts(), name=f"simulator-{self.name}")

    async def stop(self) -> None:
        """Stop emitting receipts; a hand-over to the sink in progress finishes first (not cancelled midway:
        the worker's sink is a store write)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        if not self._handing_over:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def submit(self, messages: list[OutboundSms]) -> list[SubmitResult]:
        wait = self._bucket.take(len(messages))
        if wait:
            await self._clock.sleep(wait)
        now = self._clock.monotonic()
        results = []
        for m in messages:
            status, fixed = scripted_outcome(m.e164)
            if status is None and fixed is None:
                results.append(SubmitResult(None, "Rejected by carrier (simulated)", permanent=True))
                continue
            ref = f"{self._prefix}{next(self._refs)}"
            results.append(SubmitResult(ref))
            if status is not None:
                self._schedule(now, ref, status, fixed)
        return results

    async def resume(self, in_flight: list[InFlight]) -> None:
        now = self._clock.monotonic()
        for f in in_flight:
            status, fixed = scripted_outcome(f.e164)
            if status is not None:
                self._schedule(now, f.carrier_ref, status, fixed)
        if in_flight:
            log.info("simulator %s: re-created receipts for %d messages after restart", self.name, len(in_flight))

    def _schedule(self, now: float, ref: str, status: SmsStatus, fixed: float | None) -> None:
        delay = self._delay if fixed is None else fixed
        error = None if status is SmsStatus.DELIVERED else f"{status.value} (simulated)"
        self._queues.setdefault(delay, deque()).append((now + delay, Receipt(self.name, ref, status, error)))

    async def _emit_receipts(self) -> None:
        while not self._stopping:
            await self._clock.sleep(TICK_SECONDS)
            now = self._clock.monotonic()
            due: list[Receipt] = []
            for q in self._queues.values():
                while q and q[0][0] <= now:
                    due.append(q.popleft()[1])
            if due and self._sink is not None:
                self._handing_over = True
                try:
                    await self._sink(due)
                except Exception:  # task boundary: the receipts are handed over again later
                    log.exception("simulator %s: could not hand over %d receipts; again in %g s", self.name,
                                  len(due), RECEIPT_RETRY_SECONDS)  # fmt: skip
                    again = self._clock.monotonic() + RECEIPT_RETRY_SECONDS  # now: this FIFO stays in order
                    self._queues.setdefault(RECEIPT_RETRY_SECONDS, deque()).extend((again, r) for r in due)
                finally:
                    self._handing_over = False
