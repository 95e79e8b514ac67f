"""Reading request bodies as JSON, leniently (ARCHITECTURE.md §2, "Request bodies, read leniently").

The vendor's own samples are not JSON, and real clients send trailing commas, so a body that msgspec
refuses is given a second chance: it is split into JSON tokens (strings with their escapes are single
tokens, so commas and braces inside them are never touched), the known mistakes are repaired, and the
tokens are written back out and decoded by msgspec, which keeps the last word on strings and numbers.

Repaired:

- trailing commas in objects and arrays: ``[1, 2,]``, ``{"a": 1,}``;
- a body that is a bare member list without the outer braces: ``"Message": "x", "Sender": "OM"``;
- the vendor's ``"Destination": { [ ... ], "Message": ... }``: an object member whose value is ``{``
  followed at once by ``[``. The array becomes the member's value, and the members written after it
  inside those braces become members of the enclosing object; the ``{`` and its ``}`` are dropped;
- raw control characters (a newline, a tab) inside strings, which are escaped;
- numbers written with leading zeros, such as ``"MobileNo": 0016175551212``: JSON has no such number,
  so they are read as the string of their digits, exactly as written;
- a UTF-8 byte order mark in front (also on the fast path).

Limits: at most `MAX_BODY_BYTES` bytes (larger bodies are refused before anything is decoded); on the
repair path at most `MAX_DEPTH` nested arrays and objects and `MAX_TOKENS` tokens. A body that msgspec
decodes as it stands is returned as is: msgspec bounds its own nesting (past Python's recursion limit it
gives up and the body goes to the repair path, which refuses it for its depth).

Every failure, whatever the bytes, is `InvalidJson`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import msgspec

from switchboard.errors import InvalidJson

__all__ = ["MAX_BODY_BYTES", "MAX_DEPTH", "MAX_TOKENS", "parse_body"]

MAX_BODY_BYTES = 1 << 20
"""Largest body read at all (the API answers 413 / error 130 above it before calling `parse_body`)."""
MAX_DEPTH = 64
"""Most arrays and objects nested in one another that the repair path follows."""
MAX_TOKENS = 200_000
"""Most tokens the repair path reads: a 1,000-destination body has about 6,000."""

_BOM = b"\xef\xbb\xbf"

# One token, after optional whitespace. `bad` catches any other character so that tokens are contiguous
# and the scan stops at the first character that is not JSON; `end` matches trailing whitespace. The
# whitespace is possessive and every alternative is linear, so no input makes the scan backtrack.
_TOKEN = re.compile(
    r"""\s*+(?:
        (?P<s>"[^"\\]*+(?:\\.[^"\\]*+)*+")
      | (?P<p>[{}\[\]:,])
      | (?P<v>-?[0-9]++(?:\.[0-9]++)?+(?:[eE][+-]?[0-9]++)?+|true|false|null)
      | (?P<end>\Z)
      | (?P<bad>.)
    )""",
    re.VERBOSE | re.DOTALL,
)
_CONTROL = re.compile(r"[\x00-\x1f]")
_LEADING_ZERO = re.compile(r"-?0[0-9]")

# Token kinds: the punctuation character itself, or one of these.
_STRING = "s"
_SCALAR = "v"


def parse_body(body: bytes) -> object:
    """Decode a request body: exact JSON first (fast), else the repairs listed in the module docstring.

    Returns whatever the JSON holds (dict, list, str, int, float, bool or None); checking its shape is
    the caller's business. Raises InvalidJson, and nothing else, for any input it cannot read.
    """
    if len(body) > MAX_BODY_BYTES:
        raise InvalidJson(f"body larger than {MAX_BODY_BYTES} bytes")
    # U+0000 is valid in a JSON string but no SMS can carry it and the stores cannot keep it faithfully
    # (SQLite's JSON functions end a string there; PostgreSQL refuses it in text): refused, not truncated.
    # Checking the bytes costs one scan; it also refuses the six characters \u0000 written as text.
    if b"\\u0000" in body or b"\x00" in body:
        raise InvalidJson("body holds a NUL character")
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    try:
        return msgspec.json.decode(body)
    except (ValueError, RecursionError):  # msgspec.DecodeError and UnicodeDecodeError are ValueErrors
        pass
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJson("body is not UTF-8") from None
    repaired = _repair(text)
    try:
        return msgspec.json.decode(repaired)
    except (ValueError, RecursionError):
        raise InvalidJson("body is not JSON") from None


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    for count, match in enumerate(_TOKEN.finditer(text)):
        kind = match.lastgroup
        if kind == "end":
            return
        if kind == "bad" or kind is None:
            raise InvalidJson(f"unexpected character at {match.start('bad')}")
        if count >= MAX_TOKENS:
            raise InvalidJson(f"more than {MAX_TOKENS} tokens")
        token = match.group(kind)
        if kind == _STRING:
            if _CONTROL.search(token) is not None:
                token = _CONTROL.sub(_escape_control, token)
            yield _STRING, token
        elif kind == _SCALAR:
            if _LEADING_ZERO.match(token) is not None:  # 0016175551212 unquoted: not a JSON number
                token = f'"{token}"'
            yield _SCALAR, token
        else:
            yield token, token


def _escape_control(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _repair(text: str) -> str:
    """The body written out as strict JSON, or InvalidJson."""
    parser = _Parser(list(_tokens(text)))
    if parser.kind(0) == _STRING and parser.kind(1) == ":":
        document = "{" + ",".join(parser.members(None, 1)) + "}"  # a bare member list
    else:
        document = parser.value(0)
    if parser.kind(0) is not None:
        raise InvalidJson("more after the end of the document")
    return document


class _Parser:
    """Recursive descent over the tokens, writing each value back out as strict JSON text."""

    __slots__ = ("pos", "tokens")

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def kind(self, ahead: int) -> str | None:
        """The kind of the token `ahead` places on, None past the end."""
        index = self.pos + ahead
        return self.tokens[index][0] if index < len(self.tokens) else None

    def take(self, kind: str) -> str:
        if self.kind(0) != kind:
            raise InvalidJson(f"expected {kind!r} at token {self.pos}")
        text = self.tokens[self.pos][1]
        self.pos += 1
        return text

    def value(self, depth: int) -> str:
        """One value; `depth` is how many arrays and objects enclose it."""
        kind = self.kind(0)
        if kind in (_STRING, _SCALAR):
            return self.take(kind)
        if kind == "{":
            self.enter(depth)
            return "{" + ",".join(self.members("}", depth + 1)) + "}"
        if kind == "[":
            self.enter(depth)
            return "[" + ",".join(self.elements(depth + 1)) + "]"
        raise InvalidJson(f"expected a value at token {self.pos}")

    def enter(self, depth: int) -> None:
        if depth >= MAX_DEPTH:
            raise InvalidJson(f"nested deeper than {MAX_DEPTH}")
        self.pos += 1

    def elements(self, depth: int) -> list[str]:
        """An array's elements, after its '[' and up to and including its ']'."""
        out: list[str] = []
        while True:
            if self.kind(0) == "]":  # an empty array, or a trailing comma
                self.pos += 1
                return out
            out.append(self.value(depth))
            if self.kind(0) == ",":
                self.pos += 1
            elif self.kind(0) != "]":
                raise InvalidJson(f"expected ',' or ']' at token {self.pos}")

    def members(self, closer: str | None, depth: int) -> list[str]:
        """An object's "key":value members up to and including `closer` (None: to the end of the body)."""
        out: list[str] = []
        while True:
            if self.kind(0) == closer:  # an empty object, a trailing comma, or the end of a bare list
                if closer is not None:
                    self.pos += 1
                return out
            key = self.take(_STRING)
            self.take(":")
            if self.kind(0) == "{" and self.kind(1) == "[":
                # The vendor's {"Destination": { [ ... ], "Message": ... }}: the array is the value,
                # and what follows it inside these braces belongs to this object.
                self.enter(depth)
                out.append(key + ":" + self.value(depth + 1))
                if self.kind(0) == ",":
                    self.pos += 1
                    out.extend(self.members("}", depth + 1))
                else:
                    self.take("}")
            else:
                out.append(key + ":" + self.value(depth))
            if self.kind(0) == ",":
                self.pos += 1
            elif self.kind(0) != closer:
                raise InvalidJson(f"expected ',' or the end of the object at token {self.pos}")
