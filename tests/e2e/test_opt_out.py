"""Opt-out end to end: `switchboard serve` bound to the npm `smpp` SMSC (tests/smsc). A handset texts STOP to
the account's number; the reply goes out from that number through the SMSC; a Send to the handset is stored
Failed / Opted out and its callback says so at a real receiver; START takes it off the list and the next Send
is delivered; HELP is answered with the account's help text; the list is read and changed over the API and
the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from switchboard.testing import ServerProcess, cli
from tests.e2e.receiver import Receiver, wait_for
from tests.e2e.test_two_way import CONFIG
from tests.integration.smsc import SmscPeer

OURS = "+16175550100"
HANDSET = "+4915100000077"


def _decode(submit: dict[str, Any]) -> str:
    return bytes.fromhex(submit["short_message_hex"]).decode("latin-1")


def _replies(smsc: SmscPeer, mark: int, count: int) -> list[dict[str, Any]]:
    """The submit_sm the gateway sent to the handset since `mark`, from our number."""
    return smsc.wait_count("submit_sm", count, since=mark, timeout=20, destination_addr=HANDSET.lstrip("+"))


def test_stop_then_a_send_fails_opted_out_start_then_it_is_delivered_and_help_is_answered(tmp_path: Path) -> None:
    with SmscPeer() as smsc, Receiver(fail_first=0) as hooks:
        server = ServerProcess(tmp_path / "server", config=CONFIG.format(host=smsc.host, port=smsc.port))
        server.write_config()
        acme: dict[str, Any] = server.create_account("acme", "--sms-callback-url", hooks.url)
        hooks.secret = acme["webhook_secret"]
        cli("numbers", "assign", "acme", "0016175550100", "--config", str(server.config_path))
        server.start()
        headers = {"Authorization": f"Bearer {acme['api_key']}"}
        env = {"SWITCHBOARD_URL": server.url, "SWITCHBOARD_API_KEY": acme["api_key"]}
        try:
            smsc.wait_for("bind", timeout=15)
            with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
                put = client.put("/api/Account", json={"HelpReply": "acme alerts: reply STOP to end."})
                assert put.status_code == 200, put.text

                mark = smsc.mark()
                smsc.send_mo(HANDSET.lstrip("+"), "16175550100", "  sToP! ")
                [stopped] = _replies(smsc, mark, 1)
                assert stopped["source_addr"] in {"16175550100", OURS}
                assert _decode(stopped) == (
                    "You are unsubscribed from acme and will receive no more messages. Reply START to resubscribe."
                )
                listed = client.get("/api/OptOuts").json()
                assert [e["MobileNo"] for e in listed["OptOuts"]] == [HANDSET]

                # Written the way the client writes it: still the opted-out handset.
                body = {"Destination": ["0049 151 00000077", "+16175551212"], "Message": "sale!", "Sender": "OM",
                        "CallBack": "Yes"}  # fmt: skip
                ident = client.post("/api/SMS/Send", json=body).json()["ID"]
                doc = _final(client, ident)
                [(handset_status, error, log_id), (other, _, _)] = [
                    (d["Status"], d["Error"], d["ErrorLogsID"]) for d in doc["Destinations"]
                ]
                assert (handset_status, error, other) == ("Failed", "Opted out", "Delivered")
                assert log_id.isdigit()
                wait_for(hooks, 3, 20)  # the handset's Failed; the other's Sent and Delivered
                failed = [b for _, b in hooks.accepted if b["MobileNo"] == "0049 151 00000077"]
                assert [(b["Status"], b["Error"]) for b in failed] == [("Failed", "Opted out")]

                mark = smsc.mark()
                smsc.send_mo(HANDSET.lstrip("+"), "16175550100", "start")
                [started] = _replies(smsc, mark, 1)
                assert _decode(started) == "You are subscribed to acme again. Reply STOP to unsubscribe, HELP for help."
                assert client.get("/api/OptOuts").json()["OptOuts"] == []
                again = client.post("/api/SMS/Send", json={**body, "Destination": HANDSET}).json()["ID"]
                assert _final(client, again)["Status"] == "Delivered"

                # What no number can be is refused before the store is asked (PostgreSQL refuses NUL in text).
                assert client.get("/api/OptOuts", params={"After": "1\x00"}).status_code == 400
                assert client.delete("/api/OptOuts/1%00").status_code == 400
                assert client.post("/api/OptOuts", json={"MobileNo": "1" * 10_000}).status_code == 400

                mark = smsc.mark()
                smsc.send_mo(HANDSET.lstrip("+"), "16175550100", "Help")
                [helped] = _replies(smsc, mark, 1)
                assert _decode(helped) == "acme alerts: reply STOP to end."

            # The operator's other way in: the CLI over the API.
            added = json.loads(cli("optouts", "add", "0016175559999", env=env))
            assert added["MobileNo"] == "+16175559999"
            assert [e["MobileNo"] for e in json.loads(cli("optouts", "list", env=env))["OptOuts"]] == ["+16175559999"]
            cli("optouts", "remove", "+1 617 555 9999", env=env)
            assert json.loads(cli("optouts", "list", env=env))["OptOuts"] == []
            assert hooks.bad_signatures == 0
        finally:
            server.stop()


def _final(client: httpx.Client, ident: str) -> dict[str, Any]:
    final = {"Delivered", "Undelivered", "Expired", "Rejected", "Failed", "Cancelled"}
    deadline = time.monotonic() + 20
    while True:
        doc: dict[str, Any] = client.get("/api/SMS/GetStatus", params={"ID": ident}).json()
        if all(d["Status"] in final for d in doc["Destinations"]) or time.monotonic() > deadline:
            return doc
        time.sleep(0.2)
