"""One outgoing call as a UAC (RFC 3261 §12-§15): INVITE with an SDP offer, digest authentication, ringing,
CANCEL, the 2xx and its ACK, the audio, and the BYE from either side.

`OutgoingCall(...).run()` places the call and returns how it ended, a `CallOutcome`; it never raises for
what happens on the line. It is a state machine over one inbox: the transactions' responses and timeouts,
the far end's requests (given to `handle_request` by the transport), the caller's stop, the ring timer
and the end of the audio all become events, read in order by one coroutine. That is why it is longer than
our usual ~400 lines: ringing, talking and hanging up share the inbox, the dialog state (tags, route set,
remote target, CSeq) and the far end's in-dialog requests, which can arrive in any of them.

The call, step by step:
- INVITE (CSeq 1) with our offer: PCMU, PCMA, telephone-event (RFC 4733), our RTP address and port.
- 401 / 407: the transaction ACKs it (§17.1.1.3); we send the INVITE again with Authorization or
  Proxy-Authorization, the next CSeq, the same Call-ID and From tag (§22.2), keeping the credentials given
  to other realms (a proxy's 407 after the server's 401, §22.3). A realm that challenges again means wrong
  credentials, unless it says the nonce was only stale (RFC 2617 §3.2.1); then, or after MAX_AUTH_RETRIES
  INVITEs with credentials, the challenge is the final answer. qop=auth-int digests the SDP body.
- 1xx: ringing. A 183 (or 180) with SDP is early media: negotiated, kept in case the 2xx has no SDP,
  never played.
- Ring timeout or stop while ringing: CANCEL (§9.1), but only once a provisional response came: before,
  the CANCEL could overtake the INVITE, so we wait for one (or for Timer B). Then we expect 487 for the
  INVITE (the transaction ACKs it); if no final comes 64·T1 after the CANCEL, the INVITE is given up (§9.1).
  A 2xx that crosses our CANCEL is ACKed and hung up at once (§15, the call was not wanted any more).
- 2xx: the dialog is confirmed (§12.1.2: remote tag, route set from Record-Route reversed, remote target
  from Contact); the ACK is a new request with its own branch, the INVITE's CSeq number and credentials
  (§13.2.2.4), sent to the first Route or the remote target, and sent again for every retransmission of
  the 2xx. A 2xx from another branch of a forked INVITE is ACKed and hung up (§13.2.2.4).
- The answer's SDP is negotiated (RFC 3264): no usable SDP (none, no common codec) → ACK then BYE. The
  audio (8 kHz 16-bit PCM) is encoded in the negotiated law and played, 20 ms frames on the RtpStream.
- The audio ends (or there was none) → BYE; a BYE from the far end → 200 and the audio stops; stop → BYE.
  A BYE challenged with 401/407 is sent once more with credentials.
- The far end's re-INVITE (§14.2) is answered 200 with our original SDP (unchanged, so the same o= version,
  RFC 3264 §8) after moving our RTP to the address it offers; the 2xx is retransmitted until its ACK
  (§13.3.1.4). One we cannot use gets 488 and the call goes on as it was. OPTIONS and INFO get 200; other
  methods 405; a CANCEL of a re-INVITE (already answered) 200, of anything else 481 (§9.2); a request of
  another dialog or before ours is confirmed 481; an out-of-order CSeq 500 (§12.2.2).
- The task running `run` cancelled: a CANCEL (ringing) or BYE (answered) goes out, nothing is awaited, and
  the INVITE transaction is ended rather than left retransmitting or waiting.

Times are the injected clock's milliseconds: `invited_at` when the first INVITE went out, `answered_at`
when the 2xx arrived (none for a 2xx that crossed our CANCEL: the call was given up first), `ended_at` when
the hang-up completed (the BYE's response, or when it was sent if none came; the far end's BYE when it hung
up; the final response when the call was not answered).

Errors. Nothing is raised for what happens on the line: every ending is a `CallOutcome`. A programming
error or a value the wire cannot carry (a caller with CR/LF) raises `SipParseError` from building the
INVITE, before anything is sent.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from switchboard.domain.clock import Clock
from switchboard.errors import AuthError, SdpError, SipParseError
from switchboard.voice import audio
from switchboard.voice.sip import sdp
from switchboard.voice.sip.auth import Challenge, authorization, choose_challenge, new_cnonce
from switchboard.voice.sip.message import (
    MAX_FORWARDS,
    CSeq,
    Headers,
    NameAddr,
    RandomSource,
    Request,
    Response,
    Via,
    cancel_for,
    new_branch,
    new_call_id,
    new_tag,
    parse_name_addr,
    parse_uri,
    response_to,
)
from switchboard.voice.sip.rtp import RtpStream
from switchboard.voice.sip.transaction import ClientTransaction, InviteClientTransaction, State
from switchboard.voice.sip.transport import ALLOW, Address, SipTransport

__all__ = ["CallOutcome", "DialogSettings", "Ending", "FrameSource", "OutgoingCall", "encode_frames"]

log = logging.getLogger("switchboard.voice.sip.dialog")

DEFAULT_PORT = 5060
"""The port of a sip: URI without one (RFC 3261 §19.1.2)."""
MAX_AUTH_RETRIES = 3
"""INVITEs sent again with credentials at most: one per realm that challenges (a proxy's and the server's) or
stale nonce, so that no far end can keep us in a loop of challenges."""


class Ending(enum.Enum):
    """How a call ended, in SIP terms; the trunk maps it to a call status and reason."""

    PLAYED = "played"
    """Answered; we played the audio to its end and hung up."""
    REMOTE_BYE = "remote_bye"
    """Answered; the called party hung up first (their BYE)."""
    REJECTED = "rejected"
    """A final non-2xx response to the INVITE: `status` says which."""
    RING_TIMEOUT = "ring_timeout"
    """Not answered within the ring timeout: we cancelled."""
    NO_RESPONSE = "no_response"
    """No response at all to the INVITE (Timer B)."""
    UNUSABLE_ANSWER = "unusable_answer"
    """Answered, but its SDP had nothing we can send (no SDP, no common codec): ACKed, then BYE."""
    STOPPED = "stopped"
    """Our side asked to end it (cancelled through the API, or shutting down)."""


@dataclass(frozen=True, slots=True)
class CallOutcome:
    ending: Ending
    invited_at: int
    answered_at: int | None
    ended_at: int
    status: int | None = None
    """The INVITE's final status (200, 486, 487, ...); None when none came."""
    reason: str = ""
    """Its reason phrase."""
    detail: str = ""
    """For people: what happened, in a few words."""
    codec: str | None = None
    """The negotiated codec (PCMU, PCMA) once answered with usable SDP."""
    payload_type: int | None = None
    responded: bool = False
    """Whether the far end answered anything at all (the trunk's health)."""


@dataclass(frozen=True, slots=True)
class DialogSettings:
    """What every call of one trunk shares."""

    destination: Address
    """Where requests outside the dialog go: the trunk's resolved address (INVITE, CANCEL)."""
    domain: str
    """host[:port] of the Request-URI and To: sip:<number>@<domain>."""
    from_domain: str
    username: str = ""
    password: str = ""
    user_agent: str = "Switchboard"
    codecs: tuple[sdp.Codec, ...] = (sdp.PCMU, sdp.PCMA)
    telephone_event_pt: int | None = 101
    asserted_identity: bool = False
    """Also send the caller as P-Asserted-Identity (RFC 3325), which some trunks want for caller ID."""
    resolve_timeout: float = 5.0
    """Seconds a look-up of a host name in Contact or Record-Route may take; then the trunk's address is used."""


class _Signal(enum.Enum):
    STOP = "stop"
    RING_TIMEOUT = "ring_timeout"
    PLAYED = "played"
    CANCEL_EXPIRED = "cancel_expired"
    ABORT = "abort"


@dataclass(frozen=True, slots=True)
class _Answer:
    tx: ClientTransaction
    response: Response


@dataclass(frozen=True, slots=True)
class _Expired:
    tx: ClientTransaction


@dataclass(frozen=True, slots=True)
class _Bye:
    at: int


_Event = _Signal | _Answer | _Expired | _Bye
AnsweredHook = Callable[[int], None]
FrameSource = Callable[[bytes, audio.Codec], Sequence[bytes]]
"""The 20 ms frames of 8 kHz PCM in a G.711 law: `encode_frames`, or a trunk's cache shared by its calls."""


def _nothing(_: int) -> None:
    return None


def encode_frames(pcm: bytes, codec: audio.Codec) -> list[bytes]:
    """8 kHz 16-bit little-endian PCM as 20 ms frames of `codec`."""
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.int16)
    return audio.frames(codec.encode(samples), codec=codec) if len(samples) else []


class OutgoingCall:
    """One call from `caller` to `callee` (user parts, already formatted for the trunk); see the module
    docstring. `media` is the call's RtpStream, opened by the trunk (which closes it); `audio` is 8 kHz
    16-bit mono PCM, little-endian."""

    def __init__(
        self,
        *,
        transport: SipTransport,
        settings: DialogSettings,
        media: RtpStream,
        caller: str,
        callee: str,
        audio_pcm: bytes,
        ring_timeout: float,
        stop: asyncio.Event,
        clock: Clock,
        rng: RandomSource,
        on_answered: AnsweredHook = _nothing,
        frames: FrameSource = encode_frames,
    ) -> None:
        self._transport = transport
        self._settings = settings
        self._media = media
        self._audio = audio_pcm
        self._ring_timeout = ring_timeout
        self._stop = stop
        self._clock = clock
        self._rng = rng
        self._on_answered = on_answered
        self._frames = frames
        self._loop = asyncio.get_running_loop()
        self._inbox: asyncio.Queue[_Event] = asyncio.Queue()
        self._handles: list[asyncio.TimerHandle] = []

        self.call_id = new_call_id(rng, transport.advertised_host)
        self.local_tag = new_tag(rng)
        self.request_uri = f"sip:{callee}@{settings.domain}"
        self._from = NameAddr(None, f"sip:{caller}@{settings.from_domain}", {"tag": self.local_tag})
        self._to = NameAddr(None, self.request_uri)
        self._contact = f"<sip:{caller}@{transport.sent_by}>"
        self._cseq = 0
        self._offer = sdp.offer(
            address=transport.advertised_host,
            port=media.local_address[1],
            session_id=rng.getrandbits(31),
            codecs=settings.codecs,
            telephone_event_pt=settings.telephone_event_pt,
        )
        self._invite_tx: InviteClientTransaction | None = None
        self._credentials: dict[str, tuple[str, str]] = {}
        """realm → (header, value): what the INVITE, its ACK and the BYE carry (§22.3)."""
        self._auth_tries = 0
        self._early: sdp.Negotiated | None = None
        self._responded = False

        # the dialog, once confirmed by a 2xx (§12.1.2)
        self._remote: NameAddr | None = None
        self._route: list[NameAddr] = []
        self._target = self.request_uri
        self._ack: bytes | None = None
        self._bye_sent = False
        self._ack_to: Address = settings.destination
        self._remote_cseq: int | None = None
        self._negotiated: sdp.Negotiated | None = None
        self._pending_2xx: tuple[int, asyncio.TimerHandle | None] | None = None
        self._reinvite_branch: str | None = None
        """The branch of the far end's last re-INVITE, which a CANCEL of it shares (§9.1)."""

        self.invited_at: int | None = None
        self.answered_at: int | None = None

    # --- the call ---

    async def run(self) -> CallOutcome:
        """Place the call and return how it ended."""
        self._transport.add_dialog(self.call_id, self.local_tag, self)
        watcher = self._loop.create_task(self._watch_stop(), name=f"sip-stop-{self.call_id}")
        try:
            return await self._ringing()
        except asyncio.CancelledError:
            self._abandon()
            raise
        finally:
            watcher.cancel()
            for handle in self._handles:
                handle.cancel()
            self._stop_2xx_retransmission()
            self._media.stop()
            self._transport.remove_dialog(self.call_id, self.local_tag)

    def _abandon(self) -> None:
        """The task running the call is cancelled: end the call on the line without waiting for anything,
        a CANCEL while it rings (§9.1), a BYE once it is up (§15), and leave no INVITE transaction behind
        (in Proceeding it has no timer of its own: it would wait for a final response forever)."""
        tx = self._invite_tx
        if tx is None:
            return
        request: Request | None = None
        destination = self._settings.destination
        if tx.state is State.PROCEEDING:
            request = cancel_for(tx.request)
        elif self._ack is not None and not self._bye_sent:
            self._cseq += 1
            request, _ = self._in_dialog("BYE", self._cseq)
            destination = self._ack_to
        if tx.state in (State.CALLING, State.PROCEEDING):
            tx.terminate()
        if request is not None:
            self._bye_sent = request.method == "BYE"
            self._transport.request(request, destination, on_response=_ignore_response, on_timeout=_ignore_timeout)

    def abort(self) -> None:
        """End the call at once (the trunk is stopping): one CANCEL or BYE is sent, no answer awaited."""
        self._inbox.put_nowait(_Signal.ABORT)

    async def _watch_stop(self) -> None:
        await self._stop.wait()
        self._inbox.put_nowait(_Signal.STOP)

    def _later(self, delay: float, signal: _Signal) -> asyncio.TimerHandle:
        handle = self._loop.call_later(max(0.0, delay), self._inbox.put_nowait, signal)
        self._handles.append(handle)
        return handle

    async def _ringing(self) -> CallOutcome:
        self._invite_tx = self._send_invite()
        self.invited_at = self._clock.now_ms()
        ring = self._later(self._ring_timeout, _Signal.RING_TIMEOUT)
        giving_up: Ending | None = None  # RING_TIMEOUT or STOPPED, once we want the call to end
        provisional = cancelled = False
        while True:
            event = await self._inbox.get()
            if isinstance(event, _Answer):
                if event.tx is not self._invite_tx:
                    continue  # the CANCEL's answer, or a late one to an INVITE sent again with credentials
                response = event.response
                status = response.status
                if status < 200:
                    provisional = True
                    self._early_media(response)
                    if giving_up is not None and not cancelled:
                        cancelled = self._cancel()
                elif status < 300:
                    ring.cancel()
                    if giving_up is not None:
                        return await self._unwanted_answer(response, giving_up)
                    return await self._talk(response)
                elif status in (401, 407) and giving_up is None and self._retry_with_credentials(response):
                    provisional = False
                else:
                    return self._final(response, giving_up)
            elif isinstance(event, _Expired):
                if event.tx is self._invite_tx:  # Timer B: nothing at all came back
                    ending = Ending.STOPPED if giving_up is Ending.STOPPED else Ending.NO_RESPONSE
                    timer_b = self._transport.timers.b
                    return self._outcome(ending, detail=f"no response to INVITE within {timer_b:g} s (Timer B)")
            elif event is _Signal.ABORT:
                if provisional and not cancelled:
                    self._cancel()
                return self._outcome(Ending.STOPPED, detail="the trunk stopped")
            elif event in (_Signal.STOP, _Signal.RING_TIMEOUT):
                if giving_up is not Ending.STOPPED:
                    giving_up = Ending.STOPPED if event is _Signal.STOP else Ending.RING_TIMEOUT
                if provisional and not cancelled:
                    cancelled = self._cancel()
            elif event is _Signal.CANCEL_EXPIRED:
                # §9.1: no final response 64·T1 after our CANCEL; the INVITE transaction is given up
                assert self._invite_tx is not None and giving_up is not None
                self._invite_tx.terminate()
                return self._outcome(giving_up, detail="CANCEL sent, no final response to the INVITE")

    def _final(self, response: Response, giving_up: Ending | None) -> CallOutcome:
        status = response.status
        detail = f"SIP {status} {response.reason}"
        if status in (401, 407):
            detail += " (credentials refused)" if self._auth_tries else " (no usable credentials)"
        if giving_up is Ending.STOPPED:
            return self._outcome(Ending.STOPPED, response, detail=detail)
        if giving_up is Ending.RING_TIMEOUT and status == 487:
            return self._outcome(Ending.RING_TIMEOUT, response, detail=self._ring_detail(response))
        return self._outcome(Ending.REJECTED, response, detail=detail)

    def _ring_detail(self, response: Response | None = None) -> str:
        final = f", SIP {response.status} {response.reason}" if response is not None else ""
        return f"not answered within {self._ring_timeout:g} s (CANCEL{final})"

    async def _unwanted_answer(self, ok: Response, giving_up: Ending) -> CallOutcome:
        """A 2xx that crossed our CANCEL: the call exists now, so it is ACKed and hung up (§9.1, §15). It is
        not counted as answered (no `answered_at`): we gave it up first, and nobody heard anything."""
        await self._confirm(ok)
        ended = await self._hang_up()
        detail = self._ring_detail() + " crossed by a 2xx: ACKed and hung up"
        if giving_up is Ending.STOPPED:
            detail = "stopped; a 2xx crossed our CANCEL: ACKed and hung up"
        return self._outcome(giving_up, ok, ended_at=ended, detail=detail)

    async def _talk(self, ok: Response) -> CallOutcome:
        self.answered_at = self._clock.now_ms()
        await self._confirm(ok)
        try:
            negotiated = self._negotiate(ok)
        except SdpError as exc:
            ended = await self._hang_up()
            detail = f"SIP {ok.status} {ok.reason} without usable SDP: {exc}"
            return self._outcome(Ending.UNUSABLE_ANSWER, ok, ended_at=ended, detail=detail)
        self._negotiated = negotiated
        self._on_answered(self.answered_at)
        self._play(negotiated)
        while True:
            event = await self._inbox.get()
            if event is _Signal.PLAYED:
                ended = await self._hang_up()
                return self._outcome(Ending.PLAYED, ok, ended_at=ended, detail="played to the end, then BYE")
            if isinstance(event, _Bye):
                self._media.stop()
                return self._outcome(Ending.REMOTE_BYE, ok, ended_at=event.at, detail="the called party hung up")
            if event is _Signal.STOP:
                self._media.stop()
                ended = await self._hang_up()
                return self._outcome(Ending.STOPPED, ok, ended_at=ended, detail="stopped, then BYE")
            if event is _Signal.ABORT:
                self._media.stop()
                ended = await self._hang_up(wait=False)
                return self._outcome(Ending.STOPPED, ok, ended_at=ended, detail="the trunk stopped")
            if isinstance(event, _Answer) and event.tx is self._invite_tx and 200 <= event.response.status < 300:
                self._late_2xx(event.response)

    # --- requests we send ---

    def _via(self) -> str:
        params: dict[str, str | None] = {"branch": new_branch(self._rng), "rport": None}  # RFC 3581
        return str(Via("UDP", self._transport.advertised_host, self._transport.port, params))

    def _send_invite(self) -> InviteClientTransaction:
        self._cseq += 1
        headers = Headers(
            [
                ("Via", self._via()),
                ("Max-Forwards", MAX_FORWARDS),
                ("From", str(self._from)),
                ("To", str(self._to)),
                ("Call-ID", self.call_id),
                ("CSeq", str(CSeq(self._cseq, "INVITE"))),
                ("Contact", self._contact),
            ]
        )
        if self._settings.asserted_identity:
            headers.add("P-Asserted-Identity", f"<{self._from.uri}>")
        for header, value in self._credentials.values():
            headers.add(header, value)
        headers.add("User-Agent", self._settings.user_agent)
        headers.add("Allow", ALLOW)
        headers.add("Content-Type", "application/sdp")
        request = Request("INVITE", self.request_uri, headers, self._offer)
        return self._transport.invite(
            request, self._settings.destination, on_response=self._on_response, on_timeout=self._on_timeout
        )

    def _retry_with_credentials(self, challenge: Response) -> bool:
        """Send the INVITE again with credentials for `challenge`, if we have any and may (§22.2, §22.3)."""
        s = self._settings
        if not s.username or self._auth_tries >= MAX_AUTH_RETRIES:
            return False
        try:
            chosen = self._challenge(challenge)
            credentials = self._answer(chosen, challenge.status, "INVITE", self.request_uri, self._offer)
        except AuthError as exc:
            log.warning("call %s: cannot answer the %d challenge: %s", self.call_id, challenge.status, exc)
            return False
        if chosen.realm in self._credentials and not chosen.stale:
            return False  # the realm we answered challenges again, and not for a stale nonce: wrong credentials
        self._credentials[chosen.realm] = credentials
        self._auth_tries += 1
        self._invite_tx = self._send_invite()
        return True

    @staticmethod
    def _challenge(response: Response) -> Challenge:
        """The challenge of a 401 (WWW-Authenticate) or 407 (Proxy-Authenticate) we would answer."""
        asked = "Proxy-Authenticate" if response.status == 407 else "WWW-Authenticate"
        return choose_challenge(response.headers.get_all(asked))

    def _answer(self, chosen: Challenge, status: int, method: str, uri: str, body: bytes) -> tuple[str, str]:
        """The (header, value) answering `chosen` of a 401 (Authorization) or 407 (Proxy-Authorization)."""
        s = self._settings
        header = "Proxy-Authorization" if status == 407 else "Authorization"
        value = authorization(
            chosen, method=method, uri=uri, username=s.username, password=s.password, cnonce=new_cnonce(self._rng),
            nc=1, body=body,
        )  # fmt: skip
        return header, value

    def _cancel(self) -> bool:
        """CANCEL the pending INVITE (§9.1) and give it 64·T1 to end with a final response."""
        assert self._invite_tx is not None
        request = cancel_for(self._invite_tx.request)
        self._transport.request(
            request, self._settings.destination, on_response=self._on_response, on_timeout=self._on_timeout
        )
        self._later(self._transport.timers.b, _Signal.CANCEL_EXPIRED)
        return True

    async def _confirm(self, ok: Response) -> None:
        """The dialog the 2xx creates (§12.1.2), and its ACK (§13.2.2.4)."""
        self._remote = ok.to_addr
        try:
            self._route = [parse_name_addr(value) for value in reversed(ok.headers.get_all("Record-Route"))]
        except SipParseError as exc:
            log.debug("call %s: Record-Route ignored: %s", self.call_id, exc)
            self._route = []
        contact = ok.headers.get("Contact")
        if contact is not None:
            try:
                self._target = parse_name_addr(contact).uri
            except SipParseError as exc:
                log.debug("call %s: Contact ignored: %s", self.call_id, exc)
        assert self._invite_tx is not None
        ack, hop = self._in_dialog("ACK", self._invite_tx.request.cseq.number)
        for header, value in self._credentials.values():
            ack.headers.add(header, value)  # §13.2.2.4: the ACK carries the INVITE's credentials
        self._ack_to = await self._resolve(hop)
        self._ack = ack.encode()
        self._transport.send_bytes(self._ack, self._ack_to)

    def _in_dialog(self, method: str, number: int, remote: NameAddr | None = None) -> tuple[Request, str]:
        """A request inside the dialog (§12.2.1.1) and the URI of its next hop."""
        routes = list(self._route)
        uri = self._target
        if routes and "lr" not in _uri_params(routes[0].uri):
            # a strict router: it becomes the Request-URI, and the remote target goes last in the Route set
            uri, routes = routes[0].uri, [*routes[1:], NameAddr(None, self._target)]
            hop = uri
        else:
            hop = routes[0].uri if routes else uri
        headers = Headers([("Via", self._via())])
        for route in routes:
            headers.add("Route", str(route))
        headers.add("Max-Forwards", MAX_FORWARDS)
        headers.add("From", str(self._from))
        headers.add("To", str(remote or self._remote or self._to))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", str(CSeq(number, method)))
        headers.add("User-Agent", self._settings.user_agent)
        return Request(method, uri, headers), hop

    async def _resolve(self, uri: str) -> Address:
        """Where a request for `uri` goes: its host and port (§8.1.2, without RFC 3263's NAPTR/SRV), the
        trunk's address for the trunk's own name or anything we cannot resolve."""
        try:
            parsed = parse_uri(uri)
        except SipParseError:
            return self._settings.destination
        if parsed.scheme != "sip" or not parsed.host:
            return self._settings.destination
        port = parsed.port or DEFAULT_PORT
        try:
            ipaddress.ip_address(parsed.host)
            return (parsed.host, port)
        except ValueError:
            pass
        if self._settings.domain in (parsed.host, f"{parsed.host}:{port}"):
            return self._settings.destination
        family = socket.AF_INET6 if ipaddress.ip_address(self._settings.destination[0]).version == 6 else socket.AF_INET
        try:
            async with asyncio.timeout(self._settings.resolve_timeout):
                infos = await self._loop.getaddrinfo(parsed.host, port, family=family, type=socket.SOCK_DGRAM)
        except (OSError, UnicodeError, TimeoutError) as exc:
            # UnicodeError: a name the IDNA codec refuses (an empty or 64+ character label), from a broken or
            # hostile far end; TimeoutError: a resolver that does not answer, while the far end waits for an ACK
            log.warning("call %s: cannot resolve %s (%r); using the trunk's address", self.call_id, parsed.host, exc)
            return self._settings.destination
        if not infos:
            return self._settings.destination
        return (str(infos[0][4][0]), int(infos[0][4][1]))

    async def _hang_up(self, *, wait: bool = True) -> int:
        """BYE (§15.1.1); when the hang-up was complete: the BYE's final response, or when it was sent."""
        self._cseq += 1
        request, hop = self._in_dialog("BYE", self._cseq)
        destination = await self._resolve(hop)
        sent_at = self._clock.now_ms()
        tx = self._transport.request(request, destination, on_response=self._on_response, on_timeout=self._on_timeout)
        self._bye_sent = True
        challenged = False
        while wait:
            event = await self._inbox.get()
            if isinstance(event, _Answer) and event.tx is tx:
                response = event.response
                if response.status < 200:
                    continue
                if response.status in (401, 407) and not challenged and self._settings.username:
                    challenged = True
                    try:
                        credentials = self._answer(self._challenge(response), response.status, "BYE", request.uri, b"")
                    except AuthError:
                        return self._clock.now_ms()
                    self._cseq += 1
                    request, _ = self._in_dialog("BYE", self._cseq)
                    request.headers.add(*credentials)
                    tx = self._transport.request(
                        request, destination, on_response=self._on_response, on_timeout=self._on_timeout
                    )
                    continue
                return self._clock.now_ms()
            if isinstance(event, _Expired) and event.tx is tx:
                return sent_at
            if event is _Signal.ABORT:
                return sent_at
            if isinstance(event, _Answer) and event.tx is self._invite_tx and 200 <= event.response.status < 300:
                self._late_2xx(event.response)
        return sent_at

    # --- what the transactions report ---

    def _on_response(self, tx: ClientTransaction, response: Response) -> None:
        self._responded = True
        if self._ack is not None and isinstance(tx, InviteClientTransaction) and 200 <= response.status < 300:
            self._late_2xx(response)  # confirmed already: answered right here, whatever the coroutine awaits
            return
        self._inbox.put_nowait(_Answer(tx, response))

    def _on_timeout(self, tx: ClientTransaction) -> None:
        self._inbox.put_nowait(_Expired(tx))

    def _late_2xx(self, response: Response) -> None:
        """A 2xx after the dialog was confirmed: a retransmission gets the ACK again (§13.2.2.4); one from
        another fork is ACKed and hung up."""
        assert self._ack is not None and self._remote is not None
        if response.to_addr.tag == self._remote.tag:
            self._transport.send_bytes(self._ack, self._ack_to)
            return
        log.info("call %s: 2xx from a second fork (tag %s): ACK and BYE", self.call_id, response.to_addr.tag)
        contact = response.headers.get("Contact")
        saved = self._target, self._route
        try:
            self._target = parse_name_addr(contact).uri if contact else self.request_uri
            self._route = []
            ack, _ = self._in_dialog("ACK", response.cseq.number, remote=response.to_addr)
            self._cseq += 1
            bye, _ = self._in_dialog("BYE", self._cseq, remote=response.to_addr)
        except SipParseError:
            return
        finally:
            self._target, self._route = saved
        destination = self._settings.destination
        self._transport.send(ack, destination)
        self._transport.request(bye, destination, on_response=_ignore_response, on_timeout=_ignore_timeout)

    # --- requests from the far end ---

    def handle_request(self, request: Request, source: Address) -> None:
        """A request of the far end in this dialog (the transport's `DialogHandler`)."""
        method = request.method
        remote = self._remote
        if remote is None or request.from_addr.tag != remote.tag:
            if method != "ACK":
                self._respond(request, source, 481, "Call/Transaction Does Not Exist")
            return
        if method == "ACK":
            self._acked(request)
            return
        if method == "CANCEL":
            # §9.2: the only requests of the far end we could hold are its re-INVITEs, each answered at once;
            # a CANCEL of one has no effect and gets 200, one matching none of them 481. It has the CSeq of
            # the request it cancels, so it is not a new request in the dialog's CSeq order either.
            known = self._reinvite_branch is not None and request.vias[0].branch == self._reinvite_branch
            self._respond(request, source, 200 if known else 481, "OK" if known else "Call/Transaction Does Not Exist")
            return
        number = request.cseq.number
        if self._remote_cseq is not None and number < self._remote_cseq:
            self._respond(request, source, 500, "Server Internal Error")  # out of order (§12.2.2)
            return
        self._remote_cseq = number
        if method == "BYE":
            self._respond(request, source, 200, "OK")
            self._inbox.put_nowait(_Bye(self._clock.now_ms()))
        elif method == "INVITE":
            self._reinvite(request, source)
        elif method == "OPTIONS":
            self._respond(request, source, 200, "OK", [("Allow", ALLOW), ("Accept", "application/sdp")])
        elif method == "INFO":
            self._respond(request, source, 200, "OK")
        else:
            self._respond(request, source, 405, "Method Not Allowed", [("Allow", ALLOW)])

    def _respond(
        self,
        request: Request,
        source: Address,
        status: int,
        reason: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> Response:
        response = response_to(request, status, reason, extra_headers=headers or [], body=body)
        self._transport.respond(request, response, source)
        return response

    def _reinvite(self, request: Request, source: Address) -> None:
        """A re-INVITE (§14.2): take its offer if we can use it, answer with our unchanged session."""
        self._reinvite_branch = request.vias[0].branch
        if request.body:
            codecs = (_sdp_codec(self._negotiated),) if self._negotiated is not None else self._settings.codecs
            try:
                offered = self._reachable(sdp.negotiate(sdp.parse(request.body), offered=codecs))
            except SdpError as exc:
                log.info("call %s: re-INVITE refused: %s", self.call_id, exc)
                self._respond(request, source, 488, "Not Acceptable Here")
                return
            if offered.we_send:
                self._media.set_remote(offered.address, offered.port)
        contact = request.headers.get("Contact")
        if contact is not None:
            try:
                self._target = parse_name_addr(contact).uri  # a target refresh (§12.2.2)
            except SipParseError:
                pass
        headers = [("Contact", self._contact), ("Allow", ALLOW), ("Content-Type", "application/sdp")]
        ok = self._respond(request, source, 200, "OK", headers, self._offer)
        self._stop_2xx_retransmission()
        self._retransmit_2xx(request.cseq.number, ok.encode(), source, self._transport.timers.t1, 0.0)

    def _retransmit_2xx(self, number: int, data: bytes, source: Address, interval: float, waited: float) -> None:
        """§13.3.1.4: the 2xx of a re-INVITE is sent again at T1, 2·T1, ... up to T2, until its ACK comes
        or 64·T1 have passed."""
        timers = self._transport.timers
        if waited >= 64 * timers.t1:
            self._pending_2xx = None
            return

        def again() -> None:
            self._transport.send_bytes(data, source)
            self._retransmit_2xx(number, data, source, min(2 * interval, timers.t2), waited + interval)

        self._pending_2xx = (number, self._loop.call_later(interval, again))

    def _stop_2xx_retransmission(self) -> None:
        if self._pending_2xx is not None and self._pending_2xx[1] is not None:
            self._pending_2xx[1].cancel()
        self._pending_2xx = None

    def _acked(self, ack: Request) -> None:
        if self._pending_2xx is not None and self._pending_2xx[0] == ack.cseq.number:
            self._stop_2xx_retransmission()
        if ack.body and self._negotiated is not None:
            try:  # the answer to the offer of our 2xx, when the re-INVITE had none
                answer = self._reachable(sdp.negotiate(sdp.parse(ack.body), offered=(_sdp_codec(self._negotiated),)))
            except SdpError:
                return
            if answer.we_send:
                self._media.set_remote(answer.address, answer.port)

    # --- media ---

    def _early_media(self, response: Response) -> None:
        if not response.body or response.status == 100:
            return
        try:
            self._early = sdp.negotiate(sdp.parse(response.body), offered=self._settings.codecs)
        except SdpError as exc:
            log.debug("call %s: early SDP ignored: %s", self.call_id, exc)

    def _negotiate(self, ok: Response) -> sdp.Negotiated:
        content_type = (ok.headers.get("Content-Type") or "application/sdp").split(";")[0].strip().lower()
        if ok.body and content_type == "application/sdp":
            return self._reachable(sdp.negotiate(sdp.parse(ok.body), offered=self._settings.codecs))
        if self._early is not None:
            return self._reachable(self._early)  # the 2xx repeats no SDP: the answer was the early one's (§13.2.1)
        raise SdpError("the 2xx has no SDP answer")

    def _reachable(self, negotiated: sdp.Negotiated) -> sdp.Negotiated:
        """`negotiated`, if our media socket can send to its address: an IP address of the socket's family.
        A host name (RFC 4566 §5.7 allows one in c=) is refused: `socket.sendto` would resolve it, blocking
        the event loop, for every 20 ms packet of the call."""
        if not negotiated.we_send:
            return negotiated
        try:
            version = ipaddress.ip_address(negotiated.address).version
        except ValueError:
            raise SdpError(f"the media address {negotiated.address!r} is not an IP address") from None
        ours = ipaddress.ip_address(self._media.local_address[0]).version
        if version != ours:
            raise SdpError(f"the media address {negotiated.address} is not IPv{ours}, as our RTP socket is")
        return negotiated

    def _play(self, negotiated: sdp.Negotiated) -> None:
        codec = audio.Codec[negotiated.codec_name]
        if negotiated.we_send:
            self._media.set_remote(negotiated.address, negotiated.port)
        frames = self._frames(self._audio, codec)
        if not frames:
            self._inbox.put_nowait(_Signal.PLAYED)  # nothing to say: hang up at once
            return

        def done(finished: asyncio.Future[bool]) -> None:
            if not finished.cancelled() and finished.result():
                self._inbox.put_nowait(_Signal.PLAYED)

        self._media.play(frames, negotiated.payload_type).add_done_callback(done)

    # --- the result ---

    def _outcome(
        self, ending: Ending, response: Response | None = None, *, ended_at: int | None = None, detail: str = ""
    ) -> CallOutcome:
        negotiated = self._negotiated
        return CallOutcome(
            ending=ending,
            invited_at=self.invited_at if self.invited_at is not None else self._clock.now_ms(),
            answered_at=self.answered_at,
            ended_at=ended_at if ended_at is not None else self._clock.now_ms(),
            status=response.status if response is not None else None,
            reason=response.reason if response is not None else "",
            detail=detail,
            codec=negotiated.codec_name if negotiated is not None else None,
            payload_type=negotiated.payload_type if negotiated is not None else None,
            responded=self._responded,
        )


def _sdp_codec(negotiated: sdp.Negotiated) -> sdp.Codec:
    return sdp.Codec(negotiated.payload_type, negotiated.codec_name, negotiated.clock_rate)


def _uri_params(uri: str) -> dict[str, str | None]:
    try:
        return parse_uri(uri).params
    except SipParseError:
        return {}


def _ignore_response(_: ClientTransaction, __: Response) -> None:
    return None


def _ignore_timeout(_: ClientTransaction) -> None:
    return None
