"""The SSRF guard for callback delivery (ARCHITECTURE.md §2 "Callback delivery").

A callback URL is chosen by a client, but the request to it is made from inside our network, so a URL
must never reach loopback, private networks, cloud metadata (169.254.169.254) or any other address that
is not globally routable. Three steps, each refusing with `EgressRefused`, the one error type callers
catch (`rule` says which check refused, so callers decide by the rule, never by the message text):

1. `check_url` parses the URL strictly into a `Target`: https only (http too when private networks are
   allowed, or to a loopback host when loopback is: the contract says callbacks go to https URLs, and
   local development posts to an http receiver on loopback), no userinfo, a host, a port 1-65535, at most
   2,048 characters. A host that is an IP literal is checked at once; a name is checked after resolution.
2. `resolve` looks the host up once and checks *every* address: a name that resolves to one public and
   one private address is refused, since the connection could go to either.
3. The connector connects to the addresses `resolve` returned, never to the name (a second lookup could
   answer differently: DNS rebinding), and sends the original name as the Host header
   (`Target.host_header`) and as TLS SNI and the name the certificate is verified against
   (`Target.host`). Redirects are not followed (a redirect target was never checked).

`check_address` is the address policy itself. Two settings widen it:

- ``allow_loopback=True`` (`callbacks.allow_loopback`, `--allow-loopback-callbacks`: local development, what
  `make run` uses) allows loopback addresses (127.0.0.0/8 and ::1, nothing else: not the IPv4-mapped or
  other embedded forms) and the names ``localhost`` and ``*.localhost`` (RFC 6761 §6.3), which must then
  resolve to loopback addresses only. Plain ``http`` is allowed for those hosts alone: a loopback literal
  or a localhost name. Private, link-local and every other refused range stay refused, at setting time and
  at each delivery.
- ``allow_private=True`` (`callbacks.allow_private_networks`, `--allow-private-callbacks`: an operator whose
  receivers live on an internal network) allows every address, and ``http`` to any host; the URL must
  still be well formed.

Numeric hosts: browsers and curl read hosts such as ``2130706433``, ``0x7f.1``, ``017700000001`` or
``127.1`` as IPv4 addresses (inet_aton semantics), while other parsers read them as names. Rather than
guess, any host whose last label is a number (the WHATWG URL Standard's "ends in a number" test) must be a
canonical dotted quad (four decimal parts, no leading zeros, each at most 255), whatever ``allow_private``
says; anything else is refused as ambiguous.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import idna  # a dependency of httpx; IDNA 2008 with UTS 46 mapping, as httpx and browsers encode names

from switchboard.errors import EgressRefused

__all__ = ["Resolver", "Rule", "Target", "check_address", "check_url", "resolve"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Looks a host up for a TCP connection to port; answers address strings (an IPv6 one may carry a %zone)."""

# Limits.
MAX_URL_LENGTH = 2048  # Ours. RFC 9110 §4.1 asks for at least 8,000 octets; no callback URL needs more than this.
MAX_HOST_LENGTH = 253  # RFC 1035 §2.3.4: 255 octets on the wire = 253 characters in dotted form.
MAX_LABEL_LENGTH = 63  # RFC 1035 §2.3.4.
MIN_PORT, MAX_PORT = 1, 65535  # RFC 793 §3.1: a 16-bit port; 0 is reserved in the IANA registry (RFC 6335).
DEFAULT_PORTS = {"https": 443, "http": 80}  # RFC 9110 §4.2.2, §4.2.1.

_LABEL = re.compile(rf"[a-z0-9_-]{{1,{MAX_LABEL_LENGTH}}}")  # LDH (RFC 1123 §2.1) plus "_", which real names carry.
_PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits only: int() would also take "+443", "4_43" and "４４３".
_NUMBER = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")  # WHATWG URL Standard, "ends in a number checker".

# Names that never denote a public host, refused before any lookup (the lookup would refuse them too,
# but later and less clearly). Single-label names are refused as well: the resolver completes them with the
# local search domains.
_LOCAL_NAMES = ("localhost",)  # RFC 6761 §6.3: localhost and every name under it are loopback.
_LOOPBACK_NAME_SUFFIX = ".localhost"  # RFC 6761 §6.3: localhost and every name under it are loopback.
_LOCAL_SUFFIXES = (
    ".localhost",  # RFC 6761 §6.3.
    ".local",  # RFC 6762: multicast DNS on the local link.
    ".home.arpa",  # RFC 8375: home networks.
    ".internal",  # reserved by ICANN for private use (2024), never delegated in the public DNS.
)


class Rule(enum.Enum):
    """Which check refused a callback target."""

    LENGTH = "length"
    """The URL is longer than 2,048 characters."""
    SYNTAX = "syntax"
    """The URL holds whitespace, a control character or a backslash (parsers disagree on those), or cannot be
    parsed at all."""
    SCHEME = "scheme"
    """The scheme is not https (or http to loopback or private hosts when they are allowed), or there is none."""
    USERINFO = "userinfo"
    """The URL carries ``user[:password]@`` before the host."""
    HOST = "host"
    """No host, or one that is not a valid name, IPv4 or bracketed IPv6 address."""
    NUMERIC_HOST = "numeric-host"
    """A host ending in a number that is not a canonical dotted quad (``2130706433``, ``0x7f.1``, ``127.1``)."""
    ZONE_ID = "zone-id"
    """An IPv6 address with a zone id (``fe80::1%eth0``): it names an interface of this machine."""
    PORT = "port"
    """A port that is not 1-65535 in ASCII digits."""
    NAME = "name"
    """A name that is local by definition: ``localhost``, ``*.local``, ``*.internal``, a single label, ..."""
    ADDRESS = "address"
    """An address that is not globally routable, given as a literal or found by resolution."""
    UNRESOLVABLE = "unresolvable"
    """The name did not resolve, or resolved to nothing usable. Unlike the others this may change by itself."""


@dataclass(frozen=True, slots=True)
class Target:
    """A callback URL that passed `check_url`, in the parts a connector needs."""

    scheme: str
    """``https``, or ``http`` when private networks, or loopback for a loopback host, are allowed."""
    host: str
    """Lower-case ASCII: an IDNA A-label name without a trailing dot, a dotted-quad IPv4 address, or an
    IPv6 address in compressed form without brackets. The TLS SNI and certificate name for a name."""
    port: int
    path_and_query: str
    """The request target: starts with "/", non-ASCII percent-encoded, no fragment."""
    ip_literal: bool
    """The host is an address (already checked); otherwise it is a name that `resolve` must check."""

    @property
    def host_header(self) -> str:
        """The Host header: the host (IPv6 in brackets), with the port unless it is the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"


def check_url(url: str, *, allow_private: bool, allow_loopback: bool = False) -> Target:
    """Parse and check a callback URL; raise `EgressRefused` if it must not be used.

    An IP-literal host is checked with `check_address` here; a name must still go through `resolve`.
    """
    if len(url) > MAX_URL_LENGTH:
        raise EgressRefused(Rule.LENGTH, f"{len(url)} characters, at most {MAX_URL_LENGTH}")
    if any(ch <= " " or ch == "\x7f" or ch == "\\" for ch in url):
        # urlsplit silently drops tabs and newlines and strips leading blanks; WHATWG reads "\" as "/".
        raise EgressRefused(Rule.SYNTAX, "whitespace, control characters and backslashes are not allowed")
    try:
        parts = urlsplit(url)
    except ValueError as e:  # e.g. an unbalanced "[" in the authority
        raise EgressRefused(Rule.SYNTAX, str(e)) from None
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_private or allow_loopback else ("https",)
    if scheme not in allowed:
        raise EgressRefused(Rule.SCHEME, f"scheme {scheme or '(none)'!r}; allowed: {', '.join(allowed)}")
    netloc = parts.netloc
    if not url[len(scheme) + 1 :].startswith("//") or not netloc:
        raise EgressRefused(Rule.HOST, "the URL has no host")
    if "@" in netloc:
        raise EgressRefused(Rule.USERINFO, "credentials (user:password@) are not allowed in a callback URL")

    host, port_text = _split_authority(netloc)
    port = _parse_port(port_text, default=DEFAULT_PORTS[scheme])
    host, literal = _parse_host(host, allow_private=allow_private, allow_loopback=allow_loopback)
    if literal is not None:
        check_address(literal, allow_private=allow_private, allow_loopback=allow_loopback)
    if scheme == "http" and not allow_private and not (_is_loopback_name(host) or _is_loopback(literal)):
        # allow_loopback alone: plain http only where it never leaves this machine
        raise EgressRefused(Rule.SCHEME, f"http only to a loopback address or localhost, not {host!r}; use https")

    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    path = "".join(ch if ch.isascii() else quote(ch, safe="") for ch in path)
    return Target(scheme=scheme, host=host, port=port, path_and_query=path, ip_literal=literal is not None)


def _split_authority(netloc: str) -> tuple[str, str]:
    """``host[:port]`` or ``[v6]:port`` → (host, port text); brackets kept around an IPv6 host."""
    if netloc.startswith("["):
        end = netloc.find("]")
        rest = netloc[end + 1 :] if end > 0 else "?"
        if rest and not rest.startswith(":"):
            raise EgressRefused(Rule.HOST, f"malformed bracketed host in {netloc!r}")
        return netloc[: end + 1], rest[1:]
    if "[" in netloc or "]" in netloc:
        raise EgressRefused(Rule.HOST, f"malformed bracketed host in {netloc!r}")
    if netloc.count(":") > 1:
        raise EgressRefused(Rule.HOST, f"more than one ':' in {netloc!r} (an IPv6 address goes in brackets)")
    host, _, port = netloc.partition(":")
    return host, port


def _parse_port(text: str, *, default: int) -> int:
    if not text:  # RFC 3986 §3.2.3: an empty port means the scheme's default
        return default
    if not _PORT.fullmatch(text) or not MIN_PORT <= int(text) <= MAX_PORT:
        raise EgressRefused(Rule.PORT, f"port {text!r}; must be {MIN_PORT}-{MAX_PORT}")
    return int(text)


def _parse_host(host: str, *, allow_private: bool, allow_loopback: bool) -> tuple[str, IPAddress | None]:
    """Validate the host; return it normalised (an A-label name, lower case, no trailing dot), and its
    address if it is an IP literal."""
    if host.startswith("["):
        inner = host[1:-1]
        if "%" in inner:  # "%25eth0" in a URL (RFC 6874), "%eth0" as ipaddress would accept it
            raise EgressRefused(Rule.ZONE_ID, f"IPv6 zone ids are not allowed: {host!r}")
        try:
            address = ipaddress.IPv6Address(inner)  # refuses IPvFuture ("[v1.x]") and IPv4 in brackets
        except ValueError:
            raise EgressRefused(Rule.HOST, f"not an IPv6 address: {host!r}") from None
        return address.compressed, address
    if not host:
        raise EgressRefused(Rule.HOST, "the URL has no host")
    if "%" in host:  # browsers percent-decode hosts ("%31%32%37.0.0.1"); other parsers do not
        raise EgressRefused(Rule.HOST, f"percent-encoded host {host!r}")
    if not host.isascii():
        try:
            # UTS 46 maps full-width digits and ideographic full stops too: "１２７。0。0。1" → "127.0.0.1",
            # which is why the checks below run on the encoded form.
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as e:
            raise EgressRefused(Rule.HOST, f"invalid internationalised name {host!r}: {e}") from None
    name = host.lower()
    name = name.removesuffix(".")  # the root label: "example.com." is "example.com" (and never in SNI)
    labels = name.split(".")
    if len(name) > MAX_HOST_LENGTH or not all(_LABEL.fullmatch(label) for label in labels):
        raise EgressRefused(Rule.HOST, f"not a valid host name: {host!r}")
    if _NUMBER.fullmatch(labels[-1]):
        try:
            address4 = ipaddress.IPv4Address(name)  # only the canonical dotted quad; no leading zeros since 3.9.5
        except ValueError:
            raise EgressRefused(Rule.NUMERIC_HOST, f"{host!r} is not a canonical dotted-quad address") from None
        return address4.compressed, address4
    if not allow_private and not (allow_loopback and _is_loopback_name(name)):
        if name in _LOCAL_NAMES or name.endswith(_LOCAL_SUFFIXES):
            raise EgressRefused(Rule.NAME, f"{host!r} is a local name")
        if len(labels) == 1:
            raise EgressRefused(Rule.NAME, f"{host!r} is a single-label name (completed with local search domains)")
    return name, None


# The address policy. RFC 6890 (special-purpose address registries, kept up to date by IANA) is the source
# of most blocks; each is refused whatever its registry flags say, since no callback receiver lives there.
_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
_REFUSED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/32"), "unspecified (RFC 6890 §2.2.2)"),
    (_V4("0.0.0.0/8"), "'this network' (RFC 6890 §2.2.2)"),
    (_V4("10.0.0.0/8"), "private (RFC 1918)"),
    (_V4("100.64.0.0/10"), "shared address space / CGNAT (RFC 6598)"),
    (_V4("127.0.0.0/8"), "loopback (RFC 6890 §2.2.2)"),
    (_V4("169.254.0.0/16"), "link-local, cloud metadata (RFC 3927)"),
    (_V4("172.16.0.0/12"), "private (RFC 1918)"),
    (_V4("192.0.0.0/24"), "IETF protocol assignments (RFC 6890 §2.2.2)"),
    (_V4("192.0.2.0/24"), "documentation TEST-NET-1 (RFC 5737)"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast, deprecated (RFC 7526)"),
    (_V4("192.168.0.0/16"), "private (RFC 1918)"),
    (_V4("198.18.0.0/15"), "benchmarking (RFC 2544)"),
    (_V4("198.51.100.0/24"), "documentation TEST-NET-2 (RFC 5737)"),
    (_V4("203.0.113.0/24"), "documentation TEST-NET-3 (RFC 5737)"),
    (_V4("224.0.0.0/4"), "multicast (RFC 5771)"),
    (_V4("255.255.255.255/32"), "limited broadcast (RFC 919, RFC 6890 §2.2.2)"),
    (_V4("240.0.0.0/4"), "reserved (RFC 1112 §4)"),
)
_REFUSED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified (RFC 4291 §2.5.2)"),
    (_V6("::1/128"), "loopback (RFC 4291 §2.5.3)"),
    (_V6("100::/64"), "discard-only (RFC 6666)"),
    (_V6("2001::/23"), "IETF protocol assignments (RFC 2928, RFC 6890 §2.2.3)"),
    (_V6("2001:db8::/32"), "documentation (RFC 3849)"),
    (_V6("3fff::/20"), "documentation (RFC 9637)"),
    (_V6("5f00::/16"), "segment routing SIDs (RFC 9602)"),
    (_V6("fc00::/7"), "unique local (RFC 4193)"),
    (_V6("fe80::/10"), "link-local (RFC 4291 §2.5.6)"),
    (_V6("fec0::/10"), "site-local, deprecated (RFC 3879)"),
    (_V6("ff00::/8"), "multicast (RFC 4291 §2.7)"),
)
_GLOBAL_UNICAST_V6 = _V6("2000::/3")  # RFC 4291 §2.4, IANA IPv6 address space: all else is reserved or special.
_MAPPED = _V6("::ffff:0:0/96")  # IPv4-mapped, RFC 4291 §2.5.5.2: the OS connects to the embedded IPv4 address.
_COMPATIBLE = _V6("::/96")  # IPv4-compatible, deprecated, RFC 4291 §2.5.5.1.
_NAT64 = _V6("64:ff9b::/96")  # RFC 6052 §2.1 well-known prefix; the IPv4 address is the last 32 bits.
_NAT64_LOCAL = _V6("64:ff9b:1::/48")  # RFC 8215 local-use NAT64 prefix.
_SIX_TO_FOUR = _V6("2002::/16")  # RFC 3056 §2: the IPv4 address is bits 16-48.
_TEREDO = _V6("2001::/32")  # RFC 4380 §4: the server and (obfuscated) client IPv4 addresses are embedded.

# Why not just `ipaddress.ip_address(...).is_global`? Python 3.11.7 (this project's) answers True for
# addresses refused here: IPv4 multicast 224.0.0.0/4, 192.88.99.0/24 and 192.0.0.9 (globally reachable
# in the registry, but no receiver lives there), site-local fec0::/10, the documentation prefix 3fff::/20,
# SRv6 5f00::/16, unallocated space outside 2000::/3 (4000::1), and every embedded-IPv4 form except
# IPv4-mapped whatever the embedded address: IPv4-compatible ::127.0.0.1, NAT64 64:ff9b::a00:1 and
# 64:ff9b:1::a00:1, 6to4 2002:7f00:1::. It answers False for CGNAT 100.64.0.0/10, but is_private is False
# there too, so a check on is_private alone lets it through. And its tables change between releases
# (gh-113171 / CVE-2024-4032 reworked them), so the tables above decide, the same on every Python;
# `is_global` is consulted last, only to refuse what a newer Python knows more of.


def check_address(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool, allow_loopback: bool = False
) -> None:
    """Raise `EgressRefused` unless ``ip`` is a globally routable unicast address (or a loopback address and
    loopback is allowed, or private is allowed)."""
    if allow_private or (allow_loopback and _is_loopback(ip)):
        return
    reason = _refusal(ip)
    if reason is not None:
        raise EgressRefused(Rule.ADDRESS, f"{ip} is {reason}")


_LOOPBACK = (_V4("127.0.0.0/8"), _V6("::1/128"))  # RFC 6890 §2.2.2, RFC 4291 §2.5.3: what allow_loopback allows


def _is_loopback(ip: IPAddress | None) -> bool:
    """127.0.0.0/8 or ::1 exactly: not ::ffff:127.0.0.1 or another embedded form, nor a zoned address."""
    if ip is None or (isinstance(ip, ipaddress.IPv6Address) and ip.scope_id):
        return False
    return any(ip in network for network in _LOOPBACK)


def _is_loopback_name(name: str) -> bool:
    """``localhost`` or a name under it (RFC 6761 §6.3); `resolve` holds it to loopback addresses."""
    return name in _LOCAL_NAMES or name.endswith(_LOOPBACK_NAME_SUFFIX)


def _refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be contacted, or None if it is a global unicast address."""
    if isinstance(ip, ipaddress.IPv4Address):
        for network, reason in _REFUSED_V4:
            if ip in network:
                return reason
        return None if ip.is_global else "not globally routable"

    if ip.scope_id:
        return "scoped to an interface of this machine (zone id)"
    embedded: ipaddress.IPv4Address | None = None
    if ip in _MAPPED:
        embedded, form = ip.ipv4_mapped, "IPv4-mapped"
    elif ip in _COMPATIBLE and int(ip) > 1:  # not :: or ::1, which the table below names
        embedded, form = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF), "IPv4-compatible"
    elif ip in _NAT64:
        embedded, form = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF), "NAT64"
    elif ip in _NAT64_LOCAL:
        # Where the IPv4 address sits depends on the operator's prefix length (/48 to /96, RFC 6052 §2.2),
        # and the prefix is for local use only (RFC 8215: not globally reachable): refused outright.
        return "local-use NAT64 (RFC 8215)"
    elif ip in _SIX_TO_FOUR:
        embedded, form = ip.sixtofour, "6to4"
    elif ip in _TEREDO:
        # The client address is obfuscated and the server picks the relay path: nothing to check, and no
        # callback receiver needs a Teredo address.
        return "Teredo (RFC 4380)"
    if embedded is not None:
        inner = _refusal(embedded)
        # A public embedded address is allowed: the packet goes to it. RFC 6052 §3.1 forbids the NAT64
        # well-known prefix for non-global IPv4 addresses, which is what refusing the rest enforces.
        return None if inner is None else f"{form}, embedding {embedded} which is {inner}"

    for network6, reason in _REFUSED_V6:
        if ip in network6:
            return reason
    if ip not in _GLOBAL_UNICAST_V6:
        return "outside global unicast 2000::/3 (RFC 4291 §2.4)"
    return None if ip.is_global else "not globally routable"


async def resolve(
    host: str,
    port: int,
    *,
    allow_private: bool,
    allow_loopback: bool = False,
    resolver: Resolver | None = None,
) -> list[str]:
    """Look ``host`` up once, check every address, and return them (in the resolver's order, deduplicated).

    The caller connects to one of these addresses, never to ``host`` again, and sends ``host`` in the Host
    header and as TLS SNI. A single refused address refuses the host: the connection could otherwise be
    steered to it. An IP-literal host is checked and returned without a lookup. Resolution errors are
    raised as `EgressRefused` with `Rule.UNRESOLVABLE`. Bound the call with a timeout at the caller.

    With ``allow_loopback`` (and not ``allow_private``), ``localhost`` and names under it must resolve to
    loopback addresses only: `check_url` let them through, and ``http`` to them, for that reason alone.
    """
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        check_address(literal, allow_private=allow_private, allow_loopback=allow_loopback)
        return [str(literal)]

    lookup = resolver if resolver is not None else _getaddrinfo
    try:
        answers = await lookup(host, port)
    except (OSError, UnicodeError) as e:  # socket.gaierror is an OSError; over-long labels are UnicodeError
        raise EgressRefused(Rule.UNRESOLVABLE, f"{host!r} did not resolve: {e}") from None
    checked: list[str] = []
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer)
        except ValueError:
            raise EgressRefused(Rule.UNRESOLVABLE, f"{host!r} resolved to {answer!r}, not an address") from None
        try:
            check_address(address, allow_private=allow_private, allow_loopback=allow_loopback)
        except EgressRefused as e:
            raise EgressRefused(Rule.ADDRESS, f"{host!r} resolves to {e.detail}") from None
        if not allow_private and _is_loopback_name(host.lower().removesuffix(".")) and not _is_loopback(address):
            raise EgressRefused(Rule.ADDRESS, f"{host!r} resolves to {address}, which is not a loopback address")
        if str(address) not in checked:
            checked.append(str(address))
    if not checked:
        raise EgressRefused(Rule.UNRESOLVABLE, f"{host!r} resolved to no addresses")
    return checked


async def _getaddrinfo(host: str, port: int) -> list[str]:
    """The default resolver: the system's, run off the event loop by asyncio."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for family, _, _, _, sockaddr in infos:
        address = str(sockaddr[0])
        # An IPv6 sockaddr is (host, port, flowinfo, scope_id); keep a link-local address's zone.
        if family == socket.AF_INET6 and len(sockaddr) == 4 and sockaddr[3] and "%" not in address:
            address = f"{address}%{sockaddr[3]}"
        addresses.append(address)
    return addresses
