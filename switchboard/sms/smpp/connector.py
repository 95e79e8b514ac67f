"""SMPP 3.4 as a `Carrier`: submits over `binds` reconnecting transceiver sessions, reads receipts back.

The top layer of the client (see the package docstring): it maps the domain to SMPP and back, and leaves
connections, windows and sequence numbers to `session`.

Submits. Each message of a batch takes a token from one `TokenBucket` shared by every bind (`rate`
submits/s, 0 for no limit), then is queued on the bound session with the fewest of our submits outstanding
or queued (round-robin among equals); the messages of a batch are all queued at once (no task each: the
session sends them as its window has room, and the batch awaits their responses together), and each
session's window bounds how many are outstanding on its bind. A message that has to wait for the rate, and
a long message, get a coroutine of their own. Every submit_sm asks for a receipt (registered_delivery 1).
Results:

- submit_sm_resp ESME_ROK: accepted; carrier_ref is `message_id_key(message_id, id_form)`.
- an error status, a generic_nack, or a PDU we cannot encode: transient when `pdu.is_transient` says so
  (the worker retries it later), else permanent (the destination becomes Rejected).
- no bind up, the connection lost, or no response in time: transient. The SMSC may have accepted it, so a
  retry may deliver it twice (at-least-once, as the worker's docstring says).

Nothing is raised out of `submit` for one message's failure; each message gets its result.

Text. `OutboundSms.encoding` chooses: "gsm7" sends data_coding 0 with the GSM 03.38 default alphabet one
septet an octet, unpacked (what SMPP's short_message carries for DCS 0), an extension character as the
escape 0x1B and its code; "ucs2" sends data_coding 8, UTF-16BE. A body said to be "gsm7" that is not all
GSM is sent as UCS-2 rather than with '?' in place of what does not fit (never expected: the service
chooses the encoding from the body).

Long messages. A body over one part (160 septets, or 70 UTF-16 code units) goes as concatenated parts
(`split_text`: 153 septets or 67 code units each, never an escape split from its code nor a surrogate
pair split), each a submit_sm with esm_class UDHI (0x40) and a 6-octet user data header: 05 00 03 ref
total seq (IEI 0x00, 8-bit reference). The reference is one byte per message, counting up (mod 256) per
carrier from a random start, so that a restart does not begin with the references just used. The parts go
one after another, in order, each taking its rate token and its bind as a message does. The message is
accepted only when every part is: carrier_ref is the first part's id and part_refs every part's, and the
store tracks each part (its receipts are aggregated there, store/changes.py). When a part is refused or
fails, no further part is sent and the message's result is that part's: permanent (Rejected), or
transient, and then the whole message is sent again later, under a new reference. The parts already
accepted may then reach the handset twice, and a handset shows what it has of the first attempt as an
incomplete message (at-least-once, as for a single part).

Receipts. The carrier is every session's `BatchHandler`: it reads the deliver_sm and data_sm of each read
together. A receipt (esm_class, never its text: `receipt.is_receipt`) is parsed (`parse_receipt` without
its details: no dates), its id normalised with `message_id_key` and its state mapped to a
SmsStatus (DELIVRD → Delivered, EXPIRED → Expired, REJECTD → Rejected, UNDELIV, DELETED and UNKNOWN →
Undelivered); intermediate states (ENROUTE, ACCEPTD) are acknowledged and ignored. Receipts that arrive
together are handed to the sink in one small batch, and each is answered ESME_ROK once the sink has taken
it (ESME_RX_T_APPN if the sink failed, so the SMSC sends it again later). A receipt may come before the
submit_sm_resp of its message has been written to the store: the store holds such a receipt, in the
transaction that found it unmatched, and the worker matches it again once the Sent is written
(HELD_RECEIPT_SECONDS). An unparseable receipt is logged and answered
ESME_ROK (the SMSC sending it again would not make it readable).

Ids. The id in a receipt's receipted_message_id TLV is written as in the submit_sm_resp (§5.3.2.12), so it
is read with `id_form`; an id from the receipt's text alone is read with `receipt_id_form` (default:
`id_form`). An SMSC that answers submits with hex ids and writes decimal ids in its receipt texts is
configured `id_form=IdForm.HEX, receipt_id_form=IdForm.DECIMAL`: both become the same decimal key.

Mobile-originated messages. A deliver_sm or data_sm that is not a receipt is a message from a handset: it
becomes an `InboundMessage` (`decode_inbound`: data_coding 0 is read as GSM 03.38 septets one an octet, 1
as ASCII, 3 as Latin-1, 8 as UTF-16BE, broken UTF-16 with U+FFFD and the octets kept; a leading user data
header (esm_class UDHI) is skipped for the text, and the octets are kept as hex; any other data_coding, or
GSM or ASCII octets that are not what their data_coding says, keeps the octets as hex with no text). The
octets are short_message, or message_payload when short_message is empty (always for data_sm). Parts of a
concatenated message (the header's concatenation element, 8- or 16-bit reference: `domain.concat`) are
passed on one by one, each saying which part it is; the store keeps them until the last one comes and joins
them there (store/inbound.py), so that a part acknowledged is a part stored. They
are batched to the `InboundSink` like receipts and each is answered ESME_ROK once the sink has taken it
(the worker's sink stores them first), ESME_RX_T_APPN if it failed, so the SMSC sends it again later. A
carrier started without an inbound sink logs them, the sender's number partly masked, and answers ESME_ROK.

`resume` has nothing to do: an SMSC sends receipts by itself, also for messages submitted before a restart
(queued while we were not bound), and they are matched by carrier_ref in the store.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from switchboard.domain.clock import Clock
from switchboard.domain.concat import Concat, split_header
from switchboard.domain.concat import decode as decode_text
from switchboard.domain.encoding import (
    UCS2_PART_UNITS,
    UCS2_SINGLE_UNITS,
    Encoding,
    encoding_for,
    gsm7_septets,
    segment,
    ucs2_bytes,
)
from switchboard.domain.rate import TokenBucket
from switchboard.domain.statuses import SmsStatus
from switchboard.errors import ConnectionLost, MalformedResponse, Nacked, PduError, ResponseTimeout
from switchboard.sms.carrier import InboundSink, OutboundSms, ReceiptSink, SubmitResult
from switchboard.sms.smpp.pdu import (
    CommandStatus,
    DataSm,
    DeliverSm,
    MessageState,
    SubmitSm,
    SubmitSmResp,
    is_transient,
    status_name,
)
from switchboard.sms.smpp.receipt import IdForm, is_receipt, message_id_key, parse_receipt
from switchboard.sms.smpp.session import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    DEFAULT_ENQUIRE_LINK_INTERVAL,
    DEFAULT_RESPONSE_TIMEOUT,
    DEFAULT_WINDOW,
    BindMode,
    Handler,
    Reconnector,
    Session,
)
from switchboard.store.records import InboundMessage, InFlight, Receipt

__all__ = ["NO_BIND_ERROR", "Addresses", "SmppCarrier", "addresses", "concat_udh", "encode_text", "split_text"]

log = logging.getLogger("switchboard.sms.smpp")

DCS_GSM7 = 0x00
"""data_coding 0: the SMSC default alphabet, which SMSCs take as GSM 03.38 (§5.2.19)."""
DCS_UCS2 = 0x08
"""data_coding 8: UCS-2, sent as UTF-16BE (§5.2.19)."""
TON_UNKNOWN, TON_INTERNATIONAL, TON_ALPHANUMERIC = 0, 1, 5
"""type_of_number (§5.2.5)."""
NPI_UNKNOWN, NPI_ISDN = 0, 1
"""numbering_plan_indicator (§5.2.6): ISDN is E.164."""
REGISTERED_DELIVERY_FINAL = 0x01
"""registered_delivery (§5.2.17): a receipt on final delivery, success or failure."""

NO_BIND_ERROR = "Carrier error: no SMPP bind is up"
ESM_UDHI = 0x40
"""esm_class (§5.2.12): short_message begins with a user data header."""
IEI_CONCAT_8BIT = 0x00
"""Concatenated short messages, 8-bit reference (3GPP TS 23.040 §9.2.3.24.1)."""
MAX_PARTS = 255
MAX_RATE_WAIT = 20.0
"""Seconds a submit may wait for the carrier's rate: well inside the worker's claim lease (60 s by default)."""
RATE_BUSY_ERROR = "Carrier busy: over its submit rate for now"
RECEIPT_BATCH_DELAY = 0.05
"""Receipts (or inbound messages) that arrive within this many seconds of each other go to the sink in one
batch."""
RECEIPT_BATCH_MAX = 1000
SUBMIT_SLICE = 32
"""A batch's messages are prepared and queued this many at a time, the event loop turning in between: the
window keeps moving while a large batch is prepared (preparing 500 at once held the loop for ≈ 5 ms)."""

T = TypeVar("T")

_STATUSES = {
    MessageState.DELIVERED: SmsStatus.DELIVERED,
    MessageState.EXPIRED: SmsStatus.EXPIRED,
    MessageState.REJECTED: SmsStatus.REJECTED,
    MessageState.UNDELIVERABLE: SmsStatus.UNDELIVERED,
    MessageState.DELETED: SmsStatus.UNDELIVERED,
    MessageState.UNKNOWN: SmsStatus.UNDELIVERED,
}
_STATE_WORDS = {
    MessageState.DELIVERED: "DELIVRD",
    MessageState.EXPIRED: "EXPIRED",
    MessageState.REJECTED: "REJECTD",
    MessageState.UNDELIVERABLE: "UNDELIV",
    MessageState.DELETED: "DELETED",
    MessageState.UNKNOWN: "UNKNOWN",
}


def encode_text(body: str, encoding: str) -> tuple[int, bytes]:
    """(data_coding, short_message octets) for a single-part message; ValueError when it needs more than one
    part (see `split_text`). "gsm7" gives unpacked septets (one octet each), "ucs2" UTF-16BE; a "gsm7" body
    with a character outside GSM 03.38 is sent as UCS-2 rather than with a '?'."""
    data_coding, parts = split_text(body, encoding)
    if len(parts) > 1:
        raise ValueError(f"{len(parts)} parts: more than one")
    return data_coding, parts[0]


def split_text(body: str, encoding: str) -> tuple[int, list[bytes]]:
    """(data_coding, the octets of each part, without headers): one part when it fits a single message.
    Parts follow `encoding.segment` (153 septets or 67 code units, an escape never split from its code, a
    surrogate pair never split); a "gsm7" body with a character outside GSM 03.38 is sent as UCS-2."""
    if encoding == Encoding.GSM7.value and encoding_for(body) is Encoding.GSM7:
        return DCS_GSM7, [gsm7_septets(part) for part in segment(body)]
    if encoding not in (Encoding.GSM7.value, Encoding.UCS2.value):
        log.warning("unknown encoding %r: sending as UCS-2", encoding)
    if encoding_for(body) is Encoding.UCS2:
        parts = segment(body)  # split as UCS-2: what it is
    elif len(body) <= UCS2_SINGLE_UNITS:  # all GSM, said UCS-2: every character is one code unit
        parts = [body]
    else:
        parts = [body[i : i + UCS2_PART_UNITS] for i in range(0, len(body), UCS2_PART_UNITS)]
    return DCS_UCS2, [ucs2_bytes(part) for part in parts]


def concat_udh(ref: int, total: int, seq: int) -> bytes:
    """The user data header of part `seq` (from 1) of `total`: concatenation with an 8-bit reference."""
    return bytes((5, IEI_CONCAT_8BIT, 3, ref & 0xFF, total, seq))


def decode_inbound(data_coding: int, octets: bytes, *, udhi: bool) -> tuple[str | None, str | None, Concat | None]:
    """(text, raw, part) of a mobile-originated message: its text when `data_coding` is one we read (module
    docstring); the octets as hex when there is no text, it is lossy (broken UTF-16 read with U+FFFD), or they
    begin with a user data header; and which part of a concatenated message it is, when its header says so
    (`domain.concat.split_header`: 8- or 16-bit reference)."""
    part: Concat | None = None
    payload: bytes | None = octets
    if udhi:
        part, payload = split_header(octets)
    text, lossy = (None, False) if payload is None else decode_text(data_coding, payload)
    raw = octets.hex() if text is None or lossy or udhi else None
    return text, raw, part


class Addresses(NamedTuple):
    source_ton: int
    source_npi: int
    source: str
    dest_ton: int
    dest_npi: int
    destination: str


def addresses(sender: str, e164: str) -> Addresses:
    """The submit_sm address fields. A sender with a letter in it is alphanumeric (TON 5, NPI 0); "+digits"
    is international (TON 1, NPI 1, sent without the '+'); other digits (a short code, a national number)
    are TON 0 (unknown), NPI 1. The destination is E.164: TON 1, NPI 1, digits without the '+'."""
    sender = sender.strip()
    if sender.startswith("+") and sender[1:].isdigit():
        source = (TON_INTERNATIONAL, NPI_ISDN, sender[1:])
    elif sender.isdigit():
        source = (TON_UNKNOWN, NPI_ISDN, sender)
    else:
        source = (TON_ALPHANUMERIC, NPI_UNKNOWN, sender)
    return Addresses(*source, TON_INTERNATIONAL, NPI_ISDN, e164.removeprefix("+"))


def mask_number(number: str) -> str:
    """A phone number for logs: the first 4 and last 2 characters kept, the rest as '*'."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 6) + number[-2:]


@dataclass
class _Bind:
    reconnector: Reconnector


@dataclass
class _Batcher(Generic[T]):
    """Hands items to a sink in small batches (those arriving within RECEIPT_BATCH_DELAY of each other, up
    to about RECEIPT_BATCH_MAX); `hand_over` says whether the sink took the items it was given."""

    name: str
    sink: Callable[[list[T]], Awaitable[None]]
    what: str
    pending: list[tuple[list[T], asyncio.Future[bool]]] = field(default_factory=list)
    flushing: asyncio.Task[None] | None = None

    async def hand_over(self, items: list[T]) -> bool:
        """Whether the sink took `items` (all or none: they go to it together)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.pending.append((items, future))
        if self.flushing is None or self.flushing.done():
            self.flushing = asyncio.create_task(self._flush(), name=f"smpp-{self.what}-{self.name}")
        return await future

    async def drain(self) -> None:
        if self.flushing is not None:
            await asyncio.gather(self.flushing, return_exceptions=True)

    async def _flush(self) -> None:
        while self.pending:
            await asyncio.sleep(RECEIPT_BATCH_DELAY)
            count, size = 0, 0
            for items, _ in self.pending:  # whole hand-overs, at least one
                if count and size + len(items) > RECEIPT_BATCH_MAX:
                    break
                count, size = count + 1, size + len(items)
            batch, self.pending = self.pending[:count], self.pending[count:]
            taken = False
            try:
                await self.sink([item for items, _ in batch for item in items])
                taken = True
            except Exception:  # the SMSC is told to send them again later
                log.exception("smpp %s: could not hand over %d %s", self.name, size, self.what)
            for _, future in batch:
                if not future.done():
                    future.set_result(taken)


async def _hand_over(batcher: _Batcher[T] | None, taking: list[tuple[int, T]], statuses: list[CommandStatus]) -> None:
    """Hand the items (each with its PDU's place) to `batcher`; the PDUs of those not taken are answered
    ESME_RX_T_APPN, so that the SMSC sends them again later."""
    if taking and not (batcher is not None and await batcher.hand_over([item for _, item in taking])):
        for i, _ in taking:
            statuses[i] = CommandStatus.ESME_RX_T_APPN


class SmppCarrier:
    """A carrier reached over SMPP 3.4 (module docstring). `start` binds, `stop` unbinds."""

    simulated = False

    def __init__(
        self,
        *,
        name: str,
        host: str,
        port: int,
        system_id: str,
        password: str,
        clock: Clock,
        system_type: str = "",
        binds: int = 1,
        window: int = DEFAULT_WINDOW,
        rate: float = 0.0,
        id_form: IdForm = IdForm.TEXT,
        receipt_id_form: IdForm | None = None,
        response_timeout: float = DEFAULT_RESPONSE_TIMEOUT,
        enquire_link_interval: float = DEFAULT_ENQUIRE_LINK_INTERVAL,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """`rate`: submits a second over all binds (0: no limit). `sleep` waits for rate tokens (the clock's
        unless given: tests may record the waits). The backoff settings are the reconnectors'."""
        if binds < 1 or window < 1:
            raise ValueError("binds and window must be at least 1")
        self.name = name
        self._host, self._port = host, port
        self._system_id, self._password, self._system_type = system_id, password, system_type
        self._clock = clock
        self._window = window
        self._id_form = id_form
        self._receipt_id_form = id_form if receipt_id_form is None else receipt_id_form
        self._response_timeout = response_timeout
        self._enquire_link_interval = enquire_link_interval
        self._backoff_base, self._backoff_cap = backoff_base, backoff_cap
        self._bucket = TokenBucket(rate=rate, burst=max(rate / 10, 1.0), clock=clock)
        self._sleep = sleep or clock.sleep
        self._bind_count = binds
        self._binds: list[_Bind] = []
        self._turn = itertools.count()
        # Concatenation references: one byte per long message, counting up from a random start (module
        # docstring), so a restart does not reuse the last few references at once.
        self._concat_refs = itertools.count(random.randrange(256))
        self._receipts: _Batcher[Receipt] | None = None
        self._mo: _Batcher[InboundMessage] | None = None

    # --- Carrier ------------------------------------------------------------------------------------------

    @property
    def peer(self) -> str:
        """The SMSC's ``host:port``."""
        return f"{self._host}:{self._port}"

    @property
    def bind_count(self) -> int:
        return self._bind_count

    @property
    def up(self) -> bool:
        for bind in self._binds:  # the router asks once per message: a loop, not a generator
            if bind.reconnector.up:
                return True
        return False

    async def start(self, receipts: ReceiptSink, inbound: InboundSink | None = None) -> None:
        self._receipts = _Batcher(self.name, receipts, "receipts")
        self._mo = None if inbound is None else _Batcher(self.name, inbound, "inbound messages")
        for _ in range(self._bind_count):
            reconnector = Reconnector(
                session_factory=self.new_session,
                clock=self._clock,
                backoff_base=self._backoff_base,
                backoff_cap=self._backoff_cap,
            )
            self._binds.append(_Bind(reconnector))
            await reconnector.start()

    async def stop(self) -> None:
        """Unbind every session (outstanding submits, and receipts and inbound messages being handed over,
        finish first)."""
        binds, self._binds = self._binds, []
        await asyncio.gather(*(b.reconnector.stop() for b in binds), return_exceptions=True)
        for batcher in (self._receipts, self._mo):
            if batcher is not None:
                await batcher.drain()

    async def submit(self, messages: list[OutboundSms]) -> list[SubmitResult]:
        # Single-part messages that may go now are queued on their sessions at once and their responses
        # awaited together: no task per message. Long ones, and those waiting for the rate, get a coroutine.
        results: list[SubmitResult | None] = [None] * len(messages)
        sent: list[tuple[int, asyncio.Future[SubmitSmResp]]] = []
        later: list[tuple[int, Coroutine[Any, Any, SubmitResult]]] = []
        texts: dict[tuple[str, str], tuple[int, list[bytes]]] = {}  # a batch is often one text to many
        for i, message in enumerate(messages):
            if i and i % SUBMIT_SLICE == 0:
                await asyncio.sleep(0)  # let what is queued go out, and responses in, while the rest is prepared
            text = (message.body, message.encoding)
            split = texts.get(text)
            if split is None:
                split = texts[text] = split_text(message.body, message.encoding)
            data_coding, parts = split
            if len(parts) > MAX_PARTS:
                results[i] = SubmitResult(None, f"Rejected: {len(parts)} parts, more than {MAX_PARTS}", permanent=True)
                continue
            a = addresses(message.sender, message.e164)
            if len(parts) > 1:
                later.append((i, self._submit_parts(a, data_coding, parts)))
                continue
            started = self._start(self._pdu(a, data_coding, parts[0], esm_class=0))
            if isinstance(started, SubmitResult):
                results[i] = started
            elif isinstance(started, asyncio.Future):
                sent.append((i, started))
            else:
                later.append((i, started))
        if later:
            for (i, _), result in zip(later, await asyncio.gather(*(c for _, c in later)), strict=True):
                results[i] = result
        if sent:
            await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
            for i, future in sent:
                results[i] = self._result(future)
        return [r if r is not None else SubmitResult(None, NO_BIND_ERROR) for r in results]

    async def resume(self, in_flight: list[InFlight]) -> None:
        if in_flight:
            log.info("smpp %s: %d messages await receipts from before the restart", self.name, len(in_flight))

    # --- submitting ---------------------------------------------------------------------------------------

    def new_session(self, handler: Handler | None = None, *, response_timeout: float | None = None) -> Session:
        """A session (not yet connected) as this carrier's binds make them. `probe` passes a handler and a
        response timeout of its own, to bind outside the reconnectors and see each bind's outcome."""
        return Session(
            host=self._host,
            port=self._port,
            system_id=self._system_id,
            password=self._password,
            system_type=self._system_type,
            handler=self if handler is None else handler,
            mode=BindMode.TRANSCEIVER,
            window=self._window,
            response_timeout=self._response_timeout if response_timeout is None else response_timeout,
            enquire_link_interval=self._enquire_link_interval,
        )

    def _choose(self) -> Session | None:
        """The bound session with the fewest of our submits outstanding or queued; round-robin among equals."""
        binds = self._binds
        if not binds:
            return None
        start = next(self._turn)
        best: Session | None = None
        for k in range(len(binds)):
            session = binds[(start + k) % len(binds)].reconnector.session
            if session is not None and (best is None or session.load < best.load):
                best = session
        return best

    async def _submit_parts(self, a: Addresses, data_coding: int, parts: list[bytes]) -> SubmitResult:
        """A long message: its parts one after another, in order, each waiting for its response."""
        ref = next(self._concat_refs) % 256
        refs: list[str] = []
        for seq, octets in enumerate(parts, start=1):
            pdu = self._pdu(a, data_coding, concat_udh(ref, len(parts), seq) + octets, esm_class=ESM_UDHI)
            result = await self._submit_pdu(pdu)
            if result.carrier_ref is None:
                if refs:
                    log.warning(
                        "smpp %s: part %d of %d refused after %d accepted (%s)%s",
                        self.name, seq, len(parts), len(refs), result.error,
                        "" if result.permanent else "; the whole message will be sent again",
                    )  # fmt: skip
                return SubmitResult(None, f"{result.error} (part {seq} of {len(parts)})", result.permanent)
            refs.append(result.carrier_ref)
        return SubmitResult(refs[0], part_refs=tuple(refs))

    @staticmethod
    def _pdu(a: Addresses, data_coding: int, short_message: bytes, *, esm_class: int) -> SubmitSm:
        return SubmitSm(
            sequence=0,
            source_addr_ton=a.source_ton,
            source_addr_npi=a.source_npi,
            source_addr=a.source,
            dest_addr_ton=a.dest_ton,
            dest_addr_npi=a.dest_npi,
            destination_addr=a.destination,
            esm_class=esm_class,
            registered_delivery=REGISTERED_DELIVERY_FINAL,
            data_coding=data_coding,
            short_message=short_message,
        )

    async def _submit_pdu(self, pdu: SubmitSm) -> SubmitResult:
        started = self._start(pdu)
        if isinstance(started, SubmitResult):
            return started
        if isinstance(started, asyncio.Future):
            await asyncio.wait([started])
            return self._result(started)
        return await started

    def _start(self, pdu: SubmitSm) -> SubmitResult | asyncio.Future[SubmitSmResp] | Coroutine[Any, Any, SubmitResult]:
        """Take a rate token and queue `pdu` on a session: its response's future; the result, when it cannot
        go; or, when it has to wait for the rate, a coroutine that waits and then sends it."""
        session = self._choose()
        if session is None:  # before waiting for a token: a batch with no bind up fails at once
            return SubmitResult(None, NO_BIND_ERROR)
        wait = self._bucket.take(1)
        if wait > MAX_RATE_WAIT:
            # A batch larger than the rate gets through before the worker's claim runs out (its lease):
            # hand the rest back to be tried later rather than send it after the claim has passed to
            # another attempt, which would send it twice.
            self._bucket.take(-1)
            return SubmitResult(None, RATE_BUSY_ERROR)
        if wait:
            return self._send_after(wait, pdu)
        return self._send(session, pdu)

    async def _send_after(self, wait: float, pdu: SubmitSm) -> SubmitResult:
        await self._sleep(wait)
        session = self._choose()  # the one chosen before may be gone, or busier than another now
        if session is None:
            return SubmitResult(None, NO_BIND_ERROR)
        sent = self._send(session, pdu)
        if isinstance(sent, SubmitResult):
            return sent
        await asyncio.wait([sent])
        return self._result(sent)

    def _send(self, session: Session, pdu: SubmitSm) -> SubmitResult | asyncio.Future[SubmitSmResp]:
        try:
            return session.queue_submit(pdu)
        except PduError as error:  # nothing sent: the message cannot be carried as it is
            return SubmitResult(None, f"Rejected: {status_name(error.status)} ({error})", permanent=True)
        except ConnectionLost as error:
            return SubmitResult(None, f"Carrier error: {error}")
        except Exception as error:  # a bug must fail one message, not the batch
            log.exception("smpp %s: submit failed", self.name)
            return SubmitResult(None, f"Carrier error: {error!r}")

    def _result(self, future: asyncio.Future[SubmitSmResp]) -> SubmitResult:
        """The result of a submit whose response (or failure) is in."""
        if future.cancelled():
            return SubmitResult(None, "Carrier error: cancelled")
        error = future.exception()
        if error is not None:
            if isinstance(error, ConnectionLost | ResponseTimeout):
                return SubmitResult(None, f"Carrier error: {error}")
            if isinstance(error, Nacked):
                return SubmitResult(None, f"Carrier error: {error}", permanent=not is_transient(error.status))
            if isinstance(error, MalformedResponse):  # an unreadable "OK" may have been accepted: retry
                transient = error.status == CommandStatus.ESME_ROK or is_transient(error.status)
                return SubmitResult(None, f"Carrier error: {error}", permanent=not transient)
            # a bug must fail one message, not the batch
            log.error("smpp %s: submit failed", self.name, exc_info=error)
            return SubmitResult(None, f"Carrier error: {error!r}")
        response = future.result()
        if response.status != CommandStatus.ESME_ROK:
            name = status_name(response.status)
            if is_transient(response.status):
                return SubmitResult(None, f"Carrier busy: {name}")
            return SubmitResult(None, f"Rejected by carrier: {name}", permanent=True)
        if not response.message_id.strip():
            ref = f"noid-{uuid.uuid4().hex}"
            log.warning("smpp %s: submit accepted without a message_id; its receipt cannot match (%s)", self.name, ref)
            return SubmitResult(ref)
        return SubmitResult(message_id_key(response.message_id, self._id_form))

    # --- Handler: what the SMSC sends us ------------------------------------------------------------------

    async def handle_deliver_sm(self, pdu: DeliverSm) -> int:
        return (await self.handle_batch([pdu]))[0]

    async def handle_data_sm(self, pdu: DataSm) -> int:
        return (await self.handle_batch([pdu]))[0]

    async def handle_batch(self, pdus: list[DeliverSm | DataSm]) -> list[int]:
        """The SMSC's deliver_sm and data_sm of one read (session.BatchHandler): receipts go to the receipt
        sink, messages from handsets to the inbound sink, each group in one hand-over."""
        statuses = [CommandStatus.ESME_ROK] * len(pdus)
        receipts: list[tuple[int, Receipt]] = []
        inbound: list[tuple[int, InboundMessage]] = []
        for i, pdu in enumerate(pdus):
            if is_receipt(pdu):
                receipt = self._receipt(pdu)
                if receipt is not None:
                    receipts.append((i, receipt))
            else:
                message = self._mobile_originated(pdu)
                if message is not None:
                    inbound.append((i, message))
        if receipts and inbound:  # rare: both at once, so that neither waits for the other's write
            await asyncio.gather(
                _hand_over(self._receipts, receipts, statuses), _hand_over(self._mo, inbound, statuses)
            )
        else:
            await _hand_over(self._receipts, receipts, statuses)
            await _hand_over(self._mo, inbound, statuses)
        return list(statuses)

    def _receipt(self, pdu: DeliverSm | DataSm) -> Receipt | None:
        """What the store needs of a receipt; None for one that is acknowledged and dropped (unreadable, or
        intermediate)."""
        parsed = parse_receipt(pdu, details=False)
        if parsed is None:
            log.warning(
                "smpp %s: unreadable receipt (no id or state; esm_class 0x%02X) acknowledged and dropped",
                self.name,
                pdu.esm_class,
            )
            return None
        if not parsed.final:
            return None
        form = self._id_form if pdu.receipted_message_id else self._receipt_id_form
        state = parsed.state
        status = _STATUSES[state]
        error = None
        if status is not SmsStatus.DELIVERED:
            error = _STATE_WORDS[state] + (f" (err {parsed.error})" if parsed.error else "")
        return Receipt(self.name, message_id_key(parsed.message_id, form), status, error)

    def _mobile_originated(self, pdu: DeliverSm | DataSm) -> InboundMessage | None:
        """The message from a handset; None when there is no inbound sink (it is logged and acknowledged)."""
        octets = (pdu.short_message if isinstance(pdu, DeliverSm) else b"") or pdu.message_payload or b""
        if self._mo is None:
            log.info(
                "smpp %s: message from %s to %s (%d octets, data_coding %d) acknowledged; no inbound sink: dropped",
                self.name, mask_number(pdu.source_addr), pdu.destination_addr, len(octets), pdu.data_coding,
            )  # fmt: skip
            return None
        text, raw, part = decode_inbound(pdu.data_coding, octets, udhi=bool(pdu.esm_class & ESM_UDHI))
        return InboundMessage(
            carrier=self.name,
            source_addr=pdu.source_addr,
            destination_addr=pdu.destination_addr,
            body=text,
            data_coding=pdu.data_coding,
            raw=raw,
            received_at=self._clock.now_ms(),
            reference=None if part is None else part.reference,
            total=1 if part is None else part.total,
            seq=1 if part is None else part.seq,
        )
