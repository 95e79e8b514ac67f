"""The trunk interface: what the dialer needs from anything that can place a call and play audio into it.

Two implementations: the built-in simulator (`voice/simulator.py`) and a SIP trunk (`voice/sip/`). `dial`
runs one whole call, from ringing to hang-up, and answers how it ended; it reports the moment of answer
through `on_answered` so the call shows InProgress while it plays. The dialer, not the trunk, keeps the
trunk's limits (concurrent calls and call setups per second) and maps a stopped call to its reason.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from switchboard.domain.statuses import CallReason, CallStatus


class StopReason(enum.Enum):
    """Why the dialer asks a trunk to end a call before it ends by itself."""

    CANCEL = "cancel"
    """Cancelled through the API: Failed / Cancel."""
    SHUTDOWN = "shutdown"
    """The gateway is stopping and the call outlasted the grace period: Failed / General Error."""


@dataclass(slots=True)
class OutboundCall:
    call_id: int
    e164: str
    caller: str
    """The caller number to present (the request's Sender, as written)."""
    audio: bytes
    """What to play once answered: 8 kHz 16-bit mono PCM, little-endian."""
    ring_timeout: float
    """Seconds to ring before giving up (NoAnswer / Timeout)."""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by the dialer to end the call now (CANCEL while ringing, BYE once answered)."""
    stop_reason: StopReason | None = None

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / 16_000

    def request_stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop.set()


@dataclass(frozen=True, slots=True)
class CallResult:
    """How a call ended, as the trunk saw it. For a call that `stop` ended, the dialer replaces status and
    reason by the stop's (Failed / Cancel or General Error); the times stay."""

    status: CallStatus
    reason: CallReason
    call_time: int | None
    """When the call was placed (the INVITE went out); None when it never was."""
    answer_time: int | None
    end_time: int
    detail: str | None = None
    """For people: "SIP 486 Busy Here", "no response to INVITE", ..."""
    stopped: bool = False
    """`stop` ended it (or kept it from starting)."""


AnsweredHook = Callable[[int], None]
"""Told the time (ms) a call was answered."""


class Trunk(Protocol):
    name: str
    simulated: bool
    """True for the built-in simulator: the API, dashboard and logs say so."""
    max_calls: int
    """Concurrent calls at most."""
    cps: float
    """Call setups per second at most."""

    @property
    def up(self) -> bool:
        """Whether it can take calls now; routing fails over to the next route when not."""

    async def start(self) -> None: ...
    async def stop(self) -> None:
        """End the calls still under way (each `dial` returns, `stopped`) and release what the trunk holds."""

    async def dial(self, call: OutboundCall, *, on_answered: AnsweredHook) -> CallResult:
        """Run the call to its end. Never raises for what happens on the line (busy, no answer, an error
        response, no response): those are results."""
