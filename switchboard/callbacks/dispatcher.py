"""The callback dispatcher: claims due events from the outbox, posts them signed, and writes back what
happened (ARCHITECTURE.md §2 "Callback delivery").

- Success is any 2xx within the timeout (10 s). Anything else is retried on `RETRY_SCHEDULE`, each delay
  with ±10 % jitter so that events that failed together do not come back together; a `Retry-After`
  answer replaces the step's delay. After the last retry the event is `failed` and can be replayed.
- 410 Gone gives up at once and, when the URL is the account's, disables it on the account (the account
  says why) until the URL is set again.
- Events of one destination go out in `Sequence` order: the store makes only the oldest pending event of a
  subject due (store/schema.py), so the dispatcher never holds two of one subject.
- Many receivers are served at once. Connections per host are bounded by the transport, and each host may
  hold at most `per_host_in_flight` claimed events here: the rest are handed back, unattempted, for a
  moment later, so one slow or dead receiver never fills the dispatcher for everyone else.
- Delivery is at-least-once: an event whose attempt was cut off (the process died) is claimed again after
  its lease and sent again with the same `webhook-id`, which receivers deduplicate on.

Results are written in batches by one writer task, as the SMS worker writes its receipts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from switchboard.callbacks import RETRY_SCHEDULE, signing
from switchboard.callbacks.transport import DeliveryFailed, Response, Transport
from switchboard.domain.clock import Clock
from switchboard.store.base import Store
from switchboard.store.records import CallbackResult, CallbackState, ClaimedCallback

log = logging.getLogger("switchboard.callbacks")

JITTER = 0.1
MAX_RETRY_AFTER_SECONDS = 86400.0
"""A receiver's Retry-After is honoured up to a day (the schedule's longest step)."""
DEFER_MS = 1000
GONE = 410


@dataclass(frozen=True, slots=True)
class DispatcherSettings:
    batch_size: int = 500
    lease_ms: int = 60_000
    """Longer than any attempt (the transport's timeout), so a live dispatcher's claim never runs out."""
    poll_interval: float = 1.0
    max_in_flight: int = 1000
    """Attempts in progress at once, at most: no more than the transport's connections, so none waits for one."""
    per_host_in_flight: int = 256
    retry_schedule: tuple[float, ...] = RETRY_SCHEDULE


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        transport: Transport,
        clock: Clock,
        settings: DispatcherSettings,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._transport = transport
        self._clock = clock
        self._settings = settings
        self._random = random_fraction
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._results: list[CallbackResult] = []
        self._results_ready = asyncio.Event()
        self._in_flight = 0
        self._per_host: Counter[str] = Counter()
        self._deliveries: set[asyncio.Task[None]] = set()
        self._claiming: asyncio.Task[None] | None = None
        self._writing: asyncio.Task[None] | None = None
        self._closing = False
        self.delivered = 0

    def wake(self) -> None:
        """New events were just written: look now instead of at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        self._claiming = asyncio.create_task(self._claim_loop(), name="callbacks-claim")
        self._writing = asyncio.create_task(self._write_loop(), name="callbacks-write")

    async def stop(self) -> None:
        """Stop claiming, let the attempts in progress end, write their results, close the connections."""
        if self._claiming is not None:
            self._claiming.cancel()
            await asyncio.gather(self._claiming, return_exceptions=True)
        if self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)
        if self._writing is not None:
            self._closing = True
            self._results_ready.set()
            await asyncio.gather(self._writing, return_exceptions=True)
        await self._transport.close()

    async def run_once(self) -> int:
        """Claim one batch, attempt all of it and write the results; how many were claimed. For tests and
        tools that step time themselves; `start` runs the same steps continuously."""
        claimed = await self._store.claim_callbacks(
            now=self._clock.now_ms(), limit=self._settings.batch_size, lease_ms=self._settings.lease_ms
        )
        results = await asyncio.gather(*(self.attempt(c) for c in claimed))
        await self._store.finish_callbacks(list(results))
        return len(claimed)

    async def _claim_loop(self) -> None:
        s = self._settings
        while True:
            room = s.max_in_flight - self._in_flight
            if room < min(s.batch_size, s.max_in_flight) // 2:
                self._room.clear()
                await self._room.wait()
                continue
            self._wake.clear()  # before looking: a wake while the claim runs is not lost
            try:
                claimed = await self._store.claim_callbacks(
                    now=self._clock.now_ms(), limit=min(room, s.batch_size), lease_ms=s.lease_ms
                )
            except Exception:
                log.exception("claiming callbacks failed; trying again")
                await asyncio.sleep(s.poll_interval)
                continue
            for c in claimed:
                self._start(c)
            if len(claimed) == min(room, s.batch_size):
                continue  # there may be more due now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), s.poll_interval)

    def _start(self, c: ClaimedCallback) -> None:
        host = _host(c.url)
        if host is not None and self._per_host[host] >= self._settings.per_host_in_flight:
            self._add(self._defer(c))
            return
        self._in_flight += 1
        if host is not None:
            self._per_host[host] += 1
        task = asyncio.create_task(self._deliver(c, host))
        self._deliveries.add(task)  # the loop keeps only a weak reference to tasks
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, c: ClaimedCallback, host: str | None) -> None:
        try:
            self._add(await self.attempt(c))
        except Exception:  # a bug, not a receiver's fault: the lease brings the event back
            log.exception("callback %d: attempt failed unexpectedly", c.id)
        finally:
            self._in_flight -= 1
            if host is not None:
                self._per_host[host] -= 1
                if not self._per_host[host]:
                    del self._per_host[host]
            self._room.set()

    def _add(self, result: CallbackResult) -> None:
        self._results.append(result)
        self._results_ready.set()

    async def _write_loop(self) -> None:
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            pending, self._results = self._results, []
            if pending:
                try:
                    await self._store.finish_callbacks(pending)
                except Exception:
                    self._results = pending + self._results
                    if self._closing:
                        # Not lost: their leases run out and they are attempted again.
                        log.exception("writing %d callback results failed at shutdown", len(self._results))
                        return
                    log.exception("writing callback results failed; trying again")
                    self._results_ready.set()
                    await asyncio.sleep(self._settings.poll_interval)
                    continue
                self.delivered += sum(r.state is CallbackState.DELIVERED for r in pending)
            if self._closing and not self._results:
                return

    def _defer(self, c: ClaimedCallback) -> CallbackResult:
        now = self._clock.now_ms()
        return CallbackResult(
            c.id, c.attempt, CallbackState.PENDING, now, c.url, None, 0, None,
            retry_at=now + DEFER_MS + int(self._random() * DEFER_MS), deferred=True,
        )  # fmt: skip

    async def attempt(self, c: ClaimedCallback) -> CallbackResult:
        """Post one claimed event and decide what becomes of it."""
        now = self._clock.now_ms()
        noun = "SMS" if c.kind == "sms" else "voice"
        if c.url is None:
            return self._result(c, now, CallbackState.FAILED, None, 0, f"the account has no {noun} callback URL")
        if c.disabled is not None:
            reason = f"the account's {noun} callback URL is disabled ({c.disabled}); set it again to enable it"
            return self._result(c, now, CallbackState.FAILED, None, 0, reason)
        secrets = signing.valid_secrets(c.secret, c.previous_secret, c.secret_rotated_at, now)
        body = c.body.encode()
        headers = signing.sign(secrets=secrets, msg_id=f"msg_{c.id}", timestamp=now // 1000, body=body)
        headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            response = await self._transport.post(c.url, body, headers)
        except DeliveryFailed as e:
            latency = _ms_since(started)
            if e.permanent:
                return self._result(c, now, CallbackState.FAILED, None, latency, e.reason)
            return self._retry(c, now, None, latency, e.reason, None)
        latency = _ms_since(started)
        if 200 <= response.status < 300:
            return self._result(c, now, CallbackState.DELIVERED, response.status, latency, None)
        error = f"HTTP {response.status}"
        if 300 <= response.status < 400:
            error += " (redirects are not followed)"
        if response.status == GONE:
            disable = f"{error} at {_iso(now)}" if c.from_account else None
            if disable is not None:
                log.warning("account %d: %s callback URL answered 410 Gone; disabled", c.account_id, noun)
            return self._result(c, now, CallbackState.FAILED, response.status, latency, error, disable=disable)
        return self._retry(c, now, response.status, latency, error, response)

    def _retry(
        self, c: ClaimedCallback, now: int, status: int | None, latency: int, error: str, response: Response | None
    ) -> CallbackResult:
        schedule = self._settings.retry_schedule
        if c.attempt > len(schedule):
            log.warning("callback %d: giving up after %d attempts (%s)", c.id, c.attempt, error)
            return self._result(c, now, CallbackState.FAILED, status, latency, f"{error}; gave up after {c.attempt}")
        delay = schedule[c.attempt - 1] * (1 + JITTER * (2 * self._random() - 1))
        asked = _retry_after(response.retry_after, now) if response is not None else None
        if asked is not None:
            delay = asked
        return self._result(
            c, now, CallbackState.PENDING, status, latency, error, retry_at=now + max(1, round(delay * 1000))
        )

    def _result(
        self,
        c: ClaimedCallback,
        now: int,
        state: CallbackState,
        status: int | None,
        latency: int,
        error: str | None,
        *,
        retry_at: int | None = None,
        disable: str | None = None,
    ) -> CallbackResult:
        return CallbackResult(
            c.id, c.attempt, state, now, c.url, status, latency, error,
            retry_at=retry_at, disable=disable, account_id=c.account_id, kind=c.kind,
        )  # fmt: skip


def _retry_after(value: str | None, now_ms: int) -> float | None:
    """Seconds a Retry-After header asks for (RFC 9110 §10.2.3: delay-seconds or an HTTP-date), bounded to
    [0, a day]; None when there is none or it cannot be read."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now_ms / 1000
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _host(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))
