"""Checking a carrier by hand (`switchboard carriers test`): does each bind come up, and does a message go?

`probe` binds every session of an SMPP carrier at once, through `SmppCarrier.new_session` but outside its
reconnectors (which would retry quietly), so that each bind's outcome is seen: bound and how long it took,
or why not. Then it unbinds them. With a `ProbeMessage` it then starts the carrier as the gateway would,
submits that one message (a REAL SMS on a real carrier), and waits for its receipt. The simulator is
always up; a message through it is simulated.

Whatever the SMSC sends these binds is left for the gateway: a receipt queued for this system_id that is
not for the probe's message is answered ESME_RX_T_APPN, so the SMSC sends it again later rather than
losing it. What is found is returned as a `ProbeReport`; nothing is printed here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from switchboard.domain.encoding import encoding_for
from switchboard.errors import BindFailed, ConnectionLost, SmppError, SwitchboardError
from switchboard.sms.carrier import Carrier, OutboundSms
from switchboard.sms.smpp.connector import SmppCarrier
from switchboard.sms.smpp.pdu import CommandStatus, DataSm, DeliverSm, status_name
from switchboard.sms.smpp.session import Session
from switchboard.store.records import Receipt

__all__ = ["BindOutcome", "MessageOutcome", "ProbeMessage", "ProbeReport", "ReceiptOutcome", "probe"]

log = logging.getLogger("switchboard.sms.smpp")  # the connector's: where its hand-over errors are logged


@dataclass(frozen=True, slots=True)
class ProbeMessage:
    to: str
    """E.164."""
    sender: str
    text: str


@dataclass(frozen=True, slots=True)
class BindOutcome:
    bind: int
    """1, 2, ... in the order the sessions were made."""
    bound: bool
    seconds: float
    error: str | None
    """Why it did not bind: no answer in time, the bind_resp status, or the connection error."""


@dataclass(frozen=True, slots=True)
class ReceiptOutcome:
    status: str
    """The worst of the parts' statuses (the first that is not Delivered), as `SmsStatus` spells it."""
    error: str | None
    seconds: float
    """From acceptance to the last part's receipt."""


@dataclass(slots=True)
class MessageOutcome:
    to: str
    sent: bool = True
    """False when no bind came up, so nothing was submitted."""
    accepted: bool = False
    receipt: ReceiptOutcome | None = None
    """None when none came within the timeout (or the message was not accepted)."""
    seconds: float | None = None
    """From submitting to the answer, when there was one."""
    error: str | None = None
    permanent: bool | None = None
    """For a refusal: whether sending again could help."""
    message_id: str | None = None
    part_ids: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"to": self.to, "sent": self.sent}
        if not self.sent:
            return doc | {"error": self.error}
        doc |= {"accepted": self.accepted, "receipt": None}
        if self.receipt is not None:
            r = self.receipt
            doc["receipt"] = {"status": r.status, "error": r.error, "seconds": r.seconds}
        if self.seconds is not None:
            doc["seconds"] = self.seconds
        if self.accepted:
            return doc | {"message_id": self.message_id, "part_ids": self.part_ids}
        doc["error"] = self.error
        if self.permanent is not None:
            doc["permanent"] = self.permanent
        return doc


@dataclass(slots=True)
class ProbeReport:
    carrier: str
    simulated: bool
    peer: str | None = None
    """The SMSC's host:port (SMPP only)."""
    binds: list[BindOutcome] | None = None
    """SMPP only: each bind, in the order they were made."""
    message: MessageOutcome | None = None

    @property
    def kind(self) -> str:
        return "simulator" if self.simulated else "smpp"

    @property
    def ok(self) -> bool:
        """Every bind came up and, with a message, it was accepted and its receipt came."""
        binds_ok = all(b.bound for b in self.binds or [])
        message_ok = self.message is None or (self.message.accepted and self.message.receipt is not None)
        return binds_ok and message_ok

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"carrier": self.carrier, "kind": self.kind, "simulated": self.simulated}
        if self.peer is not None:
            doc["peer"] = self.peer
        if self.binds is not None:
            doc["binds"] = [
                {"bind": b.bind, "bound": b.bound, "seconds": b.seconds, "error": b.error} for b in self.binds
            ]
        if self.message is not None:
            doc["message"] = self.message.as_json()
        return doc | {"ok": self.ok}


async def probe(carrier: Carrier, *, limit: float, message: ProbeMessage | None = None) -> ProbeReport:
    """Bind every session of `carrier` (SMPP) and report each; with `message`, send it through the carrier
    and wait for its receipt. `limit` (seconds) bounds the binds, the submit, and the wait for the receipt,
    each."""
    report = ProbeReport(carrier=carrier.name, simulated=carrier.simulated)
    if isinstance(carrier, SmppCarrier):
        report.peer = carrier.peer
        report.binds = await _binds(carrier, limit)
    if message is None:
        return report
    if report.binds is not None and not any(b.bound for b in report.binds):
        report.message = MessageOutcome(message.to, sent=False, error="not sent: no bind came up")
    else:
        report.message = await _send(carrier, message, limit)
    return report


class _NotOurs:
    """Whatever the SMSC sends the test binds (receipts queued for the gateway) is answered ESME_RX_T_APPN,
    so that it is sent again later rather than lost."""

    async def handle_deliver_sm(self, pdu: DeliverSm) -> int:
        return int(CommandStatus.ESME_RX_T_APPN)

    async def handle_data_sm(self, pdu: DataSm) -> int:
        return int(CommandStatus.ESME_RX_T_APPN)


async def _binds(carrier: SmppCarrier, limit: float) -> list[BindOutcome]:
    """Bind every session at once, each outcome seen, then unbind them all."""
    sessions = [carrier.new_session(_NotOurs(), response_timeout=limit) for _ in range(carrier.bind_count)]
    loop = asyncio.get_running_loop()

    async def bind(number: int, session: Session) -> BindOutcome:
        started = loop.time()
        error: str | None = None
        try:
            async with asyncio.timeout(limit):
                await session.connect()
        except TimeoutError:
            error = f"no answer within {limit:g} s"
        except BindFailed as e:
            error = f"bind refused: {status_name(e.status)}"
            if e.permanent:
                error += " (check system_id, password and system_type)"
        except ConnectionLost as e:
            cause = e.__cause__
            if isinstance(cause, TimeoutError):
                error = f"connection error: no answer from {carrier.peer} within {limit:g} s"
            elif isinstance(cause, OSError) and cause.strerror:
                error = f"connection error: {carrier.peer}: {cause.strerror}"
            else:
                error = f"connection error: {e}"
        except SmppError as e:
            error = str(e)
        return BindOutcome(number, error is None, round(loop.time() - started, 3), error)

    try:
        return list(await asyncio.gather(*(bind(i, s) for i, s in enumerate(sessions, start=1))))
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


class _NotOurReceipt(SwitchboardError):
    pass


class _QuietNotOurs(logging.Filter):
    """Drops the carrier's traceback for receipts the probe leaves to the gateway on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[0] is _NotOurReceipt)


async def _send(carrier: Carrier, message: ProbeMessage, limit: float) -> MessageOutcome:
    """Send `message` through `carrier` (started for this alone) and wait for its receipt."""
    outcome = MessageOutcome(message.to)
    refs: set[str] = set()
    receipts: dict[str, Receipt] = {}
    arrived = asyncio.Event()

    async def sink(batch: list[Receipt]) -> None:
        ours = [r for r in batch if r.carrier_ref in refs]
        for r in ours:
            receipts[r.carrier_ref] = r
        if ours:
            arrived.set()
        if len(ours) < len(batch):  # someone else's (the gateway's, queued for this system_id): not taken
            raise _NotOurReceipt(f"{len(batch) - len(ours)} receipts for other messages, left for the gateway")

    quiet = _QuietNotOurs()
    log.addFilter(quiet)
    loop = asyncio.get_running_loop()
    await carrier.start(sink)
    try:
        started = loop.time()
        try:
            async with asyncio.timeout(limit):
                while not carrier.up:  # noqa: ASYNC110 (`up` has no event to wait on)
                    await asyncio.sleep(0.02)
                sms = OutboundSms(0, message.to, message.sender, message.text, encoding_for(message.text).value)
                (result,) = await carrier.submit([sms])
        except TimeoutError:
            outcome.error = f"no answer within {limit:g} s (the message may have been accepted)"
            return outcome
        outcome.seconds = round(loop.time() - started, 3)
        if result.carrier_ref is None:  # not accepted
            outcome.error, outcome.permanent = result.error, result.permanent
            return outcome
        parts = list(result.part_refs) or [result.carrier_ref]
        refs.update(parts)
        outcome.accepted, outcome.message_id, outcome.part_ids = True, result.carrier_ref, list(result.part_refs)
        started = loop.time()
        try:
            async with asyncio.timeout(limit):
                while len(receipts) < len(parts):
                    await arrived.wait()
                    arrived.clear()
        except TimeoutError:
            return outcome
        got = [receipts[ref] for ref in parts]
        worst = next((r for r in got if r.status.value != "Delivered"), got[0])
        outcome.receipt = ReceiptOutcome(worst.status.value, worst.error, round(loop.time() - started, 3))
        return outcome
    finally:
        await carrier.stop()
        log.removeFilter(quiet)
