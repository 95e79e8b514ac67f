"""SMPP 3.4 session: one bind over one TCP connection (`Session`), and `Reconnector`, which keeps one up.

The middle layer of the client (STYLE.md, after aiosmtpd): a state machine over a stream. It binds, numbers
and windows our requests and matches their responses, answers what the SMSC sends (enquire_link, unbind,
and deliver_sm/data_sm through the `Handler` hooks), keeps the link alive and notices when it is dead. It
knows nothing of messages or receipts: the connector maps domain messages to submit_sm and receipts back.

Longer than our usual ~400 lines because the session and its supervisor are one state machine seen from
two sides: the supervisor's decisions (when to reconnect, how long to wait) read the session's states and
errors and nothing else, and the error tree below is shared by both.

Streams, not a Protocol: the reader is one task looping over `StreamReader.read` into the codec's
`FrameReader`. Writes are not awaited: what we write is bounded by our window and by the SMSC's (the
responses we owe it), and what is written in one turn of the event loop goes out in one write.

Cost per message. At thousands of messages a second this layer is a large part of a gateway's CPU, so its
hot path is lean (measured with py-spy, docs/benchmarks.md): a request waits for room in a queue, not in a
task of its own (`queue_submit` gives the connector a future per submit; a response sends the next queued
request from the reader), one timer per session watches the oldest deadline instead of a timeout per
request, the SMSC's requests of one read go to a `BatchHandler` together, and after each read the socket is
told to acknowledge at once (`_QuickAck`: an SMSC writing with Nagle's algorithm on otherwise waits for our
delayed ACKs). Timing uses the event loop's clock, because `asyncio.timeout` and `asyncio.sleep` do: tests
use short real intervals; `Reconnector` sleeps on its `Clock` and takes a `random_fraction`, so its backoff is
tested without waiting.

States: NEW → CONNECTING → BOUND → UNBINDING → CLOSED, and any state → CLOSED when the connection ends.

Errors. One tree (a branch of `switchboard.errors`); every request ends with a response or one of these:

    SmppError
     ├── ConnectionLost     not connected (connect failed, not bound yet, closing) or the connection ended
     │                      (peer closed, dead link, unbind, bad stream); nothing outstanding is dropped
     │                      silently: a request that was sent may or may not have reached the SMSC
     ├── BindFailed         the SMSC refused our bind: .status, and .permanent for bad credentials
     ├── ResponseTimeout    no response within response_timeout; the session stays up
     ├── Nacked             the SMSC answered generic_nack (§4.3): it could not read our PDU; .status
     └── MalformedResponse  a response we could not decode: .status from its header, .error the PduError

A response with an error status (submit_sm_resp with ESME_RTHROTTLED) is returned, not raised: the
connector decides with `pdu.is_transient(status)`. `PduError` (the codec's) is raised by
`request` before anything is sent when the PDU cannot be encoded; its .status says why, as the SMSC would.

What the connector does: take a bound session (`Reconnector.session`), `queue_submit()` on it, treat
ConnectionLost and ResponseTimeout as "not known to be accepted, retry" (at-least-once: a retried submit may
be a duplicate), Nacked/MalformedResponse/error statuses by `is_transient`; and match receipts that arrive
through `BatchHandler.handle_batch`, possibly before the submit_sm_resp of the message they are about.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Protocol, cast, runtime_checkable

from switchboard.domain.clock import Clock
from switchboard.errors import (
    BindFailed,
    ConnectionLost,
    MalformedResponse,
    Nacked,
    PduError,
    ResponseTimeout,
    SmppError,
)
from switchboard.sms.smpp.pdu import (
    RESPONSE_BIT,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CommandId,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    FrameReader,
    GenericNack,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    decode,
    encode,
    status_name,
)

__all__ = [
    "BatchHandler",
    "BindMode",
    "Handler",
    "Reconnector",
    "Session",
    "State",
]

log = logging.getLogger("switchboard.sms.smpp")

MIN_SEQUENCE = 0x00000001
MAX_SEQUENCE = 0x7FFFFFFF
"""sequence_number runs 0x00000001..0x7FFFFFFF and then wraps (§3.2, §5.1.4)."""
DEFAULT_WINDOW = 10
"""Our requests outstanding at once. The spec sets no number; SMSCs commonly allow 10 per bind and refuse
(ESME_RTHROTTLED) or stall beyond what the account says."""
DEFAULT_RESPONSE_TIMEOUT = 10.0
"""The response_timer (§7.2): how long a request waits for its response."""
DEFAULT_ENQUIRE_LINK_INTERVAL = 30.0
"""The enquire_link_timer (§7.2, §4.11): after this long without receiving anything, ask whether the SMSC
is there. With the response timeout, a dead link is noticed within interval + timeout."""
MAX_INBOUND_PENDING = 1000
"""deliver_sm/data_sm being handled at once; beyond it the SMSC is told ESME_RX_T_APPN (try again later)
rather than letting a flooding SMSC grow our task set without bound."""
READ_SIZE = 65536
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
"""Reconnect delays double from 1 s up to a minute (before jitter); a refused password waits the minute."""
BACKOFF_JITTER = 0.2
"""Each delay is drawn from ±20 % of its step, so gateways that lost one SMSC together do not return together."""
STABLE_BIND = 60.0
MAX_UNANSWERED_IN_A_ROW = 3
"""Requests in a row left without a response before the link is taken for dead, whatever else arrives."""
"""A bind that lasted this long counts as recovered: the next loss starts the backoff again from the base."""
PERMANENT_BIND_STATUSES = frozenset(
    {CommandStatus.ESME_RINVPASWD, CommandStatus.ESME_RINVSYSID, CommandStatus.ESME_RINVSYSTYP}
)
"""Bind refusals that name our configuration (§5.1.3): waiting will not fix them, an operator will."""


def _bind_failed(message: str, status: int) -> BindFailed:
    """BindFailed with the status's name in its message, permanent for a refusal of our configuration."""
    return BindFailed(f"{message}: {status_name(status)}", status=status, permanent=status in PERMANENT_BIND_STATUSES)


class BindMode(enum.Enum):
    """How we bind (§4.1): to send only, to receive only, or both on one connection."""

    TRANSMITTER = BindTransmitter
    RECEIVER = BindReceiver
    TRANSCEIVER = BindTransceiver


class State(enum.Enum):
    NEW = "new"
    """Made, not connected yet."""
    CONNECTING = "connecting"
    """TCP open and bind sent, bind_resp awaited."""
    BOUND = "bound"
    """bind_resp ESME_ROK: requests may be sent."""
    UNBINDING = "unbinding"
    """close() called: new requests are refused, outstanding ones finish, then unbind."""
    CLOSED = "closed"
    """The connection has ended (or never opened); final."""


class Handler(Protocol):
    """What the session calls for the SMSC's requests (aiosmtpd's handle_<VERB>). Each call runs in its own
    task, so a slow one never holds up responses to our requests; it returns the command_status to answer
    with (ESME_ROK, or e.g. ESME_RX_T_APPN to have the SMSC deliver again later). One that raises or takes
    longer than the response timeout is answered with ESME_RX_T_APPN."""

    async def handle_deliver_sm(self, pdu: DeliverSm) -> int: ...
    async def handle_data_sm(self, pdu: DataSm) -> int: ...


@runtime_checkable
class BatchHandler(Handler, Protocol):
    """A Handler that also takes the SMSC's requests several at a time: those that arrived in one read of the
    socket go to one `handle_batch` call in one task, and are answered together when it returns (one status
    each, in order). At thousands of receipts a second, one task, one timeout and one write per read rather
    than per PDU is most of their cost. A batch that raises, takes longer than the response timeout or
    answers the wrong number of statuses is answered ESME_RX_T_APPN throughout."""

    async def handle_batch(self, pdus: list[DeliverSm | DataSm]) -> list[int]: ...


_Request = SubmitSm | DataSm | EnquireLink | Unbind | BindTransmitter | BindReceiver | BindTransceiver


class _Waiter:
    """One of our requests, from the moment it is numbered until its response (or its end)."""

    __slots__ = ("counted", "deadline", "frame", "future", "response_id", "sequence")

    def __init__(self, future: asyncio.Future[Pdu], response_id: int, sequence: int, frame: bytes, counted: bool):
        self.future = future
        self.response_id = response_id
        self.sequence = sequence
        self.frame = frame
        """Encoded, until it is sent."""
        self.counted = counted
        """Takes a place in the window (submit_sm, data_sm); bind, unbind and enquire_link do not."""
        self.deadline = 0.0
        """When its response is due (the event loop's clock); 0 until it is sent."""


class Session:
    """One bind over one TCP connection. `connect()` once, `request()`/`submit()` while bound, `close()` to
    unbind. After the connection ends the session stays CLOSED; `Reconnector` makes a new one.

    Requests are numbered and encoded when made, and wait in a queue for room in the window; a response
    sends the next one at once, from the reader, and one timer per session watches the oldest deadline
    (every request has the same response timeout, so deadlines fall due in sending order). What we write in
    one turn of the event loop goes out in one write: submits, and answers to the receipts of one read."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        system_id: str,
        password: str,
        handler: Handler,
        system_type: str = "",
        mode: BindMode = BindMode.TRANSCEIVER,
        window: int = DEFAULT_WINDOW,
        response_timeout: float = DEFAULT_RESPONSE_TIMEOUT,
        enquire_link_interval: float = DEFAULT_ENQUIRE_LINK_INTERVAL,
        first_sequence: int = MIN_SEQUENCE,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        if not MIN_SEQUENCE <= first_sequence <= MAX_SEQUENCE:
            raise ValueError(f"first_sequence must be within {MIN_SEQUENCE}..{MAX_SEQUENCE}")
        self.peer = f"{host}:{port}"
        self._host, self._port = host, port
        self._bind = mode.value(sequence=0, system_id=system_id, password=password, system_type=system_type)
        self._handler = handler
        self._batch_handler = handler.handle_batch if isinstance(handler, BatchHandler) else None
        self._response_timeout = response_timeout
        self._interval = enquire_link_interval
        self._window = window
        self._in_window = 0
        """Counted requests sent and not yet answered."""
        self._queue: deque[_Waiter] = deque()
        """Counted requests waiting for room in the window, in order."""
        self._waiters: dict[int, _Waiter] = {}
        """Every request not yet answered, queued or sent, by sequence number."""
        self._deadlines: deque[_Waiter] = deque()
        """Sent requests in sending order (answered ones are dropped from the front as they come)."""
        self._timer: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []
        """Frames to write at the end of this turn of the event loop."""
        self._sequence = first_sequence
        self._state = State.NEW
        self._serving: set[asyncio.Task[None]] = set()
        self._inbound = 0
        """The SMSC's requests being handled now."""
        self._closed = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._last_received = 0.0
        self._unanswered_in_a_row = 0

    @property
    def state(self) -> State:
        return self._state

    @property
    def bound(self) -> bool:
        return self._state is State.BOUND

    @property
    def load(self) -> int:
        """Our requests sent and not yet answered, and those waiting for room in the window."""
        return self._in_window + len(self._queue)

    async def wait_closed(self) -> None:
        """Return once the connection has ended, for whatever reason."""
        await self._closed.wait()

    async def connect(self) -> None:
        """Open the connection and bind. Raises ConnectionLost (cannot connect, or lost while binding),
        ResponseTimeout (no bind_resp), or BindFailed; the connection is closed on any of them."""
        if self._state is not State.NEW:
            raise RuntimeError("a Session connects once; make a new one")
        self._state = State.CONNECTING
        try:
            encode(self._bind)  # a system_id or password the wire cannot carry is refused before we dial
        except PduError as error:
            self._abort("bind cannot be encoded")
            raise _bind_failed(f"cannot bind to {self.peer}: {error}", error.status) from error
        try:
            async with asyncio.timeout(self._response_timeout):
                reader, self._writer = await asyncio.open_connection(self._host, self._port)
        except (OSError, TimeoutError) as error:
            self._abort("connect failed")
            raise ConnectionLost(f"cannot connect to {self.peer}: {error!r}") from error
        self._last_received = asyncio.get_running_loop().time()
        self._reading = asyncio.create_task(self._read_loop(reader), name=f"smpp-read-{self.peer}")
        try:
            response = await self._exchange(self._bind)
        except Nacked as error:
            await self._end("bind nacked")
            raise _bind_failed(f"{self.peer} nacked our bind", error.status) from error
        except BaseException:
            await self._end("bind not completed")
            raise
        assert isinstance(response, BindTransmitterResp | BindReceiverResp | BindTransceiverResp)  # _on_response
        if response.status != CommandStatus.ESME_ROK:
            await self._end("bind refused")
            raise _bind_failed(f"{self.peer} refused our bind", response.status)
        if self._state is not State.CONNECTING:  # the SMSC unbound or closed right after its bind_resp
            await self._end("lost after bind")
            raise ConnectionLost(f"{self.peer} closed the connection just after binding")
        self._state = State.BOUND
        self._keepalive = asyncio.create_task(self._keepalive_loop(), name=f"smpp-keepalive-{self.peer}")
        log.info("smpp %s: bound as %s", self.peer, type(self._bind).__name__)

    async def submit(self, pdu: SubmitSm) -> SubmitSmResp:
        """`request` for a submit_sm; its sequence is ours to set (pass 0)."""
        return cast(SubmitSmResp, await self.request(pdu))  # _on_response checks the command_id

    def queue_submit(self, pdu: SubmitSm) -> asyncio.Future[SubmitSmResp]:
        """`submit` without waiting: the future of its response, which ends as `request` does. For a batch of
        submits, no task per message. Raises at once what `request` raises before sending (ConnectionLost
        when not bound, PduError when it cannot be encoded). A cancelled future gives up its place in the
        window when its response or its deadline comes."""
        if self._state is not State.BOUND:
            raise ConnectionLost(f"{self.peer} is not bound ({self._state.value})")
        return cast("asyncio.Future[SubmitSmResp]", self._enqueue(pdu, counted=True).future)

    async def request(self, pdu: SubmitSm | DataSm | EnquireLink) -> Pdu:
        """Send `pdu` with the next sequence number once the window has room, and return the response of the
        matching type, whatever its status. Raises ConnectionLost, ResponseTimeout, Nacked, MalformedResponse,
        or PduError (nothing sent) when the PDU cannot be encoded. Waiting for room is not timed: bound it
        with `asyncio.timeout` if needed; a request cancelled while it waits for its response is dropped from
        the window and its late response is logged and ignored."""
        if self._state is not State.BOUND:
            raise ConnectionLost(f"{self.peer} is not bound ({self._state.value})")
        return await self._wait(self._enqueue(pdu, counted=True))

    async def close(self) -> None:
        """Unbind and close. Requests already sent may finish first (for one response timeout at most), and
        deliver_sm being handled get their answer, so nothing accepted is left unconfirmed when the SMSC
        answers in time; requests still waiting for room fail with ConnectionLost, never sent. Then unbind
        (§4.2), wait for unbind_resp (one response timeout at most), and close. Safe to call in any state and
        more than once; after a lost connection it only tidies up."""
        if self._state is State.BOUND:
            self._state = State.UNBINDING
            queued, self._queue = self._queue, deque()
            for waiter in queued:
                self._forget(waiter)
                if not waiter.future.done():
                    waiter.future.set_exception(ConnectionLost(f"{self.peer} is not bound (unbinding)"))
            pending: list[asyncio.Future[Pdu] | asyncio.Task[None]] = [w.future for w in self._waiters.values()]
            pending += self._serving
            if pending:
                await asyncio.wait(pending, timeout=self._response_timeout)
            if self._state is State.UNBINDING:
                with contextlib.suppress(SmppError):
                    await self._exchange(Unbind(sequence=0))
        await self._end("closed by us")

    # --- sending ------------------------------------------------------------------------------------------

    def _next_sequence(self) -> int:
        while True:
            sequence = self._sequence
            self._sequence = sequence + 1 if sequence < MAX_SEQUENCE else MIN_SEQUENCE
            if sequence not in self._waiters:  # only after 2**31 requests with one still waiting
                return sequence

    def _enqueue(self, pdu: _Request, *, counted: bool) -> _Waiter:
        """Number and encode a request (PduError: nothing is sent), then send it, or queue it until the window
        has room. Requests that do not count against the window (bind, unbind, enquire_link) go at once."""
        if self._writer is None or self._state is State.CLOSED:
            raise ConnectionLost(f"{self.peer}: connection closed")
        sequence = self._next_sequence()
        frame = encode(pdu, sequence=sequence)
        future: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(future, pdu.command_id | RESPONSE_BIT, sequence, frame, counted)
        self._waiters[sequence] = waiter
        if not counted:
            self._transmit(waiter)
        elif self._in_window < self._window and not self._queue:
            self._in_window += 1
            self._transmit(waiter)
        else:
            self._queue.append(waiter)
        return waiter

    def _transmit(self, waiter: _Waiter) -> None:
        loop = asyncio.get_running_loop()
        self._write(waiter.frame)
        waiter.frame = b""
        waiter.deadline = loop.time() + self._response_timeout
        self._deadlines.append(waiter)
        if self._timer is None:
            self._timer = loop.call_at(waiter.deadline, self._on_deadline)

    async def _exchange(self, pdu: _Request) -> Pdu:
        """Send a request that bypasses the window (bind, unbind and enquire_link) and await its response for
        one response timeout."""
        return await self._wait(self._enqueue(pdu, counted=False))

    async def _wait(self, waiter: _Waiter) -> Pdu:
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self._forget(waiter)
            raise

    def _forget(self, waiter: _Waiter) -> None:
        """`waiter` is over (answered, timed out, failed or given up): its sequence and its place in the window
        are free; the next queued request goes if there is room now."""
        if self._waiters.get(waiter.sequence) is not waiter:
            return
        del self._waiters[waiter.sequence]
        deadlines = self._deadlines
        while deadlines and self._waiters.get(deadlines[0].sequence) is not deadlines[0]:
            deadlines.popleft()
        if waiter.counted and waiter.deadline:
            self._in_window -= 1
            queue = self._queue
            while queue and self._in_window < self._window:
                following = queue.popleft()
                if following.future.done():  # given up while it waited
                    if self._waiters.get(following.sequence) is following:
                        del self._waiters[following.sequence]
                    continue
                self._in_window += 1
                self._transmit(following)

    def _on_deadline(self) -> None:
        """The timer: fail every request whose response is overdue (ResponseTimeout), then wait for the next."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadlines = self._deadlines
        while deadlines and self._state is not State.CLOSED:
            waiter = deadlines[0]
            if self._waiters.get(waiter.sequence) is not waiter:
                deadlines.popleft()
                continue
            if waiter.deadline > now:
                self._timer = loop.call_at(waiter.deadline, self._on_deadline)
                return
            self._forget(waiter)
            if waiter.future.done():  # given up by its caller: no one to tell
                continue
            self._unanswered_in_a_row += 1
            name = CommandId(waiter.response_id & ~RESPONSE_BIT).name
            waiter.future.set_exception(
                ResponseTimeout(f"{self.peer}: no response to {name} #{waiter.sequence} in {self._response_timeout} s")
            )
            if self._unanswered_in_a_row >= MAX_UNANSWERED_IN_A_ROW:
                # The keepalive only speaks when nothing arrives; a peer that keeps sending (receipts) but
                # no longer answers us, or no longer reads what we write, would otherwise stay "up" for ever
                # and the router would never fail over.
                self._abort(f"{MAX_UNANSWERED_IN_A_ROW} requests in a row went unanswered")

    def _write(self, frame: bytes) -> None:
        """Queue a frame for the write at the end of this turn of the event loop. No waiting for the socket:
        waiting in the reader could deadlock with an SMSC that blocks on writing to us, and what we write is
        bounded by our window and by what the SMSC sends (its own window)."""
        if self._state is State.CLOSED or self._writer is None:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(frame)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if not out or self._writer is None or self._writer.is_closing():
            return
        try:
            self._writer.write(out[0] if len(out) == 1 else b"".join(out))
        except (ConnectionError, OSError, RuntimeError) as error:  # RuntimeError: uvloop's closed transport
            self._abort(f"write failed: {error!r}")

    def _send(self, pdu: Pdu) -> None:
        """Write a response (or a generic_nack)."""
        self._write(encode(pdu))

    # --- receiving ----------------------------------------------------------------------------------------

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        frames = FrameReader()
        loop = asyncio.get_running_loop()
        quick_ack = _QuickAck(self._writer)
        reason = "the SMSC closed the connection"
        try:
            while data := await reader.read(READ_SIZE):
                quick_ack.now()
                self._last_received = loop.time()
                frames.feed(data)
                requests: list[DeliverSm | DataSm] = []
                while True:
                    try:
                        frame = frames.next_frame()
                    except PduError as error:
                        # A command_length we cannot trust: nothing says where the next frame starts (§4.3).
                        log.warning("smpp %s: bad frame header, closing: %s", self.peer, error)
                        self._serve(requests)
                        self._send(GenericNack(sequence=error.sequence or 0, status=error.status))
                        reason = f"unframeable stream: {error}"
                        return
                    if frame is None:
                        break
                    request = self._on_frame(frame)
                    if request is not None:
                        requests.append(request)
                if requests:
                    self._serve(requests)
            if frames.buffered:
                log.warning("smpp %s: connection ended inside a frame (%d octets)", self.peer, frames.buffered)
        except (ConnectionError, OSError) as error:
            reason = f"connection failed: {error!r}"
        except Exception:  # task boundary: log, and end the session rather than hang it
            log.exception("smpp %s: reader failed", self.peer)
            reason = "reader failed"
        finally:
            quick_ack.release()
            self._abort(reason)

    def _on_frame(self, frame: bytes) -> DeliverSm | DataSm | None:
        """Act on one frame; a deliver_sm or data_sm is returned, to be served with the others of its read."""
        try:
            pdu = decode(frame)
        except PduError as error:
            self._on_bad_frame(frame, error)
            return None
        if pdu.command_id & RESPONSE_BIT:
            self._on_response(pdu)
        elif isinstance(pdu, DeliverSm | DataSm):
            return pdu
        elif isinstance(pdu, EnquireLink):
            self._send(EnquireLinkResp(sequence=pdu.sequence))
        elif isinstance(pdu, Unbind):  # §4.2: answer, then the connection ends
            log.info("smpp %s: SMSC unbound", self.peer)
            self._send(UnbindResp(sequence=pdu.sequence))
            self._abort("the SMSC unbound")
        elif pdu.command_id == CommandId.ALERT_NOTIFICATION:  # no response is sent (§4.12)
            log.debug("smpp %s: alert_notification ignored", self.peer)
        else:  # bind, submit_sm, outbind: not for an ESME to serve
            log.warning("smpp %s: %s from the SMSC refused", self.peer, pdu.command_id.name)
            self._send(GenericNack(sequence=pdu.sequence, status=CommandStatus.ESME_RINVCMDID))
        return None

    def _on_bad_frame(self, frame: bytes, error: PduError) -> None:
        """A complete frame that does not decode: the stream is still in step, so answer and go on."""
        log.warning("smpp %s: malformed PDU: %s", self.peer, error)
        sequence = error.sequence or 0
        if error.command_id is not None and error.command_id & RESPONSE_BIT:
            # Never answer a response; fail its request instead (it may have been accepted: the caller decides).
            waiter = self._waiters.get(sequence)
            if waiter is not None and waiter.deadline:
                self._forget(waiter)
                if not waiter.future.done():
                    header_status = int.from_bytes(frame[8:12], "big")
                    message = f"{self.peer}: malformed response: {status_name(header_status)}"
                    waiter.future.set_exception(MalformedResponse(message, status=header_status, error=error))
            return
        header_fault = error.status in (CommandStatus.ESME_RINVCMDLEN, CommandStatus.ESME_RINVCMDID)
        if error.command_id == CommandId.DELIVER_SM and not header_fault:
            self._send(DeliverSmResp(sequence=sequence, status=error.status))  # the PduError contract
        elif error.command_id == CommandId.DATA_SM and not header_fault:
            self._send(DataSmResp(sequence=sequence, status=error.status))
        else:
            self._send(GenericNack(sequence=sequence, status=error.status))

    def _on_response(self, pdu: Pdu) -> None:
        waiter = self._waiters.get(pdu.sequence)
        if waiter is None or not waiter.deadline or waiter.future.done():
            if waiter is not None and waiter.deadline:  # its caller gave up: the window has room again
                self._forget(waiter)
            name, sequence = pdu.command_id.name, pdu.sequence
            log.warning("smpp %s: %s #%d matches no request (late?); dropped", self.peer, name, sequence)
        elif isinstance(pdu, GenericNack):
            self._forget(waiter)
            waiter.future.set_exception(
                Nacked(f"{self.peer} nacked #{pdu.sequence}: {status_name(pdu.status)}", status=pdu.status)
            )
        elif pdu.command_id != waiter.response_id:
            name, sequence = pdu.command_id.name, pdu.sequence
            log.warning("smpp %s: %s #%d answers a request of another type; dropped", self.peer, name, sequence)
        else:
            self._forget(waiter)
            self._unanswered_in_a_row = 0
            waiter.future.set_result(pdu)

    def _serve(self, pdus: list[DeliverSm | DataSm]) -> None:
        """Hand the SMSC's requests of one read to the handler, in a task of their own (one per PDU for a
        plain Handler); beyond MAX_INBOUND_PENDING being handled they are answered ESME_RX_T_APPN."""
        room = max(0, MAX_INBOUND_PENDING - self._inbound)
        for pdu in pdus[room:]:
            self._answer(pdu, CommandStatus.ESME_RX_T_APPN)
        pdus = pdus[:room]
        if not pdus:
            return
        if self._batch_handler is not None:
            self._start_serving(self._handle_batch(self._batch_handler, pdus), len(pdus), "batch")
        else:
            for pdu in pdus:
                self._start_serving(self._handle(pdu), 1, f"{pdu.command_id.name.lower()}-{pdu.sequence}")

    def _start_serving(self, handling: Coroutine[object, object, None], count: int, what: str) -> None:
        task = asyncio.create_task(handling, name=f"smpp-{what}")
        self._inbound += count
        self._serving.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._serving.discard(task)
            self._inbound -= count

        task.add_done_callback(done)

    async def _handle(self, pdu: DeliverSm | DataSm) -> None:
        status: int = CommandStatus.ESME_RX_T_APPN
        try:
            async with asyncio.timeout(self._response_timeout):
                if isinstance(pdu, DeliverSm):
                    status = await self._handler.handle_deliver_sm(pdu)
                else:
                    status = await self._handler.handle_data_sm(pdu)
        except TimeoutError:
            log.warning("smpp %s: handler took over %s s for #%d", self.peer, self._response_timeout, pdu.sequence)
        except Exception:  # task boundary: the SMSC is told to try again later
            log.exception("smpp %s: handler failed for #%d", self.peer, pdu.sequence)
        self._answer(pdu, status)

    async def _handle_batch(
        self, handle: Callable[[list[DeliverSm | DataSm]], Awaitable[list[int]]], pdus: list[DeliverSm | DataSm]
    ) -> None:
        statuses: list[int] = []
        try:
            async with asyncio.timeout(self._response_timeout):
                statuses = await handle(pdus)
            if len(statuses) != len(pdus):
                log.error("smpp %s: handler gave %d statuses for %d PDUs", self.peer, len(statuses), len(pdus))
                statuses = []
        except TimeoutError:
            log.warning("smpp %s: handler took over %s s for %d PDUs", self.peer, self._response_timeout, len(pdus))
        except Exception:  # task boundary: the SMSC is told to try again later
            log.exception("smpp %s: handler failed for %d PDUs", self.peer, len(pdus))
        for pdu, status in zip(pdus, statuses or [CommandStatus.ESME_RX_T_APPN] * len(pdus), strict=True):
            self._answer(pdu, status)

    def _answer(self, pdu: DeliverSm | DataSm, status: int) -> None:
        response = DeliverSmResp if isinstance(pdu, DeliverSm) else DataSmResp
        try:
            self._send(response(sequence=pdu.sequence, status=status))
        except PduError:
            log.error("smpp %s: handler returned %r, not a command_status", self.peer, status)
            self._send(response(sequence=pdu.sequence, status=CommandStatus.ESME_RX_T_APPN))

    # --- keepalive and ending -----------------------------------------------------------------------------

    async def _keepalive_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._state in (State.BOUND, State.UNBINDING):
            idle = loop.time() - self._last_received
            if idle < self._interval:
                await asyncio.sleep(self._interval - idle)
                continue
            sent_at = loop.time()
            try:
                await self._exchange(EnquireLink(sequence=0))
            except ResponseTimeout:
                if self._last_received < sent_at:  # nothing at all came back: the link is dead
                    log.warning("smpp %s: no answer to enquire_link; link dead", self.peer)
                    self._abort(f"link dead: no enquire_link_resp in {self._response_timeout} s")
                    return
            except (Nacked, MalformedResponse):
                continue  # an answer all the same: the link is alive
            except ConnectionLost:
                return

    def _abort(self, reason: str) -> None:
        """The connection is over: fail every outstanding request with ConnectionLost and close the socket
        (after writing what was queued for it: an unbind_resp, a generic_nack)."""
        if self._state is State.CLOSED:
            return
        if self._state is not State.NEW:
            log.info("smpp %s: connection ended: %s", self.peer, reason)
        self._flush()
        self._state = State.CLOSED
        waiters, self._waiters = self._waiters, {}
        self._queue.clear()
        self._deadlines.clear()
        self._in_window = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiter in waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(ConnectionLost(f"{self.peer}: {reason}"))
        if self._writer is not None:
            self._writer.close()
        if self._keepalive is not None and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()
        self._closed.set()

    async def _end(self, reason: str) -> None:
        """_abort, then wait for our tasks (handlers get one response timeout) and the socket to close."""
        self._abort(reason)
        if self._serving:
            _, late = await asyncio.wait(self._serving, timeout=self._response_timeout)
            for task in late:
                task.cancel()
        tasks = [t for t in (self._reading, self._keepalive, *self._serving) if t is not None]
        await asyncio.gather(*(t for t in tasks if t is not asyncio.current_task()), return_exceptions=True)
        if self._writer is not None:
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()


class _QuickAck:
    """Has what we read acknowledged at once (Linux TCP_QUICKACK), after every read.

    An SMSC that writes with Nagle's algorithm on (the npm `smpp` package does; so do many SMSC stacks) holds
    each small PDU back until its previous one is acknowledged (RFC 896), while Linux, seeing requests and
    responses go back and forth, delays its ACKs by 40 ms and more (RFC 1122 §4.2.3.2) in the hope of sending
    them with data. When we have nothing to send back at once (a receipt is answered only once it is stored,
    our window waits for the next batch), each waits for the other: 1 % of our submit_sm_resp came 46 ms
    late (13 ms with this), and with 10 requests in flight per bind that capped 2 binds near 4,000 submits/s
    (docs/benchmarks.md). The option lasts until the kernel's next decision, so it is set after every read.

    A socket object of our own over the connection's descriptor (not closed: the transport owns it, `release`
    detaches it) makes that one setsockopt call, ≈ 1 µs; the transport's own socket view builds a new socket
    object for each call."""

    def __init__(self, writer: asyncio.StreamWriter | None) -> None:
        self._socket: socket.socket | None = None
        self._option: int = getattr(socket, "TCP_QUICKACK", 0)  # Linux only
        view = None if writer is None else writer.get_extra_info("socket")
        if view is not None and self._option and view.type == socket.SOCK_STREAM:
            with contextlib.suppress(OSError):  # then without quick ACKs: they only save waiting
                self._socket = socket.socket(view.family, view.type, view.proto, view.fileno())

    def now(self) -> None:
        if self._socket is not None:
            try:
                self._socket.setsockopt(socket.IPPROTO_TCP, self._option, 1)
            except OSError:  # the connection is going: the read loop finds out
                pass

    def release(self) -> None:
        if self._socket is not None:
            self._socket.detach()
            self._socket = None


class Reconnector:
    """Keeps one bound Session: connects, and after a failure or a loss connects again after a capped,
    jittered exponential backoff (BACKOFF_BASE doubling to BACKOFF_CAP, ±BACKOFF_JITTER). The count of
    failures starts over after a bind that lasted STABLE_BIND. A bind refused for its credentials is
    retried too (the operator may fix them at the SMSC), at the cap, and logged as an error each time."""

    def __init__(
        self,
        *,
        session_factory: Callable[[], Session],
        clock: Clock,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        jitter: float = BACKOFF_JITTER,
        stable_after: float = STABLE_BIND,
        random_fraction: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """`sleep` waits out the backoff: the clock's unless given (tests may record the delays)."""
        self._factory = session_factory
        self._clock = clock
        self._base, self._cap, self._jitter, self._stable_after = backoff_base, backoff_cap, jitter, stable_after
        self._random = random_fraction
        self._sleep = sleep or clock.sleep
        self._current: Session | None = None
        self._changed = asyncio.Event()
        self._running: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def session(self) -> Session | None:
        """The bound session, or None while (re)connecting."""
        current = self._current
        return current if current is not None and current.bound else None

    @property
    def up(self) -> bool:
        return self.session is not None

    def backoff(self, failures: int) -> float:
        """The delay after `failures` consecutive failures (0 for the first)."""
        step = min(self._cap, self._base * 2.0 ** min(failures, 62))
        return step * (1 + self._jitter * (2 * self._random() - 1))

    async def start(self) -> None:
        self._running = asyncio.create_task(self._run(), name="smpp-reconnector")

    async def wait_bound(self) -> Session:
        """The bound session, once there is one (bound it with asyncio.timeout). ConnectionLost once stopped."""
        while True:
            if self._stopping:
                raise ConnectionLost("the SMPP link is stopped")
            session = self.session
            if session is not None:
                return session
            await self._changed.wait()

    async def stop(self) -> None:
        """Stop reconnecting and close the session (unbinding it if bound)."""
        self._stopping = True
        self._notify()
        if self._running is not None:
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)
        if self._current is not None:
            await self._current.close()
            self._current = None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _run(self) -> None:
        failures = 0
        while True:
            session = self._current = self._factory()
            try:
                await session.connect()
            except BindFailed as error:
                if error.permanent:
                    delay = self.backoff(62)
                    log.error("smpp %s: %s; check the credentials; retrying in %.1f s", session.peer, error, delay)
                else:
                    delay = self.backoff(failures)
                    log.warning("smpp %s: %s; retrying in %.1f s", session.peer, error, delay)
            except SmppError as error:
                delay = self.backoff(failures)
                log.warning("smpp %s: %s; retrying in %.1f s", session.peer, error, delay)
            except Exception:  # task boundary: a bug must not end reconnecting for good
                delay = self.backoff(failures)
                log.exception("smpp %s: connect failed; retrying in %.1f s", session.peer, delay)
            else:
                bound_at = self._clock.monotonic()
                self._notify()
                await session.wait_closed()
                self._notify()
                await session.close()
                if self._clock.monotonic() - bound_at >= self._stable_after:
                    failures = 0
                delay = self.backoff(failures)
                log.warning("smpp %s: bind lost; reconnecting in %.1f s", session.peer, delay)
            failures += 1
            await self._sleep(delay)
