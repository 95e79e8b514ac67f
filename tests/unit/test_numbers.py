from __future__ import annotations

import random
import re

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from switchboard.domain import numbers
from switchboard.domain.numbers import country_of, normalize

E164 = re.compile(r"\+[1-9][0-9]{1,14}")


@pytest.mark.parametrize(
    "raw",
    [
        "+16175551212",
        "0016175551212",
        "16175551212",
        "+1 617 555 1212",
        "+1 (617) 555-1212",
        "001-617-555-1212",
        "1.617.555.1212",
        "(+1) 617.555.1212",
        "00 1 617 555 1212",
        " +16175551212 ",
        "+1\t617\u00a0555 1212",
    ],
)
def test_the_vendors_three_forms_and_their_formatted_variants_mean_the_same_number(raw: str) -> None:
    assert normalize(raw) == "+16175551212"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "+",
        "00",
        "   ",
        "abc",
        "+1617555121a",
        "1-800-FLOWERS",
        "+1 617 555 1212 ext 5",
        "++16175551212",
        "+0016175551212",  # '+' and '00' together
        "1+6175551212",  # a '+' that is not in front
        "0 617 555 1212",  # a national number: no country code
        "06175551212",
        "+1617555121",  # one digit short for +1
        "+161755512123",  # one digit long for +1
        "+1234567890123456",  # 16 digits: over E.164's 15
        "+1 617/555-1212",
        "+١٦١٧٥٥٥١٢١٢",  # Arabic-Indic digits
        "+1617555121²",
        "+999123456789",  # an unassigned country code
    ],
)
def test_anything_else_is_not_a_number(raw: str) -> None:
    assert normalize(raw) is None


@pytest.mark.parametrize("nn", range(100))
def test_the_reserved_simulator_numbers_are_valid(nn: int) -> None:
    assert normalize(f"+150055500{nn:02d}") == f"+150055500{nn:02d}"
    assert normalize(f"00150055500{nn:02d}") == f"+150055500{nn:02d}"


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("00919833111380", "+919833111380"),  # the vendor's voice sample sender
        ("+44 7911 123456", "+447911123456"),
        ("+49 30 123456", "+4930123456"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("+55 11 96123 4567", "+5511961234567"),
        ("+61 412 345 678", "+61412345678"),
        ("+234 803 123 4567", "+2348031234567"),
        ("+1 268 464 1234", "+12684641234"),  # Antigua, a region inside +1
        ("+7 701 234 5678", "+77012345678"),  # Kazakhstan, inside +7
        ("+44 1624 756789", "+441624756789"),  # Isle of Man, inside +44
        ("+800 1234 5678", "+80012345678"),  # non-geographic: international freephone
        ("+882 1 3123 4567", None),  # a made-up +882 network number
    ],
)
def test_numbers_across_countries_and_shared_codes(raw: str, e164: str | None) -> None:
    assert normalize(raw) == e164


def test_calling_codes_are_prefix_free_so_the_first_match_is_the_longest() -> None:
    codes = [str(c) for c in phonenumbers.COUNTRY_CODE_TO_REGION_CODE]
    assert not [(a, b) for a in codes for b in codes if a != b and b.startswith(a)]
    assert all(1 <= len(c) <= 3 for c in codes)


def test_answers_are_cached_by_the_cleaned_digits() -> None:
    numbers._e164.cache_clear()
    assert normalize("+1 (617) 555-0199") == "+16175550199"
    assert normalize("0016175550199") == "+16175550199"
    info = numbers._e164.cache_info()
    assert (info.hits, info.misses) == (1, 1)


def test_preload_builds_every_calling_code_and_changes_no_answer() -> None:
    before = normalize("+919833111380")
    numbers.preload()
    assert set(numbers._validators) == {str(c) for c in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
    assert normalize("+919833111380") == before == "+919833111380"


_TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
]


def _examples() -> list[str]:
    found: list[phonenumbers.PhoneNumber] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        found += [n for t in _TYPES if (n := phonenumbers.example_number_for_type(region, t)) is not None]
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        if (n := phonenumbers.example_number_for_non_geo_entity(code)) is not None:
            found.append(n)
    return [phonenumbers.format_number(n, PhoneNumberFormat.E164)[1:] for n in found]


def _mutate(rng: random.Random, digits: str) -> str:
    """Keep it, or change its last 1-4 digits, change, drop or insert one digit anywhere."""
    any_digit = "0123456789"
    match rng.randrange(5):
        case 0:
            return digits
        case 1:
            n = rng.randint(1, 4)
            return digits[:-n] + "".join(rng.choice(any_digit) for _ in range(n))
        case 2:
            i = rng.randrange(len(digits))
            return digits[:i] + rng.choice(any_digit) + digits[i + 1 :]
        case 3:
            i = rng.randrange(len(digits))
            return digits[:i] + digits[i + 1 :]
        case _:
            i = rng.randrange(len(digits) + 1)
            return digits[:i] + rng.choice(any_digit) + digits[i:]


def _phonenumbers_e164(digits: str) -> str | None:
    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, PhoneNumberFormat.E164))


def test_every_example_number_of_every_region_and_type_is_valid() -> None:
    examples = _examples()
    assert len(examples) > 1000
    assert [e for e in examples if normalize("+" + e) != "+" + e] == []


def test_agrees_with_phonenumbers_is_valid_number_on_mutated_numbers_of_every_region() -> None:
    rng = random.Random(20240501)
    examples = _examples()
    samples = [_mutate(rng, rng.choice(examples)) for _ in range(4000)]
    disagreements = []
    for digits in samples:
        ours, theirs = normalize("+" + digits), _phonenumbers_e164(digits)
        if ours != theirs:
            disagreements.append((digits, ours, theirs))
    # We never accept what phonenumbers refuses, nor write a number differently. We refuse only what
    # the module docstring says: over 15 digits, or a national prefix phonenumbers silently removes
    # (its E.164 form then differs from the digits given).
    assert [d for d in disagreements if d[1] is not None] == []
    assert [d for d in disagreements if len(d[0]) <= 15 and d[2] == "+" + d[0]] == []
    rate = len(disagreements) / len(samples)
    assert rate < 0.01, f"{rate:.2%} disagreements: {disagreements[:10]}"
    assert 0.3 < sum(1 for d in samples if normalize("+" + d)) / len(samples) < 0.8  # both kinds tested


@pytest.mark.parametrize(
    ("e164", "region"),
    [
        ("+16175551212", "US"),
        ("+919833111380", "IN"),
        ("+447400123456", "GB"),
        ("+447911123456", "GG"),  # Guernsey mobiles share +44 7911
        ("+12684641234", "AG"),
        ("+77012345678", "KZ"),
        ("+74951234567", "RU"),
        ("+80012345678", None),  # non-geographic
        ("+999123", None),
        ("not a number", None),
    ],
)
def test_country_of_gives_the_region_for_routing(e164: str, region: str | None) -> None:
    assert country_of(e164) == region


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_normalize_never_raises_and_answers_e164_or_none(raw: str) -> None:
    result = normalize(raw)
    assert result is None or E164.fullmatch(result)
    if result is not None:
        assert normalize(result) == result


@settings(max_examples=200)
@given(
    st.sampled_from(["+16175551212", "+919833111380", "+447911123456", "+15005550003", "+8613800138000"]),
    st.lists(st.tuples(st.integers(min_value=1, max_value=12), st.sampled_from(" -.()")), max_size=5),
    st.sampled_from(["+", "00", ""]),
)
def test_separators_anywhere_and_any_prefix_give_the_same_number(
    number: str, separators: list[tuple[int, str]], prefix: str
) -> None:
    digits = number[1:]
    for position, separator in separators:
        digits = digits[:position] + separator + digits[position:]
    assert normalize(prefix + digits) == number
