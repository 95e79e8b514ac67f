"""The voice and campaign endpoints, driven through the real ASGI app over a real `VoiceService` and a real
`SqliteStore` (a fresh copy of one migrated database per test); text to speech is a fake engine."""

from __future__ import annotations

import asyncio
import io
import logging
import math
import shutil
import threading
import time
import wave
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest

from switchboard.accounts import Accounts
from switchboard.api import campaigns
from switchboard.api.account import AccountApi
from switchboard.api.app import ApiSettings, ASGIApp, create_app
from switchboard.api.http import Message
from switchboard.api.ratelimit import RateLimiter
from switchboard.api.sms import SmsApi
from switchboard.api.voice import VoiceApi
from switchboard.domain.clock import format_time
from switchboard.domain.ids import IdGenerator
from switchboard.domain.statuses import CallReason, CallStatus
from switchboard.errors import RenderFailed, StoreError
from switchboard.sms.service import SmsService
from switchboard.store import migrate
from switchboard.store.base import Store
from switchboard.store.records import CallEnd, CallProgress
from switchboard.store.sqlite import SqliteStore
from switchboard.voice import tts
from switchboard.voice.prompts import AudioLibrary
from switchboard.voice.service import VoiceService
from tests.clock import FakeClock

# The vendor document's Voice Call samples, exactly as printed (neither is JSON).
VENDOR_MESSAGE = b"""
            "Destination" : {
                [{"MobileNo" : "0016175551212"}, {"MobileNo" : "0016175551212"}], "Message" : "Welcome to Optimum Measures Voice solution", "Sender" : "00919833111380", "Locale" : "hi-IN"
            }
"""  # noqa: E501
VENDOR_CAMPAIGN = b"""
         "Destination" : {
             [{"MobileNo" : "0016175551212"}, {"MobileNo" : "0016175551212"}], "CampaignID" : "%s", "Sender" : "00919833111380"
            }
"""  # noqa: E501
UNKNOWN_GUID = "fc46b682-b939-4fc2-81c3-891cfb23cd92"
SIMULATOR = "simulator"


class FakeEngine:
    """Speaks hi-IN and en-US: half a second of a 440 Hz tone at 16 kHz; "FAIL" in the text fails."""

    name = "fake"
    version = "1"
    _voices: ClassVar[dict[str, str]] = {"hi-IN": "hi", "en-US": "en-us"}

    def locale_voice(self, locale: str) -> str | None:
        return self._voices.get(locale)

    def locales(self) -> list[str]:
        return sorted(self._voices)

    async def render(self, text: str, *, locale: str, voice: str | None = None) -> tts.Rendered:
        if "FAIL" in text:
            raise RenderFailed("the fake engine was told to fail")
        t = np.arange(8000) / 16000
        return tts.Rendered(samples=(np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16), rate=16000)

    def close(self) -> None:
        pass


class FailingStore:
    """The real store, except that the named methods raise StoreError (the database is unreachable)."""

    def __init__(self, store: Store, failing: set[str]) -> None:
        self._store = store
        self._failing = failing

    def __getattr__(self, name: str) -> Any:
        if name in self._failing:

            async def fail(*args: Any, **kwargs: Any) -> Any:
                raise StoreError("database is unreachable")

            return fail
        return getattr(self._store, name)


@dataclass
class Env:
    store: SqliteStore
    clock: FakeClock
    ids: IdGenerator
    accounts: Accounts
    voice: VoiceService
    client: httpx.AsyncClient
    key: str
    other_key: str
    account_name: str = "acme"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def other(self) -> dict[str, str]:
        return {"X-API-Key": self.other_key}

    def app(self, *, voice: VoiceService | None = None, rate: float = 0, with_voice: bool = True) -> ASGIApp:
        voice_api = VoiceApi(
            accounts=self.accounts,
            voice=voice or self.voice,
            limiter=RateLimiter(rate=rate, burst=1, clock=self.clock),
            clock=self.clock,
            simulated_trunks=frozenset({SIMULATOR}),
        )
        sms_api = SmsApi(
            accounts=self.accounts,
            sms=SmsService(store=self.store, ids=self.ids, clock=self.clock),
            limiter=RateLimiter(rate=0, burst=1, clock=self.clock),
            clock=self.clock,
            simulated_carriers=frozenset({SIMULATOR}),
        )
        return create_app(
            sms=sms_api,
            account=AccountApi(accounts=self.accounts, store=self.store, clock=self.clock),
            store=self.store,
            settings=ApiSettings(access_log=False, version="test"),
            voice=voice_api if with_voice else None,
        )

    async def call(self, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        content = body if isinstance(body, bytes) else None
        payload = body if isinstance(body, dict) else None
        return await self.client.post(
            "/api/Voice/Call", content=content, json=payload, headers=self.auth | (headers or {})
        )

    async def status(self, ident: str) -> dict[str, Any]:
        r = await self.client.get("/api/Voice/GetStatus", params={"ID": ident}, headers=self.auth)
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("template") / "switchboard.db"
    with ThreadPoolExecutor(1) as pool:  # Alembic away from the test's event loop
        pool.submit(migrate.upgrade, f"sqlite:///{path}").result(timeout=60)
    yield path


@pytest.fixture
async def env(template: Path, tmp_path: Path) -> AsyncIterator[Env]:
    path = tmp_path / "switchboard.db"
    shutil.copyfile(template, path)
    store = SqliteStore(path=str(path))
    await store.open()
    clock = FakeClock()
    ids = IdGenerator(node=1, clock_ms=clock.now_ms)
    accounts = Accounts(store=store, ids=ids, clock=clock)
    _, key = await accounts.create("acme")
    _, other_key = await accounts.create("other")
    library = AudioLibrary(engine=FakeEngine(), cache=tts.TtsCache(tmp_path / "tts"), store=store)
    voice = VoiceService(store=store, ids=ids, clock=clock, audio=library)
    e = Env(store, clock, ids, accounts, voice, httpx.AsyncClient(base_url="http://t"), key.secret, other_key.secret)
    e.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=e.app()), base_url="http://t")
    try:
        yield e
    finally:
        await e.client.aclose()
        await store.close()


def wav_bytes(*, rate: int = 16000, seconds: float = 1.0, width: int = 2) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    samples = (np.sin(2 * math.pi * 440 * t) * 10000).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes() if width == 2 else (samples // 256 + 128).astype(np.uint8).tobytes())
    return buffer.getvalue()


async def text_campaign(env: Env, headers: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    body = {"Name": "welcome", "Text": "Welcome to Optimum Measures", "Locale": "hi-IN"} | fields
    r = await env.client.post("/api/Campaigns", json=body, headers=headers or env.auth)
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


def assert_voice_error(r: httpx.Response, status: int, error_id: str, message: str) -> str:
    """The voice error shape; returns its ID."""
    assert r.status_code == status, r.text
    doc = r.json()
    assert list(doc) == ["ID", "ErrorID", "Message"]
    assert doc["ErrorID"] == error_id
    assert doc["Message"] == f"Received with error - {message}"
    ident: str = doc["ID"]
    return ident


# Call


async def test_the_vendors_message_sample_is_received_and_its_calls_are_queued(env: Env) -> None:
    r = await env.call(VENDOR_MESSAGE)
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["ID", "Status"] and r.json()["Status"] == "Received"
    doc = await env.status(r.json()["ID"])
    assert doc["ID"] == r.json()["ID"] and doc["Status"] == "Received" and doc["ReferenceID"] == ""
    assert doc["DateTime"] == format_time(env.clock.now_ms())
    assert [c["MobileNo"] for c in doc["Calls"]] == ["0016175551212", "0016175551212"]
    call = doc["Calls"][0]
    assert list(call) == [
        "GUID", "MobileNo", "Status", "Reason", "Calltime", "AnswerTime", "Duration", "Trunk", "Simulated", "Detail"
    ]  # fmt: skip
    assert (call["Status"], call["Reason"], call["Calltime"], call["Duration"], call["Simulated"]) == (
        "Received", "", "", "0", False
    )  # fmt: skip
    assert len({c["GUID"] for c in doc["Calls"]}) == 2


async def test_the_vendors_campaign_sample_is_received(env: Env) -> None:
    campaign = await text_campaign(env)
    r = await env.client.post("/api/Voice", content=VENDOR_CAMPAIGN % campaign["CampaignID"].encode(), headers=env.auth)
    assert r.status_code == 200, r.text
    assert r.json()["Status"] == "Received"


async def test_vendor_style_credentials_in_the_query_string(env: Env) -> None:
    params = {"UserName": "acme", "Password": env.key}
    r = await env.client.post("/api/Voice/Call", params=params, content=VENDOR_MESSAGE)
    assert r.status_code == 200, r.text
    r = await env.client.post("/api/Voice/Call", params={"UserName": "other", "Password": env.key}, content=b"{}")
    assert_voice_error(r, 401, "5006", "Authentication failed")


def vendor(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "Destination": [{"MobileNo": "0016175551212"}, {"MobileNo": "0016175551212"}],
        "Message": "Welcome to Optimum Measures Voice solution",
        "Sender": "00919833111380",
        "Locale": "hi-IN",
    }
    for key, value in changes.items():
        if value is ...:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


ERRORS: list[tuple[str, bytes | dict[str, Any], str, str]] = [
    ("not json", b'"Destination": {[', "5001", "Invalid Json"),
    ("a list", b"[1, 2]", "5001", "Invalid Json"),
    ("reference id", vendor(ReferenceID=["x"]), "5001", "Invalid Json"),
    ("no destination", vendor(Destination=...), "5000", "Parameter Destination/Mobile No is missing or empty"),
    ("too many", vendor(Destination=["+16175551212"] * 1001), "5005", "Too many destinations (at most 1000)"),
    ("no sender", vendor(Sender=""), "5000", "Parameter Sender is missing or empty"),
    ("sender", vendor(Sender="OM"), "5009", "Parameter Sender is invalid"),
    (
        "both",
        vendor(CampaignID=UNKNOWN_GUID),
        "5003",
        "Message or CampaignID, either of the two should be present",
    ),
    ("neither", vendor(Message=...), "5000", "Parameter Message or CampaignID is missing or empty"),
    ("long", vendor(Message="x" * 2001), "5010", "Parameter Message is too long"),
    ("no locale", vendor(Locale=...), "5000", "Parameter Locale is missing or empty"),
    ("locale", vendor(Locale="fr-FR"), "5004", "Locale is not supported"),
    ("callback", vendor(CallBack="Maybe"), "5011", "Parameter CallBack is invalid"),
    ("private callback", vendor(CallBack="https://127.0.0.1/cdr"), "5011", "Parameter CallBack is invalid"),
    ("ring timeout", vendor(RingTimeout=3), "5012", "Parameter RingTimeout is invalid"),
    ("unknown campaign", vendor(Message=..., CampaignID=UNKNOWN_GUID), "5002", "Invalid Campaign"),
    ("not a guid", vendor(Message=..., CampaignID="welcome"), "5002", "Invalid Campaign"),
]


@pytest.mark.parametrize(("body", "error_id", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
async def test_every_error_answers_its_status_and_shape_with_an_id(
    env: Env, body: bytes | dict[str, Any], error_id: str, message: str
) -> None:
    ident = assert_voice_error(await env.call(body), 400, error_id, message)
    assert ident.isdigit()


async def test_a_refused_requests_id_is_logged_and_unique(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="switchboard.api"):
        first = assert_voice_error(await env.call(vendor(Sender="OM")), 400, "5009", "Parameter Sender is invalid")
        second = assert_voice_error(await env.call(vendor(Sender="OM")), 400, "5009", "Parameter Sender is invalid")
    assert first != second
    lines = [r.getMessage() for r in caplog.records]
    assert any(first in line and "5009" in line and "acme" in line for line in lines), lines


async def test_5002_for_another_accounts_and_for_a_deleted_campaign(env: Env) -> None:
    foreign = await text_campaign(env, env.other)
    r = await env.call(vendor(Message=..., CampaignID=foreign["CampaignID"]))
    assert_voice_error(r, 400, "5002", "Invalid Campaign")
    mine = await text_campaign(env)
    guid = mine["CampaignID"]
    assert (await env.call(vendor(Message=..., CampaignID="{" + guid.upper() + "}"))).status_code == 200
    assert (await env.client.delete(f"/api/Campaigns/{guid}", headers=env.auth)).status_code == 204
    assert_voice_error(await env.call(vendor(Message=..., CampaignID=guid)), 400, "5002", "Invalid Campaign")


async def test_the_campaign_is_checked_after_callback_and_ring_timeout(env: Env) -> None:
    body = vendor(Message=..., CampaignID=UNKNOWN_GUID, RingTimeout=500)
    assert_voice_error(await env.call(body), 400, "5012", "Parameter RingTimeout is invalid")


async def test_authentication_comes_first(env: Env) -> None:
    r = await env.client.post("/api/Voice", content=b"not json")
    assert assert_voice_error(r, 401, "5006", "Authentication failed").isdigit()
    r = await env.client.post("/api/Voice", content=VENDOR_MESSAGE, headers={"Authorization": "Bearer sb_nope"})
    assert_voice_error(r, 401, "5006", "Authentication failed")


async def test_rate_limit_is_5007_with_retry_after_after_the_campaign_check(env: Env) -> None:
    transport = httpx.ASGITransport(app=env.app(rate=0.5))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.post("/api/Voice", content=VENDOR_MESSAGE, headers=env.auth)).status_code == 200
        r = await client.post("/api/Voice", json=vendor(Message=..., CampaignID=UNKNOWN_GUID), headers=env.auth)
        assert_voice_error(r, 400, "5002", "Invalid Campaign")
        r = await client.post("/api/Voice", content=VENDOR_MESSAGE, headers=env.auth)
        assert_voice_error(r, 429, "5007", "Rate limit exceeded")
        assert r.headers["retry-after"] == "2"


async def test_a_body_over_1_mib_is_5008(env: Env) -> None:
    r = await env.call(vendor(Message="x" * (1 << 20)))
    assert_voice_error(r, 413, "5008", "Request body too large")


@pytest.mark.parametrize("failing", ["accept_calls", "get_campaign"])
async def test_a_store_failure_is_5015_and_nothing_is_accepted(env: Env, failing: str) -> None:
    broken = VoiceService(
        store=FailingStore(env.store, {failing}),
        ids=env.ids,
        clock=env.clock,
        audio=AudioLibrary(engine=FakeEngine(), cache=tts.TtsCache(Path(env.store.path).parent / "tts2")),
    )
    body = VENDOR_MESSAGE if failing == "accept_calls" else VENDOR_CAMPAIGN % UNKNOWN_GUID.encode()
    transport = httpx.ASGITransport(app=env.app(voice=broken))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.post("/api/Voice", content=body, headers=env.auth)
    assert_voice_error(r, 503, "5015", "Service temporarily unavailable")


async def test_an_idempotency_key_answers_the_first_requests_id(env: Env) -> None:
    headers = {"Idempotency-Key": "order-17"}
    first = await env.call(VENDOR_MESSAGE, headers)
    again = await env.client.post("/api/Voice", content=VENDOR_MESSAGE, headers=env.auth | headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["ID"] == again.json()["ID"]
    assert "idempotent-replayed" not in first.headers and again.headers["idempotent-replayed"] == "true"
    assert len((await env.status(first.json()["ID"]))["Calls"]) == 2


# GetStatus


async def call_ids(env: Env, **changes: Any) -> tuple[str, list[int]]:
    r = await env.call(vendor(**changes))
    assert r.status_code == 200, r.text
    ident = r.json()["ID"]
    return ident, [int(ident) + 1 + i for i in range(len(changes.get("Destination", [1, 2])))]


async def test_get_status_reports_each_call_and_the_least_advanced_status(env: Env) -> None:
    ident, (first, second) = await call_ids(env, ReferenceID="ref-9")
    claimed = {c.id: c for c in await env.store.claim_calls(now=env.clock.now_ms(), limit=10, lease_ms=60_000)}
    start = env.clock.now_ms()
    await env.store.progress_calls([CallProgress(first, claimed[first].attempt, CallStatus.DIALING, start, SIMULATOR,
                                                 start + 60_000)])  # fmt: skip
    end = CallEnd(first, claimed[first].attempt, CallStatus.ANSWERED, CallReason.NA, start + 12_000, start,
                  start + 2_000, SIMULATOR, "played to the end")  # fmt: skip
    await env.store.end_calls([end])
    doc = await env.status(ident)
    assert doc["Status"] == "Received" and doc["ReferenceID"] == "ref-9"
    answered = doc["Calls"][0]
    assert {k: answered[k] for k in ("Status", "Reason", "Calltime", "AnswerTime", "Duration", "Trunk")} == {
        "Status": "Answered",
        "Reason": "NA",
        "Calltime": format_time(start),
        "AnswerTime": format_time(start + 2_000),
        "Duration": "10",
        "Trunk": SIMULATOR,
    }
    assert answered["Simulated"] is True and answered["Detail"] == "played to the end"
    busy = CallEnd(second, claimed[second].attempt, CallStatus.BUSY, CallReason.NA, start + 3_000, start,
                   None, "carrier-a", "SIP 486 Busy Here")  # fmt: skip
    await env.store.end_calls([busy])
    doc = await env.status(ident)
    assert doc["Status"] == "Busy"  # Busy ranks below Answered
    assert doc["Calls"][1]["Simulated"] is False and doc["Calls"][1]["Trunk"] == "carrier-a"


async def test_an_invalid_number_is_a_failed_call_not_a_failed_request(env: Env) -> None:
    ident, _ = await call_ids(env, Destination=["0016175551212", "12"])
    calls = (await env.status(ident))["Calls"]
    assert [(c["MobileNo"], c["Status"], c["Reason"]) for c in calls] == [
        ("0016175551212", "Received", ""),
        ("12", "Failed", "General Error"),
    ]


async def test_get_status_by_post_query_post_body_and_reference(env: Env) -> None:
    ident, _ = await call_ids(env, ReferenceID="ref-1")
    for r in [
        await env.client.post("/api/Voice/GetStatus", params={"id": ident}, headers=env.auth),
        await env.client.post("/api/Voice/GetStatus", json={"ID": int(ident)}, headers=env.auth),
        await env.client.get("/api/Voice/GetStatus", params={"ReferenceID": "ref-1"}, headers=env.auth),
        await env.client.post("/api/Voice/GetStatus", json={"referenceid": "ref-1"}, headers=env.auth),
    ]:
        assert r.status_code == 200, r.text
        assert r.json()["ID"] == ident


@pytest.mark.parametrize("asked", ["12345", "x1", "", "99999999999999999999"])
async def test_get_status_of_an_unknown_id_is_5013_with_that_id(env: Env, asked: str) -> None:
    r = await env.client.get("/api/Voice/GetStatus", params={"ID": asked}, headers=env.auth)
    assert assert_voice_error(r, 404, "5013", "ID not found") == asked


async def test_another_accounts_request_answers_as_unknown(env: Env) -> None:
    ident, _ = await call_ids(env, ReferenceID="mine")
    r = await env.client.get("/api/Voice/GetStatus", params={"ID": ident}, headers=env.other)
    assert assert_voice_error(r, 404, "5013", "ID not found") == ident
    r = await env.client.get("/api/Voice/GetStatus", params={"ReferenceID": "mine"}, headers=env.other)
    assert_voice_error(r, 404, "5013", "ID not found")
    r = await env.client.post("/api/Voice/Cancel", params={"ID": ident}, headers=env.other)
    assert_voice_error(r, 404, "5013", "ID not found")
    assert [c["Status"] for c in (await env.status(ident))["Calls"]] == ["Received", "Received"]


async def test_get_status_needs_authentication(env: Env) -> None:
    r = await env.client.get("/api/Voice/GetStatus", params={"ID": "77"})
    assert assert_voice_error(r, 401, "5006", "Authentication failed") == "77"


# Cancel


async def test_cancel_ends_queued_calls_and_asks_those_under_way_to_stop(env: Env) -> None:
    numbers = ["0016175551212", "0016175551213", "0016175551214"]
    ident, _ = await call_ids(env, Destination=numbers)
    claimed = {c.id: c for c in await env.store.claim_calls(now=env.clock.now_ms(), limit=1, lease_ms=60_000)}
    (under_way,) = claimed
    now = env.clock.now_ms()
    await env.store.progress_calls([CallProgress(under_way, claimed[under_way].attempt, CallStatus.DIALING, now,
                                                 SIMULATOR, now + 60_000)])  # fmt: skip
    r = await env.client.post("/api/Voice/Cancel", params={"ID": ident}, headers=env.auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"ID": ident, "Cancelled": 2, "Stopping": 1, "AlreadyEnded": 0}
    calls = (await env.status(ident))["Calls"]
    assert sorted((c["Status"], c["Reason"]) for c in calls) == [("Dialing", ""), ("Failed", "Cancel"),
                                                                 ("Failed", "Cancel")]  # fmt: skip
    r = await env.client.post("/api/Voice/Cancel", json={"ID": ident}, headers=env.auth)
    assert r.json() == {"ID": ident, "Cancelled": 0, "Stopping": 1, "AlreadyEnded": 2}


async def test_cancel_one_number_written_any_way(env: Env) -> None:
    ident, _ = await call_ids(env, Destination=["0016175551212", "+16175551213"])
    # A "+" in a query string arrives as a space; the number still finds its call.
    r = await env.client.post(f"/api/Voice/Cancel?ID={ident}&MobileNo=+16175551212", headers=env.auth)
    assert r.json() == {"ID": ident, "Cancelled": 1, "Stopping": 0, "AlreadyEnded": 0}
    r = await env.client.post("/api/Voice/Cancel", json={"ID": ident, "MobileNo": "0016175551213"}, headers=env.auth)
    assert r.json() == {"ID": ident, "Cancelled": 1, "Stopping": 0, "AlreadyEnded": 0}
    assert [c["Reason"] for c in (await env.status(ident))["Calls"]] == ["Cancel", "Cancel"]


async def test_cancel_of_an_unknown_id_is_5013_and_get_is_not_allowed(env: Env) -> None:
    r = await env.client.post("/api/Voice/Cancel", params={"ID": "4242"}, headers=env.auth)
    assert assert_voice_error(r, 404, "5013", "ID not found") == "4242"
    r = await env.client.get("/api/Voice/Cancel", params={"ID": "4242"}, headers=env.auth)
    assert r.status_code == 405 and r.headers["allow"] == "POST"


# Campaigns


async def test_a_wav_upload_becomes_a_campaign(env: Env) -> None:
    r = await env.client.post(
        "/api/Campaigns",
        params={"Name": "promo"},
        content=wav_bytes(rate=44100, seconds=1.0),
        headers=env.auth | {"Content-Type": "audio/wav"},
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    assert list(doc) == ["CampaignID", "Name", "Source", "Locale", "Text", "Duration", "Created"]
    assert doc["CampaignID"] == doc["CampaignID"].lower() and len(doc["CampaignID"]) == 36
    assert (doc["Name"], doc["Source"], doc["Locale"], doc["Text"], doc["Duration"]) == ("promo", "wav", "", "", 1.0)
    assert doc["Created"] == format_time(env.clock.now_ms())
    assert len(await env.store.campaign_audio(doc["CampaignID"]) or b"") == 16000  # 1 s of 8 kHz 16-bit


@pytest.mark.parametrize("content_type", ["audio/x-wav", "audio/wave", "application/octet-stream; x=1"])
async def test_other_wav_content_types_and_the_default_name(env: Env, content_type: str) -> None:
    r = await env.client.post(
        "/api/Campaigns", content=wav_bytes(rate=8000, width=1), headers=env.auth | {"Content-Type": content_type}
    )
    assert r.status_code == 201, r.text
    assert r.json()["Name"] == "campaign"


async def test_text_becomes_a_campaign_rendered_once(env: Env) -> None:
    doc = await text_campaign(env, Locale="hi_in")
    assert {k: doc[k] for k in ("Name", "Source", "Locale", "Text", "Duration")} == {
        "Name": "welcome",
        "Source": "tts",
        "Locale": "hi-IN",
        "Text": "Welcome to Optimum Measures",
        "Duration": 0.5,
    }


async def test_an_unreadable_upload_is_5014_with_the_reason(env: Env) -> None:
    r = await env.client.post(
        "/api/Campaigns", content=b"ID3\x04 this is an mp3", headers=env.auth | {"Content-Type": "audio/wav"}
    )
    assert r.status_code == 400, r.text
    assert list(r.json()) == ["ErrorID", "Message"] and r.json()["ErrorID"] == "5014"
    assert r.json()["Message"].startswith("Received with error - Invalid audio: ")
    assert len(r.json()["Message"]) > len("Received with error - Invalid audio: ")


async def test_a_multipart_upload_is_refused_with_how_to_send_it(env: Env) -> None:
    r = await env.client.post("/api/Campaigns", files={"file": ("a.wav", wav_bytes())}, headers=env.auth)
    assert r.status_code == 415 and r.json()["ErrorID"] == "5014"
    assert "Content-Type: audio/wav" in r.json()["Message"]


async def test_an_upload_over_20_mib_is_refused_before_its_body_is_read(env: Env) -> None:
    received = 0

    async def receive() -> Message:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b"\0" * 65536, "more_body": True}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/Campaigns",
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {env.key}".encode()),
            (b"content-type", b"audio/wav"),
            (b"content-length", str(20 * 1024 * 1024 + 1).encode()),
        ],
    }
    await env.app()(scope, receive, send)
    assert received == 0
    assert sent[0]["status"] == 413
    assert httpx.Response(413, content=sent[1]["body"]).json() == {
        "ErrorID": "5008",
        "Message": "Received with error - Request body too large (at most 20 MiB)",
    }


CAMPAIGN_ERRORS: list[tuple[str, Any, int, str, str]] = [
    ("not json", b"{", 400, "5001", "Invalid Json"),
    ("no text", {"Locale": "hi-IN"}, 400, "5000", "Parameter Text is missing or empty"),
    ("blank text", {"Text": " \x01 ", "Locale": "hi-IN"}, 400, "5000", "Parameter Text is missing or empty"),
    ("long text", {"Text": "x" * 2001, "Locale": "hi-IN"}, 400, "5010",
     "Parameter Text is too long (at most 2,000 characters)"),
    ("no locale", {"Text": "Hello"}, 400, "5000", "Parameter Locale is missing or empty"),
    ("locale", {"Text": "Hello", "Locale": "fr-FR"}, 400, "5004", "Locale is not supported"),
    ("name", {"Name": "x" * 101, "Text": "Hello", "Locale": "hi-IN"}, 400, "5000",
     "Parameter Name is invalid (1-100 printable characters)"),
    ("tts fails", {"Text": "FAIL now", "Locale": "en-US"}, 503, "5015",
     "Service temporarily unavailable (text to speech failed: the fake engine was told to fail)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "error_id", "message"), [e[1:] for e in CAMPAIGN_ERRORS], ids=[e[0] for e in CAMPAIGN_ERRORS]
)
async def test_campaign_errors(env: Env, body: Any, status: int, error_id: str, message: str) -> None:
    kw = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = await env.client.post("/api/Campaigns", headers=env.auth, **kw)
    assert r.status_code == status, r.text
    assert r.json() == {"ErrorID": error_id, "Message": f"Received with error - {message}"}
    assert (await env.client.get("/api/Campaigns", headers=env.auth)).json() == {"Campaigns": []}


async def test_list_get_and_delete_see_only_the_accounts_campaigns(env: Env) -> None:
    first = await text_campaign(env, Name="first")
    env.clock.advance(seconds=1)
    second = await text_campaign(env, Name="second")
    foreign = await text_campaign(env, env.other, Name="theirs")
    listed = (await env.client.get("/api/Campaigns", headers=env.auth)).json()["Campaigns"]
    assert [c["Name"] for c in listed] == ["second", "first"]  # newest first
    r = await env.client.get(f"/api/Campaigns/{first['CampaignID'].upper()}", headers=env.auth)
    assert r.status_code == 200 and r.json() == first
    for method in ("GET", "DELETE"):
        r = await env.client.request(method, f"/api/Campaigns/{foreign['CampaignID']}", headers=env.auth)
        assert r.status_code == 404
        assert r.json() == {
            "CampaignID": foreign["CampaignID"],
            "ErrorID": "5002",
            "Message": "Received with error - Invalid Campaign",
        }
    assert (await env.client.get(f"/api/Campaigns/{foreign['CampaignID']}", headers=env.other)).status_code == 200
    r = await env.client.delete(f"/api/Campaigns/{second['CampaignID']}", headers=env.auth)
    assert r.status_code == 204 and r.content == b""
    for method in ("GET", "DELETE"):
        r = await env.client.request(method, f"/api/Campaigns/{second['CampaignID']}", headers=env.auth)
        assert r.status_code == 404 and r.json()["ErrorID"] == "5002"
    assert [c["Name"] for c in (await env.client.get("/api/Campaigns", headers=env.auth)).json()["Campaigns"]] == [
        "first"
    ]
    r = await env.client.get("/api/Campaigns/not-a-guid", headers=env.auth)
    assert r.status_code == 404 and r.json()["CampaignID"] == "not-a-guid"


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/Campaigns"), ("POST", "/api/Campaigns"),
                                              ("GET", f"/api/Campaigns/{UNKNOWN_GUID}"),
                                              ("DELETE", f"/api/Campaigns/{UNKNOWN_GUID}")])  # fmt: skip
async def test_campaigns_need_authentication(env: Env, method: str, path: str) -> None:
    r = await env.client.request(method, path, headers={"X-API-Key": "sb_wrong"})
    assert r.status_code == 401
    assert r.json() == {"ErrorID": "5006", "Message": "Received with error - Authentication failed"}


# Routing


async def test_paths_are_matched_in_any_case_and_with_a_trailing_slash(env: Env) -> None:
    r = await env.client.post("/API/VOICE/CALL/", content=VENDOR_MESSAGE, headers=env.auth)
    assert r.status_code == 200, r.text
    assert (await env.client.get(f"/api/voice/getstatus?id={r.json()['ID']}", headers=env.auth)).status_code == 200
    campaign = await text_campaign(env)
    r = await env.client.get(f"/API/CAMPAIGNS/{campaign['CampaignID'].upper()}/", headers=env.auth)
    assert r.status_code == 200 and r.json()["CampaignID"] == campaign["CampaignID"]
    assert (await env.client.get("/Api/Campaigns/", headers=env.auth)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/api/Voice", "POST"),
        ("PUT", "/api/Voice/Call", "POST"),
        ("DELETE", "/api/Voice/GetStatus", "GET, POST"),
    ],
)
async def test_wrong_methods_on_the_voice_endpoints_are_405(env: Env, method: str, path: str, allow: str) -> None:
    r = await env.client.request(method, path, headers=env.auth)
    assert r.status_code == 405 and r.headers["allow"] == allow


@pytest.mark.parametrize(("method", "path"), [("PUT", "/api/Campaigns"), ("DELETE", "/api/Campaigns"),
                                              ("POST", f"/api/Campaigns/{UNKNOWN_GUID}")])  # fmt: skip
async def test_wrong_methods_on_campaigns_are_405(env: Env, method: str, path: str) -> None:
    r = await env.client.request(method, path, headers=env.auth)
    assert r.status_code == 405 and r.json() == {"Error": "Method Not Allowed"}


async def test_without_voice_the_endpoints_do_not_exist(env: Env) -> None:
    transport = httpx.ASGITransport(app=env.app(with_voice=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for path in ("/api/Voice", "/api/Campaigns"):
            assert (await client.post(path, content=VENDOR_MESSAGE, headers=env.auth)).status_code == 404


async def test_the_openapi_document_describes_voice_and_campaigns(env: Env) -> None:
    doc = (await env.client.get("/openapi.json")).json()
    for path in ("/api/Voice", "/api/Voice/Call", "/api/Voice/GetStatus", "/api/Voice/Cancel", "/api/Campaigns",
                 "/api/Campaigns/{CampaignID}"):  # fmt: skip
        assert path in doc["paths"]
    assert set(doc["components"]["schemas"]["VoiceError"]["required"]) == {"ID", "ErrorID", "Message"}


async def test_wav_uploads_are_converted_one_at_a_time(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # A 20 MiB upload takes a few hundred MB while it is converted: uploads sent together must not add up.
    running = most = 0
    lock = threading.Lock()
    convert = AudioLibrary.convert_wav

    def counted(data: bytes) -> bytes:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.05)
            return convert(data)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(AudioLibrary, "convert_wav", staticmethod(counted))
    headers = env.auth | {"Content-Type": "audio/wav"}
    uploads = [env.client.post("/api/Campaigns", content=wav_bytes(seconds=0.2), headers=headers) for _ in range(4)]
    answers = await asyncio.gather(*uploads)
    assert [r.status_code for r in answers] == [201] * 4
    assert most == 1


def raw_upload(app: ASGIApp, key: str, receive: Any) -> Any:
    """One WAV upload through the raw ASGI app with `receive` as its body; returns (status, document)."""

    async def go() -> tuple[int, dict[str, Any]]:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/api/Campaigns",
            "query_string": b"",
            "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"audio/wav")],
        }
        await app(scope, receive, send)
        headers = dict(sent[0]["headers"])
        return int(sent[0]["status"]), httpx.Response(200, content=sent[1]["body"]).json() | (
            {"retry-after": headers[b"retry-after"].decode()} if b"retry-after" in headers else {}
        )

    return go()


async def test_uploads_sent_together_are_read_a_few_at_a_time(env: Env) -> None:
    # Each upload's body is up to 20 MiB: the ones over UPLOADS_AT_ONCE wait with their bodies unread.
    release = asyncio.Event()
    reading = 0
    body = wav_bytes(seconds=0.1)
    app = env.app()

    async def receive() -> Message:
        nonlocal reading
        reading += 1
        await release.wait()
        return {"type": "http.request", "body": body, "more_body": False}

    tasks = [asyncio.create_task(raw_upload(app, env.key, receive)) for _ in range(campaigns.UPLOADS_AT_ONCE + 3)]
    for _ in range(50):
        await asyncio.sleep(0.01)
    assert reading == campaigns.UPLOADS_AT_ONCE
    release.set()
    assert [status for status, _ in await asyncio.gather(*tasks)] == [201] * (campaigns.UPLOADS_AT_ONCE + 3)
    assert reading == campaigns.UPLOADS_AT_ONCE + 3


async def test_a_stalled_upload_gives_its_slot_back_and_a_queue_too_long_is_503(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Clients that send their headers and then stop must not hold the upload slots for ever.
    monkeypatch.setattr(campaigns, "UPLOAD_READ_SECONDS", 0.3)
    monkeypatch.setattr(campaigns, "UPLOAD_SLOT_SECONDS", 5.0)
    app = env.app()
    never = asyncio.Event()
    body = wav_bytes(seconds=0.1)

    async def stalled() -> Message:
        await never.wait()
        raise AssertionError("unreachable")

    async def prompt() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    stalls = [asyncio.create_task(raw_upload(app, env.key, stalled)) for _ in range(campaigns.UPLOADS_AT_ONCE)]
    await asyncio.sleep(0.05)
    status, doc = await raw_upload(app, env.key, prompt)  # waits for a slot, then gets one
    assert status == 201 and doc["Source"] == "wav"
    for status, doc in await asyncio.gather(*stalls):
        assert status == 408
        assert doc == {"ErrorID": "5014", "Message": "Received with error - Invalid audio: the upload did not "
                       "arrive within 0.3 s"}  # fmt: skip

    monkeypatch.setattr(campaigns, "UPLOAD_READ_SECONDS", 5.0)
    monkeypatch.setattr(campaigns, "UPLOAD_SLOT_SECONDS", 0.2)
    stalls = [asyncio.create_task(raw_upload(app, env.key, stalled)) for _ in range(campaigns.UPLOADS_AT_ONCE)]
    await asyncio.sleep(0.05)
    status, doc = await raw_upload(app, env.key, prompt)
    never.set()
    for t in stalls:
        t.cancel()
    await asyncio.gather(*stalls, return_exceptions=True)
    assert status == 503
    assert doc == {"ErrorID": "5015", "Message": "Received with error - Service temporarily unavailable (too many "
                   "uploads at once; try again)", "retry-after": "5"}  # fmt: skip
