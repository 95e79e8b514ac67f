"""Which carrier takes a message, or which trunk a call: ordered rules, first match wins, failover to the next
match when one is down; with no rule matching, the first (ARCHITECTURE.md §3 "Routing")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Routable(Protocol):
    """An SMS carrier or a voice trunk, as routing sees it."""

    @property
    def name(self) -> str: ...

    @property
    def up(self) -> bool:
        """Whether it can take work now; routing fails over to the next match when not."""


T = TypeVar("T", bound=Routable)


@dataclass(frozen=True, slots=True)
class Route:
    carrier: str
    """The carrier's (or trunk's) name."""
    prefix: str | None = None
    country: str | None = None
    account: str | None = None
    sender: str | None = None

    def matches(self, *, e164: str, country: str | None, account: str, sender: str) -> bool:
        return (
            (self.prefix is None or e164.startswith(self.prefix))
            and (self.country is None or self.country == country)
            and (self.account is None or self.account == account)
            and (self.sender is None or self.sender == sender)
        )


class Router(Generic[T]):
    def __init__(
        self,
        *,
        carriers: Sequence[T],
        routes: Sequence[Route],
        country_of: Callable[[str], str | None],
    ) -> None:
        if not carriers:
            raise ValueError("at least one carrier is needed")
        self.carriers = {c.name: c for c in carriers}
        self._default = carriers[0]
        self._routes = list(routes)
        self._country_of = country_of
        self._needs_country = any(r.country is not None for r in routes)

    def choose(self, *, e164: str, account: str, sender: str) -> T | None:
        """The first carrier that is up among the matching routes (then the default); None if none is."""
        country = self._country_of(e164) if self._needs_country else None
        for route in self._routes:
            if route.matches(e164=e164, country=country, account=account, sender=sender):
                carrier = self.carriers[route.carrier]
                if carrier.up:
                    return carrier
        return self._default if self._default.up else None
