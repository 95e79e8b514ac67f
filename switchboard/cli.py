"""The `switchboard` command.

Server and administration commands (`serve`, `api`, `worker`, `accounts`, `keys`, `db`) work on the
configured database directly; `carriers` reads the configuration and talks to the carriers themselves;
client commands (`send`, `status`) talk to a running server over HTTP with
an API key, as any application would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from switchboard import __version__
from switchboard.config import Config, ConfigError, load

DEFAULT_URL = "http://127.0.0.1:8080"
LISTEN_PORT = 8081
"""Where `callbacks listen` listens by default, and where the demo account's callbacks go under `make run`."""


class CliError(Exception):
    """A mistake the user can fix; printed without a traceback, exit status 2."""


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--data-dir", metavar="DIR", help="where the embedded database lives (default ./data)")
    p.add_argument("--database-url", metavar="URL", help="sqlite:///path or postgresql://user@host/db")


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL", DEFAULT_URL), help="server address")
    p.add_argument("--api-key", default=os.environ.get("SWITCHBOARD_API_KEY"), help="or SWITCHBOARD_API_KEY")


def _allow_private_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-private-callbacks",
        action="store_true",
        default=None,
        help="let callback URLs point at private and loopback addresses (local development)",
    )


def _load(args: argparse.Namespace, **extra: Any) -> Config:
    overrides = {
        "server.data_dir": getattr(args, "data_dir", None),
        "database.url": getattr(args, "database_url", None),
        "callbacks.allow_private_networks": getattr(args, "allow_private_callbacks", None),
        **extra,
    }
    return load(args.config, overrides=overrides)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="switchboard", description="Self-hosted SMS and voice gateway.")
    top.add_argument("--version", action="version", version=f"switchboard {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, text in (
        ("serve", "run everything in one process (API, workers, simulators): the embedded default"),
        ("api", "run only the HTTP API (cluster mode, with workers elsewhere)"),
        ("worker", "run only the workers (cluster mode)"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        _config_args(p)
        p.add_argument("--host", help="listen address (default 127.0.0.1)")
        p.add_argument("--port", type=int, help="listen port (default 8080)")
        _allow_private_arg(p)
        if name == "serve":
            p.add_argument("--no-demo", action="store_true", help="do not create the demo account on first start")

    accounts = sub.add_parser("accounts", help="create and list accounts").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = accounts.add_parser("create", help="create an account and its first API key")
    p.add_argument("name")
    p.add_argument("--sms-callback-url")
    p.add_argument("--voice-callback-url")
    p.add_argument("--json", action="store_true", help='print {"account", "api_key", "webhook_secret"}')
    _allow_private_arg(p)
    _config_args(p)
    p = accounts.add_parser("list", help="list accounts")
    p.add_argument("--json", action="store_true")
    _config_args(p)

    keys = sub.add_parser("keys", help="create, list and revoke API keys").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = keys.add_parser("create", help="a new key for an account (shown once)")
    p.add_argument("account")
    p.add_argument("--label")
    p.add_argument("--json", action="store_true")
    _config_args(p)
    p = keys.add_parser("list", help="an account's keys (never the keys themselves)")
    p.add_argument("account")
    p.add_argument("--json", action="store_true")
    _config_args(p)
    p = keys.add_parser("revoke", help="revoke a key by its id")
    p.add_argument("account")
    p.add_argument("key_id", type=int)
    _config_args(p)

    p = sub.add_parser("send", help="send an SMS through a running server")
    p.add_argument("--to", action="append", required=True, metavar="NUMBER", help="destination (repeatable)")
    p.add_argument("--message", "-m", required=True)
    p.add_argument("--sender", "-s", required=True)
    p.add_argument("--reference")
    p.add_argument("--callback", help='"Yes", "No" or an https URL')
    p.add_argument("--schedule-at")
    p.add_argument("--validity", type=int, metavar="SECONDS")
    _client_args(p)

    p = sub.add_parser("status", help="the status of a send")
    p.add_argument("id")
    p.add_argument("--wait", type=float, metavar="SECONDS", help="poll until every destination is final")
    _client_args(p)

    p = sub.add_parser("call", help="place voice calls through a running server")
    p.add_argument("--to", action="append", required=True, metavar="NUMBER", help="destination (repeatable)")
    p.add_argument("--sender", "-s", required=True, help="the caller number to show")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--message", "-m", help="text to speak (with --locale)")
    what.add_argument("--campaign", metavar="ID", help="a campaign's recording to play")
    p.add_argument("--locale", "-l", help="the message's locale, e.g. en-US or hi-IN")
    p.add_argument("--reference")
    p.add_argument("--callback", help='"Yes" (default: the account\'s voice URL), "No" or an https URL')
    p.add_argument("--ring-timeout", type=int, metavar="SECONDS")
    _client_args(p)

    calls = sub.add_parser("calls", help="the calls of a Call request: status, cancel").add_subparsers(
        dest="action", required=True
    )
    p = calls.add_parser("status", help="each call's record")
    p.add_argument("id")
    p.add_argument("--wait", type=float, metavar="SECONDS", help="poll until every call has ended")
    _client_args(p)
    p = calls.add_parser("cancel", help="cancel calls not yet ended (they end as Failed / Cancel)")
    p.add_argument("id")
    p.add_argument("--to", metavar="NUMBER", help="only the call to this number")
    _client_args(p)

    campaigns = sub.add_parser("campaigns", help="recordings to play in calls").add_subparsers(
        dest="action", required=True
    )
    p = campaigns.add_parser("create", help="from a WAV file, or from text spoken once in a locale")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", metavar="FILE", help="a WAV file (any common rate and width)")
    source.add_argument("--text", help="text to speak (with --locale)")
    p.add_argument("--locale", "-l")
    p.add_argument("--name")
    _client_args(p)
    for action, text in (("list", "your campaigns"), ("show", "one campaign"), ("delete", "delete a campaign")):
        p = campaigns.add_parser(action, help=text)
        if action != "list":
            p.add_argument("id")
        _client_args(p)

    account = sub.add_parser("account", help="your account's callback URLs and webhook secret").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = account.add_parser("show", help="callback URLs, whether they are disabled, and the webhook secret")
    _client_args(p)
    p = account.add_parser("set", help='set or clear ("") the callback URLs')
    p.add_argument("--sms-callback-url")
    p.add_argument("--voice-callback-url")
    _client_args(p)
    p = account.add_parser("rotate-secret", help="a new webhook secret; the old one keeps signing for 24 h")
    _client_args(p)

    callbacks = sub.add_parser("callbacks", help="callbacks sent, replay, and a local receiver").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = callbacks.add_parser("list", help="your callbacks, newest first")
    p.add_argument("--status", choices=["pending", "delivered", "failed"])
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--before", metavar="ID", help="the page after this id (the listing's Next)")
    _client_args(p)
    p = callbacks.add_parser("show", help="one callback with every attempt")
    p.add_argument("id")
    _client_args(p)
    p = callbacks.add_parser("replay", help="send a callback again (a failed one, after fixing the receiver)")
    p.add_argument("id")
    _client_args(p)
    p = callbacks.add_parser("listen", help="a local receiver that verifies and prints callbacks")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=LISTEN_PORT)
    p.add_argument(
        "--secret",
        default=os.environ.get("SWITCHBOARD_WEBHOOK_SECRET"),
        help="the account's whsec_ secret (or SWITCHBOARD_WEBHOOK_SECRET); without it nothing is verified",
    )
    p.add_argument("--fail-first", type=int, default=0, metavar="N", help="answer 503 to the first N callbacks")

    carriers = sub.add_parser("carriers", help="the configured SMS carriers: list them, test one").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = carriers.add_parser("list", help="carriers and routes from the configuration (passwords never shown)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--json", action="store_true")
    p = carriers.add_parser(
        "test",
        help="bind to a carrier, report each bind, unbind; with --to, also send one REAL SMS",
        description="Bind every session of an SMPP carrier and report, per bind, whether it bound and how long "
        "it took, or why not; then unbind. Exit status 0 when every bind came up (and, with --to, the message "
        "was accepted and its receipt came), 1 otherwise. With --to, one message is sent through the carrier: "
        "a REAL SMS to that number, which may be charged for. The simulator is always up and sends nothing.",
    )
    p.add_argument("name", help="the carrier's name in sms.carriers")
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds for the binds, and for the "
                   "submit and its receipt (default 10)")  # fmt: skip
    p.add_argument("--to", metavar="NUMBER", help="also send one message to this number: a REAL SMS (needs --sender)")
    p.add_argument("--message", "-m", default="Switchboard carrier test", metavar="TEXT", help="its text")
    p.add_argument("--sender", "-s", metavar="S", help="its sender (alphanumeric, +digits or a short code)")
    p.add_argument("--json", action="store_true")

    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="action", required=True)
    p = db.add_parser("upgrade", help="apply schema migrations")
    _config_args(p)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    handler = _HANDLERS[args.command]
    try:
        return handler(args)
    except (CliError, ConfigError) as e:
        print(f"switchboard: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(coro: Awaitable[int]) -> int:
    try:
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]


# servers


def _serve(args: argparse.Namespace) -> int:
    from switchboard.app import run

    config = _load(args, **{"server.host": args.host, "server.port": args.port})

    async def main() -> int:
        on_started = None if args.command != "serve" or args.no_demo else _demo_account(config)
        await run(config, role=args.command, on_started=on_started)
        return 0

    return _run(main())


def _demo_account(config: Config) -> Callable[[Any], Awaitable[None]]:
    async def create(gateway: Any) -> None:
        if await gateway.store.list_accounts():
            return
        listener = f"http://127.0.0.1:{LISTEN_PORT}/"
        local = config.callbacks.allow_private_networks
        account, key = await gateway.accounts.create(
            "demo", sms_callback_url=listener if local else None, voice_callback_url=listener if local else None
        )
        base = f"http://{config.server.host}:{config.server.port}"
        if local:
            callbacks = f"""
Callbacks ("CallBack": "Yes") go to {listener}; to watch them arrive, signed and verified, run:

    switchboard callbacks listen --port {LISTEN_PORT} --secret {account.webhook_secret}
"""
        else:
            callbacks = """
Set a callback URL with PUT /api/Account {"SmsCallbackUrl": "https://..."} (docs/api.md).
"""
        print(
            f"""
Created the demo account on first start. Its API key, shown only now:

    {key.secret}

Try it (the simulator delivers; +15005550001 is a test number that is never delivered):

    curl -s {base}/api/SMS/Send -H 'Authorization: Bearer {key.secret}' \\
      -d '{{"Destination": [{{"MobileNo": "0016175551212"}}, {{"MobileNo": "+15005550001"}}],
           "Message": "Hello from Switchboard", "Sender": "OM"}}'

    curl -s '{base}/api/SMS/GetStatus?ID=<the ID it answered>' -H 'Authorization: Bearer {key.secret}'
{callbacks}""",
            flush=True,
        )

    return create


# administration on the database


def _with_gateway(args: argparse.Namespace, action: Callable[[Any], Awaitable[int]]) -> int:
    from switchboard.app import Gateway

    config = _load(args)

    async def main() -> int:
        gateway = Gateway(config, role="api")
        await gateway.start()
        try:
            return await action(gateway)
        finally:
            await gateway.stop()

    return _run(main())


def _accounts(args: argparse.Namespace) -> int:
    from switchboard.accounts import AccountError
    from switchboard.store.base import DuplicateName

    async def create(g: Any) -> int:
        try:
            account, key = await g.accounts.create(
                args.name, sms_callback_url=args.sms_callback_url, voice_callback_url=args.voice_callback_url
            )
        except (AccountError, DuplicateName) as e:
            raise CliError(str(e)) from None
        if args.json:
            print(
                json.dumps({"account": account.name, "api_key": key.secret, "webhook_secret": account.webhook_secret})
            )
        else:
            print(f"account:        {account.name}")
            print(f"api key:        {key.secret}")
            print(f"webhook secret: {account.webhook_secret}")
            print("Keep the API key: it is not shown again (the webhook secret is also in GET /api/Account).")
        return 0

    async def listing(g: Any) -> int:
        accounts = await g.store.list_accounts()
        rows = [
            {"account": a.name, "sms_callback_url": a.sms_callback_url, "voice_callback_url": a.voice_callback_url}
            for a in accounts
        ]
        if args.json:
            print(json.dumps(rows))
        else:
            for r in rows:
                print(r["account"])
        return 0

    return _with_gateway(args, create if args.action == "create" else listing)


def _keys(args: argparse.Namespace) -> int:
    from switchboard.accounts import AccountError

    async def action(g: Any) -> int:
        try:
            account = await g.accounts.get(args.account)
        except AccountError as e:
            raise CliError(str(e)) from None
        if args.action == "create":
            key = await g.accounts.create_key(account, label=args.label)
            if args.json:
                print(json.dumps({"account": account.name, "key_id": str(key.key.id), "api_key": key.secret}))
            else:
                print(f"key id:  {key.key.id}\napi key: {key.secret}\nKeep it: it is not shown again.")
        elif args.action == "list":
            keys = await g.store.list_api_keys(account.id)
            rows = [
                {"key_id": str(k.id), "prefix": k.prefix, "label": k.label, "revoked": k.revoked_at is not None}
                for k in keys
            ]
            if args.json:
                print(json.dumps(rows))
            for r in [] if args.json else rows:
                state = "revoked" if r["revoked"] else "active"
                print(f"{r['key_id']}  {r['prefix']}…  {state}  {r['label'] or ''}")
        else:
            if not await g.accounts.revoke_key(account, args.key_id):
                raise CliError(f"account {account.name} has no active key {args.key_id}")
            print(f"revoked key {args.key_id}")
        return 0

    return _with_gateway(args, action)


def _callbacks(args: argparse.Namespace) -> int:
    if args.action != "listen":
        return _callbacks_client(args)
    from switchboard.callbacks.listen import Listener

    try:
        listener = Listener(host=args.host, port=args.port, secret=args.secret, fail_first=args.fail_first)
    except ValueError as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {e.strerror}") from None
    listener.serve_forever()
    return 0


def _db(args: argparse.Namespace) -> int:
    from switchboard.store import migrate

    config = _load(args)
    migrate.upgrade(config.database_url)
    print(f"database is at the newest schema: {config.database_url.split('@')[-1]}")
    return 0


# carriers


def _carriers(args: argparse.Namespace) -> int:
    from switchboard.config import SmsCarrierConfig

    config = _load(args)
    configured = config.sms.carriers or [SmsCarrierConfig(name="simulator")]
    if args.action == "list":
        return _carriers_list(args, configured, config)
    found = [c for c in configured if c.name == args.name]
    if not found:
        known = ", ".join(c.name for c in configured)
        raise CliError(f"no carrier named {args.name!r} (configured: {known})")
    if args.timeout <= 0:
        raise CliError("--timeout must be more than 0 seconds")
    if args.to is not None:
        from switchboard.domain import numbers

        if not args.sender:
            raise CliError("--to needs --sender (and takes --message)")
        e164 = numbers.normalize(args.to)
        if e164 is None:
            raise CliError(f"--to {args.to!r} is not a valid phone number")
        args.to = e164
    logging.getLogger("switchboard.sms").setLevel(logging.WARNING)  # each bind's outcome is printed anyway
    return _run(_carrier_test(args, config, found[0]))


async def _carrier_test(args: argparse.Namespace, config: Config, c: Any) -> int:
    from switchboard.app import build_carriers
    from switchboard.domain.clock import SystemClock

    out = _Report(args.json)
    report: dict[str, Any] = {"carrier": c.name, "kind": c.kind, "simulated": c.kind == "simulator"}
    ok = True
    if c.kind == "smpp":
        report["peer"] = f"{c.host}:{c.port}"
        out.line(f"{c.name}: SMPP at {c.host}:{c.port}, {c.binds} bind(s) as system_id {c.system_id!r}")
        report["binds"] = await _test_binds(c, args.timeout, out)
        ok = all(b["bound"] for b in report["binds"])
    else:
        out.line(f"{c.name}: the built-in simulator: simulated, always up; it sends nothing to a handset")
    if args.to is not None:
        if c.kind == "smpp" and not any(b["bound"] for b in report["binds"]):
            report["message"] = {"to": args.to, "sent": False, "error": "not sent: no bind came up"}
            out.line("message: not sent: no bind came up")
            ok = False
        else:
            carrier = next(x for x in build_carriers(config, SystemClock()) if x.name == c.name)
            report["message"] = message = await _test_send(carrier, args, out)
            ok = ok and message["accepted"] and message["receipt"] is not None
    report["ok"] = ok
    out.done(report)
    return 0 if ok else 1


class _Report:
    """Lines for people as they happen, or one JSON document at the end."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def line(self, text: str) -> None:
        if not self.as_json:
            print(text, flush=True)

    def done(self, report: dict[str, Any]) -> None:
        if self.as_json:
            print(json.dumps(report))


async def _test_binds(c: Any, limit: float, out: _Report) -> list[dict[str, Any]]:
    """Bind every session of SMPP carrier `c` at once (not through its reconnectors, so each bind's outcome
    is seen), report each, then unbind them all."""
    from switchboard.sms.smpp.pdu import CommandStatus, status_name
    from switchboard.sms.smpp.session import BindFailed, ConnectionLost, Session, SmppError

    class NotOurs:
        """Whatever the SMSC sends to these test binds (receipts queued for the gateway) is answered
        ESME_RX_T_APPN, so that it is sent again later rather than lost."""

        async def handle_deliver_sm(self, pdu: Any) -> int:
            return int(CommandStatus.ESME_RX_T_APPN)

        async def handle_data_sm(self, pdu: Any) -> int:
            return int(CommandStatus.ESME_RX_T_APPN)

    sessions = [
        Session(
            host=c.host,
            port=c.port,
            system_id=c.system_id,
            password=c.password,
            system_type=c.system_type,
            handler=NotOurs(),
            window=c.window,
            response_timeout=limit,
        )
        for _ in range(c.binds)
    ]
    loop = asyncio.get_running_loop()

    async def bind(number: int, session: Session) -> dict[str, Any]:
        started = loop.time()
        error: str | None = None
        try:
            async with asyncio.timeout(limit):
                await session.connect()
        except TimeoutError:
            error = f"no answer within {limit:g} s"
        except BindFailed as e:
            error = f"bind refused: {status_name(e.status)}"
            if e.permanent:
                error += " (check system_id, password and system_type)"
        except ConnectionLost as e:
            cause = e.__cause__
            if isinstance(cause, TimeoutError):
                error = f"connection error: no answer from {c.host}:{c.port} within {limit:g} s"
            elif isinstance(cause, OSError) and cause.strerror:
                error = f"connection error: {c.host}:{c.port}: {cause.strerror}"
            else:
                error = f"connection error: {e}"
        except SmppError as e:
            error = str(e)
        seconds = round(loop.time() - started, 3)
        out.line(
            f"  bind {number}: " + (f"bound in {seconds:.3f} s" if error is None else f"{error} ({seconds:.3f} s)")
        )
        return {"bind": number, "bound": error is None, "seconds": seconds, "error": error}

    try:
        results = list(await asyncio.gather(*(bind(i, s) for i, s in enumerate(sessions, start=1))))
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    if any(r["bound"] for r in results):
        out.line("  unbound")
    return results


async def _test_send(carrier: Any, args: argparse.Namespace, out: _Report) -> dict[str, Any]:
    """Send one message through `carrier` (started for this alone) and wait for its receipt."""
    from switchboard.domain.encoding import encoding_for
    from switchboard.sms.carrier import OutboundSms
    from switchboard.store.records import Receipt

    e164: str = args.to
    timeout: float = args.timeout
    message: dict[str, Any] = {"to": e164, "sent": True, "accepted": False, "receipt": None}
    refs: set[str] = set()
    receipts: dict[str, Receipt] = {}
    arrived = asyncio.Event()

    async def sink(batch: list[Receipt]) -> None:
        ours = [r for r in batch if r.carrier_ref in refs]
        for r in ours:
            receipts[r.carrier_ref] = r
        if ours:
            arrived.set()
        if len(ours) < len(batch):  # someone else's (the gateway's, queued for this system_id): not taken
            raise _NotOurReceipt(f"{len(batch) - len(ours)} receipts for other messages, left for the gateway")

    logging.getLogger("switchboard.sms.smpp").addFilter(_QuietNotOurs())  # the connector's logger
    loop = asyncio.get_running_loop()
    what = "through the simulator" if carrier.simulated else "a REAL SMS"
    out.line(f"sending to {e164} ({what}) from {args.sender!r}: {args.message!r}")
    await carrier.start(sink)
    try:
        started = loop.time()
        try:
            async with asyncio.timeout(timeout):
                while not carrier.up:  # noqa: ASYNC110 (`up` has no event to wait on)
                    await asyncio.sleep(0.02)
                sms = OutboundSms(0, e164, args.sender, args.message, encoding_for(args.message).value)
                (result,) = await carrier.submit([sms])
        except TimeoutError:
            message["error"] = f"no answer within {timeout:g} s (the message may have been accepted)"
            out.line(f"  {message['error']}")
            return message
        message["seconds"] = round(loop.time() - started, 3)
        if not result.accepted:
            message |= {"error": result.error, "permanent": result.permanent}
            kind = "permanent: sending again will not help" if result.permanent else "transient: may be retried"
            out.line(f"  not accepted: {result.error} ({kind})")
            return message
        parts = list(result.part_refs) or [result.carrier_ref]
        refs.update(parts)
        message |= {"accepted": True, "message_id": result.carrier_ref, "part_ids": list(result.part_refs)}
        more = f" ({len(parts)} parts)" if len(parts) > 1 else ""
        out.line(f"  accepted: message id {result.carrier_ref}{more} in {message['seconds']:.3f} s")
        started = loop.time()
        try:
            async with asyncio.timeout(timeout):
                while len(receipts) < len(parts):
                    await arrived.wait()
                    arrived.clear()
        except TimeoutError:
            out.line(f"  no receipt within {timeout:g} s")
            return message
        got = [receipts[ref] for ref in parts]
        worst = next((r for r in got if r.status.value != "Delivered"), got[0])
        message["receipt"] = {
            "status": worst.status.value,
            "error": worst.error,
            "seconds": round(loop.time() - started, 3),
        }
        detail = f" ({worst.error})" if worst.error else ""
        out.line(f"  receipt: {worst.status.value}{detail} after {message['receipt']['seconds']:.3f} s")
        return message
    finally:
        await carrier.stop()


class _NotOurReceipt(Exception):
    pass


class _QuietNotOurs(logging.Filter):
    """Drops the carrier's traceback for receipts `carriers test` leaves to the gateway on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[0] is _NotOurReceipt)


def _carriers_list(args: argparse.Namespace, configured: list[Any], config: Config) -> int:
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


# clients over HTTP


def _client(args: argparse.Namespace) -> Any:
    import httpx

    if not args.api_key:
        raise CliError("an API key is needed: --api-key or SWITCHBOARD_API_KEY")
    return httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {args.api_key}"}, timeout=30)


def _print_response(response: Any) -> int:
    try:
        print(json.dumps(response.json(), indent=2, ensure_ascii=False))
    except ValueError:
        print(response.text)
    return 0 if response.status_code in (200, 201, 204) else 1


def _send(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "Destination": [{"MobileNo": n} for n in args.to],
        "Message": args.message,
        "Sender": args.sender,
    }
    for key, value in (
        ("ReferenceID", args.reference),
        ("CallBack", args.callback),
        ("ScheduleAt", args.schedule_at),
        ("ValidityPeriod", args.validity),
    ):
        if value is not None:
            body[key] = value
    return _over_http(args, lambda c: c.post("/api/SMS/Send", json=body))


def _status(args: argparse.Namespace) -> int:
    final = {"Delivered", "Undelivered", "Expired", "Rejected", "Failed", "Cancelled"}
    return _poll(args, "/api/SMS/GetStatus", "Destinations", final)


def _poll(args: argparse.Namespace, path: str, items: str, final: set[str]) -> int:
    """GET `path` for args.id until every entry of `items` has a final status or `--wait` runs out."""
    import time

    import httpx

    deadline = time.monotonic() + (args.wait or 0)
    try:
        with _client(args) as client:
            while True:
                response = client.get(path, params={"ID": args.id})
                done = response.status_code != 200 or all(d["Status"] in final for d in response.json().get(items, []))
                if done or time.monotonic() >= deadline:
                    return _print_response(response)
                time.sleep(0.5)
    except httpx.HTTPError as e:
        raise CliError(f"cannot reach {args.url}: {e}") from None


def _over_http(args: argparse.Namespace, call: Callable[[Any], Any]) -> int:
    import httpx

    try:
        with _client(args) as client:
            return _print_response(call(client))
    except httpx.HTTPError as e:
        raise CliError(f"cannot reach {args.url}: {e}") from None


def _account(args: argparse.Namespace) -> int:
    if args.action == "show":
        return _over_http(args, lambda c: c.get("/api/Account"))
    if args.action == "rotate-secret":
        return _over_http(args, lambda c: c.post("/api/Account/RotateSecret"))
    body = {
        key: value
        for key, value in (("SmsCallbackUrl", args.sms_callback_url), ("VoiceCallbackUrl", args.voice_callback_url))
        if value is not None
    }
    if not body:
        raise CliError("nothing to set: give --sms-callback-url and/or --voice-callback-url")
    return _over_http(args, lambda c: c.put("/api/Account", json=body))


def _callbacks_client(args: argparse.Namespace) -> int:
    if args.action == "list":
        params = {"Limit": args.limit, **({"Status": args.status} if args.status else {})}
        if args.before:
            params["Before"] = args.before
        return _over_http(args, lambda c: c.get("/api/Callbacks", params=params))
    if args.action == "show":
        return _over_http(args, lambda c: c.get(f"/api/Callbacks/{args.id}"))
    return _over_http(args, lambda c: c.post(f"/api/Callbacks/{args.id}/Replay"))


def _call(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"Destination": [{"MobileNo": n} for n in args.to], "Sender": args.sender}
    for key, value in (
        ("Message", args.message),
        ("Locale", args.locale),
        ("CampaignID", args.campaign),
        ("ReferenceID", args.reference),
        ("CallBack", args.callback),
        ("RingTimeout", args.ring_timeout),
    ):
        if value is not None:
            body[key] = value
    return _over_http(args, lambda c: c.post("/api/Voice/Call", json=body))


def _calls(args: argparse.Namespace) -> int:
    if args.action == "cancel":
        params = {"ID": args.id, **({"MobileNo": args.to} if args.to else {})}
        return _over_http(args, lambda c: c.post("/api/Voice/Cancel", params=params))
    return _poll(args, "/api/Voice/GetStatus", "Calls", {"Answered", "Busy", "NoAnswer", "Failed"})


def _campaigns(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _over_http(args, lambda c: c.get("/api/Campaigns"))
    if args.action == "show":
        return _over_http(args, lambda c: c.get(f"/api/Campaigns/{args.id}"))
    if args.action == "delete":
        return _over_http(args, lambda c: c.delete(f"/api/Campaigns/{args.id}"))
    if args.wav is not None:
        try:
            data = Path(args.wav).read_bytes()
        except OSError as e:
            raise CliError(f"cannot read {args.wav}: {e.strerror}") from None
        params = {"Name": args.name or Path(args.wav).stem}
        headers = {"Content-Type": "audio/wav"}
        return _over_http(args, lambda c: c.post("/api/Campaigns", params=params, content=data, headers=headers))
    if not args.locale:
        raise CliError("--text needs --locale")
    body = {"Name": args.name or "campaign", "Text": args.text, "Locale": args.locale}
    return _over_http(args, lambda c: c.post("/api/Campaigns", json=body))


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": _serve,
    "api": _serve,
    "worker": _serve,
    "accounts": _accounts,
    "keys": _keys,
    "send": _send,
    "status": _status,
    "call": _call,
    "calls": _calls,
    "campaigns": _campaigns,
    "db": _db,
    "callbacks": _callbacks,
    "account": _account,
    "carriers": _carriers,
}


if __name__ == "__main__":
    sys.exit(main())
