"""The SSRF guard end to end: refused callback URLs never open a connection, whatever their disguise.

Real TCP "canary" listeners run on loopback (127.0.0.1, 127.0.0.2 and ::1 when this machine has IPv6
loopback, all on one port number) and count the connections they accept. `HttpTransport` with
``allow_private=False`` is then asked to post to 77 URL forms that all point at those canaries
in some disguised way (numeric forms, IPv4 inside IPv6, Unicode digits and dots, userinfo tricks, names
that resolve to loopback or to private addresses, ...). Every post must fail with `DeliveryFailed` and
the canaries must see 0 connections. Besides the canaries, every connection aiohttp opens is recorded
(``loop.sock_connect`` is wrapped), so a refused target is proven never to be connected to even when it
is an address that has no canary (10.0.0.1, 169.254.169.254, ...). The wrapper also keeps the tests
hermetic: it refuses, without touching the network, any connection that would leave this machine.

Controls prove the witnesses work: with ``allow_private=True``, http:// twins of the disguised forms do
reach a canary (and the recorder sees the connection), so a count of 0 above means "refused", not "the
canary was deaf".

DNS rebinding: a resolver whose answer changes between calls is consulted exactly once per new
connection, and the connection goes to the address that answer gave and was checked, never to a later
answer; the name is kept for the Host header.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from switchboard.callbacks.egress import Rule
from switchboard.callbacks.transport import HttpTransport, Response
from switchboard.errors import DeliveryFailed

OK_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
BODY = b'{"event":"canary"}'
HEADERS = {"Content-Type": "application/json"}
PUBLIC = "93.184.216.34"  # a globally routable address (example.com's former one); never really contacted


def _ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6_LOOPBACK = _ipv6_loopback_works()


# --- canaries --------------------------------------------------------------------------------------------


@dataclass
class Canary:
    """A loopback TCP listener that counts accepted connections and answers HTTP requests with 200."""

    host: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
        try:
            self.requests.append(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2))
            writer.write(OK_ANSWER)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass  # a TLS hello or a closed connection: counted all the same
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def host_header(self) -> str:
        (head,) = self.requests
        lines = head.decode("latin-1").split("\r\n")
        (host,) = [line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("host:")]
        return host


@dataclass
class Canaries:
    port: int
    v4: Canary  # 127.0.0.1
    v4b: Canary  # 127.0.0.2
    v6: Canary | None  # ::1, if this machine has IPv6 loopback

    def all(self) -> list[Canary]:
        return [c for c in (self.v4, self.v4b, self.v6) if c is not None]

    def by_host(self, host: str) -> Canary:
        (canary,) = [c for c in self.all() if c.host == host]
        return canary

    def seen(self) -> dict[str, int]:
        return {c.host: c.connections for c in self.all()}


async def _listen(canary: Canary, port: int) -> asyncio.Server:
    family = socket.AF_INET6 if ":" in canary.host else socket.AF_INET
    return await asyncio.start_server(canary.handle, canary.host, port, family=family)


@pytest_asyncio.fixture
async def canaries() -> AsyncIterator[Canaries]:
    """Listeners on 127.0.0.1, 127.0.0.2 and ::1, all on the same free port number."""
    servers: list[asyncio.Server] = []
    found: Canaries | None = None
    for _ in range(20):
        v4, v4b = Canary("127.0.0.1"), Canary("127.0.0.2")
        v6 = Canary("::1") if HAS_IPV6_LOOPBACK else None
        first = await _listen(v4, 0)
        servers = [first]
        port = first.sockets[0].getsockname()[1]
        try:
            for other in (v4b, v6):
                if other is not None:
                    servers.append(await _listen(other, port))
        except OSError as e:  # the port is taken on another address: try another one
            if e.errno != errno.EADDRINUSE:
                raise
            for server in servers:
                server.close()
                await server.wait_closed()
            continue
        found = Canaries(port=port, v4=v4, v4b=v4b, v6=v6)
        break
    assert found is not None, "no port number free on every loopback address"
    try:
        yield found
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()
        handlers = [t for c in found.all() for t in c.handlers if not t.done()]
        if handlers:
            await asyncio.wait(handlers, timeout=3)


# --- the connection recorder and the fake DNS --------------------------------------------------------------


def _stays_on_this_machine(host: str) -> bool:
    ip = ipaddress.ip_address(host.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified  # the kernel connects 0.0.0.0 and :: to loopback


@pytest_asyncio.fixture
async def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (address, port) the event loop is asked to connect a socket to, in order.

    aiohttp connects through aiohappyeyeballs, which calls ``loop.sock_connect``. Loopback connections go
    ahead (to the canaries); any other one is refused here, so no test ever touches a real network.
    """
    loop = asyncio.get_running_loop()
    real_sock_connect = loop.sock_connect
    attempts: list[tuple[str, int]] = []

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        host, port = str(address[0]), int(address[1])
        attempts.append((host, port))
        if not _stays_on_this_machine(host):
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"the test refuses to leave this machine ({host})")
        await real_sock_connect(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    return attempts


Answer = list[str] | OSError


class FakeDNS:
    """An `egress.Resolver`: answers from a table; a list of answers is consumed one per lookup (the last
    one repeats), which is how an answer that changes between check and connect is simulated."""

    def __init__(self, table: dict[str, list[Answer]]) -> None:
        self.table = table
        self.lookups: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        answers = self.table.get(host)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = answers[0] if len(answers) == 1 else answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return list(answer)


# Names the matrix uses; each resolves to something that must be refused (or not at all).
DNS_TABLE: dict[str, Answer] = {
    "canary-1.example.com": ["127.0.0.1"],
    "canary-2.example.com": ["127.0.0.2"],
    "canary-3.example.com": ["::1"],
    "canary-4.example.com": [PUBLIC, "127.0.0.1"],  # one public, one loopback: the whole host is refused
    "canary-5.example.com": ["127.0.0.1", PUBLIC],
    "canary-6.example.com": [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946", "::1"],
    "canary-7.example.com": ["::ffff:127.0.0.1"],
    "canary-8.example.com": ["0.0.0.0"],
    "canary-9.example.com": ["::"],
    "canary-10.example.com": ["10.0.0.1"],
    "canary-11.example.com": ["169.254.169.254"],  # cloud metadata
    "canary-12.example.com": ["100.64.0.1"],  # CGNAT
    "canary-13.example.com": ["192.168.1.1"],
    "canary-14.example.com": ["172.16.0.1"],
    "canary-15.example.com": ["fe80::1%lo"],
    "canary-16.example.com": ["fd00::1"],
    "canary-17.example.com": ["64:ff9b::7f00:1"],  # NAT64 of 127.0.0.1
    "canary-18.example.com": ["::ffff:169.254.169.254"],
    "canary-19.example.com": ["localhost"],  # not an address at all
    "canary-20.example.com": ["127.1"],  # not a canonical address: never handed to the OS
    "canary-21.example.com": [],  # no addresses
    "canary-22.example.com": socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
}


def fake_dns() -> FakeDNS:
    return FakeDNS({name: [answer] for name, answer in DNS_TABLE.items()})


async def post(transport: HttpTransport, url: str) -> Response:
    return await transport.post(url, BODY, HEADERS)


@contextlib.asynccontextmanager
async def opened(transport: HttpTransport) -> AsyncIterator[HttpTransport]:
    try:
        yield transport
    finally:
        await transport.close()


# --- the refused-address matrix ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    id: str
    url: str
    """``{port}`` is replaced by the canaries' port."""
    rule: Rule
    """The check that must refuse it (named in DeliveryFailed's reason)."""

    @property
    def resolves(self) -> bool:
        """The host is a name the fake DNS answers for: refused at resolution, not by `check_url`."""
        return ".example.com:{port}" in self.url and self.url.startswith("https://canary-")


URL_FORMS: list[Form] = [
    # plain loopback, and the scheme
    Form("http-127.0.0.1", "http://127.0.0.1:{port}/hook", Rule.SCHEME),
    Form("https-127.0.0.1", "https://127.0.0.1:{port}/hook", Rule.ADDRESS),
    Form("https-127.0.0.2", "https://127.0.0.2:{port}/hook", Rule.ADDRESS),
    Form("upper-scheme", "HTTPS://127.0.0.1:{port}/hook", Rule.ADDRESS),
    Form("trailing-dot-ip", "https://127.0.0.1.:{port}/hook", Rule.ADDRESS),
    Form("ftp", "ftp://127.0.0.1:{port}/hook", Rule.SCHEME),
    Form("file", "file:///etc/passwd", Rule.SCHEME),
    Form("gopher", "gopher://127.0.0.1:{port}/_POST%20/hook", Rule.SCHEME),
    Form("no-scheme", "127.0.0.1:{port}/hook", Rule.SCHEME),
    Form("no-scheme-localhost", "localhost:{port}/hook", Rule.SCHEME),
    Form("scheme-relative", "//127.0.0.1:{port}/hook", Rule.SCHEME),
    # local names
    Form("localhost", "https://localhost:{port}/hook", Rule.NAME),
    Form("LOCALHOST.", "https://LOCALHOST.:{port}/hook", Rule.NAME),
    Form("foo.localhost", "https://foo.localhost:{port}/hook", Rule.NAME),
    Form("circled-localhost", "https://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ:{port}/hook", Rule.NAME),
    # numeric hosts other than a canonical dotted quad
    Form("decimal", "https://2130706433:{port}/hook", Rule.NUMERIC_HOST),
    Form("hex", "https://0x7f000001:{port}/hook", Rule.NUMERIC_HOST),
    Form("hex-first-part", "https://0x7f.0.0.1:{port}/hook", Rule.NUMERIC_HOST),
    Form("octal-first-part", "https://0177.0.0.1:{port}/hook", Rule.NUMERIC_HOST),
    Form("octal", "https://017700000001:{port}/hook", Rule.NUMERIC_HOST),
    Form("zero-padded", "https://127.000.000.001:{port}/hook", Rule.NUMERIC_HOST),
    Form("short-127.1", "https://127.1:{port}/hook", Rule.NUMERIC_HOST),
    Form("short-127.0.1", "https://127.0.1:{port}/hook", Rule.NUMERIC_HOST),
    Form("zero", "https://0:{port}/hook", Rule.NUMERIC_HOST),
    # IPv6, and IPv4 inside IPv6
    Form("v6-loopback", "https://[::1]:{port}/hook", Rule.ADDRESS),
    Form("v6-loopback-long", "https://[0:0:0:0:0:0:0:1]:{port}/hook", Rule.ADDRESS),
    Form("v4-mapped-dotted", "https://[::ffff:127.0.0.1]:{port}/hook", Rule.ADDRESS),
    Form("v4-mapped-hex", "https://[::ffff:7f00:1]:{port}/hook", Rule.ADDRESS),
    Form("v4-mapped-long", "https://[0:0:0:0:0:ffff:127.0.0.1]:{port}/hook", Rule.ADDRESS),
    Form("v4-mapped-127.0.0.2", "https://[::ffff:127.0.0.2]:{port}/hook", Rule.ADDRESS),
    Form("v4-translated", "https://[::ffff:0:7f00:1]:{port}/hook", Rule.ADDRESS),
    Form("v4-compatible", "https://[::127.0.0.1]:{port}/hook", Rule.ADDRESS),
    Form("nat64", "https://[64:ff9b::7f00:1]:{port}/hook", Rule.ADDRESS),
    Form("6to4", "https://[2002:7f00:1::]:{port}/hook", Rule.ADDRESS),
    Form("zone-id", "https://[fe80::1%25lo]:{port}/hook", Rule.ZONE_ID),
    Form("zone-id-raw", "https://[::1%lo]:{port}/hook", Rule.ZONE_ID),
    Form("unspecified-v4", "https://0.0.0.0:{port}/hook", Rule.ADDRESS),
    Form("unspecified-v6", "https://[::]:{port}/hook", Rule.ADDRESS),
    # Unicode and encoding
    Form("full-width-digits", "https://１２７.０.０.１:{port}/hook", Rule.ADDRESS),
    Form("full-width-dots", "https://１２７．０．０．１:{port}/hook", Rule.ADDRESS),
    Form("ideographic-dots", "https://127。0。0。1:{port}/hook", Rule.ADDRESS),
    Form("circled-digits", "https://①②⑦.⓪.⓪.①:{port}/hook", Rule.ADDRESS),
    Form("percent-encoded", "https://%31%32%37.0.0.1:{port}/hook", Rule.HOST),
    # userinfo, fragment and query tricks
    Form("userinfo", "https://example.com@127.0.0.1:{port}/hook", Rule.USERINFO),
    Form("userinfo-port", "https://example.com:443@127.0.0.1:{port}/hook", Rule.USERINFO),
    Form("userinfo-reverse", "https://127.0.0.1:{port}@example.com/hook", Rule.USERINFO),
    Form("fragment-at", "https://127.0.0.1:{port}#@example.com/hook", Rule.ADDRESS),
    Form("query-at", "https://127.0.0.1:{port}?@example.com/hook", Rule.ADDRESS),
    Form("backslash", "https://example.com\\@127.0.0.1:{port}/hook", Rule.SYNTAX),
    # whitespace and control characters (urlsplit would silently drop tabs and newlines)
    Form("tab-in-host", "https://127.0.0.\t1:{port}/hook", Rule.SYNTAX),
    Form("newline-in-host", "https://exam\nple.com@127.0.0.1:{port}/hook", Rule.SYNTAX),
    Form("leading-space", " https://127.0.0.1:{port}/hook", Rule.SYNTAX),
    Form("nul-in-host", "https://example.com\x00.127.0.0.1:{port}/hook", Rule.SYNTAX),
    Form("crlf-header-injection", "https://127.0.0.1:{port}/hook\r\nHost: example.com", Rule.SYNTAX),
]

RESOLVED_FORMS: list[Form] = [
    Form("dns-127.0.0.1", "https://canary-1.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-127.0.0.2", "https://canary-2.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-v6-loopback", "https://canary-3.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-public-then-loopback", "https://canary-4.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-loopback-then-public", "https://canary-5.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-public-v4-v6-then-v6-loopback", "https://canary-6.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-v4-mapped-loopback", "https://canary-7.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-unspecified-v4", "https://canary-8.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-unspecified-v6", "https://canary-9.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-10.0.0.1", "https://canary-10.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-metadata", "https://canary-11.example.com:{port}/latest/meta-data/", Rule.ADDRESS),
    Form("dns-cgnat", "https://canary-12.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-192.168.1.1", "https://canary-13.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-172.16.0.1", "https://canary-14.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-link-local-zone", "https://canary-15.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-unique-local", "https://canary-16.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-nat64-loopback", "https://canary-17.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-v4-mapped-metadata", "https://canary-18.example.com:{port}/hook", Rule.ADDRESS),
    Form("dns-answer-not-an-address", "https://canary-19.example.com:{port}/hook", Rule.UNRESOLVABLE),
    Form("dns-answer-short-numeric", "https://canary-20.example.com:{port}/hook", Rule.UNRESOLVABLE),
    Form("dns-no-addresses", "https://canary-21.example.com:{port}/hook", Rule.UNRESOLVABLE),
    Form("dns-lookup-fails", "https://canary-22.example.com:{port}/hook", Rule.UNRESOLVABLE),
    Form("dns-unknown-name", "https://canary-99.example.com:{port}/hook", Rule.UNRESOLVABLE),
]

ALL_FORMS = URL_FORMS + RESOLVED_FORMS


def test_the_matrix_is_large_and_its_ids_are_unique() -> None:
    assert len(URL_FORMS) >= 30 and len(RESOLVED_FORMS) >= 10
    assert len({f.id for f in ALL_FORMS}) == len(ALL_FORMS)
    assert all(f.resolves for f in RESOLVED_FORMS) and not any(f.resolves for f in URL_FORMS)


@pytest.mark.parametrize("form", ALL_FORMS, ids=[f.id for f in ALL_FORMS])
async def test_refused_form_fails_without_any_connection(
    form: Form, canaries: Canaries, connects: list[tuple[str, int]]
) -> None:
    dns = fake_dns()
    url = form.url.replace("{port}", str(canaries.port))
    async with opened(HttpTransport(allow_private=False, timeout=2, resolver=dns)) as transport:
        with pytest.raises(DeliveryFailed) as failed:
            await post(transport, url)

    assert f"refused ({form.rule.value})" in failed.value.reason, failed.value.reason
    # URL-level refusals are permanent; resolution-level ones are retried (DNS can change).
    assert failed.value.permanent is (not form.resolves), failed.value.reason
    if form.resolves:
        host = url.split("//", 1)[1].split(":", 1)[0]
        assert dns.lookups == [(host, canaries.port)]  # looked up once, then refused
    else:
        assert dns.lookups == []  # refused before any lookup
    assert connects == []
    assert canaries.seen() == {c.host: 0 for c in canaries.all()}


# --- controls: the witnesses work ---------------------------------------------------------------------


async def test_control_allow_private_reaches_the_canary(canaries: Canaries, connects: list[tuple[str, int]]) -> None:
    async with opened(HttpTransport(allow_private=True, timeout=2)) as transport:
        answer = await post(transport, f"http://127.0.0.1:{canaries.port}/hook")

    assert answer == Response(200, None)
    assert canaries.seen() == {c.host: (1 if c is canaries.v4 else 0) for c in canaries.all()}
    assert connects == [("127.0.0.1", canaries.port)]
    assert canaries.v4.requests[0].startswith(b"POST /hook HTTP/1.1\r\n")


# With allow_private=True these http:// twins of matrix forms are accepted and reach a live canary: the
# disguises in the matrix really do point at the listeners that saw 0 connections.
REACHING: list[tuple[str, str, str]] = [  # (id, URL, canary host)
    ("127.0.0.2", "http://127.0.0.2:{port}/hook", "127.0.0.2"),
    ("trailing-dot-ip", "http://127.0.0.1.:{port}/hook", "127.0.0.1"),
    ("v6-loopback", "http://[::1]:{port}/hook", "::1"),
    ("v4-mapped-dotted", "http://[::ffff:127.0.0.1]:{port}/hook", "127.0.0.1"),
    ("v4-mapped-hex", "http://[::ffff:7f00:1]:{port}/hook", "127.0.0.1"),
    ("v4-mapped-long", "http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/hook", "127.0.0.1"),
    ("v4-mapped-127.0.0.2", "http://[::ffff:127.0.0.2]:{port}/hook", "127.0.0.2"),
    ("unspecified-v4", "http://0.0.0.0:{port}/hook", "127.0.0.1"),
    ("unspecified-v6", "http://[::]:{port}/hook", "::1"),
    ("full-width-digits", "http://１２７.０.０.１:{port}/hook", "127.0.0.1"),
    ("ideographic-dots", "http://127。0。0。1:{port}/hook", "127.0.0.1"),
    ("circled-digits", "http://①②⑦.⓪.⓪.①:{port}/hook", "127.0.0.1"),
    ("fragment-at", "http://127.0.0.1:{port}#@example.com/hook", "127.0.0.1"),
    ("dns-127.0.0.1", "http://canary-1.example.com:{port}/hook", "127.0.0.1"),
    ("dns-127.0.0.2", "http://canary-2.example.com:{port}/hook", "127.0.0.2"),
    ("dns-v6-loopback", "http://canary-3.example.com:{port}/hook", "::1"),
    ("dns-v4-mapped-loopback", "http://canary-7.example.com:{port}/hook", "127.0.0.1"),
    ("dns-unspecified-v4", "http://canary-8.example.com:{port}/hook", "127.0.0.1"),
]


@pytest.mark.parametrize(("url", "reached"), [r[1:] for r in REACHING], ids=[r[0] for r in REACHING])
async def test_control_disguised_form_reaches_a_canary_when_private_networks_are_allowed(
    url: str, reached: str, canaries: Canaries, connects: list[tuple[str, int]]
) -> None:
    if ":" in reached and canaries.v6 is None:
        pytest.skip("no IPv6 loopback on this machine")
    async with opened(HttpTransport(allow_private=True, timeout=2, resolver=fake_dns())) as transport:
        answer = await post(transport, url.replace("{port}", str(canaries.port)))

    assert answer.status == 200
    assert canaries.seen() == {c.host: (1 if c.host == reached else 0) for c in canaries.all()}
    assert len(connects) == 1


# --- DNS answers that change between check and connect ------------------------------------------------------


def changing_dns(*answers: list[str]) -> FakeDNS:
    return FakeDNS({"rebind.example.com": list(answers)})


async def test_rebinding_to_loopback_after_the_check_never_reaches_loopback(
    canaries: Canaries, connects: list[tuple[str, int]]
) -> None:
    """First answer public (checked, connected to), later answers loopback: the later ones are never used
    for that connection; the next connection looks up again and is refused."""
    dns = changing_dns([PUBLIC], ["127.0.0.1"])
    url = f"https://rebind.example.com:{canaries.port}/hook"
    async with opened(HttpTransport(allow_private=False, timeout=2, resolver=dns)) as transport:
        with pytest.raises(DeliveryFailed) as first:
            await post(transport, url)
        # One lookup for the attempt, and the only connection went to the address that lookup answered.
        assert dns.lookups == [("rebind.example.com", canaries.port)]
        assert connects == [(PUBLIC, canaries.port)]
        assert first.value.permanent is False
        assert "refused" not in first.value.reason  # it failed to connect; it was not refused

        # A new attempt looks the name up again (no DNS cache) and refuses the new answer, unconnected.
        with pytest.raises(DeliveryFailed) as second:
            await post(transport, url)
        assert f"refused ({Rule.ADDRESS.value})" in second.value.reason
        assert second.value.permanent is False
        assert len(dns.lookups) == 2
        assert connects == [(PUBLIC, canaries.port)]

    assert canaries.seen() == {c.host: 0 for c in canaries.all()}


async def test_loopback_first_answer_is_refused_even_though_a_later_one_is_public(
    canaries: Canaries, connects: list[tuple[str, int]]
) -> None:
    dns = changing_dns(["127.0.0.1"], [PUBLIC])
    url = f"https://rebind.example.com:{canaries.port}/hook"
    async with opened(HttpTransport(allow_private=False, timeout=2, resolver=dns)) as transport:
        with pytest.raises(DeliveryFailed) as first:
            await post(transport, url)
        assert f"refused ({Rule.ADDRESS.value})" in first.value.reason
        assert first.value.permanent is False  # DNS may change: retried later
        assert dns.lookups == [("rebind.example.com", canaries.port)]
        assert connects == []  # no second lookup to find the public address, and no connection

        # Retried later, the (now public) answer is used: a connection to it and to nothing else.
        with pytest.raises(DeliveryFailed):
            await post(transport, url)
        assert len(dns.lookups) == 2
        assert connects == [(PUBLIC, canaries.port)]

    assert canaries.seen() == {c.host: 0 for c in canaries.all()}


async def test_connection_goes_to_the_checked_address_and_the_name_stays_in_the_host_header(
    canaries: Canaries, connects: list[tuple[str, int]]
) -> None:
    dns = changing_dns(["127.0.0.2"], ["127.0.0.1"])
    async with opened(HttpTransport(allow_private=True, timeout=2, resolver=dns)) as transport:
        answer = await post(transport, f"http://rebind.example.com:{canaries.port}/hook?x=1")

    assert answer == Response(200, None)
    assert dns.lookups == [("rebind.example.com", canaries.port)]
    assert connects == [("127.0.0.2", canaries.port)]
    assert canaries.v4b.connections == 1 and canaries.v4.connections == 0
    assert canaries.v4b.requests[0].startswith(b"POST /hook?x=1 HTTP/1.1\r\n")
    assert canaries.v4b.host_header() == f"rebind.example.com:{canaries.port}"


async def test_every_new_connection_looks_the_name_up_again(
    canaries: Canaries, connects: list[tuple[str, int]]
) -> None:
    """The canary closes each connection, so each post needs a new one: each gets its own lookup and goes
    to that lookup's answer (aiohttp's DNS cache is off)."""
    dns = changing_dns(["127.0.0.2"], ["127.0.0.1"])
    url = f"http://rebind.example.com:{canaries.port}/hook"
    async with opened(HttpTransport(allow_private=True, timeout=2, resolver=dns)) as transport:
        assert (await post(transport, url)).status == 200
        assert (await post(transport, url)).status == 200

    assert len(dns.lookups) == 2
    assert connects == [("127.0.0.2", canaries.port), ("127.0.0.1", canaries.port)]
    assert canaries.v4b.connections == 1 and canaries.v4.connections == 1


# --- allow_loopback (`make run`): loopback is reached, nothing else is -------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/hook", "http://localhost:{port}/hook"])
async def test_allow_loopback_reaches_a_loopback_receiver_over_http(
    url: str, canaries: Canaries, connects: list[tuple[str, int]]
) -> None:
    dns = FakeDNS({"localhost": [["127.0.0.1"]]})
    async with opened(HttpTransport(allow_private=False, allow_loopback=True, timeout=2, resolver=dns)) as transport:
        answer = await post(transport, url.replace("{port}", str(canaries.port)))

    assert answer == Response(200, None)
    assert connects == [("127.0.0.1", canaries.port)]
    assert canaries.v4.connections == 1


LOOPBACK_MODE_REFUSED: list[tuple[str, str]] = [  # (id, URL): each refused with allow_loopback, unconnected
    ("v4-mapped-loopback", "http://[::ffff:127.0.0.1]:{port}/hook"),
    ("unspecified-v4", "http://0.0.0.0:{port}/hook"),
    ("unspecified-v6", "http://[::]:{port}/hook"),
    ("http-to-a-name-resolving-to-loopback", "http://canary-1.example.com:{port}/hook"),
    ("dns-v4-mapped-loopback", "https://canary-7.example.com:{port}/hook"),
    ("dns-unspecified", "https://canary-8.example.com:{port}/hook"),
    ("dns-10.0.0.1", "https://canary-10.example.com:{port}/hook"),
    ("dns-metadata", "https://canary-11.example.com:{port}/hook"),
    ("dns-192.168.1.1", "https://canary-13.example.com:{port}/hook"),
    ("dns-unique-local", "https://canary-16.example.com:{port}/hook"),
    ("dns-nat64-loopback", "https://canary-17.example.com:{port}/hook"),
    ("literal-10.0.0.1", "http://10.0.0.1:{port}/hook"),
    ("literal-metadata", "http://169.254.169.254:{port}/latest/meta-data/"),
]


@pytest.mark.parametrize("url", [r[1] for r in LOOPBACK_MODE_REFUSED], ids=[r[0] for r in LOOPBACK_MODE_REFUSED])
async def test_allow_loopback_refuses_everything_else_without_a_connection(
    url: str, canaries: Canaries, connects: list[tuple[str, int]]
) -> None:
    async with opened(
        HttpTransport(allow_private=False, allow_loopback=True, timeout=2, resolver=fake_dns())
    ) as transport:
        with pytest.raises(DeliveryFailed) as failed:
            await post(transport, url.replace("{port}", str(canaries.port)))

    assert "refused" in failed.value.reason, failed.value.reason
    assert connects == []
    assert canaries.seen() == {c.host: 0 for c in canaries.all()}


async def test_allow_loopback_rebinding_from_loopback_to_private_is_refused_at_the_next_connection(
    canaries: Canaries, connects: list[tuple[str, int]]
) -> None:
    dns = FakeDNS({"localhost": [["127.0.0.1"], ["10.0.0.1"]]})
    url = f"http://localhost:{canaries.port}/hook"
    async with opened(HttpTransport(allow_private=False, allow_loopback=True, timeout=2, resolver=dns)) as transport:
        assert (await post(transport, url)).status == 200  # the canary closes the connection: the next is new
        with pytest.raises(DeliveryFailed) as second:
            await post(transport, url)

    assert f"refused ({Rule.ADDRESS.value})" in second.value.reason
    assert len(dns.lookups) == 2
    assert connects == [("127.0.0.1", canaries.port)]
