"""The SMPP session and its reconnector, against an in-process fake SMSC on loopback (our own codec on the
other side of a real TCP connection). Timers are short real ones (0.2 s); every wait is bounded."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from switchboard.errors import BindFailed, ConnectionLost, MalformedResponse, Nacked, PduError, ResponseTimeout
from switchboard.sms.smpp.pdu import (
    BindTransceiver,
    BindTransmitter,
    CommandId,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    encode,
)
from switchboard.sms.smpp.session import MAX_SEQUENCE, BindMode, Reconnector, Session, State
from tests.clock import FakeClock
from tests.unit.fake_smsc import Connection, FakeSmsc

S = CommandStatus
OK = S.ESME_ROK


def submit_sm(text: str = "hi") -> SubmitSm:
    return SubmitSm(sequence=0, destination_addr="447700900001", short_message=text.encode())


def header(command_id: int, sequence: int, status: int = 0, body: bytes = b"") -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body


class Inbox:
    """A Handler that records what it was given and answers with `status` (or raises, or waits)."""

    def __init__(self) -> None:
        self.delivered: list[DeliverSm | DataSm] = []
        self.status: int = OK
        self.error: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def handle_deliver_sm(self, pdu: DeliverSm) -> int:
        return await self._take(pdu)

    async def handle_data_sm(self, pdu: DataSm) -> int:
        return await self._take(pdu)

    async def _take(self, pdu: DeliverSm | DataSm) -> int:
        self.delivered.append(pdu)
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.status


@pytest.fixture
async def smsc() -> AsyncIterator[FakeSmsc]:
    server = FakeSmsc()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


SessionFactory = Callable[..., Session]


@pytest.fixture
async def make_session(smsc: FakeSmsc, inbox: Inbox) -> AsyncIterator[SessionFactory]:
    sessions: list[Session] = []

    def make(**overrides: Any) -> Session:
        options: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": smsc.port,
            "system_id": "switchboard",
            "password": "secret",
            "handler": inbox,
            "response_timeout": 0.5,
            "enquire_link_interval": 5.0,
        } | overrides
        session = Session(**options)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.close()


@pytest.fixture
async def session(make_session: SessionFactory) -> Session:
    s = make_session()
    await s.connect()
    return s


# --- bind ---------------------------------------------------------------------------------------------------


async def test_connect_binds_as_transceiver_with_our_credentials(smsc: FakeSmsc, session: Session) -> None:
    assert session.state is State.BOUND
    (bind,) = smsc.received(BindTransceiver)
    assert (bind.system_id, bind.password, bind.interface_version) == ("switchboard", "secret", 0x34)


async def test_bind_mode_chooses_the_bind_pdu(smsc: FakeSmsc, make_session: SessionFactory) -> None:
    session = make_session(mode=BindMode.TRANSMITTER, system_type="VMA")
    await session.connect()
    (bind,) = smsc.received(BindTransmitter)
    assert bind.system_type == "VMA"


async def test_refused_bind_raises_bind_failed_and_closes(smsc: FakeSmsc, make_session: SessionFactory) -> None:
    smsc.bind_status = S.ESME_RINVPASWD
    session = make_session()
    with pytest.raises(BindFailed) as caught:
        await session.connect()
    assert caught.value.status == S.ESME_RINVPASWD and caught.value.permanent
    assert "ESME_RINVPASWD" in str(caught.value)
    assert session.state is State.CLOSED
    await asyncio.wait_for(smsc.last.closed.wait(), 1)


async def test_transient_bind_refusal_is_not_permanent(smsc: FakeSmsc, make_session: SessionFactory) -> None:
    smsc.bind_status = S.ESME_RALYBND
    with pytest.raises(BindFailed) as caught:
        await make_session().connect()
    assert not caught.value.permanent


async def test_bind_that_cannot_be_encoded_fails_before_dialling(smsc: FakeSmsc, make_session: SessionFactory) -> None:
    with pytest.raises(BindFailed) as caught:
        await make_session(password="far-too-long").connect()
    assert caught.value.status == S.ESME_RINVPASWD and caught.value.permanent
    assert smsc.connections == []


async def test_nothing_listening_raises_connection_lost(make_session: SessionFactory) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(ConnectionLost):
        await make_session(port=port).connect()


async def test_unanswered_bind_times_out(smsc: FakeSmsc, make_session: SessionFactory) -> None:
    async def mute(c: Connection, pdu: Pdu) -> None:
        pass

    smsc._answer = mute  # type: ignore[method-assign]
    session = make_session(response_timeout=0.1)
    with pytest.raises(ResponseTimeout):
        await session.connect()
    assert session.state is State.CLOSED


# --- requests -----------------------------------------------------------------------------------------------


async def test_submit_returns_the_matching_response(session: Session) -> None:
    response = await session.submit(submit_sm("a"))
    assert isinstance(response, SubmitSmResp)
    assert (response.status, response.message_id) == (OK, "id-a")


async def test_error_status_is_returned_not_raised(smsc: FakeSmsc, session: Session) -> None:
    smsc.submit_status = S.ESME_RTHROTTLED
    response = await session.submit(submit_sm())
    assert response.status == S.ESME_RTHROTTLED


async def test_out_of_order_responses_reach_their_own_requests(smsc: FakeSmsc, session: Session) -> None:
    smsc.hold_submits = 4
    texts = ["a", "b", "c", "d"]
    responses = await asyncio.gather(*(session.submit(submit_sm(t)) for t in texts))
    assert [r.message_id for r in responses] == [f"id-{t}" for t in texts]


async def test_window_bounds_outstanding_requests(smsc: FakeSmsc, make_session: SessionFactory) -> None:
    smsc.submit_delay = 0.02
    session = make_session(window=3)
    await session.connect()
    responses = await asyncio.gather(*(session.submit(submit_sm(str(i))) for i in range(12)))
    assert all(r.status == OK for r in responses)
    assert smsc.max_outstanding == 3


async def test_sequence_numbers_wrap_after_0x7fffffff(smsc: FakeSmsc, make_session: SessionFactory) -> None:
    session = make_session(first_sequence=MAX_SEQUENCE - 1)
    await session.connect()
    for _ in range(3):
        await session.submit(submit_sm())
    assert [p.sequence for p in smsc.last.received] == [MAX_SEQUENCE - 1, MAX_SEQUENCE, 1, 2]


async def test_unanswered_request_times_out_and_its_late_response_is_dropped(smsc: FakeSmsc, session: Session) -> None:
    smsc.answer_submits = False
    with pytest.raises(ResponseTimeout):
        await session.submit(submit_sm("late"))
    (late,) = smsc.received(SubmitSm)
    smsc.respond(smsc.last, late)  # after the timeout: nobody waits for it
    smsc.answer_submits = True
    response = await session.submit(submit_sm("next"))
    assert response.message_id == "id-next" and session.bound


async def test_a_peer_that_keeps_sending_but_answers_nothing_is_dropped_after_three_timeouts(
    smsc: FakeSmsc, make_session: SessionFactory
) -> None:
    """Receipts keep arriving, so the keepalive never speaks; three requests in a row unanswered end the
    session anyway (the reconnector then reconnects, and the router can fail over meanwhile)."""
    session = make_session(response_timeout=0.1, enquire_link_interval=5.0)
    await session.connect()
    smsc.answer_submits = False
    for n in range(3):
        assert session.bound
        smsc.last.send(DeliverSm(sequence=100 + n, source_addr="447700900002", short_message=b"receipt"))
        with pytest.raises(ResponseTimeout):
            await session.submit(submit_sm(f"m{n}"))
    assert not session.bound
    with pytest.raises(ConnectionLost):
        await session.submit(submit_sm("after"))


async def test_generic_nack_fails_its_request_with_its_status(smsc: FakeSmsc, session: Session) -> None:
    async def nack(c: Connection, pdu: SubmitSm) -> None:
        c.send(GenericNack(sequence=pdu.sequence, status=S.ESME_RINVCMDLEN))

    smsc.on_submit = nack
    with pytest.raises(Nacked) as caught:
        await session.submit(submit_sm())
    assert caught.value.status == S.ESME_RINVCMDLEN and session.bound


async def test_malformed_response_fails_its_request(smsc: FakeSmsc, session: Session) -> None:
    async def garbled(c: Connection, pdu: SubmitSm) -> None:  # message_id without its NUL
        c.send(header(CommandId.SUBMIT_SM_RESP, pdu.sequence, body=b"x" * 70))

    smsc.on_submit = garbled
    with pytest.raises(MalformedResponse) as caught:
        await session.submit(submit_sm())
    assert caught.value.status == OK and isinstance(caught.value.error, PduError)
    assert smsc.last.undecodable == [] and session.bound  # a response is never nacked


async def test_unencodable_request_raises_pdu_error_and_sends_nothing(smsc: FakeSmsc, session: Session) -> None:
    with pytest.raises(PduError):
        await session.submit(SubmitSm(sequence=0, destination_addr="4" * 30))
    assert smsc.received(SubmitSm) == []
    assert (await session.submit(submit_sm())).status == OK


async def test_data_sm_request(session: Session) -> None:
    response = await session.request(DataSm(sequence=0, destination_addr="447700900001"))
    assert isinstance(response, DataSmResp) and response.message_id == "d1"


async def test_request_before_connect_raises_connection_lost(make_session: SessionFactory) -> None:
    with pytest.raises(ConnectionLost):
        await make_session().submit(submit_sm())


# --- requests from the SMSC ---------------------------------------------------------------------------------


async def test_deliver_sm_goes_to_the_handler_and_is_answered(smsc: FakeSmsc, session: Session, inbox: Inbox) -> None:
    deliver = DeliverSm(sequence=77, source_addr="447700900002", short_message=b"hello")
    smsc.last.send(deliver)
    (resp,) = await smsc.wait_for(DeliverSmResp)
    assert (resp.sequence, resp.status) == (77, OK)
    assert inbox.delivered == [deliver]


async def test_data_sm_goes_to_the_handler_and_is_answered(smsc: FakeSmsc, session: Session, inbox: Inbox) -> None:
    inbox.status = S.ESME_RX_P_APPN
    smsc.last.send(DataSm(sequence=5, source_addr="447700900002"))
    (resp,) = await smsc.wait_for(DataSmResp)
    assert (resp.sequence, resp.status) == (5, S.ESME_RX_P_APPN)


async def test_handler_that_raises_is_answered_temporary_error(smsc: FakeSmsc, session: Session, inbox: Inbox) -> None:
    inbox.error = RuntimeError("store down")
    smsc.last.send(DeliverSm(sequence=9))
    (resp,) = await smsc.wait_for(DeliverSmResp)
    assert resp.status == S.ESME_RX_T_APPN and session.bound


async def test_receipt_before_submit_resp_does_not_block_the_submit(
    smsc: FakeSmsc, session: Session, inbox: Inbox
) -> None:
    # The handler waits until the submit has its response: were handlers run inline, this would deadlock.
    inbox.gate = asyncio.Event()

    async def receipt_first(c: Connection, pdu: SubmitSm) -> None:
        c.send(DeliverSm(sequence=1000, esm_class=0x04, short_message=b"id:id-r stat:DELIVRD"))
        smsc.respond(c, pdu)

    smsc.on_submit = receipt_first
    response = await session.submit(submit_sm("r"))
    assert response.message_id == "id-r"
    for _ in range(100):  # the handler's task starts in the same turn of the loop or the next few
        if inbox.delivered:
            break
        await asyncio.sleep(0)
    assert len(inbox.delivered) == 1
    inbox.gate.set()
    (resp,) = await smsc.wait_for(DeliverSmResp)
    assert resp.sequence == 1000


class Batches(Inbox):
    """A BatchHandler: records each batch and answers with `statuses` (or `status` for each)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[DeliverSm | DataSm]] = []
        self.statuses: list[int] | None = None

    async def handle_batch(self, pdus: list[DeliverSm | DataSm]) -> list[int]:
        self.batches.append(pdus)
        if self.error is not None:
            raise self.error
        return self.statuses if self.statuses is not None else [self.status] * len(pdus)


def delivers(*sequences: int) -> bytes:
    """deliver_sm for each sequence, in one write (so in one read at the other end)."""
    return b"".join(encode(DeliverSm(sequence=n, short_message=b"hi")) for n in sequences)


async def test_requests_of_one_read_go_to_a_batch_handler_together_and_each_gets_its_status(
    smsc: FakeSmsc, make_session: SessionFactory
) -> None:
    handler = Batches()
    handler.statuses = [OK, S.ESME_RX_T_APPN, OK, S.ESME_RX_P_APPN]
    await make_session(handler=handler).connect()
    smsc.last.send(delivers(11, 12, 13, 14))
    resps = await smsc.wait_for(DeliverSmResp, 4)
    assert [[p.sequence for p in batch] for batch in handler.batches] == [[11, 12, 13, 14]]
    assert sorted((r.sequence, r.status) for r in resps) == list(zip([11, 12, 13, 14], handler.statuses, strict=True))


@pytest.mark.parametrize("fault", ["raises", "miscounts"])
async def test_a_failed_batch_is_answered_temporary_error_throughout(
    smsc: FakeSmsc, make_session: SessionFactory, fault: str
) -> None:
    handler = Batches()
    if fault == "raises":
        handler.error = RuntimeError("store down")
    else:
        handler.statuses = [OK]
    session = make_session(handler=handler)
    await session.connect()
    smsc.last.send(delivers(1, 2))
    resps = await smsc.wait_for(DeliverSmResp, 2)
    assert sorted((r.sequence, r.status) for r in resps) == [(1, S.ESME_RX_T_APPN), (2, S.ESME_RX_T_APPN)]
    assert session.bound


async def test_queued_submits_need_no_task_each_and_keep_to_the_window(
    smsc: FakeSmsc, make_session: SessionFactory
) -> None:
    smsc.submit_delay = 0.02
    session = make_session(window=3)
    await session.connect()
    futures = [session.queue_submit(submit_sm(str(i))) for i in range(12)]
    assert session.load == 12
    responses = await asyncio.wait_for(asyncio.gather(*futures), 2)
    assert [r.message_id for r in responses] == [f"id-{i}" for i in range(12)]
    assert smsc.max_outstanding == 3 and session.load == 0


async def test_a_submit_given_up_in_the_queue_is_never_sent_and_one_given_up_in_flight_frees_its_place(
    smsc: FakeSmsc, make_session: SessionFactory
) -> None:
    smsc.answer_submits = False
    session = make_session(window=1)
    await session.connect()
    in_flight, queued, last = (session.queue_submit(submit_sm(t)) for t in "abc")
    (a,) = await smsc.wait_for(SubmitSm)
    queued.cancel()
    in_flight.cancel()
    smsc.respond(smsc.last, a)  # the answer to a request given up: its place in the window is free again
    _, c = await smsc.wait_for(SubmitSm, 2)
    assert c.short_message == b"c"
    smsc.respond(smsc.last, c)
    assert (await asyncio.wait_for(last, 1)).message_id == "id-c"


async def test_enquire_link_from_the_smsc_is_answered(smsc: FakeSmsc, session: Session) -> None:
    smsc.last.send(EnquireLink(sequence=42))
    (resp,) = await smsc.wait_for(EnquireLinkResp)
    assert resp.sequence == 42


async def test_unbind_from_the_smsc_is_answered_and_ends_the_session(smsc: FakeSmsc, session: Session) -> None:
    smsc.last.send(Unbind(sequence=3))
    (resp,) = await smsc.wait_for(UnbindResp)
    assert resp.sequence == 3
    await asyncio.wait_for(session.wait_closed(), 1)
    assert session.state is State.CLOSED


async def test_request_it_does_not_serve_gets_generic_nack(smsc: FakeSmsc, session: Session) -> None:
    smsc.last.send(SubmitSm(sequence=11))
    (nack,) = await smsc.wait_for(GenericNack)
    assert (nack.sequence, nack.status) == (11, S.ESME_RINVCMDID) and session.bound


# --- malformed input ----------------------------------------------------------------------------------------


async def test_unknown_command_id_gets_generic_nack_and_session_survives(smsc: FakeSmsc, session: Session) -> None:
    smsc.last.send(header(0x00000099, 21))
    (nack,) = await smsc.wait_for(GenericNack)
    assert (nack.sequence, nack.status) == (21, S.ESME_RINVCMDID)
    assert (await session.submit(submit_sm())).status == OK


async def test_malformed_enquire_link_gets_generic_nack(smsc: FakeSmsc, session: Session) -> None:
    smsc.last.send(header(CommandId.ENQUIRE_LINK, 22, body=b"\0\0"))
    (nack,) = await smsc.wait_for(GenericNack)
    assert (nack.sequence, nack.status) == (22, S.ESME_RINVCMDLEN) and session.bound


async def test_deliver_sm_with_bad_body_gets_its_own_resp_with_the_fault(
    smsc: FakeSmsc, session: Session, inbox: Inbox
) -> None:
    good = encode(DeliverSm(sequence=23, short_message=b"abc"))
    bad = bytearray(good)
    bad[-4] = 200  # sm_length 200 with 3 octets left
    smsc.last.send(bytes(bad))
    (resp,) = await smsc.wait_for(DeliverSmResp)
    assert (resp.sequence, resp.status) == (23, S.ESME_RINVMSGLEN)
    assert inbox.delivered == [] and session.bound


async def test_bad_command_length_is_nacked_and_closes(smsc: FakeSmsc, make_session: SessionFactory) -> None:
    smsc.answer_submits = False
    session = make_session(response_timeout=5.0)
    await session.connect()
    pending = asyncio.create_task(session.submit(submit_sm()))
    await smsc.wait_for(SubmitSm)
    smsc.last.send(b"garbage! " * 4)  # "garb" read as command_length: 1.7 GB
    (nack,) = await smsc.wait_for(GenericNack)
    assert nack.status == S.ESME_RINVCMDLEN
    with pytest.raises(ConnectionLost):
        await asyncio.wait_for(pending, 1)
    await asyncio.wait_for(smsc.last.closed.wait(), 1)
    assert session.state is State.CLOSED


# --- keepalive and loss -------------------------------------------------------------------------------------


async def test_enquire_link_is_sent_when_idle(smsc: FakeSmsc, make_session: SessionFactory) -> None:
    session = make_session(enquire_link_interval=0.1, response_timeout=0.2)
    await session.connect()
    await smsc.wait_for(EnquireLink, count=3)
    assert session.bound


async def test_dead_link_is_noticed_within_interval_plus_timeout(smsc: FakeSmsc, make_session: SessionFactory) -> None:
    smsc.answer_enquire_link = False
    session = make_session(enquire_link_interval=0.2, response_timeout=0.2)
    await session.connect()
    loop = asyncio.get_running_loop()
    bound_at = loop.time()
    await asyncio.wait_for(session.wait_closed(), 1.0)
    assert 0.35 <= loop.time() - bound_at <= 0.4 + 0.25  # timers fire late under load, never early
    assert len(smsc.received(EnquireLink)) == 1
    with pytest.raises(ConnectionLost):
        await session.submit(submit_sm())


async def test_dropped_connection_fails_every_outstanding_request_promptly(
    smsc: FakeSmsc, make_session: SessionFactory
) -> None:
    smsc.answer_submits = False
    session = make_session(window=5, response_timeout=10.0)
    await session.connect()
    submits = [asyncio.create_task(session.submit(submit_sm(str(i)))) for i in range(8)]
    await smsc.wait_for(SubmitSm, count=5)
    smsc.last.drop()
    results = await asyncio.wait_for(asyncio.gather(*submits, return_exceptions=True), 1.0)
    assert all(isinstance(r, ConnectionLost) for r in results)
    assert len(smsc.received(SubmitSm)) == 5  # the three waiting for room were never sent
    assert session.state is State.CLOSED


# --- close --------------------------------------------------------------------------------------------------


async def test_close_lets_outstanding_requests_finish_then_unbinds(smsc: FakeSmsc, session: Session) -> None:
    smsc.submit_delay = 0.1
    pending = asyncio.create_task(session.submit(submit_sm("x")))
    await smsc.wait_for(SubmitSm)
    closing = asyncio.create_task(session.close())
    await asyncio.sleep(0)
    with pytest.raises(ConnectionLost):
        await session.submit(submit_sm("refused"))
    assert (await pending).message_id == "id-x"
    await asyncio.wait_for(closing, 1)
    assert [type(p) for p in smsc.last.received][-2:] == [SubmitSm, Unbind]
    await asyncio.wait_for(smsc.last.closed.wait(), 1)
    assert session.state is State.CLOSED


async def test_close_is_bounded_when_unbind_is_not_answered(smsc: FakeSmsc, make_session: SessionFactory) -> None:
    smsc.answer_unbind = False
    session = make_session(response_timeout=0.1)
    await session.connect()
    await asyncio.wait_for(session.close(), 0.5)
    assert smsc.received(Unbind) and session.state is State.CLOSED
    await session.close()  # twice is fine


# --- reconnector --------------------------------------------------------------------------------------------


class Sleeps:
    """A `sleep` that records delays and returns at once; after `limit` of them it blocks until stopped."""

    def __init__(self, limit: int) -> None:
        self.delays: list[float] = []
        self.limit = limit
        self.done = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) >= self.limit:
            self.done.set()
            await asyncio.Event().wait()
        await asyncio.sleep(0)


def cycle(*values: float) -> Callable[[], float]:
    state = {"i": 0}

    def next_value() -> float:
        value = values[state["i"] % len(values)]
        state["i"] += 1
        return value

    return next_value


def reconnector(make_session: SessionFactory, **options: Any) -> Reconnector:
    return Reconnector(session_factory=make_session, clock=options.pop("clock", FakeClock()), **options)


async def test_reconnect_backoff_doubles_to_the_cap_with_jitter(smsc: FakeSmsc, make_session: SessionFactory) -> None:
    smsc.drop_after_bind = True  # every bind is lost at once: never stable
    sleeps = Sleeps(limit=9)
    link = reconnector(make_session, random_fraction=cycle(0.0, 1.0, 0.5), sleep=sleeps, backoff_cap=60.0)
    await link.start()
    await asyncio.wait_for(sleeps.done.wait(), 2)
    await link.stop()
    steps = [1, 2, 4, 8, 16, 32, 60, 60, 60]
    jitter = [0.8, 1.2, 1.0] * 3
    assert sleeps.delays == pytest.approx([s * j for s, j in zip(steps, jitter, strict=True)])
    assert max(sleeps.delays) <= 60 * 1.2
    assert len(smsc.connections) == 9


async def test_refused_password_is_retried_at_the_cap(
    smsc: FakeSmsc, make_session: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    smsc.bind_status = S.ESME_RINVPASWD
    sleeps = Sleeps(limit=3)
    link = reconnector(make_session, random_fraction=cycle(0.5), sleep=sleeps)
    await link.start()
    await asyncio.wait_for(sleeps.done.wait(), 2)
    await link.stop()
    assert sleeps.delays == [60.0, 60.0, 60.0]
    assert any(r.levelname == "ERROR" and "ESME_RINVPASWD" in r.getMessage() for r in caplog.records)


async def test_backoff_starts_over_after_a_stable_bind(smsc: FakeSmsc, make_session: SessionFactory) -> None:
    smsc.drop_after_bind = True

    class Ticking(FakeClock):
        def monotonic(self) -> float:  # every look at the clock is 100 s later: each bind "lasted" 100 s
            self.advance(seconds=100)
            return super().monotonic()

    sleeps = Sleeps(limit=4)
    link = reconnector(make_session, clock=Ticking(), random_fraction=cycle(0.5), sleep=sleeps)
    await link.start()
    await asyncio.wait_for(sleeps.done.wait(), 2)
    await link.stop()
    assert sleeps.delays == [1.0, 1.0, 1.0, 1.0]


async def test_wait_bound_gives_a_new_session_after_a_loss_and_stop_unbinds(
    smsc: FakeSmsc, make_session: SessionFactory
) -> None:
    clock = FakeClock()
    link = reconnector(make_session, clock=clock, backoff_base=0.01)
    await link.start()
    first = await asyncio.wait_for(link.wait_bound(), 1)
    assert link.up and (await first.submit(submit_sm())).status == OK
    smsc.last.drop()
    await asyncio.wait_for(first.wait_closed(), 1)
    bound = asyncio.ensure_future(link.wait_bound())
    await clock.run_until(bound.done, within=1)  # the backoff is waited out on the fake clock
    second = bound.result()
    assert second is not first and second.bound and len(smsc.connections) == 2
    await link.stop()
    assert not link.up and isinstance(smsc.connections[1].received[-1], Unbind)
    with pytest.raises(ConnectionLost):
        await link.wait_bound()


async def test_stop_while_connecting_leaves_nothing_open(smsc: FakeSmsc, make_session: SessionFactory) -> None:
    async def mute(c: Connection, pdu: Pdu) -> None:
        pass

    smsc._answer = mute  # type: ignore[method-assign]
    link = reconnector(make_session)
    await link.start()
    await asyncio.wait_for(smsc.new_connection.wait(), 1)
    await link.stop()
    await asyncio.wait_for(smsc.last.closed.wait(), 1)
    assert not link.up
