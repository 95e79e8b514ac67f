"""Per-account limits through the API: the request rate shared by two `switchboard api` processes on one
PostgreSQL, and the destinations refused one by one for their country or the daily cap."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from switchboard.api.ratelimit import LEASE_SECONDS
from switchboard.testing import ServerProcess, cli, wait_final
from tests.e2e.test_cluster import database  # noqa: F401  (the fixture: a fresh PostgreSQL database)

RATE = 50.0
BURST = 10
SECONDS = 3.0


async def _drive(urls: list[str], key: str, seconds: float) -> tuple[dict[str, int], int, float, set[str]]:
    """Send as fast as 16 clients can, to the processes in turn, for `seconds`: what each process accepted,
    how many were sent, the time it took, and the Retry-After values seen."""
    accepted = dict.fromkeys(urls, 0)
    sent = 0
    retry_after: set[str] = set()
    body = {"Destination": "+16175551212", "Message": "hi", "Sender": "OM"}
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        start = time.monotonic()
        deadline = start + seconds

        async def one(n: int) -> None:
            nonlocal sent
            while time.monotonic() < deadline:
                url = urls[(n + sent) % len(urls)]
                sent += 1
                r = await client.post(url + "/api/SMS/Send", json=body)
                if r.status_code == 200:
                    accepted[url] += 1
                else:
                    assert r.status_code == 429, r.text
                    assert r.json()["Error ID"] == "129"
                    retry_after.add(r.headers["retry-after"])

        await asyncio.gather(*(one(n) for n in range(16)))
        elapsed = time.monotonic() - start
    return accepted, sent, elapsed, retry_after


def test_two_api_processes_on_postgresql_accept_the_accounts_rate_together(tmp_path: Path, database: str) -> None:  # noqa: F811
    config = f'[database]\nurl = "{database}"\n'
    first = ServerProcess(tmp_path / "a", config=config, command="api")
    second = ServerProcess(tmp_path / "b", config=config, command="api")
    first.write_config()
    account: dict[str, Any] = first.create_account("acme")
    cli("accounts", "limits", "acme", "--rate", str(RATE), "--burst", str(BURST), "--config", str(first.config_path))
    first.start()
    second.start()
    try:
        accepted, sent, elapsed, retry_after = asyncio.run(
            _drive([first.url, second.url], account["api_key"], SECONDS)
        )
    finally:
        first.stop()
        second.stop()
    total = sum(accepted.values())
    lease = RATE * LEASE_SECONDS
    assert sent / elapsed > 3 * RATE, "the load must be well above the rate"
    assert all(n > 0 for n in accepted.values()), accepted
    # The documented tolerance (docs/api.md, "Limits"), N = 2 processes: at most burst + rate x T + N leases,
    # at least rate x T - 2 N leases.
    assert total <= BURST + RATE * elapsed + 2 * lease, (total, elapsed)
    assert total >= RATE * elapsed - 2 * 2 * lease, (total, elapsed)
    assert retry_after == {"1"}


def test_destinations_in_a_country_not_allowed_or_past_the_daily_cap_fail_with_their_errors(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "s")
    server.write_config()
    account: dict[str, Any] = server.create_account("acme")
    cli("accounts", "limits", "acme", "--daily", "2", "--countries", "US,CA", "--config", str(server.config_path))
    server.start()
    try:
        headers = {"Authorization": f"Bearer {account['api_key']}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            body = {"Destination": ["+16175551212", "+33612345678", "+16175551213"], "Message": "hi", "Sender": "OM"}
            first = client.post("/api/SMS/Send", json=body)
            assert first.status_code == 200
            wait_final(client, first.json()["ID"], 20)
            again = client.post("/api/SMS/Send", json={**body, "Destination": "+14165551234"})
            assert again.status_code == 200
            views = [client.get("/api/SMS/GetStatus", params={"ID": r.json()["ID"]}).json() for r in (first, again)]
    finally:
        server.stop()
    destinations = views[0]["Destinations"] + views[1]["Destinations"]
    assert [(d["MobileNo"], d["Status"], d["Error"]) for d in destinations] == [
        ("+16175551212", "Delivered", ""),
        ("+33612345678", "Failed", "Destination country not allowed"),
        ("+16175551213", "Delivered", ""),
        ("+14165551234", "Failed", "Daily destination limit reached"),
    ]
    assert all(d["ErrorLogsID"] for d in destinations if d["Status"] == "Failed")
    assert "2 destinations counted today" in cli("accounts", "limits", "acme", "--config", str(server.config_path))
