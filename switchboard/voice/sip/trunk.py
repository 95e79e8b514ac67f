"""`SipTrunk`: the `Trunk` (voice/trunk.py) that places calls through a SIP trunk or PBX over UDP.

The connector of the SIP stack (STYLE.md): it owns one `SipTransport` (one UDP socket) for all its calls,
opens one `RtpStream` per call on the trunk's RTP port range (paced by the `RtpClock` shared by every
call), runs each call as an `OutgoingCall` (dialog.py), and maps how it ended to the contract's call
status and reason (ARCHITECTURE.md §2, "Calls and call records"):

| what happened | status / reason |
|---|---|
| 2xx, we played the audio to its end and sent BYE | Answered / NA |
| 2xx, the far end sent BYE first | Answered / CallerHangUp |
| a final non-2xx response | `sip_outcome(code)`: 486 Busy, 480 NoAnswer, 403 Failed/Blocked, ... |
| our CANCEL on ring timeout (487) | NoAnswer / Timeout |
| no response at all (Timer B), a 2xx without usable SDP, no RTP port | Failed / General Error |
| `call.stop` set | `stopped=True` (the dialer puts its reason) |

Times: `call_time` when the first INVITE was sent, `answer_time` when the 2xx arrived, `end_time` when the
hang-up or the final response completed; `detail` says it for people ("SIP 486 Busy Here").

Health (`up`): the trunk is up once started, unless the last `down_after` calls in a row got no response at
all (Timer B) or its host could not be resolved: then it reports down for `down_for` seconds, so routing
fails over to the next trunk; afterwards it is up again, and the next call tells. Any response resets the
count. Simple on purpose: no OPTIONS pinging.

Addresses: the SIP socket and the RTP sockets bind `bind_host` (0.0.0.0 by default); the address written
in Via, Contact and SDP is `public_host` when given (behind NAT), else `bind_host` when it is a specific
address, else the local address of the route to the trunk (a connected UDP socket, nothing sent).

The trunk's host name is resolved (A or AAAA, no SRV) when the socket opens, and again every `resolve_every`
seconds, beside the calls rather than before one: getaddrinfo tells no TTL, and a carrier that moves its SBC
(DNS failover) must not keep us on the old address until a restart. A look-up that fails or takes more than
`resolve_timeout` keeps the last address known; with none known yet, the call fails and the trunk is down.

Errors. `SipTrunkError` is raised by the constructor for settings that cannot work, and by
`start` when the SIP socket cannot be bound. `dial` never raises for what happens on the line, nor for a
trunk that cannot be reached: those are results (Failed / General Error with a detail).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import random
import re
import socket
import urllib.parse
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from switchboard.domain.clock import Clock
from switchboard.domain.statuses import CallReason, CallStatus, sip_outcome
from switchboard.errors import RtpError, SipTrunkError, TransportError
from switchboard.voice import audio
from switchboard.voice.sip import sdp
from switchboard.voice.sip.dialog import CallOutcome, DialogSettings, Ending, OutgoingCall, encode_frames
from switchboard.voice.sip.rtp import RtpClock, RtpStream
from switchboard.voice.sip.transaction import Timers
from switchboard.voice.sip.transport import Address, SipTransport, local_address_towards
from switchboard.voice.trunk import AnsweredHook, CallResult, OutboundCall

__all__ = [
    "HostResolver",
    "MediaOpener",
    "NumberFormat",
    "SharedFrames",
    "SipTrunk",
    "SipTrunkSettings",
    "format_number",
    "resolve_host",
]

log = logging.getLogger("switchboard.voice.sip")

STOP_GRACE = 2.0
"""At `stop`, seconds calls still under way get to send their CANCEL or BYE before the socket closes."""
_CODECS = {"PCMU": sdp.PCMU, "PCMA": sdp.PCMA}
# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved ); the rest is %-escaped.
_USER_SAFE = "-_.!~*'()&=+$,;?/"


class NumberFormat(enum.StrEnum):
    """How a number is written in a SIP URI's user part."""

    AS_GIVEN = "as_given"
    """As the request gave it (a caller ID keeps the Sender exactly, spaces and letters %-escaped)."""
    E164 = "e164"
    """`+` and the digits: +15005550000."""
    DIGITS = "digits"
    """The digits only: 15005550000."""


def format_number(number: str, fmt: NumberFormat) -> str:
    """`number` in `fmt`; a number without digits (an alphanumeric sender) stays as given."""
    if fmt is NumberFormat.AS_GIVEN:
        return number
    digits = re.sub(r"[^0-9]", "", number)
    if not digits:
        return number
    return f"+{digits}" if fmt is NumberFormat.E164 else digits


@dataclass(frozen=True, slots=True)
class SipTrunkSettings:
    host: str
    """The trunk's (or PBX's) host name or address: where INVITEs go, and the domain of the Request-URI."""
    port: int = 5060
    username: str = ""
    """For digest authentication (401/407); empty: the trunk trusts our address."""
    password: str = ""
    bind_host: str = "0.0.0.0"
    """The local address the SIP and RTP sockets bind."""
    bind_port: int = 0
    """The local SIP port; 0: any free one (a trunk that authenticates by address may want 5060)."""
    public_host: str | None = None
    """The address to advertise in Via, Contact and SDP instead of the one found (behind NAT)."""
    caller_id_format: NumberFormat = NumberFormat.AS_GIVEN
    number_format: NumberFormat = NumberFormat.E164
    """How the called number is written in the Request-URI and To."""
    dial_prefix: str = ""
    """Put before the called number (a trunk's technical prefix)."""
    from_domain: str | None = None
    """The domain of From; the trunk's host when not given."""
    rtp_ports: tuple[int, int] = (10000, 20000)
    """RTP ports, inclusive; even ones are used (RFC 3550 §11)."""
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    """Offered in this order of preference: PCMU and/or PCMA."""
    asserted_identity: bool = False
    """Also send P-Asserted-Identity with the caller (RFC 3325)."""
    user_agent: str = "Switchboard"
    cps: float = 10.0
    max_calls: int = 500
    down_after: int = 3
    """Calls in a row with no response at all before the trunk reports down."""
    down_for: float = 30.0
    """Seconds it then reports down."""
    resolve_every: float = 60.0
    """Seconds the trunk host's address is used before it is looked up again (a name, not an IP address)."""
    resolve_timeout: float = 10.0
    """Seconds a look-up of a host name may take (the resolver's own retries can last far longer)."""


class MediaOpener(Protocol):
    """How a call's RtpStream is opened: `RtpStream.open`, or a test's wrapper around it; RtpError when it
    cannot be."""

    def __call__(
        self, *, clock: RtpClock, rng: random.Random, host: str, port_range: tuple[int, int] | None
    ) -> Awaitable[RtpStream]: ...


class HostResolver(Protocol):
    """How a host name becomes addresses: `resolve_host` (the loop's getaddrinfo), or a test's fake. Raises
    OSError when the name has no address."""

    def __call__(self, host: str, port: int, *, family: int) -> Awaitable[Sequence[Address]]: ...


async def resolve_host(host: str, port: int, *, family: int) -> list[Address]:
    """The addresses of `host` for UDP, by the event loop's getaddrinfo (in a thread: it blocks)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
    except UnicodeError as exc:  # a name the IDNA codec refuses (an empty or 64+ character label)
        raise OSError(f"{host!r} is not a valid host name: {exc}") from exc
    return [(str(info[4][0]), int(info[4][1])) for info in infos]


class SharedFrames:
    """The encoded frames of the audio the trunk's calls play, one copy per audio and G.711 law.

    The dialer hands every call of a request the same PCM object; encoding it per call would cost 500 calls
    of a 10-minute campaign 500 copies of ~6 MB, and the event loop ~30 ms per answer. A call `hold`s its
    audio from dialling to hang-up and `release`s it then; an entry lives while a call holds it. Entries are
    found by the PCM object's id, which stays that object's while a holder keeps a reference to it.
    """

    def __init__(self) -> None:
        self._entries: dict[int, _Held] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def hold(self, pcm: bytes) -> None:
        held = self._entries.setdefault(id(pcm), _Held(pcm))
        held.holders += 1

    def release(self, pcm: bytes) -> None:
        held = self._entries.get(id(pcm))
        if held is not None and held.pcm is pcm:
            held.holders -= 1
            if held.holders <= 0:
                del self._entries[id(pcm)]

    def frames(self, pcm: bytes, codec: audio.Codec) -> Sequence[bytes]:
        held = self._entries.get(id(pcm))
        if held is None or held.pcm is not pcm:
            return encode_frames(pcm, codec)  # held by no call: nothing to share it with
        if codec not in held.encoded:
            held.encoded[codec] = encode_frames(pcm, codec)
        return held.encoded[codec]


@dataclass(slots=True)
class _Held:
    pcm: bytes
    holders: int = 0
    encoded: dict[audio.Codec, list[bytes]] = field(default_factory=dict)


class SipTrunk:
    """A `Trunk` over SIP; see the module docstring."""

    simulated = False

    @property
    def rtp_clock(self) -> RtpClock:
        """The clock pacing this trunk's audio (shared by every trunk of the process)."""
        return self._rtp_clock

    def __init__(
        self,
        *,
        name: str,
        settings: SipTrunkSettings,
        clock: Clock,
        rtp_clock: RtpClock,
        rng: random.Random | None = None,
        timers: Timers | None = None,
        open_media: MediaOpener = RtpStream.open,
        resolve: HostResolver = resolve_host,
    ) -> None:
        _check(settings)
        self.name = name
        self.settings = settings
        self.max_calls = settings.max_calls
        self.cps = settings.cps
        self._clock = clock
        self._rtp_clock = rtp_clock
        self._rng = rng or random.SystemRandom()
        self._timers = timers or Timers()
        self._open_media = open_media
        self._resolver = resolve
        self._resolved_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self._codecs = tuple(_CODECS[name.upper()] for name in settings.codecs)
        self._transport: SipTransport | None = None
        self._destination: Address | None = None
        self._opening = asyncio.Lock()
        self._started = False
        self._silent_calls = 0
        self._down_until = 0.0
        self._calls: set[OutgoingCall] = set()
        self._frames = SharedFrames()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def up(self) -> bool:
        return self._started and self._clock.monotonic() >= self._down_until

    @property
    def transport(self) -> SipTransport | None:
        """The SIP socket, once open (its counters are worth a metric)."""
        return self._transport

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    async def start(self) -> None:
        """Bind the SIP socket. A trunk host that does not resolve yet leaves the trunk down for a while
        (tried again by the next call); a local address that cannot be bound raises SipTrunkError."""
        self._started = True
        try:
            await self._ready()
        except TransportError as exc:
            raise SipTrunkError(f"trunk {self.name}: {exc}") from exc
        except OSError as exc:
            log.error("trunk %s: cannot reach %s: %s", self.name, self.settings.host, exc)

    async def stop(self) -> None:
        """End the calls still under way (one CANCEL or BYE each) and release the socket."""
        for dialog in list(self._calls):
            dialog.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), STOP_GRACE)
        refreshing, self._refreshing = self._refreshing, None
        if refreshing is not None:
            refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refreshing
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._started = False

    async def _ready(self) -> tuple[SipTransport, Address]:
        """The open transport and the trunk's address, opening and resolving them the first time."""
        async with self._opening:
            if self._transport is not None and self._destination is not None:
                self._refresh_if_due()
                return self._transport, self._destination
            s = self.settings
            try:
                destination = await self._resolve()
                advertised = s.public_host or s.bind_host
                if _unspecified(advertised):
                    advertised = local_address_towards(*destination)
            except OSError:  # no address for the host, or no route to it: down for a while
                self._down_until = self._clock.monotonic() + s.down_for
                raise
            self._transport = await SipTransport.open(
                bind_host=s.bind_host,
                bind_port=s.bind_port,
                advertised_host=advertised,
                timers=self._timers,
                user_agent=s.user_agent,
            )
            self._destination = destination
            log.info(
                "trunk %s: SIP on %s:%d (advertised %s) to %s:%d",
                self.name, *self._transport.bound, advertised, *destination,
            )  # fmt: skip
            return self._transport, destination

    async def _resolve(self) -> Address:
        s = self.settings
        family = socket.AF_INET6 if ipaddress.ip_address(s.bind_host).version == 6 else socket.AF_INET
        if _is_ip(s.host):
            return (s.host, s.port)
        self._resolved_at = self._clock.monotonic()
        try:
            async with asyncio.timeout(s.resolve_timeout):
                addresses = await self._resolver(s.host, s.port, family=family)
        except TimeoutError:
            raise OSError(f"looking up {s.host} took more than {s.resolve_timeout:g} s") from None
        except UnicodeError as exc:
            raise OSError(f"{s.host!r} is not a valid host name: {exc}") from exc
        if not addresses:
            raise OSError(f"{s.host} has no address")
        return addresses[0]

    def _refresh_if_due(self) -> None:
        """Look the trunk's host name up again once `resolve_every` has passed, in a task of its own: the
        calls go on to the address known meanwhile."""
        s = self.settings
        due = self._resolved_at + s.resolve_every
        if _is_ip(s.host) or self._refreshing is not None or self._clock.monotonic() < due:
            return
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh(), name=f"sip-resolve-{self.name}")

    async def _refresh(self) -> None:
        try:
            destination = await self._resolve()
        except OSError as exc:
            log.warning("trunk %s: looking up %s again failed (%s); still using %s", self.name, self.settings.host,
                        exc, self._destination)  # fmt: skip
            return
        finally:
            self._refreshing = None
        if destination != self._destination:
            log.info("trunk %s: %s is now %s:%d (was %s)", self.name, self.settings.host, *destination,
                     self._destination)  # fmt: skip
            self._destination = destination

    async def dial(self, call: OutboundCall, *, on_answered: AnsweredHook) -> CallResult:
        if call.stop.is_set():
            return CallResult(CallStatus.FAILED, CallReason.GENERAL_ERROR, None, None, self._clock.now_ms(), None, True)
        try:
            transport, destination = await self._ready()
        except (TransportError, OSError) as exc:  # the socket cannot be bound, or the host cannot be reached
            return self._failed(f"trunk {self.name} unreachable: {exc}")
        s = self.settings
        try:
            media = await self._open_media(
                clock=self._rtp_clock, rng=self._rng, host=s.bind_host, port_range=s.rtp_ports
            )
        except RtpError as exc:
            return self._failed(f"no RTP port: {exc}")
        dialog: OutgoingCall | None = None
        try:
            dialog = OutgoingCall(
                transport=transport,
                settings=self._dialog_settings(transport, destination),
                media=media,
                caller=_user(format_number(call.caller, s.caller_id_format) or "anonymous"),
                callee=_user(s.dial_prefix + format_number(call.e164, s.number_format)),
                audio_pcm=call.audio,
                ring_timeout=call.ring_timeout,
                stop=call.stop,
                clock=self._clock,
                rng=self._rng,
                on_answered=on_answered,
                frames=self._frames.frames,
            )
            self._frames.hold(call.audio)
            self._calls.add(dialog)
            self._idle.clear()
            outcome = await dialog.run()
        except Exception:  # a bug, not the line: the call must still end with a result
            log.exception("trunk %s: call %d failed", self.name, call.call_id)
            return self._failed("internal error placing the call")
        finally:
            media.close()
            if dialog is not None:
                self._frames.release(call.audio)
                self._calls.discard(dialog)
            if not self._calls:
                self._idle.set()
        self._note_health(outcome)
        log.debug("trunk %s: call %d %s: %s", self.name, call.call_id, outcome.ending.value, outcome.detail)
        return _result(outcome)

    def _dialog_settings(self, transport: SipTransport, destination: Address) -> DialogSettings:
        s = self.settings
        host = f"[{s.host}]" if ":" in s.host else s.host
        domain = host if s.port == 5060 else f"{host}:{s.port}"
        return DialogSettings(
            destination=destination,
            domain=domain,
            from_domain=s.from_domain or host,
            username=s.username,
            password=s.password,
            user_agent=s.user_agent,
            codecs=self._codecs,
            asserted_identity=s.asserted_identity,
            # the far end resends its 2xx for 64·T1 waiting for our ACK (§13.3.1.4): a Contact's name must
            # resolve well within that, or the ACK goes to the trunk's address
            resolve_timeout=min(s.resolve_timeout, 64 * self._timers.t1 / 4),
        )

    def _note_health(self, outcome: CallOutcome) -> None:
        if outcome.ending is Ending.NO_RESPONSE:
            self._silent_calls += 1
            if self._silent_calls >= self.settings.down_after:
                self._down_until = self._clock.monotonic() + self.settings.down_for
                log.warning(
                    "trunk %s: %d calls in a row without any response; down for %g s",
                    self.name, self._silent_calls, self.settings.down_for,
                )  # fmt: skip
        elif outcome.responded:
            self._silent_calls = 0
            self._down_until = 0.0

    def _failed(self, detail: str) -> CallResult:
        log.warning("trunk %s: %s", self.name, detail)
        return CallResult(CallStatus.FAILED, CallReason.GENERAL_ERROR, None, None, self._clock.now_ms(), detail)


def _result(outcome: CallOutcome) -> CallResult:
    ending = outcome.ending
    stopped = False
    if ending is Ending.PLAYED:
        status, reason = CallStatus.ANSWERED, CallReason.NA
    elif ending is Ending.REMOTE_BYE:
        status, reason = CallStatus.ANSWERED, CallReason.CALLER_HANG_UP
    elif ending is Ending.REJECTED and outcome.status is not None:
        status, reason = sip_outcome(outcome.status)
    elif ending is Ending.RING_TIMEOUT:
        status, reason = CallStatus.NO_ANSWER, CallReason.TIMEOUT
    else:  # no response, an unusable answer, stopped
        status, reason = CallStatus.FAILED, CallReason.GENERAL_ERROR
        stopped = ending is Ending.STOPPED
    return CallResult(
        status=status,
        reason=reason,
        call_time=outcome.invited_at,
        answer_time=outcome.answered_at,
        end_time=outcome.ended_at,
        detail=outcome.detail or None,
        stopped=stopped,
    )


def _user(number: str) -> str:
    return urllib.parse.quote(number, safe=_USER_SAFE)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _check(s: SipTrunkSettings) -> None:
    if not s.host or not 0 < s.port < 65536:
        raise SipTrunkError(f"a SIP trunk needs a host and a port 1..65535, not {s.host!r}:{s.port}")
    try:
        ipaddress.ip_address(s.bind_host)
    except ValueError:
        raise SipTrunkError(f"bind_host must be an IP address, not {s.bind_host!r}") from None
    if s.public_host is not None and not _is_ip(s.public_host):
        # it is written in SDP's c= line too, which our offer fills with an address (RFC 4566 §5.7)
        raise SipTrunkError(f"public_host must be an IP address, not {s.public_host!r}")
    low, high = s.rtp_ports
    if not 0 < low <= high < 65536 or low + (low & 1) > high:
        raise SipTrunkError(f"rtp_ports {low}..{high} holds no even port")
    unknown = [c for c in s.codecs if c.upper() not in _CODECS]
    if not s.codecs or unknown:
        raise SipTrunkError(f"codecs must be PCMU and/or PCMA, not {list(s.codecs)}")
    if s.max_calls < 1 or s.cps <= 0 or s.down_after < 1 or s.down_for < 0:
        raise SipTrunkError("max_calls, cps and down_after must be positive, down_for not negative")
    if s.resolve_every <= 0 or s.resolve_timeout <= 0:
        raise SipTrunkError("resolve_every and resolve_timeout must be positive")
    for text in (s.username, s.password, s.dial_prefix, s.user_agent, s.from_domain or ""):
        if any(c in text for c in "\r\n\0"):
            raise SipTrunkError("trunk settings must not hold CR, LF or NUL")
