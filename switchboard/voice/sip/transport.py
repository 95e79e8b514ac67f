"""The UDP side of a SIP trunk (RFC 3261 §18): one socket, the client transactions on it, the dialogs it
serves, and the answers to whatever else arrives.

`SipTransport.open(...)` binds one UDP socket (an asyncio datagram endpoint, with a large SO_RCVBUF asked
for, best effort). On it:
- `invite` / `request` start a client transaction (transaction.py) and file it under its
  `transaction_key`; each response that arrives goes to the transaction with the same key (§17.1.3), and
  one that matches none is counted as stray and dropped (§18.1.2 would pass it to the core; the only
  responses our core wants outside a transaction are 2xx retransmissions, which the INVITE transaction's
  Accepted state already passes on, RFC 6026 §7.2).
- `send` puts a message on the wire outside any transaction: the ACK of a 2xx (§13.2.2.4).
- A request from the far end goes to the dialog registered under its Call-ID and To tag (our tag,
  §12.2.2). What matches no dialog is answered here: OPTIONS 200 (§11.2), an ACK nothing (never answered,
  §17.1.1.3), a request with a To tag or a CANCEL 481 (§12.2.2, §9.2), an INVITE 603 (we place calls, we do
  not take them), anything else 405 with Allow (§8.2.1).
- `respond` sends a response and remembers it for Timer J = 64·T1 (§17.2.2), so a retransmitted request
  gets the same answer again without reaching the dialog twice: the state of a server transaction, which is
  all a UAC needs of one. Responses go to the source address of the request (RFC 3581's symmetric response
  routing), which is also where a trunk behind NAT can be reached.
- A datagram that does not parse is dropped (logged at debug, counted in `invalid_datagrams`), as §18.3
  does with a broken UDP message: the transport never stops on a bad datagram, and an exception from a
  dialog's handler is logged and counted, not raised into the event loop.

Errors. `TransportError` is raised by `open` when the socket cannot be created or bound; a
send on a closed transport is dropped silently (the call it belonged to is being torn down).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from typing import Any, Protocol, TypeVar

from switchboard.errors import SipParseError, TransportError
from switchboard.voice.sip.message import (
    MAGIC_COOKIE,
    Request,
    Response,
    TransactionKey,
    parse,
    response_to,
    transaction_key,
)
from switchboard.voice.sip.transaction import (
    ClientTransaction,
    InviteClientTransaction,
    LoopScheduler,
    NonInviteClientTransaction,
    ResponseHook,
    Scheduler,
    TimeoutHook,
    Timers,
)

__all__ = [
    "ALLOW",
    "RECEIVE_BUFFER",
    "Address",
    "DialogHandler",
    "SipTransport",
    "local_address_towards",
]

log = logging.getLogger("switchboard.voice.sip.transport")

Address = tuple[str, int]
_Transaction = TypeVar("_Transaction", InviteClientTransaction, NonInviteClientTransaction)
"""What `SipTransport._start` starts: an INVITE or a non-INVITE client transaction."""
RECEIVE_BUFFER = 4 << 20
"""SO_RCVBUF asked for: a burst of 500 calls' responses and requests without drops. The kernel caps it at
net.core.rmem_max; asking for more is harmless."""
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
"""The methods we take inside a call (§20.5); an INVITE there is a re-INVITE, §14."""
MAX_REMEMBERED_ANSWERS = 20_000
"""Answers kept for retransmitted requests (Timer J). Bounds what a flood of distinct requests can hold."""


class DialogHandler(Protocol):
    """A dialog taking the requests the far end sends in it (BYE, re-INVITE, ACK, OPTIONS, INFO)."""

    def handle_request(self, request: Request, source: Address) -> None: ...


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.owner: SipTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.owner is not None:
            self.owner._datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors reported on a later send (port unreachable, ...): the transactions time out on their
        # own, so this is only worth a count.
        if self.owner is not None:
            self.owner.send_errors += 1
            log.debug("SIP socket error: %s", exc)


class SipTransport:
    """One UDP socket for one trunk; see the module docstring."""

    def __init__(
        self,
        *,
        transport: asyncio.DatagramTransport,
        advertised_host: str,
        timers: Timers,
        scheduler: Scheduler,
        user_agent: str = "Switchboard",
    ) -> None:
        """Use `SipTransport.open`, which binds the socket."""
        self._transport = transport
        sockname = transport.get_extra_info("sockname")
        self.bound: Address = (str(sockname[0]), int(sockname[1]))
        self.advertised_host = advertised_host
        """The address we put in Via, Contact and SDP."""
        self.port = self.bound[1]
        self.timers = timers
        self.user_agent = user_agent
        self._scheduler = scheduler
        self._transactions: dict[TransactionKey, ClientTransaction] = {}
        self._dialogs: dict[tuple[str, str], DialogHandler] = {}
        self._answered: dict[TransactionKey, tuple[bytes, Address]] = {}
        self._closed = False
        self.datagrams_received = 0
        self.invalid_datagrams = 0
        self.stray_responses = 0
        self.unmatched_requests = 0
        self.handler_errors = 0
        self.send_errors = 0

    @classmethod
    async def open(
        cls,
        *,
        bind_host: str = "0.0.0.0",
        bind_port: int = 0,
        advertised_host: str | None = None,
        timers: Timers | None = None,
        receive_buffer: int = RECEIVE_BUFFER,
        user_agent: str = "Switchboard",
    ) -> SipTransport:
        """A transport bound on `bind_host`:`bind_port` (an IP literal; port 0: any free one). Without
        `advertised_host`, the bound address is advertised (give one when binding 0.0.0.0)."""
        loop = asyncio.get_running_loop()
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(bind_host).version == 6 else socket.AF_INET
        except ValueError as exc:
            raise TransportError(f"the SIP bind address must be an IP address, not {bind_host!r}") from exc
        protocol = _Protocol()
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:
            raise TransportError(f"cannot create a UDP socket: {exc}") from exc
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            sock.bind((bind_host, bind_port))
            transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot bind SIP on {bind_host}:{bind_port}: {exc}") from exc
        except BaseException:
            sock.close()
            raise
        own = cls(
            transport=transport,
            advertised_host=advertised_host or bind_host,
            timers=timers or Timers(),
            scheduler=LoopScheduler(loop),
            user_agent=user_agent,
        )
        protocol.owner = own
        return own

    @property
    def sent_by(self) -> str:
        """Our Via sent-by, host:port (§18.1.1)."""
        host = f"[{self.advertised_host}]" if ":" in self.advertised_host else self.advertised_host
        return f"{host}:{self.port}"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def transactions(self) -> int:
        """Client transactions not terminated yet (including those absorbing retransmissions)."""
        return len(self._transactions)

    # --- sending ---

    def invite(
        self, request: Request, destination: Address, *, on_response: ResponseHook, on_timeout: TimeoutHook
    ) -> InviteClientTransaction:
        """Start the INVITE client transaction of `request`, sent to `destination`."""
        return self._start(InviteClientTransaction, request, destination, on_response, on_timeout)

    def request(
        self, request: Request, destination: Address, *, on_response: ResponseHook, on_timeout: TimeoutHook
    ) -> NonInviteClientTransaction:
        """Start the non-INVITE client transaction (CANCEL, BYE, ...) of `request`, sent to `destination`."""
        return self._start(NonInviteClientTransaction, request, destination, on_response, on_timeout)

    def _start(
        self,
        kind: type[_Transaction],
        request: Request,
        destination: Address,
        on_response: ResponseHook,
        on_timeout: TimeoutHook,
    ) -> _Transaction:
        tx = kind(
            request=request,
            send=lambda data: self._sendto(data, destination),
            scheduler=self._scheduler,
            timers=self.timers,
            on_response=on_response,
            on_timeout=on_timeout,
            on_terminated=self._forget,
        )
        self._transactions[tx.key] = tx
        tx.start()
        return tx

    def send(self, message: Request | Response, destination: Address) -> None:
        """Send outside any transaction (the ACK of a 2xx, a retransmitted 2xx of ours)."""
        self._sendto(message.encode(), destination)

    def send_bytes(self, data: bytes, destination: Address) -> None:
        """Send an already encoded message again (the same ACK for a retransmitted 2xx, §13.2.2.4)."""
        self._sendto(data, destination)

    def respond(self, request: Request, response: Response, destination: Address) -> None:
        """Answer `request` and remember the answer for its retransmissions during Timer J (§17.2.2)."""
        if self.user_agent and "Server" not in response.headers:
            response.headers.add("Server", self.user_agent)
        data = response.encode()
        self._sendto(data, destination)
        if request.method == "ACK" or len(self._answered) >= MAX_REMEMBERED_ANSWERS:
            return
        key = _server_key(request)
        self._answered[key] = (data, destination)
        self._scheduler.call_later(64 * self.timers.t1, lambda: self._answered.pop(key, None))

    def _sendto(self, data: bytes, destination: Address) -> None:
        if self._closed or self._transport.is_closing():
            return
        self._transport.sendto(data, destination)

    # --- dialogs ---

    def add_dialog(self, call_id: str, local_tag: str, handler: DialogHandler) -> None:
        """Route the far end's requests with this Call-ID and our tag in their To to `handler`."""
        self._dialogs[(call_id, local_tag)] = handler

    def remove_dialog(self, call_id: str, local_tag: str) -> None:
        self._dialogs.pop((call_id, local_tag), None)

    # --- receiving ---

    def _datagram(self, data: bytes, source: Address) -> None:
        self.datagrams_received += 1
        try:
            message = parse(data)
            if isinstance(message, Response):
                self._response(message)
            else:
                self._request(message, source)
        except SipParseError as exc:
            # a message we cannot read, or a header we needed that does not parse: dropped (§18.3)
            self.invalid_datagrams += 1
            log.debug("dropped a datagram from %s:%d: %s", source[0], source[1], exc)
        except Exception:
            self.handler_errors += 1
            log.exception("error handling a SIP message from %s:%d", source[0], source[1])

    def _response(self, response: Response) -> None:
        tx = self._transactions.get(transaction_key(response))
        if tx is None:
            self.stray_responses += 1
            log.debug("stray response %d %s (Call-ID %s)", response.status, response.reason, response.call_id)
            return
        tx.receive(response)

    def _request(self, request: Request, source: Address) -> None:
        if request.method != "ACK":
            remembered = self._answered.get(_server_key(request))
            if remembered is not None:
                self._sendto(*remembered)  # a retransmission: the same answer again (§17.2.2)
                return
        to_tag = request.to_addr.tag
        handler = self._dialogs.get((request.call_id, to_tag)) if to_tag else None
        if handler is not None:
            handler.handle_request(request, source)
            return
        self.unmatched_requests += 1
        method = request.method
        if method == "ACK":
            return  # never answered; one for a response of ours that no dialog needs any more
        if method == "OPTIONS":
            headers = [("Allow", ALLOW), ("Accept", "application/sdp")]
            self.respond(request, response_to(request, 200, "OK", to_tag=None, extra_headers=headers), source)
        elif to_tag or method == "CANCEL":
            self.respond(request, response_to(request, 481, "Call/Transaction Does Not Exist"), source)
        elif method == "INVITE":
            self.respond(request, response_to(request, 603, "Decline", to_tag=_tag(request)), source)
        else:
            response = response_to(request, 405, "Method Not Allowed", extra_headers=[("Allow", ALLOW)])
            self.respond(request, response, source)

    def _forget(self, tx: ClientTransaction) -> None:
        if self._transactions.get(tx.key) is tx:
            del self._transactions[tx.key]

    # --- life ---

    def close(self) -> None:
        """Terminate every transaction (nothing more is reported) and release the socket."""
        if self._closed:
            return
        self._closed = True
        for tx in list(self._transactions.values()):
            tx.terminate()
        self._transactions.clear()
        self._dialogs.clear()
        self._transport.close()


def _server_key(request: Request) -> TransactionKey:
    """What tells a retransmitted request from a new one (§17.2.3): the branch, when it has RFC 3261's magic
    cookie; otherwise (RFC 2543 peers, and SBCs that send `branch=0` in every request) the branch is not
    unique, and Call-ID, From tag and CSeq number are added to it."""
    key = transaction_key(request)
    if key.branch.startswith(MAGIC_COOKIE):
        return key
    unique = f"{key.branch};{request.call_id};{request.from_addr.tag or ''};{request.cseq.number}"
    return key._replace(branch=unique)


def _tag(request: Request) -> str:
    """A To tag for a final answer outside a dialog: derived from the branch, so a retransmission of the
    request would get the same one (§8.2.6.2 asks for a tag on such responses)."""
    branch = request.vias[0].branch or request.call_id
    return f"{abs(hash(branch)) & 0xFFFFFFFF:08x}"


def local_address_towards(host: str, port: int) -> str:
    """The local address the kernel would send from to reach `host` (an IP literal): a UDP socket is
    connected, which sends nothing but picks the route, and its name read."""
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port))
        return str(probe.getsockname()[0])
