"""Digest authentication of SIP requests (RFC 3261 §22, RFC 2617, RFC 7616): read a WWW-Authenticate or
Proxy-Authenticate challenge from a 401 or 407 and compute the Authorization or Proxy-Authorization value
for the retried request. Pure: no I/O; the cnonce comes from the caller (`new_cnonce` makes one).

How a UAC uses it (§22.2, §22.3): on a 401 (WWW-Authenticate) or 407 (Proxy-Authenticate), ACK it, pick a
challenge with `choose_challenge(response.headers.get_all(name))`, and send the request again with a new
branch, the next CSeq and `authorization(...)` in Authorization (401) or Proxy-Authorization (407). A second
challenge for the same realm means the credentials are wrong, unless it says `stale=true`: then the nonce
had only expired and one more try with the new nonce is right (RFC 2617 §3.2.1).

Supported: algorithms MD5, MD5-sess, SHA-256 and SHA-256-sess (RFC 7616 §3.2; SHA-512-256 and `userhash`
are not, no SIP trunk we know sends them alone); qop "auth", "auth-int" when it is the only one offered, and
no qop at all (RFC 2069 style, still common on SIP trunks). Text is hashed as UTF-8 (RFC 7616 §4).

Errors. `AuthError` is the only exception raised: for a challenge that is not Digest or is malformed (no
realm or nonce, an unterminated quoted string, a repeated parameter), for an algorithm or qop we do not
support, and for an input the header cannot carry (CR or LF). It subclasses ValueError.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from switchboard.errors import AuthError

__all__ = ["ALGORITHMS", "Challenge", "authorization", "choose_challenge", "new_cnonce", "parse_challenge"]


class _Digest(Protocol):
    def hexdigest(self) -> str: ...


_HASHES: dict[str, Callable[[bytes], _Digest]] = {
    "MD5": hashlib.md5,
    "MD5-SESS": hashlib.md5,
    "SHA-256": hashlib.sha256,
    "SHA-256-SESS": hashlib.sha256,
}
ALGORITHMS = ("SHA-256", "SHA-256-SESS", "MD5", "MD5-SESS")
"""Supported algorithms, strongest first: the order `choose_challenge` prefers them in."""
MAX_NONCE_COUNT = 0xFFFFFFFF
"""nc is 8 hex digits (RFC 7616 §3.4)."""
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_UNQUOTED = re.compile(r"[^\s,\"]+")
_SPACE = " \t\r\n"


class RandomSource(Protocol):
    """`random.SystemRandom()` in service, `random.Random(seed)` in tests; only `getrandbits` is used."""

    def getrandbits(self, k: int, /) -> int: ...


def new_cnonce(rng: RandomSource) -> str:
    """A client nonce: 128 random bits in hex (RFC 7616 §3.4 asks for at least 64)."""
    return f"{rng.getrandbits(128):032x}"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One Digest challenge (RFC 7616 §3.3). `algorithm` is spelled as the server sent it ("MD5" when it
    sent none); `qop` lists the offered options lower-cased, empty when the server sent no qop."""

    realm: str
    nonce: str
    opaque: str | None = None
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    stale: bool = False

    @property
    def supported(self) -> bool:
        """Whether `authorization` can answer it."""
        return self.algorithm.upper() in _HASHES and (not self.qop or bool({"auth", "auth-int"} & set(self.qop)))


def parse_challenge(value: str) -> Challenge:
    """A WWW-Authenticate or Proxy-Authenticate value, e.g. `Digest realm="asterisk", nonce="5f2a1b3c",
    algorithm=MD5, qop="auth"`: parameters in any order, quoted (with backslash escapes) or not, names
    without case; unknown parameters (domain, charset, ...) are ignored."""
    text = value.strip(_SPACE)
    scheme = _TOKEN.match(text)
    if scheme is None or scheme[0].lower() != "digest":
        raise AuthError(f"not a Digest challenge: {value[:40]!r}")
    params = _parse_params(text[scheme.end() :])
    realm, nonce = params.get("realm"), params.get("nonce")
    if realm is None or nonce is None:
        raise AuthError("a Digest challenge needs realm and nonce (RFC 7616 §3.3)")
    options = (part.strip(_SPACE).lower() for part in params.get("qop", "").split(","))
    qop = tuple(option for option in options if option)
    return Challenge(
        realm=realm,
        nonce=nonce,
        opaque=params.get("opaque"),
        algorithm=params.get("algorithm") or "MD5",
        qop=qop,
        stale=params.get("stale", "").lower() == "true",
    )


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    i = 0
    while True:
        while i < len(text) and text[i] in _SPACE + ",":
            i += 1
        if i == len(text):
            return params
        name = _TOKEN.match(text, i)
        if name is None:
            raise AuthError(f"bad challenge parameter at {text[i : i + 20]!r}")
        i = name.end()
        while i < len(text) and text[i] in _SPACE:
            i += 1
        if i == len(text) or text[i] != "=":
            raise AuthError(f"challenge parameter {name[0]!r} has no value")
        i += 1
        while i < len(text) and text[i] in _SPACE:
            i += 1
        if text[i : i + 1] == '"':
            param, i = _read_quoted(text, i)
        else:
            unquoted = _UNQUOTED.match(text, i)
            if unquoted is None:
                raise AuthError(f"challenge parameter {name[0]!r} has no value")
            param, i = unquoted[0], unquoted.end()
        key = name[0].lower()
        if key in params:
            raise AuthError(f"challenge parameter {key!r} given twice (RFC 7616 §3.3)")
        params[key] = param
        while i < len(text) and text[i] in _SPACE:
            i += 1
        if i < len(text) and text[i] != ",":
            raise AuthError(f"expected a comma at {text[i : i + 20]!r}")


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    out: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise AuthError("unterminated quoted string in the challenge")


def choose_challenge(values: Iterable[str]) -> Challenge:
    """The challenge to answer among the WWW-Authenticate (or Proxy-Authenticate) values of one response:
    the first with the strongest algorithm we support; values we cannot read or answer are skipped.

    RFC 8760 §2.4 has a UAC use the topmost challenge it supports "unless a local policy dictates
    otherwise". Ours is strength first, for the reason §3 gives: challenges are not integrity-protected, so
    an on-path attacker could reorder them to put MD5 on top. Among equals, the server's order decides."""
    usable: list[Challenge] = []
    for value in values:
        try:
            challenge = parse_challenge(value)
        except AuthError:
            continue
        if challenge.supported:
            usable.append(challenge)
    if not usable:
        raise AuthError("no Digest challenge we can answer")
    return min(usable, key=lambda c: ALGORITHMS.index(c.algorithm.upper()))


def authorization(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int,
    body: bytes = b"",
) -> str:
    """The Authorization / Proxy-Authorization value answering `challenge` for a request with `method`,
    Request-URI `uri` (RFC 3261 §22.4: the uri parameter is the Request-URI) and `body` (hashed only for
    qop=auth-int). `nc` counts the requests made with this nonce, from 1; `cnonce` is sent when a qop is.
    `algorithm` is always written, spelled as the challenge did (MD5 when it named none)."""
    algorithm = challenge.algorithm.upper()
    hash_function = _HASHES.get(algorithm)
    if hash_function is None:
        raise AuthError(f"unsupported digest algorithm {challenge.algorithm!r}")
    qop = _choose_qop(challenge.qop)
    if not 1 <= nc <= MAX_NONCE_COUNT:
        raise AuthError(f"nonce count {nc} is outside 1..{MAX_NONCE_COUNT}")
    if not _TOKEN.fullmatch(method):
        raise AuthError(f"method {method[:20]!r} is not a token")
    for text in (uri, username, password, cnonce):
        if any(c in text for c in "\r\n\0"):
            raise AuthError("credentials hold CR, LF or NUL")
    if (qop or algorithm.endswith("-SESS")) and not cnonce:
        raise AuthError("a cnonce is needed with qop or a -sess algorithm")

    def h(data: str | bytes) -> str:
        return hash_function(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()

    nc_hex = f"{nc:08x}"
    ha1 = h(f"{username}:{challenge.realm}:{password}")
    if algorithm.endswith("-SESS"):  # RFC 7616 §3.4.2
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}:{h(body)}" if qop == "auth-int" else f"{method}:{uri}")  # RFC 7616 §3.4.3
    if qop:
        response = h(f"{ha1}:{challenge.nonce}:{nc_hex}:{cnonce}:{qop}:{ha2}")  # RFC 7616 §3.4.1
    else:
        response = h(f"{ha1}:{challenge.nonce}:{ha2}")  # RFC 2069, kept by RFC 2617 §3.2.2.1
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    if qop or algorithm.endswith("-SESS"):
        parts.append(f"cnonce={_quote(cnonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if qop:
        parts += [f"qop={qop}", f"nc={nc_hex}"]
    return "Digest " + ", ".join(parts)


def _choose_qop(options: tuple[str, ...]) -> str | None:
    if not options:
        return None
    if "auth" in options:  # preferred: auth-int would hash the body of every retried request for nothing
        return "auth"
    if "auth-int" in options:
        return "auth-int"
    raise AuthError(f"no supported qop among {list(options)}")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
