"""The worker, the router and the simulator together over a real SQLite store, with a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from switchboard.domain.ids import IdGenerator
from switchboard.domain.routing import Route, Router
from switchboard.domain.statuses import SmsStatus
from switchboard.sms.carrier import Carrier, InboundSink, OutboundSms, ReceiptSink, SubmitResult
from switchboard.sms.simulator import SimulatedCarrier
from switchboard.sms.worker import EXPIRED_ERROR, HELD_RECEIPT_SECONDS, SmsWorker, WorkerSettings
from switchboard.store import migrate
from switchboard.store.inbound import PARTS_TIME_LIMIT_MS
from switchboard.store.records import (
    Account,
    HeldReceipts,
    InboundMessage,
    InFlight,
    NewDestination,
    NewMessage,
    Outcome,
    Receipt,
)
from switchboard.store.sqlite import SqliteStore
from tests.clock import FakeClock, held


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    url = f"sqlite:///{tmp_path / 'sb.db'}"
    migrate.upgrade(url)
    s = SqliteStore.from_url(url)
    await s.open()
    yield s
    await s.close()


ACCOUNT = Account(1, "acme", None, None, "whsec_x", 0)


async def put(store: SqliteStore, clock: FakeClock, numbers: list[str], *, expires_in: int | None = None) -> int:
    ids = IdGenerator(node=0, clock_ms=clock.now_ms)
    if await store.get_account(1) is None:
        await store.create_account(ACCOUNT)
    now = clock.now_ms()
    mid = ids.block(len(numbers) + 1)
    await store.accept(
        NewMessage(
            mid,
            1,
            None,
            "OM",
            "hi",
            "GSM7",
            1,
            "no",
            None,
            len(numbers),
            now,
            None,
            None if expires_in is None else now + expires_in,
            None,
            "Received",
            now,
        ),
        [NewDestination(n, n) for n in numbers],
        [],
    )
    return mid


async def statuses(store: SqliteStore, mid: int) -> list[str]:
    view = await store.get_message(1, mid)
    assert view is not None
    return [d.status.value for d in view.destinations]


async def until(
    clock: FakeClock, store: SqliteStore, mid: int, condition: Callable[[list[str]], bool], within: float = 60.0
) -> None:
    """Let fake time pass until the message's statuses satisfy `condition` (at most `within` seconds of it)."""

    async def holds() -> bool:
        return condition(await statuses(store, mid))

    await clock.run_until(holds, within=within)


def make_worker(
    store: SqliteStore,
    clock: FakeClock,
    carriers: list[Carrier],
    routes: list[Route] | None = None,
    on_written: Callable[[], None] | None = None,
) -> SmsWorker:
    router = Router(carriers=carriers, routes=routes or [], country_of=lambda n: "US")
    return SmsWorker(
        store=held(store, clock),  # the clock waits for the store's threads
        router=router,
        clock=clock,
        settings=WorkerSettings(batch_size=50, lease_ms=10_000, poll_interval=0.05, retry_ms=5_000),
        on_written=on_written,
    )


async def test_the_simulator_plays_every_reserved_test_number(store: SqliteStore) -> None:
    clock = FakeClock()
    mid = await put(store, clock, [f"+150055500{n:02d}" for n in range(6)] + ["+16175551212"])
    worker = make_worker(store, clock, [SimulatedCarrier(name="sim", delay=0.2, clock=clock)])
    await worker.start()
    try:
        played = ["Delivered", "Undelivered", "Expired", "Rejected", "Sent", "Sent", "Delivered"]
        await until(clock, store, mid, lambda s: s == played, within=4)
        assert clock.monotonic() < 5
        await until(clock, store, mid, lambda s: s[5] == "Delivered")
        assert clock.monotonic() >= 5  # +15005550005: after 5 s (docs/api.md)
        assert await statuses(store, mid) == [*played[:5], "Delivered", played[6]]
    finally:
        await worker.stop()
    view = await store.get_message(1, mid)
    assert view is not None
    history = await store.history(view.destinations[0].id)
    assert [h.status for h in history] == ["Sent", "Delivered"]


async def test_a_message_past_its_validity_fails_as_expired_without_reaching_a_carrier(store: SqliteStore) -> None:
    clock = FakeClock()
    mid = await put(store, clock, ["+16175551212"], expires_in=1000)
    clock.advance(seconds=2)
    worker = make_worker(store, clock, [SimulatedCarrier(name="sim", delay=0.1, clock=clock)])
    await worker.start()
    try:
        await until(clock, store, mid, lambda s: s != ["Received"])
    finally:
        await worker.stop()
    view = await store.get_message(1, mid)
    assert view is not None
    assert (view.destinations[0].status, view.destinations[0].error) == (SmsStatus.FAILED, EXPIRED_ERROR)
    assert worker.submitted == 0


class DownCarrier:
    simulated = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.submitted: list[OutboundSms] = []
        self.is_up = False

    @property
    def up(self) -> bool:
        return self.is_up

    async def start(self, receipts: ReceiptSink, inbound: InboundSink | None = None) -> None: ...
    async def stop(self) -> None: ...
    async def resume(self, in_flight: list[InFlight]) -> None: ...

    async def submit(self, messages: list[OutboundSms]) -> list[SubmitResult]:
        self.submitted.extend(messages)
        return [SubmitResult("x") for _ in messages]


async def test_routes_fail_over_to_the_next_carrier_when_one_is_down(store: SqliteStore) -> None:
    clock = FakeClock()
    mid = await put(store, clock, ["+16175551212"])
    down = DownCarrier("smsc1")
    sim = SimulatedCarrier(name="backup", delay=0.1, clock=clock)
    worker = make_worker(store, clock, [down, sim], [Route("smsc1", prefix="+1"), Route("backup", prefix="+1")])
    await worker.start()
    try:
        await until(clock, store, mid, lambda s: s == ["Delivered"])
    finally:
        await worker.stop()
    view = await store.get_message(1, mid)
    assert view is not None
    assert (view.destinations[0].status, view.destinations[0].carrier) == (SmsStatus.DELIVERED, "backup")
    assert down.submitted == []


async def test_with_no_carrier_up_it_waits_and_retries_instead_of_failing(store: SqliteStore) -> None:
    clock = FakeClock()
    mid = await put(store, clock, ["+16175551212"])
    carrier = DownCarrier("smsc1")
    worker = make_worker(store, clock, [carrier])
    await worker.start()
    try:
        await clock.run(12)  # two retries (retry_ms 5 s) with no carrier up
        assert await statuses(store, mid) == ["Received"]
        carrier.is_up = True
        await until(clock, store, mid, lambda s: s == ["Sent"], within=6)  # taken at its next retry
    finally:
        await worker.stop()
    assert len(carrier.submitted) == 1


async def test_the_simulator_recreates_its_receipts_after_a_restart(store: SqliteStore) -> None:
    clock = FakeClock()
    mid = await put(store, clock, ["+16175551212"])
    first = make_worker(store, clock, [SimulatedCarrier(name="sim", delay=30, clock=clock)])
    await first.start()
    try:
        await until(clock, store, mid, lambda s: s == ["Sent"], within=1)
    finally:
        await first.stop()  # the receipt was still pending
    assert await statuses(store, mid) == ["Sent"]
    second = make_worker(store, clock, [SimulatedCarrier(name="sim", delay=0.1, clock=clock)])
    await second.start()
    try:
        await until(clock, store, mid, lambda s: s == ["Delivered"], within=1)
    finally:
        await second.stop()
    assert await statuses(store, mid) == ["Delivered"]


async def test_a_claim_whose_worker_died_is_handed_out_again_after_its_lease(store: SqliteStore) -> None:
    clock = FakeClock()
    mid = await put(store, clock, ["+16175551212"])
    claimed = await store.claim(now=clock.now_ms(), limit=10, lease_ms=10_000)
    assert len(claimed) == 1  # ... and that worker died
    assert await store.claim(now=clock.now_ms(), limit=10, lease_ms=10_000) == []
    clock.advance(seconds=11)
    again = await store.claim(now=clock.now_ms(), limit=10, lease_ms=10_000)
    assert [c.id for c in again] == [claimed[0].id] and again[0].attempt == claimed[0].attempt + 1
    assert await statuses(store, mid) == ["Received"]


async def test_a_receipt_is_stored_before_the_sink_returns_and_a_failed_write_raises(store: SqliteStore) -> None:
    """A carrier acknowledges a receipt to its SMSC when the sink returns: by then it must be committed, and
    when it could not be, the sink must raise (the SMSC is then asked to send it again)."""
    from switchboard.errors import StoreError

    clock = FakeClock()
    mid = await put(store, clock, ["+16175551212"])
    [claimed] = await store.claim(now=clock.now_ms(), limit=1, lease_ms=10_000)
    outcome = Outcome(claimed.id, claimed.attempt, SmsStatus.SENT, carrier="c", carrier_ref="r1")
    await store.finish([outcome], now=clock.now_ms())
    worker = make_worker(store, clock, [SimulatedCarrier(name="sim", delay=0.2, clock=clock)])  # not started
    await worker.take_receipts([Receipt("c", "r1", SmsStatus.DELIVERED)])
    assert await statuses(store, mid) == ["Delivered"]  # no background flush needed

    async def broken(receipts: list[Receipt], *, now: int) -> list[Receipt]:
        raise StoreError("the disk went away")

    store.apply_receipts = broken  # type: ignore[method-assign]
    with pytest.raises(StoreError):
        await worker.take_receipts([Receipt("c", "r2", SmsStatus.DELIVERED)])


async def test_storing_receipts_or_inbound_messages_wakes_the_callback_dispatcher(store: SqliteStore) -> None:
    """Both sinks write callbacks, due at once: each wakes the dispatcher (`on_written`), or callbacks wait for
    its next poll. (Found by bench/inbound.py: without the wake, inbound callbacks went out at ≈ 400/s, a
    batch a poll, while the MOs were acknowledged at 2,500/s.)"""
    clock = FakeClock()
    woken: list[str] = []
    carriers: list[Carrier] = [SimulatedCarrier(name="sim", delay=0.2, clock=clock)]
    worker = make_worker(store, clock, carriers, on_written=lambda: woken.append("written"))  # not started
    await worker.take_receipts([Receipt("c", "none", SmsStatus.DELIVERED)])
    assert woken == ["written"]
    mo = InboundMessage("c", "4915100000077", "16175550100", "hello", 0, None, clock.now_ms())
    await worker.take_inbound([mo])
    assert woken == ["written", "written"]


class GatedCarrier(DownCarrier):
    """Up; accepts everything, but holds the batch that holds `gated` until `gate` is set."""

    def __init__(self, name: str, gated: str) -> None:
        super().__init__(name)
        self.gated = gated
        self.gate = asyncio.Event()

    @property
    def up(self) -> bool:
        return True

    async def submit(self, messages: list[OutboundSms]) -> list[SubmitResult]:
        if any(m.e164 == self.gated for m in messages):
            await self.gate.wait()
        return await super().submit(messages)


async def test_a_claim_is_written_chunk_by_chunk_so_receipts_can_match_before_the_whole_claim_is_through(
    store: SqliteStore,
) -> None:
    clock = FakeClock()
    numbers = [f"+161755512{n:02d}" for n in range(10)]
    mid = await put(store, clock, numbers)
    carrier = GatedCarrier("smsc1", gated=numbers[-1])
    router: Router[Carrier] = Router(carriers=[carrier], routes=[], country_of=lambda n: "US")
    settings = WorkerSettings(batch_size=50, lease_ms=10_000, poll_interval=0.05, retry_ms=5_000, finish_every=4)
    worker = SmsWorker(store=held(store, clock), router=router, clock=clock, settings=settings)
    await worker.start()
    try:
        await until(clock, store, mid, lambda s: s.count("Sent") >= 8)
        assert await statuses(store, mid) == ["Sent"] * 8 + ["Received"] * 2  # the last chunk is still out
        carrier.gate.set()
        await until(clock, store, mid, lambda s: s == ["Sent"] * 10)
    finally:
        carrier.gate.set()
        await worker.stop()


async def test_a_receipt_held_by_a_stopped_worker_is_applied_by_the_next_once_its_sent_is_written(
    store: SqliteStore,
) -> None:
    """The receipt came before its message's Sent was written, and the carrier acknowledged it: it is in the
    store, not in the worker's memory, so neither a stop nor a crash loses it."""
    clock = FakeClock()
    mid = await put(store, clock, ["+16175551212"])
    [claimed] = await store.claim(now=clock.now_ms(), limit=1, lease_ms=10_000)  # submitted; Sent not written
    first = make_worker(store, clock, [DownCarrier("c")])
    await first.start()
    await first.take_receipts([Receipt("c", "r1", SmsStatus.DELIVERED)])
    assert first.held == 1
    await clock.run(0.2)  # swept a few times: still nothing to match
    await first.stop()
    assert await statuses(store, mid) == ["Received"]
    second = make_worker(store, clock, [DownCarrier("c")])
    await second.start()
    try:
        await clock.run(0.2)
        assert await statuses(store, mid) == ["Received"]
        sent_at = clock.now_ms()
        outcome = Outcome(claimed.id, claimed.attempt, SmsStatus.SENT, carrier="c", carrier_ref="r1")
        await store.finish([outcome], now=sent_at)
        await until(clock, store, mid, lambda s: s == ["Delivered"], within=1)
    finally:
        await second.stop()
    assert [h.status for h in await store.history(claimed.id)] == ["Sent", "Delivered"]
    assert await store.retry_held_receipts(now=clock.now_ms(), drop_before=0) == HeldReceipts(0, [], 0)


async def test_a_held_receipt_that_never_matches_is_dropped_with_a_warning(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    worker = make_worker(store, clock, [DownCarrier("c")])
    await worker.start()
    try:
        await worker.take_receipts([Receipt("c", "nobody", SmsStatus.DELIVERED)])
        clock.advance(seconds=HELD_RECEIPT_SECONDS - 1)
        await clock.run(0.2)  # swept a few times
        assert "dropped" not in caplog.text
        await clock.run_until(lambda: "receipt c/nobody matched no message" in caplog.text, within=2)
        assert clock.monotonic() >= HELD_RECEIPT_SECONDS
    finally:
        await worker.stop()
    [warning] = [r for r in caplog.records if "c/nobody" in r.getMessage()]
    assert warning.levelname == "WARNING"
    assert await store.retry_held_receipts(now=clock.now_ms(), drop_before=0) == HeldReceipts(0, [], 0)


def test_held_receipts_outlast_a_long_lease_and_its_retry(store: SqliteStore) -> None:
    # A receipt can only match after its destination was claimed again and sent under a new reference.
    router = Router(carriers=[DownCarrier("c")], routes=[], country_of=lambda n: "US")
    short = SmsWorker(store=store, router=router, clock=FakeClock(), settings=WorkerSettings())
    long = SmsWorker(
        store=store, router=router, clock=FakeClock(), settings=WorkerSettings(lease_ms=1_800_000, retry_ms=300_000)
    )
    assert short.hold_ms == HELD_RECEIPT_SECONDS * 1000
    assert long.hold_ms == 1_800_000 + 300_000 + 60_000


async def test_an_inbound_message_whose_parts_stopped_coming_is_stored_by_the_worker_after_the_time_limit(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    udh = bytes([5, 0, 3, 7, 2, 1])  # part 1 of 2, reference 7: its sibling never comes
    first = InboundMessage("c", "447700900001", "12345", None, 8, (udh + "Hi".encode("utf-16-be")).hex(),
                           clock.now_ms(), 7, 2, 1)  # fmt: skip
    await store.store_inbound([first])
    worker = make_worker(store, clock, [DownCarrier("c")])
    await worker.start()
    try:
        await clock.run(1)
        assert await store.list_inbound(limit=10) == []  # still waiting for part 2
        clock.advance(ms=PARTS_TIME_LIMIT_MS - 2_000)
        await clock.run(1)
        assert await store.list_inbound(limit=10) == []  # not before the time limit
        await clock.run_until(lambda: "without all their parts" in caplog.text, within=60)
        assert clock.monotonic() >= PARTS_TIME_LIMIT_MS / 1000
    finally:
        await worker.stop()
    [kept] = await store.list_inbound(limit=10)
    assert (kept.body, kept.segments, kept.missing) == ("Hi", 1, "2")
