"""How numbers and keywords are compared, and which account an inbound message belongs to (domain/inbound.py)."""

from __future__ import annotations

import pytest

from switchboard.domain.inbound import first_word, keyword_key, number_key, owner


@pytest.mark.parametrize("written", ["+16175550100", "0016175550100", "16175550100", "+1 (617) 555-0100"])
def test_a_number_written_in_any_form_is_one_number(written: str) -> None:
    assert number_key(written) == "+16175550100"


@pytest.mark.parametrize(("written", "key"), [("12345", "12345"), (" 12 345 ", "12345"), ("ACME", "ACME")])
def test_a_short_code_or_unknown_number_is_compared_as_written(written: str, key: str) -> None:
    assert number_key(written) == key


@pytest.mark.parametrize("word", ["pizza", "PIZZA", " Pizza ", "pizza!", "«Pizza»"])
def test_a_keyword_is_one_word_in_upper_case(word: str) -> None:
    assert keyword_key(word) == "PIZZA"


@pytest.mark.parametrize("word", ["two words", "piz-za", "x" * 33])
def test_a_keyword_that_is_not_one_word_is_refused(word: str) -> None:
    with pytest.raises(ValueError, match="one word"):
        keyword_key(word)


@pytest.mark.parametrize(
    ("body", "word"),
    [("  pIZZa   large", "PIZZA"), ("\tPizza,now", "PIZZA,NOW"), ("Pizza! yes", "PIZZA"), ("", ""), (None, ""),
     ("   ", ""), ("!!!", "")],
)  # fmt: skip
def test_the_first_word_is_read_whatever_the_spacing_case_and_punctuation(body: str | None, word: str) -> None:
    assert first_word(body) == word


def test_a_keyword_assignment_wins_over_the_number_and_the_rest_goes_to_the_number() -> None:
    owners = {("+16175550100", ""): 1, ("+16175550100", "PIZZA"): 2}
    assert owner(owners, "+16175550100", "pizza large") == (2, "PIZZA")
    assert owner(owners, "+16175550100", "pizzas") == (1, "")
    assert owner(owners, "+16175550199", "pizza") == (None, "")
    assert owner({("12345", "TAXI"): 3}, "12345", "hello") == (None, "")
