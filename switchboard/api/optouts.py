"""`/api/OptOuts` (extension, ARCHITECTURE.md §2 "Two-way messaging": Opt-out): the account's opt-out list,
in number order and keyset pages (`After` the listing's `Next`); `POST` adds a number (source "api"), `DELETE
/api/OptOuts/{MobileNo}` takes one off. A number is compared in E.164 when it is a valid international number,
however it is written ("0016…", "+1…"), else as written without separators. Errors are `{"Error": "<text>"}`,
as in `api/account.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.api.account import DEFAULT_LIST, MAX_LIST, error, json_object, ok
from switchboard.api.auth import Endpoint, Handler
from switchboard.api.params import id_number
from switchboard.domain.clock import Clock, format_time
from switchboard.domain.inbound import number_key
from switchboard.errors import Refused
from switchboard.store import optouts
from switchboard.store.base import Store
from switchboard.store.records import Account, OptOut

MAX_NUMBER = 32


@dataclass(frozen=True, slots=True)
class OptOutApi:
    store: Store
    clock: Clock
    changed: Callable[[int], None]
    """The account's list changed: this process's Sends read it again (switchboard/optouts.py)."""

    def routes(self, endpoint: Callable[[Handler], Endpoint]) -> list[Route]:
        """Its routes, each behind `endpoint` (authentication and the translation of store failures)."""
        return [
            Route("/api/optouts", endpoint(self.list_opt_outs), methods=["GET"]),
            Route("/api/optouts", endpoint(self.add_opt_out), methods=["POST"]),
            Route("/api/optouts/{mobile_no}", endpoint(self.remove_opt_out), methods=["DELETE"]),
        ]

    async def list_opt_outs(self, request: Request, account: Account) -> Response:
        params = {k.lower(): v.strip() for k, v in request.query_params.items()}
        raw_limit = params.get("limit")
        limit = DEFAULT_LIST if not raw_limit else id_number(raw_limit)
        if limit is None or not 1 <= limit <= MAX_LIST:
            return error(400, f"Limit must be a whole number from 1 to {MAX_LIST}")
        after = params.get("after") or None
        if after is not None and ("\x00" in after or len(after) > MAX_NUMBER):
            return error(400, "After must be a number from the listing's Next")
        rows = await self.store.list_opt_outs(account.id, limit=limit, after=after)
        return ok({"OptOuts": [document(r) for r in rows], "Next": rows[-1].number if len(rows) == limit else ""})

    async def add_opt_out(self, request: Request, account: Account) -> Response:
        doc = await json_object(request)
        fields = {str(k).lower(): v for k, v in doc.items()}
        raw = fields.get("mobileno")
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        number = _number(raw)
        added = await self.store.add_opt_out(account.id, number, source=optouts.API, now=self.clock.now_ms())
        self.changed(account.id)
        return ok({"MobileNo": number, "Added": added})

    async def remove_opt_out(self, request: Request, account: Account) -> Response:
        number = _number(str(request.path_params.get("mobile_no", "")))  # Starlette decoded the path already
        if not await self.store.remove_opt_out(account.id, number):
            return error(404, "Number is not on the opt-out list")
        self.changed(account.id)
        return ok({"MobileNo": number, "Removed": True})


def document(r: OptOut) -> dict[str, Any]:
    return {"MobileNo": r.number, "Source": r.source, "Created": format_time(r.created_at)}


def _number(raw: object) -> str:
    """The number as the list holds it; 400 when there is none."""
    if not isinstance(raw, str) or not raw.strip():
        raise Refused(error(400, "Parameter MobileNo is missing or empty"))
    if "\x00" in raw or len(raw) > 4 * MAX_NUMBER:  # PostgreSQL refuses NUL in text; room for spaces and dashes
        raise Refused(error(400, "Parameter MobileNo is invalid"))
    number = number_key(raw)
    if not number or len(number) > MAX_NUMBER:
        raise Refused(error(400, "Parameter MobileNo is invalid"))
    return number
