"""Posting one callback: the only code here that touches the network (STYLE.md: httpx's transport idea).

`HttpTransport` is aiohttp's client behind one method, `post`, with the egress guard in its path:

- the URL is checked (`egress.check_url`) before anything else;
- the connector's resolver is `GuardedResolver`: it looks the name up once, checks every address
  (`egress.resolve`) and hands aiohttp exactly those addresses, so the connection goes to an address that
  was checked; aiohttp's own DNS cache is off, so every new connection is checked again;
- redirects are not followed (their target was never checked), proxies from the environment are not
  used, and the whole attempt, connecting included, is bounded by a timeout;
- connections are kept alive and bounded per host (`connections_per_host`): a slow receiver uses up its
  own connections, not everyone's. A post waits for one of its host's connections *before* its timeout
  starts, so time spent queueing behind a slow receiver's other callbacks never counts against it.

Every failure leaves as `DeliveryFailed` (aiohttp's errors are translated here and nowhere else).
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from switchboard import __version__
from switchboard.callbacks import egress
from switchboard.errors import DeliveryFailed, EgressRefused, NotSent

USER_AGENT = f"Switchboard-Webhooks/{__version__}"
MAX_RESPONSE_BYTES = 64 * 1024
"""Read at most this much of a receiver's answer (nobody reads it; reading lets the connection be reused)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    retry_after: str | None
    """The Retry-After header as sent, if any."""
    latency_ms: int = field(default=0, compare=False)
    """From sending (after any wait for one of the host's connections) to the answer."""


class Transport(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        """POST `body` to `url`; the answer's status, or DeliveryFailed (no answer within the transport's
        timeout among the reasons)."""

    async def close(self) -> None: ...


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver hook: one lookup, every address checked, only checked addresses returned."""

    def __init__(
        self, *, allow_private: bool, allow_loopback: bool = False, resolver: egress.Resolver | None = None
    ) -> None:
        self._allow_private = allow_private
        self._allow_loopback = allow_loopback
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await egress.resolve(
            host, port, allow_private=self._allow_private, allow_loopback=self._allow_loopback, resolver=self._resolver
        )
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


class HttpTransport:
    def __init__(
        self,
        *,
        allow_private: bool,
        allow_loopback: bool = False,
        timeout: float = 10.0,
        max_wait: float | None = None,
        connections_per_host: int = 16,
        max_connections: int = 1000,
        resolver: egress.Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._allow_loopback = allow_loopback
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_wait = max_wait
        """How long a post may wait for one of its host's connections (None: as long as it takes)."""
        self._limits = (connections_per_host, max_connections)
        self._resolver = GuardedResolver(allow_private=allow_private, allow_loopback=allow_loopback, resolver=resolver)
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._session: aiohttp.ClientSession | None = None
        self._hosts: dict[str, _HostSlots] = {}

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            per_host, total = self._limits
            connector = aiohttp.TCPConnector(
                limit=total,
                limit_per_host=per_host,  # _HostSlots keeps to it already; this is the backstop
                resolver=self._resolver,
                use_dns_cache=False,
                ssl=self._ssl,
                keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        try:
            target = _checked_url(url, self._allow_private, self._allow_loopback)
        except EgressRefused as e:
            raise DeliveryFailed(str(e), permanent=True) from None
        # The normalised URL: the host as checked (an A-label name, a canonical address), encoded already.
        request_url = URL(f"{target.scheme}://{target.host_header}{target.path_and_query}", encoded=True)
        key = f"{target.scheme}://{target.host_header}"
        slots = self._hosts.get(key)
        if slots is None:
            slots = self._hosts[key] = _HostSlots(self._limits[0])
        slots.users += 1
        try:
            try:
                async with asyncio.timeout(self._max_wait):
                    await slots.semaphore.acquire()
            except TimeoutError:
                raise NotSent(f"not sent: waited {self._max_wait:g} s for a connection to {key}") from None
            try:
                return await self._post(request_url, body, headers)
            finally:
                slots.semaphore.release()
        finally:
            slots.users -= 1
            if not slots.users:
                del self._hosts[key]

    async def _post(self, request_url: URL, body: bytes, headers: dict[str, str]) -> Response:
        started = time.perf_counter()
        try:
            async with self._open().post(
                request_url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
            ) as answer:
                await answer.content.read(MAX_RESPONSE_BYTES)
                return Response(answer.status, answer.headers.get("Retry-After"), _ms_since(started))
        except EgressRefused as e:  # from GuardedResolver: the name resolved to a refused address
            reason = str(e)
        except TimeoutError:
            reason = f"no answer within {self._timeout.total:g} s"
        except aiohttp.ClientError as e:
            reason = _describe(e)
        except (OSError, ssl.SSLError, ValueError) as e:
            reason = f"{type(e).__name__}: {e}"
        raise DeliveryFailed(reason, latency_ms=_ms_since(started))

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
            await asyncio.sleep(0)  # let the connector's transports finish closing


@functools.lru_cache(maxsize=4096)
def _checked_url(url: str, allow_private: bool, allow_loopback: bool) -> egress.Target:
    """`egress.check_url`, remembered: a pure function of its arguments (no lookup; the addresses are
    checked at each connection), and 4 % of the dispatcher's time when called for every post (py-spy)."""
    return egress.check_url(url, allow_private=allow_private, allow_loopback=allow_loopback)


class _HostSlots:
    """The connections one receiver host may use, and how many posts use or wait for them (the entry is
    dropped at zero, so hosts seen once do not accumulate)."""

    def __init__(self, size: int) -> None:
        self.semaphore = asyncio.Semaphore(size)
        self.users = 0


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _describe(e: aiohttp.ClientError) -> str:
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not accepted: {e.certificate_error}"
    if isinstance(e, aiohttp.ClientConnectorError):
        return f"cannot connect: {e.os_error.strerror or e.os_error}"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return "the receiver closed the connection without answering"
    return f"{type(e).__name__}: {e}"
