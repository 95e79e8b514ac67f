"""Whatever is thrown at Send and GetStatus, at the voice Call, GetStatus and Cancel, and at Campaigns, the answer is
one of the documented shapes — never a 500."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from switchboard import config
from switchboard.app import Gateway

ERROR_IDS = {"120", "121", "122", "123", "124", "125", "126", "127", "128", "129", "130", "131", "132", "133"}


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, loop: asyncio.AbstractEventLoop) -> Iterator[tuple[Any, str]]:
    data = tmp_path_factory.mktemp("api")
    cfg = config.load(
        env={}, overrides={"server.data_dir": str(data), "server.access_log": False, "limits.requests_per_second": 0}
    )
    gateway = Gateway(cfg, role="api")
    loop.run_until_complete(gateway.start())
    _, key = loop.run_until_complete(gateway.accounts.create("fuzz"))
    yield gateway.http_app(), key.secret
    loop.run_until_complete(gateway.stop())


def check_shape(response: httpx.Response, *, send: bool) -> None:
    assert response.status_code in {200, 400, 401, 404, 413, 429}, response.text
    doc = response.json()
    if response.status_code == 200:
        if send:
            assert set(doc) == {"ID", "Status"} and doc["Status"] == "Received" and doc["ID"].isdigit()
        else:
            assert {"ID", "Status", "Delivery Date", "Destinations"} <= set(doc)
    else:
        assert set(doc) == {"Error ID", "Status"}
        assert doc["Error ID"] in ERROR_IDS
        assert doc["Status"].startswith("Received with error - ")


def call(loop: asyncio.AbstractEventLoop, app: Any, method: str, path: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.request(method, path, **kw)

    return loop.run_until_complete(go())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)
field_names = st.sampled_from(
    [
        "Destination",
        "destination",
        "Message",
        "Sender",
        "CallBack",
        "ReferenceID",
        "ScheduleAt",
        "ValidityPeriod",
        "MobileNo",
        "x",
    ]
)
send_like = st.dictionaries(field_names, json_values, max_size=7)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_at_send(api: tuple[Any, str], loop: asyncio.AbstractEventLoop, body: bytes) -> None:
    app, key = api
    check_shape(call(loop, app, "POST", "/api/SMS/Send", content=body, headers={"X-API-Key": key}), send=True)


@FUZZ
@given(doc=json_values | send_like)
def test_arbitrary_json_at_send(api: tuple[Any, str], loop: asyncio.AbstractEventLoop, doc: Any) -> None:
    app, key = api
    r = call(loop, app, "POST", "/api/SMS", content=json.dumps(doc).encode(), headers={"X-API-Key": key})
    check_shape(r, send=True)


@FUZZ
@given(ident=st.text(max_size=30), body=st.binary(max_size=100))
def test_arbitrary_ids_and_bodies_at_get_status(
    api: tuple[Any, str], loop: asyncio.AbstractEventLoop, ident: str, body: bytes
) -> None:
    app, key = api
    r = call(loop, app, "GET", "/api/SMS/GetStatus", params={"ID": ident}, headers={"X-API-Key": key})
    check_shape(r, send=False)
    r = call(loop, app, "POST", "/api/SMS/GetStatus", content=body, headers={"X-API-Key": key})
    check_shape(r, send=False)


@FUZZ
@given(key=st.text(max_size=80), user=st.text(max_size=20))
def test_arbitrary_credentials(api: tuple[Any, str], loop: asyncio.AbstractEventLoop, key: str, user: str) -> None:
    app, _ = api
    r = call(loop, app, "POST", "/api/SMS/Send", params={"UserName": user, "Password": key}, content=b"{}")
    check_shape(r, send=True)
    assert r.status_code == 401


def test_a_nul_character_is_refused_not_cut_off(api: tuple[Any, str], loop: asyncio.AbstractEventLoop) -> None:
    app, key = api
    body = b'{"Destination": "+16175551212", "Message": "Hello\\u0000World", "Sender": "OM"}'
    r = call(loop, app, "POST", "/api/SMS/Send", content=body, headers={"X-API-Key": key})
    assert (r.status_code, r.json()["Error ID"]) == (400, "120")
    r = call(loop, app, "GET", "/api/SMS/GetStatus", params={"ReferenceID": "a\x00"}, headers={"X-API-Key": key})
    assert (r.status_code, r.json()["Error ID"]) == (404, "131")


def test_a_body_cut_off_by_a_disconnect_is_not_stored(api: tuple[Any, str], loop: asyncio.AbstractEventLoop) -> None:
    app, key = api
    sent: list[dict[str, Any]] = []
    messages = iter(
        [
            {"type": "http.request", "more_body": True,
             "body": b'"Destination": "+16175551212", "Message": "m", "Sender": "OM", "ReferenceID": "cut"'},
            {"type": "http.disconnect"},
        ]
    )  # fmt: skip

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/SMS/Send", "query_string": b"",
             "headers": [(b"x-api-key", key.encode())]}  # fmt: skip
    loop.run_until_complete(app(scope, receive, send))
    assert sent == []  # no answer to nobody, and nothing stored:
    r = call(loop, app, "GET", "/api/SMS/GetStatus", params={"ReferenceID": "cut"}, headers={"X-API-Key": key})
    assert r.status_code == 404


# Voice: Call, GetStatus, Cancel and Campaigns, under the same treatment.

VOICE_ERROR_IDS = {f"{n}" for n in range(5000, 5016)}
VOICE_STATUS_OF = {"5006": 401, "5013": 404, "5008": 413, "5007": 429, "5015": 503}
"""The HTTP status of the voice errors that are not 400."""
CALL_STATUS_KEYS = ["ID", "Status", "ReferenceID", "DateTime", "Calls"]
CALL_KEYS = ["GUID", "MobileNo", "Status", "Reason", "Calltime", "AnswerTime", "Duration", "Trunk", "Simulated",
             "Detail"]  # fmt: skip
CAMPAIGN_KEYS = ["CampaignID", "Name", "Source", "Locale", "Text", "Duration", "Created"]
A_GUID = "fc46b682-b939-4fc2-81c3-891cfb23cd92"


def check_voice(response: httpx.Response, *, kind: str) -> dict[str, Any]:
    """One of the documented answers of a Call ("call"), a GetStatus ("status") or a Cancel ("cancel")."""
    assert response.status_code in {200, 400, 401, 404, 413, 429}, response.text
    doc: dict[str, Any] = response.json()
    if currently_in_test_context():  # --hypothesis-show-statistics says which answers the fuzzing reached
        event(f"{kind} {response.status_code} {doc.get('ErrorID', '')}")
    if response.status_code == 200:
        if kind == "call":
            assert list(doc) == ["ID", "Status"] and doc["Status"] == "Received" and doc["ID"].isdigit()
        elif kind == "status":
            assert list(doc) == CALL_STATUS_KEYS and doc["ID"].isdigit()
            assert all(list(c) == CALL_KEYS for c in doc["Calls"])
        else:
            assert list(doc) == ["ID", "Cancelled", "Stopping", "AlreadyEnded"] and doc["ID"].isdigit()
    else:
        assert list(doc) == ["ID", "ErrorID", "Message"], doc
        assert isinstance(doc["ID"], str) and doc["ErrorID"] in VOICE_ERROR_IDS
        assert VOICE_STATUS_OF.get(doc["ErrorID"], 400) == response.status_code
        assert doc["Message"].startswith("Received with error - ")
        if kind == "call":
            assert doc["ID"].isdigit()  # a refused Call has an ID of its own
    return doc


def check_campaign(response: httpx.Response) -> None:
    assert response.status_code in {201, 400, 401, 413, 415}, response.text
    doc = response.json()
    if currently_in_test_context():
        event(f"campaign {response.status_code} {doc.get('ErrorID', '')}")
    if response.status_code == 201:
        assert list(doc) == CAMPAIGN_KEYS
    else:
        assert list(doc) == ["ErrorID", "Message"], doc
        assert doc["ErrorID"] in VOICE_ERROR_IDS and doc["Message"].startswith("Received with error - ")


MISSING = object()


def fields(**choices: tuple[list[Any], list[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies near a valid one: each field mostly one of its valid values, else an invalid one, any JSON value,
    or left out."""

    def field(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
        kinds = {"valid": st.sampled_from(valid), "invalid": st.sampled_from([*invalid, MISSING]), "any": json_values}
        return st.sampled_from(["valid"] * 8 + ["invalid", "any"]).flatmap(kinds.__getitem__)

    return st.fixed_dictionaries({name: field(*values) for name, values in choices.items()}).map(
        lambda doc: {k: v for k, v in doc.items() if v is not MISSING}
    )


NUMBERS = ["+16175551212", "0016175551212", "16175551212", "+15005550002", {"MobileNo": "0016175551212"}]
call_like = fields(
    Destination=([*NUMBERS, NUMBERS, NUMBERS[:2]], ["", "12", [], ["12", ""], {"MobileNo": ""}]),
    Sender=(["00919833111380", "+16175550000", 16175550000], ["OM", "", "+" + "1" * 16]),
    Message=(["Welcome to Optimum Measures"], ["", " ", "x" * 2001]),
    Locale=(["hi-IN", "en_us"], ["xx-YY", "", 7]),
    CampaignID=([MISSING] * 4 + [A_GUID, "{" + A_GUID.upper() + "}"], ["welcome", ""]),  # or Message
    CallBack=(["Yes", "No", "https://example.com/cdr", ""], ["http://127.0.0.1/", "Maybe", "ftp://x"]),
    RingTimeout=([30, "30", 5, 120], [4, 121, "5.5", 30.5, -1]),
    ReferenceID=(["ref-1", ""], ["a" * 300, ["x"]]),
)
campaign_like = fields(
    Name=(["welcome", "Spring promo"], ["", "x" * 101, "tab\tname"]),
    Text=(["Welcome to Optimum Measures", "Hello"], ["", " ", "x" * 2001]),
    Locale=(["hi-IN", "en_us"], ["xx-YY", ""]),
)
ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


@FUZZ
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_at_voice_call(api: tuple[Any, str], loop: asyncio.AbstractEventLoop, body: bytes) -> None:
    app, key = api
    check_voice(call(loop, app, "POST", "/api/Voice/Call", content=body, headers={"X-API-Key": key}), kind="call")


@FUZZ
@given(doc=json_values | call_like)
def test_arbitrary_json_at_voice_call(api: tuple[Any, str], loop: asyncio.AbstractEventLoop, doc: Any) -> None:
    app, key = api
    r = call(loop, app, "POST", "/api/Voice", content=json.dumps(doc).encode(), headers={"X-API-Key": key})
    check_voice(r, kind="call")


@pytest.fixture(scope="module")
def stored_call(api: tuple[Any, str], loop: asyncio.AbstractEventLoop) -> str:
    """The ID of a Call request of the fuzzing account (two calls, queued: no dialer runs here)."""
    app, key = api
    body = {"Destination": ["0016175551212", "+16175551213"], "Message": "Hi", "Locale": "en-US", "Sender": "+1617"}
    r = call(loop, app, "POST", "/api/Voice/Call", json=body, headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    ident: str = r.json()["ID"]
    return ident


STORED = "<the stored call>"


@FUZZ
@given(
    ident=st.just(STORED) | st.text(max_size=30),
    mobile=st.sampled_from(["0016175551212", "+16175551213", " 16175551213"]) | st.text(max_size=20),
    body=st.binary(max_size=100),
    doc=json_values | st.fixed_dictionaries({"ID": st.just(STORED) | json_values}, optional={"MobileNo": json_values}),
)
def test_arbitrary_ids_and_bodies_at_voice_get_status_and_cancel(
    api: tuple[Any, str], loop: asyncio.AbstractEventLoop, stored_call: str, ident: str, mobile: str, body: bytes,
    doc: Any,
) -> None:  # fmt: skip
    app, key = api
    ident = stored_call if ident == STORED else ident
    if isinstance(doc, dict) and doc.get("ID") == STORED:
        doc["ID"] = stored_call
    headers = {"X-API-Key": key}
    check_voice(call(loop, app, "GET", "/api/Voice/GetStatus", params={"ID": ident}, headers=headers), kind="status")
    for path, kind in (("/api/Voice/GetStatus", "status"), ("/api/Voice/Cancel", "cancel")):
        params = {"ID": ident, "MobileNo": mobile, "ReferenceID": mobile}
        check_voice(call(loop, app, "POST", path, params=params, headers=headers), kind=kind)
        check_voice(call(loop, app, "POST", path, content=body, headers=headers), kind=kind)
        check_voice(call(loop, app, "POST", path, content=json.dumps(doc).encode(), headers=headers), kind=kind)


def test_get_status_and_cancel_of_a_real_call(api: tuple[Any, str], loop: asyncio.AbstractEventLoop) -> None:
    app, key = api
    body = {"Destination": ["0016175551212", "12"], "Message": "Hello", "Locale": "en-US", "Sender": "+1617555"}
    ident = check_voice(call(loop, app, "POST", "/api/Voice/Call", json=body, headers={"X-API-Key": key}), kind="call")
    r = call(loop, app, "GET", "/api/Voice/GetStatus", params={"ID": ident["ID"]}, headers={"X-API-Key": key})
    assert [c["Status"] for c in check_voice(r, kind="status")["Calls"]] == ["Received", "Failed"]
    r = call(loop, app, "POST", "/api/Voice/Cancel", json={"ID": ident["ID"]}, headers={"X-API-Key": key})
    assert check_voice(r, kind="cancel")["Cancelled"] == 1


def wav_header(tag: int, channels: int, rate: int, bits: int, data: bytes) -> bytes:
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * max(bits, 8) // 8 % 2**32,
                      channels * max(bits, 8) // 8 % 2**16, bits)  # fmt: skip
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


wav_like = st.builds(
    wav_header,
    tag=st.sampled_from([1, 3, 6, 7, 2, 0xFFFE]) | st.integers(0, 0xFFFF),
    channels=st.sampled_from([0, 1, 2, 6]) | st.integers(0, 0xFFFF),
    rate=st.sampled_from([0, 7999, 8000, 44100, 192000, 192001]) | st.integers(0, 2**32 - 1),
    bits=st.sampled_from([0, 1, 8, 16, 24, 32, 64]) | st.integers(0, 0xFFFF),
    data=st.binary(max_size=4000),
) | st.sampled_from([(1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64), (6, 8), (7, 8)]).flatmap(
    lambda format: st.builds(
        wav_header,
        tag=st.just(format[0]),
        channels=st.sampled_from([1, 2, 3]),
        rate=st.sampled_from([8000, 11025, 16000, 44100, 48000, 192000]),
        bits=st.just(format[1]),
        data=st.binary(min_size=1, max_size=4000),
    )
)


@FUZZ
@given(body=st.binary(max_size=300) | wav_like, name=st.none() | st.text(max_size=120))
def test_arbitrary_uploads_at_campaigns(
    api: tuple[Any, str], loop: asyncio.AbstractEventLoop, body: bytes, name: str | None
) -> None:
    app, key = api
    params = {} if name is None else {"Name": name}
    for content_type in ("audio/wav", "application/octet-stream", "application/json", "multipart/form-data"):
        headers = {"X-API-Key": key, "Content-Type": content_type}
        check_campaign(call(loop, app, "POST", "/api/Campaigns", params=params, content=body, headers=headers))


@FUZZ
@given(doc=json_values | campaign_like)
def test_arbitrary_json_at_campaigns(api: tuple[Any, str], loop: asyncio.AbstractEventLoop, doc: Any) -> None:
    app, key = api
    r = call(loop, app, "POST", "/api/Campaigns", content=json.dumps(doc).encode(), headers={"X-API-Key": key})
    check_campaign(r)


@FUZZ
@given(path=st.text(max_size=70))
def test_arbitrary_campaign_ids(api: tuple[Any, str], loop: asyncio.AbstractEventLoop, path: str) -> None:
    app, key = api
    for method in ("GET", "DELETE"):
        r = call(loop, app, method, f"/api/Campaigns/{quote(path, safe='')}", headers={"X-API-Key": key})
        assert r.status_code in {200, 204, 404, 405}, r.text
        if r.status_code == 404:  # a campaign that does not exist, or a path that names none (a "/" in it)
            assert r.json() in (
                {
                    "CampaignID": r.json().get("CampaignID"),
                    "ErrorID": "5002",
                    "Message": "Received with error - Invalid Campaign",
                },
                {"Error": "Not Found"},
            )


@FUZZ
@given(key=st.text(max_size=80), user=st.text(max_size=20), bearer=ascii_text)
def test_arbitrary_credentials_at_voice_and_campaigns(
    api: tuple[Any, str], loop: asyncio.AbstractEventLoop, key: str, user: str, bearer: str
) -> None:
    app, _ = api
    params = {"UserName": user, "Password": key}
    for path, kind in (
        ("/api/Voice/Call", "call"),
        ("/api/Voice/GetStatus", "status"),
        ("/api/Voice/Cancel", "cancel"),
    ):
        r = call(loop, app, "POST", path, params=params, content=b"{}")
        assert r.status_code == 401 and check_voice(r, kind=kind)["ErrorID"] == "5006"
        r = call(loop, app, "POST", path, content=b"{}", headers={"Authorization": f"Bearer {bearer}"})
        assert r.status_code == 401 and check_voice(r, kind=kind)["ErrorID"] == "5006"
    for method in ("GET", "POST"):
        r = call(loop, app, method, "/api/Campaigns", params=params, content=b"{}")
        assert r.status_code == 401
        check_campaign(r)
        r = call(loop, app, method, "/api/Campaigns", headers={"X-API-Key": bearer}, content=b"{}")
        assert r.status_code == 401
        check_campaign(r)
