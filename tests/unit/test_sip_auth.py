"""Digest authentication: the worked examples of RFC 2617 §3.5, RFC 7616 §3.9.1 and RFC 2069 (as corrected
by its erratum), challenges as Asterisk, FreeSWITCH, Kamailio and sipp send them, and the refusals.

Expected responses are the RFCs' printed values; for the SIP-style challenges they are computed here from
RFC 7616 §3.4's definitions with hashlib, independently of the module's code.
"""

from __future__ import annotations

import hashlib
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.errors import AuthError
from switchboard.voice.sip.auth import Challenge, authorization, choose_challenge, new_cnonce, parse_challenge


def fields(value: str) -> dict[str, str]:
    """The parameters of an Authorization value, quotes removed (our values hold no escaped quotes)."""
    assert value.startswith("Digest ")
    return {name: quoted or token for name, quoted, token in re.findall(r'(\w+)=(?:"([^"]*)"|([^",\s]+))', value)}


def answer(challenge: Challenge, **overrides: object) -> dict[str, str]:
    """The fields of `authorization` for an INVITE to sip:a@b by u/p with cnonce c, nc 1, unless overridden."""
    args: dict[str, object] = {"method": "INVITE", "uri": "sip:a@b", "username": "u", "password": "p", "cnonce": "c"}
    return fields(authorization(challenge, **{**args, "nc": 1, **overrides}))  # type: ignore[arg-type]


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


RFC2617_CHALLENGE = """Digest
                 realm="testrealm@host.com",
                 qop="auth,auth-int",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41\""""


def test_rfc_2617_worked_example() -> None:
    challenge = parse_challenge(RFC2617_CHALLENGE)
    assert challenge == Challenge(
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
        algorithm="MD5",
        qop=("auth", "auth-int"),
    )
    value = authorization(
        challenge, method="GET", uri="/dir/index.html", username="Mufasa", password="Circle Of Life",
        cnonce="0a4f113b", nc=1,
    )  # fmt: skip
    assert fields(value) == {
        "username": "Mufasa",
        "realm": "testrealm@host.com",
        "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "uri": "/dir/index.html",
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "0a4f113b",
        "response": "6629fae49393a05397450978507c4ef1",
        "opaque": "5ccc069c403ebaf9f0171e9517f40e41",
        "algorithm": "MD5",
    }


# RFC 7616 §3.9.1: the server offers SHA-256 and MD5 in two header fields; password "Circle of Life".
RFC7616_CHALLENGES = [
    f"""Digest
    realm="http-auth@example.org",
    qop="auth, auth-int",
    algorithm={algorithm},
    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""""
    for algorithm in ("SHA-256", "MD5")
]
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("index", "response"),
    [(0, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"), (1, "8ca523f5e9506fed4657c9700eebdbec")],
)
def test_rfc_7616_worked_examples(index: int, response: str) -> None:
    challenge = parse_challenge(RFC7616_CHALLENGES[index])
    value = authorization(
        challenge, method="GET", uri="/dir/index.html", username="Mufasa", password="Circle of Life",
        cnonce=RFC7616_CNONCE, nc=1,
    )  # fmt: skip
    got = fields(value)
    assert got["response"] == response
    assert (got["algorithm"], got["qop"], got["nc"]) == (challenge.algorithm, "auth", "00000001")
    assert got["cnonce"] == RFC7616_CNONCE
    assert got["opaque"] == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def test_the_strongest_challenge_is_chosen_whatever_the_order() -> None:
    assert choose_challenge(RFC7616_CHALLENGES).algorithm == "SHA-256"
    assert choose_challenge(reversed(RFC7616_CHALLENGES)).algorithm == "SHA-256"  # a reordering cannot downgrade
    equals = ['Digest realm="first", nonce="1"', 'Digest realm="second", nonce="2"']
    assert choose_challenge(equals).realm == "first"  # among equals the server's order decides (RFC 8760 §2.4)
    unsupported = RFC7616_CHALLENGES[0].replace("SHA-256", "SHA-512-256")
    assert choose_challenge([unsupported, "Basic realm=x", RFC7616_CHALLENGES[1]]).algorithm == "MD5"
    with pytest.raises(AuthError, match="no Digest challenge"):
        choose_challenge([unsupported, "garbage"])


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        # computed from RFC 7616 §3.4.2 with hashlib; the same values as other independent implementations
        ("MD5-sess", "e783283f46242139c486a698fec7211d"),
        ("SHA-256-sess", "2fd51b3a77ad75bad6afad6003e818d767133c46d9e2749e7f5232ae1ea3efd7"),
    ],
)
def test_session_algorithms_on_the_rfc_7616_inputs(algorithm: str, response: str) -> None:
    challenge = parse_challenge(RFC7616_CHALLENGES[1].replace("algorithm=MD5", f"algorithm={algorithm}"))
    value = authorization(
        challenge, method="GET", uri="/dir/index.html", username="Mufasa", password="Circle of Life",
        cnonce=RFC7616_CNONCE, nc=1,
    )  # fmt: skip
    assert fields(value)["response"] == response


def test_rfc_2069_style_without_qop() -> None:
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = authorization(
        challenge, method="GET", uri="/dir/index.html", username="Mufasa", password="CircleOfLife", cnonce="unused",
        nc=1,
    )  # fmt: skip
    got = fields(value)
    # RFC 2069 §2.4 prints e966c932...; its erratum 749 gives the right value
    assert got["response"] == "1949323746fe6a43ef61f9606e7febea"
    assert "qop" not in got and "nc" not in got and "cnonce" not in got  # RFC 2617 §3.2.2: none without qop


@pytest.mark.parametrize(
    ("value", "realm", "nonce", "qop"),
    [
        # Asterisk chan_pjsip: algorithm in lower case, no spaces after commas
        ('Digest realm="asterisk",nonce="1700000000/9c5b0c3f1e",opaque="4a3bc1d2",algorithm=md5,qop="auth"',
         "asterisk", "1700000000/9c5b0c3f1e", "auth"),
        # Asterisk chan_sip: algorithm first, no qop
        ('Digest algorithm=MD5, realm="asterisk", nonce="5c1e9b2a"', "asterisk", "5c1e9b2a", None),
        # FreeSWITCH
        ('Digest realm="203.0.113.9", nonce="c1a6e5a2-5d2b-4f1e-9a51-0e0c7a3b9f11", algorithm=MD5, qop="auth"',
         "203.0.113.9", "c1a6e5a2-5d2b-4f1e-9a51-0e0c7a3b9f11", "auth"),
        # Kamailio's Proxy-Authenticate, qop unquoted as some proxies write it
        ('Digest realm="sip.example.com", nonce="Zk1xYmE0ZjQ5ZDM2", qop=auth', "sip.example.com",
         "Zk1xYmE0ZjQ5ZDM2", "auth"),
        # sipp's uas_auth.xml scenario
        ('Digest realm="switchboard.test", nonce="sipp-nonce-1", algorithm=MD5, qop="auth"', "switchboard.test",
         "sipp-nonce-1", "auth"),
    ],
)  # fmt: skip
def test_sip_challenges(value: str, realm: str, nonce: str, qop: str | None) -> None:
    challenge = parse_challenge(value)
    assert (challenge.realm, challenge.nonce) == (realm, nonce)
    uri = "sip:+15005550000@198.51.100.7:5060"
    got = answer(challenge, uri=uri, username="trunkuser", password="s3cret", cnonce="c0ffee", nc=2)
    ha1, ha2 = md5(f"trunkuser:{realm}:s3cret"), md5(f"INVITE:{uri}")
    if qop:
        expected = md5(f"{ha1}:{nonce}:00000002:c0ffee:auth:{ha2}")
        assert (got["qop"], got["nc"], got["cnonce"]) == ("auth", "00000002", "c0ffee")
    else:
        expected = md5(f"{ha1}:{nonce}:{ha2}")
        assert "qop" not in got
    assert got["response"] == expected and got["uri"] == uri and got["username"] == "trunkuser"
    assert got["algorithm"].upper() == "MD5"


def test_auth_int_when_offered_alone_hashes_the_body() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n", qop="auth-int"')
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\n"
    got = answer(challenge, body=body)
    ha2 = md5(f"INVITE:sip:a@b:{hashlib.md5(body).hexdigest()}")
    assert got["qop"] == "auth-int"
    assert got["response"] == md5(f"{md5('u:r:p')}:n:00000001:c:auth-int:{ha2}")
    both = parse_challenge('Digest realm="r", nonce="n", qop="auth-int,auth"')
    assert answer(both)["qop"] == "auth"


def test_challenge_parameters_in_any_order_and_case_with_escapes() -> None:
    challenge = parse_challenge('DIGEST Stale=TRUE , NONCE="n\\"1" ,Realm = "the \\"big\\" realm", Domain="sip:x"')
    assert (challenge.realm, challenge.nonce, challenge.stale) == ('the "big" realm', 'n"1', True)
    assert not parse_challenge('Digest realm="r", nonce="n", stale=false').stale
    value = authorization(challenge, method="BYE", uri="sip:a@b", username='we"ird\\', password="p", cnonce="c", nc=1)
    assert 'realm="the \\"big\\" realm"' in value and 'username="we\\"ird\\\\"' in value
    ha1 = md5('we"ird\\:the "big" realm:p')  # hashed unquoted (RFC 7616 §3.4.2)
    assert 'response="' + md5(ha1 + ':n"1:' + md5("BYE:sip:a@b")) + '"' in value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ('Basic realm="r"', "not a Digest"),
        ("", "not a Digest"),
        ('Digest nonce="n"', "realm and nonce"),
        ('Digest realm="r"', "realm and nonce"),
        ('Digest realm="r", nonce="n', "unterminated"),
        ('Digest realm="r, nonce="n"', "comma"),
        ('Digest realm="r", realm="s", nonce="n"', "twice"),
        ('Digest realm, nonce="n"', "no value"),
        ('Digest realm="r" nonce="n"', "comma"),
        ('Digest realm=, nonce="n"', "no value"),
    ],
)
def test_malformed_challenges(value: str, why: str) -> None:
    with pytest.raises(AuthError, match=why):
        parse_challenge(value)


@pytest.mark.parametrize(
    ("challenge", "kwargs", "why"),
    [
        (Challenge("r", "n", algorithm="SHA-512-256"), {}, "unsupported digest algorithm"),
        (Challenge("r", "n", algorithm="AKAv1-MD5"), {}, "unsupported digest algorithm"),
        (Challenge("r", "n", qop=("auth-conf",)), {}, "no supported qop"),
        (Challenge("r", "n"), {"nc": 0}, "nonce count"),
        (Challenge("r", "n"), {"nc": 2**32}, "nonce count"),
        (Challenge("r", "n"), {"username": "a\r\nVia: x"}, "CR, LF"),
        (Challenge("r", "n"), {"method": "IN VITE"}, "token"),
        (Challenge("r", "n", qop=("auth",)), {"cnonce": ""}, "cnonce"),
    ],
)
def test_requests_that_cannot_be_answered(challenge: Challenge, kwargs: dict[str, object], why: str) -> None:
    with pytest.raises(AuthError, match=why):
        answer(challenge, **kwargs)


def test_cnonce_comes_from_the_injected_randomness() -> None:
    assert new_cnonce(random.Random(3)) == new_cnonce(random.Random(3))
    rng = random.Random(3)
    assert len({new_cnonce(rng) for _ in range(100)}) == 100


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('Digest realm=nonce"\\, \tqop=auth-int algorithm=MD5x')), max_size=80))
def test_fuzz_challenges_only_raise_auth_error(value: str) -> None:
    try:
        challenge = parse_challenge(value)
    except AuthError:
        return
    try:
        authorization(challenge, method="INVITE", uri="sip:a@b", username="u", password="p", cnonce="c", nc=1)
    except AuthError:
        assert not challenge.supported
