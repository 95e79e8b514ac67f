"""SIP client transactions (RFC 3261 §17.1) on a fake clock that jumps, and the UDP transport that carries
them, against datagrams sent by the test on the loopback."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import cast

import pytest

from switchboard.errors import TransactionError
from switchboard.voice.sip.message import (
    CSeq,
    Headers,
    NameAddr,
    Request,
    Response,
    Via,
    new_branch,
    parse,
    response_to,
)
from switchboard.voice.sip.transaction import (
    ClientTransaction,
    InviteClientTransaction,
    NonInviteClientTransaction,
    State,
    Timers,
)
from switchboard.voice.sip.transport import SipTransport
from tests.clock import FakeClock

RNG = random.Random(5)


class Recorder:
    """The transaction user and the wire: what was sent when, what the TU was told."""

    def __init__(self, scheduler: FakeClock) -> None:
        self.scheduler = scheduler
        self.sent: list[tuple[float, bytes]] = []
        self.responses: list[int] = []
        self.timeouts = 0
        self.terminated = 0

    def send(self, data: bytes) -> None:
        self.sent.append((self.scheduler.monotonic(), data))

    def on_response(self, _: ClientTransaction, response: Response) -> None:
        self.responses.append(response.status)

    def on_timeout(self, _: ClientTransaction) -> None:
        self.timeouts += 1

    def on_terminated(self, _: ClientTransaction) -> None:
        self.terminated += 1

    def times(self) -> list[float]:
        return [round(t, 6) for t, _ in self.sent]

    def methods(self) -> list[str]:
        out = []
        for _, data in self.sent:
            message = parse(data)
            assert isinstance(message, Request)
            out.append(message.method)
        return out


def request(method: str, *, cseq: int = 1) -> Request:
    headers = Headers(
        [
            ("Via", str(Via("UDP", "127.0.0.1", 5070, {"branch": new_branch(RNG), "rport": None}))),
            ("Max-Forwards", "70"),
            ("From", str(NameAddr(None, "sip:+15551234@127.0.0.1", {"tag": "ours"}))),
            ("To", "<sip:+15005550000@127.0.0.1>"),
            ("Call-ID", "call-1@127.0.0.1"),
            ("CSeq", str(CSeq(cseq, method))),
        ]
    )
    return Request(method, "sip:+15005550000@127.0.0.1", headers)


def answer(req: Request, status: int, reason: str = "X", *, tag: str | None = "theirs") -> Response:
    return response_to(req, status, reason, to_tag=tag if status > 100 else None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def invite_tx(clock: FakeClock, timers: Timers | None = None) -> tuple[InviteClientTransaction, Recorder]:
    rec = Recorder(clock)
    tx = InviteClientTransaction(
        request=request("INVITE"),
        send=rec.send,
        scheduler=clock,
        timers=timers or Timers(),
        on_response=rec.on_response,
        on_timeout=rec.on_timeout,
        on_terminated=rec.on_terminated,
    )
    return tx, rec


def non_invite_tx(clock: FakeClock, method: str = "BYE") -> tuple[NonInviteClientTransaction, Recorder]:
    rec = Recorder(clock)
    tx = NonInviteClientTransaction(
        request=request(method, cseq=2),
        send=rec.send,
        scheduler=clock,
        timers=Timers(),
        on_response=rec.on_response,
        on_timeout=rec.on_timeout,
        on_terminated=rec.on_terminated,
    )
    return tx, rec


# --- INVITE client transaction (§17.1.1) ---


def test_unanswered_invite_is_retransmitted_doubling_from_t1_until_timer_b(clock: FakeClock) -> None:
    tx, rec = invite_tx(clock)
    tx.start()
    clock.advance(seconds=31.9)
    assert rec.times() == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Timer A: T1, 2·T1, 4·T1, ... (§17.1.1.2)
    assert rec.timeouts == 0
    clock.advance(seconds=0.2)  # Timer B = 64·T1 = 32 s
    assert (rec.timeouts, rec.terminated, tx.state) == (1, 1, State.TERMINATED)
    clock.advance(seconds=100)
    assert len(rec.sent) == 7 and rec.timeouts == 1


def test_shrunken_timers_keep_the_same_schedule(clock: FakeClock) -> None:
    tx, rec = invite_tx(clock, Timers(t1=0.01))
    tx.start()
    clock.advance(seconds=0.7)
    assert rec.times() == [0.0, 0.01, 0.03, 0.07, 0.15, 0.31, 0.63]
    assert rec.timeouts == 1  # 64 × 10 ms


def test_provisional_response_stops_retransmissions_and_timer_b(clock: FakeClock) -> None:
    tx, rec = invite_tx(clock)
    tx.start()
    clock.advance(seconds=0.6)
    tx.receive(answer(tx.request, 100, "Trying"))
    tx.receive(answer(tx.request, 180, "Ringing"))
    clock.advance(seconds=120)
    assert rec.times() == [0.0, 0.5]
    assert rec.responses == [100, 180]
    assert (rec.timeouts, tx.state) == (0, State.PROCEEDING)


def test_failure_response_is_acked_by_the_transaction_and_its_retransmissions_absorbed(clock: FakeClock) -> None:
    tx, rec = invite_tx(clock)
    tx.start()
    busy = answer(tx.request, 486, "Busy Here")
    tx.receive(busy)
    assert rec.responses == [486] and tx.state is State.COMPLETED
    ack = parse(rec.sent[-1][1])
    assert isinstance(ack, Request) and ack.method == "ACK"
    # §17.1.1.3: same branch and Request-URI as the INVITE, the response's To (with its tag), CSeq number
    assert ack.vias[0].branch == tx.request.vias[0].branch and ack.uri == tx.request.uri
    assert ack.to_addr.tag == "theirs" and ack.cseq == CSeq(1, "ACK")

    clock.advance(seconds=1)
    tx.receive(busy)  # the far end did not get our ACK and sends the 486 again
    assert rec.methods() == ["INVITE", "ACK", "ACK"]
    assert rec.responses == [486]  # the TU heard it once
    clock.advance(seconds=31.5)  # Timer D: 32 s on UDP
    assert (tx.state, rec.terminated, rec.timeouts) == (State.TERMINATED, 1, 0)


def test_2xx_and_its_retransmissions_go_to_the_tu_which_acks_them(clock: FakeClock) -> None:
    tx, rec = invite_tx(clock)
    tx.start()
    ok = answer(tx.request, 200, "OK")
    tx.receive(ok)
    tx.receive(ok)  # RFC 6026 §7.2: Accepted passes retransmitted 2xx up, for a new ACK
    assert rec.responses == [200, 200]
    assert rec.methods() == ["INVITE"]  # the ACK of a 2xx is the TU's (§13.2.2.4)
    clock.advance(seconds=40)
    assert rec.times() == [0.0]
    assert (tx.state, rec.terminated) == (State.TERMINATED, 1)  # Timer M = 64·T1


def test_late_provisional_after_a_final_is_ignored(clock: FakeClock) -> None:
    tx, rec = invite_tx(clock)
    tx.start()
    tx.receive(answer(tx.request, 603, "Decline"))
    tx.receive(answer(tx.request, 180, "Ringing"))
    assert rec.responses == [603]


def test_a_transaction_starts_once(clock: FakeClock) -> None:
    tx, _ = invite_tx(clock)
    tx.start()
    with pytest.raises(TransactionError):
        tx.start()


def test_terminate_silences_a_transaction(clock: FakeClock) -> None:
    tx, rec = invite_tx(clock)
    tx.start()
    tx.terminate()
    clock.advance(seconds=60)
    assert (len(rec.sent), rec.timeouts, rec.terminated) == (1, 0, 1)


# --- non-INVITE client transaction (§17.1.2) ---


def test_non_invite_retransmits_doubling_up_to_t2_then_times_out_at_timer_f(clock: FakeClock) -> None:
    tx, rec = non_invite_tx(clock)
    tx.start()
    clock.advance(seconds=31.9)
    # Timer E: 0.5, 1, 2, 4, then every T2 = 4 s (§17.1.2.2)
    assert rec.times() == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert rec.timeouts == 0
    clock.advance(seconds=0.2)
    assert (rec.timeouts, tx.state) == (1, State.TERMINATED)


def test_non_invite_after_a_provisional_retransmits_every_t2(clock: FakeClock) -> None:
    tx, rec = non_invite_tx(clock)
    tx.start()
    clock.advance(seconds=0.2)
    tx.receive(answer(tx.request, 100, "Trying"))
    clock.advance(seconds=9)
    assert rec.times() == [0.0, 4.2, 8.2]
    tx.receive(answer(tx.request, 200, "OK"))
    assert rec.responses == [100, 200] and tx.state is State.COMPLETED


def test_non_invite_final_retransmissions_are_absorbed_during_timer_k(clock: FakeClock) -> None:
    tx, rec = non_invite_tx(clock, "CANCEL")
    tx.start()
    ok = answer(tx.request, 200, "OK")
    tx.receive(ok)
    tx.receive(ok)
    assert rec.responses == [200]
    clock.advance(seconds=4.9)
    assert tx.state is State.COMPLETED
    clock.advance(seconds=0.2)  # Timer K = T4 = 5 s
    assert (tx.state, rec.terminated, len(rec.sent)) == (State.TERMINATED, 1, 1)


# --- the transport on the loopback ---

FAST = Timers(t1=0.01, t2=0.08, t4=0.1, d=0.2)


class Peer(asyncio.DatagramProtocol):
    """The far end: whatever it receives, parsed, in a queue."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Request | Response] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.inbox.put_nowait(parse(data))

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to)

    async def next(self, within: float = 2.0) -> Request | Response:
        return await asyncio.wait_for(self.inbox.get(), within)

    async def nothing(self, seconds: float = 0.1) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.inbox.get(), seconds)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    yield protocol
    transport.close()


@pytest.fixture
async def sip() -> AsyncIterator[SipTransport]:
    transport = await SipTransport.open(bind_host="127.0.0.1", timers=FAST)
    yield transport
    transport.close()


def from_peer(peer: Peer, method: str, *, to_tag: str | None = None, branch: str | None = None) -> Request:
    host, port = peer.address
    headers = Headers(
        [
            ("Via", f"SIP/2.0/UDP {host}:{port};branch={branch or new_branch(RNG)}"),
            ("From", "<sip:trunk@127.0.0.1>;tag=far"),
            ("To", "<sip:us@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")),
            ("Call-ID", "peer-call@127.0.0.1"),
            ("CSeq", f"7 {method}"),
            ("Max-Forwards", "70"),
        ]
    )
    return Request(method, "sip:us@127.0.0.1", headers)


async def test_responses_reach_their_transaction_and_retransmissions_go_out(peer: Peer, sip: SipTransport) -> None:
    heard: list[int] = []
    invite = request("INVITE")
    invite.headers.set("Via", str(Via("UDP", "127.0.0.1", sip.port, {"branch": new_branch(RNG)})))
    tx = sip.invite(invite, peer.address, on_response=lambda _, r: heard.append(r.status), on_timeout=lambda _: None)
    first, second = await peer.next(), await peer.next()  # the INVITE and its retransmission after T1
    assert isinstance(first, Request) and first.method == "INVITE" and first == second
    peer.send(answer(invite, 180, "Ringing").encode(), sip.bound)
    peer.send(answer(invite, 486, "Busy Here").encode(), sip.bound)
    ack = await peer.next()
    while isinstance(ack, Request) and ack.method == "INVITE":  # retransmissions sent before the 180 landed
        ack = await peer.next()
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert heard == [180, 486] and tx.state is State.COMPLETED
    await asyncio.sleep(FAST.d + 0.05)
    assert sip.transactions == 0  # Timer D ended it and the transport forgot it


async def test_timeout_is_reported_when_nothing_answers(peer: Peer, sip: SipTransport) -> None:
    timed_out = asyncio.Event()
    invite = request("INVITE")
    invite.headers.set("Via", str(Via("UDP", "127.0.0.1", sip.port, {"branch": new_branch(RNG)})))
    sip.invite(invite, peer.address, on_response=lambda *_: None, on_timeout=lambda _: timed_out.set())
    await asyncio.wait_for(timed_out.wait(), 64 * FAST.t1 + 1)
    assert peer.inbox.qsize() == 7  # the INVITE and 6 retransmissions in 64·T1


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\xff\x10garbage",
        b"INVITE sip:x SIP/2.0\r\n\r\n",  # no Via, From, To, Call-ID, CSeq
        b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n",
        b"\x80\x00\x00\x01" + bytes(168),  # an RTP packet on the wrong port
        b"\r\n\r\n",  # a keep-alive
    ],
)
async def test_bad_datagrams_are_dropped_counted_and_the_transport_keeps_working(
    peer: Peer, sip: SipTransport, data: bytes
) -> None:
    peer.send(data, sip.bound)
    options = from_peer(peer, "OPTIONS")
    peer.send(options.encode(), sip.bound)
    reply = await peer.next()
    assert isinstance(reply, Response) and reply.status == 200
    assert sip.invalid_datagrams == 1 and sip.handler_errors == 0


async def test_options_outside_a_dialog_gets_200_with_allow(peer: Peer, sip: SipTransport) -> None:
    peer.send(from_peer(peer, "OPTIONS").encode(), sip.bound)
    reply = await peer.next()
    assert isinstance(reply, Response) and reply.status == 200
    assert "BYE" in (reply.headers.get("Allow") or "")
    assert reply.call_id == "peer-call@127.0.0.1" and reply.cseq == CSeq(7, "OPTIONS")


@pytest.mark.parametrize(
    ("method", "to_tag", "status"),
    [
        ("BYE", "gone", 481),  # an in-dialog request for a dialog we do not have (§12.2.2)
        ("INFO", "gone", 481),
        ("CANCEL", None, 481),  # no transaction of ours to cancel (§9.2)
        ("INVITE", None, 603),  # a call to us: we do not take calls
        ("MESSAGE", None, 405),
    ],
)
async def test_requests_matching_nothing_are_answered(
    peer: Peer, sip: SipTransport, method: str, to_tag: str | None, status: int
) -> None:
    peer.send(from_peer(peer, method, to_tag=to_tag).encode(), sip.bound)
    reply = await peer.next()
    assert isinstance(reply, Response) and reply.status == status
    assert reply.cseq.method == method


async def test_a_stray_ack_is_never_answered(peer: Peer, sip: SipTransport) -> None:
    peer.send(from_peer(peer, "ACK", to_tag="gone").encode(), sip.bound)
    await peer.nothing()


async def test_a_retransmitted_request_gets_the_same_answer_without_reaching_the_dialog(
    peer: Peer, sip: SipTransport
) -> None:
    seen: list[str] = []

    class Handler:
        def handle_request(self, request: Request, source: tuple[str, int]) -> None:
            seen.append(request.method)
            sip.respond(request, response_to(request, 200, "OK"), source)

    sip.add_dialog("peer-call@127.0.0.1", "ours", Handler())
    bye = from_peer(peer, "BYE", to_tag="ours").encode()
    peer.send(bye, sip.bound)
    peer.send(bye, sip.bound)  # our 200 was lost: the same BYE again
    first, second = await peer.next(), await peer.next()
    assert isinstance(first, Response) and first.status == 200 and first == second
    assert seen == ["BYE"]
    sip.remove_dialog("peer-call@127.0.0.1", "ours")
    peer.send(bye, sip.bound)  # still the remembered 200 during Timer J, not a 481
    third = await peer.next()
    assert isinstance(third, Response) and third.status == 200


async def test_requests_of_a_peer_without_rfc3261_branches_are_not_taken_for_retransmissions(
    peer: Peer, sip: SipTransport
) -> None:
    # RFC 2543 peers (and some SBCs) send a branch without the magic cookie, or the same `branch=0` in every
    # request: such a request is matched by Call-ID, From tag and CSeq as well (§17.2.3), or the BYE of one
    # call would get the 200 remembered for another's and never reach its dialog.
    seen: list[str] = []

    class Handler:
        def handle_request(self, request: Request, source: tuple[str, int]) -> None:
            seen.append(request.call_id)
            sip.respond(request, response_to(request, 200, "OK"), source)

    for call_id in ("call-a@peer", "call-b@peer"):
        sip.add_dialog(call_id, "ours", Handler())
    byes = []
    for call_id in ("call-a@peer", "call-b@peer"):
        bye = from_peer(peer, "BYE", to_tag="ours", branch="0")
        bye.headers.set("Call-ID", call_id)
        byes.append(bye.encode())
    for data in (byes[0], byes[1], byes[1]):  # the last one a retransmission
        peer.send(data, sip.bound)
    replies = [await peer.next() for _ in range(3)]
    assert [r.call_id for r in replies] == ["call-a@peer", "call-b@peer", "call-b@peer"]
    assert seen == ["call-a@peer", "call-b@peer"]


async def test_a_response_matching_no_transaction_is_counted_stray(peer: Peer, sip: SipTransport) -> None:
    peer.send(answer(request("INVITE"), 200, "OK").encode(), sip.bound)
    for _ in range(50):
        if sip.stray_responses:
            break
        await asyncio.sleep(0.01)
    assert sip.stray_responses == 1
    await peer.nothing()


async def test_closing_terminates_transactions_without_reporting(peer: Peer, sip: SipTransport) -> None:
    timeouts: list[object] = []
    invite = request("INVITE")
    invite.headers.set("Via", str(Via("UDP", "127.0.0.1", sip.port, {"branch": new_branch(RNG)})))
    tx = sip.invite(invite, peer.address, on_response=lambda *_: None, on_timeout=timeouts.append)
    sip.close()
    await asyncio.sleep(64 * FAST.t1 + 0.1)
    assert tx.terminated and timeouts == [] and sip.transactions == 0
    assert peer.inbox.qsize() == 1  # the INVITE, and no retransmission after the close
