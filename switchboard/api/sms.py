"""`/api/SMS`, `/api/SMS/Send`, `/api/SMS/GetStatus` and `/api/SMS/Cancel`: parse, call the service, map
the result or the error to the contract's shapes (docs/api.md). Raw ASGI: this is the hot path."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from switchboard.accounts import Accounts
from switchboard.api.auth import account_or_error
from switchboard.api.http import Receive, Scope, Send, header, json_bytes, query, read_body, respond
from switchboard.api.params import add_body_params, id_number
from switchboard.api.ratelimit import RateLimiter, SharedRateLimiter
from switchboard.callbacks import egress
from switchboard.domain import numbers
from switchboard.domain.catalogue import SmsError
from switchboard.domain.clock import Clock, format_time
from switchboard.domain.lenient_json import MAX_BODY_BYTES, parse_body
from switchboard.domain.sms_request import validate_send
from switchboard.domain.statuses import SmsStatus, least_advanced
from switchboard.errors import BodyTooLarge, ClientGone, EgressRefused, InvalidJson, StoreError
from switchboard.sms.service import SmsService
from switchboard.store.records import MessageView

log = logging.getLogger("switchboard.api")

_ERROR_BODIES = {e: json_bytes({"Error ID": e.error_id, "Status": e.status}) for e in SmsError}


async def sms_error(send: Send, error: SmsError, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await respond(send, error.http_status, _ERROR_BODIES[error], extra=extra)


@dataclass(frozen=True, slots=True)
class SmsApi:
    accounts: Accounts
    sms: SmsService
    limiter: RateLimiter | SharedRateLimiter
    clock: Clock
    simulated_carriers: frozenset[str]
    allow_private_callbacks: bool = False
    allow_loopback_callbacks: bool = False

    async def send(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = query(scope) if scope["query_string"] else {}
        account = await account_or_error(self.accounts, scope, params, SmsError)
        if isinstance(account, SmsError):
            return await sms_error(send, account)
        try:
            body = await read_body(scope, receive, MAX_BODY_BYTES)
        except BodyTooLarge:
            return await sms_error(send, SmsError.BODY_TOO_LARGE)
        except ClientGone:
            return None  # a cut-off body may still parse (leniently); store nothing, nobody is listening
        try:
            doc = parse_body(body)
        except InvalidJson:
            return await sms_error(send, SmsError.INVALID_JSON)
        request = validate_send(doc, now=datetime.fromtimestamp(self.clock.now_ms() / 1000, UTC))
        if isinstance(request, SmsError):
            return await sms_error(send, request)
        if request.callback.url is not None:
            try:  # the URL's form now; its addresses are checked at each delivery
                egress.check_url(
                    request.callback.url,
                    allow_private=self.allow_private_callbacks,
                    allow_loopback=self.allow_loopback_callbacks,
                )
            except EgressRefused:
                return await sms_error(send, SmsError.CALLBACK_INVALID)
        wait = await self.limiter.allow(account.id)
        if wait:
            retry_after = str(max(1, math.ceil(wait))).encode()
            return await sms_error(send, SmsError.RATE_LIMITED, [(b"retry-after", retry_after)])
        idempotency_key = header(scope, b"idempotency-key")
        if idempotency_key is not None and not 0 < len(idempotency_key) <= 255:
            idempotency_key = None
        try:
            accepted = await self.sms.send(account, request, idempotency_key=idempotency_key)
        except StoreError:
            log.exception("storing a Send request failed")
            return await sms_error(send, SmsError.UNAVAILABLE)
        extra = [(b"idempotent-replayed", b"true")] if accepted.replayed else None
        await respond(send, 200, b'{"ID":"%d","Status":"Received"}' % accepted.message_id, extra=extra)

    async def get_status(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = query(scope)
        account = await account_or_error(self.accounts, scope, params, SmsError)
        if isinstance(account, SmsError):
            return await sms_error(send, account)
        await add_body_params(scope, receive, params)  # POST may carry the ID in a JSON body instead
        ident = params.get("id")
        reference = params.get("referenceid")
        try:
            view = None
            if ident:
                number = id_number(ident)
                if number is not None:
                    view = await self.sms.status(account, number)
            elif reference and "\x00" not in reference:  # PostgreSQL refuses NUL in text; none is stored
                view = await self.sms.status_by_reference(account, reference)
        except StoreError:
            log.exception("reading a status failed")
            return await sms_error(send, SmsError.UNAVAILABLE)
        if view is None:
            return await sms_error(send, SmsError.ID_NOT_FOUND)
        await respond(send, 200, json_bytes(self.status_document(view)))

    async def cancel(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Extension: cancel a scheduled Send's destinations (all, or those to `MobileNo`) that no worker has
        taken yet; answers how many were cancelled and where every destination it looked at stands."""
        params = query(scope)
        account = await account_or_error(self.accounts, scope, params, SmsError)
        if isinstance(account, SmsError):
            return await sms_error(send, account)
        await add_body_params(scope, receive, params)  # POST may carry them in a JSON body instead
        number = id_number(params.get("id", "").strip())
        mobile_no = (params.get("mobileno") or "").strip() or None
        if mobile_no is not None:
            # Matched as written or in E.164: "0016175551212" finds "+16175551212", and so does "+16175551212"
            # in a query string, whose "+" arrives as a space.
            mobile_no = numbers.normalize(mobile_no) or mobile_no.replace("\x00", "")  # PostgreSQL refuses NUL
        try:
            result = None if number is None else await self.sms.cancel(account, number, mobile_no=mobile_no)
        except StoreError:
            log.exception("cancelling a send failed")
            return await sms_error(send, SmsError.UNAVAILABLE)
        if result is None:
            return await sms_error(send, SmsError.ID_NOT_FOUND)
        log.info("message %d: %d destinations cancelled", number, result.cancelled)
        document = {
            "ID": str(number),
            "Cancelled": result.cancelled,
            "Destinations": [{"MobileNo": n, "Status": s.value} for n, s in result.destinations],
        }
        await respond(send, 200, json_bytes(document))

    def status_document(self, view: MessageView) -> dict[str, Any]:
        dests = view.destinations
        entries = [
            {
                "MobileNo": d.mobile_no,
                "Status": d.status.value,
                "DateTime": format_time(d.updated_at),
                "Delivery Date": format_time(d.delivered_at),
                "Error": d.error or "",
                "ErrorLogsID": "" if d.error_log_id is None else str(d.error_log_id),
                "Segments": view.segments,
                "Carrier": d.carrier or "",
                "Simulated": d.carrier in self.simulated_carriers,
            }
            for d in dests
        ]
        overall = least_advanced([d.status for d in dests]) if dests else SmsStatus.RECEIVED
        delivered = ""
        if overall is SmsStatus.DELIVERED:
            delivered = format_time(max(d.delivered_at or 0 for d in dests))
        return {
            "ID": str(view.id),
            "Status": overall.value,
            "Delivery Date": delivered,
            "ReferenceID": view.reference_id or "",
            "DateTime": format_time(max(d.updated_at for d in dests) if dests else view.created_at),
            "Destinations": entries,
        }
