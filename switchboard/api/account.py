"""`/api/Account` and `/api/Callbacks` (extensions): the account's callback URLs and webhook secret, and
the callbacks it was sent, with every attempt, and replay.

Errors are `{"Error": "<text>"}` with 400 (bad input), 401 (authentication), 404 (unknown callback; another
account's answers the same) or 503 (the database is unavailable). docs/api.md has the shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from switchboard.accounts import KEEP, Accounts
from switchboard.api.auth import Endpoint, Handler, authenticated
from switchboard.api.http import json_bytes, read_body
from switchboard.api.params import id_number
from switchboard.callbacks import signing
from switchboard.domain import optout
from switchboard.domain.clock import Clock, format_time
from switchboard.domain.lenient_json import MAX_BODY_BYTES, parse_body
from switchboard.errors import AccountError, BodyTooLarge, ClientGone, InvalidJson, Refused, RotationInProgress
from switchboard.store.base import Store
from switchboard.store.records import Account, CallbackState, CallbackView

MAX_LIST = 500
DEFAULT_LIST = 50
_URL_FIELDS = {"smscallbackurl": "sms", "voicecallbackurl": "voice", "inboundcallbackurl": "inbound"}


def error(status: int, text: str) -> Response:
    return Response(json_bytes({"Error": text}), status_code=status, media_type="application/json")


async def json_object(request: Request) -> dict[Any, Any]:
    """The request's body, a JSON object read leniently; `Refused` with the error to answer otherwise."""
    try:
        doc = parse_body(await read_body(request.scope, request.receive, MAX_BODY_BYTES))
    except BodyTooLarge:
        raise Refused(error(413, "Request body too large")) from None
    except ClientGone:
        raise Refused(error(400, "The request body was cut off")) from None
    except InvalidJson:
        raise Refused(error(400, "Invalid Json")) from None
    if not isinstance(doc, dict):
        raise Refused(error(400, "Invalid Json"))
    return doc


def ok(document: dict[str, Any]) -> Response:
    return Response(json_bytes(document), media_type="application/json")


def _nothing(account_id: int) -> None:
    return None


_REPLY_FIELDS = {"optoutreply": "opt_out", "optinreply": "opt_in", "helpreply": "help_text"}
MAX_REPLY = 1000
"""A reply is a Send's Message: at most 1,000 characters."""


@dataclass(frozen=True, slots=True)
class AccountApi:
    accounts: Accounts
    store: Store
    clock: Clock
    opt_outs_changed: Callable[[int], None] = _nothing
    """An account's opt-out list changed through `/api/OptOuts` (api/optouts.py): this process reads it again."""

    def endpoint(self, handler: Handler) -> Endpoint:
        """`handler` behind authentication (401) and the one translation of store failures (503)."""
        return authenticated(
            self.accounts,
            handler,
            unauthenticated=partial(error, 401, "Authentication failed"),
            unavailable=partial(error, 503, "Service temporarily unavailable"),
        )

    # /api/Account

    async def get_account(self, request: Request, account: Account) -> Response:
        return ok(await self._with_replies(self.account_document(await self._fresh(account)), account.id))

    async def _with_replies(self, document: dict[str, Any], account_id: int) -> dict[str, Any]:
        """The account's replies to STOP, START and HELP ("" when it sends none, the default text when unset)."""
        texts = await self.store.get_reply_texts(account_id)
        for name, kind, text in zip(("OptOutReply", "OptInReply", "HelpReply"), optout.Keyword, texts, strict=True):
            document[name] = optout.reply(kind, document["Name"], texts) if text is None else text
        return document

    async def put_account(self, request: Request, account: Account) -> Response:
        doc = await json_object(request)
        changes: dict[str, Any] = {"sms": KEEP, "voice": KEEP, "inbound": KEEP}
        replies: dict[str, str | None] = {}
        for key, value in doc.items():
            reply = _REPLY_FIELDS.get(str(key).lower())
            if reply is not None:
                if value is not None and (not isinstance(value, str) or len(value) > MAX_REPLY):
                    return error(400, f'{key} must be a text of at most {MAX_REPLY} characters, "" for none, or null')
                replies[reply] = value
                continue
            kind = _URL_FIELDS.get(str(key).lower())
            if kind is None:
                return error(
                    400,
                    f"Unknown field {key!r}; known: SmsCallbackUrl, VoiceCallbackUrl, InboundCallbackUrl, "
                    "OptOutReply, OptInReply, HelpReply",
                )
            if value is not None and not isinstance(value, str):
                return error(400, f'{key} must be a URL string, or null or "" to clear it')
            changes[kind] = value
        try:
            updated = await self.accounts.set_callback_urls(
                account, sms=changes["sms"], voice=changes["voice"], inbound=changes["inbound"]
            )
        except AccountError as e:
            return error(400, str(e))
        if replies:
            current = dict(
                zip(("opt_out", "opt_in", "help_text"), await self.store.get_reply_texts(account.id), strict=True)
            )
            await self.store.set_reply_texts(account.id, **(current | replies))
        return ok(await self._with_replies(self.account_document(updated), account.id))

    async def rotate_secret(self, request: Request, account: Account) -> Response:
        try:
            updated = await self.accounts.rotate_secret(account)
        except RotationInProgress as e:
            return error(409, str(e))
        except AccountError as e:
            return error(400, str(e))
        return ok(self.account_document(updated))

    def account_document(self, a: Account) -> dict[str, Any]:
        grace_until = ""
        now = self.clock.now_ms()
        if len(signing.valid_secrets(a.webhook_secret, a.previous_webhook_secret, a.secret_rotated_at, now)) > 1:
            assert a.secret_rotated_at is not None
            grace_until = format_time(a.secret_rotated_at + signing.ROTATION_GRACE_MS)
        return {
            "Name": a.name,
            "SmsCallbackUrl": a.sms_callback_url or "",
            "SmsCallbackDisabled": a.sms_callback_disabled or "",
            "VoiceCallbackUrl": a.voice_callback_url or "",
            "VoiceCallbackDisabled": a.voice_callback_disabled or "",
            "InboundCallbackUrl": a.inbound_callback_url or "",
            "InboundCallbackDisabled": a.inbound_callback_disabled or "",
            "WebhookSecret": a.webhook_secret,
            "PreviousSecretValidUntil": grace_until,
        }

    async def _fresh(self, account: Account) -> Account:
        """The account as stored now (authentication may answer from its cache)."""
        return await self.store.get_account(account.id) or account

    # /api/Callbacks

    async def list_callbacks(self, request: Request, account: Account) -> Response:
        params = {k.lower(): v for k, v in request.query_params.items()}
        state: CallbackState | None = None
        if params.get("status"):
            try:
                state = CallbackState(params["status"].lower())
            except ValueError:
                return error(400, "Status must be pending, delivered, failed or cancelled")
        limit = _number(params.get("limit"), "Limit", default=DEFAULT_LIST, high=MAX_LIST)
        before = _number(params.get("before"), "Before", default=None, high=2**63 - 1)
        views = await self.store.list_callbacks(account.id, state=state, limit=limit, before_id=before)
        return ok(
            {
                "Callbacks": [self.callback_document(v) for v in views],
                "Next": str(views[-1].id) if len(views) == limit else "",
            }
        )

    async def get_callback(self, request: Request, account: Account) -> Response:
        view = await self._callback(request, account)
        document = self.callback_document(view)
        document["History"] = [
            {
                "At": format_time(a.at),
                "Url": a.url or "",
                "StatusCode": a.status_code,
                "LatencyMs": a.latency_ms,
                "Error": a.error or "",
            }
            for a in view.history
        ]
        return ok(document)

    async def replay_callback(self, request: Request, account: Account) -> Response:
        callback_id = _path_id(request)
        done = await self.store.replay_callback(account.id, callback_id, now=self.clock.now_ms())
        if done == "missing":
            return error(404, "Callback not found")
        if done == "pending":
            return error(409, "Callback is pending already: it is attempted at its NextAttempt")
        return ok({"ID": str(callback_id), "State": CallbackState.PENDING.value})

    async def cancel_callback(self, request: Request, account: Account) -> Response:
        callback_id = _path_id(request)
        done = await self.store.cancel_callback(account.id, callback_id, now=self.clock.now_ms())
        if done == "missing":
            return error(404, "Callback not found")
        if done == "final":
            return error(409, "Callback is not pending: only a pending callback can be cancelled")
        return ok({"ID": str(callback_id), "State": CallbackState.CANCELLED.value})

    async def _callback(self, request: Request, account: Account) -> CallbackView:
        view = await self.store.get_callback(account.id, _path_id(request))
        if view is None:
            raise Refused(error(404, "Callback not found"))
        return view

    def callback_document(self, v: CallbackView) -> dict[str, Any]:
        return {
            "ID": str(v.id),
            "Kind": v.kind,
            "Subject": str(v.subject_id),
            "Sequence": v.sequence,
            "Url": v.url or "",
            "State": v.state.value,
            "Attempts": v.attempts,
            "LastStatusCode": v.last_status,
            "LastError": v.last_error or "",
            "NextAttempt": format_time(v.due_at) if v.state is CallbackState.PENDING else "",
            "Created": format_time(v.created_at),
            "Updated": format_time(v.updated_at),
            "Body": msgspec.json.decode(v.body),
        }


def _path_id(request: Request) -> int:
    number = id_number(str(request.path_params.get("callback_id", "")))
    if number is None:
        raise Refused(error(404, "Callback not found"))
    return number


def _number(raw: str | None, name: str, *, default: int | None, high: int) -> Any:
    if raw is None or raw == "":
        return default
    number = id_number(raw)
    if number is None or not 1 <= number <= high:
        raise Refused(error(400, f"{name} must be a whole number from 1 to {high}"))
    return number
