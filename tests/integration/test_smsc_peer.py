"""The test SMSC (tests/smsc/server.js on the npm package `smpp`) against our PDU codec, over plain asyncio TCP:
no session code, only `encode`, `FrameReader` and `decode`. Proves the peer that Issue 4's session tests run
against speaks SMPP as our codec does, and that each of its knobs does what smsc.py says."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from itertools import count
from typing import TypeVar

import pytest

from switchboard.sms.smpp.pdu import (
    BindTransceiver,
    BindTransceiverResp,
    CommandStatus,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    FrameReader,
    GenericNack,
    MessageState,
    NetworkErrorCode,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Tlv,
    TlvTag,
    Unbind,
    UnbindResp,
    decode,
    encode,
    is_transient,
)
from switchboard.sms.smpp.receipt import IdForm, is_receipt, message_id_key, parse_receipt
from tests.integration.smsc import SmscPeer, smsc_fixture

smsc = smsc_fixture(receipt_delay_ms=20)
hex_smsc = smsc_fixture(hex_ids=True, no_receipt_tlvs=True, receipt_delay_ms=20, mo_on_bind="4915100000000,12345,hi")
throttling_smsc = smsc_fixture(throttle_every=2, queue_full_every=3)
early_smsc = smsc_fixture(receipt_before_resp=True)
dropping_smsc = smsc_fixture(drop_after=3, receipt_delay_ms=200)

SOURCE = "12345"
TIMEOUT = 3.0
"""Seconds any one wait on the connection may take."""
P = TypeVar("P", bound=Pdu)


class Link:
    """One TCP connection speaking PDUs through our codec; what arrives is kept in order in `received`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader()
        self.received: list[Pdu] = []
        """Arrived and not yet taken by `expect`."""
        self.log: list[Pdu] = []
        """Everything that arrived, in order."""
        self._sequence = count(1)
        self.eof = False
        self.reset = False

    def next_sequence(self) -> int:
        return next(self._sequence)

    async def send(self, pdu: Pdu) -> None:
        await self.send_raw(encode(pdu))

    async def send_raw(self, frame: bytes) -> None:
        self.writer.write(frame)
        await self.writer.drain()

    async def _read(self) -> None:
        try:
            data = await self.reader.read(65536)
        except ConnectionResetError:
            self.eof = self.reset = True
            return
        if not data:
            self.eof = True
            return
        self.frames.feed(data)
        while (frame := self.frames.next_frame()) is not None:
            pdu = decode(frame)
            self.received.append(pdu)
            self.log.append(pdu)

    async def expect(self, kind: type[P], **fields: object) -> P:
        """The first PDU of `kind` with these field values not yet taken, waiting for it."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                for pdu in self.received:
                    if type(pdu) is kind and all(getattr(pdu, k) == v for k, v in fields.items()):
                        self.received.remove(pdu)
                        return pdu
                if self.eof:
                    raise AssertionError(f"connection closed before a {kind.__name__} {fields}: {self.received}")
                await self._read()

    async def request(self, pdu: Pdu, kind: type[P]) -> P:
        await self.send(pdu)
        return await self.expect(kind, sequence=pdu.sequence)

    async def closed(self) -> list[Pdu]:
        """Wait for the peer to close; returns what arrived and was not taken."""
        async with asyncio.timeout(TIMEOUT):
            while not self.eof:
                await self._read()
        return self.received

    async def bind(self, system_id: str = "switchboard", password: str = "secret") -> BindTransceiverResp:
        pdu = BindTransceiver(sequence=self.next_sequence(), system_id=system_id, password=password)
        return await self.request(pdu, BindTransceiverResp)

    def submit(self, destination: str, text: bytes = b"Hello", **fields: object) -> SubmitSm:
        values: dict[str, object] = {"registered_delivery": 1, **fields}
        return SubmitSm(
            sequence=self.next_sequence(),
            source_addr=SOURCE,
            destination_addr=destination,
            short_message=text,
            **values,  # type: ignore[arg-type]
        )

    async def receipt_for(self, message_id: str) -> DeliverSm:
        """The deliver_sm receipt whose receipted_message_id is `message_id`, answered with deliver_sm_resp."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                for pdu in self.received:
                    if isinstance(pdu, DeliverSm) and pdu.receipted_message_id == message_id:
                        self.received.remove(pdu)
                        await self.send(DeliverSmResp(sequence=pdu.sequence))
                        return pdu
                if self.eof:
                    raise AssertionError(f"connection closed before the receipt for {message_id}")
                await self._read()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def connect(peer: SmscPeer) -> AsyncIterator[Link]:
    reader, writer = await asyncio.open_connection(peer.host, peer.port)
    link = Link(reader, writer)
    try:
        yield link
    finally:
        await link.close()


async def test_bind_transceiver_is_accepted_and_a_wrong_password_or_system_id_refused(smsc: SmscPeer) -> None:
    async with connect(smsc) as link:
        resp = await link.bind()
        assert resp.status == CommandStatus.ESME_ROK
        assert resp.system_id == "SMSC"
        assert resp.sc_interface_version == 0x34
        again = await link.bind()
        assert again.status == CommandStatus.ESME_RALYBND
    async with connect(smsc) as link:
        refused = await link.bind(password="wrong")
        assert refused.status == CommandStatus.ESME_RINVPASWD
        assert refused.system_id == ""  # header only: the body is omitted on error
        assert (await link.bind(system_id="intruder")).status == CommandStatus.ESME_RINVSYSID
    smsc.wait_for("bind", system_id="switchboard", status_name="ESME_RINVPASWD")


@pytest.mark.parametrize("destination", ["4915100000000", "4915100000005"])
async def test_a_gsm_submit_gets_a_message_id_then_a_receipt_naming_it(smsc: SmscPeer, destination: str) -> None:
    since = smsc.mark()
    async with connect(smsc) as link:
        await link.bind()
        submit = link.submit(destination, b"Hello @ world")
        resp = await link.request(submit, SubmitSmResp)
        assert resp.status == CommandStatus.ESME_ROK
        assert resp.message_id.isdigit()
        seen = smsc.wait_for("submit_sm", since=since, message_id=resp.message_id)
        assert seen["destination_addr"] == destination
        assert seen["data_coding"] == 0
        assert seen["esm_class"] == 0
        assert bytes.fromhex(seen["short_message_hex"]) == b"Hello @ world"

        deliver = await link.receipt_for(resp.message_id)
        assert is_receipt(deliver)
        assert deliver.esm_class == 0x04
        receipt = parse_receipt(deliver)
        assert receipt is not None
        assert receipt.message_id == resp.message_id
        assert receipt.state is MessageState.DELIVERED and receipt.final
        assert receipt.error == "000"
        assert receipt.submit_date is not None and receipt.done_date is not None
        assert f"id:{resp.message_id} ".encode() in deliver.short_message
        smsc.wait_for("deliver_sm_resp", since=since, kind="receipt", message_id=resp.message_id, status=0)
        if destination.endswith("05"):  # the text comes back as an MO from the destination
            mo = await link.expect(DeliverSm, source_addr=destination)
            assert not is_receipt(mo)
            assert (mo.destination_addr, mo.short_message) == (SOURCE, b"Hello @ world")
            await link.send(DeliverSmResp(sequence=mo.sequence))
            smsc.wait_for("deliver_sm_resp", since=since, kind="mo", status=0)


async def test_destinations_choose_the_outcome(smsc: SmscPeer) -> None:
    since = smsc.mark()
    async with connect(smsc) as link:
        await link.bind()
        silent = await link.request(link.submit("4915100000004"), SubmitSmResp)
        undeliverable = await link.request(link.submit("4915100000001"), SubmitSmResp)
        expired = await link.request(link.submit("4915100000002"), SubmitSmResp)
        refused = await link.request(link.submit("4915100000003"), SubmitSmResp)
        assert refused.status == CommandStatus.ESME_RINVDSTADR
        assert refused.message_id == ""
        assert not is_transient(refused.status)

        failed = parse_receipt(await link.receipt_for(undeliverable.message_id))
        assert failed is not None
        assert failed.state is MessageState.UNDELIVERABLE
        assert failed.network_error == NetworkErrorCode(3, 1)
        gone = parse_receipt(await link.receipt_for(expired.message_id))
        assert gone is not None and gone.state is MessageState.EXPIRED
        # The one to ...04 was accepted earlier and its receipt would have come before these.
        assert silent.status == CommandStatus.ESME_ROK
        await asyncio.sleep(0.1)
        await link.send(EnquireLink(sequence=link.next_sequence()))
        await link.expect(EnquireLinkResp)
        assert not any(isinstance(p, DeliverSm) for p in link.received)
        assert not smsc.find("deliver_sm", since=since, message_id=silent.message_id)


async def test_ucs2_and_concatenated_parts_reach_the_smsc_as_sent(smsc: SmscPeer) -> None:
    since = smsc.mark()
    text = "Привет, мир € 👋".encode("utf-16-be")
    udh = bytes([0x05, 0x00, 0x03, 0x2A, 0x02, 0x01])
    async with connect(smsc) as link:
        await link.bind()
        plain = await link.request(link.submit("4915100000000", text, data_coding=8), SubmitSmResp)
        part = await link.request(
            link.submit("4915100000000", udh + text, data_coding=8, esm_class=0x40, registered_delivery=0),
            SubmitSmResp,
        )
        sar = link.submit(
            "4915100000000",
            text,
            data_coding=8,
            registered_delivery=0,
            tlvs=(
                Tlv.integer(TlvTag.SAR_MSG_REF_NUM, 0x1234),
                Tlv.integer(TlvTag.SAR_TOTAL_SEGMENTS, 2),
                Tlv.integer(TlvTag.SAR_SEGMENT_SEQNUM, 2),
            ),
        )
        by_sar = await link.request(sar, SubmitSmResp)

        seen = smsc.wait_for("submit_sm", since=since, message_id=plain.message_id)
        assert seen["data_coding"] == 8
        assert bytes.fromhex(seen["short_message_hex"]) == text
        assert seen["udh"] is None and seen["sar"] is None
        seen = smsc.wait_for("submit_sm", since=since, message_id=part.message_id)
        assert seen["esm_class"] == 0x40
        assert bytes.fromhex(seen["udh"]) == udh
        assert seen["concat"] == {"ref": 0x2A, "total": 2, "seq": 1}
        assert bytes.fromhex(seen["short_message_hex"]) == udh + text
        seen = smsc.wait_for("submit_sm", since=since, message_id=by_sar.message_id)
        assert seen["sar"] == {"ref": 0x1234, "total": 2, "seq": 2}

        receipt = parse_receipt(await link.receipt_for(plain.message_id))
        assert receipt is not None and receipt.state is MessageState.DELIVERED


async def test_enquire_link_and_unbind_are_answered_and_unbind_closes(smsc: SmscPeer) -> None:
    async with connect(smsc) as link:
        await link.bind()
        enquire = EnquireLink(sequence=0x7FFFFFFE)
        assert (await link.request(enquire, EnquireLinkResp)).status == CommandStatus.ESME_ROK
        unbind = Unbind(sequence=link.next_sequence())
        assert (await link.request(unbind, UnbindResp)).status == CommandStatus.ESME_ROK
        assert await link.closed() == []


async def test_the_smsc_sends_an_mo_and_its_own_enquire_link_and_unbind(smsc: SmscPeer) -> None:
    since = smsc.mark()
    async with connect(smsc) as link:
        await link.bind()
        smsc.send_mo("4915100000009", SOURCE, "Grüße", data_coding=3)
        mo = await link.expect(DeliverSm, source_addr="4915100000009")
        assert not is_receipt(mo)
        assert (mo.source_addr, mo.destination_addr, mo.data_coding) == ("4915100000009", SOURCE, 3)
        assert mo.short_message == "Grüße".encode("latin-1")
        await link.send(DeliverSmResp(sequence=mo.sequence))
        smsc.wait_for("deliver_sm_resp", since=since, kind="mo", sequence=mo.sequence, status=0)

        smsc.command("enquire_link")
        probe = await link.expect(EnquireLink)
        assert probe.sequence > mo.sequence  # the SMSC numbers its own requests, from 1 on each connection
        await link.send(EnquireLinkResp(sequence=probe.sequence))
        smsc.wait_for("enquire_link_resp", since=since, sequence=probe.sequence)

        smsc.command("unbind")
        unbind = await link.expect(Unbind)
        await link.send(UnbindResp(sequence=unbind.sequence))
        smsc.wait_for("unbind_resp", since=since, sequence=unbind.sequence)


async def test_ids_in_hex_with_receipts_in_decimal(hex_smsc: SmscPeer) -> None:
    async with connect(hex_smsc) as link:
        await link.bind()
        greeting = await link.expect(DeliverSm)  # --mo-on-bind
        assert (greeting.source_addr, greeting.destination_addr, greeting.short_message) == (
            "4915100000000",
            "12345",
            b"hi",
        )
        await link.send(DeliverSmResp(sequence=greeting.sequence))

        resp = await link.request(link.submit("4915100000000"), SubmitSmResp)
        assert resp.message_id == "5F5E1001"  # the first id, 1600000001
        deliver = await link.expect(DeliverSm)
        await link.send(DeliverSmResp(sequence=deliver.sequence))
        assert deliver.receipted_message_id is None and deliver.message_state is None  # --no-receipt-tlvs
        receipt = parse_receipt(deliver)
        assert receipt is not None
        assert receipt.message_id == "1600000001"
        assert message_id_key(receipt.message_id, IdForm.DECIMAL) == message_id_key(resp.message_id, IdForm.HEX)


async def test_throttled_and_queue_full_answers_come_every_nth_submit(throttling_smsc: SmscPeer) -> None:
    async with connect(throttling_smsc) as link:
        await link.bind()
        statuses = [(await link.request(link.submit("4915100000000"), SubmitSmResp)).status for _ in range(6)]
    ok, throttled, full = CommandStatus.ESME_ROK, CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL
    assert statuses == [ok, throttled, full, throttled, ok, throttled]
    assert is_transient(throttled) and is_transient(full)


async def test_the_receipt_can_come_before_the_submit_sm_resp(early_smsc: SmscPeer) -> None:
    async with connect(early_smsc) as link:
        await link.bind()
        submit = link.submit("4915100000000")
        await link.send(submit)
        resp = await link.expect(SubmitSmResp, sequence=submit.sequence)
        first, second = link.log[-2:]
        assert isinstance(first, DeliverSm)
        assert second is resp
        receipt = parse_receipt(first)
        assert receipt is not None and receipt.message_id == resp.message_id
        await link.send(DeliverSmResp(sequence=first.sequence))


async def test_dropped_mid_window_then_the_receipts_come_on_the_next_bind(dropping_smsc: SmscPeer) -> None:
    since = dropping_smsc.mark()
    async with connect(dropping_smsc) as link:
        await link.bind()
        window = [link.submit(f"49151000000{n}0") for n in range(4)]
        for submit in window:
            await link.send(submit)
        left = await link.closed()
        assert not link.reset  # --drop-mode fin: every response sent, then EOF
    answered = [p for p in left if isinstance(p, SubmitSmResp)]
    assert [p.sequence for p in answered] == [window[0].sequence, window[1].sequence]
    assert not any(isinstance(p, DeliverSm) for p in left)  # receipts come 200 ms after, too late here
    dropping_smsc.wait_for("drop", since=since, after=3, mode="fin")

    async with connect(dropping_smsc) as link:  # queued while no one was bound, sent on the bind
        await link.bind()
        for resp in answered:
            receipt = parse_receipt(await link.receipt_for(resp.message_id))
            assert receipt is not None and receipt.state is MessageState.DELIVERED


async def test_an_unknown_command_is_nacked_and_an_unreadable_frame_closes_the_connection(smsc: SmscPeer) -> None:
    since = smsc.mark()
    async with connect(smsc) as link:
        await link.bind()
        await link.send_raw(struct.pack(">IIII", 16, 0x00000099, 0, 77))
        nack = await link.expect(GenericNack)
        assert (nack.sequence, nack.status) == (77, CommandStatus.ESME_RINVCMDID)
        await link.send_raw(struct.pack(">IIII", 70_000, 0x00000004, 0, 78))  # over the package's 16384
        assert await link.closed() == []  # no generic_nack: the package cannot read on, so we close
    smsc.wait_for("pdu_error", since=since)


async def test_a_drop_command_resets_the_connection(smsc: SmscPeer) -> None:
    async with connect(smsc) as link:
        await link.bind()
        smsc.command("drop", mode="rst")
        await link.closed()
        assert link.reset


async def test_a_receipt_refused_for_now_is_sent_again(smsc: SmscPeer) -> None:
    since = smsc.mark()
    async with connect(smsc) as link:
        await link.bind()
        resp = await link.request(link.submit("4915100000000"), SubmitSmResp)
        first = await link.expect(DeliverSm, receipted_message_id=resp.message_id)
        await link.send(DeliverSmResp(sequence=first.sequence, status=CommandStatus.ESME_RX_T_APPN))
        again = await link.receipt_for(resp.message_id)
        assert again.sequence != first.sequence
        assert again.short_message == first.short_message
        smsc.wait_for("redeliver", since=since, message_id=resp.message_id, after="ESME_RX_T_APPN")


async def test_an_mo_burst_keeps_its_window_offers_a_refused_mo_again_and_sums_up_at_the_end(smsc: SmscPeer) -> None:
    since = smsc.mark()
    async with connect(smsc) as link:
        await link.bind()
        smsc.command("mo_burst", count=5, window=2, **{"from": "4915100000010", "to": SOURCE, "text": "MO"})
        first = await link.expect(DeliverSm, short_message=b"MO 0", source_addr="4915100000010")
        second = await link.expect(DeliverSm, short_message=b"MO 1", source_addr="4915100000011")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(link._read(), 0.3)  # the window is full: nothing more until an answer
        assert link.received == []
        await link.send(DeliverSmResp(sequence=first.sequence, status=CommandStatus.ESME_RX_T_APPN))
        again = await link.expect(DeliverSm, short_message=b"MO 0")
        await link.send(DeliverSmResp(sequence=again.sequence))
        await link.send(DeliverSmResp(sequence=second.sequence))
        answered = 2
        while answered < 5:
            mo = await link.expect(DeliverSm)
            await link.send(DeliverSmResp(sequence=mo.sequence))
            answered += 1
        done = smsc.wait_for("mo_burst_done", since=since)
    assert (done["count"], done["answered"], done["retried"], done["failed"]) == (5, 5, 1, 0)
    assert done["statuses"] == {"0": 5, str(int(CommandStatus.ESME_RX_T_APPN)): 1}
    assert done["first_sent"] <= done["last_answer"] and done["latency_ms"]["p99"] >= done["latency_ms"]["p50"] >= 0
