"""SIGKILL right after a burst of accepted sends loses nothing that was answered Received."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from switchboard.testing import ServerProcess

FINAL = {"Delivered", "Undelivered", "Expired", "Rejected", "Failed"}


async def burst(url: str, key: str, requests: int, concurrency: int) -> list[str]:
    ids: list[str] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                body = {"Destination": [f"+1617555{i % 10000:04d}", "+15005550004"], "Message": f"m{i}", "Sender": "OM"}
                r = await client.post("/api/SMS/Send", json=body)
                if r.status_code == 200 and r.json()["Status"] == "Received":
                    ids.append(r.json()["ID"])

        await asyncio.gather(*(one(i) for i in range(requests)))
    return ids


def test_sigkill_after_a_burst_loses_no_received_destination(fresh_server: ServerProcess) -> None:
    fresh_server.write_config()
    account: dict[str, Any] = fresh_server.create_account("acme")
    fresh_server.start()
    ids = asyncio.run(burst(fresh_server.url, account["api_key"], requests=1500, concurrency=32))
    fresh_server.kill()  # at once: workers are still busy with the burst
    assert len(ids) == 1500

    fresh_server.start()
    headers = {"Authorization": f"Bearer {account['api_key']}"}
    deadline = time.monotonic() + 60
    pending = set(ids)
    with httpx.Client(base_url=fresh_server.url, timeout=10, headers=headers) as client:
        while pending and time.monotonic() < deadline:
            for ident in list(pending):
                r = client.get("/api/SMS/GetStatus", params={"ID": ident})
                assert r.status_code == 200, f"{ident} answered Received before the crash and is gone: {r.text}"
                statuses = [d["Status"] for d in r.json()["Destinations"]]
                assert len(statuses) == 2
                # The first number is delivered; the second is a test number that stays Sent forever.
                if statuses[0] in FINAL and statuses[1] == "Sent":
                    pending.discard(ident)
            time.sleep(0.2)
    assert not pending, f"{len(pending)} sends never finished after the restart"


def test_sigterm_finishes_the_work_in_hand_before_exiting(fresh_server: ServerProcess) -> None:
    import signal
    import sqlite3

    fresh_server.write_config()
    account: dict[str, Any] = fresh_server.create_account("acme")
    fresh_server.start()
    ids = asyncio.run(burst(fresh_server.url, account["api_key"], requests=300, concurrency=32))
    assert fresh_server.process is not None
    fresh_server.process.send_signal(signal.SIGTERM)
    assert fresh_server.process.wait(30) == 0
    assert "stopped cleanly" in fresh_server.log()
    db = sqlite3.connect(fresh_server.data_dir / "switchboard.db")
    try:
        # Nothing is left claimed by the process that stopped: a destination is either untouched, waiting
        # for the next start, or its outcome was written.
        leased = db.execute("SELECT count(*) FROM destinations WHERE status = 'Received' AND attempts > 0").fetchone()
        stored = db.execute("SELECT count(*) FROM messages").fetchone()
    finally:
        db.close()
    assert leased == (0,)
    assert stored == (len(ids),)
