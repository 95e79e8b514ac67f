"""Opt-out keywords and their replies, pure (ARCHITECTURE.md §2, "Two-way messaging": Opt-out).

An inbound message is a keyword only when its whole text is the word: surrounding spaces and punctuation are
ignored, letter case too ("  Stop! " is STOP), but "stop please" is a message like any other. The replies are
the account's own texts; these defaults are used until the account sets one ("" sends none), worded as the
CTIA Messaging Principles ask: say what happened and how to undo it.
"""

from __future__ import annotations

import enum

_PUNCTUATION = "\"'.,;:!?¿¡()[]{}<>«»“”‘’*#-_~"


class Keyword(enum.Enum):
    """What an inbound message's whole text asks for."""

    OPT_OUT = "opt_out"
    """STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT: the sender goes on the account's opt-out list."""
    OPT_IN = "opt_in"
    """START, UNSTOP, YES: the sender comes off it."""
    HELP = "help"
    """HELP: the account's help text is sent back."""


_WORDS = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"), Keyword.OPT_OUT),
    **dict.fromkeys(("START", "UNSTOP", "YES"), Keyword.OPT_IN),
    "HELP": Keyword.HELP,
}


def keyword(body: str | None) -> Keyword | None:
    """The keyword the whole text is (any case, spaces and punctuation around ignored); None for any other."""
    if not body or len(body) > 64:
        return None
    return _WORDS.get(body.strip().strip(_PUNCTUATION).strip().upper())


def default_reply(kind: Keyword, account_name: str) -> str:
    """The reply an account sends until it sets its own text."""
    if kind is Keyword.OPT_OUT:
        return (
            f"You are unsubscribed from {account_name} and will receive no more messages. Reply START to resubscribe."
        )
    if kind is Keyword.OPT_IN:
        return f"You are subscribed to {account_name} again. Reply STOP to unsubscribe, HELP for help."
    return f"{account_name}: reply STOP to unsubscribe, START to subscribe again."


def reply(kind: Keyword, account_name: str, texts: tuple[str | None, str | None, str | None]) -> str:
    """The text to send back (the account's, in the order opt-out, opt-in, help; None: the default); "" for none."""
    own = texts[(Keyword.OPT_OUT, Keyword.OPT_IN, Keyword.HELP).index(kind)]
    return default_reply(kind, account_name) if own is None else own
