"""Two-way messaging for the operator, on the configured database (as `admin`): `numbers assign|list|unassign`
and `inbound list` (an account's inbound messages, or the unrouted inbox: messages to numbers no account has)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from switchboard.cli.admin import _with_gateway
from switchboard.domain.clock import format_time
from switchboard.domain.inbound import keyword_key, number_key
from switchboard.errors import AccountError, CliError
from switchboard.store.inbound import stored_document


def add_parsers(sub: Any, config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """The `numbers` and `inbound` commands, on `sub` (the top parser's subparsers)."""
    numbers = sub.add_parser("numbers", help="assign our numbers (and keywords) to accounts").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = numbers.add_parser("assign", help="give an account a number, or a keyword on a shared number")
    p.add_argument("account")
    p.add_argument("number", help="+16175550100, 0016175550100, 16175550100, or a short code as written")
    p.add_argument("--keyword", help="only messages whose first word is this (any letter case)")
    config_args(p)
    p = numbers.add_parser("list", help="assigned numbers and keywords")
    p.add_argument("--account", help="only this account's")
    p.add_argument("--json", action="store_true")
    config_args(p)
    p = numbers.add_parser("unassign", help="take a number (or one keyword on it) back")
    p.add_argument("number")
    p.add_argument("--keyword")
    config_args(p)

    inbound = sub.add_parser("inbound", help="inbound messages: an account's, or the unrouted inbox").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = inbound.add_parser("list", help="newest first")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--account", help="this account's messages")
    which.add_argument("--unrouted", action="store_true", help="messages to numbers no account has (the inbox)")
    p.add_argument("--to", metavar="NUMBER")
    p.add_argument("--from", dest="from_", metavar="NUMBER")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--before", type=int, metavar="ID", help="the page after this id (the listing's next)")
    p.add_argument("--json", action="store_true")
    config_args(p)


def _keyword(raw: str | None) -> str:
    try:
        return keyword_key(raw or "")
    except ValueError as e:
        raise CliError(str(e)) from None


def _number(raw: str) -> str:
    number = number_key(raw)
    if not number:
        raise CliError(f"not a number: {raw!r}")
    return number


def numbers(args: argparse.Namespace) -> int:
    async def action(g: Any) -> int:
        if args.action == "list":
            account_id = None if args.account is None else (await _account(g, args.account)).id
            rows = [
                {
                    "number": n.number,
                    "keyword": n.keyword,
                    "account": n.account_name,
                    "assigned": format_time(n.created_at),
                }
                for n in await g.store.list_numbers(account_id)
            ]
            if args.json:
                print(json.dumps(rows))
            for r in [] if args.json else rows:
                print(f"{r['number']}  {r['keyword'] or '-'}  {r['account']}")
            return 0
        number, keyword = _number(args.number), _keyword(args.keyword)
        what = f"{number}" + (f" keyword {keyword}" if keyword else "")
        if args.action == "unassign":
            if not await g.store.unassign_number(number, keyword):
                raise CliError(f"{what} is not assigned")
            print(f"unassigned {what}")
            return 0
        account = await _account(g, args.account)
        owner = await g.store.assign_number(number, keyword, account.id, now=g.clock.now_ms())
        if owner != account.id:
            other = await g.store.get_account(owner)
            raise CliError(f"{what} is assigned to {other.name if other else owner}; unassign it first")
        print(f"{what} is {account.name}'s")
        return 0

    return _with_gateway(args, action)


def inbound(args: argparse.Namespace) -> int:
    async def action(g: Any) -> int:
        if not 1 <= args.limit <= 500:
            raise CliError("--limit must be from 1 to 500")
        account_id = None if args.unrouted else (await _account(g, args.account)).id
        messages = await g.store.list_account_inbound(
            account_id,
            limit=args.limit,
            before_id=args.before,
            to_number=None if args.to is None else number_key(args.to),
            from_number=None if args.from_ is None else number_key(args.from_),
        )
        docs = [stored_document(m) | {"Carrier": m.carrier} for m in messages]
        if args.json:
            print(json.dumps({"Messages": docs, "Next": str(messages[-1].id) if len(messages) == args.limit else ""}))
            return 0
        for d in docs:
            keyword = f" [{d['Keyword']}]" if d["Keyword"] else ""
            print(f"{d['ID']}  {d['DateTime']}  {d['MobileNo']} → {d['To']}{keyword}  {d['Message']}")
        return 0

    return _with_gateway(args, action)


async def _account(g: Any, name: str) -> Any:
    try:
        return await g.accounts.get(name)
    except AccountError as e:
        raise CliError(str(e)) from None
