"""Opt-out keywords (domain/optout.py), the Send path's cached view of an account's list and the opt-out check
of a Send (switchboard/optouts.py, sms/service.py), over an in-memory store and the fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switchboard.domain.catalogue import DestinationError
from switchboard.domain.ids import IdGenerator
from switchboard.domain.optout import Keyword, default_reply, keyword, reply
from switchboard.domain.sms_request import SendRequest, validate_send
from switchboard.optouts import CACHE_SECONDS, CACHED_NUMBERS, OptOutList
from switchboard.sms.service import INVALID_NUMBER, SmsService
from switchboard.store.records import Account, NewDestination, NewErrorLog, NewMessage, OptOut
from tests.clock import FakeClock

ACCOUNT = Account(1, "acme", None, None, "whsec", 0)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("STOP", Keyword.OPT_OUT),
        ("  stop  ", Keyword.OPT_OUT),
        ("Stop!", Keyword.OPT_OUT),
        ("\t'sToP.'\n", Keyword.OPT_OUT),
        ("stopall", Keyword.OPT_OUT),
        ("Unsubscribe", Keyword.OPT_OUT),
        ("cancel", Keyword.OPT_OUT),
        ("END", Keyword.OPT_OUT),
        ("quit!!", Keyword.OPT_OUT),
        ("start", Keyword.OPT_IN),
        (" UNSTOP ", Keyword.OPT_IN),
        ("Yes.", Keyword.OPT_IN),
        ("help?", Keyword.HELP),
        ("  HeLp ", Keyword.HELP),
    ],
)
def test_a_whole_text_that_is_a_keyword_in_any_case_spacing_and_punctuation_is_one(body: str, kind: Keyword) -> None:
    assert keyword(body) is kind


@pytest.mark.parametrize(
    "body", ["stop please", "please stop", "STOP STOP", "stopp", "st op", "", None, "   ", "!!!", "yes " + "x" * 80]
)
def test_a_text_that_is_more_or_other_than_a_keyword_is_not_one(body: str | None) -> None:
    assert keyword(body) is None


def test_replies_are_the_accounts_own_text_or_the_default_and_empty_sends_none() -> None:
    assert "unsubscribed from acme" in default_reply(Keyword.OPT_OUT, "acme")
    assert "START" in default_reply(Keyword.OPT_OUT, "acme")
    assert reply(Keyword.OPT_OUT, "acme", (None, None, None)) == default_reply(Keyword.OPT_OUT, "acme")
    assert reply(Keyword.HELP, "acme", ("bye", "hi", "Call 555")) == "Call 555"
    assert reply(Keyword.OPT_IN, "acme", (None, "", None)) == ""


class OptOutStore:
    """The opt-out half of the store, in memory; counts the reads."""

    def __init__(self) -> None:
        self.lists: dict[int, set[str]] = {}
        self.reads = 0
        self.accepted: list[tuple[NewMessage, list[NewDestination], list[NewErrorLog]]] = []

    async def list_opt_outs(self, account_id: int, *, limit: int, after: str | None = None) -> list[OptOut]:
        self.reads += 1
        numbers = sorted(n for n in self.lists.get(account_id, set()) if after is None or n > after)
        return [OptOut(n, "api", 0) for n in numbers[:limit]]

    async def opted_out_among(self, account_id: int, numbers: list[str]) -> set[str]:
        self.reads += 1
        return self.lists.get(account_id, set()) & set(numbers)

    async def accept(self, message: NewMessage, destinations: list[NewDestination], errors: list[NewErrorLog]) -> int:
        self.accepted.append((message, destinations, errors))
        return message.id


async def test_an_accounts_list_is_read_once_per_cache_period_and_forgotten_on_a_change() -> None:
    clock, store = FakeClock(), OptOutStore()
    cache = OptOutList(store=store, clock=clock)  # type: ignore[arg-type]
    for _ in range(50):
        assert await cache.among(ACCOUNT.id, ["+16175551212"]) == set()
    assert store.reads == 1  # an empty list costs no read per Send
    store.lists[ACCOUNT.id] = {"+16175551212"}
    assert await cache.among(ACCOUNT.id, ["+16175551212"]) == set()  # another process's change: not yet
    clock.advance(seconds=CACHE_SECONDS)
    assert await cache.among(ACCOUNT.id, ["+16175551212", "+16175551213"]) == {"+16175551212"}
    store.lists[ACCOUNT.id] = set()
    cache.forget(ACCOUNT.id)  # this process's change: at once
    assert await cache.among(ACCOUNT.id, ["+16175551212"]) == set()
    assert store.reads == 3


async def test_a_list_too_long_to_cache_is_asked_about_per_send() -> None:
    clock, store = FakeClock(), OptOutStore()
    store.lists[ACCOUNT.id] = {f"+1617555{n:04d}" for n in range(CACHED_NUMBERS + 1)}
    cache = OptOutList(store=store, clock=clock)  # type: ignore[arg-type]
    assert await cache.among(ACCOUNT.id, ["+16175550007", "+12125550100"]) == {"+16175550007"}
    assert await cache.among(ACCOUNT.id, ["+16175550008"]) == {"+16175550008"}
    assert store.reads == 3


def request(numbers: list[str]) -> SendRequest:
    r = validate_send({"Destination": numbers, "Message": "hi", "Sender": "OM"}, now=datetime.now(UTC))
    assert isinstance(r, SendRequest)
    return r


async def test_an_opted_out_destination_in_any_written_form_fails_with_its_error_and_the_request_succeeds() -> None:
    clock, store = FakeClock(), OptOutStore()
    store.lists[ACCOUNT.id] = {"+16175551212"}
    cache = OptOutList(store=store, clock=clock)  # type: ignore[arg-type]
    sms = SmsService(
        store=store,  # type: ignore[arg-type]
        ids=IdGenerator(node=1, clock_ms=clock.now_ms),
        clock=clock,
        opted_out=cache.among,
    )
    numbers = ["0016175551212", "+16175551213", "nope", "+1 (617) 555-1212"]
    accepted = await sms.send(ACCOUNT, request(numbers))
    message, _, errors = store.accepted[-1]
    assert message.id == accepted.message_id
    by_position = {e.destination_id - message.id - 1: e for e in errors}
    assert {p: (e.code, e.text) for p, e in by_position.items()} == {
        0: ("opted_out", "Opted out"),
        2: ("invalid_number", INVALID_NUMBER),
        3: (DestinationError.OPTED_OUT.code, DestinationError.OPTED_OUT.text),
    }
    assert [e.destination_id for e in errors] == sorted(e.destination_id for e in errors)
    await sms.send(ACCOUNT, request(["+16175551212"]), exempt=True)  # the reply confirming the STOP
    assert store.accepted[-1][2] == []
