"""`python -m bench inbound`: inbound (mobile-originated) throughput, from the npm SMSC to the gateway to a
callback receiver (issue 13; target ≥ 3,000 messages/s end to end).

What runs, as subprocesses: tests/smsc/server.js (the npm `smpp` SMSC; its event lines go to a file, as in
bench/smpp.py, whose `Smsc` this uses); `switchboard serve` on SQLite (WAL, synchronous=FULL), access log
off, bound to it as one carrier, `kind = "smpp"`, binds 2 (transceivers: the SMSC sends MOs to both),
window 10; one account, `bench`, with the number TO assigned by `switchboard numbers assign`, and (in the
`callback` case) its InboundCallbackUrl set to bench/receiver.py on uvicorn (httptools, uvloop) with
BENCH_RECORD=1: it answers 200 at once, verifies nothing, and keeps each body with its arrival time.

The SMSC's `mo_burst` command sends MESSAGES MOs as fast as the gateway answers them: at most WINDOW
deliver_sm unanswered on each bind; MO i from +49151000NNNNN (sender + i) saying "Bench inbound i", so no two
are alike (the gateway stores a resend of the same text from the same handset once). The gateway answers
each deliver_sm once the message is stored with its callback (docs/two-way.md), so an acknowledged MO is
durable.

Cases (fresh SMSC, gateway, receiver and database each), each run --repeats times, interleaved:
1. `callback`: MOs/s end to end, from the first deliver_sm written by the SMSC to the last callback received
   by the receiver (both this machine's wall clock). Every MO must arrive exactly once: the receiver's bodies
   are decoded after the run and their texts must be MO 0..N-1, each once, with N distinct IDs; the database
   must hold N inbound messages and N inbound callbacks.
2. `stored`: the same MOs to an account without a callback URL: stored and acknowledged only, first
   deliver_sm to last deliver_sm_resp, the peer of case 1 (the ratio is printed).
Both: acknowledgement latency (deliver_sm written → its deliver_sm_resp read, in the SMSC) p50/p99, and
the CPU each process used per 1,000 messages (from /proc, bench/smpp.py's `cpu_seconds`), and machine ms
(bench/smpp.py's `machine_ms`: a fixed loop timed before the case; about 13 ms when the machine is quiet).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.callbacks import serve
from bench.smpp import (
    SERVER,
    Profiler,
    Smsc,
    SqliteReader,
    cpu_seconds,
    cpu_table,
    machine_ms,
    spread,
    table,
)
from switchboard.testing import ServerProcess, cli

MESSAGES = 50_000
BINDS = 2
WINDOW = 10
"""The gateway's carrier window (outbound; it does not limit what the SMSC sends)."""
SMSC_WINDOW = 100
"""deliver_sm the SMSC keeps unanswered on each bind (--smsc-window)."""
CAP = 120.0
TO = "+16175550100"
FROM = "4915100000000"
TEXT = "Bench inbound"
CONFIG = """
[limits]
requests_per_second = 0

[callbacks]
allow_loopback = true

[[sms.carriers]]
name = "smsc1"
kind = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "switchboard"
password = "secret"
binds = {binds}
window = {window}
"""
CASES = ("callback", "stored")


@dataclass
class Result:
    name: str
    messages: int
    first_sent: float = 0.0
    last_answer: float = 0.0
    last_callback: float = 0.0
    answered: int = 0
    retried: int = 0
    failed: int = 0
    posted: int = 0
    stored: int = 0
    callbacks: int = 0
    capped: bool = False
    ack_ms: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    machine_ms: float = float("nan")

    @property
    def end(self) -> float:
        return self.last_callback if self.name == "callback" else self.last_answer

    @property
    def seconds(self) -> float:
        return self.end - self.first_sent

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("nan")

    @property
    def ack_rate(self) -> float:
        return self.answered / (self.last_answer - self.first_sent)

    def cpu_per_1000(self, who: str) -> float:
        return 1000 * self.cpu_seconds[who] / self.messages


@contextlib.contextmanager
def receiver() -> Iterator[tuple[str, int]]:
    """bench/receiver.py recording arrivals; yields its base URL and pid."""
    proc, url = serve("bench.receiver:app", {"BENCH_RECORD": "1"})
    try:
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait()


def run_case(name: str, messages: int, smsc_window: int, profile: Path | None) -> Result:
    result = Result(name, messages)
    with tempfile.TemporaryDirectory(prefix="sb-bench-inbound-") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        smsc = Smsc(folder, 50)
        stack.callback(smsc.stop)
        server = ServerProcess(
            folder / "server", server=SERVER, config=CONFIG.format(port=smsc.port, binds=BINDS, window=WINDOW)
        )
        server.write_config()
        account = server.create_account("bench")
        cli("numbers", "assign", "bench", TO, "--config", str(server.config_path))
        server.start()
        stack.callback(server.stop)
        assert server.process is not None
        smsc.wait_for("bind", BINDS)
        pids = {"server": server.process.pid, "node SMSC": smsc.process.pid}
        hooks = ""
        if name == "callback":
            hooks, pids["receiver"] = stack.enter_context(receiver())
            answer = httpx.put(
                server.url + "/api/Account",
                json={"InboundCallbackUrl": hooks + "/hooks/inbound"},
                headers={"Authorization": f"Bearer {account['api_key']}"},
                timeout=10,
            )
            answer.raise_for_status()
        profiler = Profiler(pids["server"], profile, "") if profile is not None else None
        result.machine_ms = machine_ms()
        before = {who: cpu_seconds(pid) for who, pid in pids.items()}
        wall0 = time.monotonic()
        assert smsc.process.stdin is not None
        command = {"cmd": "mo_burst", "count": messages, "from": FROM, "to": TO, "text": TEXT, "window": smsc_window}
        smsc.process.stdin.write(json.dumps(command).encode() + b"\n")
        smsc.process.stdin.flush()
        done = smsc.wait_for("mo_burst_done", timeout=CAP)
        arrivals: list[list[Any]] = []
        if hooks:
            with httpx.Client(base_url=hooks, timeout=30) as client:
                while client.get("/count").json()["count"] < messages:
                    if time.monotonic() - wall0 > CAP:
                        result.capped = True
                        break
                    time.sleep(0.1)
                wall = time.monotonic() - wall0
                result.cpu_seconds = {who: cpu_seconds(pid) - before[who] for who, pid in pids.items()}
                time.sleep(1.0)  # anything posted twice would come now
                arrivals = client.get("/arrivals").json()
        else:
            wall = time.monotonic() - wall0
            result.cpu_seconds = {who: cpu_seconds(pid) - before[who] for who, pid in pids.items()}
        if profiler is not None:
            profiler.stop()
        result.cpu = {who: 100 * s / wall for who, s in result.cpu_seconds.items()}
        result.first_sent = float(done["first_sent"]) / 1000  # type: ignore[arg-type]
        result.last_answer = float(done["last_answer"]) / 1000  # type: ignore[arg-type]
        result.answered, result.retried, result.failed = (int(done[k]) for k in ("answered", "retried", "failed"))  # type: ignore[call-overload]
        result.ack_ms = {k: float(v) for k, v in done["latency_ms"].items()}  # type: ignore[attr-defined]
        result.posted = len(arrivals)
        if arrivals:
            result.last_callback = max(float(t) for t, _ in arrivals)
        reader = SqliteReader(folder / "server" / "switchboard.db")
        try:
            result.stored = int(reader.rows("SELECT count(*) FROM inbound_messages")[0][0])
            result.callbacks = int(reader.rows("SELECT count(*) FROM callbacks WHERE kind = 'inbound'")[0][0])
        finally:
            reader.close()
        check(result, arrivals, hooks != "")
    return result


def check(r: Result, arrivals: list[list[Any]], posted: bool) -> None:
    """Every MO acknowledged, stored once and (with a callback URL) posted once."""
    problems = []
    if r.answered != r.messages or r.failed:
        problems.append(f"{r.answered:,} of {r.messages:,} MOs acknowledged, {r.failed:,} refused")
    if r.stored != r.messages:
        problems.append(f"{r.stored:,} inbound messages stored for {r.messages:,} MOs")
    if posted:
        bodies = [json.loads(body) for _, body in arrivals]
        texts = sorted(int(b["Message"].removeprefix(TEXT + " ")) for b in bodies)
        if texts != list(range(r.messages)):
            problems.append(f"{len(bodies):,} callbacks for {len(set(texts)):,} distinct of {r.messages:,} MOs")
        if len({b["ID"] for b in bodies}) != len(bodies):
            problems.append("an inbound message posted twice")
        if r.callbacks != r.messages:
            problems.append(f"{r.callbacks:,} inbound callbacks in the outbox for {r.messages:,} MOs")
    if problems:
        raise AssertionError(f"{r.name}: " + "; ".join(problems))


HEADER = (
    "case", "MOs", "first MO → last callback (or ack) s", "MOs/s end to end", "acks/s", "ack p50 ms", "p99 ms",
    "retried", "stored", "posted", "gateway CPU s per 1,000", "machine ms",
)  # fmt: skip


def row(r: Result) -> tuple[str, ...]:
    return (
        r.name,
        f"{r.messages:,}",
        f"{r.seconds:.1f}" + (" (cap)" if r.capped else ""),
        f"{r.rate:,.0f}",
        f"{r.ack_rate:,.0f}",
        f"{r.ack_ms['p50']:.1f}",
        f"{r.ack_ms['p99']:.1f}",
        f"{r.retried:,}",
        f"{r.stored:,}",
        f"{r.posted:,}" if r.name == "callback" else "–",
        f"{r.cpu_per_1000('server'):.3f}",
        f"{r.machine_ms:.0f}",
    )


def report(results: list[Result], smsc_window: int) -> None:
    print(
        f"\nInbound end to end: npm `smpp` SMSC mo_burst (at most {smsc_window} deliver_sm unanswered per bind), "
        f"`switchboard serve` on SQLite WAL synchronous=FULL, {BINDS} transceiver binds; callback: bench/receiver.py "
        "on uvicorn\n"
    )
    table(HEADER, [row(r) for r in results])
    cpu_table(results, "MOs")
    medians: dict[str, float] = {}
    print("\nMedians [ranges] over the runs of each case\n")
    rows = []
    for case in dict.fromkeys(r.name for r in results):
        runs = [r for r in results if r.name == case]
        medians[case] = statistics.median(r.rate for r in runs)
        rows.append(
            (
                case,
                str(len(runs)),
                spread([r.rate for r in runs], ",.0f"),
                spread([r.ack_rate for r in runs], ",.0f"),
                spread([r.ack_ms["p50"] for r in runs], ".1f"),
                spread([r.ack_ms["p99"] for r in runs], ".1f"),
                spread([r.cpu_per_1000("server") for r in runs], ".3f"),
                spread([r.machine_ms for r in runs], ".0f"),
            )
        )
    table(
        ("case", "runs", "MOs/s end to end", "acks/s", "ack p50 ms", "p99 ms", "gateway CPU s per 1,000", "machine ms"),
        rows,
    )
    if "callback" in medians and "stored" in medians:
        print(f"\nRatio callback / stored (end-to-end MOs/s, medians): {medians['callback'] / medians['stored']:.2f}")
    print(
        "\nNotes: end to end is MOs over the time from the SMSC's first deliver_sm to the receiver's last callback "
        "(callback) or the SMSC's last deliver_sm_resp (stored), one wall clock. acks/s: MOs over first deliver_sm "
        "to last deliver_sm_resp. ack: deliver_sm written → deliver_sm_resp read, in the SMSC, every MO. Every "
        "MO was checked acknowledged, stored once and posted once (callback). machine ms: a fixed pure-Python "
        "loop timed just before the case (best of 3): lower is faster."
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench inbound", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=MESSAGES)
    ap.add_argument("--repeats", type=int, default=1, help="rounds of the cases; medians and ranges at the end")
    ap.add_argument("--cases", default=",".join(CASES), help=f"which, in order: {', '.join(CASES)}")
    ap.add_argument("--smsc-window", type=int, default=SMSC_WINDOW, help="deliver_sm unanswered per bind")
    ap.add_argument("--py-spy", type=Path, help="a folder: py-spy records the gateway in each case")
    args = ap.parse_args(argv)
    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown cases {unknown}: choose from {', '.join(CASES)}")
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    results = []
    for round_ in range(args.repeats):
        for case in cases:
            profile = None if args.py_spy is None else args.py_spy / f"{case}-{round_ + 1}-server.txt"
            r = run_case(case, args.messages, args.smsc_window, profile)
            results.append(r)
            print(
                f"{case}: {r.rate:,.0f} MOs/s end to end, acks {r.ack_rate:,.0f}/s, ack p99 {r.ack_ms['p99']:.1f} ms, "
                f"machine {r.machine_ms:.0f} ms",
                file=sys.stderr,
            )
    report(results, args.smsc_window)
    return 0


if __name__ == "__main__":
    sys.exit(main())
