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
