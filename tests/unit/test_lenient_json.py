from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.domain.lenient_json import MAX_BODY_BYTES, MAX_DEPTH, parse_body
from switchboard.errors import InvalidJson, RequestError

# The vendor document's samples, exactly as printed (seed/optimum-measures-api.txt).
VENDOR_SMS = b"""
            "Destination" : { [{"MobileNo" : "0016175551212"}, {"MobileNo" : "0016175551212"}], "Message" :
            "Welcome to Optimum Measures meassaging solution", "Sender" : "OM", "ReferenceID" : "ID09890",
            "CallBack" : "Yes" }
        """
VENDOR_VOICE = b"""
            "Destination" : { 
                [{"MobileNo" : "0016175551212"}, {"MobileNo" : "0016175551212"}], "Message" : "Welcome to Optimum Measures Voice solution", "Sender" : "00919833111380", "Locale" : "hi-IN" 
            }
"""  # noqa: E501, W291 (the sample as printed, trailing spaces and all)
VENDOR_CAMPAIGN = b"""
         "Destination" : {
             [{"MobileNo" : "0016175551212"}, {"MobileNo" : "0016175551212"}], "CampaignID" : "fc46b682-b939-4fc2-81c3-891cfb23cd92", "Sender" : "00919833111380" 
            }
"""  # noqa: E501, W291
TWO = [{"MobileNo": "0016175551212"}, {"MobileNo": "0016175551212"}]
SMS_DOC = {
    "Destination": TWO,
    "Message": "Welcome to Optimum Measures meassaging solution",
    "Sender": "OM",
    "ReferenceID": "ID09890",
    "CallBack": "Yes",
}


def test_the_vendors_sms_sample_reads_as_the_document_it_means() -> None:
    assert parse_body(VENDOR_SMS) == SMS_DOC


def test_the_vendors_voice_samples_read_as_the_documents_they_mean() -> None:
    assert parse_body(VENDOR_VOICE) == {
        "Destination": TWO,
        "Message": "Welcome to Optimum Measures Voice solution",
        "Sender": "00919833111380",
        "Locale": "hi-IN",
    }
    assert parse_body(VENDOR_CAMPAIGN) == {
        "Destination": TWO,
        "CampaignID": "fc46b682-b939-4fc2-81c3-891cfb23cd92",
        "Sender": "00919833111380",
    }


@pytest.mark.parametrize(
    "body",
    [
        b'{"Destination": { [{"MobileNo": "0016175551212"}, {"MobileNo": "0016175551212"}], "Message": '
        b'"Welcome to Optimum Measures meassaging solution", "Sender": "OM", "ReferenceID": "ID09890", '
        b'"CallBack": "Yes"}}',
        b'{"Destination": { [{"MobileNo": "0016175551212"}, {"MobileNo": "0016175551212"},], "Message": '
        b'"Welcome to Optimum Measures meassaging solution", "Sender": "OM", "ReferenceID": "ID09890", '
        b'"CallBack": "Yes",},}',
        b'"Destination": { [{"MobileNo": "0016175551212"}, {"MobileNo": "0016175551212"}] }, "Message": '
        b'"Welcome to Optimum Measures meassaging solution", "Sender": "OM", "ReferenceID": "ID09890", '
        b'"CallBack": "Yes",',
        b'"Destination": [{"MobileNo": "0016175551212"}, {"MobileNo": "0016175551212"}], "Message": '
        b'"Welcome to Optimum Measures meassaging solution", "Sender": "OM", "ReferenceID": "ID09890", '
        b'"CallBack": "Yes"',
    ],
    ids=["outer-braces", "trailing-commas-inside", "members-after-the-braces", "bare-member-list"],
)
def test_variants_of_the_vendor_form(body: bytes) -> None:
    assert parse_body(body) == SMS_DOC


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[1, 2,]", [1, 2]),
        (b'{"a": 1,}', {"a": 1}),
        (b'{"a": [1, {"b": [],},],}', {"a": [1, {"b": []}]}),
        (b"[[],]", [[]]),
        (b'"a": 1, "b": 2,', {"a": 1, "b": 2}),
        (b'{"Message": "a, }] {[ \\" ,}", }', {"Message": 'a, }] {[ " ,}'}),
        (b'{"Message": "line\nbreak\ttab",}', {"Message": "line\nbreak\ttab"}),
        (b'{"MobileNo": 0016175551212}', {"MobileNo": "0016175551212"}),
        (b"[-012, 0.5, 1e3, true, false, null]", ["-012", 0.5, 1000.0, True, False, None]),
        (b"\xef\xbb\xbf[1]", [1]),
        (b"\xef\xbb\xbf[1,]", [1]),
        ('{"Message": "नमस्ते 😀",}'.encode(), {"Message": "नमस्ते 😀"}),
        (b'{"a": {"b": [1,2,],},}', {"a": {"b": [1, 2]}}),
    ],
)
def test_repairs(body: bytes, expected: object) -> None:
    assert parse_body(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"{",
        b"}",
        b"[1 2]",
        b'{"a" 1}',
        b"{,}",
        b"[,]",
        b'{"a": 1,, "b": 2}',
        b'{"a": 1}}',
        b'{"a": 1},',
        b'"a": 1 "b": 2',
        b"{'a': 1}",
        b"NaN",
        b"[1, 2",
        b'{"a": "unterminated}',
        b'{"a": "\\x"}',
        b'{"a": tru}',
        b"{a: 1}",
        b'{"a": 1 // comment\n}',
        b'{"a": "\xff"}',
        b"\xff\xfe[\x001\x00]\x00",  # UTF-16
        b'{"a": "\xed\xa0\x80"}',  # a surrogate encoded in UTF-8
        b'"\\ud800"',
    ],
)
def test_what_cannot_be_read_even_leniently_is_invalid_json(body: bytes) -> None:
    with pytest.raises(InvalidJson):
        parse_body(body)


def test_invalid_json_is_a_request_error() -> None:
    assert issubclass(InvalidJson, RequestError)  # what the API answers with its documented error


def test_nesting_is_bounded_on_the_repair_path() -> None:
    assert parse_body(b"[" * MAX_DEPTH + b"1," + b"]" * MAX_DEPTH) is not None
    with pytest.raises(InvalidJson, match="nested deeper"):
        parse_body(b"[" * (MAX_DEPTH + 1) + b"1," + b"]" * (MAX_DEPTH + 1))


def test_very_deep_bodies_are_invalid_not_a_recursion_error() -> None:
    with pytest.raises(InvalidJson):
        parse_body(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(InvalidJson):
        parse_body(b'{"a":' * 50_000 + b"1" + b"}" * 50_000)


def test_bodies_over_one_mebibyte_are_refused() -> None:
    body = b'{"Message": "' + b"a" * (MAX_BODY_BYTES - 15) + b'"}'
    assert len(body) == MAX_BODY_BYTES
    assert parse_body(body) == {"Message": "a" * (MAX_BODY_BYTES - 15)}
    with pytest.raises(InvalidJson):
        parse_body(body + b" ")


def test_a_large_body_that_needs_repair_is_read_in_bounded_time() -> None:
    destinations = b", ".join(b'{"MobileNo": "0016175551212"}' for _ in range(1000))
    doc = parse_body(b'"Destination": {[' + destinations + b"], " + b'"Message": "x",}')
    assert isinstance(doc, dict) and len(doc["Destination"]) == 1000
    with pytest.raises(InvalidJson):  # 200,000+ tokens
        parse_body(b"[" + b"1," * 300_000 + b"]")


# JSON values, for the properties below.
# Every string JSON can hold but U+0000, which parse_body refuses (test below).
_text = st.text(max_size=12, alphabet=st.characters(codec="utf-8", exclude_characters="\x00"))
_keys = st.text(max_size=6, alphabet=st.characters(codec="utf-8", exclude_characters="\x00"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=6, alphabet=st.characters(codec="utf-8", exclude_characters="\x00")), inner, max_size=4
        )
    ),
    max_leaves=25,
)


@pytest.mark.parametrize("body", [b'{"Message": "a\\u0000b"}', b'{"Message": "a\x00b"}', b'"Message": "a\\u0000b",'])
def test_a_nul_character_is_refused_rather_than_cut_off_later(body: bytes) -> None:
    with pytest.raises(InvalidJson):
        parse_body(body)


def trailing_commas(value: Any) -> str:
    """JSON text with a trailing comma in every non-empty array and object."""
    if isinstance(value, list):
        return "[" + "".join(trailing_commas(v) + "," for v in value) + "]"
    if isinstance(value, dict):
        return "{" + "".join(json.dumps(k) + ":" + trailing_commas(v) + ", " for k, v in value.items()) + "}"
    return json.dumps(value)


@settings(max_examples=200)
@given(json_values)
def test_exact_json_reads_as_json(value: Any) -> None:
    assert parse_body(json.dumps(value).encode()) == value
    assert parse_body(json.dumps(value, ensure_ascii=False, indent=1).encode()) == value


@settings(max_examples=200)
@given(json_values)
def test_trailing_commas_change_nothing(value: Any) -> None:
    assert parse_body(trailing_commas(value).encode()) == value


@settings(max_examples=150)
@given(st.dictionaries(_keys, json_values, min_size=1, max_size=5))
def test_a_bare_member_list_is_the_object_it_lists(value: dict[str, Any]) -> None:
    assert parse_body(json.dumps(value)[1:-1].encode()) == value


@settings(max_examples=150)
@given(
    st.lists(json_values, max_size=4),
    st.dictionaries(_keys.filter(lambda k: k != "Destination"), json_values, max_size=4),
)
def test_the_vendor_form_lifts_the_array_and_the_members_after_it(
    destinations: list[Any], rest: dict[str, Any]
) -> None:
    inner = json.dumps(destinations) + "".join(f", {json.dumps(k)}: {json.dumps(v)}" for k, v in rest.items())
    expected = {"Destination": destinations} | rest
    assert parse_body(('{"Destination": {' + inner + "}}").encode()) == expected
    assert parse_body(('"Destination": {' + inner + "}").encode()) == expected


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_value_or_invalid_json_and_nothing_else(body: bytes) -> None:
    try:
        parse_body(body)
    except InvalidJson:
        pass


FRAGMENTS = ["{", "}", "[", "]", ":", ",", " ", "\n", '"', '"a"', '"b\\"', "\\", "1", "-", "0", "01", ".5",
             "e5", "true", "null", "fals", '"Destination"', '"Message":', "{ [", "\xef", "😀",
             "\x00"]  # fmt: skip
json_ish = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)


@settings(max_examples=600)
@given(json_ish)
def test_any_json_ish_text_gives_a_value_or_invalid_json_and_nothing_else(text: str) -> None:
    try:
        parse_body(text.encode())
    except InvalidJson:
        pass
