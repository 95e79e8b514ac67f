"""The HTTP application: a thin ASGI front that sends the SMS and voice endpoints straight to their raw
handlers and everything else to a Starlette app (operations endpoints, docs, and what later issues add).

Paths are matched without regard to letter case or a trailing slash, as the vendor's ASP.NET-style API did.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from switchboard.api.account import AccountApi
from switchboard.api.campaigns import CampaignApi
from switchboard.api.http import Message, Receive, Scope, Send, json_bytes, respond
from switchboard.api.inbound import InboundApi
from switchboard.api.openapi import DOCS_PAGE, openapi_document
from switchboard.api.optouts import OptOutApi
from switchboard.api.sms import SmsApi
from switchboard.api.voice import VoiceApi
from switchboard.errors import StoreError
from switchboard.store.base import Store

access_log = logging.getLogger("switchboard.access")

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
ASGIApp = Handler
_NOT_FOUND = json_bytes({"Error": "Not Found"})
_NOT_ALLOWED = json_bytes({"Error": "Method Not Allowed"})


@dataclass(frozen=True, slots=True)
class ApiSettings:
    access_log: bool
    version: str


def create_app(
    *, sms: SmsApi, account: AccountApi, store: Store, settings: ApiSettings, voice: VoiceApi | None = None
) -> ASGIApp:
    """The application; the voice endpoints and `/api/Campaigns` only when `voice` is given."""
    fast: dict[str, tuple[frozenset[str], Handler]] = {
        "/api/sms": (frozenset({"POST"}), sms.send),
        "/api/sms/send": (frozenset({"POST"}), sms.send),
        "/api/sms/getstatus": (frozenset({"GET", "POST"}), sms.get_status),
        "/api/sms/cancel": (frozenset({"POST"}), sms.cancel),
    }
    campaigns = None
    if voice is not None:
        fast |= {
            "/api/voice": (frozenset({"POST"}), voice.call),
            "/api/voice/call": (frozenset({"POST"}), voice.call),
            "/api/voice/getstatus": (frozenset({"GET", "POST"}), voice.get_status),
            "/api/voice/cancel": (frozenset({"POST"}), voice.cancel),
        }
        campaigns = CampaignApi(accounts=voice.accounts, voice=voice.voice)
    rest = _starlette(store=store, account=account, campaigns=campaigns, version=settings.version)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":  # the server's lifetime is managed by switchboard.app
                await _lifespan(receive, send)
            return
        path = scope["path"].rstrip("/").lower() or "/"
        route = fast.get(path)
        if route is None:
            await rest({**scope, "path": path}, receive, send)
            return
        methods, handler = route
        if scope["method"] not in methods:
            allow = ", ".join(sorted(methods)).encode()
            await respond(send, 405, _NOT_ALLOWED, extra=[(b"allow", allow)])
            return
        await handler(scope, receive, send)

    if not settings.access_log:
        return app

    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_and_note)
        finally:
            # The query string is never logged: vendor-style clients put their key in it.
            access_log.info(
                "%s %s %d %.1fms", scope["method"], scope["path"], status, (time.perf_counter() - start) * 1000
            )

    return logged


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _starlette(*, store: Store, account: AccountApi, campaigns: CampaignApi | None, version: str) -> Starlette:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": version})

    async def readyz(request: Request) -> Response:
        try:
            await store.ping()
        except StoreError as e:
            return JSONResponse({"status": "unavailable", "database": str(e)}, status_code=503)
        return JSONResponse({"status": "ready", "database": store.dialect})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(version))

    async def docs(request: Request) -> Response:
        return HTMLResponse(DOCS_PAGE)

    async def home(request: Request) -> Response:
        return HTMLResponse(_HOME)

    async def not_found(request: Request, exc: Any) -> Response:
        return Response(_NOT_FOUND, status_code=404, media_type="application/json")

    async def not_allowed(request: Request, exc: Any) -> Response:
        return Response(_NOT_ALLOWED, status_code=405, media_type="application/json")

    campaign_routes = []
    if campaigns is not None:
        campaign_routes = [
            Route("/api/campaigns", campaigns.endpoint(campaigns.create_campaign), methods=["POST"]),
            Route("/api/campaigns", campaigns.endpoint(campaigns.list_campaigns), methods=["GET"]),
            Route("/api/campaigns/{campaign_id}", campaigns.endpoint(campaigns.get_campaign), methods=["GET"]),
            Route("/api/campaigns/{campaign_id}", campaigns.endpoint(campaigns.delete_campaign), methods=["DELETE"]),
        ]

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/openapi.json", openapi),
            Route("/docs", docs),
            Route("/", home),
            # Paths arrive in lower case (create_app).
            Route("/api/account", account.endpoint(account.get_account), methods=["GET"]),
            Route("/api/account", account.endpoint(account.put_account), methods=["PUT"]),
            Route("/api/account/rotatesecret", account.endpoint(account.rotate_secret), methods=["POST"]),
            Route("/api/callbacks", account.endpoint(account.list_callbacks), methods=["GET"]),
            Route("/api/callbacks/{callback_id}", account.endpoint(account.get_callback), methods=["GET"]),
            Route("/api/callbacks/{callback_id}/replay", account.endpoint(account.replay_callback), methods=["POST"]),
            Route("/api/callbacks/{callback_id}/cancel", account.endpoint(account.cancel_callback), methods=["POST"]),
            *campaign_routes,
            *InboundApi(store=store).routes(account.endpoint),
            *OptOutApi(store=store, clock=account.clock, changed=account.opt_outs_changed).routes(account.endpoint),
        ],
        exception_handlers={404: not_found, 405: not_allowed},
    )


_HOME = """<!doctype html><html><head><meta charset="utf-8"><title>Switchboard</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40em; margin: 3em auto">
<h1>Switchboard</h1>
<p>The SMS gateway is running. The API reference is at <a href="/docs">/docs</a>
(<a href="/openapi.json">OpenAPI document</a>); health at <a href="/healthz">/healthz</a>.</p>
<p>The dashboard is not built yet.</p>
</body></html>"""
