"""Voice end to end over real SIP: a server subprocess with two `kind = "sip"` trunks, each a sipp process
on loopback (one answers, one is busy), routed by number prefix. A Call with text to speech reaches sipp,
plays, hangs up, and each call's record reaches a real callback receiver."""

from __future__ import annotations

import contextlib
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


# Every SIP outcome of the contract's table, each from its own sipp (a scenario per trunk, routed by prefix),
# in one Call request: (sipp scenario and its parameters, extra trunk settings) → expected Status / Reason.
OUTCOMES: dict[str, tuple[str, dict[str, Any], str, tuple[str, str]]] = {
    "+4915110000001": ("uas_answer", {"ring_ms": 200}, "", ("Answered", "NA")),
    "+4915110000002": (
        "uas_answer", {"ring_ms": 200, "hangup": "peer", "hold_ms": 500}, "", ("Answered", "CallerHangUp")
    ),
    "+4915110000003": ("uas_reject", {"status": 486}, "", ("Busy", "NA")),
    "+4915110000004": ("uas_reject", {"status": 480}, "", ("NoAnswer", "Timeout")),
    "+4915110000005": ("uas_reject", {"status": 603}, "", ("Failed", "Blocked")),
    "+4915110000006": ("uas_reject", {"status": 403}, "", ("Failed", "Blocked")),
    "+4915110000007": ("uas_reject", {"status": 503}, "", ("Failed", "General Error")),
    "+4915110000008": ("uas_ring_until_cancel", {}, "", ("NoAnswer", "Timeout")),
    # Timer B is 64 × T1: with t1_ms = 20 the silent far end is given up after 1.28 s, not 32 s
    "+4915110000009": ("uas_silent", {"silence_ms": 4000}, "t1_ms = 20\n", ("Failed", "General Error")),
}


def test_every_sip_outcome_reaches_the_callback_receiver_as_the_contract_says(tmp_path: Any) -> None:
    with contextlib.ExitStack() as stack:
        peers = {n: stack.enter_context(run_sipp(name, **params)) for n, (name, params, _, _) in OUTCOMES.items()}
        receiver = stack.enter_context(Receiver(fail_first=0))
        config = "[worker]\npoll_interval = 0.2\n[callbacks]\nallow_private_networks = true\n"
        for i, (number, (_, _, extra, _)) in enumerate(OUTCOMES.items()):
            config += (
                f'[[voice.trunks]]\nname = "t{i}"\nkind = "sip"\nhost = "127.0.0.1"\nport = {peers[number].port}\n'
                f'bind_host = "127.0.0.1"\nrtp_ports = [{33000 + i * 200}, {33000 + i * 200 + 198}]\n{extra}'
                f'[[voice.routes]]\nprefix = "{number}"\ntrunk = "t{i}"\n'
            )
        server = ServerProcess(tmp_path / "server", config=config)
        server.write_config()
        account = server.create_account("acme", "--voice-callback-url", receiver.url)
        receiver.secret = account["webhook_secret"]
        server.start()
        stack.callback(server.stop)
        headers = {"Authorization": f"Bearer {account['api_key']}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
            body = {
                "Destination": list(OUTCOMES),
                "Message": "Your appointment is tomorrow at ten in the morning",
                "Locale": "en-US",
                "Sender": "+14155550100",
                "ReferenceID": "outcomes",
                "RingTimeout": 5,
            }
            r = c.post("/api/Voice/Call", json=body)
            assert r.status_code == 200, r.text
            ident = r.json()["ID"]
            deadline = time.monotonic() + 40
            while len(receiver.accepted) < len(OUTCOMES) and time.monotonic() < deadline:
                time.sleep(0.2)
            status = c.get("/api/Voice/GetStatus", params={"ID": ident}).json()
            calls = {call["MobileNo"]: call for call in status["Calls"]}
    records = {b["MobileNo"]: b for _, b in receiver.accepted}
    assert receiver.bad_signatures == 0
    assert set(records) == set(OUTCOMES), f"records missing for {set(OUTCOMES) - set(records)}"
    for number, (_, _, _, expected) in OUTCOMES.items():
        record = records[number]
        assert (record["Status"], record["Reason"]) == expected, (number, record, calls[number]["Detail"])
        assert record["GUID"] == calls[number]["GUID"] and record["ID"] == ident and record["ReferenceID"] == "outcomes"
        assert record["Calltime"] != ""  # every one was dialled
        answered = expected[0] == "Answered"
        assert (record["AnswerTime"] != "") == answered
        assert record["Duration"] == calls[number]["Duration"]
    assert int(records["+4915110000001"]["Duration"]) >= 1  # the whole sentence was played
    assert records["+4915110000002"]["Duration"] == "0"  # sipp hung up after half a second
    for number, peer in peers.items():
        assert peer.result is not None and peer.result.successful == 1, (number, peer.result.describe())
