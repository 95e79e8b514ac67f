"""Two-way messaging, pure: how our numbers and keywords are written, and which account an inbound message
belongs to (ARCHITECTURE.md §2, "Two-way messaging").

A number is compared in E.164 when it is a valid international number, however it was written ("0016…",
"+1…", "1…" are one number); anything else (a short code, a number the metadata does not know) is compared as
written, without spaces and separators. A keyword is one word, compared in upper case, and an inbound message
names it with its first word, whatever the spacing, letter case or the punctuation around that word.
"""

from __future__ import annotations

from collections.abc import Mapping

from switchboard.domain import numbers

NO_KEYWORD = ""
"""The keyword of a number assigned as a whole: every message to it that no keyword claims."""

MAX_KEYWORD = 32
_SEPARATORS = str.maketrans("", "", " -.()\t\u00a0")
_PUNCTUATION = "\"'.,;:!?¿¡()[]{}<>«»“”‘’*#"


def number_key(raw: str) -> str:
    """The form a number is stored and compared in: E.164 when it is a valid international number, else as
    written without spaces and separators (a short code such as "12345")."""
    return numbers.normalize(raw) or raw.strip().translate(_SEPARATORS)


def keyword_key(word: str) -> str:
    """A keyword as stored and compared ("pizza", " Pizza! " → "PIZZA"); "" for none. Raises ValueError
    unless it is one word of letters and digits."""
    key = word.strip().strip(_PUNCTUATION).upper()
    if not key:
        return NO_KEYWORD
    if len(key) > MAX_KEYWORD or not key.isalnum():
        raise ValueError(f"a keyword is one word of at most {MAX_KEYWORD} letters or digits, not {word!r}")
    return key


def first_word(body: str | None) -> str:
    """The message's first word in the form keywords are compared in; "" when it has none."""
    if not body:
        return NO_KEYWORD
    words = body.split(None, 1)
    return words[0].strip(_PUNCTUATION).upper() if words else NO_KEYWORD


def owner(owners: Mapping[tuple[str, str], int], to: str, body: str | None) -> tuple[int | None, str]:
    """The account a message to `to` (a `number_key`) belongs to, and the keyword that routed it ("" when the
    number as a whole did): the (number, first word) assignment first, then the number's own; (None, "")
    when neither exists: the message goes to the operator's unrouted inbox."""
    word = first_word(body)
    if word:
        account = owners.get((to, word))
        if account is not None:
            return account, word
    return owners.get((to, NO_KEYWORD)), NO_KEYWORD
