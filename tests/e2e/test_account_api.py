"""`/api/Account` and `/api/Callbacks` against the session server (private callback targets refused there),
and the CLI commands that call them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from switchboard.testing import ServerProcess, cli

PUBLIC_URL = "https://93.184.216.34/hooks/sms"  # an address literal: checked without a DNS lookup


@pytest.fixture
def client(server: ServerProcess, account: dict[str, Any]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {account['api_key']}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as c:
        yield c


@pytest.fixture
def other(server: ServerProcess, other_account: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": other_account["api_key"]}, timeout=10) as c:
        yield c


def test_the_account_shows_its_urls_and_secret(client: httpx.Client, account: dict[str, Any]) -> None:
    doc = client.get("/api/account/").json()  # any letter case, trailing slash
    assert doc["Name"] == "acme"
    assert doc["WebhookSecret"].startswith("whsec_")
    assert set(doc) == {
        "Name", "SmsCallbackUrl", "SmsCallbackDisabled", "VoiceCallbackUrl", "VoiceCallbackDisabled",
        "InboundCallbackUrl", "InboundCallbackDisabled", "WebhookSecret", "PreviousSecretValidUntil",
        "OptOutReply", "OptInReply", "HelpReply",
    }  # fmt: skip
    assert doc["HelpReply"] == "acme: reply STOP to unsubscribe, START to subscribe again."  # the default


def test_put_sets_and_clears_each_url_on_its_own(client: httpx.Client) -> None:
    r = client.put("/api/Account", json={"SmsCallbackUrl": PUBLIC_URL})
    assert r.status_code == 200, r.text
    assert (r.json()["SmsCallbackUrl"], r.json()["VoiceCallbackUrl"]) == (PUBLIC_URL, "")
    r = client.put("/api/Account", content=b'{"voicecallbackurl": "https://93.184.216.34/voice",}')  # lenient
    assert (r.json()["SmsCallbackUrl"], r.json()["VoiceCallbackUrl"]) == (PUBLIC_URL, "https://93.184.216.34/voice")
    r = client.put("/api/Account", json={"SmsCallbackUrl": "", "VoiceCallbackUrl": None})
    assert (r.json()["SmsCallbackUrl"], r.json()["VoiceCallbackUrl"]) == ("", "")
    r = client.put("/api/Account", json={"inboundCallbackURL": PUBLIC_URL})
    assert (r.json()["InboundCallbackUrl"], r.json()["SmsCallbackUrl"], r.json()["VoiceCallbackUrl"]) == (
        PUBLIC_URL, "", "")  # fmt: skip
    r = client.put("/api/Account", json={"InboundCallbackUrl": ""})
    assert r.json()["InboundCallbackUrl"] == ""


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"not json", 400, "Invalid Json"),
        (b"[1]", 400, "Invalid Json"),
        (b'{"SmsCallbackUrl": 5}', 400, "SmsCallbackUrl must be a URL string"),
        (b'{"CallbackUrl": "https://93.184.216.34/"}', 400, "Unknown field 'CallbackUrl'"),
        (b'{"SmsCallbackUrl": "ftp://93.184.216.34/"}', 400, "refused"),
        (b'{"SmsCallbackUrl": "https://169.254.169.254/latest/meta-data"}', 400, "refused"),
        (b'{"InboundCallbackUrl": "https://169.254.169.254/latest/meta-data"}', 400, "InboundCallbackUrl refused"),
        (b'{"InboundCallbackUrl": ["https://93.184.216.34/"]}', 400, "InboundCallbackUrl must be a URL string"),
        (b'{"SmsCallbackUrl": "https://user:pw@93.184.216.34/"}', 400, "refused"),
        (b'{"SmsCallbackUrl": "https://no-such-host.invalid/"}', 400, "refused"),
        (b'{"SmsCallbackUrl": "' + b"x" * (1024 * 1024) + b'"}', 413, "Request body too large"),
    ],
)
def test_put_refuses_bad_input_with_the_error_shape_and_changes_nothing(
    client: httpx.Client, body: bytes, status: int, error: str
) -> None:
    before = client.get("/api/Account").json()
    r = client.put("/api/Account", content=body)
    assert r.status_code == status
    assert error in r.json()["Error"]
    assert client.get("/api/Account").json() == before


def test_rotating_the_secret_keeps_the_old_one_valid_for_a_day(client: httpx.Client) -> None:
    old = client.get("/api/Account").json()["WebhookSecret"]
    r = client.post("/api/Account/RotateSecret")
    assert r.status_code == 200
    assert r.json()["WebhookSecret"] not in (old, "")
    assert r.json()["PreviousSecretValidUntil"] != ""
    again = client.post("/api/Account/RotateSecret")  # the old secret would stop working at once
    assert again.status_code == 409 and "rotated less than 24 hours ago" in again.json()["Error"]
    assert client.get("/api/Account").json()["WebhookSecret"] == r.json()["WebhookSecret"]


def test_account_endpoints_need_a_key(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as anonymous:
        for method, path in [
            ("GET", "/api/Account"),
            ("PUT", "/api/Account"),
            ("POST", "/api/Account/RotateSecret"),
            ("GET", "/api/Callbacks"),
            ("GET", "/api/Callbacks/1"),
            ("POST", "/api/Callbacks/1/Replay"),
        ]:
            r = anonymous.request(method, path, headers={"Authorization": "Bearer sb_wrong"})
            assert (r.status_code, r.json()) == (401, {"Error": "Authentication failed"}), path


def test_callbacks_are_listed_shown_and_replayed_only_for_their_account(
    client: httpx.Client, other: httpx.Client
) -> None:
    client.put("/api/Account", json={"SmsCallbackUrl": ""})  # no URL: the callback fails at once, visibly
    r = client.post(
        "/api/SMS/Send", json={"Destination": "12", "Message": "x", "Sender": "OM", "CallBack": "Yes"}
    )  # an invalid number: its Failed callback is written with the request
    assert r.status_code == 200
    message_id = r.json()["ID"]
    failed: dict[str, Any] = {}
    for _ in range(100):
        listing = client.get("/api/Callbacks", params={"Status": "failed"}).json()["Callbacks"]
        failed = next((c for c in listing if c["Body"]["ID"] == message_id), {})
        if failed:
            break
        time.sleep(0.1)
    assert failed["LastError"] == "the account has no SMS callback URL"
    assert failed["Body"]["Status"] == "Failed" and failed["Sequence"] == 1

    shown = client.get(f"/api/Callbacks/{failed['ID']}").json()
    assert [h["Error"] for h in shown["History"]] == ["the account has no SMS callback URL"]
    assert other.get(f"/api/Callbacks/{failed['ID']}").status_code == 404
    assert other.post(f"/api/Callbacks/{failed['ID']}/Replay").status_code == 404
    assert all(c["ID"] != failed["ID"] for c in other.get("/api/Callbacks").json()["Callbacks"])

    r = client.post(f"/api/Callbacks/{failed['ID']}/Replay")
    assert r.json() == {"ID": failed["ID"], "State": "pending"}
    again = client.post(f"/api/Callbacks/{failed['ID']}/Replay")  # pending now (or failed again already)
    assert again.status_code in (200, 409)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/Callbacks?Status=lost", 400),
        ("/api/Callbacks?Limit=0", 400),
        ("/api/Callbacks?Limit=501", 400),
        ("/api/Callbacks?Before=x", 400),
        ("/api/Callbacks/99999999999999999999", 404),
        ("/api/Callbacks/abc", 404),
        ("/api/Callbacks/%C2%B2", 404),
    ],
)
def test_bad_callback_queries_get_the_error_shape(client: httpx.Client, path: str, status: int) -> None:
    r = client.get(path)
    assert r.status_code == status
    assert set(r.json()) == {"Error"}


def test_the_cli_shows_the_account_and_lists_callbacks(server: ServerProcess, account: dict[str, Any]) -> None:
    env = {"SWITCHBOARD_URL": server.url, "SWITCHBOARD_API_KEY": account["api_key"]}
    assert '"Name": "acme"' in cli("account", "show", env=env)
    assert '"SmsCallbackUrl": "https://93.184.216.34/cli"' in cli(
        "account", "set", "--sms-callback-url", "https://93.184.216.34/cli", env=env
    )
    assert '"Callbacks"' in cli("callbacks", "list", "--status", "failed", env=env)
    with pytest.raises(RuntimeError, match=r"failed \(1\)"):  # the error document, and exit status 1
        cli("callbacks", "replay", "999999999999", env=env)


def test_client_commands_print_what_was_asked_and_no_http_log(server: ServerProcess, account: dict[str, Any]) -> None:
    """httpx logs every request at INFO (`INFO httpx: HTTP Request: GET ...`): not for a client command."""
    env = {"SWITCHBOARD_URL": server.url, "SWITCHBOARD_API_KEY": account["api_key"]}
    for args in (("account", "show"), ("callbacks", "list"), ("status", "1234567890")):
        done = subprocess.run(
            [sys.executable, "-m", "switchboard", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
            check=False,
        )
        assert done.stdout.lstrip().startswith("{"), done.stdout
        assert done.stderr == "", done.stderr
