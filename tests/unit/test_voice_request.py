from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.domain import numbers
from switchboard.domain.catalogue import VoiceError
from switchboard.domain.lenient_json import parse_body
from switchboard.domain.sms_request import Callback, CallbackMode
from switchboard.domain.voice_request import (
    DEFAULT_RING_TIMEOUT,
    NOT_A_GUID,
    CallRequest,
    campaign_guid,
    validate_call,
)

# The vendor document's two Voice Call samples, exactly as printed (neither is JSON).
VENDOR_MESSAGE = b"""
            "Destination" : {
                [{"MobileNo" : "0016175551212"}, {"MobileNo" : "0016175551212"}], "Message" : "Welcome to Optimum Measures Voice solution", "Sender" : "00919833111380", "Locale" : "hi-IN"
            }
"""  # noqa: E501
VENDOR_CAMPAIGN = b"""
         "Destination" : {
             [{"MobileNo" : "0016175551212"}, {"MobileNo" : "0016175551212"}], "CampaignID" : "fc46b682-b939-4fc2-81c3-891cfb23cd92", "Sender" : "00919833111380"
            }
"""  # noqa: E501
GUID = "fc46b682-b939-4fc2-81c3-891cfb23cd92"
SPOKEN = {"hi-in": "hi-IN", "en-us": "en-US", "ar": "ar"}


def locale_of(value: str) -> str | None:
    """What `VoiceService.locale` does for an engine that speaks three locales."""
    return SPOKEN.get(value.lower().replace("_", "-"))


def sample(**changes: Any) -> dict[str, Any]:
    """The vendor's Message sample body, with keys replaced (a value of ... removes the key)."""
    return mutated(VENDOR_MESSAGE, changes)


def campaign_sample(**changes: Any) -> dict[str, Any]:
    return mutated(VENDOR_CAMPAIGN, changes)


def mutated(body: bytes, changes: dict[str, Any]) -> dict[str, Any]:
    doc = parse_body(body)
    assert isinstance(doc, dict)
    for key, value in changes.items():
        if value is ...:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def check(doc: object) -> CallRequest | VoiceError:
    return validate_call(doc, locale_of=locale_of)


def accepted(doc: object) -> CallRequest:
    result = check(doc)
    assert isinstance(result, CallRequest), result
    return result


def test_the_vendors_message_sample_is_accepted() -> None:
    assert check(sample()) == CallRequest(
        destinations=["0016175551212", "0016175551212"],
        sender="00919833111380",
        message="Welcome to Optimum Measures Voice solution",
        locale="hi-IN",
        campaign_id=None,
        reference_id=None,
        callback=Callback(CallbackMode.YES),
        ring_timeout=DEFAULT_RING_TIMEOUT,
    )


def test_the_vendors_campaign_sample_is_accepted() -> None:
    assert check(campaign_sample()) == CallRequest(
        destinations=["0016175551212", "0016175551212"],
        sender="00919833111380",
        message=None,
        locale=None,
        campaign_id=GUID,
        reference_id=None,
        callback=Callback(CallbackMode.YES),
        ring_timeout=30,
    )


def test_the_samples_numbers_normalise_to_e164() -> None:
    assert [numbers.normalize(n) for n in accepted(sample()).destinations] == ["+16175551212"] * 2


# One thing broken at a time, in the contract's order: each row's body also breaks everything the rows
# after it break, so the error reported must be the row's own. "Neither Message nor CampaignID" cannot
# share a body with "both" or with the Message checks after it; it has its own tests below.
ORDER: list[tuple[VoiceError, str, object]] = [
    (VoiceError.INVALID_JSON, "ReferenceID", "x" * 256),
    (VoiceError.DESTINATION_MISSING, "Destination", []),
    (VoiceError.TOO_MANY_DESTINATIONS, "Destination", ["+16175551212"] * 1001),
    (VoiceError.SENDER_MISSING, "Sender", ""),
    (VoiceError.SENDER_INVALID, "Sender", "OM"),
    (VoiceError.BOTH_GIVEN, "CampaignID", GUID),
    (VoiceError.MESSAGE_TOO_LONG, "Message", "x" * 2001),
    (VoiceError.LOCALE_MISSING, "Locale", ""),
    (VoiceError.LOCALE_UNSUPPORTED, "Locale", "xx-XX"),
    (VoiceError.CALLBACK_INVALID, "CallBack", "Maybe"),
    (VoiceError.RING_TIMEOUT_INVALID, "RingTimeout", 4),
]


@pytest.mark.parametrize("index", range(len(ORDER)), ids=[e.name for e, _, _ in ORDER])
def test_errors_are_reported_in_the_contracts_order(index: int) -> None:
    error = ORDER[index][0]
    broken: dict[str, object] = {}
    for _, key, value in ORDER[index:]:
        broken.setdefault(key, value)  # the first (earliest) breakage of a key wins
    assert check(sample(**broken)) is error


CAMPAIGN_ORDER: list[tuple[VoiceError, str, object]] = [
    (VoiceError.INVALID_JSON, "ReferenceID", ["x"]),
    (VoiceError.DESTINATION_MISSING, "Destination", [{"MobileNo": ""}]),
    (VoiceError.TOO_MANY_DESTINATIONS, "Destination", [{"MobileNo": "0016175551212"}] * 1001),
    (VoiceError.SENDER_MISSING, "Sender", "   "),
    (VoiceError.SENDER_INVALID, "Sender", "0091983311138000"),
    (VoiceError.BOTH_GIVEN, "Message", "Hello"),
    (VoiceError.CALLBACK_INVALID, "CallBack", "ftp://hooks.example/x"),
    (VoiceError.RING_TIMEOUT_INVALID, "RingTimeout", "121"),
]


@pytest.mark.parametrize("index", range(len(CAMPAIGN_ORDER)), ids=[e.name for e, _, _ in CAMPAIGN_ORDER])
def test_errors_of_a_campaign_call_are_reported_in_the_contracts_order(index: int) -> None:
    broken: dict[str, object] = {"CampaignID": "not a guid"}  # 5002 comes after all of these (in the API)
    for _, key, value in CAMPAIGN_ORDER[index:]:
        broken.setdefault(key, value)
    assert check(campaign_sample(**broken)) is CAMPAIGN_ORDER[index][0]


@pytest.mark.parametrize(
    "changes",
    [
        {"Message": ...},
        {"Message": ""},
        {"Message": "   \n"},
        {"Message": None},
        {"Message": "", "CampaignID": ""},
        {"Message": ..., "CampaignID": "  "},
        {"Message": 12345},
        {"Message": ["Welcome"]},
    ],
)
def test_neither_message_nor_campaign_is_5000(changes: dict[str, object]) -> None:
    result = check(sample(**changes))
    assert result is VoiceError.NEITHER_GIVEN
    assert (result.error_id, result.text) == ("5000", "Parameter Message or CampaignID is missing or empty")


def test_neither_comes_after_the_sender_and_before_locale_callback_and_ring_timeout() -> None:
    assert check(sample(Message=..., Sender="OM")) is VoiceError.SENDER_INVALID
    neither = sample(Message=..., Locale="xx", CallBack="Maybe", RingTimeout=0)
    assert check(neither) is VoiceError.NEITHER_GIVEN


def test_a_message_that_is_not_text_beside_a_campaign_is_both() -> None:
    assert check(campaign_sample(Message=42)) is VoiceError.BOTH_GIVEN


@pytest.mark.parametrize("doc", [[], "x", 1, None, True, [sample()]])
def test_a_body_that_is_not_an_object_is_5001(doc: object) -> None:
    assert check(doc) is VoiceError.INVALID_JSON


def test_unparseable_text_never_reaches_validation_but_a_bare_list_is_5001() -> None:
    assert check(parse_body(b'[{"MobileNo": "0016175551212"}]')) is VoiceError.INVALID_JSON


def test_keys_are_matched_in_any_letter_case() -> None:
    doc = {
        "DESTINATION": "+16175551212",
        "sender": "+919833111380",
        "MESSAGE": "hello",
        "locale": "EN_us",
        "referenceId": "r-1",
        "callback": "no",
        "RINGTIMEOUT": "45",
    }
    assert check(doc) == CallRequest(
        destinations=["+16175551212"],
        sender="+919833111380",
        message="hello",
        locale="en-US",
        campaign_id=None,
        reference_id="r-1",
        callback=Callback(CallbackMode.NO),
        ring_timeout=45,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("00919833111380", "00919833111380"),
        (" +919833111380 ", "+919833111380"),
        (919833111380, "919833111380"),
        ("1" * 15, "1" * 15),
        ("+" + "1" * 15, "+" + "1" * 15),
        ("1" * 16, VoiceError.SENDER_INVALID),
        ("OM", VoiceError.SENDER_INVALID),
        ("+91 98331", VoiceError.SENDER_INVALID),
        (-919833111380, VoiceError.SENDER_INVALID),
        (["00919833111380"], VoiceError.SENDER_INVALID),
        (True, VoiceError.SENDER_INVALID),
        (..., VoiceError.SENDER_MISSING),
        (None, VoiceError.SENDER_MISSING),
        ("", VoiceError.SENDER_MISSING),
    ],
)
def test_the_sender_is_a_caller_number(value: object, expected: object) -> None:
    result = check(sample(Sender=value))
    assert (result.sender if isinstance(result, CallRequest) else result) == expected


def test_sender_errors_have_the_catalogues_ids() -> None:
    assert (VoiceError.SENDER_MISSING.error_id, VoiceError.SENDER_INVALID.error_id) == ("5000", "5009")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x" * 2000, "x" * 2000),
        ("😀" * 2000, "😀" * 2000),  # characters, not bytes or UTF-16 units
        ("x" * 2001, VoiceError.MESSAGE_TOO_LONG),
    ],
)
def test_message_length(value: str, expected: object) -> None:
    result = check(sample(Message=value))
    assert (result.message if isinstance(result, CallRequest) else result) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hi-IN", "hi-IN"),
        (" hi_in ", "hi-IN"),
        ("AR", "ar"),
        (..., VoiceError.LOCALE_MISSING),
        (None, VoiceError.LOCALE_MISSING),
        ("", VoiceError.LOCALE_MISSING),
        (" ", VoiceError.LOCALE_MISSING),
        ("fr-CA", VoiceError.LOCALE_UNSUPPORTED),
        ("hindi", VoiceError.LOCALE_UNSUPPORTED),
        (7, VoiceError.LOCALE_UNSUPPORTED),
        (["hi-IN"], VoiceError.LOCALE_UNSUPPORTED),
    ],
)
def test_locale(value: object, expected: object) -> None:
    result = check(sample(Locale=value))
    assert (result.locale if isinstance(result, CallRequest) else result) == expected


def test_a_campaign_call_ignores_the_locale() -> None:
    assert accepted(campaign_sample(Locale="xx-XX")).locale is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (GUID, GUID),
        (GUID.upper(), GUID),
        ("{" + GUID.upper() + "}", GUID),
        (f"  {GUID} ", GUID),
        ("{" + GUID, NOT_A_GUID),
        (GUID.replace("-", ""), NOT_A_GUID),
        ("campaign-1", NOT_A_GUID),
        (42, NOT_A_GUID),
        ({"id": GUID}, NOT_A_GUID),
        ("\x00" * 36, NOT_A_GUID),
    ],
)
def test_a_campaign_id_is_a_guid_else_the_marker_no_campaign_has(value: object, expected: str) -> None:
    assert accepted(campaign_sample(CampaignID=value)).campaign_id == expected
    assert campaign_guid(value) == (None if expected == NOT_A_GUID else expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (..., Callback(CallbackMode.YES)),
        (None, Callback(CallbackMode.YES)),
        ("", Callback(CallbackMode.YES)),
        ("Yes", Callback(CallbackMode.YES)),
        (True, Callback(CallbackMode.YES)),
        ("No", Callback(CallbackMode.NO)),
        ("FALSE", Callback(CallbackMode.NO)),
        (False, Callback(CallbackMode.NO)),
        ("https://hooks.example/cdr", Callback(CallbackMode.URL, "https://hooks.example/cdr")),
        ("Maybe", VoiceError.CALLBACK_INVALID),
        ("https://", VoiceError.CALLBACK_INVALID),
        ("https://hooks.example/a b", VoiceError.CALLBACK_INVALID),
        (1, VoiceError.CALLBACK_INVALID),
        (["Yes"], VoiceError.CALLBACK_INVALID),
    ],
)
def test_callback_defaults_to_the_accounts_voice_url(value: object, expected: object) -> None:
    result = check(sample(CallBack=value))
    assert (result.callback if isinstance(result, CallRequest) else result) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (..., 30),
        (None, 30),
        ("", 30),
        (5, 5),
        (120, 120),
        (" 60 ", 60),
        (4, VoiceError.RING_TIMEOUT_INVALID),
        (121, VoiceError.RING_TIMEOUT_INVALID),
        (30.0, VoiceError.RING_TIMEOUT_INVALID),
        (30.5, VoiceError.RING_TIMEOUT_INVALID),
        ("-30", VoiceError.RING_TIMEOUT_INVALID),
        ("٣٠", VoiceError.RING_TIMEOUT_INVALID),  # Arabic-Indic digits: str.isdigit says yes, we say no
        (True, VoiceError.RING_TIMEOUT_INVALID),
        (10**50, VoiceError.RING_TIMEOUT_INVALID),
    ],
)
def test_ring_timeout(value: object, expected: object) -> None:
    result = check(sample(RingTimeout=value))
    assert (result.ring_timeout if isinstance(result, CallRequest) else result) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ID09890", "ID09890"),
        (12345, "12345"),
        ("", None),
        ("x" * 255, "x" * 255),
        ("x" * 256, VoiceError.INVALID_JSON),
        ({"a": 1}, VoiceError.INVALID_JSON),
    ],
)
def test_reference_id(value: object, expected: object) -> None:
    result = check(sample(ReferenceID=value))
    assert (result.reference_id if isinstance(result, CallRequest) else result) == expected


def test_destinations_are_read_like_sms() -> None:
    assert accepted(sample(Destination="0016175551212")).destinations == ["0016175551212"]
    assert accepted(sample(Destination=[16175551212, {"mobileno": "+15005550001"}, None])).destinations == [
        "16175551212",
        "+15005550001",
        "",
    ]
    assert accepted(sample(Destination=["+16175551212"] * 1000)).destinations == ["+16175551212"] * 1000
    assert check(sample(Destination=[None] * 1001)) is VoiceError.DESTINATION_MISSING


def test_the_error_ids_texts_and_statuses_are_the_contracts() -> None:
    catalogue = {e.name: (e.error_id, e.text, e.http_status) for e in VoiceError}
    assert catalogue == {
        "AUTHENTICATION_FAILED": ("5006", "Authentication failed", 401),
        "BODY_TOO_LARGE": ("5008", "Request body too large", 413),
        "INVALID_JSON": ("5001", "Invalid Json", 400),
        "DESTINATION_MISSING": ("5000", "Parameter Destination/Mobile No is missing or empty", 400),
        "TOO_MANY_DESTINATIONS": ("5005", "Too many destinations (at most 1000)", 400),
        "SENDER_MISSING": ("5000", "Parameter Sender is missing or empty", 400),
        "SENDER_INVALID": ("5009", "Parameter Sender is invalid", 400),
        "BOTH_GIVEN": ("5003", "Message or CampaignID, either of the two should be present", 400),
        "NEITHER_GIVEN": ("5000", "Parameter Message or CampaignID is missing or empty", 400),
        "MESSAGE_TOO_LONG": ("5010", "Parameter Message is too long", 400),
        "LOCALE_MISSING": ("5000", "Parameter Locale is missing or empty", 400),
        "LOCALE_UNSUPPORTED": ("5004", "Locale is not supported", 400),
        "CAMPAIGN_INVALID": ("5002", "Invalid Campaign", 400),
        "CALLBACK_INVALID": ("5011", "Parameter CallBack is invalid", 400),
        "RING_TIMEOUT_INVALID": ("5012", "Parameter RingTimeout is invalid", 400),
        "RATE_LIMITED": ("5007", "Rate limit exceeded", 429),
        "ID_NOT_FOUND": ("5013", "ID not found", 404),
        "AUDIO_INVALID": ("5014", "Invalid audio", 400),
        "UNAVAILABLE": ("5015", "Service temporarily unavailable", 503),
    }
    assert VoiceError.LOCALE_MISSING.message == "Received with error - Parameter Locale is missing or empty"
    assert all(e.__doc__ for e in VoiceError)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
KEYS = ["Destination", "Sender", "Message", "Locale", "CampaignID", "ReferenceID", "CallBack", "RingTimeout"]
near_valid_values = st.one_of(
    json_values,
    st.sampled_from(["0016175551212", "00919833111380", "OM", "hi-IN", GUID, "No", "https://example.com", "60", ""]),
    st.lists(
        st.fixed_dictionaries({"MobileNo": st.sampled_from(["0016175551212", "", "x"]) | json_values}), max_size=3
    ),
)


@settings(max_examples=300)
@given(
    st.one_of(
        json_values,
        st.dictionaries(
            st.sampled_from(KEYS).flatmap(lambda k: st.sampled_from([k, k.lower(), k.upper()])), near_valid_values
        ),
    )
)
def test_any_document_gives_a_request_or_an_error_and_never_raises(doc: object) -> None:
    result = check(doc)
    assert isinstance(result, CallRequest | VoiceError)
    if isinstance(result, CallRequest):
        assert 1 <= len(result.destinations) <= 1000 and any(d.strip() for d in result.destinations)
        assert result.sender.lstrip("+").isdigit() and len(result.sender.lstrip("+")) <= 15
        assert (result.message is None) != (result.campaign_id is None)
        assert (result.message is None) == (result.locale is None)
        assert result.locale is None or result.locale in SPOKEN.values()
        assert result.campaign_id in (None, GUID, NOT_A_GUID)
        assert 5 <= result.ring_timeout <= 120
