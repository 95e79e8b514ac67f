"""The `Carrier` conformance suite (switchboard/sms/carrier.py): what every carrier promises the worker, run
against each implementation.

- `simulator`: `SimulatedCarrier`, receipts 50 ms after the submit.
- `smpp`: `SmppCarrier`, two binds, against the npm SMSC (tests/smsc/server.js via `SmscPeer`), started once
  for the session. Skipped without node/npm.

The promises: one result per message, in the order given; one message's failure is its own result and never
raises; receipts (and messages from handsets) reach the worker only through the sinks it was started with,
and the peer hears that one was taken only after the sink has returned (a sink that raises: it is offered
again later, never lost); `stop` lets a hand-over in progress finish, and nothing reaches a sink after it.

Both implementations share the numbering plan of the reserved test numbers (docs/api.md "Test numbers"; the
SMSC chooses by the last two digits too): ...01 Undelivered, ...02 Expired, ...03 refused for good, ...04
accepted with no receipt ever. What an implementation cannot show (the simulator has no peer that is
acknowledged, no handsets, and answers every submit at once) is declared by its `Harness` and skipped with
that reason, never passed vacuously.

SMPP-only behaviour (encodings on the wire, long messages' headers, hex ids, throttling, a dropped
connection) stays in tests/integration/test_smpp_carrier.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, ClassVar

import pytest

from switchboard.domain.clock import SystemClock
from switchboard.domain.statuses import SmsStatus
from switchboard.sms.carrier import Carrier, InboundSink, OutboundSms, ReceiptSink, SubmitResult
from switchboard.sms.simulator import SimulatedCarrier
from switchboard.sms.smpp.connector import SmppCarrier
from switchboard.store.records import InboundMessage, Receipt
from tests.integration.smsc import SmscPeer

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 5.0
"""Seconds a test waits for something that should come (a receipt, an acknowledgement)."""
QUIET = 0.3
"""Seconds a test watches for something that must not come."""

UNDELIVERED = "+15005550001"
EXPIRED = "+15005550002"
REFUSED = "+15005550003"
NO_RECEIPT = "+15005550004"
SILENT = "+15005550006"
"""The SMSC never answers a submit to it (the simulator: Delivered, so it has no `silent_number`)."""


def delivered(i: int) -> str:
    """A number both implementations deliver (it ends in 10, which chooses nothing)."""
    return f"+1617555{i % 100:02d}10"


def sms(e164: str, body: str = "Hello") -> OutboundSms:
    return OutboundSms(1, e164, "Switchbrd", body, "gsm7")


# --- what a test needs from an implementation and its far end ---------------------------------------------


class Harness:
    """Starts the carrier under test and speaks for its far end. What an implementation cannot show is in
    `lacks`, with the reason; `need` skips a test with it."""

    name: str
    lacks: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        self.started: list[Carrier] = []

    async def start(self, receipts: ReceiptSink, inbound: InboundSink | None = None) -> Carrier:
        carrier = self._make()
        await carrier.start(receipts, inbound)
        self.started.append(carrier)
        async with asyncio.timeout(TIMEOUT):
            while not carrier.up:  # noqa: ASYNC110 (`up` has no event to wait on)
                await asyncio.sleep(0.01)
        return carrier

    def need(self, capability: str) -> None:
        if capability in self.lacks:
            pytest.skip(f"{self.name}: {self.lacks[capability]}")

    def _make(self) -> Carrier:
        raise NotImplementedError

    # The far end: what it acknowledged, and making it write.

    async def settle(self) -> None:
        """Before the carriers stop: wait a while for the far end to have nothing left for them."""

    async def acknowledgements(self, kind: str, **fields: Any) -> list[str]:
        """The statuses the carrier answered the peer's deliver_sm of this kind (and fields) with, in order."""
        raise NotImplementedError

    async def wait_acknowledged(self, kind: str, count: int, **fields: Any) -> list[str]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            acks = await self.acknowledgements(kind, **fields)
            if len(acks) >= count or time.monotonic() > deadline:
                return acks
            await asyncio.sleep(0.02)

    async def wait_delivered(self, kind: str, **fields: Any) -> None:
        """Wait until the peer has sent a deliver_sm of this kind (and fields)."""
        raise NotImplementedError

    def send_mo(self, source: str, destination: str, text: str) -> None:
        raise NotImplementedError

    async def destinations(self, refs: list[str]) -> dict[str, str]:
        """The destination (E.164) each accepted reference was submitted to, as the peer saw it."""
        raise NotImplementedError


class SimulatorHarness(Harness):
    name = "simulator"
    lacks: ClassVar[dict[str, str]] = {
        "peer": "the simulator has no far end that is acknowledged or that records what it was sent",
        "inbound": "the simulator has no handsets that write back (it never uses an inbound sink)",
        "silent": "the simulator answers every submit at once",
    }

    def _make(self) -> Carrier:
        return SimulatedCarrier(name="sim", delay=0.05, clock=SystemClock())


class SmppHarness(Harness):
    name = "smpp"

    def __init__(self, smsc: SmscPeer) -> None:
        super().__init__()
        self.smsc = smsc
        self.since = smsc.mark()  # this test's events only: the SMSC serves the whole session

    def _make(self) -> Carrier:
        return SmppCarrier(
            name="smpp",
            host=self.smsc.host,
            port=self.smsc.port,
            system_id="switchboard",
            password="secret",
            clock=SystemClock(),
            binds=2,
            response_timeout=1.0,
            backoff_base=0.05,
            backoff_cap=0.2,
        )

    async def settle(self) -> None:
        """Wait (2 s at most) until every receipt due for this test's submits has been taken: one left for
        the next bind would reach the next test's carrier."""
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            events = self.smsc.events[self.since :]
            due = {
                e["message_id"]
                for e in events
                if e["event"] == "submit_sm" and e["message_id"] and not e["destination_addr"].endswith(("04", "06"))
            }
            taken = {
                e["message_id"]
                for e in events
                if e["event"] == "deliver_sm_resp" and e.get("kind") == "receipt" and e["status"] == 0
            }
            if due <= taken:
                return
            await asyncio.sleep(0.02)

    async def acknowledgements(self, kind: str, **fields: Any) -> list[str]:
        sent = self.smsc.find("deliver_sm", since=self.since, kind=kind, **fields)
        ours = {(e["session"], e["sequence"]) for e in sent}
        answers = self.smsc.find("deliver_sm_resp", since=self.since)
        return [e["status_name"] for e in answers if (e["session"], e["sequence"]) in ours]

    async def wait_delivered(self, kind: str, **fields: Any) -> None:
        smsc = self.smsc
        await asyncio.to_thread(smsc.wait_for, "deliver_sm", since=self.since, timeout=TIMEOUT, kind=kind, **fields)

    def send_mo(self, source: str, destination: str, text: str) -> None:
        self.smsc.send_mo(source.removeprefix("+"), destination, text)

    async def destinations(self, refs: list[str]) -> dict[str, str]:
        accepted = {e["message_id"]: e for e in self.smsc.find("submit_sm", since=self.since) if e["message_id"]}
        return {ref: "+" + accepted[ref]["destination_addr"] for ref in refs if ref in accepted}


@pytest.fixture(scope="session")
def conformance_smsc() -> Iterator[SmscPeer]:
    """One SMSC for the whole session (skips without node/npm). Every test starts its own carrier (its own
    binds) and looks only at the SMSC's events since it began."""
    smsc = SmscPeer(receipt_delay_ms=20)
    smsc.start()
    try:
        yield smsc
    finally:
        smsc.stop()


@pytest.fixture(params=["simulator", "smpp"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    h: Harness
    if request.param == "simulator":
        h = SimulatorHarness()
    else:
        h = SmppHarness(request.getfixturevalue("conformance_smsc"))
    try:
        yield h
    finally:
        await h.settle()
        for carrier in h.started:
            await carrier.stop()


class Sink:
    """A receipt or inbound sink that records what it took; it can be made to fail a call that holds a given
    item, or to block until released."""

    def __init__(self) -> None:
        self.taken: list[Any] = []
        self.calls = 0
        self.refuse: Callable[[Any], bool] | None = None
        """Raise on the first call with an item this is true of."""
        self.refused: list[Any] = []
        self.blocking = False
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = False
        self._arrived = asyncio.Event()

    async def __call__(self, items: list[Any]) -> None:
        self.calls += 1
        if self.refuse is not None and any(self.refuse(item) for item in items):
            self.refuse = None
            self.refused.extend(items)
            raise RuntimeError("store down")
        if self.blocking:
            self.entered.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        self.taken.extend(items)
        self._arrived.set()

    async def wait_for(self, predicate: Callable[[list[Any]], bool]) -> list[Any]:
        async with asyncio.timeout(TIMEOUT):
            while not predicate(self.taken):
                self._arrived.clear()
                await self._arrived.wait()
        return self.taken


async def receipts_for(sink: Sink, refs: list[str]) -> dict[str, Receipt]:
    """The receipts of `refs` (others, left over from a test before, may come too)."""
    wanted = set(refs)
    taken = await sink.wait_for(lambda items: wanted <= {r.carrier_ref for r in items})
    return {r.carrier_ref: r for r in taken if r.carrier_ref in wanted}


async def bounded(awaitable: Awaitable[Any]) -> Any:
    async with asyncio.timeout(TIMEOUT):
        return await awaitable


# --- results ----------------------------------------------------------------------------------------------

OUTCOMES: list[tuple[str, SmsStatus | None]] = [
    (UNDELIVERED, SmsStatus.UNDELIVERED),
    (EXPIRED, SmsStatus.EXPIRED),
    (REFUSED, None),
]


async def test_a_batch_gets_one_result_per_message_in_the_order_given(harness: Harness) -> None:
    sink = Sink()
    carrier = await harness.start(sink)
    # Outcomes spread over the batch, a long (two-part) message among them: a result out of place shows as
    # an acceptance, a refusal or a receipt where another was due.
    messages: list[OutboundSms] = []
    expected: list[SmsStatus | None] = []
    for i in range(30):
        number, status = OUTCOMES[i // 3 % 3] if i % 3 == 1 else (delivered(i), SmsStatus.DELIVERED)
        messages.append(sms(number, "x" * 200 if i == 17 else f"message {i}"))
        expected.append(status)

    results: list[SubmitResult] = await bounded(carrier.submit(messages))

    assert len(results) == len(messages)
    assert [r.accepted for r in results] == [s is not None for s in expected]
    for result, status in zip(results, expected, strict=True):
        if status is None:
            assert result.permanent and result.error, result
        elif result.part_refs:
            assert result.carrier_ref == result.part_refs[0]
    assert len(results[17].part_refs) in (0, 2)  # one message to the simulator, two parts over SMPP
    refs = [r.carrier_ref for r in results if r.carrier_ref is not None]
    assert len(set(refs)) == len(refs)
    receipts = await receipts_for(sink, refs)
    for i, (result, status) in enumerate(zip(results, expected, strict=True)):
        if result.carrier_ref is not None:
            assert receipts[result.carrier_ref].status is status, f"message {i}"
    if "peer" not in harness.lacks:  # the far end saw each accepted message under its own reference
        sent = await harness.destinations(refs)
        for i, result in enumerate(results):
            if result.carrier_ref is not None:
                assert sent[result.carrier_ref] == messages[i].e164, f"message {i}"


async def test_a_refused_message_is_its_own_failure_and_the_others_go(harness: Harness) -> None:
    carrier = await harness.start(Sink())
    results = await bounded(carrier.submit([sms(delivered(1)), sms(REFUSED), sms(delivered(2))]))
    assert [r.accepted for r in results] == [True, False, True]
    assert results[1].permanent and results[1].carrier_ref is None and results[1].error


async def test_a_submit_left_unanswered_is_a_transient_failure_of_that_message_alone(harness: Harness) -> None:
    harness.need("silent")
    carrier = await harness.start(Sink())
    results = await bounded(carrier.submit([sms(delivered(1)), sms(SILENT), sms(delivered(2))]))
    assert [r.accepted for r in results] == [True, False, True]
    assert not results[1].permanent and results[1].error  # it may have been accepted: tried again later


# --- receipts ---------------------------------------------------------------------------------------------


async def test_receipts_come_through_the_sink_only_for_what_was_accepted(harness: Harness) -> None:
    sink = Sink()
    carrier = await harness.start(sink)
    numbers = [delivered(1), UNDELIVERED, EXPIRED, NO_RECEIPT]
    results = await bounded(carrier.submit([sms(n) for n in numbers]))
    assert all(r.accepted for r in results)
    refs = [r.carrier_ref or "" for r in results]

    receipts = await receipts_for(sink, refs[:3])
    assert [receipts[ref].status for ref in refs[:3]] == [SmsStatus.DELIVERED, SmsStatus.UNDELIVERED, SmsStatus.EXPIRED]
    assert {r.carrier for r in receipts.values()} == {carrier.name}
    assert receipts[refs[0]].error is None
    assert receipts[refs[1]].error and receipts[refs[2]].error
    await asyncio.sleep(QUIET)
    assert refs[3] not in {r.carrier_ref for r in sink.taken}  # ...04: accepted, never reported on


async def test_a_receipt_the_sink_failed_on_is_handed_over_again(harness: Harness) -> None:
    sink = Sink()
    carrier = await harness.start(sink)
    (result,) = await bounded(carrier.submit([sms(delivered(1))]))
    ref = result.carrier_ref
    assert ref is not None
    sink.refuse = lambda r: r.carrier_ref == ref  # before it comes: the SMSC's after 20 ms, then 50 ms batching

    receipts = await receipts_for(sink, [ref])
    assert receipts[ref].status is SmsStatus.DELIVERED
    assert ref in {r.carrier_ref for r in sink.refused}, "the sink was not called with it before"
    if "peer" not in harness.lacks:  # refused for now, then taken
        acks = await harness.wait_acknowledged("receipt", 2, message_id=ref)
        assert acks[0] != "ESME_ROK" and acks[-1] == "ESME_ROK", acks


async def test_a_receipt_is_acknowledged_only_once_the_sink_has_returned(harness: Harness) -> None:
    harness.need("peer")
    sink = Sink()
    sink.blocking = True
    carrier = await harness.start(sink)
    (result,) = await bounded(carrier.submit([sms(delivered(1))]))
    assert result.carrier_ref is not None

    await harness.wait_delivered("receipt", message_id=result.carrier_ref)
    await bounded(sink.entered.wait())
    await asyncio.sleep(QUIET)
    assert await harness.acknowledgements("receipt", message_id=result.carrier_ref) == []
    sink.release.set()
    assert await harness.wait_acknowledged("receipt", 1, message_id=result.carrier_ref) == ["ESME_ROK"]
    assert [r.carrier_ref for r in sink.taken] == [result.carrier_ref]


# --- messages from handsets -------------------------------------------------------------------------------


async def test_a_message_from_a_handset_comes_through_the_inbound_sink_and_is_acknowledged_after(
    harness: Harness,
) -> None:
    harness.need("inbound")
    receipts, inbound = Sink(), Sink()
    inbound.blocking = True
    carrier = await harness.start(receipts, inbound)
    harness.send_mo("+4915100000077", "12345", "Hello from a handset")

    await bounded(inbound.entered.wait())
    await asyncio.sleep(QUIET)
    assert await harness.acknowledgements("mo", source_addr="4915100000077") == []
    inbound.release.set()
    assert await harness.wait_acknowledged("mo", 1, source_addr="4915100000077") == ["ESME_ROK"]
    (message,) = [m for m in inbound.taken if m.source_addr == "4915100000077"]
    assert (message.carrier, message.destination_addr, message.body) == (carrier.name, "12345", "Hello from a handset")
    assert all(isinstance(m, InboundMessage) for m in inbound.taken)
    assert all(isinstance(r, Receipt) for r in receipts.taken)


async def test_a_message_from_a_handset_the_inbound_sink_failed_on_is_offered_again(harness: Harness) -> None:
    harness.need("inbound")
    inbound = Sink()
    inbound.refuse = lambda m: m.source_addr == "4915100000079"
    await harness.start(Sink(), inbound)
    harness.send_mo("+4915100000079", "12345", "try again")

    taken = await inbound.wait_for(lambda items: any(m.source_addr == "4915100000079" for m in items))
    assert [m.body for m in taken if m.source_addr == "4915100000079"] == ["try again"]
    assert [m.body for m in inbound.refused if m.source_addr == "4915100000079"] == ["try again"]
    acks = await harness.wait_acknowledged("mo", 2, source_addr="4915100000079")
    assert acks[0] != "ESME_ROK" and acks[-1] == "ESME_ROK", acks


async def test_without_an_inbound_sink_a_message_from_a_handset_is_acknowledged_and_dropped(harness: Harness) -> None:
    harness.need("inbound")
    receipts = Sink()
    await harness.start(receipts)
    harness.send_mo("+4915100000080", "12345", "nobody listens")

    assert await harness.wait_acknowledged("mo", 1, source_addr="4915100000080") == ["ESME_ROK"]
    assert all(isinstance(r, Receipt) for r in receipts.taken)


# --- stopping ---------------------------------------------------------------------------------------------


async def test_stop_lets_a_hand_over_in_progress_finish_and_then_nothing_comes(harness: Harness) -> None:
    sink = Sink()
    sink.blocking = True
    carrier = await harness.start(sink)
    (result,) = await bounded(carrier.submit([sms(delivered(1))]))
    await bounded(sink.entered.wait())

    stopping = asyncio.create_task(carrier.stop())
    await asyncio.sleep(QUIET)
    assert not stopping.done(), "stop returned while the sink was still taking receipts"
    assert not carrier.up
    sink.release.set()
    await bounded(stopping)
    assert not sink.cancelled
    assert result.carrier_ref in {r.carrier_ref for r in sink.taken}
    if "peer" not in harness.lacks:
        assert await harness.acknowledgements("receipt", message_id=result.carrier_ref) == ["ESME_ROK"]

    calls = sink.calls
    sink.blocking = False
    await asyncio.sleep(QUIET)
    assert sink.calls == calls
