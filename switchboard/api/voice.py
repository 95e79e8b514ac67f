"""`/api/Voice`, `/api/Voice/Call`, `/api/Voice/GetStatus` and `/api/Voice/Cancel`: parse, call the service,
map the result or the error to the contract's shapes (docs/api.md). Raw ASGI, like the SMS endpoints.

Every error answer is ``{"ID": "<id>", "ErrorID": "<n>", "Message": "Received with error - <text>"}`` with
the HTTP status of its `VoiceError`. A refused Call gets a fresh ID of its own, as the vendor's answers
carry one; nothing is stored under it, but it is logged (at info, with the error id) so an operator can
find what a client quotes. GetStatus and Cancel answer with the ID they were asked about.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from switchboard.accounts import Accounts
from switchboard.api.auth import account_or_error
from switchboard.api.http import Receive, Scope, Send, header, json_bytes, query, read_body, respond
from switchboard.api.params import add_body_params, id_number
from switchboard.api.ratelimit import RateLimiter, SharedRateLimiter
from switchboard.callbacks import egress
from switchboard.domain import numbers
from switchboard.domain.catalogue import VoiceError
from switchboard.domain.clock import Clock, format_time
from switchboard.domain.lenient_json import MAX_BODY_BYTES, parse_body
from switchboard.domain.statuses import CallStatus
from switchboard.domain.voice_request import NOT_A_GUID, validate_call
from switchboard.errors import BodyTooLarge, ClientGone, EgressRefused, InvalidJson, StoreError
from switchboard.store.records import Account, CallRequestView
from switchboard.voice.service import VoiceService

log = logging.getLogger("switchboard.api")

MAX_IDEMPOTENCY_KEY = 255
"""Longest Idempotency-Key kept (a longer one is ignored, as for SMS)."""


def voice_error_body(ident: str, error: VoiceError, message: str | None = None) -> bytes:
    """The error shape; `message` replaces the catalogue's ("Received with error - ...") when given."""
    return json_bytes({"ID": ident, "ErrorID": error.error_id, "Message": message or error.message})


async def voice_error(
    send: Send, ident: str, error: VoiceError, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await respond(send, error.http_status, voice_error_body(ident, error), extra=extra)


@dataclass(frozen=True, slots=True)
class VoiceApi:
    accounts: Accounts
    voice: VoiceService
    limiter: RateLimiter | SharedRateLimiter
    clock: Clock
    simulated_trunks: frozenset[str]
    allow_private_callbacks: bool = False
    allow_loopback_callbacks: bool = False

    async def _refuse(
        self, send: Send, error: VoiceError, account: Account | None, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Answer a Call with an error, under a fresh ID that is logged with it."""
        ident = self.voice.request_id()
        log.info(
            "voice call %d refused: %s %s (account %s)",
            ident,
            error.error_id,
            error.text,
            "?" if account is None else account.name,
        )
        await voice_error(send, str(ident), error, extra)

    async def call(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = query(scope) if scope["query_string"] else {}
        account = await account_or_error(self.accounts, scope, params, VoiceError)
        if isinstance(account, VoiceError):
            return await self._refuse(send, account, None)
        try:
            body = await read_body(scope, receive, MAX_BODY_BYTES)
        except BodyTooLarge:
            return await self._refuse(send, VoiceError.BODY_TOO_LARGE, account)
        except ClientGone:
            return None  # a cut-off body may still parse (leniently); store nothing, nobody is listening
        try:
            doc = parse_body(body)
        except InvalidJson:
            return await self._refuse(send, VoiceError.INVALID_JSON, account)
        request = validate_call(doc, locale_of=self.voice.locale)
        if isinstance(request, VoiceError):
            return await self._refuse(send, request, account)
        if request.callback.url is not None:
            try:  # the URL's form now; its addresses are checked at each delivery
                egress.check_url(
                    request.callback.url,
                    allow_private=self.allow_private_callbacks,
                    allow_loopback=self.allow_loopback_callbacks,
                )
            except EgressRefused:
                return await self._refuse(send, VoiceError.CALLBACK_INVALID, account)
        if request.campaign_id is not None:
            try:
                usable = request.campaign_id != NOT_A_GUID and await self.voice.campaign_usable(
                    account, request.campaign_id
                )
            except StoreError:
                log.exception("reading a campaign failed")
                return await self._refuse(send, VoiceError.UNAVAILABLE, account)
            if not usable:
                return await self._refuse(send, VoiceError.CAMPAIGN_INVALID, account)
        wait = await self.limiter.allow(account.id)
        if wait:
            retry_after = str(max(1, math.ceil(wait))).encode()
            return await self._refuse(send, VoiceError.RATE_LIMITED, account, [(b"retry-after", retry_after)])
        idempotency_key = header(scope, b"idempotency-key")
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            idempotency_key = None
        try:
            accepted = await self.voice.call(account, request, idempotency_key=idempotency_key)
        except StoreError:
            log.exception("storing a Call request failed")
            return await self._refuse(send, VoiceError.UNAVAILABLE, account)
        extra = [(b"idempotent-replayed", b"true")] if accepted.replayed else None
        await respond(send, 200, b'{"ID":"%d","Status":"Received"}' % accepted.request_id, extra=extra)

    async def _lookup(self, scope: Scope, receive: Receive, send: Send) -> tuple[Account, dict[str, str]] | None:
        """Authenticate a GetStatus or Cancel, then gather its parameters (`id`, `referenceid`, `mobileno`)
        from the query string, or from the JSON body of a POST that has none there; None after answering an
        error."""
        params = query(scope)
        account = await account_or_error(self.accounts, scope, params, VoiceError)
        if isinstance(account, VoiceError):
            await voice_error(send, params.get("id", ""), account)
            return None
        await add_body_params(scope, receive, params)  # POST may carry them in a JSON body instead
        return account, params

    async def get_status(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = await self._lookup(scope, receive, send)
        if found is None:
            return None
        account, params = found
        ident = params.get("id", "").strip()
        reference = params.get("referenceid")
        try:
            view = None
            if ident:
                number = id_number(ident)
                if number is not None:
                    view = await self.voice.status(account, number)
            elif reference and "\x00" not in reference:  # PostgreSQL refuses NUL in text; none is stored
                view = await self.voice.status_by_reference(account, reference)
        except StoreError:
            log.exception("reading a call status failed")
            return await voice_error(send, ident, VoiceError.UNAVAILABLE)
        if view is None:
            return await voice_error(send, ident, VoiceError.ID_NOT_FOUND)
        await respond(send, 200, json_bytes(self.status_document(view)))

    async def cancel(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = await self._lookup(scope, receive, send)
        if found is None:
            return None
        account, params = found
        ident = params.get("id", "").strip()
        number = id_number(ident)
        mobile_no = (params.get("mobileno") or "").strip() or None
        if mobile_no is not None:
            # The store matches the number as written or its E.164 form: "0016175551212" finds a call to
            # "+16175551212", and so does "+16175551212" in a query string, whose "+" arrives as a space.
            mobile_no = numbers.normalize(mobile_no) or mobile_no.replace("\x00", "")  # PostgreSQL refuses NUL
        try:
            result = None
            if number is not None:
                result = await self.voice.cancel(account, number, mobile_no=mobile_no)
        except StoreError:
            log.exception("cancelling calls failed")
            return await voice_error(send, ident, VoiceError.UNAVAILABLE)
        if result is None:
            return await voice_error(send, ident, VoiceError.ID_NOT_FOUND)
        log.info("voice request %d: %d cancelled, %d stopping", number, result.ended, result.stopping)
        document = {
            "ID": str(number),
            "Cancelled": result.ended,
            "Stopping": result.stopping,
            "AlreadyEnded": result.finished,
        }
        await respond(send, 200, json_bytes(document))

    def status_document(self, view: CallRequestView) -> dict[str, Any]:
        calls = view.calls
        entries = [
            {
                "GUID": c.guid,
                "MobileNo": c.mobile_no,
                "Status": c.status.value,
                "Reason": c.reason,
                "Calltime": format_time(c.call_time),
                "AnswerTime": format_time(c.answer_time),
                "Duration": str(c.duration),
                "Trunk": c.trunk or "",
                "Simulated": c.trunk in self.simulated_trunks,
                "Detail": c.detail or "",
            }
            for c in calls
        ]
        overall = min((c.status for c in calls), key=lambda s: s.rank, default=CallStatus.RECEIVED)
        return {
            "ID": str(view.id),
            "Status": overall.value,
            "ReferenceID": view.reference_id or "",
            "DateTime": format_time(max((c.updated_at for c in calls), default=view.created_at)),
            "Calls": entries,
        }
