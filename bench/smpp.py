"""`python -m bench smpp`: end-to-end SMPP throughput, from the API to `Delivered`, against the npm SMSC.

What runs: tests/smsc/server.js (the npm `smpp` SMSC, receipts RECEIPT_MS after each submit_sm_resp; its
one JSON line per event goes to a file, not a pipe, so nobody has to read it during the run) and the
gateway as subprocesses with one carrier, `kind = "smpp"`, binds 2, window 10, rate 100,000 (so the rate
does not limit), the per-account rate limit and the access log off, the worker's other settings the shipped
ones. The gateway is either
- `switchboard serve` on SQLite (WAL, synchronous=FULL): one process for the API and the SMPP worker; or
- cluster mode (the `cluster-` cases): `switchboard api` (one process, or --apis of them, each on its own
  port) and one `switchboard worker` holding the SMPP binds, sharing a fresh PostgreSQL database
  (sb_bench_<pid>_<hex> on --postgres-url's server, created for the case and dropped after it), the worker
  woken by LISTEN/NOTIFY.
This process posts /api/SMS/Send on uvloop over CONNECTIONS keep-alive connections (a minimal client of its
own, `post_all`, with the requests encoded beforehand: it leaves the cores to the gateway and the SMSC;
with several api processes the connections are dealt out among them, as a load balancer would), one or
100 destinations per request (each destination is one single-part GSM message's recipient; numbers
+491510NNNNNXX with XX never 01–06, which the SMSC answers with failures), and reads the database
(read-only) every 0.5 s until every destination is `Delivered`.

Cases (fresh SMSC, gateway and database each; `cluster-` before a case's name runs it in cluster mode):
1. Throughput, 1 destination per request: MESSAGES messages as fast as the API takes them. messages/s from
   the first request to the last `Delivered` (destinations.delivered_at, the gateway's clock), which is
   the issue's number (target ≥ 5,000/s); also the API's accept rate alone, and the CPU each process used.
2. The same with 100 destinations per request (MESSAGES/100 requests).
3. Latency at half the target rate (PACED_RATE, 2,500 messages/s: the issue's "p99 accept-to-submit under
   100 ms at half that rate"): requests paced at that rate, shaped as in case 1 (1 destination each), for
   PACED_SECONDS; p50/p99 of accept-to-submit, `Sent` in status_history minus messages.created_at (both the
   gateway's clock, ms; `Sent` is written once the submit_sm_resp came back, so it includes the SMSC's
   answer). Target: p99 under 100 ms. (It used to be paced at half of what case 1 achieved, which made the
   target easier the further the throughput fell short of its own, and moved from run to run.)
Each case is stopped CAP seconds after its first request if not everything is Delivered by then. With
--repeats N the cases run in N rounds (each case once per round, so the machine's slow minutes spread over
all of them), and a last table gives each case's median and range.

CPU: user+system seconds of every process over the case, from /proc, per 1,000 delivered messages. In
cluster mode PostgreSQL's backends are counted too, each by the process whose connection it serves (its
client port, found among that process's sockets), and the server's background processes (WAL writer,
checkpointer, ...) apart: those serve every database of the server, other users' too. Autovacuum is off
on this project's PostgreSQL (a CI setting), so cluster cases run ANALYZE on the busy tables every
ANALYZE_SECONDS in its stead (see `Analyzer`; its backend counted as "PG ANALYZE").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import uvloop

from switchboard.testing import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SMSC_DIR = ROOT / "tests" / "smsc"
RECEIPT_MS = 50
BINDS = 2
WINDOW = 10
CARRIER_RATE = 100_000
CONNECTIONS = 64
CAP = 60.0
PACED_SECONDS = 10.0
PACED_RATE = 2_500.0
"""Half the issue's target of 5,000 messages/s."""
ANALYZE_SECONDS = 3.0
"""Cluster cases: how often the statistics of the busy tables are renewed while a case runs (--analyze-seconds)."""
ANALYZED = "destinations, messages, status_history"
TICKS = os.sysconf("SC_CLK_TCK")
POSTGRES_URL = os.environ.get("SWITCHBOARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
"""The server cluster cases make their databases on; the database it names is where they connect to make them."""

SERVER = "access_log = false"
CONFIG = """
[limits]
requests_per_second = 0

[[sms.carriers]]
name = "smsc1"
kind = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "switchboard"
password = "secret"
binds = {binds}
window = {window}
rate = {rate}
id_form = "decimal"
"""
DATABASE = """
[database]
url = "{url}"
"""


def number(i: int) -> str:
    """Distinct valid German mobile numbers whose last two digits are 10–99 (the SMSC delivers those)."""
    return f"+491510{i // 90:05d}{10 + i % 90:02d}"


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process; 0 for one that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def local_ports(pid: int) -> set[int]:
    """The local ports of a process's TCP sockets: its sockets' inodes (/proc/PID/fd) looked up in the
    kernel's socket tables (/proc/net/tcp, tcp6)."""
    inodes = set()
    with contextlib.suppress(FileNotFoundError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[9] in inodes:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


class Smsc:
    """server.js with its event lines written to a file."""

    def __init__(self, folder: Path, receipt_ms: int) -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is needed for the SMSC (tests/smsc/server.js)")
        if not (SMSC_DIR / "node_modules" / "smpp").exists():
            subprocess.run(["npm", "ci", "--prefix", str(SMSC_DIR), "--no-audit", "--no-fund"], check=True)
        self.log = folder / "smsc.jsonl"
        self._out = open(self.log, "wb")
        self.process = subprocess.Popen(
            [node, str(SMSC_DIR / "server.js"), "--port", "0", "--receipt-delay-ms", str(receipt_ms)],
            stdin=subprocess.PIPE,
            stdout=self._out,
            stderr=subprocess.DEVNULL,
            cwd=SMSC_DIR,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        self.port = int(str(self.wait_for("listening")["port"]))

    def events(self) -> list[dict[str, object]]:
        with open(self.log, "rb") as f:
            return [json.loads(line) for line in f if line.endswith(b"\n")]

    def wait_for(self, name: str, count: int = 1, timeout: float = 15) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events() if e["event"] == name]
            if len(found) >= count:
                return found[-1]
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the SMSC gave no {count} {name} within {timeout} s: {self.events()[-5:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._out.close()


class Analyzer:
    """`ANALYZE` of the busy tables every `seconds` on a connection of its own, in a thread, while a cluster
    case runs: the stand-in for autovacuum, which is off on this project's PostgreSQL (a CI setting).

    Why it matters: asyncpg prepares every statement once per connection, and PostgreSQL keeps the generic
    plan it made for a prepared statement until the tables' statistics change. A fresh database's first
    claims are planned while its tables are empty, where a sequential scan is the cheapest plan; without
    ANALYZE nothing ever replans them, and a claim of 25 rows read all 50,000 destinations and messages
    (measured: ≈ 800 rows read per message delivered, against 35 with this). A server in service has
    autovacuum on and its tables have statistics long before they are this size."""

    def __init__(self, url: str, seconds: float) -> None:
        self._url = url
        self._seconds = seconds
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.pid = 0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="analyzer")
        self._thread.start()
        self._connected.wait(15)

    async def _run(self) -> None:
        conn = await asyncpg.connect(self._url, timeout=10)
        try:
            self.pid = int(conn.get_server_pid())
            self._connected.set()
            while not await asyncio.to_thread(self._stop.wait, self._seconds):
                await conn.execute(f"ANALYZE {ANALYZED}")
        finally:
            await conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


class Reader(Protocol):
    """Read-only SQL on the gateway's database (the statements below are the same on both)."""

    def rows(self, sql: str) -> list[tuple[Any, ...]]: ...

    def close(self) -> None: ...


class SqliteReader:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self._db.execute(sql).fetchall()

    def close(self) -> None:
        self._db.close()


class PostgresReader:
    """asyncpg on an event loop of its own, driven one statement at a time."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._conn = self._loop.run_until_complete(asyncpg.connect(url, timeout=10))
        self.pid = int(self._conn.get_server_pid())

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._loop.run_until_complete(self._conn.fetch(sql))]

    def close(self) -> None:
        self._loop.run_until_complete(self._conn.close())
        self._loop.close()


DELIVERED = "SELECT count(*) FROM destinations WHERE status='Delivered'"
LAST_DELIVERED = "SELECT max(delivered_at) FROM destinations WHERE status='Delivered'"
STATUSES = "SELECT status, count(*) FROM destinations GROUP BY status"
ACCEPT_TO_SENT = (
    "SELECT h.at - m.created_at FROM status_history h JOIN destinations d ON d.id = h.destination_id "
    "JOIN messages m ON m.id = d.message_id WHERE h.status = 'Sent'"
)


@dataclass
class Stack:
    """The gateway of one case, running: where to post, and what to measure."""

    urls: list[str]
    key: str
    processes: dict[str, int]
    """Our processes by name (server; or api, api 2, worker) and the SMSC: their pids."""
    reader: Reader
    backends: Callable[[], dict[str, list[int]]] = dict
    """PostgreSQL's processes now, by whom they serve ("PG for api", "PG background"); none on SQLite."""
    database: str = "SQLite WAL synchronous=FULL"

    def pids(self) -> dict[str, list[int]]:
        return {**{name: [pid] for name, pid in self.processes.items()}, **self.backends()}


@contextlib.contextmanager
def serve_stack(folder: Path, smsc: Smsc) -> Iterator[Stack]:
    server = ServerProcess(
        folder / "server",
        server=SERVER,
        config=CONFIG.format(port=smsc.port, binds=BINDS, window=WINDOW, rate=CARRIER_RATE),
    )
    try:
        server.write_config()
        key = server.create_account("bench")["api_key"]
        server.start()
        smsc.wait_for("bind", BINDS)
        assert server.process is not None
        reader = SqliteReader(folder / "server" / "switchboard.db")
        try:
            yield Stack([server.url], key, {"server": server.process.pid, "node SMSC": smsc.process.pid}, reader)
        finally:
            reader.close()
    finally:
        server.stop()


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def cluster_stack(
    folder: Path, smsc: Smsc, *, apis: int, admin_url: str, pool_size: int | None, analyze_seconds: float
) -> Iterator[Stack]:
    """`switchboard api` × `apis` and one `switchboard worker` on a fresh PostgreSQL database, with an
    `Analyzer` every `analyze_seconds` (0: none)."""
    name = f"sb_bench_{os.getpid()}_{secrets.token_hex(3)}"
    url = urlunsplit(urlsplit(admin_url)._replace(path="/" + name))
    asyncio.run(_admin(admin_url, f"CREATE DATABASE {name}"))
    config = CONFIG.format(port=smsc.port, binds=BINDS, window=WINDOW, rate=CARRIER_RATE) + DATABASE.format(url=url)
    if pool_size is not None:
        config += f"pool_size = {pool_size}\n"
    servers = [ServerProcess(folder / f"api{i + 1}", server=SERVER, config=config, command="api") for i in range(apis)]
    worker: subprocess.Popen[bytes] | None = None
    try:
        for s in servers:
            s.write_config()
        key = servers[0].create_account("bench")["api_key"]  # migrates the database too
        for s in servers:
            s.start()
        with open(folder / "worker.log", "wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "switchboard", "worker", "--config", str(servers[0].config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        smsc.wait_for("bind", BINDS, timeout=30)
        processes = {("api" if i == 0 else f"api {i + 1}"): s.process.pid for i, s in enumerate(servers) if s.process}
        processes["worker"] = worker.pid
        reader = PostgresReader(url)
        analyzer = Analyzer(url, analyze_seconds) if analyze_seconds > 0 else None

        def backends() -> dict[str, list[int]]:
            owners = {port: who for who, pid in processes.items() for port in local_ports(pid)}
            found: dict[str, list[int]] = {}
            for pid, database, port, kind in reader.rows(
                "SELECT pid, datname, client_port, backend_type FROM pg_stat_activity"
            ):
                if analyzer is not None and pid == analyzer.pid:
                    found.setdefault("PG ANALYZE", []).append(pid)
                elif database == name and pid != reader.pid:
                    # A Unix socket has no port (-1): its backends cannot be told apart.
                    who = "a Unix socket" if port == -1 else owners.get(port, "others")
                    found.setdefault(f"PG for {who}", []).append(pid)
                elif database is None and kind != "client backend":
                    found.setdefault("PG background", []).append(pid)
            return found

        try:
            yield Stack([s.url for s in servers], key, {**processes, "node SMSC": smsc.process.pid}, reader,
                        backends, f"PostgreSQL {apis} api + 1 worker")  # fmt: skip
        finally:
            if analyzer is not None:
                analyzer.stop()
            reader.close()
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        for s in servers:
            s.stop()
        asyncio.run(_admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@dataclass
class Result:
    name: str
    messages: int
    requests: int
    dests: int
    database: str = ""
    first_request: float = 0.0
    last_answer: float = 0.0
    errors: int = 0
    delivered: int = 0
    last_delivered: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)
    target_rate: float = 0.0
    capped: bool = False
    machine_ms: float = float("nan")

    @property
    def api_rate(self) -> float:
        return self.messages / (self.last_answer - self.first_request)

    @property
    def end_to_end(self) -> float:
        return self.delivered / (self.last_delivered - self.first_request)

    @property
    def seconds(self) -> float:
        return self.last_delivered - self.first_request

    def cpu_per_1000(self, who: str) -> float:
        """CPU seconds `who` spent per 1,000 delivered messages: the measure that other load on the machine
        disturbs least (wall-clock rates move with whatever else runs on the 2 cores)."""
        return 1000 * self.cpu_seconds[who] / self.delivered if self.delivered else float("nan")

    @property
    def gateway(self) -> list[str]:
        """The processes that are the gateway: not the SMSC, the client or the server's shared ones."""
        return [k for k in self.cpu_seconds if k not in ("node SMSC", "client", "PG background")]


def machine_ms() -> float:
    """Milliseconds a fixed pure-Python loop takes now, best of 3: how fast the shared machine is at the
    moment (about 13 ms on this machine when it is quiet), so that runs taken at different times can be told
    apart."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        x = 0
        for i in range(300_000):
            x += i * i % 7
        best = min(best, time.perf_counter() - start)
    return best * 1000


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


class _HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends pre-encoded requests one at a time and reads each
    response's status, skipping its body by Content-Length (what the server sends)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, without the subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._answer is None:
            return
        length = None
        for line in bytes(self._buffer[:end]).split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            self._answer.set_exception(RuntimeError("a response without Content-Length"))
            return
        if len(self._buffer) < end + 4 + length:
            return
        status = int(self._buffer[9:12])
        del self._buffer[: end + 4 + length]
        answer, self._answer = self._answer, None
        answer.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self._answer


async def post_all(
    urls: list[str], key: str, bodies: list[bytes], connections: int, rate: float
) -> tuple[float, float, int]:
    """Post every body, `connections` at a time (dealt out among `urls` in turn); with `rate` > 0, request i
    starts no earlier than i/rate s after the first. Returns (first request, last answer, errors) in
    time.time() seconds.

    The requests are encoded beforehand and sent by a minimal client of this module's own (one asyncio
    Protocol per keep-alive connection): aiohttp's client took ≈ 85 µs of CPU a request here, a third of a
    core at 4,000 requests/s, taken from the 2 cores the server and the SMSC share with it."""
    loop = asyncio.get_running_loop()
    opened: list[tuple[asyncio.BaseTransport, _HttpConnection, list[bytes]]] = []
    encoded: dict[str, list[bytes]] = {}
    for c in range(connections):
        url = urls[c % len(urls)]
        host, port = url.removeprefix("http://").split(":")
        if url not in encoded:
            head = (
                f"POST /api/SMS/Send HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
                "Content-Type: application/json\r\nContent-Length: "
            ).encode()
            encoded[url] = [head + str(len(body)).encode() + b"\r\n\r\n" + body for body in bodies]
        transport, protocol = await loop.create_connection(_HttpConnection, host, int(port))
        opened.append((transport, protocol, encoded[url]))
    errors = 0
    next_index = 0
    start = time.time()
    t0 = time.monotonic()

    async def worker(connection: _HttpConnection, requests: list[bytes]) -> None:
        nonlocal next_index, errors
        while next_index < len(requests):
            i = next_index
            next_index += 1
            if rate:
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            try:
                if await connection.request(requests[i]) != 200:
                    errors += 1
            except (ConnectionError, RuntimeError):
                errors += 1
                return

    try:
        await asyncio.gather(*(worker(c, requests) for _, c, requests in opened))
    finally:
        for opened_transport, _, _ in opened:
            opened_transport.close()
    return start, time.time(), errors


def bodies_for(messages: int, dests: int, offset: int = 0) -> list[bytes]:
    out = []
    for r in range(messages // dests):
        numbers = [{"MobileNo": number(offset + r * dests + j)} for j in range(dests)]
        out.append(json.dumps({"Destination": numbers, "Message": "Your code is 123456", "Sender": "OM"}).encode())
    return out


class Profiler:
    """`py-spy record` on one process for one case, its collapsed stacks written to `out` (--py-spy)."""

    def __init__(self, pid: int, out: Path, options: str) -> None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.process = subprocess.Popen(
            [py_spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(out), "--rate", "250",
             *shlex.split(options)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass(frozen=True)
class Options:
    cap: float = CAP
    apis: int = 1
    pool_size: int | None = None
    postgres_url: str = POSTGRES_URL
    analyze_seconds: float = ANALYZE_SECONDS
    profile: Path | None = None
    """A file name prefix: py-spy records each gateway process to PREFIX-NAME.txt."""
    profile_options: str = ""


def run_case(name: str, *, messages: int, dests: int, cluster: bool, rate: float = 0.0, options: Options) -> Result:
    requests = messages // dests
    result = Result(name, requests * dests, requests, dests, target_rate=rate)
    bodies = bodies_for(messages, dests)
    with tempfile.TemporaryDirectory(prefix="sb-bench-smpp-") as tmp:
        folder = Path(tmp)
        smsc = Smsc(folder, RECEIPT_MS)
        try:
            stack = (
                cluster_stack(
                    folder,
                    smsc,
                    apis=options.apis,
                    admin_url=options.postgres_url,
                    pool_size=options.pool_size,
                    analyze_seconds=options.analyze_seconds,
                )
                if cluster
                else serve_stack(folder, smsc)
            )
            with stack as s:
                result.database = s.database
                measure(s, result, bodies, options)
        finally:
            smsc.stop()
    return result


def measure(stack: Stack, result: Result, bodies: list[bytes], options: Options) -> None:
    profilers = []
    if options.profile is not None:
        for who, pid in stack.processes.items():
            if who != "node SMSC":
                out = options.profile.with_name(f"{options.profile.name}-{who.replace(' ', '')}.txt")
                profilers.append(Profiler(pid, out, options.profile_options))
    result.machine_ms = machine_ms()
    before = {who: {pid: cpu_seconds(pid) for pid in pids} for who, pids in stack.pids().items()}
    client0 = time.process_time()
    wall0 = time.monotonic()
    first, last, errors = uvloop.run(post_all(stack.urls, stack.key, bodies, CONNECTIONS, result.target_rate))
    result.first_request, result.last_answer, result.errors = first, last, errors
    while True:
        done = int(stack.reader.rows(DELIVERED)[0][0])
        if done >= result.messages:
            break
        if time.time() - first > options.cap:
            result.capped = True
            break
        time.sleep(0.5)
    wall = time.monotonic() - wall0
    # Backends opened during the case count from their start (0 before it).
    result.cpu_seconds = {
        who: sum(cpu_seconds(pid) - before.get(who, {}).get(pid, 0.0) for pid in pids)
        for who, pids in stack.pids().items()
    }
    result.cpu_seconds["client"] = time.process_time() - client0
    result.cpu = {k: 100 * v / wall for k, v in result.cpu_seconds.items()}
    for p in profilers:
        p.stop()
    result.delivered = done
    result.last_delivered = (stack.reader.rows(LAST_DELIVERED)[0][0] or 0) / 1000
    result.statuses = {str(k): int(v) for k, v in stack.reader.rows(STATUSES)}
    result.latency_ms = [float(r[0]) for r in stack.reader.rows(ACCEPT_TO_SENT)]


HEADER = (
    "case", "database", "messages", "requests", "API accepts msg/s", "delivered", "first request → last Delivered s",
    "end-to-end msg/s", "accept→Sent p50 ms", "p99 ms", "errors", "gateway CPU s per 1,000", "machine ms",
)  # fmt: skip


def row(r: Result) -> tuple[str, ...]:
    return (
        r.name,
        r.database,
        f"{r.messages:,}",
        f"{r.requests:,}",
        f"{r.api_rate:,.0f}",
        f"{r.delivered:,}" + (" (cap)" if r.capped else ""),
        f"{r.seconds:.1f}",
        f"{r.end_to_end:,.0f}",
        f"{percentile(r.latency_ms, 50):.0f}",
        f"{percentile(r.latency_ms, 99):.0f}",
        f"{r.errors:,}",
        f"{sum(r.cpu_per_1000(who) for who in r.gateway):.3f}",
        f"{r.machine_ms:.0f}",
    )


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("-" * (len(h) + 2) for h in header) + "|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


def spread(values: list[float], form: str) -> str:
    """Median [min–max], or the one value."""
    values = [v for v in values if v == v]  # no NaN
    if not values:
        return "–"
    median = format(statistics.median(values), form)
    return median if len(values) == 1 else f"{median} [{min(values):{form}}–{max(values):{form}}]"


def cpu_table(results: Sequence[Any], what: str) -> None:
    """CPU s per 1,000 `what` of each process, and its share of a core, per case (results with `cpu_seconds`,
    `cpu` and `cpu_per_1000`: this module's `Result` and bench/inbound.py's)."""
    print(f"\nCPU by process: CPU s per 1,000 {what} (% of one core over the case)\n")
    names = list(dict.fromkeys(k for r in results for k in r.cpu_seconds))
    table(
        ("case", *names),
        [
            (r.name, *(f"{r.cpu_per_1000(k):.3f} ({r.cpu[k]:.0f} %)" if k in r.cpu else "" for k in names))
            for r in results
        ],
    )


def report(results: list[Result]) -> None:
    print(
        f"\nSMPP end to end: npm `smpp` SMSC (receipts {RECEIPT_MS} ms after each submit_sm_resp), carrier binds "
        f"{BINDS}, window {WINDOW}, rate {CARRIER_RATE:,}; minimal HTTP/1.1 client on uvloop, {CONNECTIONS} "
        "connections\n"
    )
    table(HEADER, [row(r) for r in results])
    cpu_table(results, "delivered messages")
    cases = list(dict.fromkeys(r.name for r in results))
    if len(cases) < len(results):
        print("\nMedians [ranges] over the runs of each case\n")
        rows = []
        for case in cases:
            runs = [r for r in results if r.name == case]
            who = list(dict.fromkeys(k for r in runs for k in r.cpu_seconds))
            rows.append(
                (
                    case,
                    str(len(runs)),
                    spread([r.end_to_end for r in runs], ",.0f"),
                    spread([r.api_rate for r in runs], ",.0f"),
                    spread([percentile(r.latency_ms, 50) for r in runs], ".0f"),
                    spread([percentile(r.latency_ms, 99) for r in runs], ".0f"),
                    spread([sum(r.cpu_per_1000(k) for k in r.gateway) for r in runs], ".3f"),
                    spread([r.machine_ms for r in runs], ".0f"),
                    "; ".join(
                        f"{k} {spread([r.cpu_per_1000(k) for r in runs if k in r.cpu_seconds], '.3f')}" for k in who
                    ),
                )
            )
        table(
            ("case", "runs", "end-to-end msg/s", "API accepts msg/s", "accept→Sent p50 ms", "p99 ms",
             "gateway CPU s per 1,000", "machine ms", "CPU s per 1,000 by process"),
            rows,
        )  # fmt: skip
    print(
        "\nNotes: end-to-end msg/s is destinations Delivered over the time from the first request to the last "
        "delivered_at (the gateway's clock). accept→Sent: status_history 'Sent' at minus messages.created_at, "
        "over every destination of the case (under load for the flat-out cases). CPU s per 1,000: a process's "
        "user+system CPU seconds over the case per 1,000 delivered messages; the gateway's is its own "
        "processes' and, in cluster mode, the PostgreSQL backends serving them (PG for ...) and the bench's "
        "stand-in for autovacuum (PG ANALYZE); PG background is the server's shared processes. CPU % over the "
        "case's wall time (100 = one core); the client is this process. machine ms: a fixed pure-Python loop "
        "timed just before the case (best of 3), the machine's speed then: lower is faster."
        "\nStatuses at the end: " + "; ".join(f"{r.name}: {r.statuses}" for r in results)
    )


CASES = ("1", "100", "paced", "cluster-1", "cluster-100", "cluster-paced")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench smpp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument(
        "--cases",
        default="1,100,paced",
        help=f"which, in order: {', '.join(CASES)} (1 and 100: destinations per request; cluster-: on PostgreSQL)",
    )
    ap.add_argument("--repeats", type=int, default=1, help="rounds of the cases; medians and ranges at the end")
    ap.add_argument("--paced-seconds", type=float, default=PACED_SECONDS)
    ap.add_argument("--paced-rate", type=float, default=PACED_RATE, help="messages/s of the paced case")
    ap.add_argument("--cap", type=float, default=CAP)
    ap.add_argument("--apis", type=int, default=1, help="cluster: how many `switchboard api` processes")
    ap.add_argument("--pool-size", type=int, help="cluster: database.pool_size of every process (default: shipped)")
    ap.add_argument("--postgres-url", default=POSTGRES_URL, help="cluster: the server to make databases on")
    ap.add_argument(
        "--analyze-seconds",
        type=float,
        default=ANALYZE_SECONDS,
        help="cluster: ANALYZE the busy tables this often, for autovacuum (off on this server); 0: never",
    )
    ap.add_argument("--py-spy", type=Path, help="a folder: py-spy records each gateway process in each case")
    ap.add_argument("--py-spy-options", default="", help='more py-spy record options, e.g. "--gil"')
    args = ap.parse_args(argv)
    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown cases {unknown}: choose from {', '.join(CASES)}")
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)

    results: list[Result] = []
    for round_ in range(args.repeats):
        for case in cases:
            cluster = case.startswith("cluster-")
            shape = case.removeprefix("cluster-")
            prefix = "cluster, " if cluster else ""
            profile = None if args.py_spy is None else args.py_spy / f"{case}-{round_ + 1}"
            options = Options(
                cap=args.cap,
                apis=args.apis,
                pool_size=args.pool_size,
                postgres_url=args.postgres_url,
                analyze_seconds=args.analyze_seconds,
                profile=profile,
                profile_options=args.py_spy_options,
            )
            if shape == "paced":
                rate = args.paced_rate
                name = f"{prefix}paced at {rate:,.0f} msg/s, 1 dest/request"
                r = run_case(name, messages=int(rate * args.paced_seconds), dests=1, cluster=cluster, rate=rate,
                             options=options)  # fmt: skip
            else:
                name = f"{prefix}flat out, {shape} dest/request"
                r = run_case(name, messages=args.messages, dests=int(shape), cluster=cluster, options=options)
            results.append(r)
            print(
                f"{r.name}: {r.end_to_end:,.0f} msg/s end to end, p99 {percentile(r.latency_ms, 99):.0f} ms, "
                f"statuses {r.statuses}",
                file=sys.stderr,
            )
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
