"""Which account a request is from: one way for every endpoint."""

from __future__ import annotations

from switchboard.accounts import Accounts
from switchboard.api.http import Scope, header
from switchboard.store.records import Account


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
