"""Long messages in the store: a destination sent in several parts, each part tracked in destination_parts,
final only once every part is (store/changes.py). Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import asyncpg

from switchboard.domain.statuses import SmsStatus, parts_status
from switchboard.store.base import Store
from switchboard.store.records import HeldReceipts, Outcome, Receipt
from tests.clock import FakeClock
from tests.contract.conftest import Backend, Factory

LEASE = 30_000
S = SmsStatus


async def part_rows(backend: Backend, destination_id: int) -> list[tuple[Any, ...]]:
    query = "SELECT part, carrier, carrier_ref, status, updated_at FROM destination_parts WHERE destination_id = {} "
    query += "ORDER BY part"
    if backend.dialect == "sqlite":
        return await asyncio.to_thread(
            _sqlite_rows, backend.url.removeprefix("sqlite:///"), query.format("?"), destination_id
        )
    conn = await asyncpg.connect(backend.url)
    try:
        return [tuple(r) for r in await conn.fetch(query.format("$1"), destination_id)]
    finally:
        await conn.close()


def _sqlite_rows(path: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [tuple(r) for r in conn.execute(query, args).fetchall()]
    finally:
        conn.close()


async def sent_in_parts(
    store: Store, make: Factory, clock: FakeClock, refs: tuple[str, ...], *, callback: str = "no"
) -> tuple[int, int, int]:
    """(account id, message id, destination id) of a message a carrier "sim" accepted in len(refs) parts."""
    account = await make.account()
    message_id = await make.send(account, callback=callback, callback_url="https://a.example/hook")
    [claimed] = await store.claim(now=clock.now_ms(), limit=1, lease_ms=LEASE)
    outcome = Outcome(claimed.id, claimed.attempt, S.SENT, carrier="sim", carrier_ref=refs[0], part_refs=refs)
    await store.finish([outcome], now=clock.now_ms())
    return account.id, message_id, claimed.id


async def status_of(store: Store, account_id: int, message_id: int) -> tuple[SmsStatus, str | None]:
    view = await store.get_message(account_id, message_id)
    assert view is not None
    [dest] = view.destinations
    return dest.status, dest.error


def test_parts_status_is_delivered_only_when_every_part_is_else_the_worst() -> None:
    assert parts_status([S.DELIVERED, S.SENT]) is None
    assert parts_status([S.DELIVERED, S.DELIVERED]) is S.DELIVERED
    assert parts_status([S.DELIVERED, S.EXPIRED]) is S.EXPIRED
    assert parts_status([S.EXPIRED, S.UNDELIVERED, S.DELIVERED]) is S.UNDELIVERED
    assert parts_status([S.UNDELIVERED, S.REJECTED]) is S.REJECTED


async def test_parts_are_written_with_sent(store: Store, make: Factory, clock: FakeClock, backend: Backend) -> None:
    now = clock.now_ms()
    account_id, message_id, dest = await sent_in_parts(store, make, clock, ("r1", "r2", "r3"))
    assert await part_rows(backend, dest) == [
        (1, "sim", "r1", "Sent", now),
        (2, "sim", "r2", "Sent", now),
        (3, "sim", "r3", "Sent", now),
    ]
    view = await store.get_message(account_id, message_id)
    assert view is not None and view.destinations[0].status is S.SENT
    assert [f.carrier_ref for f in await store.in_flight("sim", limit=10)] == ["r1"]


async def test_three_parts_are_delivered_only_after_all_three_receipts(
    store: Store, make: Factory, clock: FakeClock, backend: Backend
) -> None:
    account_id, message_id, dest = await sent_in_parts(store, make, clock, ("r1", "r2", "r3"), callback="url")
    assert await backend.count("callbacks") == 1  # Sent
    # The first part's reference is also the destination's: the part is matched, not the destination.
    assert await store.apply_receipts([Receipt("sim", "r1", S.DELIVERED)], now=clock.advance(ms=10)) == []
    assert await status_of(store, account_id, message_id) == (S.SENT, None)
    assert await store.apply_receipts([Receipt("sim", "r3", S.DELIVERED)], now=clock.advance(ms=10)) == []
    assert await status_of(store, account_id, message_id) == (S.SENT, None)
    assert await backend.count("callbacks") == 1
    last = clock.advance(ms=10)
    assert await store.apply_receipts([Receipt("sim", "r2", S.DELIVERED)], now=last) == []
    assert await status_of(store, account_id, message_id) == (S.DELIVERED, None)
    view = await store.get_message(account_id, message_id)
    assert view is not None and view.destinations[0].delivered_at == last
    assert [r[3] for r in await part_rows(backend, dest)] == ["Delivered"] * 3
    assert await backend.count("callbacks") == 2  # Sent, then Delivered once: none per part
    history = await store.history(dest)
    assert [(h.status, h.detail) for h in history][-4:] == [
        ("Delivered", "part 1/3"),
        ("Delivered", "part 3/3"),
        ("Delivered", "part 2/3"),
        ("Delivered", None),
    ]


async def test_one_undelivered_part_makes_it_undelivered_once_all_are_final(
    store: Store, make: Factory, clock: FakeClock, backend: Backend
) -> None:
    account_id, message_id, dest = await sent_in_parts(store, make, clock, ("r1", "r2", "r3"), callback="url")
    receipts = [Receipt("sim", "r1", S.DELIVERED), Receipt("sim", "r2", S.UNDELIVERED, "UNDELIV (err 001)")]
    assert await store.apply_receipts(receipts, now=clock.advance(ms=10)) == []
    assert (await status_of(store, account_id, message_id))[0] is S.SENT
    assert await store.apply_receipts([Receipt("sim", "r3", S.DELIVERED)], now=clock.advance(ms=10)) == []
    assert await status_of(store, account_id, message_id) == (S.UNDELIVERED, "part 2 of 3 Undelivered")
    assert [r[3] for r in await part_rows(backend, dest)] == ["Delivered", "Undelivered", "Delivered"]
    assert await backend.count("callbacks") == 2


async def test_the_worst_part_decides_and_its_receipt_error_is_kept(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account_id, message_id, _ = await sent_in_parts(store, make, clock, ("r1", "r2"))
    receipts = [Receipt("sim", "r1", S.EXPIRED, "EXPIRED"), Receipt("sim", "r2", S.REJECTED, "REJECTD")]
    assert await store.apply_receipts(receipts, now=clock.advance(ms=10)) == []
    assert await status_of(store, account_id, message_id) == (S.REJECTED, "part 2 of 2 Rejected (REJECTD)")


async def test_duplicate_and_late_part_receipts_are_only_history(
    store: Store, make: Factory, clock: FakeClock, backend: Backend
) -> None:
    account_id, message_id, dest = await sent_in_parts(store, make, clock, ("r1", "r2"), callback="url")
    first = clock.advance(ms=10)
    receipts = [Receipt("sim", "r1", S.DELIVERED), Receipt("sim", "r1", S.UNDELIVERED)]  # a duplicate in one batch
    assert await store.apply_receipts(receipts, now=first) == []
    assert [r[3:] for r in await part_rows(backend, dest)] == [("Delivered", first), ("Sent", clock.now_ms() - 10)]
    assert await store.apply_receipts([Receipt("sim", "r2", S.DELIVERED)], now=clock.advance(ms=10)) == []
    assert (await status_of(store, account_id, message_id))[0] is S.DELIVERED
    late = [Receipt("sim", "r2", S.UNDELIVERED), Receipt("sim", "r1", S.DELIVERED)]
    assert await store.apply_receipts(late, now=clock.advance(ms=10)) == []
    assert (await status_of(store, account_id, message_id))[0] is S.DELIVERED
    assert [r[3] for r in await part_rows(backend, dest)] == ["Delivered", "Delivered"]
    assert await backend.count("callbacks") == 2
    details = [h.detail for h in await store.history(dest)]
    assert details[-2:] == ["part 2/2 ignored: already Delivered", "part 1/2 ignored: already Delivered"]


async def test_single_part_destinations_have_no_parts_and_work_as_before(
    store: Store, make: Factory, clock: FakeClock, backend: Backend
) -> None:
    account = await make.account()
    sent = await make.sent(account)
    long_account, long_message, _ = await sent_in_parts(store, make, clock, ("p1", "p2"))
    assert await part_rows(backend, sent.destination_id) == []
    receipts = [
        Receipt("sim", sent.ref, S.DELIVERED),
        Receipt("sim", "nobody", S.DELIVERED),
        Receipt("sim", "p2", S.DELIVERED),
    ]
    assert await store.apply_receipts(receipts, now=clock.advance(ms=10)) == [Receipt("sim", "nobody", S.DELIVERED)]
    assert (await make.destination(sent)).status is S.DELIVERED
    # One part's receipt in the same batch changed only its part.
    assert (await status_of(store, long_account, long_message))[0] is S.SENT
    assert await backend.count("destination_parts") == 2


async def test_a_single_part_ref_list_writes_no_parts(
    store: Store, make: Factory, clock: FakeClock, backend: Backend
) -> None:
    account_id, message_id, dest = await sent_in_parts(store, make, clock, ("only",))
    assert await part_rows(backend, dest) == []
    assert await store.apply_receipts([Receipt("sim", "only", S.DELIVERED)], now=clock.advance(ms=10)) == []
    assert (await status_of(store, account_id, message_id))[0] is S.DELIVERED


async def test_parts_that_share_one_id_are_delivered_by_as_many_receipts(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    """Some SMSCs answer every part of a message with the same id: each receipt completes the next part."""
    account_id, message_id, _ = await sent_in_parts(store, make, clock, ("x", "x", "x"))
    for n in range(3):
        assert await store.apply_receipts([Receipt("sim", "x", S.DELIVERED)], now=clock.advance(ms=10)) == []
        expected = S.DELIVERED if n == 2 else S.SENT
        assert (await status_of(store, account_id, message_id))[0] is expected


async def test_an_id_used_again_reaches_the_new_destination_not_the_finished_part(
    store: Store, make: Factory, clock: FakeClock
) -> None:
    account_id, old_message, _ = await sent_in_parts(store, make, clock, ("7", "8"))
    await store.apply_receipts([Receipt("sim", r, S.DELIVERED) for r in ("7", "8")], now=clock.advance(ms=10))
    assert (await status_of(store, account_id, old_message))[0] is S.DELIVERED
    # The SMSC restarted and gives "7" again, to a new single-part message.
    account = await make.account()
    new_message = await make.send(account)
    [claimed] = await store.claim(now=clock.now_ms(), limit=1, lease_ms=LEASE)
    await store.finish(
        [Outcome(claimed.id, claimed.attempt, S.SENT, carrier="sim", carrier_ref="7")], now=clock.now_ms()
    )
    assert await store.apply_receipts([Receipt("sim", "7", S.UNDELIVERED)], now=clock.advance(ms=10)) == []
    assert (await status_of(store, account.id, new_message))[0] is S.UNDELIVERED
    assert (await status_of(store, account_id, old_message))[0] is S.DELIVERED


async def test_a_part_receipt_before_its_sent_is_held_and_completes_the_destination_later(
    store: Store, make: Factory, clock: FakeClock, backend: Backend
) -> None:
    account = await make.account()
    message_id = await make.send(account, callback="url", callback_url="https://a.example/hook")
    [claimed] = await store.claim(now=clock.now_ms(), limit=1, lease_ms=LEASE)
    early = Receipt("sim", "q2", S.DELIVERED)  # the second part's, before the submit responses are written
    assert await store.apply_receipts([early], now=clock.advance(ms=5)) == [early]
    outcome = Outcome(claimed.id, claimed.attempt, S.SENT, carrier="sim", carrier_ref="q1", part_refs=("q1", "q2"))
    await store.finish([outcome], now=clock.advance(ms=5))
    assert await store.apply_receipts([Receipt("sim", "q1", S.DELIVERED)], now=clock.advance(ms=5)) == []
    assert await status_of(store, account.id, message_id) == (S.SENT, None)
    applied_at = clock.advance(ms=5)
    assert await store.retry_held_receipts(now=applied_at, drop_before=applied_at - 600_000) == HeldReceipts(1, [], 0)
    assert await status_of(store, account.id, message_id) == (S.DELIVERED, None)
    parts = [r[3:] for r in await part_rows(backend, claimed.id)]
    assert parts == [("Delivered", applied_at - 5), ("Delivered", applied_at)]
    assert [(h.status, h.detail) for h in await store.history(claimed.id)][-2:] == [
        ("Delivered", "part 2/2"),
        ("Delivered", None),
    ]
    assert await backend.count("callbacks") == 2  # Sent, then Delivered once
    assert await backend.count("held_receipts") == 0
