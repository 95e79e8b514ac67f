"""Accounts and their API keys: creating them, and telling which account a request's key belongs to.

Keys are shown once, when made, and stored only as SHA-256 digests. Authentication looks a digest up in a
small in-process cache first (the Send path cannot afford a database read per request); a revoked key
stops working in this process at once and in others within `CACHE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass

from switchboard.callbacks import egress, signing
from switchboard.domain.clock import Clock
from switchboard.domain.ids import IdGenerator
from switchboard.errors import AccountError, EgressRefused, RotationInProgress
from switchboard.store.base import Store
from switchboard.store.records import Account, ApiKey

KEY_PREFIX = "sb_"
CACHE_SECONDS = 10.0
_CACHE_MAX = 10_000
_NAME_MAX = 64
RESOLVE_TIMEOUT = 5.0
"""Seconds to look a callback URL's host up when it is set."""


class _Keep:
    """Leave the value as it is (`Accounts.set_callback_urls`)."""


KEEP = _Keep()


@dataclass(frozen=True, slots=True)
class NewKey:
    key: ApiKey
    secret: str
    """The key itself: shown once, never stored."""


def digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > _NAME_MAX or not all(c.isalnum() or c in "-_." for c in name):
        raise AccountError(f"account name must be 1-{_NAME_MAX} letters, digits, '-', '_' or '.', not {name!r}")
    return name


class Accounts:
    def __init__(
        self,
        *,
        store: Store,
        ids: IdGenerator,
        clock: Clock,
        allow_private_callbacks: bool = False,
        allow_loopback_callbacks: bool = False,
        resolver: egress.Resolver | None = None,
    ) -> None:
        self._store = store
        self._ids = ids
        self._clock = clock
        self._allow_private = allow_private_callbacks
        self._allow_loopback = allow_loopback_callbacks
        self._resolver = resolver
        self._cache: dict[str, tuple[float, Account | None]] = {}

    async def create(
        self, name: str, *, sms_callback_url: str | None = None, voice_callback_url: str | None = None
    ) -> tuple[Account, NewKey]:
        name = check_name(name)
        account = Account(
            id=self._ids.next(),
            name=name,
            sms_callback_url=await self.check_callback_url(sms_callback_url, "SMS callback URL"),
            voice_callback_url=await self.check_callback_url(voice_callback_url, "voice callback URL"),
            webhook_secret=signing.new_secret(),
            created_at=self._clock.now_ms(),
        )
        await self._store.create_account(account)
        return account, await self.create_key(account)

    async def check_callback_url(self, url: str | None, what: str) -> str | None:
        """`url` if callbacks may be sent to it (egress.py: the URL, and every address its host resolves to
        now); None for none. Each delivery checks again: an address can change after this."""
        if url is None or url == "":
            return None
        try:
            target = egress.check_url(url, allow_private=self._allow_private, allow_loopback=self._allow_loopback)
            if not target.ip_literal:
                async with asyncio.timeout(RESOLVE_TIMEOUT):
                    await egress.resolve(
                        target.host,
                        target.port,
                        allow_private=self._allow_private,
                        allow_loopback=self._allow_loopback,
                        resolver=self._resolver,
                    )
        except EgressRefused as e:
            raise AccountError(f"{what} refused: {e.detail} ({e.rule.value})") from None
        except TimeoutError:
            raise AccountError(f"{what} refused: its host did not resolve within {RESOLVE_TIMEOUT:g} s") from None
        return url

    async def set_callback_urls(
        self,
        account: Account,
        *,
        sms: str | _Keep | None,
        voice: str | _Keep | None,
        inbound: str | _Keep | None = KEEP,
    ) -> Account:
        """Set (a URL), clear (None or "") or keep (`KEEP`) each callback URL. Setting a URL enables it again
        after a 410 disabled it. All are checked before any is written."""
        fields = (("sms", sms, "SmsCallbackUrl"), ("voice", voice, "VoiceCallbackUrl"),
                  ("inbound", inbound, "InboundCallbackUrl"))  # fmt: skip
        checked = {
            kind: await self.check_callback_url(value, field)
            for kind, value, field in fields
            if not isinstance(value, _Keep)
        }
        for kind, url in checked.items():
            await self._store.set_callback_url(account.id, kind, url)
        self._cache.clear()
        return await self._fresh(account)

    async def rotate_secret(self, account: Account) -> Account:
        """A new webhook secret; the current one keeps signing too for `signing.ROTATION_GRACE_MS`. Refused
        while an earlier rotation's grace lasts: its previous secret would stop working at once."""
        current = await self._fresh(account)
        now = self._clock.now_ms()
        signing_now = signing.valid_secrets(
            current.webhook_secret, current.previous_webhook_secret, current.secret_rotated_at, now
        )
        if len(signing_now) > 1:
            raise RotationInProgress(
                "the secret was rotated less than 24 hours ago and its previous secret still signs; "
                "rotate again once PreviousSecretValidUntil has passed"
            )
        await self._store.rotate_secret(account.id, signing.new_secret(), now=now)
        self._cache.clear()
        return await self._fresh(account)

    async def _fresh(self, account: Account) -> Account:
        found = await self._store.get_account(account.id)
        if found is None:
            raise AccountError("the account no longer exists")
        return found

    async def create_key(self, account: Account, *, label: str | None = None) -> NewKey:
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=self._ids.next(),
            account_id=account.id,
            digest=digest(secret),
            prefix=secret[:10],
            label=label,
            created_at=self._clock.now_ms(),
            revoked_at=None,
        )
        await self._store.add_api_key(key)
        return NewKey(key, secret)

    async def revoke_key(self, account: Account, key_id: int) -> bool:
        revoked = await self._store.revoke_api_key(account.id, key_id, self._clock.now_ms())
        self._cache.clear()
        return revoked

    async def get(self, name: str) -> Account:
        account = await self._store.get_account_by_name(name)
        if account is None:
            raise AccountError(f"no account named {name!r}")
        return account

    async def authenticate(self, api_key: str, *, user_name: str | None = None) -> Account | None:
        """The account the key belongs to, or None. With `user_name` (vendor style), it must also be
        that account's name."""
        if not api_key or len(api_key) > 256:
            return None
        d = digest(api_key)
        now = self._clock.monotonic()
        hit = self._cache.get(d)
        if hit is not None and hit[0] > now:
            account = hit[1]
        else:
            found = await self._store.find_api_key(d)
            account = None if found is None else found[1]
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[d] = (now + CACHE_SECONDS, account)
        if account is not None and user_name is not None and user_name != account.name:
            return None
        return account
