"""The callback dispatcher: claims due events from the outbox, posts them signed, and writes back what
happened (ARCHITECTURE.md §2 "Callback delivery").

- Success is any 2xx within the timeout (10 s). Anything else is retried on `RETRY_SCHEDULE`, each delay
  with ±10 % jitter so that events that failed together do not come back together; a `Retry-After`
  answer longer than the step is waited for instead (a shorter one does not use up the schedule faster).
  After the last retry the event is `failed` and can be replayed.
- 410 Gone gives up at once and, when the URL is the account's, disables it on the account (the account
  says why) until the URL is set again.
- Events of one destination go out in `Sequence` order: the store makes only the oldest pending event of a
  subject due (store/schema.py), so the dispatcher never holds two of one subject.
- Many receivers are served at once. Connections per host are bounded by the transport, and each host may
  hold only so many claimed events here (`_Host.cap`): as many as its connections get through in two
  timeouts at the latency it has shown, never fewer than twice its connections (a quarter of the room
  while nothing is known of it yet). An event that still waits for a connection after two timeouts is not
  sent (`NotSent`, not an attempt) and handed back: a host that was fast and stops answering cannot hold
  events past their lease. The rest are handed
  back, unattempted, each for its own later turn at the host's pace (`_Host.wait_ms`), so one slow or dead
  receiver never fills
  the dispatcher for everyone else, a fast one is not held back, and a slow one's backlog is not claimed
  over and over. A claim's lease (3 × timeout + 5 s) outlasts the longest wait here (two timeouts) plus
  its own attempt.
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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from switchboard.callbacks import RETRY_SCHEDULE, signing
from switchboard.callbacks.transport import Response, Transport
from switchboard.domain.clock import Clock
from switchboard.errors import DeliveryFailed, NotSent
from switchboard.store.base import Store
from switchboard.store.records import CallbackResult, CallbackState, ClaimedCallback

log = logging.getLogger("switchboard.callbacks")

JITTER = 0.1
MAX_RETRY_AFTER_SECONDS = 86400.0
"""A receiver's Retry-After is honoured up to a day (the schedule's longest step)."""
DEFER_MS = 1000
MAX_DEFER_MS = 600_000
"""A held-back event comes back within 10 minutes whatever its host's backlog (the backlog beyond that comes
back every 10 minutes: a few database writes a second for 100,000 events)."""
LATENCY_WEIGHT = 0.2
"""Weight of the newest attempt in a host's latency (an exponentially weighted mean)."""
HOSTS_REMEMBERED = 10_000
GONE = 410


@dataclass(frozen=True, slots=True)
class DispatcherSettings:
    batch_size: int = 500
    lease_ms: int = 60_000
    """Longer than any attempt (the transport's timeout), so a live dispatcher's claim never runs out."""
    poll_interval: float = 1.0
    max_in_flight: int = 1000
    """Attempts in progress at once, at most: no more than the transport's connections, so none waits for one."""
    connections_per_host: int = 16
    """The transport's bound (`HttpTransport`): how many of a host's events are sent at once."""
    timeout_ms: int = 10_000
    """The transport's timeout: the longest an attempt takes once sent."""
    retry_schedule: tuple[float, ...] = RETRY_SCHEDULE

    @property
    def max_wait_ms(self) -> int:
        """How long a post may wait for one of its host's connections (the transport's `max_wait`)."""
        return 2 * self.timeout_ms

    @classmethod
    def for_transport(cls, *, timeout: float, connections_per_host: int, **changes: Any) -> DispatcherSettings:
        """The settings that go with a transport of this timeout (seconds) and connections per host: an event
        waits at most two timeouts for a connection, then makes its own attempt, so its claim's lease is
        three timeouts and 5 s for writing the result."""
        return cls(
            connections_per_host=connections_per_host,
            timeout_ms=int(timeout * 1000),
            lease_ms=int((3 * timeout + 5) * 1000),
            **changes,
        )


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
        self._hosts: OrderedDict[str, _Host] = OrderedDict()  # least recently used first
        self._active: set[int] = set()  # callbacks with an attempt in progress here (their count: the room used)
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
        """Stop claiming, let the attempts in progress end (for a timeout at most: those still waiting for a
        connection then are cancelled, and their leases bring them back), write the results, close."""
        if self._claiming is not None:
            self._claiming.cancel()
            await asyncio.gather(self._claiming, return_exceptions=True)
        if self._deliveries:
            deliveries = set(self._deliveries)
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(asyncio.wait(deliveries), self._settings.timeout_ms / 1000 + 1)
            waiting = {t for t in deliveries if not t.done()}
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
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
            room = s.max_in_flight - len(self._active)
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
                await self._clock.sleep(s.poll_interval)
                continue
            deferred = sum(not self._start(c) for c in claimed)
            if deferred * 2 > len(claimed):
                # Mostly for hosts that are full: claim again when an attempt ends, not at once.
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await self._clock.wait_for(self._room.wait(), s.poll_interval)
                continue
            if len(claimed) == min(room, s.batch_size):
                continue  # there may be more due now
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(self._wake.wait(), s.poll_interval)

    def _start(self, c: ClaimedCallback) -> bool:
        """Start an attempt, or hand the event back when its host is full; whether it started."""
        if c.id in self._active:
            # Claimed again while still here: its lease ran out (a host that slowed down suddenly). The
            # attempt in progress decides nothing now; the new claim's lease brings it back once more.
            log.warning("callback %d: claimed again while its attempt is in progress", c.id)
            return True
        name = _host(c.url) if c.disabled is None else None
        host = self._host_state(name) if name is not None else None
        if host is not None:
            s, now = self._settings, self._clock.monotonic()
            if len(host.running) >= host.cap(s, now):
                self._add(self._defer(c, host.wait_ms(s, now)))
                return False
            host.running[c.id] = now
            host.turns_until = 0.0  # it has room now: turns handed out before are behind it
        self._active.add(c.id)
        task = asyncio.create_task(self._deliver(c, host))
        self._deliveries.add(task)  # the loop keeps only a weak reference to tasks
        task.add_done_callback(self._deliveries.discard)
        return True

    def _host_state(self, name: str) -> _Host:
        host = self._hosts.get(name)
        if host is None:
            host = self._hosts[name] = _Host()
            if len(self._hosts) > HOSTS_REMEMBERED:  # forget the least recently used idle host
                idle = next((k for k, h in self._hosts.items() if not h.running), None)
                if idle is not None:
                    del self._hosts[idle]
        self._hosts.move_to_end(name)
        return host

    async def _deliver(self, c: ClaimedCallback, host: _Host | None) -> None:
        try:
            result = await self.attempt(c)
            self._add(result)
            if host is not None:
                host.observe(result.latency_ms)
        except Exception:  # a bug, not a receiver's fault: the lease brings the event back
            log.exception("callback %d: attempt failed unexpectedly", c.id)
        finally:
            self._active.discard(c.id)
            if host is not None:
                host.running.pop(c.id, None)
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
                    await self._clock.sleep(self._settings.poll_interval)
                    continue
                self.delivered += sum(r.state is CallbackState.DELIVERED for r in pending)
            if self._closing and not self._results:
                return

    def _defer(self, c: ClaimedCallback, delay_ms: int) -> CallbackResult:
        now = self._clock.now_ms()
        return CallbackResult(
            c.id, c.attempt, CallbackState.PENDING, now, c.url, None, 0, None,
            retry_at=now + delay_ms + int(self._random() * delay_ms), deferred=True,
        )  # fmt: skip

    async def attempt(self, c: ClaimedCallback) -> CallbackResult:
        """Post one claimed event and decide what becomes of it."""
        now = self._clock.now_ms()
        noun = _NOUNS.get(c.kind, c.kind)
        if c.url is None:
            return self._result(c, now, CallbackState.FAILED, None, 0, f"the account has no {noun} callback URL")
        if c.disabled is not None:
            reason = f"the account's {noun} callback URL is disabled ({c.disabled}); set it again to enable it"
            return self._result(c, now, CallbackState.FAILED, None, 0, reason)
        secrets = signing.valid_secrets(c.secret, c.previous_secret, c.secret_rotated_at, now)
        body = c.body.encode()
        headers = signing.sign(secrets=secrets, msg_id=f"msg_{c.id}", timestamp=now // 1000, body=body)
        headers["Content-Type"] = "application/json"
        try:
            response = await self._transport.post(c.url, body, headers)
        except NotSent:  # its host was too busy to take it in time: not an attempt
            return self._defer(c, DEFER_MS)
        except DeliveryFailed as e:
            if e.permanent:
                return self._result(c, now, CallbackState.FAILED, None, e.latency_ms, e.reason)
            return self._retry(c, now, None, e.latency_ms, e.reason, None)
        latency = response.latency_ms
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
            delay = max(delay, asked)
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


_NOUNS = {"sms": "SMS", "voice": "voice", "inbound": "inbound"}
"""How a callback kind is named in attempts' errors and the log."""


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


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


class _Host:
    """What the dispatcher knows of one receiver host: its attempts in progress, and how fast it answers."""

    __slots__ = ("latency_ms", "running", "turns_until")

    def __init__(self) -> None:
        self.turns_until = 0.0
        """The last turn given to a held-back event (monotonic milliseconds)."""
        self.running: dict[int, float] = {}
        """Callback id → when its attempt started (monotonic seconds), oldest first."""
        self.latency_ms: float | None = None
        """Mean time from sending to the answer or giving up, recent attempts weighing most."""

    def observe(self, latency_ms: int) -> None:
        if self.latency_ms is None:
            self.latency_ms = float(latency_ms)
        else:
            self.latency_ms += LATENCY_WEIGHT * (latency_ms - self.latency_ms)

    def pace_ms(self, now: float) -> float:
        """How long an attempt takes here: the mean so far, or longer if the oldest attempt in progress has
        already taken longer (a host that has stopped answering shows it before any attempt ends)."""
        oldest = (now - next(iter(self.running.values()))) * 1000 if self.running else 0.0
        return max(self.latency_ms or 0.0, oldest)

    def cap(self, s: DispatcherSettings, now: float) -> int:
        """Events this host may hold here: as many as its connections get through in two timeouts (the
        wait a claim's lease allows before an event's own attempt), at least twice its connections."""
        least = 2 * s.connections_per_host
        if self.latency_ms is None:  # a new host: a share of the room, until its pace shows
            return max(least, s.max_in_flight // 4)
        fits = int(s.connections_per_host * 2 * s.timeout_ms / max(self.pace_ms(now), 1.0))
        return max(least, min(fits, s.max_in_flight))

    def wait_ms(self, s: DispatcherSettings, now: float) -> int:
        """When to hand a held-back event in again: after the attempts in progress here, and after the
        events handed back before it, at the host's pace (one connection frees every pace / connections).
        Each event gets its own later turn, so a slow host's backlog comes back about as fast as the host
        takes it, not all at once again."""
        pace = self.pace_ms(now)
        if self.latency_ms is None:
            # No attempt has ended yet: look again once the oldest has taken as long again, soon if the
            # host is fast, later and later if it is not answering.
            return int(min(MAX_DEFER_MS, max(DEFER_MS, pace)))
        step = pace / s.connections_per_host
        now_ms = now * 1000
        turn = max(now_ms + len(self.running) * step, self.turns_until) + step
        self.turns_until = turn
        return int(min(MAX_DEFER_MS, max(DEFER_MS, turn - now_ms)))
