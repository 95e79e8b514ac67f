"""Every exception Switchboard raises, in one tree (STYLE.md; httpx's `_exceptions.py` is the model).

    SwitchboardError
    ├── ConfigError                the configuration cannot be used
    ├── StoreError                 the database could not do what was asked
    │   ├── DuplicateName          an account with that name exists already
    │   └── IntegrityViolation     a constraint refused a write (a key used twice)
    ├── ProtocolError              a protocol module refused bytes or values (its only exception)
    │   ├── PduError               SMPP 3.4: a frame or PDU; .status as the SMSC would answer
    │   ├── SipParseError          SIP (RFC 3261): a message, header or URI
    │   ├── SdpError               SDP (RFC 4566, 3264): a description, or an answer we cannot use
    │   ├── AuthError              SIP digest (RFC 7616, 2617): a challenge we cannot answer
    │   └── RtpError               RTP (RFC 3550): a packet, or a stream that cannot open or play
    ├── NetworkError               another system over the network did not answer as asked
    │   ├── SmppError              one SMPP session's request ended without a response
    │   │   ├── ConnectionLost     not connected, or the connection ended
    │   │   ├── ResponseTimeout    no response in time; the request may have been acted on
    │   │   ├── BindFailed         the SMSC refused our bind: .status, .permanent
    │   │   ├── Nacked             the SMSC answered generic_nack: .status
    │   │   └── MalformedResponse  a response we could not decode: .status, .error
    │   ├── TransportError         the SIP UDP socket could not be opened or bound
    │   └── DeliveryFailed         a callback got no HTTP answer: .permanent
    │       └── NotSent            it was never sent: no connection to its host in time
    ├── RequestError               an HTTP request to the API that cannot be acted on as it came
    │   ├── BodyTooLarge           its body is over the limit
    │   ├── ClientGone             the client left before its whole body arrived
    │   ├── InvalidJson            its body is not JSON, even read leniently
    │   └── Refused                a handler answers at once with .response
    ├── AccountError               an account change that cannot be made; the message says why
    │   └── RotationInProgress     the webhook secret cannot be rotated again yet
    ├── EgressRefused              a callback target that must not be contacted: .rule
    ├── InvalidSignature           a callback that must not be trusted
    ├── SipTrunkError              a SIP trunk's settings or socket cannot be used
    ├── TransactionError           a SIP transaction used against its state machine (a bug)
    ├── AudioError                 an uploaded audio file that cannot be used
    ├── TtsError                   text to speech failed
    │   ├── UnsupportedLocale      the engine does not speak the locale
    │   └── RenderFailed           the engine produced no audio
    ├── PromptError                the audio of a call could not be prepared
    └── CliError                   a command-line mistake the user can fix

The families are what a caller may catch as one: `ProtocolError` is every codec's refusal of what a peer
sent or what the wire cannot carry; `NetworkError` is a peer that did not answer as asked, where trying
again later may help (`.permanent`, where there is one, says when it cannot); `StoreError` is the database,
whatever the driver.

Lower libraries' errors are translated once, where they enter: sqlite3 and asyncpg in each store backend
(`_translate`), aiohttp, ssl and OSError in `callbacks.transport.HttpTransport.post`, OSError and timeouts
in `sms.smpp.session.Session.connect` and its read loop, OSError in `voice.sip.transport.SipTransport.open`
and `voice.sip.rtp.RtpStream.open`, the speech cache's OSError in `voice.prompts.AudioLibrary`. `except
Exception` appears only at task and loop boundaries, where it logs and converts.

None of these is also a built-in exception (ValueError, OSError, TimeoutError): a caller catches ours by
name, and an `except OSError` meant for a socket, or an `except TimeoutError` meant for its own
`asyncio.timeout`, never catches one of ours by accident.

This module imports nothing of ours, so any module, `domain` included, may import it. Where an attribute's
type is one of ours it is annotated with what that is made of: `.status` an int (a `CommandStatus`), `.rule`
an `enum.Enum` (an egress `Rule`); `Refused.response` is Starlette's Response, imported for type checking only.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.responses import Response

__all__ = [
    "AccountError",
    "AudioError",
    "AuthError",
    "BindFailed",
    "BodyTooLarge",
    "CliError",
    "ClientGone",
    "ConfigError",
    "ConnectionLost",
    "DeliveryFailed",
    "DuplicateName",
    "EgressRefused",
    "IntegrityViolation",
    "InvalidJson",
    "InvalidSignature",
    "MalformedResponse",
    "Nacked",
    "NetworkError",
    "NotSent",
    "PduError",
    "PromptError",
    "ProtocolError",
    "Refused",
    "RenderFailed",
    "RequestError",
    "ResponseTimeout",
    "RotationInProgress",
    "RtpError",
    "SdpError",
    "SipParseError",
    "SipTrunkError",
    "SmppError",
    "StoreError",
    "SwitchboardError",
    "TransactionError",
    "TransportError",
    "TtsError",
    "UnsupportedLocale",
]


class SwitchboardError(Exception):
    """The root: every exception Switchboard raises (tree in the module docstring)."""


# --- configuration and storage ---------------------------------------------------------------------------


class ConfigError(SwitchboardError):
    """The configuration cannot be used; the message says which key and why."""


class StoreError(SwitchboardError):
    """The store could not do what was asked (the database is unreachable, a constraint failed). Each
    backend turns its driver's errors into this, in one place."""


class DuplicateName(StoreError):
    """An account with that name exists already (decided by the insert's conflict, not by an error's text)."""


class IntegrityViolation(StoreError):
    """The database refused a write for a constraint (a key used twice, a row that references nothing):
    each backend maps its driver's integrity error to this by type."""


# --- protocols: bytes ⇄ values ---------------------------------------------------------------------------


class ProtocolError(SwitchboardError):
    """A protocol module refused something: bytes from a peer that do not parse, or a value its wire format
    cannot carry. Each module raises its own subclass and nothing else, whatever the bytes."""


class PduError(ProtocolError):
    """A frame or a PDU the wire cannot carry, and the command_status that names what is wrong.

    `status` is a `CommandStatus` member (annotated as the int it is: this module imports nothing of ours).
    `command_id` and `sequence` are what could be read of the header (None when the frame was too short).
    A session answers a request it could not decode in one of two ways: a generic_nack (SMPP 3.4 §4.3) with
    `status` and `sequence` when the header is at fault (RINVCMDLEN, RINVCMDID), else the request's own
    response with `status` (e.g. a deliver_sm_resp with RINVMSGLEN). After an error from `FrameReader` the
    stream cannot be resynchronised: the session nacks and closes.
    """

    def __init__(
        self, message: str, *, status: int, command_id: int | None = None, sequence: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.command_id = command_id
        self.sequence = sequence


class SipParseError(ProtocolError):
    """A SIP message, header value or URI the grammar refuses, or a value the wire cannot carry."""


class SdpError(ProtocolError):
    """A session description we cannot read, or an answer we cannot use (see `voice.sip.sdp`)."""


class AuthError(ProtocolError):
    """A SIP digest challenge we cannot read or answer, or an input the header cannot carry."""


class RtpError(ProtocolError):
    """A datagram that is not RTP, a value the header cannot carry; or, from `RtpStream`, no free port, a
    socket that cannot be opened, or a stream used after `close`."""


# --- peers over the network ------------------------------------------------------------------------------


class NetworkError(SwitchboardError):
    """Another system over the network did not answer as asked: no socket, no connection, no answer in
    time, or a refusal of the link itself. Each subclass says whether trying again may help."""


class SmppError(NetworkError):
    """A request on an SMPP session ended without a response (tree in `sms.smpp.session`)."""


class ConnectionLost(SmppError):
    """No connection to send on, or it ended while the request waited. Its `__cause__` is the socket's
    error when there was one."""


class ResponseTimeout(SmppError):
    """No response within response_timeout; the request may or may not have been acted on.

    Not a TimeoutError: a caller that bounds its own wait with `asyncio.timeout` catches TimeoutError for
    that, and must not mistake the SMSC's silence (the session stays up) for its own deadline."""


class _StatusError(SmppError):
    """An SMSC's answer that carries a command_status: `status` (a `CommandStatus` member, or the int of a
    vendor's status). The raiser writes the status's name into the message (`pdu.status_name`)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class BindFailed(_StatusError):
    """The SMSC answered our bind with an error status (or a generic_nack, or we could not encode the bind).
    `permanent` for credentials the SMSC refuses (password, system_id, system_type): waiting will not fix
    them, an operator will."""

    def __init__(self, message: str, *, status: int, permanent: bool) -> None:
        super().__init__(message, status=status)
        self.permanent = permanent


class Nacked(_StatusError):
    """The SMSC answered generic_nack: it could not take our PDU at all (SMPP 3.4 §4.3)."""


class MalformedResponse(_StatusError):
    """The response to a request could not be decoded; `status` is its header's command_status, `error` the
    codec's refusal."""

    def __init__(self, message: str, *, status: int, error: PduError) -> None:
        super().__init__(message, status=status)
        self.error = error


class TransportError(NetworkError):
    """The SIP UDP socket could not be opened or bound."""


class DeliveryFailed(NetworkError):
    """No HTTP answer to a callback: the target was refused by the egress guard, did not resolve, could not
    be connected to, or did not answer in time. `permanent` when trying again cannot help (the URL itself is
    refused)."""

    def __init__(self, reason: str, *, permanent: bool = False, latency_ms: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.latency_ms = latency_ms
        """From sending to giving up (the timeout, at most), not counting the wait for a connection."""


class NotSent(DeliveryFailed):
    """The post waited for one of its host's connections longer than the transport allows (`max_wait`) and
    was never sent: not an attempt; try it again later."""


# --- the HTTP API ----------------------------------------------------------------------------------------


class RequestError(SwitchboardError):
    """An HTTP request to the API that cannot be acted on as it came; each is answered with the endpoint's
    documented error, never a 500 (ClientGone is not answered: nobody is listening)."""


class BodyTooLarge(RequestError):
    """The request body is over the limit."""


class ClientGone(RequestError):
    """The client disconnected before its whole body arrived: nothing of it may be acted on."""


class InvalidJson(RequestError):
    """The body cannot be read as JSON, even leniently."""


class Refused(RequestError):
    """Raised inside an `authenticated` handler to answer with `response` at once."""

    def __init__(self, response: Response) -> None:
        super().__init__(response)
        self.response = response


# --- services --------------------------------------------------------------------------------------------


class AccountError(SwitchboardError):
    """A request about accounts that cannot be done; the message says why."""


class RotationInProgress(AccountError):
    """The webhook secret cannot be rotated again yet."""


class EgressRefused(SwitchboardError):
    """A callback target that must not be contacted; `rule` (an `egress.Rule`) says which check refused it,
    `detail` what it found."""

    def __init__(self, rule: enum.Enum, detail: str) -> None:
        super().__init__(f"callback target refused ({rule.value}): {detail}")
        self.rule = rule
        self.detail = detail


class InvalidSignature(SwitchboardError):
    """A callback that must not be trusted: a header missing or malformed, a timestamp outside the tolerance,
    or no v1 signature that matches. The message says which, for the receiver's log."""


class SipTrunkError(SwitchboardError):
    """Settings a SIP trunk cannot work with, or a SIP socket that cannot be bound (the TransportError is its
    `__cause__`)."""


class TransactionError(SwitchboardError):
    """A SIP transaction used in a way its state machine does not allow (a programming error)."""


# --- voice content ---------------------------------------------------------------------------------------


class AudioError(SwitchboardError):
    """The audio cannot be used; the message says why in words an uploader understands."""


class TtsError(SwitchboardError):
    """Text to speech failed: the engine cannot be loaded, or could not speak the text."""


class UnsupportedLocale(TtsError):
    """The locale is not one the engine speaks (API error 5004)."""

    def __init__(self, locale: str) -> None:
        super().__init__(f"locale {locale!r} is not supported")
        self.locale = locale


class RenderFailed(TtsError):
    """The engine did not produce audio for the text."""


class PromptError(SwitchboardError):
    """The audio of a call could not be prepared (the call fails with General Error)."""


class CliError(SwitchboardError):
    """A mistake the user can fix on the command line; printed without a traceback, exit status 2."""
