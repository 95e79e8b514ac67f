"""The SSRF guard: which callback URLs and addresses are refused, and why (no network: fake resolvers)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, cast

import pytest

from switchboard.accounts import Accounts
from switchboard.callbacks.egress import Rule, Target, _getaddrinfo, check_address, check_url, resolve
from switchboard.callbacks.transport import HttpTransport
from switchboard.domain.ids import IdGenerator
from switchboard.errors import AccountError, DeliveryFailed, EgressRefused
from tests.clock import FakeClock

# (url, the rule that must refuse it) with allow_private=False. https unless the scheme is the point, so
# that the refusal is proven to come from the host, not from the scheme.
REFUSED_URLS: list[tuple[str, Rule]] = [
    # schemes
    ("http://example.com/hook", Rule.SCHEME),
    ("http://2130706433/", Rule.SCHEME),
    ("ftp://example.com/hook", Rule.SCHEME),
    ("file:///etc/passwd", Rule.SCHEME),
    ("gopher://127.0.0.1:25/_HELO", Rule.SCHEME),
    ("dict://127.0.0.1:11211/stat", Rule.SCHEME),
    ("ws://example.com/", Rule.SCHEME),
    ("javascript:alert(1)", Rule.SCHEME),
    ("data:text/plain,hi", Rule.SCHEME),
    ("example.com/hook", Rule.SCHEME),
    ("//example.com/hook", Rule.SCHEME),
    ("", Rule.SCHEME),
    # userinfo
    ("https://user:pass@example.com/", Rule.USERINFO),
    ("https://user@example.com/", Rule.USERINFO),
    ("https://@example.com/", Rule.USERINFO),
    ("https://example.com@127.0.0.1/", Rule.USERINFO),
    ("https://example.com:443@169.254.169.254/", Rule.USERINFO),
    # syntax, length
    ("https://example.com\\@127.0.0.1/", Rule.SYNTAX),
    ("https://exa\tmple.com/", Rule.SYNTAX),
    ("https://example.com/\r\nX-Injected: 1", Rule.SYNTAX),
    (" https://example.com/", Rule.SYNTAX),
    ("https://[::1/", Rule.SYNTAX),
    ("https://example.com/" + "a" * 2100, Rule.LENGTH),
    # host
    ("https:///hook", Rule.HOST),
    ("https://", Rule.HOST),
    ("https:example.com/hook", Rule.HOST),
    ("https://example..com/", Rule.HOST),
    ("https://exa$mple.com/", Rule.HOST),
    ("https://::1/", Rule.HOST),
    ("https://[v1.fe]/", Rule.HOST),
    ("https://[127.0.0.1]/", Rule.SYNTAX),
    ("https://%31%32%37.0.0.1/", Rule.HOST),
    ("https://" + "a" * 64 + ".com/", Rule.HOST),
    # port
    ("https://example.com:0/", Rule.PORT),
    ("https://example.com:65536/", Rule.PORT),
    ("https://example.com:99999999/", Rule.PORT),
    ("https://example.com:+443/", Rule.PORT),
    ("https://example.com:4_43/", Rule.PORT),
    ("https://example.com:４４３/", Rule.PORT),
    ("https://example.com:0x1bb/", Rule.PORT),
    # numeric hosts that are not a canonical dotted quad (decimal, octal, hex, short forms)
    ("https://2130706433/", Rule.NUMERIC_HOST),
    ("https://0x7f.1/", Rule.NUMERIC_HOST),
    ("https://017700000001/", Rule.NUMERIC_HOST),
    ("https://0x7f000001/", Rule.NUMERIC_HOST),
    ("https://0177.0.0.1/", Rule.NUMERIC_HOST),
    ("https://127.1/", Rule.NUMERIC_HOST),
    ("https://010.0.0.1/", Rule.NUMERIC_HOST),
    ("https://1.2.3.04/", Rule.NUMERIC_HOST),
    ("https://256.0.0.1/", Rule.NUMERIC_HOST),
    ("https://0/", Rule.NUMERIC_HOST),
    ("https://0x/", Rule.NUMERIC_HOST),
    ("https://example.123/", Rule.NUMERIC_HOST),
    ("https://2852039166/latest/meta-data/", Rule.NUMERIC_HOST),  # 169.254.169.254
    # local names
    ("https://localhost/", Rule.NAME),
    ("https://LOCALHOST./", Rule.NAME),
    ("https://api.localhost/", Rule.NAME),
    ("https://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/", Rule.NAME),  # UTS 46 maps it to "localhost"
    ("https://printer.local/", Rule.NAME),
    ("https://metadata.google.internal/", Rule.NAME),
    ("https://router.home.arpa/", Rule.NAME),
    ("https://intranet/", Rule.NAME),
    # zone ids
    ("https://[fe80::1%25eth0]/", Rule.ZONE_ID),
    ("https://[fe80::1%eth0]/", Rule.ZONE_ID),
    # addresses: IPv4
    ("https://127.0.0.1/", Rule.ADDRESS),
    ("https://127.0.0.1./", Rule.ADDRESS),
    ("https://127.255.255.254:8443/", Rule.ADDRESS),
    ("https://１２７.0.0.1/", Rule.ADDRESS),  # full-width digits, mapped by UTS 46
    ("https://127。0。0。1/", Rule.ADDRESS),  # ideographic full stops
    ("https://10.0.0.1/", Rule.ADDRESS),
    ("https://172.16.0.1/", Rule.ADDRESS),
    ("https://192.168.1.1/", Rule.ADDRESS),
    ("https://169.254.169.254/latest/meta-data/", Rule.ADDRESS),
    ("https://100.64.0.1/", Rule.ADDRESS),
    ("https://0.0.0.0/", Rule.ADDRESS),
    ("https://0.1.2.3/", Rule.ADDRESS),
    ("https://255.255.255.255/", Rule.ADDRESS),
    ("https://240.0.0.1/", Rule.ADDRESS),
    ("https://224.0.0.1/", Rule.ADDRESS),
    ("https://192.0.0.9/", Rule.ADDRESS),
    ("https://192.0.2.1/", Rule.ADDRESS),
    ("https://198.18.0.1/", Rule.ADDRESS),
    ("https://192.88.99.1/", Rule.ADDRESS),
    # addresses: IPv6 and IPv4 embedded in IPv6
    ("https://[::1]/", Rule.ADDRESS),
    ("https://[::]/", Rule.ADDRESS),
    ("https://[::ffff:127.0.0.1]/", Rule.ADDRESS),
    ("https://[::ffff:7f00:1]/", Rule.ADDRESS),
    ("https://[0:0:0:0:0:ffff:127.0.0.1]/", Rule.ADDRESS),
    ("https://[::ffff:169.254.169.254]/", Rule.ADDRESS),
    ("https://[::127.0.0.1]/", Rule.ADDRESS),
    ("https://[64:ff9b::a00:1]/", Rule.ADDRESS),
    ("https://[64:ff9b::169.254.169.254]/", Rule.ADDRESS),
    ("https://[64:ff9b:1::808:808]/", Rule.ADDRESS),
    ("https://[2002:7f00:1::]/", Rule.ADDRESS),
    ("https://[2002:a9fe:a9fe::1]/", Rule.ADDRESS),
    ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", Rule.ADDRESS),  # Teredo
    ("https://[fe80::1]/", Rule.ADDRESS),
    ("https://[fc00::1]/", Rule.ADDRESS),
    ("https://[fd12:3456::1]/", Rule.ADDRESS),
    ("https://[fec0::1]/", Rule.ADDRESS),
    ("https://[ff02::1]/", Rule.ADDRESS),
    ("https://[2001:db8::1]/", Rule.ADDRESS),
    ("https://[3fff::1]/", Rule.ADDRESS),
    ("https://[100::1]/", Rule.ADDRESS),
    ("https://[5f00::1]/", Rule.ADDRESS),
    ("https://[4000::1]/", Rule.ADDRESS),
]


@pytest.mark.parametrize(("url", "rule"), REFUSED_URLS, ids=[u[:60] or "(empty)" for u, _ in REFUSED_URLS])
def test_refused_url_matrix(url: str, rule: Rule) -> None:
    with pytest.raises(EgressRefused) as refused:
        check_url(url, allow_private=False)
    assert refused.value.rule is rule, str(refused.value)
    assert rule.value in str(refused.value)


# Refused whatever allow_private says: they are malformed or ambiguous, not merely private.
ALWAYS_REFUSED = [
    (url, rule)
    for url, rule in REFUSED_URLS
    if rule in {Rule.USERINFO, Rule.SYNTAX, Rule.LENGTH, Rule.HOST, Rule.PORT, Rule.NUMERIC_HOST, Rule.ZONE_ID}
] + [("ftp://127.0.0.1/", Rule.SCHEME), ("http://2130706433/", Rule.NUMERIC_HOST)]


@pytest.mark.parametrize(("url", "rule"), ALWAYS_REFUSED, ids=[u[:60] for u, _ in ALWAYS_REFUSED])
def test_malformed_and_ambiguous_urls_are_refused_even_when_private_is_allowed(url: str, rule: Rule) -> None:
    with pytest.raises(EgressRefused) as refused:
        check_url(url, allow_private=True)
    assert refused.value.rule is rule


def test_the_matrix_is_large_enough() -> None:
    assert len(REFUSED_URLS) >= 40


ACCEPTED_URLS: list[tuple[str, Target]] = [
    ("https://93.184.216.34/hook", Target("https", "93.184.216.34", 443, "/hook", ip_literal=True)),
    ("https://[2606:4700::1111]/", Target("https", "2606:4700::1111", 443, "/", ip_literal=True)),
    (
        "https://[2001:4860:4860:0:0:0:0:8888]:8443/x",
        Target("https", "2001:4860:4860::8888", 8443, "/x", ip_literal=True),
    ),
    ("https://example.com/x", Target("https", "example.com", 443, "/x", ip_literal=False)),
    ("https://example.com", Target("https", "example.com", 443, "/", ip_literal=False)),
    ("https://example.com:/", Target("https", "example.com", 443, "/", ip_literal=False)),
    ("HTTPS://Example.COM./", Target("https", "example.com", 443, "/", ip_literal=False)),
    (
        "https://hooks.example.com:8443/a/b?c=1&d=2#fragment",
        Target("https", "hooks.example.com", 8443, "/a/b?c=1&d=2", ip_literal=False),
    ),
    ("https://Bücher.example/ä", Target("https", "xn--bcher-kva.example", 443, "/%C3%A4", ip_literal=False)),
    ("https://1e100.net/", Target("https", "1e100.net", 443, "/", ip_literal=False)),
    ("https://0x7f.example.com/", Target("https", "0x7f.example.com", 443, "/", ip_literal=False)),
    ("https://[::ffff:8.8.8.8]/", Target("https", "::ffff:808:808", 443, "/", ip_literal=True)),
    ("https://[64:ff9b::8.8.8.8]/", Target("https", "64:ff9b::808:808", 443, "/", ip_literal=True)),
    ("https://[2002:808:808::1]/", Target("https", "2002:808:808::1", 443, "/", ip_literal=True)),
]


@pytest.mark.parametrize(("url", "target"), ACCEPTED_URLS, ids=[u for u, _ in ACCEPTED_URLS])
def test_public_urls_are_accepted_and_normalised(url: str, target: Target) -> None:
    assert check_url(url, allow_private=False) == target


def test_host_header_brackets_ipv6_and_omits_the_default_port() -> None:
    assert check_url("https://example.com/", allow_private=False).host_header == "example.com"
    assert check_url("https://example.com:8443/", allow_private=False).host_header == "example.com:8443"
    assert check_url("https://[2606:4700::1111]/", allow_private=False).host_header == "[2606:4700::1111]"
    assert check_url("http://[::1]:80/", allow_private=True).host_header == "[::1]"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost:9000/",
        "https://[::1]/",
        "http://10.1.2.3/",
        "http://intranet/x",
        "http://[::ffff:127.0.0.1]/",
    ],
)
def test_allow_private_accepts_local_development_targets(url: str) -> None:
    check_url(url, allow_private=True)


@pytest.mark.parametrize(
    "address",
    # Python 3.11.7's ipaddress answers is_global=True for each of these but the last (whose is_private is
    # False, so a check on is_private alone would pass it); all must be refused.
    [
        *("224.0.0.1", "192.0.0.9", "192.88.99.1", "::127.0.0.1", "64:ff9b::a00:1", "64:ff9b::7f00:1"),
        *(
            "64:ff9b:1::a00:1",
            "2002:7f00:1::",
            "2002:a00:1::",
            "fec0::1",
            "3fff::1",
            "5f00::1",
            "4000::1",
            "100.64.0.1",
        ),
    ],
)
def test_addresses_the_stdlib_calls_global_are_refused(address: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        check_address(ipaddress.ip_address(address), allow_private=False)
    assert refused.value.rule is Rule.ADDRESS


def test_embedded_refusal_names_the_embedded_address() -> None:
    with pytest.raises(EgressRefused, match=r"6to4, embedding 10\.0\.0\.1 which is private"):
        check_address(ipaddress.ip_address("2002:a00:1::"), allow_private=False)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "2a00:1450:4001::200e"])
def test_global_unicast_addresses_are_allowed(address: str) -> None:
    check_address(ipaddress.ip_address(address), allow_private=False)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.1", "fe80::1%eth0", "169.254.169.254", "::"])
def test_allow_private_allows_every_address(address: str) -> None:
    check_address(ipaddress.ip_address(address), allow_private=True)


class FakeResolver:
    """Answers from a table, records every lookup, and fails like getaddrinfo for unknown names."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


async def test_a_name_resolving_to_public_and_private_addresses_is_refused() -> None:
    lookup = FakeResolver({"mixed.example": ["93.184.216.34", "10.0.0.5"]})
    with pytest.raises(EgressRefused, match=r"10\.0\.0\.5") as refused:
        await resolve("mixed.example", 443, allow_private=False, resolver=lookup)
    assert refused.value.rule is Rule.ADDRESS


async def test_a_name_resolving_to_an_ipv4_mapped_private_address_is_refused() -> None:
    lookup = FakeResolver({"sneaky.example": ["2606:4700::1111", "::ffff:169.254.169.254"]})
    with pytest.raises(EgressRefused) as refused:
        await resolve("sneaky.example", 443, allow_private=False, resolver=lookup)
    assert refused.value.rule is Rule.ADDRESS


async def test_a_name_resolving_only_to_public_addresses_returns_them_once_each_in_order() -> None:
    lookup = FakeResolver({"hooks.example": ["93.184.216.34", "2606:4700::1111", "93.184.216.34"]})
    addresses = await resolve("hooks.example", 443, allow_private=False, resolver=lookup)
    assert addresses == ["93.184.216.34", "2606:4700::1111"]
    assert lookup.calls == [("hooks.example", 443)]


async def test_allow_private_accepts_loopback() -> None:
    lookup = FakeResolver({"localhost": ["127.0.0.1", "::1"]})
    assert await resolve("localhost", 8080, allow_private=True, resolver=lookup) == ["127.0.0.1", "::1"]


async def test_an_ip_literal_is_checked_without_a_lookup() -> None:
    lookup = FakeResolver({})
    assert await resolve("2606:4700::1111", 443, allow_private=False, resolver=lookup) == ["2606:4700::1111"]
    with pytest.raises(EgressRefused):
        await resolve("127.0.0.1", 443, allow_private=False, resolver=lookup)
    assert lookup.calls == []


@pytest.mark.parametrize(
    ("answers", "match"),
    [({}, "did not resolve"), ({"hooks.example": []}, "no addresses"), ({"hooks.example": ["nope"]}, "not an")],
)
async def test_resolution_failures_are_refusals_of_their_own_rule(answers: dict[str, list[str]], match: str) -> None:
    with pytest.raises(EgressRefused, match=match) as refused:
        await resolve("hooks.example", 443, allow_private=False, resolver=FakeResolver(answers))
    assert refused.value.rule is Rule.UNRESOLVABLE


async def test_the_default_resolver_answers_for_a_literal_without_dns() -> None:
    # getaddrinfo on a numeric host never touches the network; proves the default path parses its answers.
    assert await resolve("::1", 443, allow_private=True) == ["::1"]
    assert await _getaddrinfo("127.0.0.1", 443) == ["127.0.0.1"]


# --- allow_loopback: local development (`make run`) reaches loopback, and nothing private ------------------

LOOPBACK_ALLOWED = [
    "http://127.0.0.1:8081/",
    "http://127.9.8.7:8081/hook",
    "http://[::1]:8081/",
    "http://localhost:8081/",
    "http://LOCALHOST.:8081/",
    "http://api.localhost:8081/x?y=1",
    "https://127.0.0.1/",
    "https://localhost/",
]


@pytest.mark.parametrize("url", LOOPBACK_ALLOWED)
def test_allow_loopback_accepts_loopback_urls_over_http(url: str) -> None:
    check_url(url, allow_private=False, allow_loopback=True)


@pytest.mark.parametrize("url", LOOPBACK_ALLOWED)
def test_without_allow_loopback_loopback_urls_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        check_url(url, allow_private=False)
    assert refused.value.rule in (Rule.SCHEME, Rule.ADDRESS, Rule.NAME)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://10.0.0.1/", Rule.ADDRESS),
        ("https://10.0.0.1/", Rule.ADDRESS),
        ("https://192.168.1.10:8081/", Rule.ADDRESS),
        ("https://172.16.0.1/", Rule.ADDRESS),
        ("https://169.254.169.254/latest/meta-data/", Rule.ADDRESS),
        ("https://[fd00::1]/", Rule.ADDRESS),
        ("https://[fe80::1]/", Rule.ADDRESS),
        ("https://100.64.0.1/", Rule.ADDRESS),
        ("https://0.0.0.0:8081/", Rule.ADDRESS),  # the kernel would connect it to loopback; not allowed all the same
        ("https://[::]:8081/", Rule.ADDRESS),
        ("https://[::ffff:127.0.0.1]/", Rule.ADDRESS),  # loopback means 127/8 and ::1, not their embedded forms
        ("https://[::ffff:10.0.0.1]/", Rule.ADDRESS),
        ("http://hooks.example.invalid/", Rule.SCHEME),  # plain http is for loopback hosts only
        ("http://[::ffff:127.0.0.1]:8081/", Rule.ADDRESS),
        ("http://93.184.216.34/", Rule.SCHEME),  # a public address: https only
        ("https://printer.local/", Rule.NAME),
        ("https://intranet/", Rule.NAME),
        ("https://db.internal/", Rule.NAME),
        ("http://2130706433/", Rule.NUMERIC_HOST),
        ("http://127.1/", Rule.NUMERIC_HOST),
    ],
)
def test_allow_loopback_still_refuses_private_and_ambiguous_urls(url: str, rule: Rule) -> None:
    with pytest.raises(EgressRefused) as refused:
        check_url(url, allow_private=False, allow_loopback=True)
    assert refused.value.rule is rule, refused.value


@pytest.mark.parametrize("address", ["127.0.0.1", "127.255.255.254", "::1"])
def test_allow_loopback_allows_loopback_addresses(address: str) -> None:
    check_address(ipaddress.ip_address(address), allow_private=False, allow_loopback=True)
    with pytest.raises(EgressRefused):
        check_address(ipaddress.ip_address(address), allow_private=False)


@pytest.mark.parametrize(
    "address", ["10.0.0.1", "192.168.0.1", "172.31.255.255", "169.254.169.254", "fd12::1", "fe80::1", "::ffff:7f00:1"]
)
def test_allow_loopback_refuses_private_addresses(address: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        check_address(ipaddress.ip_address(address), allow_private=False, allow_loopback=True)
    assert refused.value.rule is Rule.ADDRESS


async def test_allow_loopback_resolves_localhost_to_loopback_only() -> None:
    lookup = FakeResolver({"localhost": ["127.0.0.1", "::1"], "api.localhost": ["127.0.0.1"]})
    assert await resolve("localhost", 8081, allow_private=False, allow_loopback=True, resolver=lookup) == [
        "127.0.0.1",
        "::1",
    ]
    assert await resolve("api.localhost", 8081, allow_private=False, allow_loopback=True, resolver=lookup) == [
        "127.0.0.1"
    ]
    with pytest.raises(EgressRefused, match="loopback"):
        await resolve("localhost", 8081, allow_private=False, resolver=lookup)


@pytest.mark.parametrize(
    "answers", [["10.0.0.1"], ["127.0.0.1", "192.168.1.1"], ["fd00::1"], ["93.184.216.34"], ["::ffff:127.0.0.1"]]
)
async def test_allow_loopback_refuses_localhost_resolving_elsewhere(answers: list[str]) -> None:
    """`http://localhost` is allowed because localhost is loopback: a resolver that says otherwise is refused
    (a public answer too: plain http must not leave this machine)."""
    lookup = FakeResolver({"localhost": answers})
    with pytest.raises(EgressRefused) as refused:
        await resolve("localhost", 8081, allow_private=False, allow_loopback=True, resolver=lookup)
    assert refused.value.rule is Rule.ADDRESS


async def test_allow_loopback_refuses_a_name_resolving_to_a_private_address() -> None:
    lookup = FakeResolver({"rebind.example.invalid": ["10.0.0.1"], "mixed.example.invalid": ["127.0.0.1", "10.1.1.1"]})
    for name in ("rebind.example.invalid", "mixed.example.invalid"):
        with pytest.raises(EgressRefused, match=r"10\.") as refused:
            await resolve(name, 443, allow_private=False, allow_loopback=True, resolver=lookup)
        assert refused.value.rule is Rule.ADDRESS


async def test_allow_loopback_accepts_an_https_name_resolving_to_loopback() -> None:
    lookup = FakeResolver({"dev.example.invalid": ["127.0.0.1", "::1"]})
    target = check_url("https://dev.example.invalid:8443/", allow_private=False, allow_loopback=True)
    addresses = await resolve(target.host, target.port, allow_private=False, allow_loopback=True, resolver=lookup)
    assert addresses == ["127.0.0.1", "::1"]


def dev_accounts(resolver: FakeResolver) -> Accounts:
    """`Accounts` as `make run` builds it; `check_callback_url` never touches the store."""
    clock = FakeClock()
    return Accounts(
        store=cast(Any, None),
        ids=IdGenerator(node=1, clock_ms=clock.now_ms),
        clock=clock,
        allow_loopback_callbacks=True,
        resolver=resolver,
    )


async def test_allow_loopback_at_setting_time_takes_loopback_and_refuses_private() -> None:
    accounts = dev_accounts(
        FakeResolver({"localhost": ["127.0.0.1"], "rebind.example.invalid": ["10.0.0.1"]})
    )
    for url in ("http://127.0.0.1:8081/", "http://localhost:8081/", "http://[::1]:8081/"):
        assert await accounts.check_callback_url(url, "SMS callback URL") == url
    for url in ("http://10.0.0.1/", "https://10.0.0.1/", "https://rebind.example.invalid/", "http://192.168.1.1/"):
        with pytest.raises(AccountError, match="refused"):
            await accounts.check_callback_url(url, "SMS callback URL")


async def test_without_allow_loopback_a_loopback_url_is_refused_at_setting_time() -> None:
    clock = FakeClock()
    accounts = Accounts(store=cast(Any, None), ids=IdGenerator(node=1, clock_ms=clock.now_ms), clock=clock)
    for url in ("http://127.0.0.1:8081/", "http://localhost:8081/", "https://127.0.0.1/"):
        with pytest.raises(AccountError, match="refused"):
            await accounts.check_callback_url(url, "SMS callback URL")


@pytest.mark.parametrize(
    ("url", "answers"),
    [
        ("https://rebind.example.invalid/hook", ["10.0.0.1"]),
        ("https://rebind.example.invalid/hook", ["127.0.0.1", "172.16.0.1"]),
        ("http://localhost:8081/", ["192.168.1.1"]),
        ("http://localhost:8081/", ["fd00::1"]),
    ],
)
async def test_allow_loopback_at_delivery_refuses_a_name_that_now_resolves_to_a_private_address(
    url: str, answers: list[str]
) -> None:
    """DNS rebinding: accepted when it was set (or a name that always was localhost), private at delivery.
    The refusal comes from the transport's resolver, before any connection is opened."""
    host = url.split("//", 1)[1].split("/", 1)[0].split(":", 1)[0]
    lookup = FakeResolver({host: answers})
    transport = HttpTransport(allow_private=False, allow_loopback=True, timeout=2, resolver=lookup)
    try:
        with pytest.raises(DeliveryFailed, match=r"refused \(address\)") as failed:
            await transport.post(url, b"{}", {"Content-Type": "application/json"})
    finally:
        await transport.close()
    assert failed.value.permanent is False  # resolution may change back: retried on the schedule
    assert len(lookup.calls) == 1
