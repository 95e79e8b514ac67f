"""Callback signatures, checked against `standardwebhooks` from PyPI (written by others) as well as our own verify.

The package reads the real wall clock (it has no clock to inject), so every signature it verifies is signed
with the current time.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from switchboard.callbacks.signing import ROTATION_GRACE_MS, new_secret, sign, valid_secrets, verify
from switchboard.errors import InvalidSignature

OLD = "whsec_" + base64.b64encode(b"o" * 24).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 24).decode()
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, the FakeClock's start

# Standard Webhooks' published test vector.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

BODIES = st.binary(max_size=200)
IDS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)


def now() -> int:
    return int(time.time())


def package_accepts(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    """Whether the package's verify passes. On malformed input it raises ValueError (a comma-less signature,
    bad base64, a body that is not UTF-8) as well as its own error; all of those are a refusal."""
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except (WebhookVerificationError, ValueError):
        return False
    return True


def our_accepts(secret: str, body: bytes, headers: dict[str, str], at: int) -> bool:
    try:
        verify(secret=secret, headers=headers, body=body, now=at)
    except InvalidSignature:
        return False
    return True


def test_signs_the_standard_webhooks_test_vector() -> None:
    headers = sign(secrets=[VECTOR_SECRET], msg_id=VECTOR_ID, timestamp=VECTOR_TIMESTAMP, body=VECTOR_BODY)
    assert headers == {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    verify(secret=VECTOR_SECRET, headers=headers, body=VECTOR_BODY, now=VECTOR_TIMESTAMP)


@settings(max_examples=50)
@given(body=BODIES.map(lambda b: b.hex().encode()), msg_id=IDS)
def test_our_signature_verifies_with_the_standardwebhooks_package(body: bytes, msg_id: str) -> None:
    headers = sign(secrets=[NEW], msg_id=msg_id, timestamp=now(), body=body)
    Webhook(NEW).verify(body, headers, json_parse=False)


def test_a_json_callback_verifies_with_the_package_and_parses() -> None:
    body = b'{"ID": "7865", "MobileNo": "+16175551212", "Status": "Delivered"}'
    headers = sign(secrets=[NEW], msg_id="7865-1", timestamp=now(), body=body)
    assert Webhook(NEW).verify(body, headers)["Status"] == "Delivered"


@pytest.mark.parametrize("receiver_secret", [OLD, NEW], ids=["receiver-still-on-old", "receiver-already-on-new"])
def test_during_a_rotation_a_receiver_with_either_secret_verifies(receiver_secret: str) -> None:
    body = b'{"ID": "1"}'
    ts = now()
    headers = sign(secrets=[NEW, OLD], msg_id="msg_1", timestamp=ts, body=body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(receiver_secret).verify(body, headers, json_parse=False)
    verify(secret=receiver_secret, headers=headers, body=body, now=ts)


def test_the_current_secret_signs_first_and_a_repeated_secret_signs_once() -> None:
    only_new = sign(secrets=[NEW], msg_id="m", timestamp=T0, body=b"x")["webhook-signature"]
    both = sign(secrets=[NEW, OLD, NEW], msg_id="m", timestamp=T0, body=b"x")["webhook-signature"].split(" ")
    assert len(both) == 2
    assert both[0] == only_new


def test_a_receiver_with_an_unrelated_secret_refuses() -> None:
    headers = sign(secrets=[NEW, OLD], msg_id="m", timestamp=now(), body=b"x")
    other = new_secret()
    assert not package_accepts(other, b"x", headers)
    with pytest.raises(InvalidSignature, match="no matching signature"):
        verify(secret=other, headers=headers, body=b"x", now=int(headers["webhook-timestamp"]))


@pytest.mark.parametrize(
    ("previous", "rotated_at_ms", "now_ms", "expected"),
    [
        (None, None, 0, [NEW]),
        (OLD, 0, 0, [NEW, OLD]),
        (OLD, 0, ROTATION_GRACE_MS - 1, [NEW, OLD]),
        (OLD, 0, ROTATION_GRACE_MS, [NEW]),
        (OLD, None, 0, [NEW]),  # no rotation time: nothing says the old secret is still in its grace
        (NEW, 0, 0, [NEW]),
    ],
)
def test_valid_secrets_keeps_the_previous_secret_for_24_hours(
    previous: str | None, rotated_at_ms: int | None, now_ms: int, expected: list[str]
) -> None:
    assert ROTATION_GRACE_MS == 24 * 60 * 60 * 1000
    assert valid_secrets(NEW, previous, rotated_at_ms, now_ms) == expected


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, int, int]:
    """(part, position as a fraction of a million, replacement byte); the position is scaled to the part's
    length once the message exists."""
    part = draw(st.sampled_from(["body", "id", "timestamp", "signature"]))
    return part, draw(st.integers(0, 999_999)), draw(st.integers(0, 255))


def _mutate(data: bytes, position: int, replacement: int) -> bytes:
    i = position * len(data) // 1_000_000
    if data[i] == replacement:
        replacement = (replacement + 1) % 256
    return data[:i] + bytes([replacement]) + data[i + 1 :]


@settings(max_examples=200)
@given(body=BODIES.filter(bool), msg_id=IDS, mutation=mutations(), rotation=st.booleans())
def test_a_single_mutated_byte_never_verifies(
    body: bytes, msg_id: str, mutation: tuple[str, int, int], rotation: bool
) -> None:
    ts = now()
    headers = sign(secrets=[NEW, OLD] if rotation else [NEW], msg_id=msg_id, timestamp=ts, body=body)
    part, position, replacement = mutation
    # Receivers that must now refuse: all of them, except that during a rotation a byte changed in one
    # secret's signature leaves the other secret's signature intact.
    refusing = {NEW, OLD}
    if part == "body":
        body = _mutate(body, position, replacement)
    else:
        name = f"webhook-{part}"
        value = headers[name].encode("latin-1")  # header values reach a server as bytes, read as Latin-1
        headers[name] = _mutate(value, position, replacement).decode("latin-1")
        if part == "signature" and rotation:
            space = value.index(b" ")  # "v1,<NEW's> v1,<OLD's>"; a changed space spoils both
            i = position * len(value) // 1_000_000
            refusing = {NEW} if i < space else {OLD} if i > space else {NEW, OLD}

    for secret in refusing:
        assert not our_accepts(secret, body, headers, ts)


def test_a_signature_respelt_in_its_spare_base64_bits_is_refused() -> None:
    ts = now()
    headers = sign(secrets=[NEW], msg_id="m", timestamp=ts, body=b"x")
    signature = headers["webhook-signature"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(signature[-2])  # 32 bytes: 43 characters and "=", the 43rd carries 2 spare bits
    respelt = signature[:-2] + alphabet[last ^ 1] + "="
    headers["webhook-signature"] = respelt
    assert not our_accepts(NEW, b"x", headers, ts)


@settings(max_examples=50)
@given(data=st.text(max_size=200), msg_id=IDS)
def test_our_verify_accepts_what_the_package_signs(data: str, msg_id: str) -> None:
    ts = T0
    signature = Webhook(NEW).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), data)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}
    verify(secret=NEW, headers=headers, body=data.encode(), now=ts)


def test_our_verify_accepts_a_body_that_is_not_utf8() -> None:
    body = b"\xff\xfe\x00 not text"
    headers = sign(secrets=[NEW], msg_id="m", timestamp=T0, body=body)
    verify(secret=NEW, headers=headers, body=body, now=T0)


def test_header_names_match_in_any_letter_case() -> None:
    headers = sign(secrets=[NEW], msg_id="m", timestamp=T0, body=b"x")
    verify(secret=NEW, headers={k.title(): v for k, v in headers.items()}, body=b"x", now=T0)


@pytest.mark.parametrize(
    ("offset", "tolerance", "accepted"),
    [
        (0, 300, True),
        (-300, 300, True),
        (300, 300, True),
        (-301, 300, False),
        (301, 300, False),
        (-86_400, 300, False),
        (-3_600, 3_600, True),
        (11, 10, False),
    ],
)
def test_timestamps_outside_the_tolerance_are_refused(offset: int, tolerance: int, accepted: bool) -> None:
    ts = T0 + offset
    headers = sign(secrets=[NEW], msg_id="m", timestamp=ts, body=b"x")
    if accepted:
        verify(secret=NEW, headers=headers, body=b"x", now=T0, tolerance=tolerance)
    else:
        with pytest.raises(InvalidSignature, match=r"too (old|new)"):
            verify(secret=NEW, headers=headers, body=b"x", now=T0, tolerance=tolerance)


def test_a_stale_signature_is_refused_by_the_package_too() -> None:
    headers = sign(secrets=[NEW], msg_id="m", timestamp=now() - 301, body=b"x")
    assert not package_accepts(NEW, b"x", headers)


GOOD = sign(secrets=[NEW], msg_id="msg_1", timestamp=T0, body=b"x")


@pytest.mark.parametrize(
    "changes",
    [
        {"webhook-id": None},
        {"webhook-timestamp": None},
        {"webhook-signature": None},
        {"webhook-id": ""},
        {"webhook-timestamp": ""},
        {"webhook-signature": ""},
        {"webhook-id": "msg 1"},
        {"webhook-id": "msg_1\n"},
        {"webhook-id": "msg_é"},
        {"webhook-timestamp": " " + str(T0)},
        {"webhook-timestamp": "+" + str(T0)},
        {"webhook-timestamp": str(T0) + ".0"},
        {"webhook-timestamp": "1_767_225_600"},
        {"webhook-timestamp": "١٧٦٧٢٢٥٦٠٠"},  # Arabic-Indic digits: int() would take them
        {"webhook-timestamp": "9" * 5000},
        {"webhook-timestamp": "-1"},
        {"webhook-signature": "v1"},
        {"webhook-signature": "v1,"},
        {"webhook-signature": ","},
        {"webhook-signature": "v1,not base64!"},
        {"webhook-signature": "v1,é"},
        {"webhook-signature": "v2," + GOOD["webhook-signature"][3:]},
        {"webhook-signature": "v1a," + GOOD["webhook-signature"][3:]},
        {"webhook-signature": GOOD["webhook-signature"][3:]},
        {"webhook-signature": GOOD["webhook-signature"] + "="},
        {"webhook-signature": "V1," + GOOD["webhook-signature"][3:]},
    ],
)
def test_malformed_headers_raise_invalid_signature(changes: dict[str, str | None]) -> None:
    headers = dict(GOOD)
    for name, value in changes.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    with pytest.raises(InvalidSignature):
        verify(secret=NEW, headers=headers, body=b"x", now=T0)


def test_a_valid_signature_after_junk_entries_still_verifies() -> None:
    headers = dict(GOOD, **{"webhook-signature": "junk v2,abc  v1,AAAA " + GOOD["webhook-signature"]})
    verify(secret=NEW, headers=headers, body=b"x", now=T0)


HEADER_TEXT = st.one_of(
    st.text(max_size=60),
    st.sampled_from([GOOD["webhook-signature"], GOOD["webhook-timestamp"], GOOD["webhook-id"]]),
)


@settings(max_examples=300)
@given(
    headers=st.dictionaries(
        st.one_of(st.sampled_from(["webhook-id", "Webhook-Timestamp", "webhook-signature"]), st.text(max_size=20)),
        HEADER_TEXT,
        max_size=5,
    ),
    body=st.binary(max_size=20),
)
def test_any_headers_raise_invalid_signature_and_nothing_else(headers: dict[str, str], body: bytes) -> None:
    try:
        verify(secret=NEW, headers=headers, body=body, now=T0)
    except InvalidSignature:
        pass


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (base64.b64encode(b"k" * 24).decode(), "must start with 'whsec_'"),
        ("WHSEC_" + base64.b64encode(b"k" * 24).decode(), "must start with 'whsec_'"),
        ("whsec_not base64!", "followed by base64"),
        ("whsec_" + base64.b64encode(b"k" * 24).decode().rstrip("=") + "A", "followed by base64"),
        ("whsec_abc", "followed by base64"),
        ("whsec_é", "followed by base64"),
        ("whsec_", "must not be empty"),
    ],
)
def test_a_malformed_secret_raises_value_error_without_repeating_it(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as signing:
        sign(secrets=[NEW, secret], msg_id="m", timestamp=T0, body=b"x")
    with pytest.raises(ValueError, match=message) as verifying:
        verify(secret=secret, headers=GOOD, body=b"x", now=T0)
    assert not isinstance(verifying.value, InvalidSignature)
    if secret != "whsec_":
        for error in (signing.value, verifying.value):
            assert secret.removeprefix("whsec_") not in str(error)


def test_a_malformed_secret_is_reported_before_the_headers_are_looked_at() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        verify(secret="nope", headers={}, body=b"", now=T0)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"secrets": NEW}, TypeError),  # one secret where a list of them belongs
        ({"secrets": []}, ValueError),
        ({"msg_id": ""}, ValueError),
        ({"msg_id": "has space"}, ValueError),
        ({"msg_id": "line\nbreak"}, ValueError),
        ({"msg_id": "nön-ascii"}, ValueError),
        ({"timestamp": -1}, ValueError),
        ({"timestamp": T0 * 1000}, ValueError),  # milliseconds, the store's unit, by mistake
        ({"timestamp": True}, ValueError),
    ],
)
def test_sign_refuses_what_a_receiver_could_not_verify(kwargs: dict[str, object], error: type[Exception]) -> None:
    arguments: dict[str, object] = {"secrets": [NEW], "msg_id": "m", "timestamp": T0, "body": b"x"} | kwargs
    with pytest.raises(error):
        sign(**arguments)  # type: ignore[arg-type]


def test_new_secrets_are_whsec_and_24_random_bytes_that_the_package_accepts() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    for secret in (first, second):
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24
        headers = sign(secrets=[secret], msg_id="m", timestamp=now(), body=b"x")
        Webhook(secret).verify(b"x", headers, json_parse=False)


def test_new_secret_takes_its_randomness_from_the_caller() -> None:
    assert new_secret(random_bytes=lambda n: bytes(n)) == "whsec_" + "A" * 32
