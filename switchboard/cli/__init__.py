"""The `switchboard` command: the parser and `main`; each command's work is in a module of its own.

- `serve`: the server commands (`serve`, `api`, `worker`).
- `admin`: administration on the configured database directly (`accounts`, `keys`, `db`).
- `numbers`: two-way messaging for the operator, on the database too (`numbers`, `inbound`).
- `carriers`: reads the configuration and talks to the carriers themselves (`carriers list|test`).
- `client`: talks to a running server over HTTP with an API key, as any application would (`send`,
  `status`, `call`, `calls`, `campaigns`, `account`, `callbacks`), and `callbacks listen`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from switchboard import __version__
from switchboard.cli import admin, client, numbers, serve
from switchboard.cli.carriers import carriers
from switchboard.cli.common import LISTEN_PORT
from switchboard.config import ClientSettings, client_settings
from switchboard.errors import CliError, ConfigError
from switchboard.store.records import CallbackState

__all__ = ["CliError", "main", "parser"]


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--data-dir", metavar="DIR", help="where the embedded database lives (default ./data)")
    p.add_argument("--database-url", metavar="URL", help="sqlite:///path or postgresql://user@host/db")


def _client_args(p: argparse.ArgumentParser, env: ClientSettings) -> None:
    p.add_argument("--url", default=env.url, help="server address")
    p.add_argument("--api-key", default=env.api_key, help="or SWITCHBOARD_API_KEY")


def _callback_reach_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-loopback-callbacks",
        action="store_true",
        default=None,
        help="let callback URLs point at loopback (127.0.0.0/8, ::1, localhost), over http too: local development;"
        " private networks stay refused",
    )
    p.add_argument(
        "--allow-private-callbacks",
        action="store_true",
        default=None,
        help="let callback URLs point at any address, private networks and loopback included, over http too",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="switchboard", description="Self-hosted SMS and voice gateway.")
    top.add_argument("--version", action="version", version=f"switchboard {__version__}")
    env = client_settings()  # defaults for the client commands' flags
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
        _callback_reach_args(p)
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
    _callback_reach_args(p)
    _config_args(p)
    p = accounts.add_parser("list", help="list accounts")
    p.add_argument("--json", action="store_true")
    _config_args(p)
    p = accounts.add_parser(
        "limits",
        help="show or set an account's limits: requests a second, destinations a day, countries allowed",
        description="Without options, show the account's limits and today's count. An option set to 'default' "
        "(or, for --countries, 'all') goes back to the default. Every api process applies a change within 10 s.",
    )
    p.add_argument("account")
    p.add_argument("--rate", metavar="N", help="requests a second, Send and Call together (0: no limit)")
    p.add_argument("--burst", metavar="N", help="requests that may come at once before the rate applies")
    p.add_argument("--daily", metavar="N", help="SMS destinations a UTC day")
    p.add_argument("--countries", metavar="CC,CC", help="ISO 3166 alpha-2 codes a destination may be in")
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
    _client_args(p, env)

    p = sub.add_parser("status", help="the status of a send")
    p.add_argument("id")
    p.add_argument("--wait", type=float, metavar="SECONDS", help="poll until every destination is final")
    _client_args(p, env)

    p = sub.add_parser("cancel", help="cancel a scheduled send's destinations not yet taken by a worker")
    p.add_argument("id")
    p.add_argument("--to", metavar="NUMBER", help="only the destination to this number")
    _client_args(p, env)

    optouts = sub.add_parser("optouts", help="your opt-out list: numbers no Send reaches").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = optouts.add_parser("list", help="the numbers on the list, in number order")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--after", metavar="NUMBER", help="the page after this number (the listing's Next)")
    _client_args(p, env)
    for action, text in (("add", "put a number on the list"), ("remove", "take a number off the list")):
        p = optouts.add_parser(action, help=text)
        p.add_argument("number")
        _client_args(p, env)

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
    _client_args(p, env)

    calls = sub.add_parser("calls", help="the calls of a Call request: status, cancel").add_subparsers(
        dest="action", required=True
    )
    p = calls.add_parser("status", help="each call's record")
    p.add_argument("id")
    p.add_argument("--wait", type=float, metavar="SECONDS", help="poll until every call has ended")
    _client_args(p, env)
    p = calls.add_parser("cancel", help="cancel calls not yet ended (they end as Failed / Cancel)")
    p.add_argument("id")
    p.add_argument("--to", metavar="NUMBER", help="only the call to this number")
    _client_args(p, env)

    campaigns = sub.add_parser("campaigns", help="recordings to play in calls").add_subparsers(
        dest="action", required=True
    )
    p = campaigns.add_parser("create", help="from a WAV file, or from text spoken once in a locale")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", metavar="FILE", help="a WAV file (any common rate and width)")
    source.add_argument("--text", help="text to speak (with --locale)")
    p.add_argument("--locale", "-l")
    p.add_argument("--name")
    _client_args(p, env)
    for action, text in (("list", "your campaigns"), ("show", "one campaign"), ("delete", "delete a campaign")):
        p = campaigns.add_parser(action, help=text)
        if action != "list":
            p.add_argument("id")
        _client_args(p, env)

    account = sub.add_parser("account", help="your account's callback URLs and webhook secret").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = account.add_parser("show", help="callback URLs, whether they are disabled, and the webhook secret")
    _client_args(p, env)
    p = account.add_parser("set", help='set or clear ("") the callback URLs')
    p.add_argument("--sms-callback-url")
    p.add_argument("--voice-callback-url")
    p.add_argument("--inbound-callback-url")
    _client_args(p, env)
    p = account.add_parser("rotate-secret", help="a new webhook secret; the old one keeps signing for 24 h")
    _client_args(p, env)

    callbacks = sub.add_parser("callbacks", help="callbacks sent, replay, cancel, and a local receiver").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = callbacks.add_parser("list", help="your callbacks, newest first")
    p.add_argument("--status", choices=[s.value for s in CallbackState])
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--before", metavar="ID", help="the page after this id (the listing's Next)")
    _client_args(p, env)
    p = callbacks.add_parser("show", help="one callback with every attempt")
    p.add_argument("id")
    _client_args(p, env)
    p = callbacks.add_parser("replay", help="send a callback again (a failed one, after fixing the receiver)")
    p.add_argument("id")
    _client_args(p, env)
    p = callbacks.add_parser("cancel", help="stop a pending callback (a URL typed by mistake); replayable later")
    p.add_argument("id")
    _client_args(p, env)
    p = callbacks.add_parser("listen", help="a local receiver that verifies and prints callbacks")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=LISTEN_PORT)
    p.add_argument(
        "--secret",
        default=env.webhook_secret,
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

    numbers.add_parsers(sub, _config_args)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="action", required=True)
    p = db.add_parser("upgrade", help="apply schema migrations")
    _config_args(p)
    return top


SERVER_COMMANDS = frozenset({"serve", "api", "worker"})


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _configure_logging(args.command)
    handler = _HANDLERS[args.command]
    try:
        return handler(args)
    except (CliError, ConfigError) as e:
        print(f"switchboard: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _configure_logging(command: str) -> None:
    """The servers log what they do (INFO); every other command prints what the user asked for and logs
    only warnings and errors. At INFO, libraries log their routine: httpx one `HTTP Request: ...` line
    per request of a client command, the SMPP sessions `carriers test` makes each bind."""
    level = logging.INFO if command in SERVER_COMMANDS else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": serve.serve,
    "api": serve.serve,
    "worker": serve.serve,
    "accounts": admin.accounts,
    "keys": admin.keys,
    "db": admin.db,
    "numbers": numbers.numbers,
    "inbound": numbers.inbound,
    "send": client.send,
    "status": client.status,
    "cancel": client.cancel,
    "optouts": client.optouts,
    "call": client.call,
    "calls": client.calls,
    "campaigns": client.campaigns,
    "callbacks": client.callbacks,
    "account": client.account,
    "carriers": carriers,
}
