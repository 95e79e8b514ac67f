"""The voice contract of the store: Call requests and their calls queued for dialers, the call record (CDR)
written with a call's end, cancels, and campaigns. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from switchboard.domain.clock import format_time
from switchboard.domain.statuses import CallReason, CallStatus
from switchboard.store.base import Store
from switchboard.store.records import (
    Account,
    CallEnd,
    CallProgress,
    CallRequestView,
    CallView,
    Campaign,
    CancelResult,
    ClaimedCall,
    ClaimedCallback,
    NewCall,
    NewCallRequest,
)
from tests.clock import FakeClock
from tests.contract.conftest import Backend, Factory

LEASE = 30_000
CALL_LEASE = 120_000


def e164(number: str) -> str | None:
    """As the API normalizes: "+1…" and "001…" are valid, anything else is not."""
    if number.startswith("+"):
        return number
    if number.startswith("00"):
        return "+" + number[2:]
    return None


class Caller:
    """Builds Call requests with fresh ids and stores them."""

    def __init__(self, store: Store, make: Factory) -> None:
        self.store = store
        self.make = make

    def request(
        self,
        account: Account,
        numbers: list[str] | None = None,
        *,
        callback: str = "yes",
        callback_url: str | None = None,
        reference_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[NewCallRequest, list[NewCall]]:
        numbers = ["+16175550100"] if numbers is None else numbers
        request_id = self.make.ids.block(len(numbers) + 1)
        request = NewCallRequest(
            id=request_id,
            account_id=account.id,
            reference_id=reference_id,
            sender="+16175550000",
            message="Your table is ready",
            locale="en-US",
            campaign_id=None,
            callback=callback,
            callback_url=callback_url,
            ring_timeout=25,
            destination_count=len(numbers),
            created_at=self.make.clock.now_ms(),
            idempotency_key=idempotency_key,
        )
        return request, [NewCall(n, e164(n), str(uuid.uuid4())) for n in numbers]

    async def accept(self, account: Account, numbers: list[str] | None = None, **kw: object) -> int:
        return await self.store.accept_calls(*self.request(account, numbers, **kw))  # type: ignore[arg-type]

    async def view(self, account: Account, request_id: int) -> CallRequestView:
        view = await self.store.get_call_request(account.id, request_id)
        assert view is not None
        return view

    async def call(self, account: Account, request_id: int, position: int = 0) -> CallView:
        return (await self.view(account, request_id)).calls[position]

    async def claim(self, now: int, limit: int = 100) -> list[ClaimedCall]:
        return await self.store.claim_calls(now=now, limit=limit, lease_ms=LEASE)

    async def records(self, now: int) -> list[ClaimedCallback]:
        return await self.store.claim_callbacks(now=now, limit=100, lease_ms=LEASE)


@pytest.fixture
def calls(store: Store, make: Factory) -> Caller:
    return Caller(store, make)


def record(
    call: CallView | ClaimedCall, request_id: int, status: str, reason: str, *, call_time: int | None = None,
    answer_time: int | None = None, duration: str = "0", mobile_no: str = "+16175550100", reference_id: str = "",
) -> str:  # fmt: skip
    """The exact CDR body the contract promises."""
    return msgspec.json.encode(
        {
            "GUID": call.guid,
            "MobileNo": mobile_no,
            "Status": status,
            "Calltime": format_time(call_time),
            "AnswerTime": format_time(answer_time),
            "Duration": duration,
            "Reason": reason,
            "ID": str(request_id),
            "ReferenceID": reference_id,
        }
    ).decode()


def dialing(c: ClaimedCall, at: int, *, attempt: int | None = None) -> CallProgress:
    return CallProgress(
        c.id, c.attempt if attempt is None else attempt, CallStatus.DIALING, at, "trunk-a", at + CALL_LEASE
    )


def answered(c: ClaimedCall, at: int) -> CallProgress:
    return CallProgress(c.id, c.attempt, CallStatus.IN_PROGRESS, at, "trunk-a", at + CALL_LEASE)


# accept


async def test_accept_queues_one_call_per_destination(calls: Caller, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    request, new = calls.request(account, ["0016175550100", "+16175550101"], reference_id="order-7")
    assert await calls.store.accept_calls(request, new) == request.id
    view = await calls.view(account, request.id)
    assert (view.reference_id, view.sender, view.message, view.locale, view.campaign_id) == (
        "order-7", "+16175550000", "Your table is ready", "en-US", None,
    )  # fmt: skip
    assert [(c.id, c.position, c.guid, c.mobile_no) for c in view.calls] == [
        (request.id + 1, 0, new[0].guid, "0016175550100"),
        (request.id + 2, 1, new[1].guid, "+16175550101"),
    ]
    assert {(c.status, c.reason, c.call_time, c.end_time, c.duration) for c in view.calls} == {
        (CallStatus.RECEIVED, "", None, None, 0)
    }
    first, second = await calls.claim(clock.now_ms())
    assert (first.id, first.status, first.attempt, first.e164, first.mobile_no) == (
        request.id + 1, CallStatus.RECEIVED, 1, "+16175550100", "0016175550100",
    )  # fmt: skip
    assert (first.request_id, first.account_id, first.account_name, first.guid) == (
        request.id, account.id, account.name, new[0].guid,
    )  # fmt: skip
    assert (first.sender, first.message, first.locale, first.ring_timeout) == ("+16175550000", "Your table is ready",
                                                                               "en-US", 25)  # fmt: skip
    assert second.id == request.id + 2


async def test_queued_calls_wake_processes_watching_for_work(calls: Caller, make: Factory, backend: Backend) -> None:
    if backend.dialect != "postgresql":
        pytest.skip("one process: the embedded store's service wakes its dialer itself")
    account = await make.account()
    woken = asyncio.Event()
    await calls.store.watch_for_work(woken.set)
    await calls.accept(account, ["12"])  # nothing to dial: nobody is woken
    await asyncio.sleep(0.2)
    assert not woken.is_set()
    await calls.accept(account)
    await asyncio.wait_for(woken.wait(), timeout=5)


async def test_an_invalid_number_fails_at_once_with_its_record(calls: Caller, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    request_id = await calls.accept(account, ["12", "+16175550100"], callback="url",
                                    callback_url="https://hooks.example/cdr", reference_id="r-1")  # fmt: skip
    bad, good = (await calls.view(account, request_id)).calls
    assert (bad.status, bad.reason, bad.call_time, bad.answer_time) == (
        CallStatus.FAILED, CallReason.GENERAL_ERROR, None, None,
    )  # fmt: skip
    assert good.status is CallStatus.RECEIVED
    assert [c.id for c in await calls.claim(clock.now_ms())] == [good.id]  # the invalid one is never dialled
    [cdr] = await calls.records(clock.now_ms())
    assert (cdr.kind, cdr.subject_id, cdr.sequence, cdr.url, cdr.from_account) == (
        "voice", bad.id, 1, "https://hooks.example/cdr", False,
    )  # fmt: skip
    assert cdr.body == record(bad, request_id, "Failed", "General Error", mobile_no="12", reference_id="r-1")


async def test_records_go_to_the_account_voice_url_or_nowhere(calls: Caller, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    await calls.store.set_callback_url(account.id, "voice", "https://hooks.example/voice")
    await calls.store.set_callback_url(account.id, "sms", "https://hooks.example/sms")
    await calls.accept(account, ["12"], callback="no")
    assert await calls.store.pending_callbacks() == 0
    await calls.accept(account, ["12"], callback="yes")
    [cdr] = await calls.records(clock.now_ms())
    assert (cdr.kind, cdr.url, cdr.from_account) == ("voice", "https://hooks.example/voice", True)


async def test_an_idempotency_key_answers_with_the_earlier_request(calls: Caller, make: Factory) -> None:
    account, other = await make.account(), await make.account()
    first = await calls.accept(account, ["+16175550100"], idempotency_key="k-1")
    again, new = calls.request(account, ["+16175550100", "+16175550101"], idempotency_key="k-1")
    assert await calls.store.accept_calls(again, new) == first
    assert await calls.store.get_call_request(account.id, again.id) is None
    assert len((await calls.view(account, first)).calls) == 1
    theirs = await calls.accept(other, idempotency_key="k-1")  # keys are per account
    assert theirs != first and await calls.store.get_call_request(other.id, theirs) is not None


async def test_another_accounts_request_is_not_found(calls: Caller, make: Factory, clock: FakeClock) -> None:
    account, other = await make.account(), await make.account()
    older = await calls.accept(account, reference_id="same")
    clock.advance(ms=5)
    newer = await calls.accept(account, reference_id="same")
    assert await calls.store.get_call_request(other.id, older) is None
    assert await calls.store.find_call_request_by_reference(other.id, "same") is None
    found = await calls.store.find_call_request_by_reference(account.id, "same")
    assert found is not None and found.id == newer
    assert await calls.store.find_call_request_by_reference(account.id, "none") is None
    assert await calls.store.get_call_request(account.id, older + 12345) is None


# the dialer's queue


async def test_a_claimed_call_is_not_handed_out_again(calls: Caller, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    await calls.accept(account, ["+16175550100", "+16175550101"])
    [first] = await calls.claim(clock.now_ms(), limit=1)
    [second] = await calls.claim(clock.now_ms())
    assert second.id == first.id + 1
    assert await calls.claim(clock.advance(ms=LEASE - 1)) == []
    # A queued call whose dialer died before dialling it is simply due again.
    again = await calls.claim(clock.advance(ms=1))
    assert [(c.id, c.status, c.attempt) for c in again] == [
        (first.id, CallStatus.RECEIVED, 2), (second.id, CallStatus.RECEIVED, 2),
    ]  # fmt: skip


async def test_dialers_claiming_at_once_never_share_a_call(calls: Caller, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    await calls.accept(account, [f"+1617555{n:04d}" for n in range(20)])
    batches = await asyncio.gather(*(calls.claim(clock.now_ms(), limit=5) for _ in range(4)))
    claimed = [c.id for batch in batches for c in batch]
    assert len(claimed) == len(set(claimed)) == 20


async def test_progress_records_dialing_and_answer(calls: Caller, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    request_id = await calls.accept(account)
    [c] = await calls.claim(clock.now_ms())
    dialed_at = clock.advance(ms=200)
    assert await calls.store.progress_calls([dialing(c, dialed_at)]) == [c.id]
    view = await calls.call(account, request_id)
    assert (view.status, view.call_time, view.trunk, view.answer_time) == (
        CallStatus.DIALING, dialed_at, "trunk-a", None,
    )  # fmt: skip
    # Its lease is now the progress's: not due before lease_until, although the claim's lease ran out.
    assert await calls.claim(clock.advance(ms=LEASE)) == []
    answered_at = clock.advance(ms=3_000)
    assert await calls.store.progress_calls([answered(c, answered_at)]) == [c.id]
    view = await calls.call(account, request_id)
    assert (view.status, view.call_time, view.answer_time) == (CallStatus.IN_PROGRESS, dialed_at, answered_at)
    # Backwards, or from a superseded claim: ignored.
    assert (
        await calls.store.progress_calls([dialing(c, clock.advance(ms=1)), dialing(c, clock.now_ms(), attempt=0)]) == []
    )
    assert (await calls.call(account, request_id)).status is CallStatus.IN_PROGRESS
    assert await calls.claim(answered_at + CALL_LEASE - 1) == []
    [abandoned] = await calls.claim(answered_at + CALL_LEASE)
    assert (abandoned.id, abandoned.status, abandoned.attempt) == (c.id, CallStatus.IN_PROGRESS, c.attempt + 1)


async def test_an_abandoned_call_is_ended_by_its_next_claim_only(
    calls: Caller, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    request_id = await calls.accept(account)
    [c] = await calls.claim(clock.now_ms())
    dialed_at = clock.advance(ms=100)
    await calls.store.progress_calls([dialing(c, dialed_at)])
    [again] = await calls.claim(clock.advance(ms=CALL_LEASE))
    assert (again.status, again.attempt) == (CallStatus.DIALING, c.attempt + 1)
    # The first dialer's late progress and end belong to a superseded claim.
    assert await calls.store.progress_calls([answered(c, clock.now_ms())]) == []
    await calls.store.end_calls([CallEnd(c.id, c.attempt, CallStatus.ANSWERED, CallReason.NA, clock.now_ms())])
    assert (await calls.call(account, request_id)).status is CallStatus.DIALING
    assert await calls.records(clock.now_ms()) == []
    end = CallEnd(again.id, again.attempt, CallStatus.FAILED, CallReason.GENERAL_ERROR, clock.now_ms(),
                  detail="dialer stopped")  # fmt: skip
    await calls.store.end_calls([end])
    view = await calls.call(account, request_id)
    assert (view.status, view.reason, view.detail, view.call_time, view.end_time) == (
        CallStatus.FAILED, CallReason.GENERAL_ERROR, "dialer stopped", dialed_at, clock.now_ms(),
    )  # fmt: skip
    [cdr] = await calls.records(clock.now_ms())
    assert cdr.body == record(c, request_id, "Failed", "General Error", call_time=dialed_at)


async def test_an_end_writes_the_call_and_its_record_once(calls: Caller, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    request_id = await calls.accept(account, reference_id="ref-9")
    [c] = await calls.claim(clock.now_ms())
    dialed_at = clock.advance(ms=100)
    await calls.store.progress_calls([dialing(c, dialed_at)])
    answered_at = clock.advance(ms=4_000)
    await calls.store.progress_calls([answered(c, answered_at)])
    ended_at = clock.advance(ms=10_900)  # 10.9 s answered: "10" whole seconds
    end = CallEnd(c.id, c.attempt, CallStatus.ANSWERED, CallReason.CALLER_HANG_UP, ended_at, detail="BYE from callee")
    await calls.store.end_calls([end])
    view = await calls.call(account, request_id)
    assert (view.status, view.reason, view.call_time, view.answer_time, view.end_time, view.duration) == (
        CallStatus.ANSWERED, CallReason.CALLER_HANG_UP, dialed_at, answered_at, ended_at, 10,
    )  # fmt: skip
    assert (view.trunk, view.detail) == ("trunk-a", "BYE from callee")
    [cdr] = await calls.records(ended_at)  # due at once
    assert (cdr.kind, cdr.subject_id, cdr.sequence, cdr.url) == ("voice", c.id, 1, None)
    assert cdr.body == record(c, request_id, "Answered", "CallerHangUp", call_time=dialed_at, answer_time=answered_at,
                              duration="10", reference_id="ref-9")  # fmt: skip
    # A second end, from this claim or any other, changes nothing and writes no second record.
    await calls.store.end_calls([end._replace(status=CallStatus.FAILED, reason=CallReason.GENERAL_ERROR)])
    assert (await calls.call(account, request_id)).status is CallStatus.ANSWERED
    assert await calls.store.pending_callbacks() == 1
    # Final: never handed to a dialer again.
    assert await calls.claim(clock.advance(ms=10 * CALL_LEASE)) == []


async def test_an_end_carries_the_times_the_dialer_knows(calls: Caller, make: Factory, clock: FakeClock) -> None:
    account = await make.account()
    request_id = await calls.accept(account, ["+16175550100", "+16175550101"], callback="no")
    now = clock.now_ms()
    first, second = await calls.claim(now)
    await calls.store.end_calls(
        [CallEnd(first.id, first.attempt, CallStatus.BUSY, CallReason.NA, now + 900, call_time=now + 100,
                 trunk="trunk-b", detail="SIP 486 Busy Here"),
         CallEnd(second.id, second.attempt, CallStatus.FAILED, CallReason.GENERAL_ERROR, now + 5,
                 detail="no route"),
         CallEnd(first.id, first.attempt, CallStatus.NO_ANSWER, CallReason.TIMEOUT, now + 999)]
    )  # fmt: skip
    busy, failed = (await calls.view(account, request_id)).calls
    assert (busy.status, busy.reason, busy.call_time, busy.end_time, busy.duration, busy.trunk, busy.detail) == (
        CallStatus.BUSY, CallReason.NA, clock.now_ms() + 100, clock.now_ms() + 900, 0, "trunk-b", "SIP 486 Busy Here",
    )  # fmt: skip
    assert (failed.status, failed.call_time, failed.trunk, failed.detail) == (CallStatus.FAILED, None, None, "no route")
    assert await calls.store.pending_callbacks() == 0  # the request asked for no records


# cancel


async def test_cancel_ends_queued_calls_and_asks_dialers_to_stop_the_others(
    calls: Caller, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    request_id = await calls.accept(account, ["+16175550100", "+16175550101", "+16175550102"])
    done, under_way = await calls.claim(clock.now_ms(), limit=2)
    await calls.store.end_calls([CallEnd(done.id, done.attempt, CallStatus.BUSY, CallReason.NA, clock.now_ms())])
    await calls.store.progress_calls([dialing(under_way, clock.now_ms())])
    [busy_cdr] = await calls.records(clock.now_ms())
    assert await calls.store.cancels_requested([done.id, under_way.id]) == []

    result = await calls.store.cancel_calls(account.id, request_id, now=clock.advance(ms=50))
    assert result == CancelResult(ended=1, stopping=1, finished=1)
    busy, dialled, queued = (await calls.view(account, request_id)).calls
    assert (busy.status, busy.reason) == (CallStatus.BUSY, CallReason.NA)
    assert (dialled.status, dialled.reason) == (CallStatus.DIALING, "")
    assert (queued.status, queued.reason, queued.end_time) == (CallStatus.FAILED, CallReason.CANCEL, clock.now_ms())
    [cancel_cdr] = await calls.records(clock.now_ms())
    assert cancel_cdr.id != busy_cdr.id and cancel_cdr.subject_id == queued.id
    assert cancel_cdr.body == record(queued, request_id, "Failed", "Cancel", mobile_no="+16175550102")
    assert await calls.claim(clock.now_ms()) == []  # the queued call is never dialled
    # The call under way is reported to its dialer (the queued one too, in case a dialer held it already).
    assert await calls.store.cancels_requested([done.id, under_way.id, queued.id]) == [under_way.id, queued.id]
    await calls.store.end_calls(
        [CallEnd(under_way.id, under_way.attempt, CallStatus.FAILED, CallReason.CANCEL, clock.advance(ms=20))]
    )
    assert (await calls.call(account, request_id, 1)).reason == CallReason.CANCEL
    assert len(await calls.records(clock.now_ms())) == 1
    assert await calls.store.cancel_calls(account.id, request_id, now=clock.now_ms()) == CancelResult(0, 0, 3)


async def test_a_call_cancelled_while_its_dialer_held_it_is_not_dialled(
    calls: Caller, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    request_id = await calls.accept(account)
    [held] = await calls.claim(clock.now_ms())  # claimed, waiting for a free channel on its trunk
    assert await calls.store.cancel_calls(account.id, request_id, now=clock.now_ms()) == CancelResult(1, 0, 0)
    assert await calls.store.cancels_requested([held.id]) == [held.id]
    assert await calls.store.progress_calls([dialing(held, clock.advance(ms=10))]) == []  # it tells the dialer
    view = await calls.call(account, request_id)
    assert (view.status, view.reason, view.call_time) == (CallStatus.FAILED, CallReason.CANCEL, None)
    await calls.store.end_calls([CallEnd(held.id, held.attempt, CallStatus.FAILED, CallReason.CANCEL, clock.now_ms())])
    assert await calls.store.pending_callbacks() == 1


async def test_cancel_of_one_number_leaves_the_others(calls: Caller, make: Factory, clock: FakeClock) -> None:
    account, other = await make.account(), await make.account()
    request_id = await calls.accept(account, ["0016175550100", "+16175550101"], callback="no")
    result = await calls.store.cancel_calls(account.id, request_id, mobile_no="0016175550100", now=clock.now_ms())
    assert result == CancelResult(ended=1, stopping=0, finished=0)
    [left] = await calls.claim(clock.now_ms())
    assert left.mobile_no == "+16175550101"
    # The number in E.164 finds a call written another way.
    assert await calls.store.cancel_calls(account.id, request_id, mobile_no="+16175550100", now=clock.now_ms()) == (
        CancelResult(0, 0, 1)
    )
    assert await calls.store.cancel_calls(account.id, request_id, mobile_no="+4930123", now=clock.now_ms()) == (
        CancelResult(0, 0, 0)
    )
    assert await calls.store.cancel_calls(other.id, request_id, now=clock.now_ms()) is None
    assert await calls.store.cancel_calls(account.id, request_id + 999, now=clock.now_ms()) is None
    assert (await calls.call(account, request_id, 1)).status is CallStatus.RECEIVED


# campaigns


def campaign(account: Account, clock: FakeClock, name: str) -> Campaign:
    return Campaign(
        id=str(uuid.uuid4()), account_id=account.id, name=name, source="tts", text="Hello", locale="en-GB",
        duration_ms=1_250, created_at=clock.now_ms(),
    )  # fmt: skip


async def test_campaigns_are_the_accounts_own_until_deleted(store: Store, make: Factory, clock: FakeClock) -> None:
    account, other = await make.account(), await make.account()
    older = campaign(account, clock, "older")
    pcm = bytes(range(256)) * 40
    await store.create_campaign(older, pcm)
    clock.advance(ms=10)
    newer = campaign(account, clock, "newer")
    await store.create_campaign(newer, b"\x00\x01")
    assert await store.get_campaign(account.id, older.id) == older
    assert await store.list_campaigns(account.id) == [newer, older]
    assert await store.get_campaign(other.id, older.id) is None
    assert await store.list_campaigns(other.id) == []
    assert await store.delete_campaign(other.id, older.id, now=clock.now_ms()) is False

    assert await store.delete_campaign(account.id, older.id, now=clock.now_ms()) is True
    assert await store.delete_campaign(account.id, older.id, now=clock.now_ms()) is False
    assert await store.get_campaign(account.id, older.id) is None
    assert await store.list_campaigns(account.id) == [newer]
    assert await store.campaign_audio(older.id) == pcm  # queued calls may still play it
    assert await store.campaign_audio(str(uuid.uuid4())) is None
