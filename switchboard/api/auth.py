"""Which account a request is from: one way for every endpoint.

- `authenticate`: the account, or None when the credentials name none.
- `account_or_error` (the raw ASGI endpoints): the account, or the error of the endpoint's catalogue to
  answer: AUTHENTICATION_FAILED, or UNAVAILABLE when the store cannot say (`SmsError` 128 / 140,
  `VoiceError` 5006 / 5015).
- `authenticated` (the Starlette endpoints): a handler behind authentication, with the one translation of
  store failures; a handler (or what it calls) raises `Refused` to answer at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from switchboard.accounts import Accounts
from switchboard.api.http import Scope, header
from switchboard.domain.catalogue import SmsError, VoiceError
from switchboard.errors import Refused, StoreError
from switchboard.store.records import Account

log = logging.getLogger("switchboard.api")

Catalogue = TypeVar("Catalogue", SmsError, VoiceError)
Handler = Callable[[Request, Account], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


async def authenticate(accounts: Accounts, scope: Scope, params: dict[str, str]) -> Account | None:
    """Bearer, X-API-Key, or the vendor's UserName and Password query parameters (`params` has its names in
    lower case, as `http.query` makes them)."""
    auth = header(scope, b"authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer":
            return await accounts.authenticate(token.strip())
        return None
    key = header(scope, b"x-api-key")
    if key is not None:
        return await accounts.authenticate(key.strip())
    password = params.get("password")
    if password is not None:
        return await accounts.authenticate(password, user_name=params.get("username"))
    return None


async def account_or_error(
    accounts: Accounts, scope: Scope, params: dict[str, str], errors: type[Catalogue]
) -> Account | Catalogue:
    """The request's account, or the member of `errors` to answer with (no await of its own beyond
    `authenticate`'s: the Send SMS path calls it)."""
    try:
        account = await authenticate(accounts, scope, params)
    except StoreError:
        log.exception("authentication lookup failed")
        return errors.UNAVAILABLE
    return errors.AUTHENTICATION_FAILED if account is None else account


def authenticated(
    accounts: Accounts,
    handler: Handler,
    *,
    unauthenticated: Callable[[], Response],
    unavailable: Callable[[], Response],
) -> Endpoint:
    """`handler` behind authentication (`unauthenticated()` answers a request from no account) and the one
    translation of store failures (`unavailable()`, logged)."""

    async def run(request: Request) -> Response:
        params = {k.lower(): v for k, v in request.query_params.items()}
        try:
            account = await authenticate(accounts, request.scope, params)
            if account is None:
                return unauthenticated()
            return await handler(request, account)
        except Refused as refused:
            return refused.response
        except StoreError:
            log.exception("%s %s failed", request.method, request.url.path)
            return unavailable()

    return run
