"""The one place where concrete parts are wired together from the configuration.

`Gateway` holds what one process runs: the store, the services, and, by role, the HTTP API (`api`), the
workers with their carriers (`worker`), or both (`serve`, the embedded default).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from switchboard import __version__
from switchboard.accounts import Accounts
from switchboard.api.app import ApiSettings, ASGIApp, create_app
from switchboard.api.ratelimit import RateLimiter
from switchboard.api.sms import SmsApi
from switchboard.config import Config
from switchboard.domain import numbers
from switchboard.domain.clock import Clock, SystemClock
from switchboard.domain.ids import IdGenerator
from switchboard.sms.carrier import Carrier
from switchboard.sms.router import Route, Router
from switchboard.sms.service import SmsService
from switchboard.sms.simulator import SimulatedCarrier
from switchboard.sms.worker import SmsWorker, WorkerSettings
from switchboard.store import migrate
from switchboard.store.base import Store

log = logging.getLogger("switchboard")

Role = Literal["serve", "api", "worker"]


def open_store(config: Config) -> Store:
    url = config.database_url
    if url.startswith("sqlite:///"):
        from switchboard.store.sqlite import SqliteStore

        return SqliteStore.from_url(url)
    from switchboard.store.postgres import PostgresStore

    return PostgresStore.from_url(url, pool_size=config.database.pool_size)


def build_carriers(config: Config, clock: Clock) -> list[Carrier]:
    carriers: list[Carrier] = []
    for c in config.sms.carriers:  # config.load refuses kinds that are not built
        carriers.append(SimulatedCarrier(name=c.name, delay=c.delay, clock=clock))
    if not carriers:
        carriers.append(SimulatedCarrier(name="simulator", delay=0.5, clock=clock))
    return carriers


@dataclass
class Gateway:
    config: Config
    role: Role = "serve"
    clock: Clock = field(default_factory=SystemClock)

    store: Store = field(init=False)
    accounts: Accounts = field(init=False)
    sms: SmsService = field(init=False)
    worker: SmsWorker | None = field(init=False, default=None)
    carriers: list[Carrier] = field(init=False, default_factory=list)

    async def start(self) -> None:
        await asyncio.to_thread(migrate.upgrade, self.config.database_url)
        self.store = open_store(self.config)
        await self.store.open()
        ids = IdGenerator(node=await self.store.node_id(), clock_ms=self.clock.now_ms)
        self.accounts = Accounts(store=self.store, ids=ids, clock=self.clock)
        if self.role in ("serve", "worker"):
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
            )
        self.sms = SmsService(
            store=self.store, ids=ids, clock=self.clock, on_accepted=self.worker.wake if self.worker else None
        )
        if self.worker is not None:
            await self.worker.start()
            simulated = [c.name for c in self.carriers if c.simulated]
            if simulated:
                log.warning("SMS carrier(s) %s are SIMULATED: no real message leaves this gateway", simulated)

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        await self.store.close()

    def http_app(self) -> ASGIApp:
        limits = self.config.limits
        sms_api = SmsApi(
            accounts=self.accounts,
            sms=self.sms,
            limiter=RateLimiter(rate=limits.requests_per_second, burst=limits.burst, clock=self.clock),
            clock=self.clock,
            max_body=self.config.server.max_body_bytes,
            simulated_carriers=frozenset(
                [c.name for c in self.carriers if c.simulated]
                or (["simulator"] if not self.config.sms.carriers else [])
            ),
        )
        return create_app(
            sms=sms_api,
            store=self.store,
            settings=ApiSettings(access_log=self.config.server.access_log, version=__version__),
        )


async def run(
    config: Config, *, role: Role = "serve", on_started: Callable[[Gateway], Awaitable[None]] | None = None
) -> None:
    """Run until SIGINT or SIGTERM."""
    import uvicorn

    gateway = Gateway(config, role=role)
    await gateway.start()
    try:
        if on_started is not None:
            await on_started(gateway)
        if role == "worker":
            stop = asyncio.Event()
            _on_signals(stop.set)
            await stop.wait()
            return
        server = uvicorn.Server(
            uvicorn.Config(
                gateway.http_app(),
                host=config.server.host,
                port=config.server.port,
                lifespan="off",
                access_log=False,
                log_config=None,
                server_header=False,
                http="httptools",
                backlog=4096,
                timeout_keep_alive=30,
            )
        )
        await server.serve()
    finally:
        await gateway.stop()


def _on_signals(callback: Callable[[], None]) -> None:
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, callback)
