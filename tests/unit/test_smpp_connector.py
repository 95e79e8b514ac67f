"""The SMPP carrier (`SmppCarrier`) against the in-process fake SMSC of the session tests (our own codec on
the other side of a real loopback connection). Every wait is bounded; timers are short real ones."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from switchboard.domain.clock import SystemClock
from switchboard.domain.concat import Concat
from switchboard.domain.encoding import gsm7_septets, segment
from switchboard.domain.statuses import SmsStatus
from switchboard.sms.carrier import OutboundSms
from switchboard.sms.smpp.connector import (
    ESM_UDHI,
    NO_BIND_ERROR,
    RATE_BUSY_ERROR,
    Addresses,
    SmppCarrier,
    addresses,
    concat_udh,
    decode_inbound,
    encode_text,
    mask_number,
    split_text,
)
from switchboard.sms.smpp.pdu import (
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    MessageState,
    SubmitSm,
    SubmitSmResp,
    Tlv,
    TlvTag,
    encode,
)
from switchboard.sms.smpp.receipt import IdForm
from switchboard.store.records import InboundMessage, Receipt
from tests.clock import FakeClock
from tests.unit.fake_smsc import Connection, FakeSmsc

S = CommandStatus
OK = S.ESME_ROK
RECEIPT = 0x04
DEST = "+447700900001"


@pytest.fixture
async def smsc() -> AsyncIterator[FakeSmsc]:
    server = FakeSmsc()
    await server.start()
    yield server
    await server.stop()


class Sink:
    """A receipt sink, or (the `mo` fixture) an inbound sink: `receipts` holds whatever it was given."""

    def __init__(self) -> None:
        self.receipts: list[Any] = []
        self.batches = 0
        self.fail = False
        self._arrived = asyncio.Event()

    async def __call__(self, receipts: list[Any]) -> None:
        if self.fail:
            raise RuntimeError("store down")
        self.batches += 1
        self.receipts.extend(receipts)
        self._arrived.set()

    async def wait(self, count: int = 1) -> list[Any]:
        async with asyncio.timeout(1.0):
            while len(self.receipts) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.receipts


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def mo() -> Sink:
    """The inbound sink the carriers of `make_carrier` are started with."""
    return Sink()


CarrierFactory = Callable[..., Awaitable[SmppCarrier]]


@pytest.fixture
async def make_carrier(smsc: FakeSmsc, sink: Sink, mo: Sink) -> AsyncIterator[CarrierFactory]:
    carriers: list[SmppCarrier] = []

    async def make(wait_up: bool = True, with_inbound: bool = True, **overrides: Any) -> SmppCarrier:
        options: dict[str, Any] = {
            "name": "smsc1",
            "host": "127.0.0.1",
            "port": smsc.port,
            "system_id": "switchboard",
            "password": "secret",
            "clock": SystemClock(),
            "response_timeout": 0.5,
            "enquire_link_interval": 5.0,
            "backoff_base": 0.05,
            "backoff_cap": 0.2,
        } | overrides
        carrier = SmppCarrier(**options)
        carriers.append(carrier)
        await carrier.start(sink, mo if with_inbound else None)
        if wait_up:
            await wait_until(lambda: carrier.up)
        return carrier

    yield make
    for carrier in carriers:
        await carrier.stop()


async def wait_until(condition: Callable[[], bool], within: float = 1.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 (`up` and the fake's connection list have no event)
            await asyncio.sleep(0.005)


def sms(body: str = "Hello", *, encoding: str = "gsm7", sender: str = "Switchbrd", e164: str = DEST) -> OutboundSms:
    return OutboundSms(1, e164, sender, body, encoding)


def receipt_text(message_id: str, stat: str, err: str = "000") -> bytes:
    return (
        f"id:{message_id} sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:{stat} err:{err} text:Hi"
    ).encode()


def answer_with(message_id: str, status: int = OK) -> Callable[[Connection, SubmitSm], Awaitable[None]]:
    async def on_submit(c: Connection, pdu: SubmitSm) -> None:
        c.send(SubmitSmResp(sequence=pdu.sequence, status=status, message_id=message_id if status == OK else ""))

    return on_submit


# --- pure parts -------------------------------------------------------------------------------------------


def test_text_is_gsm_unpacked_or_ucs2_and_never_a_question_mark() -> None:
    assert encode_text("Hi @ {€}", "gsm7") == (0, gsm7_septets("Hi @ {€}"))
    assert encode_text("Hi @ {€}", "gsm7")[1] == b"Hi \x00 \x1b\x28\x1b\x65\x1b\x29"
    assert encode_text("Привет 😀", "ucs2") == (8, "Привет 😀".encode("utf-16-be"))
    assert encode_text("Cześć", "gsm7") == (8, "Cześć".encode("utf-16-be"))  # said gsm7, is not: UCS-2
    assert encode_text("a" * 160, "gsm7")[1] == b"a" * 160
    with pytest.raises(ValueError):
        encode_text("a" * 161, "gsm7")
    with pytest.raises(ValueError):
        encode_text("€" * 81, "gsm7")  # 162 septets
    with pytest.raises(ValueError):
        encode_text("ж" * 71, "ucs2")


def test_addresses_from_sender_and_destination() -> None:
    assert addresses("Switchbrd", "+447700900001") == Addresses(5, 0, "Switchbrd", 1, 1, "447700900001")
    assert addresses("+4915100000001", "+1555") == Addresses(1, 1, "4915100000001", 1, 1, "1555")
    assert addresses("12345", "+1555") == Addresses(0, 1, "12345", 1, 1, "1555")
    assert addresses("Shop 24", "+1555")[:3] == (5, 0, "Shop 24")


def test_numbers_are_masked_in_logs() -> None:
    assert mask_number("447700900123") == "4477******23"
    assert mask_number("12345") == "*****"


# --- submits ----------------------------------------------------------------------------------------------


async def test_gsm_and_ucs2_submits_reach_the_smsc_as_sent(smsc: FakeSmsc, make_carrier: CarrierFactory) -> None:
    smsc.on_submit = answer_with("abc-1")
    carrier = await make_carrier()
    results = await carrier.submit([sms("Hello @ €"), sms("Привет 😀", encoding="ucs2")])
    assert [r.carrier_ref for r in results] == ["abc-1", "abc-1"]
    gsm, ucs2 = smsc.received(SubmitSm)
    assert (gsm.data_coding, gsm.short_message) == (0, b"Hello \x00 \x1b\x65")
    assert (ucs2.data_coding, ucs2.short_message) == (8, "Привет 😀".encode("utf-16-be"))
    for pdu in (gsm, ucs2):
        assert pdu.registered_delivery == 1 and pdu.esm_class == 0
        assert (pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr) == (5, 0, "Switchbrd")
        assert (pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr) == (1, 1, "447700900001")


async def test_numeric_senders_get_their_ton_and_npi(smsc: FakeSmsc, make_carrier: CarrierFactory) -> None:
    smsc.on_submit = answer_with("x")
    carrier = await make_carrier()
    await carrier.submit([sms(sender="+4915100000001"), sms(sender="12345")])
    first, second = smsc.received(SubmitSm)
    assert (first.source_addr_ton, first.source_addr_npi, first.source_addr) == (1, 1, "4915100000001")
    assert (second.source_addr_ton, second.source_addr_npi, second.source_addr) == (0, 1, "12345")


def test_long_text_is_split_as_encoding_segment_splits_it() -> None:
    assert split_text("a" * 160, "gsm7") == (0, [b"a" * 160])
    assert split_text("a" * 161, "gsm7") == (0, [b"a" * 153, b"a" * 8])
    # An extension character is never split from its escape: 152 septets, then the € starts part 2.
    assert split_text("a" * 152 + "€" + "b" * 10, "gsm7") == (0, [b"a" * 152, b"\x1b\x65" + b"b" * 10])
    emoji = "ж" * 66 + "😀" + "ж" * 10  # the surrogate pair would straddle units 67/68: it starts part 2
    data_coding, parts = split_text(emoji, "ucs2")
    assert data_coding == 8 and parts == [p.encode("utf-16-be") for p in segment(emoji)]
    assert parts[0] == ("ж" * 66).encode("utf-16-be") and parts[1].startswith("😀".encode("utf-16-be"))
    assert split_text("a" * 71, "ucs2") == (8, [("a" * 67).encode("utf-16-be"), b"\x00a" * 4])  # GSM said UCS-2
    assert split_text("Cześć " * 20, "gsm7")[0] == 8  # said gsm7, is not: split as UCS-2
    assert concat_udh(0x1A2, 3, 2) == b"\x05\x00\x03\xa2\x03\x02"


def parts_of(pdus: list[SubmitSm]) -> list[tuple[int, int, int, bytes]]:
    """(ref, total, seq, payload) of each concatenated submit_sm, checking its UDH and esm_class."""
    out = []
    for pdu in pdus:
        assert pdu.esm_class == 0x40 and pdu.registered_delivery == 1
        udh, payload = pdu.short_message[:6], pdu.short_message[6:]
        assert udh[:3] == b"\x05\x00\x03"
        out.append((udh[3], udh[4], udh[5], payload))
    return out


async def test_a_long_gsm_message_goes_as_parts_with_one_reference(
    smsc: FakeSmsc, make_carrier: CarrierFactory
) -> None:
    seen = 0

    async def on_submit(c: Connection, pdu: SubmitSm) -> None:
        nonlocal seen
        seen += 1
        c.send(SubmitSmResp(sequence=pdu.sequence, message_id=f"p{seen}"))

    smsc.on_submit = on_submit
    carrier = await make_carrier()
    body = "x" * 153 + "y" * 153 + "z€"
    (result,) = await carrier.submit([sms(body)])
    assert result.accepted and result.carrier_ref == "p1" and result.part_refs == ("p1", "p2", "p3")
    parts = parts_of(smsc.received(SubmitSm))
    assert [(total, seq) for _, total, seq, _ in parts] == [(3, 1), (3, 2), (3, 3)]
    assert len({ref for ref, *_ in parts}) == 1
    assert [payload for *_, payload in parts] == [b"x" * 153, b"y" * 153, b"z\x1b\x65"]
    assert all(p.data_coding == 0 for p in smsc.received(SubmitSm))
    # The next long message gets the next reference; a short one goes as before, without a UDH.
    (again, short) = await carrier.submit([sms(body), sms("ok")])
    assert again.accepted and short.accepted and short.part_refs == ()
    later = smsc.received(SubmitSm)[3:]
    plain = [p for p in later if p.esm_class == 0]
    assert [p.short_message for p in plain] == [b"ok"]
    next_ref = {ref for ref, *_ in parts_of([p for p in later if p.esm_class])}
    assert next_ref == {(parts[0][0] + 1) % 256}


async def test_a_long_ucs2_message_goes_as_parts(smsc: FakeSmsc, make_carrier: CarrierFactory) -> None:
    smsc.on_submit = answer_with("u")
    carrier = await make_carrier()
    body = "Привет, мир! " * 10 + "😀"  # 130 + 2 code units: 2 parts of at most 67
    (result,) = await carrier.submit([sms(body, encoding="ucs2")])
    assert result.accepted and result.part_refs == ("u", "u")
    pdus = smsc.received(SubmitSm)
    assert all(p.data_coding == 8 for p in pdus)
    parts = parts_of(pdus)
    assert [(total, seq) for _, total, seq, _ in parts] == [(2, 1), (2, 2)]
    assert b"".join(payload for *_, payload in parts).decode("utf-16-be") == body
    assert all(len(payload) <= 134 for *_, payload in parts)


@pytest.mark.parametrize(("status", "permanent"), [(S.ESME_RTHROTTLED, False), (S.ESME_RINVDSTADR, True)])
async def test_a_refused_middle_part_fails_the_message_and_stops_sending(
    smsc: FakeSmsc, make_carrier: CarrierFactory, status: int, permanent: bool
) -> None:
    seen = 0

    async def on_submit(c: Connection, pdu: SubmitSm) -> None:
        nonlocal seen
        seen += 1
        ok = seen != 2
        c.send(SubmitSmResp(sequence=pdu.sequence, status=OK if ok else status, message_id=f"p{seen}" if ok else ""))

    smsc.on_submit = on_submit
    carrier = await make_carrier()
    (result,) = await carrier.submit([sms("a" * 400)])  # 3 parts
    assert result.carrier_ref is None and result.part_refs == () and result.permanent is permanent
    assert result.error is not None and "(part 2 of 3)" in result.error and status_text(status) in result.error
    assert len(smsc.received(SubmitSm)) == 2  # part 3 is never sent


async def test_hex_submit_ids_become_decimal_keys(smsc: FakeSmsc, make_carrier: CarrierFactory) -> None:
    smsc.on_submit = answer_with("0A1B")
    carrier = await make_carrier(id_form=IdForm.HEX)
    assert (await carrier.submit([sms()]))[0].carrier_ref == "2587"


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        (S.ESME_RTHROTTLED, False),
        (S.ESME_RMSGQFUL, False),
        (S.ESME_RSYSERR, False),
        (S.ESME_RINVDSTADR, True),
        (S.ESME_RINVSRCADR, True),
        (0x401, True),
    ],
)
async def test_refusals_are_transient_or_permanent(
    smsc: FakeSmsc, make_carrier: CarrierFactory, status: int, permanent: bool
) -> None:
    smsc.on_submit = answer_with("", status)
    carrier = await make_carrier()
    (result,) = await carrier.submit([sms()])
    assert result.carrier_ref is None and result.permanent is permanent
    assert result.error is not None and (status_text(status) in result.error)


def status_text(status: int) -> str:
    try:
        return CommandStatus(status).name
    except ValueError:
        return f"0x{status:08X}"


async def test_no_response_in_time_is_transient(smsc: FakeSmsc, make_carrier: CarrierFactory) -> None:
    smsc.answer_submits = False
    carrier = await make_carrier(response_timeout=0.2)
    (result,) = await carrier.submit([sms()])
    assert result.carrier_ref is None and not result.permanent and "no response" in (result.error or "")


async def test_a_connection_dropped_mid_batch_gives_transient_results_then_reconnects(
    smsc: FakeSmsc, make_carrier: CarrierFactory
) -> None:
    seen = 0

    async def on_submit(c: Connection, pdu: SubmitSm) -> None:
        nonlocal seen
        seen += 1
        if seen <= 2:
            c.send(SubmitSmResp(sequence=pdu.sequence, message_id=f"m{seen}"))
        elif seen == 3:
            c.drop()  # the 3rd and every submit still outstanding are never answered

    smsc.on_submit = on_submit
    carrier = await make_carrier(window=2)
    async with asyncio.timeout(2.0):
        results = await carrier.submit([sms(f"n{i}") for i in range(6)])
    assert len(results) == 6
    accepted = [r for r in results if r.accepted]
    assert sorted(r.carrier_ref or "" for r in accepted) == ["m1", "m2"]
    for r in results:
        if not r.accepted:
            assert not r.permanent and r.error
    await wait_until(lambda: carrier.up and len(smsc.connections) == 2, within=2.0)
    smsc.on_submit = answer_with("again")
    assert (await carrier.submit([sms()]))[0].carrier_ref == "again"


async def test_no_bind_up_means_down_and_transient_results(sink: Sink) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()  # nothing listens on `port` now
    carrier = SmppCarrier(
        name="down", host="127.0.0.1", port=port, system_id="s", password="p", clock=SystemClock(), backoff_base=5
    )
    assert not carrier.up
    await carrier.start(sink)
    try:
        await asyncio.sleep(0.05)
        assert not carrier.up
        results = await carrier.submit([sms(), sms()])
        assert [(r.carrier_ref, r.error, r.permanent) for r in results] == [(None, NO_BIND_ERROR, False)] * 2
    finally:
        await carrier.stop()
    assert not carrier.up


async def test_stop_unbinds_and_then_it_is_down(smsc: FakeSmsc, make_carrier: CarrierFactory) -> None:
    from switchboard.sms.smpp.pdu import Unbind

    carrier = await make_carrier(binds=2)
    await wait_until(lambda: len(smsc.connections) == 2)
    await carrier.stop()
    assert not carrier.up
    assert len(smsc.received(Unbind)) == 2


async def test_submits_spread_over_binds(smsc: FakeSmsc, make_carrier: CarrierFactory) -> None:
    smsc.submit_delay = 0.05
    carrier = await make_carrier(binds=2)
    await wait_until(lambda: all(b.reconnector.up for b in carrier._binds))
    results = await carrier.submit([sms(f"n{i}") for i in range(8)])
    assert all(r.accepted for r in results)
    per_connection = [sum(isinstance(p, SubmitSm) for p in c.received) for c in smsc.connections]
    assert per_connection == [4, 4]


async def test_the_rate_is_respected(smsc: FakeSmsc, make_carrier: CarrierFactory) -> None:
    clock = FakeClock()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    smsc.on_submit = answer_with("x")
    carrier = await make_carrier(clock=clock, rate=10.0, sleep=sleep)
    results = await carrier.submit([sms() for _ in range(5)])
    assert all(r.accepted for r in results)
    assert sorted(round(w, 6) for w in waits) == [0.1, 0.2, 0.3, 0.4]  # burst 1, then 10 a second
    clock.advance(seconds=1.0)  # a second later the bucket is full again (burst 1): one goes at once
    waits.clear()
    await carrier.submit([sms(), sms()])
    assert [round(w, 6) for w in waits] == [0.1]


# --- what the SMSC sends --------------------------------------------------------------------------------


def deliver(
    sequence: int, *, esm_class: int = RECEIPT, text: bytes = b"", tlvs: tuple[Tlv, ...] = (), data_coding: int = 0
) -> DeliverSm:
    return DeliverSm(
        sequence=sequence,
        source_addr="447700900001",
        destination_addr="Switchbrd",
        esm_class=esm_class,
        data_coding=data_coding,
        short_message=text,
        tlvs=tlvs,
    )


async def answers(smsc: FakeSmsc, count: int) -> list[DeliverSmResp]:
    return await smsc.wait_for(DeliverSmResp, count)


@pytest.mark.parametrize(
    ("stat", "status"),
    [
        ("DELIVRD", SmsStatus.DELIVERED),
        ("EXPIRED", SmsStatus.EXPIRED),
        ("REJECTD", SmsStatus.REJECTED),
        ("UNDELIV", SmsStatus.UNDELIVERED),
        ("DELETED", SmsStatus.UNDELIVERED),
        ("UNKNOWN", SmsStatus.UNDELIVERED),
    ],
)
async def test_receipt_states_map_to_statuses(
    smsc: FakeSmsc, make_carrier: CarrierFactory, sink: Sink, stat: str, status: SmsStatus
) -> None:
    await make_carrier()
    smsc.last.send(deliver(7, text=receipt_text("abc-1", stat, "012")))
    (receipt,) = await sink.wait()
    error = None if status is SmsStatus.DELIVERED else f"{stat} (err 012)"
    assert receipt == Receipt("smsc1", "abc-1", status, error)
    (resp,) = await answers(smsc, 1)
    assert (resp.sequence, resp.status) == (7, OK)


async def test_hex_submit_ids_match_decimal_receipt_texts(
    smsc: FakeSmsc, make_carrier: CarrierFactory, sink: Sink
) -> None:
    smsc.on_submit = answer_with("5F5E1001")
    carrier = await make_carrier(id_form=IdForm.HEX, receipt_id_form=IdForm.DECIMAL)
    (result,) = await carrier.submit([sms()])
    smsc.last.send(deliver(1, text=receipt_text("1600000001", "DELIVRD")))
    # The TLV is written as in submit_sm_resp (§5.3.2.12): read as hex, whatever the text says.
    tlvs = (
        Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, "5f5e1001"),
        Tlv.integer(TlvTag.MESSAGE_STATE, MessageState.UNDELIVERABLE),
    )
    smsc.last.send(deliver(2, text=receipt_text("1600000001", "DELIVRD"), tlvs=tlvs))
    first, second = await sink.wait(2)
    assert result.carrier_ref == first.carrier_ref == second.carrier_ref == "1600000001"
    assert (first.status, second.status) == (SmsStatus.DELIVERED, SmsStatus.UNDELIVERED)


async def test_a_receipt_before_the_submit_response_still_reaches_the_sink(
    smsc: FakeSmsc, make_carrier: CarrierFactory, sink: Sink
) -> None:
    async def on_submit(c: Connection, pdu: SubmitSm) -> None:
        c.send(deliver(99, text=receipt_text("early-1", "DELIVRD")))
        await asyncio.sleep(0.05)
        c.send(SubmitSmResp(sequence=pdu.sequence, message_id="early-1"))

    smsc.on_submit = on_submit
    carrier = await make_carrier()
    (result,) = await carrier.submit([sms()])
    (receipt,) = await sink.wait()
    assert receipt == Receipt("smsc1", "early-1", SmsStatus.DELIVERED, None)
    assert result.carrier_ref == receipt.carrier_ref


async def test_receipts_arriving_together_go_over_in_one_batch(
    smsc: FakeSmsc, make_carrier: CarrierFactory, sink: Sink
) -> None:
    await make_carrier()
    for i in range(20):
        smsc.last.send(deliver(i + 1, text=receipt_text(f"r{i}", "DELIVRD")))
    await sink.wait(20)
    assert [r.carrier_ref for r in sink.receipts] == [f"r{i}" for i in range(20)]
    assert sink.batches < 5
    assert {r.status for r in await answers(smsc, 20)} == {OK}


async def test_receipts_and_mo_of_one_read_go_to_their_sinks_and_a_failing_one_fails_only_its_own(
    smsc: FakeSmsc, make_carrier: CarrierFactory, sink: Sink, mo: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    await make_carrier()
    delivered = (Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, "t1"), Tlv.integer(TlvTag.MESSAGE_STATE, 2))
    one_read = [
        deliver(1, text=receipt_text("r1", "DELIVRD")),
        deliver(2, esm_class=0, text=b"from a handset"),
        deliver(3, text=b"no text needed: the TLVs say it all", tlvs=delivered),
        deliver(4, text=receipt_text("r2", "ENROUTE")),
    ]
    smsc.last.send(b"".join(encode(pdu) for pdu in one_read))
    resps = await answers(smsc, 4)
    assert sorted((r.sequence, r.status) for r in resps) == [(1, OK), (2, OK), (3, OK), (4, OK)]
    assert sink.receipts == [
        Receipt("smsc1", "r1", SmsStatus.DELIVERED, None),
        Receipt("smsc1", "t1", SmsStatus.DELIVERED, None),
    ]
    assert [m.body for m in mo.receipts] == ["from a handset"]
    assert (sink.batches, mo.batches) == (1, 1)

    sink.fail = True
    with caplog.at_level(logging.ERROR, "switchboard.sms.smpp"):
        smsc.last.send(b"".join(encode(pdu) for pdu in one_read[:2]))
        resps = (await answers(smsc, 6))[4:]
    assert sorted((r.sequence, r.status) for r in resps) == [(1, S.ESME_RX_T_APPN), (2, OK)]
    assert [m.body for m in mo.receipts] == ["from a handset"] * 2


async def test_a_batch_of_one_text_to_many_numbers_is_spread_over_the_binds_in_order(
    smsc: FakeSmsc, make_carrier: CarrierFactory
) -> None:
    carrier = await make_carrier(binds=2, window=3)
    await wait_until(lambda: all(b.reconnector.up for b in carrier._binds))
    numbers = [f"+4477009{i:05d}" for i in range(100)]
    results = await carrier.submit([sms("Same text", e164=n) for n in numbers])
    assert [r.carrier_ref for r in results] == ["id-" + gsm7_septets("Same text").decode()] * 100
    sent = [p.destination_addr for c in smsc.connections for p in c.received if isinstance(p, SubmitSm)]
    assert sorted(sent) == sorted(n[1:] for n in numbers)
    assert smsc.max_outstanding <= 6


async def test_a_failing_sink_makes_the_smsc_send_again_later(
    smsc: FakeSmsc, make_carrier: CarrierFactory, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    await make_carrier()
    sink.fail = True
    with caplog.at_level(logging.ERROR, "switchboard.sms.smpp"):
        smsc.last.send(deliver(3, text=receipt_text("r", "DELIVRD")))
        (resp,) = await answers(smsc, 1)
    assert resp.status == S.ESME_RX_T_APPN


async def test_intermediate_unreadable_and_mo_without_inbound_sink_are_acknowledged_not_passed_on(
    smsc: FakeSmsc, make_carrier: CarrierFactory, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    await make_carrier(with_inbound=False)
    with caplog.at_level(logging.INFO, "switchboard.sms.smpp"):
        smsc.last.send(deliver(1, text=receipt_text("r1", "ENROUTE")))
        smsc.last.send(deliver(2, esm_class=0x20, text=receipt_text("r1", "ACCEPTD")))
        smsc.last.send(deliver(3, text=b"garbage without an id"))
        smsc.last.send(deliver(4, esm_class=0, text=b"id:1 stat:DELIVRD from a handset"))
        resps = await answers(smsc, 4)
    assert sorted((r.sequence, r.status) for r in resps) == [(1, OK), (2, OK), (3, OK), (4, OK)]
    await asyncio.sleep(0.03)
    assert sink.receipts == []
    assert "4477******01" in caplog.text and "447700900001" not in caplog.text
    assert "unreadable receipt" in caplog.text


async def test_an_mo_reaches_the_inbound_sink_decoded_before_it_is_acknowledged(
    smsc: FakeSmsc, make_carrier: CarrierFactory, sink: Sink, mo: Sink
) -> None:
    clock = FakeClock()
    await make_carrier(clock=clock)
    gsm = "Hi @home {50€} ÄÖ"
    smsc.last.send(deliver(1, esm_class=0, text=gsm7_septets(gsm)))
    smsc.last.send(deliver(2, esm_class=0, text="Привет 😀".encode("utf-16-be"), data_coding=8))
    smsc.last.send(deliver(3, esm_class=0, text=b"\x00\xff binary", data_coding=4))
    smsc.last.send(deliver(4, esm_class=0, text=b"id:1 stat:DELIVRD from a handset"))
    smsc.last.send(deliver(5, esm_class=0, text="café".encode("latin-1"), data_coding=3))
    resps = await answers(smsc, 5)
    assert sorted((r.sequence, r.status) for r in resps) == [(n, OK) for n in range(1, 6)]
    assert len(mo.receipts) == 5  # every one was in the sink when it was answered
    assert sink.receipts == []
    received = clock.now_ms()
    assert sorted(mo.receipts, key=lambda m: m.data_coding) == [
        InboundMessage("smsc1", "447700900001", "Switchbrd", gsm, 0, None, received),
        InboundMessage("smsc1", "447700900001", "Switchbrd", "id:1 stat:DELIVRD from a handset", 0, None, received),
        InboundMessage("smsc1", "447700900001", "Switchbrd", "café", 3, None, received),
        InboundMessage("smsc1", "447700900001", "Switchbrd", None, 4, b"\x00\xff binary".hex(), received),
        InboundMessage("smsc1", "447700900001", "Switchbrd", "Привет 😀", 8, None, received),
    ]


async def test_an_mo_part_and_a_data_sm_payload_are_read(
    smsc: FakeSmsc, make_carrier: CarrierFactory, mo: Sink
) -> None:
    await make_carrier()
    part = concat_udh(7, 2, 1) + gsm7_septets("first half")
    smsc.last.send(deliver(1, esm_class=ESM_UDHI, text=part))
    payload = Tlv(TlvTag.MESSAGE_PAYLOAD, "long ✓".encode("utf-16-be"))
    smsc.last.send(
        DataSm(sequence=2, source_addr="447700900002", destination_addr="12345", data_coding=8, tlvs=(payload,))
    )
    first, second = sorted(await mo.wait(2), key=lambda m: m.source_addr)
    assert (first.body, first.raw) == ("first half", part.hex())
    assert (second.body, second.raw, second.destination_addr) == ("long ✓", None, "12345")
    assert [r.status for r in await smsc.wait_for(DataSmResp, 1)] == [OK]


async def test_a_failing_inbound_sink_makes_the_smsc_send_the_mo_again_later(
    smsc: FakeSmsc, make_carrier: CarrierFactory, mo: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    await make_carrier()
    mo.fail = True
    with caplog.at_level(logging.ERROR, "switchboard.sms.smpp"):
        smsc.last.send(deliver(3, esm_class=0, text=b"hello"))
        (resp,) = await answers(smsc, 1)
    assert resp.status == S.ESME_RX_T_APPN
    assert "could not hand over 1 inbound messages" in caplog.text
    mo.fail = False
    smsc.last.send(deliver(4, esm_class=0, text=b"hello"))
    (_, resp) = await answers(smsc, 2)
    assert resp.status == OK
    assert [m.body for m in mo.receipts] == ["hello"]


@pytest.mark.parametrize(
    ("data_coding", "octets", "udhi", "decoded"),
    [
        (0, gsm7_septets("a{b}"), False, ("a{b}", None, None)),
        (0, b"\x1b\x41", False, ("A", None, None)),  # an escape to nothing known: the basic character
        (0, b"caf\xe9", False, (None, "636166e9", None)),  # not septets
        (1, b"plain", False, ("plain", None, None)),
        (1, b"caf\xe9", False, (None, "636166e9", None)),
        (3, b"caf\xe9", False, ("café", None, None)),
        (8, b"\x00A\x00", False, ("A\ufffd", "004100", None)),  # an odd length: replaced, the octets kept
        (8, b"\xd8\x3d", False, ("\ufffd", "d83d", None)),  # a lone surrogate: replaced, the octets kept
        (8, b"\x00A\x00\x00", False, (None, "00410000", None)),  # a NUL: not text
        (0xF5, b"\x01\x02", False, (None, "0102", None)),
        (0, bytes((5, 0, 3, 1, 2, 2)) + b"end", True, ("end", "050003010202656e64", Concat(1, 2, 2))),
        (8, bytes((6, 8, 4, 0x12, 0x34, 3, 1)) + b"\x00A", True,
         ("A", "06080412340301" + "0041", Concat(0x1234, 3, 1))),
        (0, bytes((5, 0, 3, 1, 1, 1)) + b"one", True, ("one", "050003010101" + b"one".hex(), None)),  # 1 of 1
        (0, b"\x09\x00", True, (None, "0900", None)),  # the header claims more than there is
    ],
)
def test_decode_inbound(
    data_coding: int, octets: bytes, udhi: bool, decoded: tuple[str | None, str | None, Concat | None]
) -> None:
    assert decode_inbound(data_coding, octets, udhi=udhi) == decoded


async def test_a_batch_beyond_the_rate_s_next_20_seconds_is_handed_back_not_held(
    smsc: FakeSmsc, make_carrier: CarrierFactory
) -> None:
    """At 1 submit a second, a batch of 30 would hold its last messages past the worker's claim (and send
    them twice when the claim passes on): what cannot go within 20 s is handed back, transient."""
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(0)

    smsc.on_submit = answer_with("x")
    carrier = await make_carrier(clock=clock, rate=1.0, sleep=sleep)
    results = await carrier.submit([sms(f"n{i}") for i in range(30)])
    sent = [r for r in results if r.accepted]
    busy = [r for r in results if not r.accepted]
    assert len(sent) == 21  # the burst of 1, then 20 seconds' worth
    assert all(r.error == RATE_BUSY_ERROR and not r.permanent for r in busy)
    assert sum(isinstance(p, SubmitSm) for c in smsc.connections for p in c.received) == 21
