"""SIP messages (RFC 3261 §7, §20, §25): `parse` bytes into a `Request` or `Response`, `encode` them back, and
the header helpers a UAC needs to build requests, match responses to its transactions and answer a request.
Pure: no I/O, no clock; randomness (branches, tags, Call-IDs) comes from the caller's `RandomSource`.

Longer than our usual ~400 lines because it is one grammar, not several things: the message framing, the
header table and the small header grammars (Via, name-addr, CSeq, URI, params, quoted strings) share their
tokenisers, and splitting them would scatter RFC 3261 §25 across files.

What a UAC over UDP does with it:
- build: `Request(method, uri, Headers([...]), body)`, `new_branch`, `new_tag`, `new_call_id`, `Via`,
  `NameAddr`, `CSeq`; `cancel_for` (§9.1) and `ack_for_failure` (§17.1.1.3) build the requests whose
  headers the spec dictates; `encode()` always writes Content-Length.
- match: `transaction_key(message)` is the same for a request we sent and every response to it (§17.1.3),
  and for a request received and its retransmissions (§17.2.3).
- answer: `response_to(request, 200, "OK")` copies Via, From, To (+ tag), Call-ID and CSeq (§8.2.6.2).

Strictness. `parse` refuses what a UAC cannot act on safely: a datagram over MAX_MESSAGE_SIZE, header bytes
that are not UTF-8 or hold control characters (even as the quoted-pairs RFC 4475 §3.1.1.2 allows: no trunk
sends them, and they would reach our logs), a start line that is not exactly `Method SP URI SP SIP/2.0`
or `SIP/2.0 SP 1xx-6xx SP reason`, more than MAX_HEADER_LINES header fields or one longer than
MAX_HEADER_LINE_LENGTH, a missing or malformed Via, From, To, Call-ID or CSeq (needed to match the message
to a transaction, §8.1.1, §17.1.3), a request whose CSeq method is not its method, and a Content-Length past
the end of the datagram (§18.3: such a UDP message is discarded). Tolerated, as RFC 4475 and real peers ask:
CRLFs before the start line (§7.5), bare LF line ends, trailing whitespace on the start line, folded header
lines (§7.3.1), compact header names (§7.3.3), any case in header names and the SIP version, several Via /
Contact / Route / Record-Route values in one header line, a body longer than Content-Length (cut to it,
§18.3), and no Content-Length at all (the body is the rest of the datagram, as UDP allows).

Errors. `SipParseError` is the only exception this module raises, whatever the bytes: from `parse` and the
header helpers for input the grammar refuses, and from building (`Headers.add`, `encode`) for a value the
wire cannot carry (a CR or LF in a header value, a message over MAX_MESSAGE_SIZE). It subclasses ValueError.
A UAC drops a datagram that does not parse (§16.3 would have a proxy answer 400; for a UAC whose peer cannot
be identified from a broken message, dropping is what §18.3 does).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from switchboard.errors import SipParseError

__all__ = [
    "MAGIC_COOKIE",
    "MAX_HEADER_LINES",
    "MAX_HEADER_LINE_LENGTH",
    "MAX_MESSAGE_SIZE",
    "CSeq",
    "Headers",
    "NameAddr",
    "RandomSource",
    "Request",
    "Response",
    "TransactionKey",
    "Uri",
    "Via",
    "ack_for_failure",
    "cancel_for",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse",
    "parse_cseq",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "response_to",
    "transaction_key",
]

MAX_MESSAGE_SIZE = 65_535
"""The largest UDP payload (RFC 768's 16-bit length); §18.1.1 caps what we send far lower in practice."""
MAX_HEADER_LINES = 100
"""Header fields per message. RFC 3261 sets no limit; a real INVITE or 200 has 10-30, so 100 leaves room
for long Record-Route sets while bounding the work a hostile datagram can cause."""
MAX_HEADER_LINE_LENGTH = 8_192
"""Characters in one header field after unfolding: far beyond any real Via or Record-Route line."""
MAGIC_COOKIE = "z9hG4bK"
"""Every branch of an RFC 3261 request starts with it (§8.1.1.7), telling it apart from RFC 2543's."""
MAX_FORWARDS = "70"
"""Max-Forwards of the requests built here (§8.1.1.6: SHOULD be 70)."""
_SIP_VERSION = "SIP/2.0"
_CSEQ_LIMIT = 2**32
"""A CSeq number is a 32-bit unsigned integer (§8.1.1.5); one beyond it is refused (RFC 4475 §3.1.2.8)."""

# RFC 3261 §7.3.3 compact forms, and the later RFCs' that share the table (3265, 3515, 3841, 3892, 4028, 4474).
_COMPACT = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact", "k": "Supported",
    "l": "Content-Length", "m": "Contact", "n": "Identity-Info", "o": "Event", "r": "Refer-To", "s": "Subject",
    "t": "To", "u": "Allow-Events", "v": "Via", "x": "Session-Expires", "y": "Identity",
}  # fmt: skip
_CANONICAL = {
    name.lower(): name
    for name in (
        *_COMPACT.values(), "Accept", "Allow", "Authorization", "CSeq", "Content-Disposition", "Contact",
        "Expires", "Max-Forwards", "MIME-Version", "Min-Expires", "P-Asserted-Identity", "Proxy-Authenticate",
        "Proxy-Authorization", "Proxy-Require", "RAck", "RSeq", "Reason", "Record-Route", "Require",
        "Retry-After", "Route", "Server", "Timestamp", "Unsupported", "User-Agent", "Warning", "WWW-Authenticate",
    )
}  # fmt: skip
# Header fields whose values are comma-separated lists of things that may themselves hold commas inside
# quotes or <> (§7.3.1); each value is kept as its own entry. WWW-Authenticate and friends are not lists.
_LIST_HEADERS = frozenset({"via", "contact", "route", "record-route"})
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_URI = r"[A-Za-z][A-Za-z0-9+\-.]*:[^\s<>\"]+"
_TOKEN_RE = re.compile(_TOKEN)
_URI_RE = re.compile(_URI)
_REQUEST_LINE = re.compile(rf"({_TOKEN}) ({_URI}) (SIP/2\.0)", re.IGNORECASE)
_STATUS_LINE = re.compile(r"SIP/2\.0 ([1-6][0-9]{2})(?: (.*))?", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(r"\r?\n")
_DIGITS = re.compile(r"[0-9]{1,10}")
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-.]*)")
_CSEQ = re.compile(rf"([0-9]{{1,10}})[ \t]+({_TOKEN})")
_VIA = re.compile(rf"SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*({_TOKEN})[ \t]+([^;]+)(.*)", re.IGNORECASE | re.DOTALL)
_TEL = re.compile(r"[0-9A-Fa-f*#+().\-]+")
_PARAM_VALUE = re.compile(r"[^\s\";,<>]+")


class RandomSource(Protocol):
    """Where identifiers get their randomness: `random.SystemRandom()` in service, `random.Random(seed)` in
    tests. Only `getrandbits` is used."""

    def getrandbits(self, k: int, /) -> int: ...


def new_branch(rng: RandomSource) -> str:
    """A branch for a new client transaction: the magic cookie (§8.1.1.7) then 64 random bits."""
    return f"{MAGIC_COOKIE}{rng.getrandbits(64):016x}"


def new_tag(rng: RandomSource) -> str:
    """A From or To tag: 64 random bits, twice the 32 that §19.3 asks for."""
    return f"{rng.getrandbits(64):016x}"


def new_call_id(rng: RandomSource, host: str) -> str:
    """A Call-ID unique in space and time (§8.1.1.4): 96 random bits, then `@host` when a host is given."""
    local = f"{rng.getrandbits(96):024x}"
    return f"{local}@{host}" if host else local


class Headers:
    """The header fields of one message, in order, several per name allowed, names compared without case.

    Names are stored in their long canonical spelling ("Call-ID" for "i" or "call-id"); a name we do not
    know keeps the spelling it was given. A Via, Contact, Route or Record-Route value holding several
    comma-separated values becomes one entry per value, so `get_all("Via")` lists every hop. `add` and `set`
    refuse a name that is not a token and a value holding CR or LF, which would inject header lines.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append `value` under `name`, after any fields already there."""
        self._items.extend(_entries(name, value))

    def set(self, name: str, value: str) -> None:
        """Replace every field named `name` by `value`, where the first of them stood (else at the end)."""
        entries = _entries(name, value)
        key = entries[0][0].lower() if entries else _canonical(name).lower()
        at = next((i for i, (n, _) in enumerate(self._items) if n.lower() == key), len(self._items))
        kept = [(n, v) for n, v in self._items if n.lower() != key]
        self._items = [*kept[:at], *entries, *kept[at:]]

    def get(self, name: str) -> str | None:
        """The first value under `name`, or None."""
        key = _canonical(name).lower()
        return next((v for n, v in self._items if n.lower() == key), None)

    def get_all(self, name: str) -> list[str]:
        """Every value under `name`, in order (for a list header, one per comma-separated value)."""
        key = _canonical(name).lower()
        return [v for n, v in self._items if n.lower() == key]

    def remove(self, name: str) -> int:
        """Remove every field named `name`; return how many there were."""
        key = _canonical(name).lower()
        before = len(self._items)
        self._items = [(n, v) for n, v in self._items if n.lower() != key]
        return before - len(self._items)

    def copy(self) -> Headers:
        copied = Headers()
        copied._items = list(self._items)
        return copied

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n.lower(), v) for n, v in self._items] == [(n.lower(), v) for n, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _canonical(name: str) -> str:
    lower = name.lower()
    if len(lower) == 1 and lower in _COMPACT:
        return _COMPACT[lower]
    return _CANONICAL.get(lower, name)


def _entries(name: str, value: str) -> list[tuple[str, str]]:
    if not _TOKEN_RE.fullmatch(name):
        raise SipParseError(f"header name {name!r} is not a token")
    if "\r" in value or "\n" in value:
        raise SipParseError(f"header {name} value holds CR or LF")
    canonical = _canonical(name)
    if canonical.lower() in _LIST_HEADERS:
        parts = [part.strip(" \t") for part in _split(value, ",", angle=True)]
        return [(canonical, part) for part in parts if part]
    return [(canonical, value.strip(" \t"))]


class _Message:
    """What requests and responses share: the headers every transaction needs, read on demand."""

    __slots__ = ()
    headers: Headers
    body: bytes

    @property
    def call_id(self) -> str:
        return _required(self.headers, "Call-ID")

    @property
    def cseq(self) -> CSeq:
        return parse_cseq(_required(self.headers, "CSeq"))

    @property
    def vias(self) -> list[Via]:
        """Every Via, the top one (ours, on a response to our request) first."""
        return [parse_via(value) for value in self.headers.get_all("Via")]

    @property
    def from_addr(self) -> NameAddr:
        return parse_name_addr(_required(self.headers, "From"))

    @property
    def to_addr(self) -> NameAddr:
        return parse_name_addr(_required(self.headers, "To"))


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise SipParseError(f"no {name} header")
    return value


@dataclass(slots=True)
class Request(_Message):
    """A SIP request (§7.1). `uri` is the Request-URI as written; `parse_uri` reads it."""

    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def encode(self) -> bytes:
        if not _TOKEN_RE.fullmatch(self.method) or not _URI_RE.fullmatch(self.uri):
            raise SipParseError(f"cannot send request line {self.method!r} {self.uri!r}")
        return _encode(f"{self.method} {self.uri} {_SIP_VERSION}", self.headers, self.body)


@dataclass(slots=True)
class Response(_Message):
    """A SIP response (§7.2)."""

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def encode(self) -> bytes:
        if not 100 <= self.status <= 699 or _CONTROL.search(self.reason):
            raise SipParseError(f"cannot send status line {self.status} {self.reason!r}")
        return _encode(f"{_SIP_VERSION} {self.status} {self.reason}", self.headers, self.body)


def _encode(start_line: str, headers: Headers, body: bytes) -> bytes:
    lines = [start_line]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() != "content-length"]
    # Content-Length is always written, last: on UDP it is optional but tells a truncated datagram (§18.3).
    lines += [f"Content-Length: {len(body)}", "", ""]
    data = "\r\n".join(lines).encode() + body
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_SIZE}")
    return data


def parse(data: bytes) -> Request | Response:
    """Read one datagram as a SIP message; see the module docstring for what is refused and tolerated."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError(f"datagram of {len(data)} bytes exceeds {MAX_MESSAGE_SIZE}")
    data = data.lstrip(b"\r\n")  # §7.5: CRLFs before the start line are ignored (and keep-alives are only CRLFs)
    if not data:
        raise SipParseError("empty message")
    blank = _BLANK_LINE.search(data)
    if blank is None:
        raise SipParseError("no blank line ends the headers")
    try:
        head = data[: blank.start()].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"header bytes are not UTF-8 (at byte {exc.start})") from None
    start_line, *lines = _LINE_END.split(head)
    headers = _parse_headers(lines)
    message = _start(start_line.rstrip(" \t"), headers, _body(headers, data[blank.end() :]))
    _check_required(message)
    return message


def _start(line: str, headers: Headers, body: bytes) -> Request | Response:
    if _CONTROL.search(line):
        raise SipParseError("control character in the start line")
    if line[:4].upper() == "SIP/":
        status = _STATUS_LINE.fullmatch(line)
        if status is None:
            raise SipParseError(f"bad status line {line[:80]!r}")
        return Response(int(status[1]), status[2] or "", headers, body)
    request = _REQUEST_LINE.fullmatch(line)
    if request is None:
        raise SipParseError(f"bad request line {line[:80]!r}")
    return Request(request[1], request[2], headers, body)


def _parse_headers(lines: list[str]) -> Headers:
    fields: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t"):  # §7.3.1: a line starting with whitespace continues the previous one
            if not fields:
                raise SipParseError("first header line starts with whitespace")
            fields[-1] = fields[-1].rstrip(" \t") + " " + line.lstrip(" \t")
        else:
            fields.append(line)
        if len(fields) > MAX_HEADER_LINES:
            raise SipParseError(f"more than {MAX_HEADER_LINES} header fields")
        if len(fields[-1]) > MAX_HEADER_LINE_LENGTH:
            raise SipParseError(f"header field longer than {MAX_HEADER_LINE_LENGTH} characters")
    headers = Headers()
    for line in fields:
        if _CONTROL.search(line):
            raise SipParseError("control character in a header field")
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"header field without colon {line[:80]!r}")
        headers.add(name.rstrip(" \t"), value)
    return headers


def _body(headers: Headers, rest: bytes) -> bytes:
    lengths = {value.strip() for value in headers.get_all("Content-Length")}
    if not lengths:
        return rest  # UDP: without Content-Length the body is the rest of the datagram (§18.3)
    if len(lengths) > 1:
        raise SipParseError("conflicting Content-Length headers")
    (text,) = lengths
    if not _DIGITS.fullmatch(text):
        raise SipParseError(f"bad Content-Length {text[:20]!r}")
    length = int(text)
    if length > len(rest):
        raise SipParseError(f"Content-Length {length} exceeds the {len(rest)} bytes received (§18.3)")
    return rest[:length]


def _check_required(message: Request | Response) -> None:
    headers = message.headers
    for name in _REQUIRED:
        if headers.get(name) is None:
            raise SipParseError(f"no {name} header")
    if not message.vias:
        raise SipParseError("no Via header")
    parse_name_addr(headers.get("From") or "")
    parse_name_addr(headers.get("To") or "")
    if not message.call_id or any(c.isspace() for c in message.call_id):
        raise SipParseError(f"bad Call-ID {message.call_id[:80]!r}")
    cseq = message.cseq
    if isinstance(message, Request) and cseq.method != message.method:
        raise SipParseError(f"CSeq method {cseq.method} is not the request's {message.method} (§8.1.1.5)")


class CSeq(NamedTuple):
    """The CSeq header (§20.16): the request's sequence number and method."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(value: str) -> CSeq:
    match = _CSEQ.fullmatch(value.strip(" \t"))
    if match is None or int(match[1]) >= _CSEQ_LIMIT:
        raise SipParseError(f"bad CSeq {value[:80]!r}")
    return CSeq(int(match[1]), match[2])


class TransactionKey(NamedTuple):
    """What ties a message to its transaction (§17.1.3, §17.2.3): top Via branch and sent-by, CSeq method."""

    branch: str
    sent_by: str
    method: str


def transaction_key(message: Request | Response) -> TransactionKey:
    """The key a client transaction files its request under and finds each response by (§17.1.3), and a
    server transaction finds retransmissions by (§17.2.3; an ACK belongs to the INVITE's transaction).

    A message from an RFC 2543 peer (a branch without the magic cookie, or none) still gets a key, with
    whatever branch it has; we always send the cookie, so it never matches one of ours by accident.
    """
    top = message.vias[0]
    method = message.cseq.method
    if isinstance(message, Request) and message.method == "ACK":
        method = "INVITE"
    return TransactionKey(top.branch or "", top.sent_by.lower(), method)


def response_to(
    request: Request,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    extra_headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """A response to `request` as §8.2.6.2 builds it: every Via in order, From, Call-ID and CSeq copied;
    To copied, with `to_tag` added only when the request's To had no tag (an in-dialog BYE already has
    ours; a 100 Trying gets none, §8.2.6.1). `extra_headers` follow (Contact, Content-Type, ...).
    Record-Route is not copied: that is for responses that create a dialog (§12.1.1), which a UAC never
    sends."""
    headers = Headers()
    for via in request.headers.get_all("Via"):
        headers.add("Via", via)
    headers.add("From", _required(request.headers, "From"))
    to = _required(request.headers, "To")
    if to_tag is not None and request.to_addr.tag is None:
        to = f"{to};tag={to_tag}"
    headers.add("To", to)
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", _required(request.headers, "CSeq"))
    for name, value in extra_headers:
        headers.add(name, value)
    return Response(status, reason, headers, body)


def cancel_for(invite: Request) -> Request:
    """The CANCEL of a pending INVITE (§9.1): same Request-URI, Call-ID, From, To and CSeq number, one Via
    equal to the INVITE's top one (so it shares its branch), its Route set, no body."""
    return _hop_request(invite, "CANCEL", _required(invite.headers, "To"))


def ack_for_failure(invite: Request, response: Response) -> Request:
    """The ACK of a 300-699 final response to `invite` (§17.1.1.3): as the CANCEL, but the To is the
    response's (with the peer's tag). The ACK of a 2xx is a new in-dialog request and is not this one."""
    return _hop_request(invite, "ACK", _required(response.headers, "To"))


def _hop_request(invite: Request, method: str, to: str) -> Request:
    headers = Headers([("Via", invite.headers.get_all("Via")[0])])
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", MAX_FORWARDS)
    headers.add("From", _required(invite.headers, "From"))
    headers.add("To", to)
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", str(CSeq(invite.cseq.number, method)))
    return Request(method, invite.uri, headers)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (§20.42): the transport and sent-by of a hop, and its parameters (names lower-cased,
    a parameter without value maps to None, as `rport` in a request, RFC 3581)."""

    transport: str
    host: str
    """Without brackets, also for IPv6."""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The source address the next hop saw, when it differs from sent-by (§18.2.1)."""
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The source port the next hop saw, when it filled in our `rport` (RFC 3581 §4)."""
        value = self.params.get("rport")
        return int(value) if value is not None and _DIGITS.fullmatch(value) else None

    @property
    def sent_by(self) -> str:
        return _hostport(self.host, self.port)

    def __str__(self) -> str:
        return f"{_SIP_VERSION}/{self.transport} {self.sent_by}{_format_params(self.params)}"


def parse_via(value: str) -> Via:
    """One Via value, e.g. "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport=5060"."""
    match = _VIA.fullmatch(value.strip(" \t"))
    if match is None:
        raise SipParseError(f"bad Via {value[:80]!r}")
    # sent-by = host [COLON port], and COLON allows whitespace around it (§25.1)
    host, port = _parse_hostport(re.sub(r"[ \t]*:[ \t]*", ":", match[2].strip(" \t")))
    return Via(match[1].upper(), host, port, _parse_params(match[3]))


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From, To, Contact, Route or Record-Route value (§20.10, §20.20, §20.39): display name, URI (as
    written), and header parameters (names lower-cased; `tag` among them for From and To)."""

    display: str | None
    uri: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(self.display, self.uri, {**self.params, "tag": tag})

    def __str__(self) -> str:
        display = f"{_quote(self.display)} " if self.display is not None else ""
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def parse_name_addr(value: str) -> NameAddr:
    """`"Bob \\"B\\"" <sip:bob@biloxi.com>;tag=a6c85cf`, `Bob <sip:...>`, `<sip:...>` or a bare addr-spec
    `sip:bob@biloxi.com;tag=1` (whose parameters are then the header's, not the URI's, §20.10)."""
    text = value.strip(" \t")
    display: str | None = None
    if text.startswith('"'):
        display, end = _read_quoted(text, 0)
        text = text[end:].lstrip(" \t")
        if not text.startswith("<"):
            raise SipParseError(f"quoted display name without <URI> in {value[:80]!r}")
    if "<" in text:
        before, _, rest = text.partition("<")
        if display is None and before.strip(" \t"):
            if any(c in before for c in '"<>'):
                raise SipParseError(f"bad display name in {value[:80]!r}")
            display = " ".join(before.split())
        uri, closed, params = rest.partition(">")
        uri = uri.strip(" \t")
    else:
        uri, closed, params = text.partition(";")
        uri, params = uri.rstrip(" \t"), closed + params
        closed = ">"
    if not closed or not _URI_RE.fullmatch(uri):
        raise SipParseError(f"bad name-addr {value[:80]!r}")
    return NameAddr(display, uri, _parse_params(params))


@dataclass(frozen=True, slots=True)
class Uri:
    """A sip:, sips: or tel: URI (§19.1, RFC 3966), e.g. sip:alice:pw@[2001:db8::1]:5060;transport=udp?x=y.
    For tel: `user` is the number and `host` is empty. Parameter names are lower-cased."""

    scheme: str
    user: str | None
    host: str
    """Without brackets, also for IPv6."""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    password: str | None = None
    headers: str | None = None
    """What follows `?`, as written (§19.1.1)."""

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{_format_params(self.params)}"
        userinfo = f"{self.user}{':' + self.password if self.password is not None else ''}@" if self.user else ""
        headers = f"?{self.headers}" if self.headers is not None else ""
        return f"{self.scheme}:{userinfo}{_hostport(self.host, self.port)}{_format_params(self.params)}{headers}"


def parse_uri(value: str) -> Uri:
    text = value.strip(" \t")
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or not rest or any(c.isspace() for c in rest):
        raise SipParseError(f"bad URI {value[:80]!r}")
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not _TEL.fullmatch(number):
            raise SipParseError(f"bad tel number in {value[:80]!r}")
        return Uri("tel", number, "", None, _parse_params(";" + params if params else ""))
    if scheme not in ("sip", "sips"):
        raise SipParseError(f"unsupported URI scheme {scheme[:20]!r}")
    userinfo, at, hostpart = rest.partition("@")
    if not at:
        userinfo, hostpart = "", rest
    user, has_password, password = userinfo.partition(":")
    if at and not user:
        raise SipParseError(f"empty user in {value[:80]!r}")
    hostpart, question, headers = hostpart.partition("?")
    hostport, semicolon, params = hostpart.partition(";")
    host, port = _parse_hostport(hostport)
    return Uri(
        scheme,
        user or None,
        host,
        port,
        _parse_params(semicolon + params),
        password if has_password else None,
        headers if question else None,
    )


def _parse_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise SipParseError(f"bad IPv6 reference {text[:60]!r}") from None
        if not bracket:
            raise SipParseError(f"unclosed IPv6 reference {text[:60]!r}")
    else:
        host, colon, rest = text.partition(":")
        rest = colon + rest
        if not _HOSTNAME.fullmatch(host):
            raise SipParseError(f"bad host {text[:60]!r}")
    if not rest:
        return host, None
    if rest[0] != ":" or not _DIGITS.fullmatch(rest[1:]) or int(rest[1:]) > 65535:
        raise SipParseError(f"bad port in {text[:60]!r}")
    return host, int(rest[1:])


def _hostport(host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return host if port is None else f"{host}:{port}"


def _parse_params(text: str) -> dict[str, str | None]:
    """`;name=value;flag;q="quoted"` into {name: value, flag: None, q: unquoted}; the first of a repeated
    name wins. Anything before the first `;` other than whitespace is an error."""
    parts = _split(text, ";", angle=False)
    if parts[0].strip(" \t"):
        raise SipParseError(f"unexpected {parts[0][:40]!r} before parameters")
    params: dict[str, str | None] = {}
    for part in parts[1:]:
        name, equals, raw = part.partition("=")
        name = name.strip(" \t").lower()
        raw = raw.strip(" \t")
        if not _TOKEN_RE.fullmatch(name):
            raise SipParseError(f"bad parameter {part[:40]!r}")
        value: str | None = None
        if equals:
            if raw.startswith('"'):
                value, end = _read_quoted(raw, 0)
                if end != len(raw):
                    raise SipParseError(f"text after quoted parameter {part[:40]!r}")
            elif _PARAM_VALUE.fullmatch(raw):
                value = raw
            else:
                raise SipParseError(f"bad parameter value {part[:40]!r}")
        params.setdefault(name, value)
    return params


def _format_params(params: dict[str, str | None]) -> str:
    out = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        else:
            out.append(f";{name}={value if _PARAM_VALUE.fullmatch(value) else _quote(value)}")
    return "".join(out)


def _split(text: str, separator: str, *, angle: bool) -> list[str]:
    """Split on `separator` outside quoted strings (and, when `angle`, outside <...>)."""
    parts: list[str] = []
    start = i = depth = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            _, i = _read_quoted(text, i)
            continue
        if angle and c == "<":
            depth += 1
        elif angle and c == ">":
            depth = max(depth - 1, 0)
        elif c == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """The quoted-string starting at text[start] == '"' with its quoted-pairs undone (§25.1), and the index
    just past its closing quote."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text):
                break
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise SipParseError(f"unterminated quoted string in {text[:80]!r}")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
