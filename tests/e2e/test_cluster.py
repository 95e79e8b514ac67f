"""Cluster mode: separate `switchboard api` and `switchboard worker` processes sharing one PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from switchboard.testing import ServerProcess, wait_final
from tests.e2e.receiver import Receiver, check_arrivals, expected_callbacks, send_many, wait_for

ADMIN_URL = os.environ.get("SWITCHBOARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def database() -> Iterator[str]:
    name = f"sb_e2e_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f"CREATE DATABASE {name}"))
    except (OSError, asyncpg.PostgresError) as e:
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL.split('@')[-1]}: {e}")
    yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_api_and_worker_processes_share_postgresql(tmp_path: Path, database: str) -> None:
    # The worker polls only every 30 s: what it delivers within 10 s it was woken for by NOTIFY.
    config = f'[database]\nurl = "{database}"\n[worker]\npoll_interval = 30\n'
    api = ServerProcess(tmp_path / "api", config=config, command="api")
    api.write_config()
    account: dict[str, Any] = api.create_account("acme")
    api.start()
    worker = subprocess.Popen(
        [sys.executable, "-m", "switchboard", "worker", "--config", str(api.config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        headers = {"Authorization": f"Bearer {account['api_key']}"}
        body = {"Destination": ["+16175551212", "+15005550001", "nope"], "Message": "hi", "Sender": "OM"}
        with httpx.Client(base_url=api.url, headers=headers, timeout=10) as client:
            # The first send may be stored before the worker has started; the second finds it idle,
            # waiting 30 s between polls, so only a NOTIFY can make it deliver within 10 s.
            first = wait_final(client, client.post("/api/SMS/Send", json=body).json()["ID"], 30)
            second = wait_final(client, client.post("/api/SMS/Send", json=body).json()["ID"], 10)
            assert client.get("/readyz").json() == {"status": "ready", "database": "postgresql"}
    finally:
        worker.terminate()
        worker.wait(15)
        api.stop()
    assert first == second == ["Delivered", "Undelivered", "Failed"]


def test_two_workers_deliver_every_callback_in_order_on_postgresql(tmp_path: Path, database: str) -> None:
    """Two worker processes claim from one outbox: every callback arrives once delivered, none out of order
    per destination (SKIP LOCKED claims, and the per-destination locks of the outbox)."""
    config = (
        f'[database]\nurl = "{database}"\n[worker]\npoll_interval = 0.2\n'
        "[callbacks]\nallow_private_networks = true\ntimeout_seconds = 2\n"
        "retry_schedule = [0.2, 0.4, 0.8, 1, 1, 1, 1, 1, 1]\n"
    )
    api = ServerProcess(tmp_path / "api", config=config, command="api")
    api.write_config()
    with Receiver(fail_first=1) as receiver:
        account: dict[str, Any] = api.create_account("acme", "--sms-callback-url", receiver.url)
        receiver.secret = account["webhook_secret"]
        api.start()
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "switchboard", "worker", "--config", str(api.config_path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        try:
            ids = asyncio.run(send_many(api.url, account["api_key"], 100))
            expected = expected_callbacks(ids, 100)
            wait_for(receiver, sum(len(v) for v in expected.values()), 60)
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(15)
            api.stop()
        check_arrivals(receiver, expected)
        assert receiver.bad_signatures == 0
