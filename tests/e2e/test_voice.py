"""Voice end to end on the embedded default: a server subprocess with the simulator trunk and real espeak-ng
speech, a real callback receiver on loopback. The vendor's sample Call reaches every outcome of the reserved
test numbers, each with one signed call record; a campaign made from a WAV upload is played; a ringing call
is cancelled through the API; the CLI places a call."""

from __future__ import annotations

import io
import json
import math
import struct
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.testing import ServerProcess, cli
from tests.e2e.receiver import Receiver

VOICE = """
[worker]
poll_interval = 0.2
lease_seconds = 5

[callbacks]
allow_private_networks = true
timeout_seconds = 2
retry_schedule = [0.2, 0.4, 0.8, 1, 1, 1, 1, 1, 1]

[[voice.trunks]]
name = "sim"
delay = 0.2
"""
FINAL = {"Answered", "Busy", "NoAnswer", "Failed"}
CDR_KEYS = ["GUID", "MobileNo", "Status", "Calltime", "AnswerTime", "Duration", "Reason", "ID", "ReferenceID"]


@pytest.fixture(scope="module")
def voice_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Receiver, dict[str, Any]]]:
    with Receiver(fail_first=0) as receiver:
        s = ServerProcess(tmp_path_factory.mktemp("voice"), config=VOICE)
        s.write_config()
        account = s.create_account("acme", "--voice-callback-url", receiver.url)
        receiver.secret = account["webhook_secret"]
        s.start()
        yield s, receiver, account
        s.stop()


def client(server: ServerProcess, account: dict[str, Any]) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {account['api_key']}"}, timeout=30)


def wait_calls(c: httpx.Client, ident: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        doc: dict[str, Any] = c.get("/api/Voice/GetStatus", params={"ID": ident}).json()
        if all(call["Status"] in FINAL for call in doc["Calls"]) or time.monotonic() > deadline:
            return doc
        time.sleep(0.2)


def records_for(receiver: Receiver, ident: str, count: int, seconds: float = 20) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with receiver.lock:
            found = {b["MobileNo"]: b for _, b in receiver.accepted if b.get("ID") == ident}
        if len(found) >= count:
            return found
        time.sleep(0.1)
    return found


def test_the_vendor_sample_call_reaches_each_outcome_with_one_signed_record(
    voice_server: tuple[ServerProcess, Receiver, dict[str, Any]],
) -> None:
    server, receiver, account = voice_server
    # The vendor's sample body, broken form and all, with the reserved test numbers.
    numbers = ", ".join(f'{{"MobileNo" : "+15005550{n:03d}"}}' for n in range(6))
    body = (
        f'"Destination" : {{ [{numbers}, {{"MobileNo" : "0016175551212"}}, {{"MobileNo" : "12"}}], '
        '"Message" : "Welcome to Optimum Measures Voice solution", "Sender" : "00919833111380", '
        '"Locale" : "en-US", "RingTimeout" : 5 }'
    )
    with client(server, account) as c:
        r = c.post("/api/Voice/Call", content=body)
        assert r.status_code == 200, r.text
        ident = r.json()["ID"]
        assert r.json() == {"ID": ident, "Status": "Received"}
        doc = wait_calls(c, ident, 40)
    got = {call["MobileNo"]: (call["Status"], call["Reason"]) for call in doc["Calls"]}
    assert got == {
        "+15005550000": ("Answered", "NA"),
        "+15005550001": ("Busy", "NA"),
        "+15005550002": ("NoAnswer", "Timeout"),
        "+15005550003": ("Failed", "Blocked"),
        "+15005550004": ("Failed", "General Error"),
        "+15005550005": ("Answered", "CallerHangUp"),
        "0016175551212": ("Answered", "NA"),
        "12": ("Failed", "General Error"),  # not a valid number
    }
    dialled = [call for call in doc["Calls"] if call["MobileNo"] != "12"]
    assert all(call["Simulated"] and call["Trunk"] == "sim" for call in dialled)
    answered = next(call for call in doc["Calls"] if call["MobileNo"] == "+15005550000")
    assert int(answered["Duration"]) >= 2  # the sample sentence spoken by espeak-ng takes seconds

    records = records_for(receiver, ident, 8)
    assert set(records) == set(got)
    assert receiver.bad_signatures == 0
    for number, record in records.items():
        assert list(record) == CDR_KEYS
        assert (record["Status"], record["Reason"]) == got[number]
    call = next(call for call in doc["Calls"] if call["MobileNo"] == "+15005550000")
    assert records["+15005550000"]["GUID"] == call["GUID"]
    assert records["+15005550000"]["Duration"] == call["Duration"]
    assert records["+15005550001"]["AnswerTime"] == "" and records["+15005550001"]["Calltime"] != ""
    with receiver.lock:
        assert sum(1 for _, b in receiver.accepted if b.get("ID") == ident) == 8  # one record per call


def sine_wav(seconds: float, rate: int = 44_100) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate)))
        w.writeframes(b"".join(struct.pack("<hh", s, s) for s in frames))
    return out.getvalue()


def test_a_campaign_uploaded_as_wav_is_played_and_can_be_deleted(
    voice_server: tuple[ServerProcess, Receiver, dict[str, Any]],
) -> None:
    server, _, account = voice_server
    with client(server, account) as c:
        r = c.post(
            "/api/Campaigns", params={"Name": "promo"}, content=sine_wav(2.5), headers={"Content-Type": "audio/wav"}
        )
        assert r.status_code == 201, r.text
        campaign = r.json()
        assert campaign["Source"] == "wav" and abs(campaign["Duration"] - 2.5) < 0.1
        body = {"Destination": [{"MobileNo": "+4915112345678"}], "CampaignID": campaign["CampaignID"], "Sender": "1"}
        ident = c.post("/api/Voice", json=body).json()["ID"]
        doc = wait_calls(c, ident, 20)
        [call] = doc["Calls"]
        assert (call["Status"], call["Reason"], call["Duration"]) == ("Answered", "NA", "2")
        assert c.delete(f"/api/Campaigns/{campaign['CampaignID']}").status_code == 204
        again = c.post("/api/Voice", json=body)
        assert again.status_code == 400 and again.json()["ErrorID"] == "5002"
        assert again.json()["ID"] != ident


def test_a_ringing_call_is_cancelled_through_the_api(
    voice_server: tuple[ServerProcess, Receiver, dict[str, Any]],
) -> None:
    server, receiver, account = voice_server
    with client(server, account) as c:
        body = {"Destination": ["+15005550002"], "Message": "hi", "Locale": "en-US", "Sender": "1", "RingTimeout": 60}
        ident = c.post("/api/Voice/Call", json=body).json()["ID"]
        deadline = time.monotonic() + 10
        while c.get("/api/Voice/GetStatus", params={"ID": ident}).json()["Status"] != "Dialing":
            assert time.monotonic() < deadline, "the call never started ringing"
            time.sleep(0.1)
        r = c.post("/api/Voice/Cancel", params={"ID": ident})
        assert r.status_code == 200 and r.json()["Stopping"] == 1, r.text
        doc = wait_calls(c, ident, 5)  # not the 60 s of ringing
    [call] = doc["Calls"]
    assert (call["Status"], call["Reason"]) == ("Failed", "Cancel")
    assert records_for(receiver, ident, 1)["+15005550002"]["Reason"] == "Cancel"


def test_the_cli_places_a_call_and_waits_for_its_record(
    voice_server: tuple[ServerProcess, Receiver, dict[str, Any]], tmp_path: Path
) -> None:
    server, _, account = voice_server
    env = {"SWITCHBOARD_URL": server.url, "SWITCHBOARD_API_KEY": account["api_key"]}
    placed = json.loads(cli("call", "--to", "+15005550001", "-s", "+14155550100", "-m", "hi", "-l", "en-US", env=env))
    status = json.loads(cli("calls", "status", placed["ID"], "--wait", "20", env=env))
    assert [(c["Status"], c["Reason"]) for c in status["Calls"]] == [("Busy", "NA")]
    wav = tmp_path / "hello.wav"
    wav.write_bytes(sine_wav(0.5, rate=8000))
    made = json.loads(cli("campaigns", "create", "--wav", str(wav), env=env))
    listed = json.loads(cli("campaigns", "list", env=env))
    assert made["CampaignID"] in [c["CampaignID"] for c in listed["Campaigns"]]
