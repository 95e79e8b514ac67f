"""The one place where concrete parts are wired together from the configuration.

`Gateway` holds what one process runs: the store, the services, and, by role, the HTTP API (`api`), the
workers with their carriers (`worker`), or both (`serve`, the embedded default).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import uvicorn

from switchboard import __version__
from switchboard.accounts import Accounts
from switchboard.api.account import AccountApi
from switchboard.api.app import ApiSettings, ASGIApp, create_app
from switchboard.api.ratelimit import RateLimiter, SharedRateLimiter
from switchboard.api.server import CoalescingHttpProtocol
from switchboard.api.sms import SmsApi
from switchboard.api.voice import VoiceApi
from switchboard.callbacks.dispatcher import Dispatcher, DispatcherSettings
from switchboard.callbacks.transport import HttpTransport
from switchboard.config import Config, SmsCarrierConfig, VoiceTrunkConfig
from switchboard.domain import numbers
from switchboard.domain.clock import Clock, SystemClock
from switchboard.domain.ids import IdGenerator
from switchboard.domain.routing import Route, Router
from switchboard.limits import Limits
from switchboard.optouts import OptOutList, ReplySender
from switchboard.sms.carrier import Carrier
from switchboard.sms.service import SmsService
from switchboard.sms.simulator import SimulatedCarrier
from switchboard.sms.worker import SmsWorker, WorkerSettings
from switchboard.store import migrate
from switchboard.store.base import Store
from switchboard.voice import tts
from switchboard.voice.dialer import Dialer, DialerSettings
from switchboard.voice.prompts import AudioLibrary
from switchboard.voice.service import VoiceService
from switchboard.voice.simulator import SimulatedTrunk
from switchboard.voice.trunk import Trunk

log = logging.getLogger("switchboard")

Role = Literal["serve", "api", "worker"]
SWITCH_INTERVAL = 0.0005


def open_store(config: Config) -> Store:
    url = config.database_url
    if url.startswith("sqlite:///"):
        from switchboard.store.sqlite import SqliteStore

        return SqliteStore.from_url(url)
    from switchboard.store.postgres import PostgresStore

    return PostgresStore.from_url(url, pool_size=config.database.pool_size)


def build_carriers(config: Config, clock: Clock) -> list[Carrier]:
    carriers: list[Carrier] = []
    # With none configured, the default simulator.
    for c in config.sms.carriers or [SmsCarrierConfig(name="simulator")]:
        if c.kind == "smpp":
            from switchboard.sms.smpp.connector import SmppCarrier
            from switchboard.sms.smpp.receipt import IdForm

            carriers.append(
                SmppCarrier(
                    name=c.name,
                    host=c.host,
                    port=c.port,
                    system_id=c.system_id,
                    password=c.password,
                    system_type=c.system_type,
                    binds=c.binds,
                    window=c.window,
                    rate=c.rate,
                    id_form=IdForm(c.id_form),
                    receipt_id_form=None if c.receipt_id_form is None else IdForm(c.receipt_id_form),
                    clock=clock,
                )
            )
        else:
            carriers.append(SimulatedCarrier(name=c.name, delay=c.delay, rate=c.rate, clock=clock))
    return carriers


def build_trunks(config: Config, clock: Clock) -> list[Trunk]:
    trunks: list[Trunk] = []
    rtp_clock = None  # one 20 ms clock paces the audio of every call of the process
    # With none configured, the default simulator.
    for t in config.voice.trunks or [VoiceTrunkConfig(name="simulator")]:
        if t.kind == "sip":
            from switchboard.voice.sip.rtp import RtpClock
            from switchboard.voice.sip.transaction import T1, T2, T4, TIMER_D, Timers
            from switchboard.voice.sip.trunk import NumberFormat, SipTrunk, SipTrunkSettings

            rtp_clock = rtp_clock or RtpClock()
            settings = SipTrunkSettings(
                host=t.host,
                port=t.port,
                username=t.username,
                password=t.password,
                bind_host=t.bind_host,
                bind_port=t.bind_port,
                public_host=t.public_host,
                caller_id_format=NumberFormat(t.caller_id_format),
                number_format=NumberFormat(t.number_format),
                dial_prefix=t.dial_prefix,
                from_domain=t.from_domain,
                rtp_ports=(t.rtp_ports[0], t.rtp_ports[1]),
                codecs=tuple(c.upper() for c in t.codecs),
                asserted_identity=t.asserted_identity,
                cps=t.cps,
                max_calls=t.max_calls,
            )
            # T2, T4 and Timer D scale down with T1 when it is lowered (RFC 3261 Table 4).
            scale = min(1.0, t.t1_ms / 1000 / T1)
            timers = Timers(t1=t.t1_ms / 1000, t2=T2 * scale, t4=T4 * scale, d=TIMER_D * scale)
            trunks.append(
                SipTrunk(name=t.name, settings=settings, clock=clock, rtp_clock=rtp_clock, timers=timers)
            )
        else:
            trunks.append(
                SimulatedTrunk(name=t.name, clock=clock, ring_seconds=t.delay, max_calls=t.max_calls, cps=t.cps)
            )
    return trunks


def simulated_trunk_names(config: Config) -> frozenset[str]:
    trunks = config.voice.trunks or [VoiceTrunkConfig(name="simulator")]
    return frozenset(t.name for t in trunks if t.kind == "simulator")


@dataclass
class Gateway:
    config: Config
    role: Role = "serve"
    clock: Clock = field(default_factory=SystemClock)

    store: Store = field(init=False)
    accounts: Accounts = field(init=False)
    sms: SmsService = field(init=False)
    worker: SmsWorker | None = field(init=False, default=None)
    opt_outs: OptOutList = field(init=False)
    replies: ReplySender | None = field(init=False, default=None)
    audio: AudioLibrary = field(init=False)
    voice: VoiceService = field(init=False)
    dialer: Dialer | None = field(init=False, default=None)
    trunks: list[Trunk] = field(init=False, default_factory=list)
    dispatcher: Dispatcher | None = field(init=False, default=None)
    carriers: list[Carrier] = field(init=False, default_factory=list)

    async def start(self) -> None:
        await asyncio.to_thread(migrate.upgrade, self.config.database_url)
        self.store = open_store(self.config)
        await self.store.open()
        ids = IdGenerator(node=await self.store.node_id(), clock_ms=self.clock.now_ms)
        await asyncio.to_thread(numbers.preload)  # ≈ 0.2 s now rather than on the first request per country
        engine = await asyncio.to_thread(tts.default_engine)
        cache = tts.TtsCache(
            Path(self.config.server.data_dir) / "tts-cache", max_bytes=self.config.voice.tts_cache_mb * 1_000_000
        )
        self.audio = AudioLibrary(engine=engine, cache=cache, store=self.store)
        cb = self.config.callbacks
        self.accounts = Accounts(
            store=self.store,
            ids=ids,
            clock=self.clock,
            allow_private_callbacks=cb.allow_private_networks,
            allow_loopback_callbacks=cb.allow_loopback,
        )
        if self.role in ("serve", "worker"):
            settings = DispatcherSettings.for_transport(
                timeout=cb.timeout_seconds,
                connections_per_host=cb.connections_per_host,
                poll_interval=self.config.worker.poll_interval,
                retry_schedule=tuple(cb.retry_schedule),
            )
            self.dispatcher = Dispatcher(
                store=self.store,
                transport=HttpTransport(
                    allow_private=cb.allow_private_networks,
                    allow_loopback=cb.allow_loopback,
                    timeout=cb.timeout_seconds,
                    max_wait=settings.max_wait_ms / 1000,
                    connections_per_host=cb.connections_per_host,
                ),
                clock=self.clock,
                settings=settings,
            )
            self.carriers = build_carriers(self.config, self.clock)
            router = Router(
                carriers=self.carriers,
                routes=[Route(r.carrier, r.prefix, r.country, r.account, r.sender) for r in self.config.sms.routes],
                country_of=numbers.country_of,
            )
            w = self.config.worker
            self.worker = SmsWorker(
                store=self.store,
                router=router,
                clock=self.clock,
                settings=WorkerSettings(
                    batch_size=w.batch_size,
                    lease_ms=int(w.lease_seconds * 1000),
                    poll_interval=w.poll_interval,
                    retry_ms=int(w.retry_seconds * 1000),
                ),
                on_written=self.dispatcher.wake,
            )
            self.trunks = build_trunks(self.config, self.clock)
            self.dialer = Dialer(
                store=self.store,
                router=Router(
                    carriers=self.trunks,
                    routes=[Route(r.trunk, r.prefix, r.country, r.account, r.sender) for r in self.config.voice.routes],
                    country_of=numbers.country_of,
                ),
                audio=self.audio,
                clock=self.clock,
                settings=DialerSettings(poll_interval=w.poll_interval),
                on_written=self.dispatcher.wake,
            )
        self.voice = VoiceService(
            store=self.store, ids=ids, clock=self.clock, audio=self.audio, on_accepted=self._calls
        )
        self.limits = Limits(
            store=self.store,
            clock=self.clock,
            rate=self.config.limits.requests_per_second,
            burst=self.config.limits.burst,
        )
        self.opt_outs = OptOutList(store=self.store, clock=self.clock)
        self.sms = SmsService(
            store=self.store,
            ids=ids,
            clock=self.clock,
            on_accepted=self._accepted,
            limits=self.limits,
            opted_out=self.opt_outs.among,
        )
        if self.worker is not None:
            self.replies = ReplySender(
                store=self.store, sms=self.sms, clock=self.clock, poll_interval=self.config.worker.poll_interval
            )
            self.worker.on_keywords = self._keywords
        if self.dispatcher is not None:
            await self.dispatcher.start()
            if cb.allow_private_networks:
                log.warning("callbacks may go to private and loopback addresses (allow_private_networks)")
            elif cb.allow_loopback:
                log.warning("callbacks may go to loopback addresses, over http too (allow_loopback: development)")
        if self.worker is not None:
            await self.worker.start()
            if self.replies is not None:
                await self.replies.start()
            simulated = [c.name for c in self.carriers if c.simulated]
            if simulated:
                log.warning("SMS carrier(s) %s are SIMULATED: no real message leaves this gateway", simulated)
        if self.dialer is not None:
            await self.dialer.start()
            await self.store.watch_for_work(self.dialer.wake)
            simulated = [t.name for t in self.trunks if t.simulated]
            if simulated:
                log.warning("voice trunk(s) %s are SIMULATED: no real call leaves this gateway", simulated)

    def _accepted(self) -> None:
        """A Send was stored: its destinations are due, and those stored Failed have callbacks due."""
        if self.worker is not None:
            self.worker.wake()
        if self.dispatcher is not None:
            self.dispatcher.wake()

    def _calls(self) -> None:
        """A Call was stored (its calls are due) or a cancel asked for (records may be due)."""
        if self.dialer is not None:
            self.dialer.wake()
        if self.dispatcher is not None:
            self.dispatcher.wake()

    def _keywords(self) -> None:
        """Opt-out keywords were stored by this process's worker: its Sends see the list at once, and the
        replies go out now rather than at the next poll."""
        self.opt_outs.forget()
        if self.replies is not None:
            self.replies.wake()

    async def stop(self) -> None:
        if self.replies is not None:
            await self.replies.stop()
        if self.worker is not None:
            await self.worker.stop()  # its last receipts may write callbacks: the dispatcher stops after it
        if self.dialer is not None:
            await self.dialer.stop()  # the same for call records
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        await self.store.close()
        self.audio.engine.close()

    def http_app(self) -> ASGIApp:
        limits = self.config.limits
        # One limit per account for Send and Call together (LimitsConfig).
        # The defaults, with each account's own (switchboard/limits.py); on PostgreSQL shared by every api
        # process through the store, in leases (api/ratelimit.py); in one process, exact in memory.
        limiter: RateLimiter | SharedRateLimiter
        if self.store.dialect == "postgresql":
            limiter = SharedRateLimiter(store=self.store, limits=self.limits, clock=self.clock)
        else:
            limiter = RateLimiter(
                rate=limits.requests_per_second, burst=limits.burst, clock=self.clock, limits=self.limits
            )
        sms_api = SmsApi(
            accounts=self.accounts,
            sms=self.sms,
            limiter=limiter,
            clock=self.clock,
            allow_private_callbacks=self.config.callbacks.allow_private_networks,
            allow_loopback_callbacks=self.config.callbacks.allow_loopback,
            simulated_carriers=frozenset(
                c.name
                for c in self.config.sms.carriers or [SmsCarrierConfig(name="simulator")]
                if c.kind == "simulator"
            ),
        )
        voice_api = VoiceApi(
            accounts=self.accounts,
            voice=self.voice,
            limiter=limiter,
            clock=self.clock,
            allow_private_callbacks=self.config.callbacks.allow_private_networks,
            allow_loopback_callbacks=self.config.callbacks.allow_loopback,
            simulated_trunks=simulated_trunk_names(self.config),
        )
        return create_app(
            sms=sms_api,
            voice=voice_api,
            account=AccountApi(
                accounts=self.accounts, store=self.store, clock=self.clock, opt_outs_changed=self.opt_outs.forget
            ),
            store=self.store,
            settings=ApiSettings(access_log=self.config.server.access_log, version=__version__),
        )


async def run(
    config: Config, *, role: Role = "serve", on_started: Callable[[Gateway], Awaitable[None]] | None = None
) -> None:
    """Run until SIGINT or SIGTERM, then stop in order: stop taking requests, let the workers finish their
    batches and write their receipts, commit what the store holds, and exit."""
    # The SQLite writer thread gives up the GIL for every statement and fsync and must win it back from
    # the event loop; with the default 5 ms switch interval each of those waits can cost up to 5 ms, which
    # is a whole group commit's budget. 0.5 ms measured better for both Send cases (docs/benchmarks.md).
    sys.setswitchinterval(SWITCH_INTERVAL)
    stop = asyncio.Event()
    _on_signals(stop.set)
    gateway = Gateway(config, role=role)
    await gateway.start()
    try:
        if on_started is not None:
            await on_started(gateway)
        # What start-up made (phonenumbers' metadata, compiled patterns, modules) lives as long as the
        # process: frozen, the collector stops walking it in every full collection, which otherwise
        # showed as 50-100 ms stalls in Send's p99 (docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        if role == "worker":
            await stop.wait()
            return
        server = _Server(
            uvicorn.Config(
                gateway.http_app(),
                host=config.server.host,
                port=config.server.port,
                lifespan="off",
                access_log=False,
                log_config=None,
                server_header=False,
                http=CoalescingHttpProtocol,  # httptools, a response in one write
                backlog=4096,
                timeout_keep_alive=30,
                proxy_headers=False,  # nothing here uses the client's address; saves a middleware per request
            )
        )
        serving = asyncio.create_task(server.serve())
        await asyncio.wait([serving, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True  # finishes the requests in progress, then returns
        await serving
    finally:
        # Shielded: a second signal must not cut the flush of leased batches and pending writes short.
        await asyncio.shield(gateway.stop())
        log.info("stopped cleanly")


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: it would re-raise SIGTERM after serving and kill
    the process before the gateway stops (`run` handles the signals)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _on_signals(callback: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, callback)
