"""`carriers list` (from the configuration, passwords never shown) and `carriers test` (prints what
`sms.smpp.probe` found)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from switchboard.cli.common import load_config, run
from switchboard.config import Config, SmsCarrierConfig
from switchboard.errors import CliError

if TYPE_CHECKING:
    from switchboard.sms.smpp.probe import MessageOutcome, ProbeMessage, ProbeReport


def carriers(args: argparse.Namespace) -> int:
    config = load_config(args)
    configured = config.sms.carriers or [SmsCarrierConfig(name="simulator")]
    if args.action == "list":
        return _list(args, configured, config)
    found = [c for c in configured if c.name == args.name]
    if not found:
        known = ", ".join(c.name for c in configured)
        raise CliError(f"no carrier named {args.name!r} (configured: {known})")
    if args.timeout <= 0:
        raise CliError("--timeout must be more than 0 seconds")
    message: ProbeMessage | None = None
    if args.to is not None:
        from switchboard.domain import numbers
        from switchboard.sms.smpp.probe import ProbeMessage

        if not args.sender:
            raise CliError("--to needs --sender (and takes --message)")
        e164 = numbers.normalize(args.to)
        if e164 is None:
            raise CliError(f"--to {args.to!r} is not a valid phone number")
        message = ProbeMessage(to=e164, sender=args.sender, text=args.message)
    return run(_test(args, config, found[0], message))


async def _test(args: argparse.Namespace, config: Config, c: SmsCarrierConfig, message: ProbeMessage | None) -> int:
    from switchboard.app import build_carriers
    from switchboard.domain.clock import SystemClock
    from switchboard.sms.smpp.probe import probe

    if not args.json:  # the one line that is known before anything is tried
        if c.kind == "smpp":
            print(f"{c.name}: SMPP at {c.host}:{c.port}, {c.binds} bind(s) as system_id {c.system_id!r}", flush=True)
        else:
            print(f"{c.name}: the built-in simulator: simulated, always up; it sends nothing to a handset", flush=True)
    carrier = next(x for x in build_carriers(config, SystemClock()) if x.name == c.name)
    report = await probe(carrier, limit=args.timeout, message=message)
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        for line in _lines(report, message, args.timeout):
            print(line)
    return 0 if report.ok else 1


def _lines(report: ProbeReport, message: ProbeMessage | None, timeout: float) -> list[str]:
    lines = []
    for b in report.binds or []:
        outcome = f"bound in {b.seconds:.3f} s" if b.error is None else f"{b.error} ({b.seconds:.3f} s)"
        lines.append(f"  bind {b.bind}: {outcome}")
    if any(b.bound for b in report.binds or []):
        lines.append("  unbound")
    if message is not None and report.message is not None:
        lines += _message_lines(report, message, report.message, timeout)
    return lines


def _message_lines(report: ProbeReport, message: ProbeMessage, m: MessageOutcome, timeout: float) -> list[str]:
    if not m.sent:
        return [f"message: {m.error}"]
    what = "through the simulator" if report.simulated else "a REAL SMS"
    lines = [f"sending to {m.to} ({what}) from {message.sender!r}: {message.text!r}"]
    if m.seconds is None:  # no answer to the submit
        return [*lines, f"  {m.error}"]
    if not m.accepted:
        kind = "permanent: sending again will not help" if m.permanent else "transient: may be retried"
        return [*lines, f"  not accepted: {m.error} ({kind})"]
    more = f" ({len(m.part_ids)} parts)" if len(m.part_ids) > 1 else ""
    lines.append(f"  accepted: message id {m.message_id}{more} in {m.seconds:.3f} s")
    if m.receipt is None:
        return [*lines, f"  no receipt within {timeout:g} s"]
    detail = f" ({m.receipt.error})" if m.receipt.error else ""
    return [*lines, f"  receipt: {m.receipt.status}{detail} after {m.receipt.seconds:.3f} s"]


def _list(args: argparse.Namespace, configured: list[SmsCarrierConfig], config: Config) -> int:
    carriers: list[dict[str, Any]] = []
    for c in configured:
        row: dict[str, Any] = {"name": c.name, "kind": c.kind, "simulated": c.kind == "simulator", "rate": c.rate}
        if c.kind == "smpp":
            row |= {
                "host": c.host,
                "port": c.port,
                "system_id": c.system_id,
                "password": "set" if c.password else "not set",
                "system_type": c.system_type,
                "binds": c.binds,
                "window": c.window,
                "id_form": c.id_form,
                "receipt_id_form": c.receipt_id_form or c.id_form,
            }
        else:
            row["delay"] = c.delay
        carriers.append(row)
    routes = [
        {"prefix": r.prefix, "country": r.country, "account": r.account, "sender": r.sender, "carrier": r.carrier}
        for r in config.sms.routes
    ]
    if args.json:
        print(json.dumps({"carriers": carriers, "routes": routes, "default": not config.sms.carriers}))
        return 0
    if not config.sms.carriers:
        print("No carriers configured: the built-in simulator takes every message (nothing reaches a handset).")
    for row in carriers:
        if row["kind"] == "smpp":
            ids = f"id_form {row['id_form']}"
            if row["receipt_id_form"] != row["id_form"]:
                ids += f"  receipt_id_form {row['receipt_id_form']}"
            print(
                f"{row['name']}  smpp  {row['host']}:{row['port']}  system_id {row['system_id']!r}  "
                f"password {row['password']}"
                + (f"  system_type {row['system_type']!r}" if row["system_type"] else "")
                + f"  binds {row['binds']}  window {row['window']}  rate {row['rate']:g}/s  {ids}"
            )
        else:
            print(f"{row['name']}  simulator (simulated, always up)  delay {row['delay']:g} s  rate {row['rate']:g}/s")
    first = carriers[0]["name"]
    if not routes:
        print(f"routes: none; every message goes to {first}")
        return 0
    print(f"routes, tried in order (the first matching one whose carrier is up; otherwise {first}):")
    for i, r in enumerate(routes, start=1):
        rule = ", ".join(f"{k} {r[k]}" for k in ("prefix", "country", "account", "sender") if r[k] is not None)
        print(f"  {i}. {rule or 'any destination'} -> {r['carrier']}")
    return 0
