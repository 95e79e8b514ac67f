"""Voice end to end over real SIP: a server subprocess with two `kind = "sip"` trunks, each a sipp process
on loopback (one answers, one is busy), routed by number prefix. A Call with text to speech reaches sipp,
plays, hangs up, and each call's record reaches a real callback receiver."""

from __future__ import annotations

import time
from typing import Any

import httpx

from switchboard.testing import ServerProcess
from tests.e2e.receiver import Receiver
from tests.integration.sipp import run_sipp

CONFIG = """
[worker]
poll_interval = 0.2

[callbacks]
allow_private_networks = true
retry_schedule = [0.2, 0.4, 0.8, 1, 1, 1, 1, 1, 1]

[[voice.trunks]]
name = "answers"
kind = "sip"
host = "127.0.0.1"
port = {answer_port}
bind_host = "127.0.0.1"
rtp_ports = [31000, 31998]

[[voice.trunks]]
name = "busy"
kind = "sip"
host = "127.0.0.1"
port = {busy_port}
bind_host = "127.0.0.1"
rtp_ports = [32000, 32998]

[[voice.routes]]
prefix = "+4916"
trunk = "busy"

[[voice.routes]]
prefix = "+49"
trunk = "answers"
"""


def test_a_call_with_speech_goes_through_sip_trunks_and_each_record_arrives(tmp_path: Any) -> None:
    with (
        run_sipp("uas_answer", calls=2, ring_ms=200) as answers,
        run_sipp("uas_reject", calls=1, status=486) as busy,
        Receiver(fail_first=0) as receiver,
    ):
        server = ServerProcess(
            tmp_path / "server", config=CONFIG.format(answer_port=answers.port, busy_port=busy.port)
        )
        server.write_config()
        account = server.create_account("acme", "--voice-callback-url", receiver.url)
        receiver.secret = account["webhook_secret"]
        server.start()
        try:
            headers = {"Authorization": f"Bearer {account['api_key']}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
                body = {
                    "Destination": ["+4915112345678", "+4915187654321", "+4916012345678"],
                    "Message": "Your appointment is tomorrow at ten",
                    "Locale": "en-US",
                    "Sender": "+14155550100",
                    "ReferenceID": "sip-e2e",
                }
                r = c.post("/api/Voice/Call", json=body)
                assert r.status_code == 200, r.text
                ident = r.json()["ID"]
                deadline = time.monotonic() + 40
                while True:
                    doc = c.get("/api/Voice/GetStatus", params={"ID": ident}).json()
                    done = all(call["Reason"] for call in doc["Calls"])
                    if done or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
        finally:
            server.stop()
        deadline = time.monotonic() + 10
        while len(receiver.accepted) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    calls = {call["MobileNo"]: call for call in doc["Calls"]}
    for number in ("+4915112345678", "+4915187654321"):
        call = calls[number]
        assert (call["Status"], call["Reason"], call["Trunk"]) == ("Answered", "NA", "answers")
        assert call["Simulated"] is False
        assert int(call["Duration"]) >= 1 and call["AnswerTime"] > call["Calltime"]
    busy_call = calls["+4916012345678"]
    assert (busy_call["Status"], busy_call["Reason"], busy_call["Trunk"]) == ("Busy", "NA", "busy")
    assert "486" in busy_call["Detail"]
    assert answers.result is not None and answers.result.successful == 2, answers.result.describe()
    assert busy.result is not None and busy.result.successful == 1
    records = {b["MobileNo"]: b for _, b in receiver.accepted}
    assert set(records) == set(calls) and receiver.bad_signatures == 0
    assert records["+4916012345678"]["Status"] == "Busy" and records["+4915112345678"]["ReferenceID"] == "sip-e2e"
    invite = answers.result.received("INVITE")[0]
    assert "+14155550100" in (invite.header("From") or "")  # the Sender as the caller ID
