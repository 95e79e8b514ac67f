"""Callbacks end to end: a server subprocess posting to a real HTTP receiver on loopback that fails the first
attempt of every callback. Every callback arrives, signed, in Sequence order per destination, and none is
lost when the server is SIGKILLed in the middle and started again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.testing import ServerProcess
from tests.e2e.receiver import Receiver, check_arrivals, expected_callbacks, send_many, wait_for

CALLBACKS = """
[worker]
poll_interval = 0.2
lease_seconds = 5

[callbacks]
allow_loopback = true
timeout_seconds = 2
retry_schedule = [0.2, 0.4, 0.8, 1, 1, 1, 1, 1, 1]
"""


@pytest.fixture
def callback_server(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path / "server", config=CALLBACKS)
    s.write_config()
    yield s
    s.stop()


def test_every_callback_arrives_in_order_though_the_receiver_fails_first(callback_server: ServerProcess) -> None:
    with Receiver() as receiver:
        account = callback_server.create_account("acme", "--sms-callback-url", receiver.url)
        receiver.secret = account["webhook_secret"]
        callback_server.start()
        ids = asyncio.run(send_many(callback_server.url, account["api_key"], 50))
        expected = expected_callbacks(ids, 50)
        total = sum(len(v) for v in expected.values())
        wait_for(receiver, total, 60)
        check_arrivals(receiver, expected)
        assert receiver.bad_signatures == 0
        assert all(n >= 2 for n in receiver.attempts.values())  # each one failed once first, then came again

    body = next(b for _, b in receiver.accepted if b["MobileNo"] == "12")
    assert body["Error"] == "International Number Invalid" and body["ErrorLogsID"] != ""
    headers = {"Authorization": f"Bearer {account['api_key']}"}
    with httpx.Client(base_url=callback_server.url, headers=headers, timeout=10) as client:
        listing = client.get("/api/Callbacks", params={"Status": "delivered", "Limit": 500}).json()
        assert len(listing["Callbacks"]) == total
        one = client.get(f"/api/Callbacks/{listing['Callbacks'][0]['ID']}").json()
        assert [h["StatusCode"] for h in one["History"]] == [503, 200]
        assert all(h["LatencyMs"] >= 0 and h["At"] for h in one["History"])


def test_no_callback_is_lost_across_a_sigkill(callback_server: ServerProcess) -> None:
    with Receiver(fail_first=1) as receiver:
        account = callback_server.create_account("acme", "--sms-callback-url", receiver.url)
        receiver.secret = account["webhook_secret"]
        callback_server.start()
        requests = 200
        ids = asyncio.run(send_many(callback_server.url, account["api_key"], requests))
        expected = expected_callbacks(ids, requests)
        total = sum(len(v) for v in expected.values())
        wait_for(receiver, total // 4, 30)  # in the middle of it
        callback_server.kill()
        with receiver.lock:
            before = len({msg_id for msg_id, _ in receiver.accepted})
        assert before < total, "everything arrived before the kill: the test proves nothing"

        callback_server.start()
        wait_for(receiver, total, 90)
        check_arrivals(receiver, expected)
        assert receiver.bad_signatures == 0


def test_a_private_callback_url_is_refused_unless_allowed(server: ServerProcess, account: dict[str, Any]) -> None:
    """The session server runs with the default: private networks refused."""
    headers = {"Authorization": f"Bearer {account['api_key']}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        before = client.get("/api/Account").json()
        for url in ("http://127.0.0.1:9/", "https://10.1.2.3/hook", "https://[::1]/", "https://localhost/x"):
            r = client.put("/api/Account", json={"SmsCallbackUrl": url})
            assert r.status_code == 400, url
            assert "refused" in r.json()["Error"]
        r = client.post(
            "/api/SMS/Send",
            json={"Destination": "+16175550100", "Message": "x", "Sender": "OM", "CallBack": "https://127.0.0.1/cb"},
        )
        assert r.json() == {"Error ID": "127", "Status": "Received with error - Parameter CallBack is invalid"}
        assert client.get("/api/Account").json() == before


def test_a_cancelled_callback_stops_being_posted(callback_server: ServerProcess) -> None:
    import json
    import time

    from switchboard.testing import cli

    with Receiver(fail_first=10**9) as receiver:  # a URL that never accepts: typed by mistake
        account = callback_server.create_account("acme", "--sms-callback-url", receiver.url)
        callback_server.start()
        headers = {"Authorization": f"Bearer {account['api_key']}"}
        env = {"SWITCHBOARD_URL": callback_server.url, "SWITCHBOARD_API_KEY": account["api_key"]}
        with httpx.Client(base_url=callback_server.url, headers=headers, timeout=10) as client:
            body = {"Destination": "+16175551212", "Message": "m", "Sender": "OM", "CallBack": "Yes"}
            assert client.post("/api/SMS/Send", json=body).status_code == 200
            deadline = time.monotonic() + 20
            while sum(receiver.attempts.values()) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            [sent] = client.get("/api/Callbacks", params={"Status": "pending"}).json()["Callbacks"][-1:]
            cancelled = json.loads(cli("callbacks", "cancel", sent["ID"], env=env))
            assert cancelled == {"ID": sent["ID"], "State": "cancelled"}
            webhook_id = next(iter(receiver.attempts))  # the first callback's, the only one posted so far
            attempts = receiver.attempts[webhook_id]
            time.sleep(3)  # several retry intervals of this server's schedule
            assert receiver.attempts[webhook_id] <= attempts + 1  # at most the attempt that was on its way
            listing = client.get("/api/Callbacks", params={"Status": "cancelled"}).json()["Callbacks"]
            assert [c["ID"] for c in listing] == [sent["ID"]]
            again = client.post(f"/api/Callbacks/{sent['ID']}/Cancel")
            assert again.status_code == 409
            assert client.post("/api/Callbacks/999999999/Cancel").status_code == 404
