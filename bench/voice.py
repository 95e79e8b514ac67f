"""`python -m bench voice`: concurrent answered calls with audio, against sipp, in one process.

What runs: SIPP_PROCESSES sipp UAS processes (tests/sipp/uas_answer.xml: answer at once, wait for our BYE;
`-rtp_echo`, so every RTP packet they get comes back), each taking an equal share of the calls (one sipp
echo socket drops packets beyond about 100 streams with the kernel's default buffer, tests/integration/
sipp.py), and in this process one `SipTrunk` per sipp, all sharing one `RtpClock`, on uvloop. CALLS calls
are placed as fast as the trunks answer (no cps limit), each playing HOLD_SECONDS of audio (a speech-like
signal, G.711 µ-law), then hung up by us.

Measured per run:
- call setups per second: calls answered / seconds from the first INVITE to the last 2xx;
- concurrent calls: the most calls answered and playing at the same time (`InProgress`);
- RTP packet lateness p50/p99/max (ms) over the window when every call was playing: how much later than its
  20 ms slot each packet left (the one clock's tick began late by some amount, and the tick's packets go
  out one after another), and the ticks skipped;
- failed calls: every call that did not end Answered / NA;
- packets: sent by us, and echoed back by sipp (a receipt of the far end).
A second case runs the same calls through the gateway's own path, in this process: a `Gateway` (SQLite,
role worker: the dialer, the store, the callback outbox) with one `kind = "sip"` trunk per sipp, routed by
number prefix, and one Call request of CALLS / SIPP_PROCESSES destinations per trunk playing a campaign
made from the same audio; setups/s is from the first request to the last call `InProgress`, as the store
records it.

Targets (issue 5): ≥ 500 concurrent calls with p99 lateness under 5 ms and 0 failed calls, ≥ 50 setups/s.
Anchors: FreeSWITCH's default of 30 sessions per second and 1,000 sessions; Twilio's default 1 call per
second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from switchboard.domain.clock import SystemClock
from switchboard.domain.statuses import CallReason, CallStatus
from switchboard.voice.sip.rtp import RtpClock, RtpStream
from switchboard.voice.sip.trunk import SipTrunk, SipTrunkSettings
from switchboard.voice.trunk import CallResult, OutboundCall

if TYPE_CHECKING:
    from tests.integration.sipp import SippPeer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the sipp harness lives with the tests

CALLS = 500
HOLD_SECONDS = 20.0
SIPP_PROCESSES = 5
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    calls: int
    setups_per_second: float
    most_concurrent: int
    lateness_p50: float
    lateness_p99: float
    lateness_max: float
    tick_start_p99: float
    tick_cost_p50: float
    tick_cost_p99: float
    skipped_ticks: int
    failed: int
    packets_sent: int
    packets_echoed: int
    cpu_percent: float


def start_sipps(calls: int, hold: float, sipps: int) -> tuple[list[int], list[SippPeer]]:
    """`sipps` sipp UAS processes (answer at once, wait for our BYE) sharing `calls` calls of `hold` seconds:
    how many calls each takes, and the started peers."""
    from tests.integration.sipp import SippPeer

    per = [calls // sipps + (1 if i < calls % sipps else 0) for i in range(sipps)]
    peers = [
        SippPeer("uas_answer", calls=n, timeout_s=hold + 120, bye_timeout_ms=int((hold + 60) * 1000)).start()
        for n in per
    ]
    return per, peers


def speech_like(seconds: float) -> bytes:
    """A 16-bit 8 kHz signal with speech's rough shape: a few harmonics gliding, syllable-rate envelope."""
    t = np.arange(int(seconds * 8000)) / 8000
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 8000
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (voice * envelope * 6000).astype("<i2").tobytes()


async def one_run(calls: int, hold: float, sipps: int) -> Run:
    _, peers = start_sipps(calls, hold, sipps)
    clock = SystemClock()
    rtp_clock = RtpClock()
    streams: list[RtpStream] = []

    async def open_media(**kwargs: Any) -> RtpStream:
        stream = await RtpStream.open(**kwargs)
        streams.append(stream)
        return stream

    trunks = [
        SipTrunk(
            name=f"sipp{i}",
            settings=SipTrunkSettings(
                host=p.host,
                port=p.port,
                bind_host="127.0.0.1",
                rtp_ports=(20000 + i * 4000, 20000 + i * 4000 + 3998),
                cps=1e9,
                max_calls=calls,
            ),
            clock=clock,
            rtp_clock=rtp_clock,
            open_media=open_media,
        )
        for i, p in enumerate(peers)
    ]
    for trunk in trunks:
        await trunk.start()
    audio = speech_like(hold)
    answered_at: list[float] = []
    playing = 0
    most = 0
    all_playing = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def call(i: int, trunk: SipTrunk) -> CallResult:
        nonlocal playing, most

        def on_answered(_: int) -> None:
            nonlocal playing, most
            answered_at.append(loop.time())
            playing += 1
            most = max(most, playing)
            if playing == calls:
                all_playing.set()

        try:
            return await trunk.dial(
                OutboundCall(call_id=i, e164=f"+4915112{i:06d}", caller="+14155550100", audio=audio, ring_timeout=30),
                on_answered=on_answered,
            )
        finally:
            playing -= 1

    cpu_before = _cpu_seconds()
    started = loop.time()
    tasks = [asyncio.create_task(call(i, trunks[i % len(trunks)])) for i in range(calls)]
    window_lateness: list[float] = []
    window_ticks: list[tuple[float, float, int]] = []
    try:
        await asyncio.wait_for(all_playing.wait(), timeout=hold)
        # Every call is playing now: the steady state the lateness target is about.
        ticks_before = rtp_clock.ticks
        skipped_before = rtp_clock.skipped_ticks
        await asyncio.sleep(min(10.0, hold / 2))
        window_ticks = rtp_clock.tick_samples()[-(rtp_clock.ticks - ticks_before) :]
        window_lateness = _window(rtp_clock, rtp_clock.ticks - ticks_before)
        skipped = rtp_clock.skipped_ticks - skipped_before
    except TimeoutError:
        skipped = rtp_clock.skipped_ticks
    results = await asyncio.gather(*tasks)
    cpu = _cpu_seconds() - cpu_before
    elapsed = loop.time() - started
    for trunk in trunks:
        await trunk.stop()
    await rtp_clock.stop()
    echoed = sum(s.packets_received for s in streams)
    for p in peers:
        p.stop()
    failed = sum(1 for r in results if (r.status, r.reason) != (CallStatus.ANSWERED, CallReason.NA))
    setup_span = (max(answered_at) - started) if answered_at else float("inf")
    return Run(
        calls=calls,
        setups_per_second=len(answered_at) / setup_span,
        most_concurrent=most,
        **_lateness(window_lateness, window_ticks),
        skipped_ticks=skipped,
        failed=failed,
        packets_sent=rtp_clock.frames_sent,
        packets_echoed=echoed,
        cpu_percent=100 * cpu / elapsed,
    )


async def gateway_run(calls: int, hold: float, sipps: int, workdir: Path) -> Run:
    """The calls placed through `VoiceService.call` → store → dialer → SipTrunk, in this process."""
    from switchboard import config as config_module
    from switchboard.app import Gateway
    from switchboard.domain.sms_request import CALLBACK_NO
    from switchboard.domain.voice_request import CallRequest
    from switchboard.voice.audio import write_wav

    per, peers = start_sipps(calls, hold, sipps)
    toml = f'[server]\ndata_dir = "{workdir}"\n[worker]\npoll_interval = 0.2\n'
    for i, p in enumerate(peers):
        toml += (
            f'[[voice.trunks]]\nname = "sipp{i}"\nkind = "sip"\nhost = "{p.host}"\nport = {p.port}\n'
            f'bind_host = "127.0.0.1"\nrtp_ports = [{20000 + i * 4000}, {20000 + i * 4000 + 3998}]\n'
            f"cps = 1000\nmax_calls = {calls}\n"
            f'[[voice.routes]]\nprefix = "+491511{i}"\ntrunk = "sipp{i}"\n'
        )
    (workdir / "voice.toml").write_text(toml)
    gateway = Gateway(config_module.load(workdir / "voice.toml", env={}), role="worker")
    await gateway.start()
    cpu_before = _cpu_seconds()
    try:
        account, _ = await gateway.accounts.create("bench")
        pcm = np.frombuffer(speech_like(hold), dtype="<i2")
        campaign = await gateway.voice.create_campaign_from_wav(account, name="bench", data=write_wav(pcm))
        loop = asyncio.get_running_loop()
        started = loop.time()
        ids = []
        for i, n in enumerate(per):
            request = CallRequest(
                destinations=[f"+491511{i}{k:06d}" for k in range(n)],
                sender="+14155550100",
                message=None,
                locale=None,
                campaign_id=campaign.id,
                reference_id=None,
                callback=CALLBACK_NO,
            )
            ids.append((await gateway.voice.call(account, request)).request_id)
        rtp_clock = next(t.rtp_clock for t in gateway.trunks if isinstance(t, SipTrunk))
        most, last_answer, ticks_before, window = 0, 0, 0, 0.0
        while True:
            views = [await gateway.store.get_call_request(account.id, i) for i in ids]
            all_calls = [c for v in views if v is not None for c in v.calls]
            playing = sum(1 for c in all_calls if c.status is CallStatus.IN_PROGRESS)
            if playing > most:
                most = playing
            answered = [c.answer_time for c in all_calls if c.answer_time is not None]
            if len(answered) == calls and not ticks_before:
                last_answer = max(answered)
                ticks_before, window = rtp_clock.ticks, loop.time()
            if ticks_before and loop.time() - window >= min(10.0, hold / 2):
                window_ticks = rtp_clock.tick_samples()[-(rtp_clock.ticks - ticks_before) :]
                lateness = _window(rtp_clock, rtp_clock.ticks - ticks_before)
                break
            if loop.time() - started > hold + 60:
                window_ticks, lateness = [], []
                break
            await asyncio.sleep(0.2)
        while not all(c.status.terminal for c in all_calls) and loop.time() - started < hold + 120:
            await asyncio.sleep(0.5)
            views = [await gateway.store.get_call_request(account.id, i) for i in ids]
            all_calls = [c for v in views if v is not None for c in v.calls]
        elapsed = loop.time() - started
        first_accept = min(v.created_at for v in views if v is not None)
        failed_calls = [c for c in all_calls if (c.status, c.reason) != (CallStatus.ANSWERED, CallReason.NA)]
        failed = len(failed_calls)
        if failed_calls:
            print(f"{failed} calls failed, e.g. {failed_calls[0]}", file=sys.stderr)
    finally:
        cpu = _cpu_seconds() - cpu_before
        await gateway.stop()
        for p in peers:
            p.stop()
    setups = calls / ((last_answer - first_accept) / 1000) if last_answer else 0.0
    return Run(
        calls=calls,
        setups_per_second=setups,
        most_concurrent=most,
        **_lateness(lateness, window_ticks),
        skipped_ticks=rtp_clock.skipped_ticks,
        failed=failed,
        packets_sent=rtp_clock.frames_sent,
        packets_echoed=rtp_clock.frames_sent,  # not observed here: the trunk's streams are its own
        cpu_percent=100 * cpu / elapsed,
    )


def _window(clock: RtpClock, count: int) -> list[float]:
    """The lateness of every packet of the clock's last `count` ticks, in ms: a tick's packets go out one
    after the other, so the k-th of n is taken as sent k/n of the tick's sending time after its start."""
    ticks = clock.tick_samples()[-count:] if count > 0 else []
    out: list[np.ndarray] = [late + cost * np.arange(n) / n for late, cost, n in ticks if n]
    return list(np.concatenate(out)) if out else []


def _lateness(lateness: list[float], ticks: list[tuple[float, float, int]]) -> dict[str, float]:
    """The `Run` fields of the window's packet lateness and ticks (`_window`, `RtpClock.tick_samples`): NaN
    when the window never came."""
    lat = lateness or [float("nan")]
    starts = [t[0] for t in ticks] or [float("nan")]
    costs = [t[1] for t in ticks] or [float("nan")]
    return {
        "lateness_p50": float(np.percentile(lat, 50)),
        "lateness_p99": float(np.percentile(lat, 99)),
        "lateness_max": float(max(lat)),
        "tick_start_p99": float(np.percentile(starts, 99)),
        "tick_cost_p50": float(np.percentile(costs, 50)),
        "tick_cost_p99": float(np.percentile(costs, 99)),
    }


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench voice", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--hold", type=float, default=HOLD_SECONDS, help="seconds of audio each call plays")
    parser.add_argument("--sipps", type=int, default=SIPP_PROCESSES, help="sipp processes sharing the calls")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default="trunk,gateway", help="trunk (SipTrunk directly), gateway (the dialer)")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        uvloop = None  # type: ignore[assignment]
    parser_cases = args.cases.split(",")
    tables: list[tuple[str, list[Run]]] = []
    for case in parser_cases:
        runs: list[Run] = []
        for _ in range(args.repeats):
            if case == "trunk":
                coro = one_run(args.calls, args.hold, args.sipps)
            else:
                workdir = Path(tempfile.mkdtemp(prefix="sb-bench-voice-"))
                coro = gateway_run(args.calls, args.hold, args.sipps, workdir)
            try:
                runs.append(uvloop.run(coro) if uvloop is not None else asyncio.run(coro))
            finally:
                if case != "trunk":
                    shutil.rmtree(workdir, ignore_errors=True)
            time.sleep(1)
        tables.append((case, runs))
    for case, runs in tables:
        what = "SipTrunk driven directly" if case == "trunk" else "through the dialer (Gateway, SQLite, campaign)"
        print(f"\nVoice, {what}: {args.calls} answered calls with {args.hold:g} s of audio each, against sipp "
              f"({args.sipps} processes, -rtp_echo), one process, uvloop; {args.repeats} runs\n")
        print(
            "| run | setups/s | most concurrent | RTP lateness p50 / p99 / max ms | tick start p99 ms "
            "| tick sending p50 / p99 ms | skipped ticks | failed | packets sent | echoed back % | CPU % |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for i, r in enumerate(runs, 1):
            echoed = f"{100 * r.packets_echoed / max(1, r.packets_sent):.1f}" if case == "trunk" else "n/a"
            print(
                f"| {i} | {r.setups_per_second:,.0f} | {r.most_concurrent} | {r.lateness_p50:.2f} / "
                f"{r.lateness_p99:.2f} / {r.lateness_max:.1f} | {r.tick_start_p99:.2f} | {r.tick_cost_p50:.2f} / "
                f"{r.tick_cost_p99:.2f} | {r.skipped_ticks} | {r.failed} | {r.packets_sent:,} "
                f"| {echoed} | {r.cpu_percent:.0f} |"
            )
        print(
            f"\nmedians: {statistics.median(r.setups_per_second for r in runs):,.0f} setups/s, "
            f"p99 lateness {statistics.median(r.lateness_p99 for r in runs):.2f} ms, "
            f"most concurrent {statistics.median(r.most_concurrent for r in runs):.0f}, "
            f"failed {sum(r.failed for r in runs)} in all"
        )
    return 0 if all(r.failed == 0 for _, runs in tables for r in runs) else 1
