"""`python -m bench callbacks`: callback delivery (switchboard/callbacks/dispatcher.py) against a receiver on
loopback, with the store on SQLite (a file in a temp dir, WAL, synchronous=FULL).

Events are put in the outbox the way the API does for invalid numbers (`store.accept` with `callback="yes"`:
each destination is stored Failed with one callback event, due at once), 1,000 per message, before the
dispatcher starts. The dispatcher runs on uvloop with `HttpTransport(allow_private=True)`, in a fresh
process for every run, so that one run's heap does not hide the next one's memory.

Cases:
1. Throughput, receiver answers 200: EVENTS events pending, the receiver a bare ASGI app on uvicorn
   (httptools, uvloop) in its own process (bench/receiver.py; it uses about a fifth of a core at 7,000/s).
   Events delivered per second from `start()` until every one is delivered and written (or the cap, CAP
   seconds: a run that has not finished then is stopped and its rate is what it delivered so far); REPEATS
   runs, a fresh store each; median, min, max. Target: ≥ 5,000 callbacks/s.
2. The same with 1 % answering 500 (every event whose id is a multiple of 100, on every attempt): events/s of
   the 99 % delivered, from start until the last of them is written; the 1 % go to their 5 s retry (and,
   when the run lasts longer than that, fail again and go to the 5 min one) and are pending at the end.
3. Memory with MEMORY_EVENTS pending for a dead receiver, for MEMORY_SECONDS each: a closed loopback port
   (connection refused), and a blackhole (a socket that listens and never accepts, so nothing ever answers;
   transport timeout 2 s instead of 10 to see more attempts in the time). The process's RSS every second:
   start, max, end and the slope over the second half, with RssAnon (the heap) and Python's allocated
   blocks to tell a leak from the mapped SQLite WAL index; the WAL's size; how long `stop()` takes. Target:
   flat (no growth with the events pending); the dispatcher's own state (in flight, tasks, unwritten
   results) bounded by its settings.

The settings are the shipped defaults (DispatcherSettings(), HttpTransport's) unless `--set FIELD=VALUE` or
`--connections-per-host` say otherwise; `--tune` runs case 1 instead over TUNE_GRID. About 2 minutes on a
2-core machine when the target is met (each throughput run that is not done is stopped at CAP: 4 at most).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import inspect
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uvloop

from switchboard.callbacks import signing
from switchboard.callbacks.dispatcher import Dispatcher, DispatcherSettings
from switchboard.callbacks.transport import HttpTransport
from switchboard.domain.clock import SystemClock
from switchboard.domain.ids import IdGenerator
from switchboard.store import migrate
from switchboard.store.records import (
    Account,
    CallbackResult,
    ClaimedCallback,
    NewDestination,
    NewErrorLog,
    NewMessage,
)
from switchboard.store.sqlite import SqliteStore
from switchboard.testing import free_port

HERE = Path(__file__).parent
PER_MESSAGE = 1000
"""Destinations (so events) per message: the API's maximum."""
FAIL_EVERY = 100
INVALID = "International Number Invalid"
_TRANSPORT = inspect.signature(HttpTransport).parameters
DEFAULT_TIMEOUT: float = _TRANSPORT["timeout"].default
BLACKHOLE_TIMEOUT = 2.0
FILL_CHUNK = 10
"""Messages written at once while filling the outbox (bounds the benchmark's own memory)."""
_CONNECTIONS_PER_HOST: int = _TRANSPORT["connections_per_host"].default
_SETTINGS = DispatcherSettings.for_transport(timeout=DEFAULT_TIMEOUT, connections_per_host=_CONNECTIONS_PER_HOST)
"""What `switchboard serve` builds with the default configuration (app.py)."""


KNOBS = tuple(
    f.name for f in dataclasses.fields(DispatcherSettings) if type(getattr(_SETTINGS, f.name)) in (int, float)
)
"""The DispatcherSettings fields that are numbers."""
FROM_TRANSPORT = ("connections_per_host", "timeout_ms")
"""DispatcherSettings fields (when it has them) that tell the dispatcher what the transport was given."""
SETTABLE = tuple(k for k in KNOBS if k not in FROM_TRANSPORT)


@dataclass(frozen=True, slots=True)
class Tuning:
    """Changes to the shipped DispatcherSettings() (by field name), and the transport's connections per host.
    The transport's connections and timeout are given to the settings too when they have such fields."""

    changes: tuple[tuple[str, float], ...] = ()
    connections_per_host: int = _CONNECTIONS_PER_HOST

    @classmethod
    def of(cls, connections_per_host: int = _CONNECTIONS_PER_HOST, **changes: float) -> Tuning:
        return cls(tuple(changes.items()), connections_per_host)

    def unknown(self) -> list[str]:
        """Changed fields that DispatcherSettings does not have (any more), or that follow the transport."""
        return [name for name, _ in self.changes if name not in SETTABLE]

    def settings(self, timeout: float) -> DispatcherSettings:
        values: dict[str, Any] = {name: type(getattr(_SETTINGS, name))(value) for name, value in self.changes}
        if "connections_per_host" in KNOBS:
            values.setdefault("connections_per_host", self.connections_per_host)
        if "timeout_ms" in KNOBS:
            values.setdefault("timeout_ms", int(timeout * 1000))
            values.setdefault("lease_ms", int((3 * timeout + 5) * 1000))  # as for_transport makes it
        return replace(_SETTINGS, **values)

    def label(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        s = self.settings(timeout)
        knobs = ", ".join(f"{name} {getattr(s, name):,}" for name in KNOBS)
        return f"{knobs}; transport connections_per_host {self.connections_per_host}, timeout {timeout:g} s"

    def changed(self) -> str:
        """What differs from the shipped settings, for a table row."""
        parts = [f"{name} {value:,g}" for name, value in self.changes]
        if self.connections_per_host != _CONNECTIONS_PER_HOST:
            parts.append(f"connections_per_host {self.connections_per_host}")
        return ", ".join(parts) or "shipped defaults"


@dataclass(frozen=True, slots=True)
class Job:
    """One dispatcher run, in a process of its own."""

    db: str
    url: str
    events: int
    tuning: Tuning
    seconds: float
    """How long to run: the memory cases' length, the throughput cases' cap."""
    expect_delivered: int | None = None
    """Stop as soon as this many are delivered (throughput); None: run for `seconds` (memory)."""
    timeout: float = DEFAULT_TIMEOUT


@dataclass(slots=True)
class Sample:
    at: float
    rss_mb: float
    anon_mb: float
    """RssAnon: the heap (Python's and SQLite's page caches), not the mapped files."""
    wal_mb: float
    """The size of the SQLite WAL file."""
    python_blocks: int
    """sys.getallocatedblocks(): Python's own heap, apart from SQLite's page caches and aiohttp's buffers."""
    in_flight: int
    tasks: int
    unwritten: int
    delivered: int
    attempted: int
    deferred: int


@dataclass(slots=True)
class Result:
    events: int
    delivered: int
    seconds: float
    pending: int
    attempts: int
    """Attempts whose result was written during the run: posts that got an answer or failed."""
    deferred: int
    """Claimed and handed back unattempted because their host had as many as it may hold."""
    claims: int
    cpu_seconds: float
    """CPU time of the whole process (event loop and SQLite threads) during the run."""
    stop_seconds: float
    """How long `Dispatcher.stop()` took: it waits for the attempts in progress."""
    samples: list[Sample]
    capped: bool
    """Stopped at the throughput cap before all that should be delivered were."""

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds


class CountingStore(SqliteStore):
    """The SQLite store, counting what the dispatcher claims and hands back."""

    deferred = 0
    attempted = 0
    claims = 0

    async def claim_callbacks(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedCallback]:
        got = await super().claim_callbacks(now=now, limit=limit, lease_ms=lease_ms)
        self.claims += 1
        return got

    async def finish_callbacks(self, results: list[CallbackResult]) -> None:
        await super().finish_callbacks(results)
        deferred = sum(r.deferred for r in results)
        self.deferred += deferred
        self.attempted += len(results) - deferred


def status_mb(*fields: str) -> list[float]:
    """Fields of /proc/self/status (kB) in MB: VmRSS, RssAnon, RssFile..."""
    with open("/proc/self/status") as f:
        values = dict(line.split(":", 1) for line in f)
    return [int(values[name].split()[0]) / 1024 for name in fields]


async def fill(store: SqliteStore, url: str, events: int) -> None:
    """One account whose SMS callback URL is `url`, and `events` callback events due now: messages of
    invalid numbers, each stored Failed with its event, as the API stores them."""
    clock = SystemClock()
    ids = IdGenerator(node=0, clock_ms=clock.now_ms)
    now = clock.now_ms()
    account = Account(
        id=ids.next(),
        name="bench",
        sms_callback_url=url,
        voice_callback_url=None,
        webhook_secret=signing.new_secret(),
        created_at=now,
    )
    await store.create_account(account)
    writes: list[Awaitable[int]] = []
    for start in range(0, events, PER_MESSAGE):
        if len(writes) == FILL_CHUNK:
            await asyncio.gather(*writes)
            writes.clear()
        count = min(PER_MESSAGE, events - start)
        message_id = ids.block(count + 1)
        numbers = [f"555{start + i:07d}" for i in range(count)]  # no "+": not a valid number
        errors = [
            NewErrorLog(ids.next(), account.id, message_id + 1 + i, "InvalidNumber", INVALID, now) for i in range(count)
        ]
        message = NewMessage(
            id=message_id, account_id=account.id, reference_id=f"bench-{start}", sender="Switchboard",
            body="hello", encoding="gsm7", segments=1, callback="yes", callback_url=None,
            destination_count=count, created_at=now, schedule_at=None, expires_at=None, idempotency_key=None,
            status="Received", due_at=now,
        )  # fmt: skip
        writes.append(store.accept(message, [NewDestination(n, None) for n in numbers], errors))
    await asyncio.gather(*writes)


async def _run(job: Job) -> Result:
    store = CountingStore(path=job.db)
    await store.open()
    try:
        await fill(store, job.url, job.events)
        t = job.tuning
        settings = t.settings(job.timeout)
        transport = HttpTransport(
            allow_private=True,
            timeout=job.timeout,
            max_wait=settings.max_wait_ms / 1000,
            connections_per_host=t.connections_per_host,
        )
        d = Dispatcher(store=store, transport=transport, clock=SystemClock(), settings=settings)
        samples: list[Sample] = []

        def sample(at: float) -> None:
            rss, anon = status_mb("VmRSS", "RssAnon")
            wal = os.path.getsize(job.db + "-wal") / 2**20
            # The dispatcher's private counters, read only: what it holds in memory.
            in_flight, unwritten = len(d._active), len(d._results)
            tasks = len(asyncio.all_tasks())
            state = (sys.getallocatedblocks(), in_flight, tasks, unwritten, d.delivered)
            samples.append(Sample(at, rss, anon, wal, *state, store.attempted, store.deferred))

        sample(0.0)
        started = time.perf_counter()
        cpu = time.process_time()
        await d.start()
        next_sample = 1.0
        while True:
            await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - started
            if job.expect_delivered is not None and d.delivered >= job.expect_delivered:
                break
            if elapsed >= next_sample:
                sample(elapsed)
                next_sample += 1.0
            if elapsed >= job.seconds:
                break
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        sample(seconds)
        stopping = time.perf_counter()
        await d.stop()
        stop_seconds = time.perf_counter() - stopping
        pending = await store.pending_callbacks()
    finally:
        await store.close()
    last = samples[-1]
    return Result(
        events=job.events, delivered=last.delivered, seconds=seconds, pending=pending, attempts=last.attempted,
        deferred=last.deferred, claims=store.claims, cpu_seconds=cpu,
        stop_seconds=stop_seconds, samples=samples,
        capped=job.expect_delivered is not None and last.delivered < job.expect_delivered,
    )  # fmt: skip


def run_job(job: Job) -> Result:
    """The job in this process, on uvloop (the entry point of the fresh process)."""
    return uvloop.run(_run(job))


def in_fresh_process(job: Job) -> Result:
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_job, job).result()


def serve(app: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """uvicorn serving `app` (module:attribute) with httptools and uvloop on a free loopback port; returns
    once it accepts connections."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", app, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning",
        ],
        cwd=HERE.parent,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{app} did not start on port {port}") from None
            time.sleep(0.05)


@contextlib.contextmanager
def receiver(fail_every: int = 0) -> Iterator[str]:
    """bench/receiver.py in its own process; yields the callback URL."""
    proc, url = serve("bench.receiver:app", {"BENCH_FAIL_EVERY": str(fail_every)})
    try:
        yield url + "/hooks/sms"
    finally:
        proc.terminate()
        proc.wait()


@contextlib.contextmanager
def refused() -> Iterator[str]:
    """A loopback port nobody listens on: every connection is refused."""
    yield f"http://127.0.0.1:{free_port()}/hooks/sms"


@contextlib.contextmanager
def blackhole() -> Iterator[str]:
    """A socket that listens and never accepts: connections complete (until the backlog is full; later
    ones wait for their SYN to be answered) and nothing is ever read or answered."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4096)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/hooks/sms"


class Stores:
    """Fresh migrated SQLite files in `folder`, copies of one migrated template."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._template = folder / "template.db"
        migrate.upgrade(f"sqlite:///{self._template}")
        self._made = 0

    def fresh(self) -> str:
        self._made += 1
        path = self._folder / f"run-{self._made}.db"
        shutil.copyfile(self._template, path)
        return str(path)


def throughput(
    stores: Stores, url: str, *, events: int, repeats: int, tuning: Tuning, fail_every: int, cap: float
) -> list[Result]:
    """Case 1 (fail_every 0) or 2: REPEATS runs until every event that can be delivered is."""
    expect = events - events // fail_every if fail_every else events  # callback ids are 1..events
    return [
        in_fresh_process(Job(stores.fresh(), url, events, tuning, seconds=cap, expect_delivered=expect))
        for _ in range(repeats)
    ]


def dead_receiver(stores: Stores, url: str, *, events: int, seconds: float, tuning: Tuning, timeout: float) -> Result:
    """Case 3: `seconds` against a receiver that never answers."""
    return in_fresh_process(Job(stores.fresh(), url, events, tuning, seconds=seconds, timeout=timeout))


def slope_mb_per_min(samples: list[Sample]) -> float:
    """RSS growth over the second half of the run, by least squares."""
    end = samples[-1].at
    half = [s for s in samples if s.at >= end / 2]
    if len(half) < 2:
        return 0.0
    fit = statistics.linear_regression([s.at for s in half], [s.rss_mb for s in half])
    return fit.slope * 60


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("-" * (len(h) + 2) for h in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


THROUGHPUT_HEADER = (
    "case", "delivered/s median", "min", "max", "delivered", "s", "CPU %", "attempts", "deferred", "claims",
    "pending at end", "RSS max MB", "WAL MB at end",
)  # fmt: skip


def throughput_row(name: str, runs: list[Result]) -> tuple[str, ...]:
    """Rates over the runs; the other columns from the median run."""
    rates = [r.rate for r in runs]
    mid = sorted(runs, key=lambda r: r.rate)[len(runs) // 2]
    return (
        name,
        f"{statistics.median(rates):,.0f}",
        f"{min(rates):,.0f}",
        f"{max(rates):,.0f}",
        f"{mid.delivered:,} of {mid.events:,}",
        f"{mid.seconds:.1f}" + (" (cap)" if mid.capped else ""),
        f"{100 * mid.cpu_seconds / mid.seconds:.0f}",
        f"{mid.attempts:,}",
        f"{mid.deferred:,}",
        f"{mid.claims:,}",
        f"{mid.pending:,}",
        f"{max(s.rss_mb for s in mid.samples):.0f}",
        f"{mid.samples[-1].wal_mb:,.0f}",
    )


MEMORY_HEADER = (
    "dead receiver", "events pending", "s", "attempts/s", "deferred/s", "CPU %", "RSS start MB", "max", "end",
    "slope 2nd half MB/min", "RssAnon MB", "Python k blocks", "max in flight", "max tasks", "max unwritten",
    "stop() s", "pending at end", "WAL MB start", "end",
)  # fmt: skip


def memory_row(name: str, r: Result) -> tuple[str, ...]:
    first, last = r.samples[0], r.samples[-1]
    return (
        name,
        f"{r.events:,}",
        f"{r.seconds:.0f}",
        f"{r.attempts / r.seconds:,.0f}",
        f"{r.deferred / r.seconds:,.0f}",
        f"{100 * r.cpu_seconds / r.seconds:.0f}",
        f"{first.rss_mb:.0f}",
        f"{max(s.rss_mb for s in r.samples):.0f}",
        f"{last.rss_mb:.0f}",
        f"{slope_mb_per_min(r.samples):+.1f}",
        f"{first.anon_mb:.0f} → {last.anon_mb:.0f}",
        f"{first.python_blocks / 1000:,.0f} → {last.python_blocks / 1000:,.0f}",
        f"{max(s.in_flight for s in r.samples):,}",
        f"{max(s.tasks for s in r.samples):,}",
        f"{max(s.unwritten for s in r.samples):,}",
        f"{r.stop_seconds:.1f}",
        f"{r.pending:,}",
        f"{first.wal_mb:,.0f}",
        f"{last.wal_mb:,.0f}",
    )


TUNE_GRID = (
    Tuning(),
    Tuning.of(connections_per_host=32),
    Tuning.of(connections_per_host=64),
    Tuning.of(batch_size=1000),
    Tuning.of(max_in_flight=256),
    Tuning.of(poll_interval=0.05),
    # Until 0d2c00e: one host could hold `per_host_in_flight` claimed events; as many as max_in_flight
    # means none are ever handed back when every event is for one host.
    Tuning.of(per_host_in_flight=_SETTINGS.max_in_flight),
    Tuning.of(per_host_in_flight=256, max_in_flight=256),
)
"""Rows whose fields DispatcherSettings no longer has are left out (and said so)."""
CASES = ("200", "500", "refused", "blackhole")
NOTES = f"""
Notes: delivered/s is events delivered and written back, from start() until the last one (or the cap), over
the runs; the other columns are the median run's. CPU % is the dispatcher process (event loop and SQLite
threads; 100 = one core). "deferred": events claimed and handed back unattempted (their host had as
many as the dispatcher lets one host hold), due again later. "1 in {FAIL_EVERY} answers 500": every event whose id is
a multiple of {FAIL_EVERY} is answered 500 on every attempt; delivered/s counts the other 99 % only, and the
1 % are "pending at end", waiting for a retry (attempts beyond the events: retries made within the run).
Dead receivers: attempts/s counts posts that ended (refused, timed out) and were written; tasks are all
the event loop's tasks; unwritten: results waiting for the writer; RSS, RssAnon of the dispatcher process
(/proc/self/status): RSS less RssAnon is mostly the mapped WAL index (-shm), which grows with the WAL.
stop(): how long Dispatcher.stop() took, waiting for the attempts in progress.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench callbacks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=50_000, help="events per throughput run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cap", type=float, default=15.0, help="seconds after which a throughput run is stopped")
    ap.add_argument("--memory-events", type=int, default=100_000)
    ap.add_argument("--memory-seconds", type=float, default=30.0)
    ap.add_argument("--cases", default=",".join(CASES), help=f"which cases, comma-separated: {','.join(CASES)}")
    ap.add_argument("--tune", action="store_true", help="case 1 over a grid of settings, instead of the cases")
    ap.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE",
        help=f"change a DispatcherSettings field (repeatable): {', '.join(SETTABLE)}",
    )  # fmt: skip
    ap.add_argument("--connections-per-host", type=int, default=_CONNECTIONS_PER_HOST, help="the transport's")
    args = ap.parse_args(argv)
    changes = []
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in SETTABLE or not value:
            ap.error(f"--set {item}: FIELD=VALUE with FIELD one of {', '.join(SETTABLE)}")
        changes.append((name, float(value)))
    tuning = Tuning(tuple(changes), args.connections_per_host)
    cases = args.cases.split(",")
    if wrong := set(cases) - set(CASES):
        ap.error(f"unknown cases: {', '.join(sorted(wrong))}")

    fast: list[tuple[str, ...]] = []
    dead: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="sb-bench-callbacks-") as tmp:
        stores = Stores(Path(tmp))

        def measure(url: str, t: Tuning, fail_every: int) -> list[Result]:
            return throughput(
                stores, url, events=args.events, repeats=args.repeats, tuning=t, fail_every=fail_every, cap=args.cap
            )

        if args.tune:
            with receiver() as url:
                for t in TUNE_GRID:
                    if unknown := t.unknown():
                        print(f"left out: {t.changed()} (no field {', '.join(unknown)} now)", file=sys.stderr)
                        continue
                    fast.append(throughput_row(t.changed(), measure(url, t, 0)))
        if "200" in cases and not args.tune:
            with receiver() as url:
                fast.append(throughput_row("receiver answers 200", measure(url, tuning, 0)))
        if "500" in cases and not args.tune:
            with receiver(FAIL_EVERY) as url:
                fast.append(throughput_row(f"1 in {FAIL_EVERY} answers 500", measure(url, tuning, FAIL_EVERY)))
        for case, name, place, timeout in (
            ("refused", "connection refused", refused, DEFAULT_TIMEOUT),
            ("blackhole", f"blackhole, timeout {BLACKHOLE_TIMEOUT:g} s", blackhole, BLACKHOLE_TIMEOUT),
        ):
            if case in cases and not args.tune:
                with place() as url:
                    r = dead_receiver(
                        stores, url, events=args.memory_events, seconds=args.memory_seconds, tuning=tuning,
                        timeout=timeout,
                    )  # fmt: skip
                dead.append(memory_row(name, r))

    print(
        f"\nCallback delivery, SQLite WAL synchronous=FULL, receiver on loopback (uvicorn, httptools, uvloop), "
        f"dispatcher on uvloop; {args.events:,} events per throughput run, {args.repeats} runs, cap {args.cap:g} s"
    )
    if not args.tune:
        print(f"Settings: {tuning.label()}; blackhole timeout {BLACKHOLE_TIMEOUT:g} s")
    if fast:
        print()
        print_table(THROUGHPUT_HEADER, fast)
    if dead:
        print()
        print_table(MEMORY_HEADER, dead)
    print(NOTES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
