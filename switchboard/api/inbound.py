"""`GET /api/Numbers` and `GET /api/SMS/Inbound` (extensions, ARCHITECTURE.md §2 "Two-way messaging"): the numbers
the operator assigned to the account, and the inbound messages they received, newest first, in keyset pages
(`Before` the listing's `Next`), as `/api/Callbacks` pages. An inbound message in a listing has the fields of its
callback. Errors are `{"Error": "<text>"}`, as in `api/account.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.api.account import DEFAULT_LIST, MAX_LIST, error, ok
from switchboard.api.auth import Endpoint, Handler
from switchboard.api.params import id_number
from switchboard.domain.clock import format_time
from switchboard.domain.inbound import number_key
from switchboard.errors import Refused
from switchboard.store.base import Store
from switchboard.store.inbound import stored_document
from switchboard.store.records import Account


@dataclass(frozen=True, slots=True)
class InboundApi:
    store: Store

    def routes(self, endpoint: Callable[[Handler], Endpoint]) -> list[Route]:
        """Its routes, each behind `endpoint` (authentication and the translation of store failures)."""
        return [
            Route("/api/numbers", endpoint(self.list_numbers), methods=["GET"]),
            Route("/api/sms/inbound", endpoint(self.list_inbound), methods=["GET"]),
        ]

    async def list_numbers(self, request: Request, account: Account) -> Response:
        assigned = await self.store.list_numbers(account.id)
        return ok(
            {
                "Numbers": [
                    {"Number": n.number, "Keyword": n.keyword, "Assigned": format_time(n.created_at)} for n in assigned
                ]
            }
        )

    async def list_inbound(self, request: Request, account: Account) -> Response:
        params = {k.lower(): v.strip() for k, v in request.query_params.items()}
        limit = _number(params.get("limit"), "Limit", default=DEFAULT_LIST)
        before = _number(params.get("before"), "Before", default=None)
        since = _since(params.get("since"))
        to = _address(params.get("to"), "To")
        mobile_no = _address(params.get("mobileno"), "MobileNo")
        messages = await self.store.list_account_inbound(
            account.id,
            limit=limit,
            before_id=before,
            since=since,
            to_number=None if to is None else number_key(to),
            from_number=None if mobile_no is None else number_key(mobile_no),
        )
        return ok(
            {
                "Messages": [stored_document(m) for m in messages],
                "Next": str(messages[-1].id) if len(messages) == limit else "",
            }
        )


def _number(raw: str | None, name: str, *, default: int | None) -> Any:
    if raw is None or raw == "":
        return default
    high = MAX_LIST if name == "Limit" else 2**63 - 1
    number = id_number(raw)
    if number is None or not 1 <= number <= high:
        raise Refused(error(400, f"{name} must be a whole number from 1 to {high}"))
    return number


MAX_ADDRESS = 32
"""A number as a filter: no phone number or short code is longer (E.164 has 15 digits)."""


def _address(raw: str | None, name: str) -> str | None:
    """A number to filter by; 400 for one no number can be (NUL, which PostgreSQL refuses in text, or too long)."""
    if not raw:
        return None
    if "\x00" in raw or len(raw) > MAX_ADDRESS:
        raise Refused(error(400, f"{name} is not a number"))
    return raw


def _since(raw: str | None) -> int | None:
    """`Since` as milliseconds: a time as the API writes them ("2025-06-15 15:06:40.005", UTC) or ISO 8601 with
    its offset."""
    if raw is None or raw == "":
        return None
    try:
        when = datetime.fromisoformat(raw[:64])
    except ValueError:
        raise Refused(error(400, 'Since must be a time such as "2025-06-15 15:06:40" (UTC) or ISO 8601')) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)
