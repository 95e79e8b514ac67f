"""Standard Webhooks signatures: signing the callbacks we send, and verifying them on the receiving side.

Spec: https://www.standardwebhooks.com/ ("Signature scheme"). A callback carries three headers:

    webhook-id:         the event's id, the same across retries (receivers use it to drop duplicates)
    webhook-timestamp:  integer seconds since the Unix epoch, when this attempt was signed
    webhook-signature:  "v1,<base64 HMAC-SHA256(key, f'{id}.{timestamp}.{body}')>", space-separated when
                        more than one secret is valid (a rotation)

`key` is the base64-decoded part of a `whsec_...` secret. During a rotation the old secret stays valid for
`ROTATION_GRACE_MS`, so every attempt is signed with each valid secret and a receiver that has not yet switched
still verifies (`valid_secrets` says which).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from secrets import token_bytes

from switchboard.errors import InvalidSignature

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
"""Random bytes in a new secret; the spec asks for between 24 and 64."""
ROTATION_GRACE_MS = 24 * 60 * 60 * 1000
"""How long the previous secret still signs after a rotation (ARCHITECTURE.md §2 "Callback delivery")."""
DEFAULT_TOLERANCE = 5 * 60
"""Seconds a timestamp may be away from the receiver's clock; the spec's recommended 5 minutes."""

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"

_VERSION = "v1"
# Integer seconds; 11 digits would be the year 5138, so a longer value is a mistake (milliseconds, most likely).
_TIMESTAMP_LIMIT = 10**11


def new_secret(*, random_bytes: Callable[[int], bytes] = token_bytes) -> str:
    """A new `whsec_` secret: `SECRET_BYTES` random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(random_bytes(SECRET_BYTES)).decode("ascii")


def valid_secrets(current: str, previous: str | None, rotated_at_ms: int | None, now_ms: int) -> list[str]:
    """The secrets to sign with now, current first: the previous one too while the rotation's grace lasts.

    A previous secret without a rotation time is not used: nothing says it is still within its grace.
    """
    if (
        previous is not None
        and previous != current
        and rotated_at_ms is not None
        and now_ms - rotated_at_ms < ROTATION_GRACE_MS
    ):
        return [current, previous]
    return [current]


def sign(*, secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt to deliver `body`.

    `secrets` is the current secret first, then any still-valid old ones (see `valid_secrets`); `timestamp` is
    in seconds. Raises ValueError for a malformed secret, id or timestamp: those are our bugs, not the
    receiver's.
    """
    if isinstance(secrets, str):
        raise TypeError("secrets is a sequence of secrets, not one secret")
    if not secrets:
        raise ValueError("at least one secret is needed to sign a callback")
    if not _is_token(msg_id):
        raise ValueError(f"webhook id must be non-empty printable ASCII without spaces, not {msg_id!r}")
    if isinstance(timestamp, bool) or not 0 <= timestamp < _TIMESTAMP_LIMIT:
        raise ValueError(f"webhook timestamp must be whole seconds since the epoch, not {timestamp!r}")
    stamp = str(timestamp)
    content = _signed_content(msg_id, stamp, body)
    signatures = dict.fromkeys(_signature(_key(secret), content) for secret in secrets)
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: " ".join(f"{_VERSION},{signature}" for signature in signatures),
    }


def verify(
    *, secret: str, headers: Mapping[str, str], body: bytes, now: int, tolerance: int = DEFAULT_TOLERANCE
) -> None:
    """Return if `body` and `headers` were signed with `secret` within `tolerance` seconds of `now` (seconds);
    raise InvalidSignature otherwise. Header names are matched in any letter case.

    A malformed `secret` raises ValueError: that is the receiver's configuration, not the sender's fault.
    """
    key = _key(secret)
    folded = {name.lower(): value for name, value in headers.items() if isinstance(name, str)}
    msg_id = _header(folded, ID_HEADER)
    stamp = _header(folded, TIMESTAMP_HEADER)
    signature_header = _header(folded, SIGNATURE_HEADER)
    if not _is_token(msg_id):
        raise InvalidSignature(f"malformed {ID_HEADER} header")
    # Digits only: int() would also take signs, spaces, underscores and non-ASCII digits, and the signed
    # content is the header as sent, so any such spelling could never match anyway.
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= len(str(_TIMESTAMP_LIMIT))):
        raise InvalidSignature(f"malformed {TIMESTAMP_HEADER} header")
    timestamp = int(stamp)
    if timestamp < now - tolerance:
        raise InvalidSignature(f"{TIMESTAMP_HEADER} is too old ({now - timestamp} s ago; tolerance {tolerance} s)")
    if timestamp > now + tolerance:
        raise InvalidSignature(f"{TIMESTAMP_HEADER} is too new ({timestamp - now} s ahead; tolerance {tolerance} s)")
    # Compared as text, not as decoded bytes: base64 decoding ignores the last character's spare bits, so
    # decoded comparison would accept four spellings of one signature.
    expected = _signature(key, _signed_content(msg_id, stamp, body)).encode("ascii")
    found_v1 = False
    for entry in signature_header.split(" "):
        version, comma, value = entry.partition(",")
        if not comma or version != _VERSION:
            continue  # the spec: ignore signatures of versions we do not know
        found_v1 = True
        if value.isascii() and hmac.compare_digest(value.encode("ascii"), expected):
            return
    if not found_v1:
        raise InvalidSignature(f"no {_VERSION} signature in the {SIGNATURE_HEADER} header")
    raise InvalidSignature("no matching signature")


def _key(secret: str) -> bytes:
    # The messages never repeat the secret: they end up in logs.
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a webhook secret must be {SECRET_PREFIX!r} followed by base64") from None
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


def _signed_content(msg_id: str, stamp: str, body: bytes) -> bytes:
    return f"{msg_id}.{stamp}.".encode("ascii") + body


def _signature(key: bytes, content: bytes) -> str:
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode("ascii")


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidSignature(f"missing {name} header")
    return value


def _is_token(value: str) -> bool:
    """Non-empty printable ASCII without spaces: safe in a header, and the same bytes on both sides."""
    return isinstance(value, str) and value.isascii() and value.isprintable() and bool(value) and " " not in value
