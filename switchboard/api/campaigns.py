"""`/api/Campaigns` (extension): voice campaigns, the recordings a Call plays by `CampaignID`.

- ``POST /api/Campaigns`` with a WAV file as the raw body (``Content-Type: audio/wav``, ``audio/x-wav``,
  ``audio/wave`` or ``application/octet-stream``; the name in ``?Name=``) converts it once to 8 kHz; with a
  JSON body ``{"Name", "Text", "Locale"}`` it renders the text once. 201 with the campaign.
- ``GET /api/Campaigns`` lists the account's campaigns, newest first; ``GET /api/Campaigns/{CampaignID}``
  is one; ``DELETE`` marks it deleted (204): new calls may not use it, queued ones still play it.

Errors are the voice shape without an ID, ``{"ErrorID": "<n>", "Message": "Received with error - <text>"}``
(plus ``"CampaignID"`` when the path named one), with the status of the `VoiceError`, except that an unknown,
deleted or foreign campaign in the path is 404 (5002), and a multipart form is 415 (5014):

    5006 401  authentication        5008 413  over 20 MiB (a WAV) or 1 MiB (JSON), refused before reading on
    5001 400  JSON that is not      5000 400  Text or Locale missing, Name invalid
    5010 400  Text over 2,000       5004 400  Locale not supported
    5014 400  not a WAV we can read: the message says why ("Invalid audio: ...")
    5015 503  the store failed, or text to speech did (the text was checked already: the fault is ours)
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from switchboard.accounts import Accounts
from switchboard.api.auth import Endpoint, Handler, authenticated
from switchboard.api.http import json_bytes, read_body
from switchboard.domain.catalogue import VoiceError
from switchboard.domain.clock import format_time
from switchboard.domain.lenient_json import MAX_BODY_BYTES, parse_body
from switchboard.domain.voice_request import MAX_MESSAGE_CHARS, campaign_guid
from switchboard.errors import AudioError, BodyTooLarge, ClientGone, InvalidJson, Refused, TtsError, UnsupportedLocale
from switchboard.store.records import Account, Campaign
from switchboard.voice.service import VoiceService

log = logging.getLogger("switchboard.api")

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Largest WAV upload: 10 minutes of 16-bit mono at 16 kHz is 19.2 MB (audio.read_wav plays at most 10)."""
UPLOADS_AT_ONCE = 4
"""WAV uploads read (and converted) at the same time in one process; the others wait for a slot with their
bodies unread (the server stops reading a connection whose body is not taken), so uploads sent together
hold at most this many bodies of up to 20 MiB in memory."""
UPLOAD_SLOT_SECONDS = 30.0
"""How long an upload waits for one of those slots before it is answered 503 (5015) with Retry-After."""
UPLOAD_READ_SECONDS = 120.0
"""How long an upload's body may take to arrive once it has a slot (20 MiB at 1.4 Mbit/s) before it is
answered 408 (5014): a client that stops sending must not hold a slot for ever."""
MAX_NAME_CHARS = 100
"""Longest campaign Name."""
DEFAULT_NAME = "campaign"
AUDIO_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "application/octet-stream"})
"""Content types read as a WAV upload; anything else but a multipart form is read as JSON (curl -d sends
application/x-www-form-urlencoded)."""


def campaign_error(
    error: VoiceError, *, detail: str | None = None, status: int | None = None, campaign_id: str | None = None
) -> Response:
    """An error answer; `detail` replaces the catalogue's text after "Received with error - "."""
    document: dict[str, str] = {}
    if campaign_id is not None:
        document["CampaignID"] = campaign_id
    document["ErrorID"] = error.error_id
    document["Message"] = error.message if detail is None else f"Received with error - {detail}"
    return Response(json_bytes(document), status_code=status or error.http_status, media_type="application/json")


@dataclass(frozen=True, slots=True)
class CampaignApi:
    accounts: Accounts
    voice: VoiceService
    uploads: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(UPLOADS_AT_ONCE))

    def endpoint(self, handler: Handler) -> Endpoint:
        """`handler` behind authentication (5006) and the one translation of store failures (5015)."""
        return authenticated(
            self.accounts,
            handler,
            unauthenticated=partial(campaign_error, VoiceError.AUTHENTICATION_FAILED),
            unavailable=partial(campaign_error, VoiceError.UNAVAILABLE),
        )

    async def create_campaign(self, request: Request, account: Account) -> Response:
        params = {k.lower(): v for k, v in request.query_params.items()}
        content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type in AUDIO_TYPES:
            return await self._upload(request, account, name=_name(params.get("name")))
        if content_type.startswith("multipart/"):
            detail = "Invalid audio: send the WAV file as the request body with Content-Type: audio/wav"
            return campaign_error(VoiceError.AUDIO_INVALID, detail=detail, status=415)
        try:
            doc = parse_body(await read_body(request.scope, request.receive, MAX_BODY_BYTES))
        except BodyTooLarge:
            return campaign_error(VoiceError.BODY_TOO_LARGE, detail="Request body too large (at most 1 MiB)")
        except ClientGone:
            return campaign_error(VoiceError.INVALID_JSON, detail="The request body was cut off")
        except InvalidJson:
            return campaign_error(VoiceError.INVALID_JSON)
        if not isinstance(doc, dict):
            return campaign_error(VoiceError.INVALID_JSON)
        fields = {str(k).lower(): v for k, v in doc.items()}
        name = _name(fields.get("name", params.get("name")))
        text = fields.get("text")
        if not isinstance(text, str) or not any(c.isprintable() and not c.isspace() for c in text):
            return campaign_error(VoiceError.NEITHER_GIVEN, detail="Parameter Text is missing or empty")
        if len(text) > MAX_MESSAGE_CHARS:
            detail = f"Parameter Text is too long (at most {MAX_MESSAGE_CHARS:,} characters)"
            return campaign_error(VoiceError.MESSAGE_TOO_LONG, detail=detail)
        locale_value = fields.get("locale")
        if locale_value is None or (isinstance(locale_value, str) and not locale_value.strip()):
            return campaign_error(VoiceError.LOCALE_MISSING)
        locale = self.voice.locale(locale_value.strip()) if isinstance(locale_value, str) else None
        if locale is None:
            return campaign_error(VoiceError.LOCALE_UNSUPPORTED)
        try:
            campaign = await self.voice.create_campaign_from_text(account, name=name, text=text, locale=locale)
        except UnsupportedLocale:
            return campaign_error(VoiceError.LOCALE_UNSUPPORTED)
        except TtsError as e:
            log.exception("rendering campaign text for account %s failed", account.name)
            detail = f"{VoiceError.UNAVAILABLE.text} (text to speech failed: {e})"
            return campaign_error(VoiceError.UNAVAILABLE, detail=detail)
        log.info("campaign %s created from text by account %s", campaign.id, account.name)
        return _document(campaign, status=201)

    async def _upload(self, request: Request, account: Account, *, name: str) -> Response:
        try:
            async with asyncio.timeout(UPLOAD_SLOT_SECONDS):
                await self.uploads.acquire()
        except TimeoutError:
            detail = f"{VoiceError.UNAVAILABLE.text} (too many uploads at once; try again)"
            busy = campaign_error(VoiceError.UNAVAILABLE, detail=detail)
            busy.headers["Retry-After"] = "5"
            return busy
        try:
            try:
                async with asyncio.timeout(UPLOAD_READ_SECONDS):
                    data = await read_body(request.scope, request.receive, MAX_UPLOAD_BYTES)
            except TimeoutError:
                detail = f"Invalid audio: the upload did not arrive within {UPLOAD_READ_SECONDS:g} s"
                return campaign_error(VoiceError.AUDIO_INVALID, detail=detail, status=408)
            except BodyTooLarge:
                return campaign_error(VoiceError.BODY_TOO_LARGE, detail="Request body too large (at most 20 MiB)")
            except ClientGone:
                return campaign_error(VoiceError.AUDIO_INVALID, detail="Invalid audio: the upload was cut off")
            try:
                campaign = await self.voice.create_campaign_from_wav(account, name=name, data=data)
            except AudioError as e:
                return campaign_error(VoiceError.AUDIO_INVALID, detail=f"{VoiceError.AUDIO_INVALID.text}: {e}")
        finally:
            self.uploads.release()
        log.info("campaign %s created from a WAV upload by account %s", campaign.id, account.name)
        return _document(campaign, status=201)

    async def list_campaigns(self, request: Request, account: Account) -> Response:
        campaigns = await self.voice.list_campaigns(account)
        return Response(json_bytes({"Campaigns": [campaign_document(c) for c in campaigns]}), media_type=_JSON)

    async def get_campaign(self, request: Request, account: Account) -> Response:
        campaign_id = _path_id(request)
        campaign = await self.voice.get_campaign(account, campaign_id)
        if campaign is None:
            raise Refused(_not_found(campaign_id))
        return _document(campaign)

    async def delete_campaign(self, request: Request, account: Account) -> Response:
        campaign_id = _path_id(request)
        if not await self.voice.delete_campaign(account, campaign_id):
            raise Refused(_not_found(campaign_id))
        log.info("campaign %s deleted by account %s", campaign_id, account.name)
        return Response(status_code=204)


_JSON = "application/json"


def campaign_document(c: Campaign) -> dict[str, Any]:
    return {
        "CampaignID": c.id,
        "Name": c.name,
        "Source": c.source,
        "Locale": c.locale or "",
        "Text": c.text or "",
        "Duration": round(c.duration_ms / 1000, 1),
        "Created": format_time(c.created_at),
    }


def _document(c: Campaign, *, status: int = 200) -> Response:
    return Response(json_bytes(campaign_document(c)), status_code=status, media_type=_JSON)


def _not_found(campaign_id: str) -> Response:
    return campaign_error(VoiceError.CAMPAIGN_INVALID, status=404, campaign_id=campaign_id)


def _path_id(request: Request) -> str:
    raw = str(request.path_params.get("campaign_id", ""))
    guid = campaign_guid(raw)
    if guid is None:
        raise Refused(_not_found(raw[:64]))
    return guid


def _name(value: object) -> str:
    """A campaign's name: `DEFAULT_NAME` when none is given; refused (5000) when it is not short text."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_NAME
    if not isinstance(value, str) or len(value.strip()) > MAX_NAME_CHARS or not value.strip().isprintable():
        detail = f"Parameter Name is invalid (1-{MAX_NAME_CHARS} printable characters)"
        raise Refused(campaign_error(VoiceError.NEITHER_GIVEN, detail=detail))
    return value.strip()
