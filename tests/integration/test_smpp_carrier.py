"""`SmppCarrier` against the real SMSC peer (tests/smsc/server.js on the npm package `smpp`, via `SmscPeer`):
what is SMPP's own: GSM and UCS-2 submits as they reach the SMSC, hex ids, throttling, receipts before
responses, a dropped connection, long messages as parts, and how messages from handsets are decoded.

What every carrier promises (one result per message in order, a refusal as its own result, receipts and
messages from handsets only through the sinks and acknowledged only once taken, offered again when a sink
failed, a clean stop) is the conformance suite's, tests/contract/test_carrier.py, which runs SmppCarrier
against the same SMSC. Skipped cleanly when node is not on PATH (`SmscPeer.start`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from switchboard.domain.clock import SystemClock
from switchboard.domain.statuses import SmsStatus
from switchboard.sms.carrier import OutboundSms
from switchboard.sms.smpp.connector import SmppCarrier
from switchboard.sms.smpp.receipt import IdForm
from switchboard.store.records import InboundMessage, Receipt
from tests.integration.smsc import SmscPeer, smsc_fixture

smsc = smsc_fixture(receipt_delay_ms=20)
hex_smsc = smsc_fixture(hex_ids=True, no_receipt_tlvs=True, receipt_delay_ms=20)
throttling_smsc = smsc_fixture(throttle_every=2)
early_smsc = smsc_fixture(receipt_before_resp=True)
dropping_smsc = smsc_fixture(drop_after=3, receipt_delay_ms=100)

TIMEOUT = 3.0


class Sink:
    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self._arrived = asyncio.Event()

    async def __call__(self, receipts: list[Receipt]) -> None:
        self.receipts.extend(receipts)
        self._arrived.set()

    async def wait(self, count: int) -> dict[str, Receipt]:
        async with asyncio.timeout(TIMEOUT):
            while len(self.receipts) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return {r.carrier_ref: r for r in self.receipts}


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():  # noqa: ASYNC110 (`up` has no event to wait on)
            await asyncio.sleep(0.01)


class InboundSink:
    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self._arrived = asyncio.Event()

    async def __call__(self, messages: list[InboundMessage]) -> None:
        self.messages.extend(messages)
        self._arrived.set()

    async def wait(self, count: int) -> list[InboundMessage]:
        async with asyncio.timeout(TIMEOUT):
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.messages


async def started(peer: SmscPeer, sink: Sink, inbound: InboundSink | None = None, **overrides: Any) -> SmppCarrier:
    options: dict[str, Any] = {
        "name": "peer",
        "host": peer.host,
        "port": peer.port,
        "system_id": "switchboard",
        "password": "secret",
        "clock": SystemClock(),
        "response_timeout": 1.0,
        "backoff_base": 0.05,
        "backoff_cap": 0.2,
    } | overrides
    carrier = SmppCarrier(**options)
    await carrier.start(sink, inbound)
    await wait_until(lambda: carrier.up)
    return carrier


@pytest.fixture
async def carriers() -> AsyncIterator[list[SmppCarrier]]:
    made: list[SmppCarrier] = []
    yield made
    for carrier in made:
        await carrier.stop()


def sms(e164: str, body: str = "Hello", encoding: str = "gsm7", sender: str = "Switchbrd") -> OutboundSms:
    return OutboundSms(1, e164, sender, body, encoding)


async def test_gsm_and_unicode_submits_reach_the_smsc_as_sent(smsc: SmscPeer, carriers: list[SmppCarrier]) -> None:
    since = smsc.mark()
    carrier = await started(smsc, Sink(), binds=2)
    carriers.append(carrier)
    messages = [
        sms("+4915100000010", "Hello @ {€}"),
        sms("+4915100000020", "Привет 😀", "ucs2", sender="+4915100000099"),
    ]
    results = await carrier.submit(messages)
    assert [r.accepted for r in results] == [True, True]
    gsm = (await asyncio.to_thread(smsc.wait_count, "submit_sm", 1, since=since, destination_addr="4915100000010"))[0]
    assert (gsm["data_coding"], bytes.fromhex(gsm["short_message_hex"])) == (0, b"Hello \x00 \x1b(\x1be\x1b)")
    assert gsm["registered_delivery"] == 1
    ucs2 = (await asyncio.to_thread(smsc.wait_count, "submit_sm", 1, since=since, destination_addr="4915100000020"))[0]
    assert (ucs2["data_coding"], bytes.fromhex(ucs2["short_message_hex"])) == (8, "Привет 😀".encode("utf-16-be"))
    assert ucs2["source_addr"] == "4915100000099"
    assert {gsm["message_id"], ucs2["message_id"]} == {r.carrier_ref for r in results}


async def test_hex_submit_ids_match_decimal_receipts(hex_smsc: SmscPeer, carriers: list[SmppCarrier]) -> None:
    sink = Sink()
    carrier = await started(hex_smsc, sink, id_form=IdForm.HEX, receipt_id_form=IdForm.DECIMAL)
    carriers.append(carrier)
    results = await carrier.submit([sms("+4915100000010"), sms("+4915100000011")])
    receipts = await sink.wait(2)
    for result in results:
        assert result.carrier_ref is not None and result.carrier_ref.isdigit()
        assert receipts[result.carrier_ref].status is SmsStatus.DELIVERED


async def test_throttled_submits_are_transient(throttling_smsc: SmscPeer, carriers: list[SmppCarrier]) -> None:
    carrier = await started(throttling_smsc, Sink(), window=1)
    carriers.append(carrier)
    results = await carrier.submit([sms(f"+49151000000{n}0") for n in range(4)])
    assert [r.accepted for r in results] == [True, False, True, False]
    for refused in (results[1], results[3]):
        assert not refused.permanent and "ESME_RTHROTTLED" in (refused.error or "")


async def test_a_receipt_before_its_submit_response(early_smsc: SmscPeer, carriers: list[SmppCarrier]) -> None:
    sink = Sink()
    carrier = await started(early_smsc, sink)
    carriers.append(carrier)
    (result,) = await carrier.submit([sms("+4915100000010")])
    receipts = await sink.wait(1)
    assert result.carrier_ref in receipts


async def test_a_dropped_connection_gives_transient_results_and_reconnects(
    dropping_smsc: SmscPeer, carriers: list[SmppCarrier]
) -> None:
    sink = Sink()
    carrier = await started(dropping_smsc, sink, window=1)
    carriers.append(carrier)
    async with asyncio.timeout(TIMEOUT):
        results = await carrier.submit([sms(f"+49151000000{n}0") for n in range(5)])
    assert [r.accepted for r in results] == [True, True, False, False, False]
    assert all(not r.permanent for r in results[2:])
    await wait_until(lambda: carrier.up)  # bound again
    receipts = await sink.wait(2)  # queued by the SMSC while we were away, or sent before the drop
    assert {results[0].carrier_ref, results[1].carrier_ref} <= set(receipts)
    (again,) = await carrier.submit([sms("+4915100000090")])
    assert again.accepted


async def test_a_long_message_reaches_the_smsc_as_parts_with_one_reference(
    smsc: SmscPeer, carriers: list[SmppCarrier]
) -> None:
    sink = Sink()
    since = smsc.mark()
    carrier = await started(smsc, sink, binds=2)
    carriers.append(carrier)
    body = "a" * 153 + "b" * 153 + "c" * 10
    (result,) = await carrier.submit([sms("+4915100000030", body)])
    assert result.accepted and len(result.part_refs) == 3 and result.carrier_ref == result.part_refs[0]
    assert len(set(result.part_refs)) == 3
    # The SMSC's event lines are read by a thread of their own: wait for them rather than look at once.
    submits = await asyncio.to_thread(smsc.wait_count, "submit_sm", 3, since=since, destination_addr="4915100000030")
    assert len(submits) == 3
    concat = sorted((e["concat"]["seq"], e["concat"]["total"], e["concat"]["ref"]) for e in submits)
    assert [(seq, total) for seq, total, _ in concat] == [(1, 3), (2, 3), (3, 3)]
    assert len({ref for *_, ref in concat}) == 1
    by_seq = {e["concat"]["seq"]: e for e in submits}
    assert all(e["esm_class"] & 0x40 and e["data_coding"] == 0 for e in submits)
    text = b"".join(bytes.fromhex(by_seq[i]["short_message_hex"])[6:] for i in (1, 2, 3))
    assert text == body.encode()
    receipts = await sink.wait(3)  # the SMSC sends a receipt for each part
    assert all(receipts[ref].status is SmsStatus.DELIVERED for ref in result.part_refs)


async def test_gsm_and_ucs2_mos_are_decoded(smsc: SmscPeer, carriers: list[SmppCarrier]) -> None:
    inbound = InboundSink()
    carrier = await started(smsc, Sink(), inbound)
    carriers.append(carrier)
    smsc.send_mo("4915100000077", "12345", "Hello from a handset 42")
    smsc.send_mo("4915100000078", "12345", "Ответ 😀", data_coding=8)
    gsm, ucs2 = sorted(await inbound.wait(2), key=lambda m: m.source_addr)
    assert (gsm.carrier, gsm.destination_addr, gsm.body, gsm.data_coding, gsm.raw) == (
        "peer",
        "12345",
        "Hello from a handset 42",
        0,
        None,
    )
    assert (ucs2.source_addr, ucs2.body, ucs2.data_coding) == ("4915100000078", "Ответ 😀", 8)
