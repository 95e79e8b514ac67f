from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.domain import numbers
from switchboard.domain.catalogue import SmsError
from switchboard.domain.encoding import Encoding
from switchboard.domain.lenient_json import parse_body
from switchboard.domain.sms_request import (
    Callback,
    CallbackMode,
    SendRequest,
    validate_send,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)

# The vendor document's Send SMS sample, exactly as printed.
VENDOR_SMS = b"""
            "Destination" : { [{"MobileNo" : "0016175551212"}, {"MobileNo" : "0016175551212"}], "Message" :
            "Welcome to Optimum Measures meassaging solution", "Sender" : "OM", "ReferenceID" : "ID09890",
            "CallBack" : "Yes" }
        """


def sample(**changes: Any) -> dict[str, Any]:
    """The vendor's sample body, with keys replaced (a value of ... removes the key)."""
    doc = parse_body(VENDOR_SMS)
    assert isinstance(doc, dict)
    for key, value in changes.items():
        if value is ...:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def accepted(doc: object) -> SendRequest:
    result = validate_send(doc, now=NOW)
    assert isinstance(result, SendRequest), result
    return result


def test_the_vendors_sample_is_accepted() -> None:
    assert validate_send(sample(), now=NOW) == SendRequest(
        destinations=["0016175551212", "0016175551212"],
        message="Welcome to Optimum Measures meassaging solution",
        sender="OM",
        reference_id="ID09890",
        callback=Callback(CallbackMode.YES),
        schedule_at=None,
        validity_period=None,
        encoding=Encoding.GSM7,
        segments=1,
    )


def test_the_samples_numbers_normalise_to_e164() -> None:
    assert [numbers.normalize(n) for n in accepted(sample()).destinations] == ["+16175551212"] * 2


# One thing broken at a time, in the contract's order: each row's body also breaks everything the rows
# after it break, so the error reported must be the row's own.
ORDER: list[tuple[SmsError, str, object]] = [
    (SmsError.INVALID_JSON, "ReferenceID", "x" * 256),
    (SmsError.DESTINATION_MISSING, "Destination", []),
    (SmsError.TOO_MANY_DESTINATIONS, "Destination", ["+16175551212"] * 1001),
    (SmsError.MESSAGE_MISSING, "Message", ""),
    (SmsError.MESSAGE_TOO_LONG, "Message", "x" * 1001),
    (SmsError.SENDER_MISSING, "Sender", ""),
    (SmsError.SENDER_INVALID, "Sender", "Sender-Too-Long"),
    (SmsError.CALLBACK_INVALID, "CallBack", "Maybe"),
    (SmsError.SCHEDULE_INVALID, "ScheduleAt", "tomorrow"),
    (SmsError.VALIDITY_INVALID, "ValidityPeriod", 5),
]


@pytest.mark.parametrize("index", range(len(ORDER)), ids=[e.name for e, _, _ in ORDER])
def test_errors_are_reported_in_the_contracts_order(index: int) -> None:
    error = ORDER[index][0]
    broken: dict[str, object] = {}
    for _, key, value in ORDER[index:]:
        broken.setdefault(key, value)  # the first (earliest) breakage of a key wins
    assert validate_send(sample(**broken), now=NOW) is error


def test_the_error_ids_and_texts_are_the_contracts() -> None:
    assert {e.name: (e.error_id, e.text, e.http_status) for e in SmsError} == {
        "AUTHENTICATION_FAILED": ("128", "Authentication failed", 401),
        "BODY_TOO_LARGE": ("130", "Request body too large (at most 1 MiB)", 413),
        "INVALID_JSON": ("120", "Invalid Json", 400),
        "DESTINATION_MISSING": ("121", "Parameter Destination/Mobile No is missing or empty", 400),
        "TOO_MANY_DESTINATIONS": ("124", "Too many destinations (at most 1000)", 400),
        "MESSAGE_MISSING": ("122", "Parameter Message is missing or empty", 400),
        "MESSAGE_TOO_LONG": ("123", "Parameter Message is too long", 400),
        "SENDER_MISSING": ("125", "Parameter Sender is missing or empty", 400),
        "SENDER_INVALID": ("126", "Parameter Sender is invalid", 400),
        "CALLBACK_INVALID": ("127", "Parameter CallBack is invalid", 400),
        "SCHEDULE_INVALID": ("132", "Parameter ScheduleAt is invalid", 400),
        "VALIDITY_INVALID": ("133", "Parameter ValidityPeriod is invalid", 400),
        "RATE_LIMITED": ("129", "Rate limit exceeded", 429),
        "ID_NOT_FOUND": ("131", "ID not found", 404),
        "UNAVAILABLE": ("140", "Service temporarily unavailable", 503),
    }
    assert SmsError.SENDER_MISSING.status == "Received with error - Parameter Sender is missing or empty"
    assert all(e.__doc__ for e in SmsError)


@pytest.mark.parametrize("doc", [[], "x", 1, None, True, [sample()]])
def test_a_body_that_is_not_an_object_is_invalid_json(doc: object) -> None:
    assert validate_send(doc, now=NOW) is SmsError.INVALID_JSON


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (..., None),
        (None, None),
        ("", None),
        ("ID09890", "ID09890"),
        ("x" * 255, "x" * 255),
        (12345, "12345"),
        (1.5, "1.5"),
        ("x" * 256, SmsError.INVALID_JSON),
        ({"a": 1}, SmsError.INVALID_JSON),
        ([1], SmsError.INVALID_JSON),
        (True, SmsError.INVALID_JSON),
        (10**50, SmsError.INVALID_JSON),
    ],
)
def test_reference_id(value: object, expected: object) -> None:
    result = validate_send(sample(ReferenceID=value), now=NOW)
    assert (result.reference_id if isinstance(result, SendRequest) else result) == expected


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ([{"MobileNo": "0016175551212"}], ["0016175551212"]),
        ([{"mobileno": "+16175551212"}, {"MOBILENO": "16175551212"}], ["+16175551212", "16175551212"]),
        (["0016175551212", "+447400123456"], ["0016175551212", "+447400123456"]),
        (["0016175551212", {"MobileNo": "+447400123456"}], ["0016175551212", "+447400123456"]),
        ({"MobileNo": "0016175551212"}, ["0016175551212"]),
        ({"mobileNo": 16175551212}, ["16175551212"]),
        ("0016175551212", ["0016175551212"]),
        (16175551212, ["16175551212"]),
        ([16175551212, "+1 617 555 1212"], ["16175551212", "+1 617 555 1212"]),
        # Entries without a number are kept (to be stored as Failed) when some entry has one.
        (["0016175551212", None, [], {}, {"Mobile": "1"}, True, 1.5, {"MobileNo": None}, ""],
         ["0016175551212", "", "", "", "", "", "", "", ""]),
        ([" ", "0016175551212"], [" ", "0016175551212"]),
        (["not a number"], ["not a number"]),  # normalised (and failed) later, not here
    ],
)  # fmt: skip
def test_destination_shapes(destination: object, expected: list[str]) -> None:
    assert accepted(sample(Destination=destination)).destinations == expected


@pytest.mark.parametrize(
    "destination",
    [..., None, [], "", "   ", {}, {"MobileNo": ""}, {"MobileNo": None}, [None], [{}], [""], [" ", None],
     True, 1.5, [[]], [[{"MobileNo": "0016175551212"}]], [None] * 1001],
)  # fmt: skip
def test_a_destination_without_any_number_is_missing(destination: object) -> None:
    assert validate_send(sample(Destination=destination), now=NOW) is SmsError.DESTINATION_MISSING


def test_at_most_1000_destinations() -> None:
    assert len(accepted(sample(Destination=["+16175551212"] * 1000)).destinations) == 1000
    too_many = sample(Destination=[{"MobileNo": "+16175551212"}] * 1001)
    assert validate_send(too_many, now=NOW) is SmsError.TOO_MANY_DESTINATIONS


@pytest.mark.parametrize("message", [..., None, "", "   ", "\n", 5, ["hello"], {"text": "hello"}, True])
def test_message_missing_empty_or_not_a_string(message: object) -> None:
    assert validate_send(sample(Message=message), now=NOW) is SmsError.MESSAGE_MISSING


def test_message_up_to_1000_characters() -> None:
    assert accepted(sample(Message="x" * 1000)).segments == 7
    assert accepted(sample(Message="😀" * 1000)).encoding is Encoding.UCS2  # characters, not UTF-16 units
    assert validate_send(sample(Message="x" * 1001), now=NOW) is SmsError.MESSAGE_TOO_LONG


def test_encoding_and_segments_come_from_the_message() -> None:
    assert (accepted(sample(Message="a" * 161)).encoding, accepted(sample(Message="a" * 161)).segments) == (
        Encoding.GSM7,
        2,
    )
    assert accepted(sample(Message="Olá, tudo bem?")).encoding is Encoding.UCS2
    assert accepted(sample(Message="  keeps its spaces  ")).message == "  keeps its spaces  "


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("OM", "OM"),
        (" OM ", "OM"),
        ("My Shop.co", "My Shop.co"),
        ("A_b-c.1 2", "A_b-c.1 2"),
        ("ABCDEFGHIJK", "ABCDEFGHIJK"),
        ("12345678901A", SmsError.SENDER_INVALID),  # 12 characters
        ("123", "123"),
        ("00919833111380", "00919833111380"),
        ("+919833111380", "+919833111380"),
        ("123456789012345", "123456789012345"),
        ("1234567890123456", SmsError.SENDER_INVALID),
        (919833111380, "919833111380"),
        (-5, SmsError.SENDER_INVALID),
        ("+", SmsError.SENDER_INVALID),
        ("OM!", SmsError.SENDER_INVALID),
        ("_-.", SmsError.SENDER_INVALID),
        ("ÄBC", SmsError.SENDER_INVALID),
        ("+91 98331", SmsError.SENDER_INVALID),
        (True, SmsError.SENDER_INVALID),
        (["OM"], SmsError.SENDER_INVALID),
        (..., SmsError.SENDER_MISSING),
        (None, SmsError.SENDER_MISSING),
        ("", SmsError.SENDER_MISSING),
        ("   ", SmsError.SENDER_MISSING),
    ],
)
def test_sender(sender: object, expected: object) -> None:
    result = validate_send(sample(Sender=sender), now=NOW)
    assert (result.sender if isinstance(result, SendRequest) else result) == expected


@pytest.mark.parametrize(
    ("callback", "expected"),
    [
        (..., Callback(CallbackMode.NO)),
        (None, Callback(CallbackMode.NO)),
        ("", Callback(CallbackMode.NO)),
        ("No", Callback(CallbackMode.NO)),
        ("no", Callback(CallbackMode.NO)),
        (False, Callback(CallbackMode.NO)),
        ("false", Callback(CallbackMode.NO)),
        ("Yes", Callback(CallbackMode.YES)),
        ("YES", Callback(CallbackMode.YES)),
        (" yes ", Callback(CallbackMode.YES)),
        (True, Callback(CallbackMode.YES)),
        ("True", Callback(CallbackMode.YES)),
        ("https://example.com/cb?x=1", Callback(CallbackMode.URL, "https://example.com/cb?x=1")),
        ("http://example.com/cb", Callback(CallbackMode.URL, "http://example.com/cb")),
        ("HTTPS://Example.com", Callback(CallbackMode.URL, "HTTPS://Example.com")),
        ("https://[2001:db8::1]:8443/cb", Callback(CallbackMode.URL, "https://[2001:db8::1]:8443/cb")),
        ("https://", SmsError.CALLBACK_INVALID),
        ("https:///path", SmsError.CALLBACK_INVALID),
        ("https://exa mple.com", SmsError.CALLBACK_INVALID),
        ("https://[::1", SmsError.CALLBACK_INVALID),
        ("https://example.com/" + "a" * 2100, SmsError.CALLBACK_INVALID),
        ("ftp://example.com", SmsError.CALLBACK_INVALID),
        ("example.com/cb", SmsError.CALLBACK_INVALID),
        ("Maybe", SmsError.CALLBACK_INVALID),
        (1, SmsError.CALLBACK_INVALID),
        ({"url": "https://example.com"}, SmsError.CALLBACK_INVALID),
    ],
)
def test_callback(callback: object, expected: object) -> None:
    result = validate_send(sample(CallBack=callback), now=NOW)
    assert (result.callback if isinstance(result, SendRequest) else result) == expected


def test_callback_modes_are_the_strings_no_yes_url() -> None:
    assert [m.value for m in CallbackMode] == ["no", "yes", "url"]
    assert {"url": 1}[CallbackMode.URL] == 1


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (..., None),
        (None, None),
        ("", None),
        ("2026-01-02T10:00:00+02:00", datetime(2026, 1, 2, 8, tzinfo=UTC)),
        ("2026-01-02T10:00:00Z", datetime(2026, 1, 2, 10, tzinfo=UTC)),
        ("2026-01-02t10:00z", datetime(2026, 1, 2, 10, tzinfo=UTC)),
        ("2026-01-02T10:00+0530", datetime(2026, 1, 2, 4, 30, tzinfo=UTC)),
        ("2026-01-01T20:00:00-05:00", datetime(2026, 1, 2, 1, tzinfo=UTC)),
        ("2026-01-02 10:00:00", datetime(2026, 1, 2, 10, tzinfo=UTC)),
        ("2026-01-02 10:00:00.123", datetime(2026, 1, 2, 10, 0, 0, 123000, tzinfo=UTC)),
        ("2026-01-02 10:00:00.1234567", datetime(2026, 1, 2, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2026-01-02 10:00:00+01:00", datetime(2026, 1, 2, 9, tzinfo=UTC)),
        (" 2026-01-02 10:00 ", datetime(2026, 1, 2, 10, tzinfo=UTC)),
        ("2025-12-31 23:00:00", None),  # past: send now
        ("2026-01-01 00:00:00", None),  # now: send now
        ("2000-01-01T00:00:00Z", None),
        ("2027-01-02 00:00:00", datetime(2027, 1, 2, tzinfo=UTC)),  # 366 days ahead
        ("2027-01-02 00:00:01", SmsError.SCHEDULE_INVALID),
        ("2026-01-02T10:00:00", SmsError.SCHEDULE_INVALID),  # "T" without an offset: whose local time?
        ("2026-02-30 00:00:00", SmsError.SCHEDULE_INVALID),
        ("2026-01-02 24:00:00", SmsError.SCHEDULE_INVALID),
        ("2026-01-02T10:00:00+24:00", SmsError.SCHEDULE_INVALID),
        ("9999-12-31T23:59:59-05:00", SmsError.SCHEDULE_INVALID),
        ("2026-01-02", SmsError.SCHEDULE_INVALID),
        ("tomorrow", SmsError.SCHEDULE_INVALID),
        (1767312000, SmsError.SCHEDULE_INVALID),
        (["2026-01-02 10:00:00"], SmsError.SCHEDULE_INVALID),
    ],
)
def test_schedule_at(schedule: object, expected: object) -> None:
    result = validate_send(sample(ScheduleAt=schedule), now=NOW)
    assert (result.schedule_at if isinstance(result, SendRequest) else result) == expected


def test_schedule_at_is_judged_against_the_given_clock() -> None:
    doc = sample(ScheduleAt="2026-06-01 00:00:00")
    assert accepted(doc).schedule_at == datetime(2026, 6, 1, tzinfo=UTC)
    later = validate_send(doc, now=NOW + timedelta(days=200))
    assert isinstance(later, SendRequest) and later.schedule_at is None
    assert validate_send(doc, now=NOW - timedelta(days=250)) is SmsError.SCHEDULE_INVALID
    naive = validate_send(doc, now=NOW.replace(tzinfo=None))
    assert isinstance(naive, SendRequest) and naive.schedule_at == datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("validity", "expected"),
    [
        (..., None),
        (None, None),
        ("", None),
        (60, 60),
        (604800, 604800),
        ("3600", 3600),
        (" 120 ", 120),
        (59, SmsError.VALIDITY_INVALID),
        (604801, SmsError.VALIDITY_INVALID),
        (-60, SmsError.VALIDITY_INVALID),
        ("-60", SmsError.VALIDITY_INVALID),
        (3600.0, SmsError.VALIDITY_INVALID),
        ("3600.5", SmsError.VALIDITY_INVALID),
        ("1h", SmsError.VALIDITY_INVALID),
        ("9" * 5000, SmsError.VALIDITY_INVALID),
        (True, SmsError.VALIDITY_INVALID),
        ([60], SmsError.VALIDITY_INVALID),
    ],
)
def test_validity_period(validity: object, expected: object) -> None:
    result = validate_send(sample(ValidityPeriod=validity), now=NOW)
    assert (result.validity_period if isinstance(result, SendRequest) else result) == expected


def test_keys_match_in_any_letter_case() -> None:
    doc = {
        "destination": [{"mobileno": "0016175551212"}],
        "MESSAGE": "hi",
        "sEnDeR": "OM",
        "referenceid": 7,
        "CALLBACK": "YES",
        "scheduleat": "2026-01-02 00:00:00",
        "VALIDITYPERIOD": "600",
    }
    request = accepted(doc)
    assert (request.destinations, request.message, request.sender, request.reference_id) == (
        ["0016175551212"],
        "hi",
        "OM",
        "7",
    )
    assert request.callback.mode is CallbackMode.YES
    assert (request.schedule_at, request.validity_period) == (datetime(2026, 1, 2, tzinfo=UTC), 600)


def test_of_a_key_given_twice_in_different_cases_the_last_wins() -> None:
    assert accepted(sample(message="second")).message == "second"


def test_unknown_keys_are_ignored() -> None:
    assert accepted(sample(Locale="hi-IN", Extra={"x": [1]})).sender == "OM"


def test_keys_that_are_not_strings_are_ignored_not_an_exception() -> None:
    doc: dict[Any, Any] = {
        1: "x",
        None: [],
        **sample(Destination=[{2: "y", "MobileNo": "+16175551212"}]),
    }
    assert accepted(doc).destinations == ["+16175551212"]
    assert validate_send({1: "x"}, now=NOW) is SmsError.DESTINATION_MISSING


def test_validation_does_not_change_the_document() -> None:
    doc = sample(Destination=[{"mobileno": 16175551212}, None])
    before = copy.deepcopy(doc)
    accepted(doc)
    assert doc == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
KEYS = [
    "Destination",
    "Message",
    "Sender",
    "ReferenceID",
    "CallBack",
    "ScheduleAt",
    "ValidityPeriod",
    "MobileNo",
]
near_valid_values = st.one_of(
    json_values,
    st.sampled_from(["0016175551212", "OM", "Yes", "https://example.com", "2026-03-01 10:00:00", "600", ""]),
    st.lists(
        st.one_of(st.sampled_from(["+16175551212", "x"]), st.fixed_dictionaries({"MobileNo": json_values})),
        max_size=3,
    ),
)


@settings(max_examples=300)
@given(
    st.one_of(
        json_values,
        st.dictionaries(
            st.sampled_from(KEYS).flatmap(lambda k: st.sampled_from([k, k.lower(), k.upper()])),
            near_valid_values,
        ),
    )
)
def test_any_document_gives_a_request_or_an_error_and_never_raises(doc: object) -> None:
    result = validate_send(doc, now=NOW)
    assert isinstance(result, SendRequest | SmsError)
    if isinstance(result, SendRequest):
        assert 1 <= len(result.destinations) <= 1000
        assert any(d.strip() for d in result.destinations)
        assert 0 < len(result.message) <= 1000
        assert result.sender and result.sender == result.sender.strip()
        assert result.reference_id is None or len(result.reference_id) <= 255
        assert result.schedule_at is None or NOW < result.schedule_at <= NOW + timedelta(days=366)
        assert result.validity_period is None or 60 <= result.validity_period <= 604800
        assert result.segments >= 1


@settings(max_examples=200)
@given(st.lists(st.sampled_from(["lower", "upper", "swapcase", "title", "same"]), min_size=6, max_size=6))
def test_the_letter_case_of_keys_never_changes_the_result(cases: list[str]) -> None:
    doc = sample(ValidityPeriod=600)
    recased = {getattr(key, case)() if case != "same" else key: value for (key, value), case in zip(
        doc.items(), cases, strict=True)}  # fmt: skip
    assert validate_send(recased, now=NOW) == validate_send(doc, now=NOW)
