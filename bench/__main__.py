"""`make bench`: HTTP Send throughput and latency against a real server subprocess, with wrk.

`python -m bench` (or `python -m bench send`) runs this; `python -m bench callbacks [options]` runs callback
delivery (bench/callbacks.py); `python -m bench smpp [options]` runs SMPP end to end (bench/smpp.py, about
a minute); `python -m bench inbound [options]` runs MOs from the SMSC to a callback receiver (bench/inbound.py,
about a minute); `python -m bench voice [options]` runs concurrent calls against sipp (bench/voice.py, about
two minutes); `python -m bench all [send options]` runs send, callbacks, smpp, inbound and voice, in that order.

For 1 and 100 destinations per request, 64 connections, the server on SQLite with synchronous=FULL, and a
bare endpoint of the same server stack measured in the same run as the ceiling. Each case runs REPEATS
times; the table shows medians. Targets (issue 2): ≥ 12,000 requests/s with one destination, ≥ 150,000
destinations/s at 100 per request, p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import callbacks, inbound, smpp, voice
from switchboard.testing import ServerProcess

HERE = Path(__file__).parent
BENCH_SERVER = "access_log = false"
BENCH_CONFIG = """
[limits]
requests_per_second = 0
"""


def wrk(url: str, *, seconds: int, connections: int, env: dict[str, str]) -> dict[str, int]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(HERE / "send.lua"), url],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    result: dict[str, int] = json.loads(line.removeprefix("RESULT "))
    return result


def run_case(url: str, dests: int, *, key: str, seconds: int, repeats: int) -> dict[str, float]:
    wrk(url, seconds=2, connections=64, env={"DESTS": str(dests), "API_KEY": key})  # warm-up
    runs = []
    for _ in range(repeats):
        r = wrk(url, seconds=seconds, connections=64, env={"DESTS": str(dests), "API_KEY": key})
        errors = sum(v for k, v in r.items() if k.startswith("errors_"))
        rps = r["requests"] / (r["duration_us"] / 1e6)
        runs.append(
            {
                "rps": rps,
                "p50": r["p50_us"] / 1000,
                "p99": r["p99_us"] / 1000,
                "errors": errors,
                "requests": r["requests"],
            }
        )
    return {
        "rps": statistics.median(x["rps"] for x in runs),
        "dests_per_s": statistics.median(x["rps"] for x in runs) * dests,
        "p50": statistics.median(x["p50"] for x in runs),
        "p99": statistics.median(x["p99"] for x in runs),
        "errors": sum(x["errors"] for x in runs),
        "requests": sum(x["requests"] for x in runs),
        "min_rps": min(x["rps"] for x in runs),
        "max_rps": max(x["rps"] for x in runs),
    }


def bare_server() -> tuple[subprocess.Popen[bytes], str]:
    return callbacks.serve("bench.bare_app:app")


def main(argv: list[str]) -> int:
    which, rest = (argv[0], argv[1:]) if argv[:1] and not argv[0].startswith("-") else ("send", argv)
    if which == "callbacks":
        return callbacks.main(rest)
    if which == "smpp":
        return smpp.main(rest)
    if which == "inbound":
        return inbound.main(rest)
    if which == "voice":
        return voice.main(rest)
    if which == "all":
        # the others even when one could not run
        return max(send(rest), callbacks.main([]), smpp.main([]), inbound.main([]), voice.main([]))
    if which != "send":
        known = "send (the default), callbacks, smpp, inbound, voice or all"
        print(f"unknown benchmark {which!r}: {known}", file=sys.stderr)
        return 2
    return send(rest)


def send(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench [send]", description=__doc__)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2

    rows: list[tuple[str, dict[str, float]]] = []
    proc, bare_url = bare_server()
    try:
        for dests in (1, 100):
            rows.append(
                (
                    f"bare endpoint, {dests} dest/request",
                    run_case(bare_url, dests, key="", seconds=args.seconds, repeats=args.repeats),
                )
            )
    finally:
        proc.terminate()
        proc.wait()

    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
        server = ServerProcess(Path(tmp), config=BENCH_CONFIG, server=BENCH_SERVER)
        server.write_config()
        key = server.create_account("bench")["api_key"]
        server.start()
        try:
            for dests in (1, 100):
                rows.append(
                    (
                        f"Send, {dests} dest/request",
                        run_case(server.url, dests, key=key, seconds=args.seconds, repeats=args.repeats),
                    )
                )
        finally:
            server.stop()
        db = sqlite3.connect(Path(tmp) / "switchboard.db")
        stored = db.execute("SELECT count(*) FROM destinations").fetchone()[0]
        statuses = dict(db.execute("SELECT status, count(*) FROM destinations GROUP BY status").fetchall())
        db.close()

    print(
        f"\nSend throughput, 64 connections, wrk -t1, {args.repeats}×{args.seconds}s per case, medians; "
        f"SQLite WAL synchronous=FULL\n"
    )
    header = ("case", "requests/s", "destinations/s", "p50 ms", "p99 ms", "errors")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("-" * (len(h) + 2) for h in header) + "|")
    for name, r in rows:
        cells = (
            f"{r['rps']:,.0f}",
            f"{r['dests_per_s']:,.0f}",
            f"{r['p50']:.1f}",
            f"{r['p99']:.1f}",
            f"{r['errors']:.0f}",
        )
        print(f"| {name} | " + " | ".join(cells) + " |")
    send_rows = [r for name, r in rows if name.startswith("Send")]
    answered = sum(r["requests"] for r in send_rows)
    print(
        f"\nRatio to the bare endpoint: 1 dest {rows[2][1]['rps'] / rows[0][1]['rps']:.2f}, "
        f"100 dest {rows[3][1]['rps'] / rows[1][1]['rps']:.2f}"
    )
    print(f"Destinations stored after the run: {stored:,} (statuses: {statuses})")
    print(f"Send requests answered in the measured runs: {answered:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
