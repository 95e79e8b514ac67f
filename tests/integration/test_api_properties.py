"""Whatever is thrown at Send and GetStatus, the answer is one of the documented shapes — never a 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
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
