"""Administration on the configured database, as the server sees it: `accounts`, `keys`, `db upgrade`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any

from switchboard.cli.common import load_config, run
from switchboard.errors import CliError


def _with_gateway(args: argparse.Namespace, action: Callable[[Any], Awaitable[int]]) -> int:
    from switchboard.app import Gateway

    config = load_config(args)

    async def main() -> int:
        gateway = Gateway(config, role="api")
        await gateway.start()
        try:
            return await action(gateway)
        finally:
            await gateway.stop()

    return run(main())


def accounts(args: argparse.Namespace) -> int:
    from switchboard.errors import AccountError, DuplicateName

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
        limits = {x.account_id: x for x in await g.store.list_limits()}
        rows = [
            {"account": a.name, "sms_callback_url": a.sms_callback_url, "voice_callback_url": a.voice_callback_url}
            | _limits_row(g, a.id, limits.get(a.id))
            for a in accounts
        ]
        if args.json:
            print(json.dumps(rows))
        else:
            for r in rows:
                print(f"{r['account']}  {_limits_text(r)}")
        return 0

    async def limits(g: Any) -> int:
        return await account_limits(g, args)

    handlers = {"create": create, "list": listing, "limits": limits}
    return _with_gateway(args, handlers[args.action])


def _limits_row(g: Any, account_id: int, own: Any) -> dict[str, Any]:
    from switchboard.store.records import AccountLimits

    e = g.limits.effective(own or AccountLimits(account_id))
    return {
        "requests_per_second": e.rate,
        "burst": e.burst,
        "destinations_per_day": e.daily,
        "countries": None if e.countries is None else sorted(e.countries),
    }


def _limits_text(r: dict[str, Any]) -> str:
    rate = "no rate limit" if r["requests_per_second"] <= 0 else f"{r['requests_per_second']:g}/s burst {r['burst']:g}"
    daily = "no daily cap" if r["destinations_per_day"] is None else f"{r['destinations_per_day']} destinations/day"
    countries = "all countries" if r["countries"] is None else ",".join(r["countries"])
    return f"{rate}, {daily}, {countries}"


def _number(text: str | None, kind: type[int] | type[float], what: str) -> Any:
    """An option's value: None when not given, "default" to clear, else a number of at least 0."""
    if text is None:
        return None
    if text.strip().lower() == "default":
        return "default"
    try:
        value = kind(text)
    except ValueError:
        raise CliError(f"{what} must be a number or 'default', not {text!r}") from None
    if not value >= 0:
        raise CliError(f"{what} must be 0 or more")
    return value


async def account_limits(g: Any, args: argparse.Namespace) -> int:
    """`accounts limits ACCOUNT [--rate N] [--burst N] [--daily N] [--countries CC,CC]`: show, or set and show."""
    import dataclasses

    from switchboard.errors import AccountError
    from switchboard.limits import parse_countries
    from switchboard.store.records import AccountLimits

    try:
        account = await g.accounts.get(args.account)
        countries = None if args.countries is None else (parse_countries(args.countries) or "default")
    except AccountError as e:
        raise CliError(str(e)) from None
    changes = {
        "requests_per_second": _number(args.rate, float, "--rate"),
        "burst": _number(args.burst, int, "--burst"),
        "destinations_per_day": _number(args.daily, int, "--daily"),
        "countries": countries,
    }
    own = await g.store.get_limits(account.id) or AccountLimits(account.id)
    given = {k: None if v == "default" else v for k, v in changes.items() if v is not None}
    if given:
        own = dataclasses.replace(own, **given)
        await g.store.set_limits(own)
    row = {"account": account.name} | _limits_row(g, account.id, own)
    row["used_today"] = await g.store.daily_used(account.id, day=g.limits.today())
    if args.json:
        print(json.dumps(row))
    else:
        print(f"{account.name}  {_limits_text(row)}; {row['used_today']} destinations counted today (UTC)")
    return 0


def keys(args: argparse.Namespace) -> int:
    from switchboard.errors import AccountError

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


def db(args: argparse.Namespace) -> int:
    from switchboard.store import migrate

    config = load_config(args)
    migrate.upgrade(config.database_url)
    print(f"database is at the newest schema: {config.database_url.split('@')[-1]}")
    return 0
