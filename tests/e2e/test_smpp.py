"""The gateway with a real SMPP carrier: `switchboard serve` bound to the npm `smpp` SMSC (tests/smsc), a
Send through the API reaching the SMSC and each destination reaching the status its receipt gives."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from switchboard.testing import ServerProcess, wait_final
from tests.integration.smsc import SmscPeer


def gateway(tmp_path: Path, smsc: SmscPeer, *, worker: str = "", carrier: str = "") -> ServerProcess:
    """`switchboard serve` (not started) with one SMPP carrier bound to `smsc`: `worker` is more of the
    [worker] section, `carrier` more keys of the carrier."""
    config = f"""
[worker]
poll_interval = 0.2
retry_seconds = 0.5
{worker}
[[sms.carriers]]
name = "smsc1"
kind = "smpp"
host = "{smsc.host}"
port = {smsc.port}
system_id = "switchboard"
password = "secret"
{carrier}
"""
    server = ServerProcess(tmp_path / "server", config=config)
    server.write_config()
    return server


def test_sends_go_over_smpp_and_receipts_set_their_status(tmp_path: Path) -> None:
    with SmscPeer(receipt_delay_ms=20, hex_ids=True) as smsc:
        server = gateway(
            tmp_path, smsc, carrier='binds = 2\nwindow = 10\nrate = 500\nid_form = "hex"\nreceipt_id_form = "decimal"'
        )
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
        # The SMSC's event lines are read by a thread of their own: wait for them, do not just look.
        seen = {e["destination_addr"]: e for e in smsc.wait_count("submit_sm", 4)}
        assert seen["4915100000000"]["data_coding"] == 0
        assert seen["4915100000010"]["data_coding"] == 8
        assert bytes.fromhex(seen["4915100000010"]["short_message_hex"]).decode("utf-16-be") == "Привет, мир"


def test_a_long_message_is_delivered_only_when_every_part_is(tmp_path: Path) -> None:
    """Three parts over SMPP, one receipt each from the SMSC: the destination is Delivered (or, when the
    parts are undeliverable, Undelivered) once, after its three part receipts, which the history shows."""
    with SmscPeer(receipt_delay_ms=300) as smsc:
        server = gateway(tmp_path, smsc)
        account: dict[str, Any] = server.create_account("acme")
        server.start()
        text = "Long message. " * 22  # 308 characters: 3 parts of at most 153 septets
        try:
            headers = {"Authorization": f"Bearer {account['api_key']}"}
            body = {"Destination": ["+4915100000000", "+4915100000001"], "Message": text, "Sender": "OM"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
                ident = client.post("/api/SMS/Send", json=body).json()["ID"]
                # Accepted in three parts, the receipts not there yet: still Sent.
                deadline = time.monotonic() + 10
                while len(smsc.find("submit_sm")) < 6 and time.monotonic() < deadline:
                    time.sleep(0.02)
                early = [
                    d["Status"] for d in client.get("/api/SMS/GetStatus", params={"ID": ident}).json()["Destinations"]
                ]
                statuses = wait_final(client, ident, 30)
        finally:
            server.stop()
        assert set(early) <= {"Received", "Sent"}
        assert statuses == ["Delivered", "Undelivered"]
        submits = smsc.wait_count("submit_sm", 6)
        assert len(submits) == 6
        for number in ("4915100000000", "4915100000001"):
            parts = [e["concat"] for e in submits if e["destination_addr"] == number]
            assert sorted((p["seq"], p["total"]) for p in parts) == [(1, 3), (2, 3), (3, 3)]
            assert len({p["ref"] for p in parts}) == 1
        assert len(smsc.wait_count("deliver_sm", 6, kind="receipt")) == 6
        db = sqlite3.connect(tmp_path / "server" / "switchboard.db")
        try:
            parts_rows = db.execute(
                "SELECT p.destination_id, p.part, p.status FROM destination_parts p ORDER BY 1, 2"
            ).fetchall()
            history = db.execute("SELECT destination_id, status, detail FROM status_history ORDER BY id").fetchall()
        finally:
            db.close()
        assert [(part, status) for _, part, status in parts_rows] == [
            (1, "Delivered"), (2, "Delivered"), (3, "Delivered"),
            (1, "Undelivered"), (2, "Undelivered"), (3, "Undelivered"),
        ]  # fmt: skip
        delivered, undelivered = sorted({row[0] for row in parts_rows})
        for destination_id, final, error in (
            (delivered, "Delivered", ""),
            (undelivered, "Undelivered", "part 1, 2, 3 of 3 Undelivered"),
        ):
            mine = [(status, detail or "") for d, status, detail in history if d == destination_id]
            assert len(mine) == 5 and mine[0] == ("Sent", "")
            assert sorted(detail[:8] for _, detail in mine[1:4]) == ["part 1/3", "part 2/3", "part 3/3"]
            assert mine[4][0] == final and mine[4][1].startswith(error)


def test_an_mo_from_the_smsc_is_stored_in_inbound_messages(tmp_path: Path) -> None:
    """The SMSC sends a mobile-originated message as soon as the server binds; it is answered ESME_ROK only once
    stored, and the row is in inbound_messages (read from the SQLite file, read-only)."""
    with SmscPeer(mo_on_bind="4915100000077,12345,Hello from a handset") as smsc:
        config = f"""
[[sms.carriers]]
name = "smsc1"
kind = "smpp"
host = "{smsc.host}"
port = {smsc.port}
system_id = "switchboard"
password = "secret"
"""
        server = ServerProcess(tmp_path / "server", config=config)
        server.write_config()
        server.start()
        try:
            resp = smsc.wait_for("deliver_sm_resp", timeout=15)
            assert resp["status"] == 0
            db = sqlite3.connect(f"file:{tmp_path / 'server' / 'switchboard.db'}?mode=ro", uri=True)
            try:
                rows = db.execute(
                    "SELECT carrier, source_addr, destination_addr, body, data_coding, raw, received_at "
                    "FROM inbound_messages"
                ).fetchall()
            finally:
                db.close()
        finally:
            server.stop()
        assert len(rows) >= 1  # one per bind; the SMSC may bind again
        carrier, source, destination, body, data_coding, raw, received_at = rows[0]
        assert (carrier, source, destination, body, data_coding, raw) == (
            "smsc1", "4915100000077", "12345", "Hello from a handset", 0, None
        )  # fmt: skip
        assert abs(received_at - time.time() * 1000) < 60_000


def test_nothing_is_lost_through_a_dropped_link_early_receipts_and_throttling(tmp_path: Path) -> None:
    # The hard cases at once, through the gateway: the SMSC resets the connection with a window of
    # submits unanswered, sends every receipt before its submit_sm_resp, and throttles every 7th submit.
    with SmscPeer(
        receipt_delay_ms=5, drop_after=15, drop_mode="rst", receipt_before_resp=True, throttle_every=7
    ) as smsc:
        server = gateway(tmp_path, smsc, worker="lease_seconds = 5", carrier="binds = 2\nwindow = 10")
        account: dict[str, Any] = server.create_account("acme")
        server.start()
        try:
            headers = {"Authorization": f"Bearer {account['api_key']}"}
            numbers = [f"+49151000001{i:02d}" for i in range(60) if i % 10 not in range(1, 7)]
            with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
                ident = client.post("/api/SMS/Send", json={"Destination": numbers, "Message": "m", "Sender": "OM"})
                statuses = wait_final(client, ident.json()["ID"], 60)
        finally:
            server.stop()
        assert statuses == ["Delivered"] * len(numbers)
        assert smsc.wait_count("drop", 1)
        throttled = [e for e in smsc.events if e["event"] == "submit_sm" and e["status_name"] == "ESME_RTHROTTLED"]
        assert throttled
