"""The dispatcher over each store, with a fake clock and a fake transport: the retry schedule, jitter,
Retry-After, 410, order per destination, signatures, and a slow receiver that must not hold up others.
Three days of retries run in well under a second."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from switchboard.callbacks import RETRY_SCHEDULE, signing
from switchboard.callbacks.dispatcher import Dispatcher, DispatcherSettings
from switchboard.callbacks.transport import Response
from switchboard.domain.statuses import SmsStatus
from switchboard.errors import DeliveryFailed, InvalidSignature, NotSent
from switchboard.store.base import Store
from switchboard.store.records import Account, CallbackResult, CallbackState, Receipt
from tests.clock import FakeClock, held
from tests.contract.conftest import Factory

URL = "https://hooks.example.com/sms"


@dataclass
class Post:
    at: int
    url: str
    body: dict[str, object]
    raw: bytes
    headers: dict[str, str]


@dataclass
class FakeTransport:
    """Answers each post with what `answer(post number, url)` says: a Response or a DeliveryFailed."""

    clock: FakeClock
    answer: Callable[[int, str], Response | DeliveryFailed] = lambda n, url: Response(200, None)
    posts: list[Post] = field(default_factory=list)
    closed: bool = False

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        self.posts.append(Post(self.clock.now_ms(), url, msgspec.json.decode(body), body, dict(headers)))
        answer = self.answer(len(self.posts), url)
        if isinstance(answer, DeliveryFailed):
            raise answer
        return answer

    async def close(self) -> None:
        self.closed = True


async def stop(d: Dispatcher, clock: FakeClock) -> None:
    """Stop the dispatcher, letting fake time pass for the attempts it waits for."""
    stopping = asyncio.ensure_future(d.stop())
    await clock.run_until(stopping.done, within=60)
    await stopping


async def with_url(store: Store, account: Account, url: str | None = URL) -> Account:
    await store.set_callback_url(account.id, "sms", url)
    got = await store.get_account(account.id)
    assert got is not None
    return got


def dispatcher(
    store: Store, transport: FakeTransport, clock: FakeClock, jitter: float = 0.5, **kw: object
) -> Dispatcher:
    settings = DispatcherSettings(**kw)  # type: ignore[arg-type]
    # The clock waits for the store: time does not move while a claim or a write is in progress.
    return Dispatcher(store=held(store, clock), transport=transport, clock=clock, settings=settings,
                      random_fraction=lambda: jitter)  # fmt: skip


async def run_until_done(d: Dispatcher, store: Store, clock: FakeClock, account: Account, limit: int = 50) -> None:
    """Run the dispatcher, jumping the clock to each next due time, until nothing is pending."""
    for _ in range(limit):
        await d.run_once()
        pending = await store.list_callbacks(account.id, state=CallbackState.PENDING, limit=100)
        due = [v.due_at for v in pending if v.due_at is not None]
        if not due:
            return
        clock.advance(ms=max(0, min(due) - clock.now_ms()))
    raise AssertionError("still pending")


@pytest.mark.parametrize(("jitter", "factor"), [(0.0, 0.9), (0.5, 1.0), (1.0, 1.1)])
async def test_a_failing_receiver_is_retried_on_the_schedule_with_jitter_then_given_up(
    store: Store, make: Factory, clock: FakeClock, jitter: float, factor: float
) -> None:
    started = time.perf_counter()
    account = await with_url(store, await make.account())
    await make.sent(account, callback="yes")
    transport = FakeTransport(clock, lambda n, url: Response(500, None))
    d = dispatcher(store, transport, clock, jitter=jitter)
    await run_until_done(d, store, clock, account)

    times = [p.at for p in transport.posts]
    assert len(times) == len(RETRY_SCHEDULE) + 1 == 10
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == [round(step * 1000 * factor) for step in RETRY_SCHEDULE]
    assert (times[-1] - times[0]) / 86_400_000 > 2.5  # about three days of retries
    [view] = await store.list_callbacks(account.id, state=None, limit=10)
    assert view.state is CallbackState.FAILED
    assert view.last_error == "HTTP 500; gave up after 10"
    full = await store.get_callback(account.id, view.id)
    assert full is not None and [a.status_code for a in full.history] == [500] * 10
    assert len({p.headers["webhook-id"] for p in transport.posts}) == 1  # the same id on every attempt
    assert time.perf_counter() - started < 1.0


async def test_a_receiver_that_recovers_gets_the_callback_and_it_stops(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await with_url(store, await make.account())
    await make.sent(account, callback="yes")
    answers = [DeliveryFailed("cannot connect: refused"), Response(503, None), Response(302, None), Response(204, None)]
    transport = FakeTransport(clock, lambda n, url: answers[n - 1])
    await run_until_done(dispatcher(store, transport, clock), store, clock, account)
    [view] = await store.list_callbacks(account.id, state=None, limit=10)
    full = await store.get_callback(account.id, view.id)
    assert full is not None and full.state is CallbackState.DELIVERED
    assert [(a.status_code, a.error) for a in full.history] == [
        (None, "cannot connect: refused"),
        (503, "HTTP 503"),
        (302, "HTTP 302 (redirects are not followed)"),
        (204, None),
    ]


@pytest.mark.parametrize("retry_after", ["120", "Wed, 01 Jan 2031 00:02:00 GMT"])
async def test_a_longer_retry_after_replaces_the_schedule_step(
    store: Store, make: Factory, clock: FakeClock, retry_after: str
) -> None:
    # 2031-01-01 00:00:00 UTC: the date form asks for the same 120 s
    clock.advance(ms=1_924_992_000_000 - clock.now_ms())
    account = await with_url(store, await make.account())
    await make.sent(account, callback="yes")
    answers = [Response(429, retry_after), Response(200, None)]
    transport = FakeTransport(clock, lambda n, url: answers[n - 1])
    await run_until_done(dispatcher(store, transport, clock), store, clock, account)
    assert [p.at - transport.posts[0].at for p in transport.posts] == [0, 120_000]


async def test_410_gives_up_and_disables_the_account_url_until_it_is_set_again(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await with_url(store, await make.account())
    await make.sent(account, callback="yes")
    transport = FakeTransport(clock, lambda n, url: Response(410, None))
    d = dispatcher(store, transport, clock)
    await run_until_done(d, store, clock, account)
    assert len(transport.posts) == 1
    got = await store.get_account(account.id)
    assert got is not None and got.sms_callback_disabled is not None
    assert got.sms_callback_disabled.startswith("HTTP 410")

    await make.sent(account, callback="yes")  # not posted: the URL is disabled
    await run_until_done(d, store, clock, account)
    assert len(transport.posts) == 1
    [newest, _] = await store.list_callbacks(account.id, state=CallbackState.FAILED, limit=10)
    assert newest.last_error is not None and "disabled" in newest.last_error

    await with_url(store, account)  # set again: enabled; a replay now goes out
    transport.answer = lambda n, url: Response(200, None)
    assert await store.replay_callback(account.id, newest.id, now=clock.now_ms()) == "replayed"
    await run_until_done(d, store, clock, account)
    assert len(transport.posts) == 2


async def test_410_from_a_request_url_does_not_disable_the_account_url(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await with_url(store, await make.account())
    await make.sent(account, callback="url", callback_url="https://other.example.com/hook")
    transport = FakeTransport(clock, lambda n, url: Response(410, None))
    await run_until_done(dispatcher(store, transport, clock), store, clock, account)
    assert [p.url for p in transport.posts] == ["https://other.example.com/hook"]
    got = await store.get_account(account.id)
    assert got is not None and got.sms_callback_disabled is None


async def test_an_account_without_a_url_fails_its_callbacks_visibly(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await make.account()
    await make.sent(account, callback="yes")
    transport = FakeTransport(clock)
    await run_until_done(dispatcher(store, transport, clock), store, clock, account)
    assert transport.posts == []
    [view] = await store.list_callbacks(account.id, state=CallbackState.FAILED, limit=10)
    assert view.last_error == "the account has no SMS callback URL"


async def test_a_permanently_refused_url_is_not_retried(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await with_url(store, await make.account())
    await make.sent(account, callback="yes")
    transport = FakeTransport(clock, lambda n, url: DeliveryFailed("refused (scheme)", permanent=True))
    await run_until_done(dispatcher(store, transport, clock), store, clock, account)
    assert len(transport.posts) == 1
    [view] = await store.list_callbacks(account.id, state=CallbackState.FAILED, limit=10)
    assert view.last_error == "refused (scheme)"


async def test_callbacks_of_one_destination_go_out_in_sequence_order(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account = await with_url(store, await make.account())
    sent = await make.sent(account, callback="yes")
    await store.apply_receipts([Receipt(sent.carrier, sent.ref, SmsStatus.DELIVERED)], now=clock.now_ms())
    # The first attempt of the first event fails: the second event must wait for its retry to succeed.
    transport = FakeTransport(clock, lambda n, url: Response(500 if n == 1 else 200, None))
    await run_until_done(dispatcher(store, transport, clock), store, clock, account)
    assert [(p.body["Sequence"], p.body["Status"]) for p in transport.posts] == [
        (1, "Sent"),
        (1, "Sent"),
        (2, "Delivered"),
    ]


async def test_every_post_is_signed_so_that_the_standardwebhooks_package_verifies_it(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    clock.advance(ms=int(time.time() * 1000) - clock.now_ms())  # the package checks it against the real clock
    account = await with_url(store, await make.account())
    await make.sent(account, callback="yes")
    transport = FakeTransport(clock)
    await run_until_done(dispatcher(store, transport, clock), store, clock, account)
    [post] = transport.posts
    assert post.headers["Content-Type"] == "application/json"
    assert Webhook(account.webhook_secret).verify(post.raw, post.headers) == post.body
    mutated = bytes([post.raw[0] ^ 1]) + post.raw[1:]
    with pytest.raises(WebhookVerificationError):
        Webhook(account.webhook_secret).verify(mutated, post.headers)


async def test_after_a_rotation_both_secrets_verify_for_a_day_then_only_the_new_one(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    clock.advance(ms=int(time.time() * 1000) - clock.now_ms())
    account = await with_url(store, await make.account())
    new_secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    await store.rotate_secret(account.id, new_secret, now=clock.now_ms())
    await make.sent(account, callback="yes")
    transport = FakeTransport(clock)
    d = dispatcher(store, transport, clock)
    await run_until_done(d, store, clock, account)
    [post] = transport.posts
    assert len(post.headers["webhook-signature"].split()) == 2
    for secret in (account.webhook_secret, new_secret):
        Webhook(secret).verify(post.raw, post.headers)

    clock.advance(ms=24 * 3600 * 1000)
    await make.sent(account, callback="yes")
    await run_until_done(d, store, clock, account)
    late = transport.posts[-1]
    assert len(late.headers["webhook-signature"].split()) == 1
    # As of the (fake) time it was sent: the new secret verifies, the old one no longer does.
    sent_at = int(late.headers["webhook-timestamp"])
    signing.verify(secret=new_secret, headers=late.headers, body=late.raw, now=sent_at)
    with pytest.raises(InvalidSignature):
        signing.verify(secret=account.webhook_secret, headers=late.headers, body=late.raw, now=sent_at)


async def test_a_slow_receiver_does_not_hold_up_the_others(store: Store, make: Factory, clock: FakeClock) -> None:
    slow = await with_url(store, await make.account(), "https://slow.example.com/hook")
    fast = await with_url(store, await make.account(), "https://fast.example.com/hook")
    for _ in range(30):
        await make.sent(slow, callback="yes")
    for _ in range(10):
        await make.sent(fast, callback="yes")
    release = asyncio.Event()

    class Mixed(FakeTransport):
        async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
            if "slow" in url:
                await release.wait()
            return await super().post(url, body, headers)

    transport = Mixed(clock)
    d = dispatcher(store, transport, clock, max_in_flight=20, batch_size=10, connections_per_host=2, poll_interval=0.1)
    await d.start()
    try:
        # Deferred events come back a second or two later, while the slow host's attempts still hang.
        await clock.run_until(lambda: sum("fast" in p.url for p in transport.posts) == 10, within=30)
    finally:
        release.set()
        await stop(d, clock)
    assert transport.closed
    assert len(await store.list_callbacks(fast.id, state=CallbackState.DELIVERED, limit=100)) == 10


@pytest.mark.parametrize(
    ("retry_after", "delay_ms"),
    [
        ("soon", 5_000),  # unreadable: the schedule's step (5 s, jitter 0 at random 0.5)
        ("-5", 5_000),
        ("999999999", 86_400_000),  # at most a day
        ("Mon, 01 Jan 2001 00:00:00 GMT", 5_000),  # shorter than the step: the step
        ("0", 5_000),
    ],
)
async def test_an_unreadable_or_extreme_retry_after_is_bounded(
    store: Store, make: Factory, clock: FakeClock, retry_after: str, delay_ms: int
) -> None:
    account = await with_url(store, await make.account())
    await make.sent(account, callback="yes")
    answers = [Response(503, retry_after), Response(200, None)]
    transport = FakeTransport(clock, lambda n, url: answers[n - 1])
    await run_until_done(dispatcher(store, transport, clock), store, clock, account)
    assert [p.at - transport.posts[0].at for p in transport.posts] == [0, delay_ms]


async def test_a_full_host_s_backlog_is_handed_back_for_longer_and_longer_not_churned(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    """A host that never answers, with 100 events: 4 are attempted at a time, the rest handed back, each for
    its own turn at the host's pace. Once its pace is known (the first timeouts), each comes back about once
    in two minutes, not every second or two (which would be some 8,000 database writes here)."""
    account = await with_url(store, await make.account(), "https://stuck.example.com/hook")
    for _ in range(4):
        await make.send(account, ["0"] * 25, callback="yes")  # invalid numbers: due at once
    stuck = asyncio.Event()

    class Stuck(FakeTransport):
        """Never answers: each attempt gives up after the 10 s timeout (of the fake clock)."""

        async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
            started = clock.now_ms()
            with contextlib.suppress(TimeoutError):
                await clock.wait_for(stuck.wait(), 10)
            raise DeliveryFailed("no answer within 10 s", latency_ms=clock.now_ms() - started)

    handed_back = [0]
    finish = store.finish_callbacks

    async def counting(results: list[CallbackResult]) -> None:
        handed_back[-1] += sum(r.deferred for r in results)
        await finish(results)

    store.finish_callbacks = counting  # type: ignore[method-assign]
    d = dispatcher(store, Stuck(clock), clock, connections_per_host=2, poll_interval=0.5)
    await d.start()
    try:
        await clock.run(60)  # the first simulated minute, then the next two
        handed_back.append(0)
        await clock.run(120)
    finally:
        stuck.set()
        await stop(d, clock)
    first_minute, then = handed_back
    assert 96 <= first_minute <= 5 * 96, handed_back
    assert then <= 2 * 96, handed_back


async def test_a_post_not_sent_for_a_busy_host_is_not_an_attempt(store: Store, make: Factory, clock: FakeClock) -> None:
    account = await with_url(store, await make.account())
    await make.sent(account, callback="yes")
    answers: list[Response | DeliveryFailed] = [NotSent("not sent: waited"), Response(200, None)]
    transport = FakeTransport(clock, lambda n, url: answers[n - 1])
    await run_until_done(dispatcher(store, transport, clock), store, clock, account)
    [view] = await store.list_callbacks(account.id, state=None, limit=10)
    full = await store.get_callback(account.id, view.id)
    assert full is not None and full.state is CallbackState.DELIVERED
    assert (full.attempts, [a.status_code for a in full.history]) == (1, [200])
