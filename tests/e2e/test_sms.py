"""The server as a subprocess, spoken to over HTTP the way clients do."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from switchboard.testing import ServerProcess

FINAL = {"Delivered", "Undelivered", "Expired", "Rejected", "Failed", "Cancelled"}

# The vendor's own sample, byte for byte in its shape: no outer braces, the array inside braces, and a
# trailing comma for good measure.
VENDOR_SAMPLE = """
    "Destination" : { [{"MobileNo" : "0016175551212"}, {"MobileNo" : "+1 500 555 0001"},
    {"MobileNo" : "15005550002"}, {"MobileNo" : "0015005550003"}, {"MobileNo" : "12345"},
    {"MobileNo" : "+15005550005"},], "Message" :
    "Welcome to Optimum Measures meassaging solution", "Sender" : "OM", "ReferenceID" : "ID09890",
    "CallBack" : "No" }
"""


def bearer(account: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['api_key']}"}


def wait_final(client: httpx.Client, ident: str, headers: dict[str, str], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/api/SMS/GetStatus", params={"ID": ident}, headers=headers)
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        if all(d["Status"] in FINAL for d in doc["Destinations"]) or time.monotonic() > deadline:
            return doc
        time.sleep(0.2)


def test_the_vendor_sample_reaches_each_expected_final_status(server: ServerProcess, account: dict[str, Any]) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.post("/api/SMS/Send", content=VENDOR_SAMPLE, headers=bearer(account))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["Status"] == "Received" and body["ID"].isdigit()
        doc = wait_final(client, body["ID"], bearer(account))
    got = [(d["MobileNo"], d["Status"], d["Error"]) for d in doc["Destinations"]]
    assert [(m, s) for m, s, _ in got] == [
        ("0016175551212", "Delivered"),
        ("+1 500 555 0001", "Undelivered"),
        ("15005550002", "Expired"),
        ("0015005550003", "Rejected"),
        ("12345", "Failed"),
        ("+15005550005", "Delivered"),
    ]
    assert got[4][2] == "International Number Invalid"
    assert doc["Destinations"][4]["ErrorLogsID"].isdigit()
    assert doc["ReferenceID"] == "ID09890"
    assert doc["Status"] in {"Failed", "Rejected", "Undelivered", "Expired"}  # the least advanced, not Delivered
    assert doc["Destinations"][0]["Delivery Date"] != "" and doc["Destinations"][1]["Delivery Date"] == ""
    assert all(d["Simulated"] for d in doc["Destinations"] if d["Carrier"])


def test_one_destination_reports_its_own_status_and_delivery_date(
    server: ServerProcess, account: dict[str, Any]
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.post(
            "/api/SMS",
            json={"destination": "+16175551212", "message": "hi", "sender": "OM"},
            headers={"X-API-Key": account["api_key"]},
        )
        assert r.status_code == 200, r.text
        doc = wait_final(client, r.json()["ID"], bearer(account))
    assert doc["Status"] == "Delivered"
    assert doc["Delivery Date"] == doc["Destinations"][0]["Delivery Date"] != ""


def test_vendor_style_credentials_in_the_query_string(server: ServerProcess, account: dict[str, Any]) -> None:
    params = {"UserName": account["account"], "Password": account["api_key"]}
    body = {"Destination": ["+16175551212"], "Message": "hi", "Sender": "OM"}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        ok = client.post("/api/SMS/Send", params=params, json=body)
        wrong_user = client.post("/api/SMS/Send", params={**params, "UserName": "someone"}, json=body)
    assert ok.status_code == 200
    assert wrong_user.status_code == 401
    assert wrong_user.json() == {"Error ID": "128", "Status": "Received with error - Authentication failed"}
    assert account["api_key"] not in server.log()  # credentials never reach the log


def test_another_accounts_id_answers_like_one_that_does_not_exist(
    server: ServerProcess, account: dict[str, Any], other_account: dict[str, Any]
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        ident = client.post(
            "/api/SMS/Send",
            json={"Destination": "+16175551212", "Message": "hi", "Sender": "OM"},
            headers=bearer(account),
        ).json()["ID"]
        foreign = client.get("/api/SMS/GetStatus", params={"ID": ident}, headers=bearer(other_account))
        missing = client.get("/api/SMS/GetStatus", params={"ID": "12345"}, headers=bearer(other_account))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json() == {"Error ID": "131", "Status": "Received with error - ID not found"}


@pytest.mark.parametrize(
    ("body", "code", "error_id"),
    [
        (b'{"Destination": [], "Message": "x", "Sender": "OM"}', 400, "121"),
        (b'{"Destination": ["+16175551212"], "Sender": "OM"}', 400, "122"),
        (b'{"Destination": ["+16175551212"], "Message": "x"}', 400, "125"),
        (b"[1, 2, 3]", 400, "120"),
        (b"not json at all", 400, "120"),
        (b"\xff\xfe\x00", 400, "120"),
        (b'{"Destination": "+16175551212", "Message": "x", "Sender": "OM", "CallBack": "Maybe"}', 400, "127"),
        (b'{"Destination": "+16175551212", "Message": "x", "Sender": "OM", "ScheduleAt": "tomorrow"}', 400, "132"),
        (b'{"Destination": "+16175551212", "Message": "x", "Sender": "OM", "ValidityPeriod": -1}', 400, "133"),
    ],
)
def test_bad_requests_answer_the_documented_error(
    server: ServerProcess, account: dict[str, Any], body: bytes, code: int, error_id: str
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.post("/api/SMS/Send", content=body, headers=bearer(account))
    assert r.status_code == code
    assert r.json()["Error ID"] == error_id
    assert r.json()["Status"].startswith("Received with error - ")


def test_a_body_over_one_mebibyte_is_refused_with_413(server: ServerProcess, account: dict[str, Any]) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.post("/api/SMS/Send", content=b"x" * (1024 * 1024 + 1), headers=bearer(account))
    assert r.status_code == 413 and r.json()["Error ID"] == "130"


def test_a_revoked_key_stops_working(server: ServerProcess) -> None:
    from switchboard.testing import cli

    created = server.create_account("initech")
    keys = cli("keys", "list", "initech", "--json", "--config", str(server.config_path))
    import json

    key_id = json.loads(keys)[0]["key_id"]
    cli("keys", "revoke", "initech", key_id, "--config", str(server.config_path))
    body = {"Destination": "+16175551212", "Message": "hi", "Sender": "OM"}
    deadline = time.monotonic() + 15  # another process revoked it: the server's cache forgets within 10 s
    with httpx.Client(base_url=server.url, timeout=10) as client:
        while True:
            r = client.post("/api/SMS/Send", json=body, headers=bearer(created))
            if r.status_code == 401 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert r.status_code == 401


def test_idempotency_key_answers_the_first_id_again(server: ServerProcess, account: dict[str, Any]) -> None:
    body = {"Destination": "+16175551212", "Message": "once", "Sender": "OM"}
    headers = {**bearer(account), "Idempotency-Key": "order-42"}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        first = client.post("/api/SMS/Send", json=body, headers=headers)
        second = client.post("/api/SMS/Send", json=body, headers=headers)
    assert first.json()["ID"] == second.json()["ID"]
    assert second.headers.get("idempotent-replayed") == "true"


def test_a_scheduled_send_waits_until_its_time(server: ServerProcess, account: dict[str, Any]) -> None:
    from datetime import UTC, datetime, timedelta

    at = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%d %H:%M:%S")
    body = {"Destination": "+16175551212", "Message": "later", "Sender": "OM", "ScheduleAt": at}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        ident = client.post("/api/SMS/Send", json=body, headers=bearer(account)).json()["ID"]
        early = client.get("/api/SMS/GetStatus", params={"ID": ident}, headers=bearer(account)).json()
        late = wait_final(client, ident, bearer(account))
    assert early["Status"] == "Scheduled"
    assert late["Status"] == "Delivered"


def test_a_cancelled_scheduled_send_is_never_submitted(server: ServerProcess, account: dict[str, Any]) -> None:
    from datetime import UTC, datetime, timedelta

    from switchboard.testing import cli

    at = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%d %H:%M:%S")
    body = {"Destination": ["0016175551212", "+16175551213", "12"], "Message": "m", "Sender": "OM", "ScheduleAt": at}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        ident = client.post("/api/SMS/Send", json=body, headers=bearer(account)).json()["ID"]
        # One number by the CLI, written another way; then the rest through the API.
        env = {"SWITCHBOARD_URL": server.url, "SWITCHBOARD_API_KEY": account["api_key"]}
        one = json.loads(cli("cancel", ident, "--to", "+16175551212", env=env))
        assert one == {
            "ID": ident,
            "Cancelled": 1,
            "Destinations": [{"MobileNo": "0016175551212", "Status": "Cancelled"}],
        }
        rest = client.post("/api/SMS/Cancel", params={"ID": ident}, headers=bearer(account)).json()
        assert rest["Cancelled"] == 1
        assert [d["Status"] for d in rest["Destinations"]] == ["Cancelled", "Cancelled", "Failed"]
        time.sleep(3)  # past its time: a worker would have sent it by now
        doc = client.get("/api/SMS/GetStatus", params={"ID": ident}, headers=bearer(account)).json()
    assert [(d["Status"], d["Carrier"]) for d in doc["Destinations"]] == [
        ("Cancelled", ""),
        ("Cancelled", ""),
        ("Failed", ""),
    ]
    assert doc["Status"] == "Cancelled"  # the least advanced of its destinations


def test_a_cancel_after_hand_off_changes_nothing(
    server: ServerProcess, account: dict[str, Any], other_account: dict[str, Any]
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        ident = client.post(
            "/api/SMS/Send",
            json={"Destination": "+16175551212", "Message": "m", "Sender": "OM"},
            headers=bearer(account),
        ).json()["ID"]
        assert wait_final(client, ident, bearer(account))["Status"] == "Delivered"
        r = client.post("/api/SMS/Cancel", json={"ID": ident}, headers=bearer(account))
        assert r.status_code == 200, r.text
        assert r.json() == {
            "ID": ident,
            "Cancelled": 0,
            "Destinations": [{"MobileNo": "+16175551212", "Status": "Delivered"}],
        }
        # Another account's ID, an unknown one and no key answer as GetStatus does.
        assert (
            client.post("/api/SMS/Cancel", params={"ID": ident}, headers=bearer(other_account)).json()["Error ID"]
            == "131"
        )
        assert client.post("/api/SMS/Cancel", params={"ID": "12x"}, headers=bearer(account)).status_code == 404
        assert client.post("/api/SMS/Cancel", params={"ID": ident}).status_code == 401
        assert client.get("/api/SMS/Cancel", params={"ID": ident}, headers=bearer(account)).status_code == 405


def test_operations_endpoints(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.get("/HealthZ/").status_code == 200  # paths in any case, with or without a slash
        assert client.get("/readyz").json() == {"status": "ready", "database": "sqlite"}
        spec = client.get("/openapi.json").json()
        assert {"/api/SMS/Send", "/api/Account", "/api/Callbacks/{ID}/Replay"} <= set(spec["paths"])
        assert "openapi.json" in client.get("/docs").text
        assert client.get("/api/SMS/Send").status_code == 405
        assert client.get("/nope").status_code == 404


def test_the_cli_sends_and_waits_for_the_status(server: ServerProcess, account: dict[str, Any]) -> None:
    import json

    from switchboard.testing import cli

    env = {"SWITCHBOARD_URL": server.url, "SWITCHBOARD_API_KEY": account["api_key"]}
    sent = json.loads(cli("send", "--to", "+16175551212", "--to", "+15005550003", "-m", "hi", "-s", "OM", env=env))
    assert sent["Status"] == "Received"
    status = json.loads(cli("status", sent["ID"], "--wait", "10", env=env))
    assert [d["Status"] for d in status["Destinations"]] == ["Delivered", "Rejected"]


def test_get_status_by_post_reads_the_id_or_reference_from_a_json_body(
    server: ServerProcess, account: dict[str, Any]
) -> None:
    body = (
        '{"Destination": [{"MobileNo": "+16175551212"}], "Message": "hi", "Sender": "OM", "ReferenceID": "post-ref-1"}'
    )
    with httpx.Client(base_url=server.url, timeout=10) as client:
        ident = client.post("/api/SMS/Send", content=body, headers=bearer(account)).json()["ID"]
        by_id = client.post("/api/SMS/GetStatus", content=json.dumps({"id": int(ident)}), headers=bearer(account))
        by_reference = client.post(
            "/api/SMS/GetStatus", content='{"ReferenceID": "post-ref-1"}', headers=bearer(account)
        )
        # The query string wins over the body; an ID out of range is not found, not an error of the server.
        query_wins = client.post(
            "/api/SMS/GetStatus", params={"ID": ident}, content='{"ID": "1"}', headers=bearer(account)
        )
        too_large = client.post("/api/SMS/GetStatus", content=json.dumps({"ID": str(2**63)}), headers=bearer(account))
        unauthenticated = client.post("/api/SMS/GetStatus", content=json.dumps({"ID": ident}))
    assert by_id.status_code == 200 and by_id.json()["ID"] == ident
    assert by_reference.status_code == 200 and by_reference.json()["ID"] == ident
    assert query_wins.status_code == 200 and query_wins.json()["ID"] == ident
    assert too_large.json()["Error ID"] == "131"
    assert unauthenticated.json()["Error ID"] == "128"
