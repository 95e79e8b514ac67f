"""SIP client transactions over UDP (RFC 3261 §17.1): the INVITE client transaction (§17.1.1, with the
Accepted state of RFC 6026 §7.2) and the non-INVITE one (§17.1.2), which we use for CANCEL and BYE.

A transaction is a plain state machine: no coroutine, no socket. It is given `send` (put these bytes on
the wire to the transaction's destination) and a `Scheduler` for its timers (`loop.call_later` in service,
a fake clock that jumps in tests), and it tells its transaction user (the dialog) what happened through
two hooks: `on_response` for every response the TU must see, `on_timeout` when Timer B or F fires. The
transport feeds it the responses whose `transaction_key` matches (§17.1.3) through `receive`, and drops it
from its table once `on_terminated` is called.

What the TU sees:
- INVITE: every provisional response; the first non-2xx final response (the transaction ACKs it itself,
  §17.1.1.3, and absorbs its retransmissions during Timer D); every 2xx, the first and its retransmissions
  during Timer M (RFC 6026 §7.2), because the ACK of a 2xx is the TU's to send, each time (§13.2.2.4);
  `on_timeout` when Timer B fires with no response at all.
- non-INVITE: every provisional response and the first final one (retransmissions are absorbed during
  Timer K); `on_timeout` when Timer F fires with no final response.

Timers use the values of §17.1.1.1 and Table 4 of RFC 3261 by default; `Timers` holds them so that tests
(and a trunk on a fast LAN) can shrink them.

Errors. Nothing here raises for what the network does: a timeout is reported through `on_timeout`, and a
response in a state that does not expect it is ignored. `TransactionError` is raised only
for misuse: starting a transaction twice.
"""

from __future__ import annotations

import abc
import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from switchboard.errors import TransactionError
from switchboard.voice.sip.message import Request, Response, TransactionKey, ack_for_failure, transaction_key

__all__ = [
    "T1",
    "T2",
    "T4",
    "TIMER_D",
    "ClientTransaction",
    "InviteClientTransaction",
    "LoopScheduler",
    "NonInviteClientTransaction",
    "Scheduler",
    "State",
    "TimerHandle",
    "Timers",
]

T1 = 0.5
"""RFC 3261 §17.1.1.1 and Table 4: the round-trip time estimate, 500 ms by default."""
T2 = 4.0
"""RFC 3261 §17.1.2.2 and Table 4: the longest interval between retransmissions of a non-INVITE request."""
T4 = 5.0
"""RFC 3261 Table 4: the longest time a message stays in the network; Timer K waits that long on UDP."""
TIMER_D = 32.0
"""RFC 3261 §17.1.1.2: Timer D is at least 32 s on an unreliable transport (it outlives the far end's
retransmissions of its final response, 64·T1)."""


@dataclass(frozen=True, slots=True)
class Timers:
    """The timer values of one transport (RFC 3261 Table 4). Timer B, F and M are 64·T1; the defaults are
    the RFC's, tests shrink them (`Timers(t1=0.01, t2=0.08, t4=0.1, d=0.2)`)."""

    t1: float = T1
    t2: float = T2
    t4: float = T4
    d: float = TIMER_D

    @property
    def b(self) -> float:
        """Timer B: how long an INVITE waits for any response (§17.1.1.2)."""
        return 64 * self.t1

    @property
    def f(self) -> float:
        """Timer F: how long a non-INVITE request waits for a final response (§17.1.2.2)."""
        return 64 * self.t1

    @property
    def m(self) -> float:
        """Timer M: how long an INVITE transaction stays Accepted after a 2xx (RFC 6026 §7.2)."""
        return 64 * self.t1

    @property
    def k(self) -> float:
        """Timer K: how long a completed non-INVITE transaction absorbs retransmitted finals (§17.1.2.2)."""
        return self.t4


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """Runs `callback` after `delay` seconds; `LoopScheduler` in service, a fake clock in tests."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle: ...


class LoopScheduler:
    """The event loop's timers."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        return self._loop.call_later(delay, callback)


class State(enum.Enum):
    """The states of RFC 3261 figures 5 and 6 (and RFC 6026's Accepted)."""

    NEW = "new"
    CALLING = "calling"
    """INVITE sent, nothing heard yet: Timer A retransmits, Timer B gives up."""
    TRYING = "trying"
    """Non-INVITE sent, nothing heard yet: Timer E retransmits, Timer F gives up."""
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    """A final response came (non-2xx for INVITE); retransmissions of it are absorbed (Timer D / K)."""
    ACCEPTED = "accepted"
    """INVITE only: a 2xx came; its retransmissions go to the TU for a new ACK (RFC 6026 §7.2)."""
    TERMINATED = "terminated"


ResponseHook = Callable[["ClientTransaction", Response], None]
TimeoutHook = Callable[["ClientTransaction"], None]
TerminatedHook = Callable[["ClientTransaction"], None]


def _ignore(_: ClientTransaction) -> None:
    return None


class ClientTransaction(abc.ABC):
    """What both client transactions share: the request, its key, the hooks and the timers."""

    def __init__(
        self,
        *,
        request: Request,
        send: Callable[[bytes], None],
        scheduler: Scheduler,
        timers: Timers,
        on_response: ResponseHook,
        on_timeout: TimeoutHook,
        on_terminated: TerminatedHook = _ignore,
    ) -> None:
        self.request = request
        self.key: TransactionKey = transaction_key(request)
        self.state = State.NEW
        self.final: Response | None = None
        """The first final response, once one came."""
        self.sent = 0
        """How many times the request went on the wire (1 + retransmissions)."""
        self._send = send
        self._scheduler = scheduler
        self._timers = timers
        self._on_response = on_response
        self._on_timeout = on_timeout
        self._on_terminated = on_terminated
        self._data = request.encode()
        self._handles: dict[str, TimerHandle] = {}
        self._interval = timers.t1  # the next retransmission interval (Timer A or E)

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    @abc.abstractmethod
    def receive(self, response: Response) -> None:
        """A response matched to this transaction (INVITE and non-INVITE handle it differently)."""

    def terminate(self) -> None:
        """End it now (the trunk is stopping): timers cancelled, nothing more reported."""
        if self.state is State.TERMINATED:
            return
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self.state = State.TERMINATED
        self._on_terminated(self)

    def _transmit(self) -> None:
        self.sent += 1
        self._send(self._data)

    def _start_timer(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._stop_timer(name)

        def fire() -> None:
            self._handles.pop(name, None)
            if self.state is not State.TERMINATED:
                callback()

        self._handles[name] = self._scheduler.call_later(delay, fire)

    def _stop_timer(self, *names: str) -> None:
        for name in names:
            handle = self._handles.pop(name, None)
            if handle is not None:
                handle.cancel()

    def _begin(self, state: State) -> None:
        if self.state is not State.NEW:
            raise TransactionError(f"transaction {self.key} already started")
        self.state = state
        self._transmit()


class InviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.1 (figure 5) with RFC 6026 §7.2's Accepted state, over an unreliable transport."""

    ack: Request | None = None
    """The ACK we sent for a non-2xx final response (§17.1.1.3)."""

    def start(self) -> None:
        """Send the INVITE; Timer A (retransmit, from T1, doubling) and Timer B (give up, 64·T1) start."""
        self._begin(State.CALLING)
        self._start_timer("A", self._interval, self._timer_a)
        self._start_timer("B", self._timers.b, self._timer_b)

    def _timer_a(self) -> None:
        if self.state is State.CALLING:
            self._transmit()
            self._interval *= 2  # §17.1.1.2: each retransmission doubles the interval, with no cap
            self._start_timer("A", self._interval, self._timer_a)

    def _timer_b(self) -> None:
        if self.state is State.CALLING:
            self._stop_timer("A")
            self.state = State.TERMINATED
            self._on_timeout(self)
            self._on_terminated(self)

    def receive(self, response: Response) -> None:
        status = response.status
        state = self.state
        if state in (State.CALLING, State.PROCEEDING):
            if status < 200:
                # §17.1.1.2: a provisional response stops the retransmissions; Timer B only ends the
                # Calling state, so from here the TU decides how long to wait (and CANCELs, §9.1).
                self._stop_timer("A", "B")
                self.state = State.PROCEEDING
                self._on_response(self, response)
            elif status < 300:
                self._stop_timer("A", "B")
                self.final = response
                self.state = State.ACCEPTED
                self._start_timer("M", self._timers.m, self._end)
                self._on_response(self, response)
            else:
                self._stop_timer("A", "B")
                self.final = response
                self.state = State.COMPLETED
                self._acknowledge(response)
                self._start_timer("D", self._timers.d, self._end)
                self._on_response(self, response)
        elif state is State.COMPLETED and status >= 300:
            self._acknowledge(response)  # §17.1.1.2: a retransmitted final gets the ACK again, the TU nothing
        elif state is State.ACCEPTED and 200 <= status < 300:
            self._on_response(self, response)  # RFC 6026 §7.2: the TU sends a new ACK for it

    def _acknowledge(self, response: Response) -> None:
        self.ack = ack_for_failure(self.request, response)
        self._send(self.ack.encode())

    def _end(self) -> None:
        self.state = State.TERMINATED
        self._on_terminated(self)


class NonInviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.2 (figure 6) over an unreliable transport: CANCEL, BYE, and the like."""

    def start(self) -> None:
        """Send the request; Timer E (retransmit, from T1, doubling up to T2) and Timer F (give up) start."""
        self._begin(State.TRYING)
        self._start_timer("E", self._interval, self._timer_e)
        self._start_timer("F", self._timers.f, self._timer_f)

    def _timer_e(self) -> None:
        if self.state is State.TRYING:
            self._transmit()
            self._interval = min(2 * self._interval, self._timers.t2)
            self._start_timer("E", self._interval, self._timer_e)
        elif self.state is State.PROCEEDING:
            self._transmit()  # §17.1.2.2: once a provisional came, retransmit every T2
            self._start_timer("E", self._timers.t2, self._timer_e)

    def _timer_f(self) -> None:
        if self.state in (State.TRYING, State.PROCEEDING):
            self._stop_timer("E")
            self.state = State.TERMINATED
            self._on_timeout(self)
            self._on_terminated(self)

    def receive(self, response: Response) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return  # Completed absorbs retransmitted finals (Timer K)
        if response.status < 200:
            if self.state is State.TRYING:
                self.state = State.PROCEEDING
                self._start_timer("E", self._timers.t2, self._timer_e)
            self._on_response(self, response)
            return
        self._stop_timer("E", "F")
        self.final = response
        self.state = State.COMPLETED
        self._start_timer("K", self._timers.k, self._end)
        self._on_response(self, response)

    def _end(self) -> None:
        self.state = State.TERMINATED
        self._on_terminated(self)
