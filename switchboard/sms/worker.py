"""The SMS worker: claims due destinations from the store, submits them through their carriers and
records what happened; writes carriers' receipts, and stores the messages carriers receive from handsets
(inbound, mobile-originated), before the carrier acknowledges them.

Delivery towards carriers is at-least-once: a claim whose worker dies is due again after its lease, so a
message in flight at that moment may be submitted twice (docs/api.md says so).

A receipt can come before its message's Sent is written (the SMSC answers the submit and sends the receipt
at once). The store holds such a receipt (table held_receipts) in the transaction that found it unmatched,
so it is as durable as any other once the carrier acknowledges it, and a sweep matches the held receipts
again until they match or are HELD_RECEIPT_SECONDS old. Nothing waits in memory: a stop or a crash loses no
receipt, and the next sweep of any worker on the same store applies what another left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from switchboard.domain import optout
from switchboard.domain.clock import Clock
from switchboard.domain.routing import Router
from switchboard.domain.statuses import SmsStatus
from switchboard.sms.carrier import Carrier, OutboundSms
from switchboard.store import inbound
from switchboard.store.base import Store
from switchboard.store.records import ClaimedDestination, InboundMessage, Outcome, Receipt

log = logging.getLogger("switchboard.sms.worker")

EXPIRED_ERROR = "Expired (validity period ended before it could be sent)"
NO_ROUTE_ERROR = "No route (no carrier is up for this destination)"
HELD_RECEIPT_SECONDS = 600.0
"""A held receipt (it matched nothing when it came) is matched again this long, then dropped with a warning;
longer when a claim's lease plus a retry is (`SmsWorker.hold_ms`): a destination whose Sent was never
written (its worker died) is submitted again under a new reference by then, and the old reference's
receipt can never match."""
HELD_SWEEP_SECONDS = 30.0
"""How often held receipts are looked at when none are known to be waiting (every poll_interval while some
are): those held before a restart, or by another worker process that died."""


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    batch_size: int = 500
    lease_ms: int = 60_000
    poll_interval: float = 1.0
    retry_ms: int = 30_000
    concurrent_batches: int = 4
    finish_every: int = 50
    """A claimed batch goes to its carriers in chunks of this many, all at once, and each chunk's outcomes are
    written as soon as that chunk is through, not when the whole batch is: a receipt that comes back before
    its message's Sent is written matches nothing and has to be tried again (measured: 40 % of the receipts,
    with 500 written at a time at 4,500 messages/s), and accept-to-Sent is a chunk's time, not a batch's."""


class SmsWorker:
    def __init__(
        self,
        *,
        store: Store,
        router: Router[Carrier],
        clock: Clock,
        settings: WorkerSettings,
        on_written: Callable[[], None] | None = None,
        on_keywords: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self.on_keywords: Callable[[], None] = on_keywords or (lambda: None)
        """Called after inbound messages of which one at least is an opt-out keyword are stored (the opt-out
        list may have changed; replies may be waiting): switchboard/optouts.py."""
        self._on_written = on_written or (lambda: None)
        """Called after status changes are written (they may have written callbacks)."""
        self._router = router
        self._clock = clock
        self._settings = settings
        self._wake = asyncio.Event()
        self._held = asyncio.Event()
        """Set when receipts were just held (or at stop): the sweep looks again."""
        self._stopping = asyncio.Event()
        self._claiming: asyncio.Task[None] | None = None
        self._sweeping: asyncio.Task[None] | None = None
        self._inbound_swept_at: int | None = None
        self._slots = asyncio.Semaphore(settings.concurrent_batches)
        self._batches: set[asyncio.Task[None]] = set()
        self.submitted = 0
        self.received = 0
        self.held = 0
        """Receipts that matched nothing when they came (held in the store)."""

    @property
    def hold_ms(self) -> int:
        """How long a held receipt is matched again: HELD_RECEIPT_SECONDS, or a minute past a lease and a retry
        when those are longer."""
        s = self._settings
        return max(int(HELD_RECEIPT_SECONDS * 1000), s.lease_ms + s.retry_ms + 60_000)

    def wake(self) -> None:
        """Work was just stored: look now instead of at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        await self._store.watch_for_work(self.wake)
        for carrier in self._router.carriers.values():
            await carrier.start(self.take_receipts, self.take_inbound)
            await carrier.resume(await self._store.in_flight(carrier.name, limit=1_000_000))
        self._claiming = asyncio.create_task(self._claim_loop(), name="sms-claim")
        self._sweeping = asyncio.create_task(self._sweep_loop(), name="sms-held-receipts")

    async def stop(self) -> None:
        """Stop claiming, let the batches in progress finish and stop the carriers, then match the held
        receipts once more (the last batches' Sent may be what they waited for). Every receipt is in the store
        already: what still matches nothing stays held for the next start."""
        if self._claiming is not None:
            self._claiming.cancel()
            await asyncio.gather(self._claiming, return_exceptions=True)
        # Holding every slot means no batch is in progress any more.
        for _ in range(self._settings.concurrent_batches):
            await self._slots.acquire()
        for _ in range(self._settings.concurrent_batches):
            self._slots.release()
        for carrier in self._router.carriers.values():
            await carrier.stop()
        if self._sweeping is not None:
            # Not cancelled: its last sweep is the one above, and it ends by itself after it.
            self._stopping.set()
            self._held.set()
            await asyncio.gather(self._sweeping, return_exceptions=True)

    async def take_receipts(self, receipts: list[Receipt]) -> None:
        """The carriers' receipt sink: written before it returns, so that a carrier acknowledges a receipt
        only once it is stored (a failure raises, and an SMSC is asked to send it again). A receipt that
        matches nothing yet (its submit response is still being written) is held by the store in the same
        transaction, and the sweep matches it again (HELD_RECEIPT_SECONDS)."""
        unmatched = await self._store.apply_receipts(receipts, now=self._clock.now_ms())
        self._on_written()
        if unmatched:
            self.held += len(unmatched)
            self._held.set()

    async def take_inbound(self, messages: list[InboundMessage]) -> None:
        """The carriers' inbound sink: stored at once, in the carrier's batch, so that the carrier acknowledges
        them only once they are committed (a failure raises, and the carrier asks its peer to send them again).
        Nothing waits in memory: a stop loses none."""
        await self._store.store_inbound(messages)
        self.received += len(messages)
        self._on_written()  # their callbacks are due now
        if any(optout.keyword(m.body) for m in messages):
            self.on_keywords()

    async def _claim_loop(self) -> None:
        s = self._settings
        while True:
            await self._slots.acquire()
            handed_over = False
            self._wake.clear()  # before looking: a wake while the claim runs is not lost
            try:
                claimed = await self._store.claim(now=self._clock.now_ms(), limit=s.batch_size, lease_ms=s.lease_ms)
                if claimed:
                    task = asyncio.create_task(self._process(claimed))
                    self._batches.add(task)  # the loop keeps only a weak reference to tasks
                    task.add_done_callback(self._batch_done)
                    handed_over = True
                    continue
            except Exception:
                log.exception("claiming work failed; trying again")
                await self._clock.sleep(s.poll_interval)
                continue
            finally:
                if not handed_over:  # also when cancelled half way: stop() waits for every slot
                    self._slots.release()
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(self._wake.wait(), s.poll_interval)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._slots.release()

    async def _process(self, claimed: list[ClaimedDestination]) -> None:
        size = max(1, self._settings.finish_every)
        await asyncio.gather(*(self._process_chunk(claimed[i : i + size]) for i in range(0, len(claimed), size)))

    async def _process_chunk(self, claimed: list[ClaimedDestination]) -> None:
        try:
            outcomes = await self.submit(claimed)
            await self._store.finish(outcomes, now=self._clock.now_ms())
            self._on_written()
        except Exception:
            # Leave them leased: they are due again when the lease runs out.
            log.exception("processing %d destinations failed; they will be retried after their lease", len(claimed))

    async def submit(self, claimed: list[ClaimedDestination]) -> list[Outcome]:
        now = self._clock.now_ms()
        outcomes: list[Outcome] = []
        by_carrier: dict[str, list[ClaimedDestination]] = defaultdict(list)
        for d in claimed:
            if d.expires_at is not None and now >= d.expires_at:
                outcomes.append(Outcome(d.id, d.attempt, SmsStatus.FAILED, EXPIRED_ERROR))
                continue
            if d.e164 is None:  # never queued by the service; defensive
                outcomes.append(Outcome(d.id, d.attempt, SmsStatus.FAILED, "International Number Invalid"))
                continue
            carrier = self._router.choose(e164=d.e164, account=d.account_name, sender=d.sender)
            if carrier is None:
                outcomes.append(Outcome(d.id, d.attempt, None, NO_ROUTE_ERROR, retry_at=now + self._settings.retry_ms))
                continue
            by_carrier[carrier.name].append(d)
        for name, batch in by_carrier.items():
            outcomes.extend(await self._submit_to(self._router.carriers[name], batch, now))
        return outcomes

    async def _submit_to(self, carrier: Carrier, batch: list[ClaimedDestination], now: int) -> list[Outcome]:
        messages = [OutboundSms(d.id, d.e164 or "", d.sender, d.body, d.encoding) for d in batch]
        try:
            results = await carrier.submit(messages)
        except Exception as e:
            log.warning("carrier %s failed a batch of %d: %s; retrying later", carrier.name, len(batch), e)
            retry_at = now + self._settings.retry_ms
            return [Outcome(d.id, d.attempt, None, f"Carrier error: {e}", retry_at=retry_at) for d in batch]
        self.submitted += len(batch)
        out = []
        for d, r in zip(batch, results, strict=True):
            if r.accepted:
                out.append(
                    Outcome(d.id, d.attempt, SmsStatus.SENT, None, carrier.name, r.carrier_ref, part_refs=r.part_refs)
                )
            elif r.permanent:
                out.append(Outcome(d.id, d.attempt, SmsStatus.REJECTED, r.error, carrier.name))
            else:
                out.append(Outcome(d.id, d.attempt, None, r.error, retry_at=now + self._settings.retry_ms))
        return out

    async def _sweep_loop(self) -> None:
        """Match held receipts again: at once (those held before a restart, or by a worker process that
        died), then every poll_interval while some are known to be held, else every HELD_SWEEP_SECONDS."""
        s = self._settings
        while True:
            last = self._stopping.is_set()
            self._held.clear()  # before looking: receipts held while the sweep runs are not missed
            try:
                waiting = await self._sweep()
            except Exception:
                if last:
                    log.exception("matching held receipts failed at shutdown; they stay held for the next start")
                    return
                log.exception("matching held receipts failed; trying again")
                waiting = True
            if last:
                return
            with contextlib.suppress(TimeoutError):
                if waiting:
                    await self._clock.wait_for(self._stopping.wait(), s.poll_interval)
                else:
                    await self._clock.wait_for(self._held.wait(), HELD_SWEEP_SECONDS)

    async def _sweep(self) -> bool:
        """One sweep; True when held receipts remain. Every HELD_SWEEP_SECONDS it also stores the inbound
        messages whose parts stopped coming (store/inbound.py, PARTS_TIME_LIMIT_MS) and forgets the digests of
        inbound messages older than the resend window."""
        now = self._clock.now_ms()
        if self._inbound_swept_at is None or now - self._inbound_swept_at >= HELD_SWEEP_SECONDS * 1000:
            stored = await self._store.sweep_inbound(
                parts_before=now - inbound.PARTS_TIME_LIMIT_MS, seen_before=now - inbound.DUPLICATE_WINDOW_MS
            )
            self._inbound_swept_at = now
            if stored:
                log.warning("%d inbound messages stored without all their parts (time limit)", stored)
        result = await self._store.retry_held_receipts(now=now, drop_before=now - self.hold_ms)
        if result.applied:
            self._on_written()
        for r in result.dropped:
            log.warning(
                "receipt %s/%s matched no message for %d s; dropped", r.carrier, r.carrier_ref, self.hold_ms // 1000
            )
        return result.remaining > 0
