"""The carrier interface: what a worker needs from anything that can take SMS to handsets.

Two implementations: the built-in simulator (`sms/simulator.py`) and SMPP 3.4 (`sms/smpp/`). A carrier
accepts a batch of messages and answers each with a `SubmitResult`; later it reports on each accepted one
with a `Receipt` through the `ReceiptSink` it was started with. A carrier that receives messages from
handsets (mobile-originated: SMPP's deliver_sm that is not a receipt) hands each to the `InboundSink` it was
started with, and acknowledges it to its peer only once the sink has returned (the worker's sink returns
once they are stored); a carrier started without one logs and drops them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from switchboard.store.records import InboundMessage, InFlight, Receipt

ReceiptSink = Callable[[list[Receipt]], Awaitable[None]]
InboundSink = Callable[[list[InboundMessage]], Awaitable[None]]
"""Takes inbound messages; returns once they are safe (stored), raises when they could not be taken."""


@dataclass(frozen=True, slots=True)
class OutboundSms:
    destination_id: int
    e164: str
    sender: str
    body: str
    encoding: str


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """The carrier's answer to one submit: accepted with its reference, or refused."""

    carrier_ref: str | None
    error: str | None = None
    permanent: bool = False
    """A refusal that trying again cannot fix (the destination becomes Rejected); otherwise retried."""
    part_refs: tuple[str, ...] = ()
    """For a message sent in more than one part: every part's reference, in part order (`carrier_ref` is
    the first's). Accepted means every part was accepted. Empty for a single part."""

    @property
    def accepted(self) -> bool:
        return self.carrier_ref is not None


class Carrier(Protocol):
    name: str
    simulated: bool
    """True for the built-in simulator: the API, dashboard and logs say so."""

    @property
    def up(self) -> bool:
        """Whether it can take messages now; the router fails over to the next route when not."""

    async def start(self, receipts: ReceiptSink, inbound: InboundSink | None = None) -> None: ...
    async def stop(self) -> None: ...
    async def submit(self, messages: list[OutboundSms]) -> list[SubmitResult]:
        """One result per message, in order."""

    async def resume(self, in_flight: list[InFlight]) -> None:
        """Told, after a restart, what it accepted earlier and has not reported on yet."""
