"""The gateway with a real SMPP carrier: `switchboard serve` bound to the npm `smpp` SMSC (tests/smsc), a
Send through the API reaching the SMSC and each destination reaching the status its receipt gives."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from switchboard.testing import ServerProcess
from tests.integration.smsc import SmscPeer

FINAL = {"Delivered", "Undelivered", "Expired", "Rejected", "Failed"}


def test_sends_go_over_smpp_and_receipts_set_their_status(tmp_path: Path) -> None:
    with SmscPeer(receipt_delay_ms=20, hex_ids=True) as smsc:
        config = f"""
[worker]
poll_interval = 0.2
retry_seconds = 0.5

[[sms.carriers]]
name = "smsc1"
kind = "smpp"
host = "{smsc.host}"
port = {smsc.port}
system_id = "switchboard"
password = "secret"
binds = 2
window = 10
rate = 500
id_form = "hex"
receipt_id_form = "decimal"
"""
        server = ServerProcess(tmp_path / "server", config=config)
        server.write_config()
        account: dict[str, Any] = server.create_account("acme")
        server.start()
        try:
            headers = {"Authorization": f"Bearer {account['api_key']}"}
            body = {
                "Destination": ["+4915100000000", "+4915100000001", "+4915100000003"],
                "Message": "Grüße from Switchboard",  # ü and ß are in GSM 03.38
                "Sender": "OM",
            }
            unicode_body = {"Destination": "+4915100000010", "Message": "Привет, мир", "Sender": "OM"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
                first = client.post("/api/SMS/Send", json=body).json()["ID"]
                second = client.post("/api/SMS/Send", json=unicode_body).json()["ID"]
                statuses = wait_final(client, first, 30)
                unicode_status = wait_final(client, second, 30)
                doc = client.get("/api/SMS/GetStatus", params={"ID": first}).json()
        finally:
            server.stop()
        assert statuses == ["Delivered", "Undelivered", "Rejected"]
        assert unicode_status == ["Delivered"]
        assert {d["Carrier"] for d in doc["Destinations"]} == {"smsc1"}
        assert not any(d["Simulated"] for d in doc["Destinations"])
        seen = {e["destination_addr"]: e for e in smsc.find("submit_sm")}
        assert seen["4915100000000"]["data_coding"] == 0
        assert seen["4915100000010"]["data_coding"] == 8
        assert bytes.fromhex(seen["4915100000010"]["short_message_hex"]).decode("utf-16-be") == "Привет, мир"


def wait_final(client: httpx.Client, ident: str, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        doc = client.get("/api/SMS/GetStatus", params={"ID": ident}).json()
        statuses = [d["Status"] for d in doc["Destinations"]]
        if all(s in FINAL for s in statuses) or time.monotonic() > deadline:
            return statuses
        time.sleep(0.2)
