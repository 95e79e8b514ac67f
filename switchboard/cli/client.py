"""Client commands: they talk to a running server over HTTP with an API key, as any application would
(`send`, `status`, `call`, `calls`, `campaigns`, `account`, `callbacks list|show|replay`), and
`callbacks listen`, a local receiver that verifies and prints callbacks."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from switchboard.errors import CliError

SMS_FINAL = frozenset({"Delivered", "Undelivered", "Expired", "Rejected", "Failed", "Cancelled"})
CALL_FINAL = frozenset({"Answered", "Busy", "NoAnswer", "Failed"})


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


def _over_http(args: argparse.Namespace, call: Callable[[Any], Any]) -> int:
    import httpx

    try:
        with _client(args) as client:
            return _print_response(call(client))
    except httpx.HTTPError as e:
        raise CliError(f"cannot reach {args.url}: {e}") from None


def _poll(args: argparse.Namespace, path: str, items: str, final: frozenset[str]) -> int:
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


def send(args: argparse.Namespace) -> int:
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


def status(args: argparse.Namespace) -> int:
    return _poll(args, "/api/SMS/GetStatus", "Destinations", SMS_FINAL)


def cancel(args: argparse.Namespace) -> int:
    params = {"ID": args.id, **({"MobileNo": args.to} if args.to else {})}
    return _over_http(args, lambda c: c.post("/api/SMS/Cancel", params=params))


def optouts(args: argparse.Namespace) -> int:
    if args.action == "add":
        return _over_http(args, lambda c: c.post("/api/OptOuts", json={"MobileNo": args.number}))
    if args.action == "remove":
        return _over_http(args, lambda c: c.delete(f"/api/OptOuts/{quote(args.number, safe='')}"))
    params = {"Limit": args.limit, **({"After": args.after} if args.after else {})}
    return _over_http(args, lambda c: c.get("/api/OptOuts", params=params))


def call(args: argparse.Namespace) -> int:
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


def calls(args: argparse.Namespace) -> int:
    if args.action == "cancel":
        params = {"ID": args.id, **({"MobileNo": args.to} if args.to else {})}
        return _over_http(args, lambda c: c.post("/api/Voice/Cancel", params=params))
    return _poll(args, "/api/Voice/GetStatus", "Calls", CALL_FINAL)


def campaigns(args: argparse.Namespace) -> int:
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


def account(args: argparse.Namespace) -> int:
    if args.action == "show":
        return _over_http(args, lambda c: c.get("/api/Account"))
    if args.action == "rotate-secret":
        return _over_http(args, lambda c: c.post("/api/Account/RotateSecret"))
    body = {
        key: value
        for key, value in (
            ("SmsCallbackUrl", args.sms_callback_url),
            ("VoiceCallbackUrl", args.voice_callback_url),
            ("InboundCallbackUrl", args.inbound_callback_url),
        )
        if value is not None
    }
    if not body:
        raise CliError("nothing to set: give --sms-callback-url, --voice-callback-url and/or --inbound-callback-url")
    return _over_http(args, lambda c: c.put("/api/Account", json=body))


def callbacks(args: argparse.Namespace) -> int:
    if args.action == "listen":
        return _listen(args)
    if args.action == "list":
        params = {"Limit": args.limit, **({"Status": args.status} if args.status else {})}
        if args.before:
            params["Before"] = args.before
        return _over_http(args, lambda c: c.get("/api/Callbacks", params=params))
    if args.action == "show":
        return _over_http(args, lambda c: c.get(f"/api/Callbacks/{args.id}"))
    if args.action == "cancel":
        return _over_http(args, lambda c: c.post(f"/api/Callbacks/{args.id}/Cancel"))
    return _over_http(args, lambda c: c.post(f"/api/Callbacks/{args.id}/Replay"))


def _listen(args: argparse.Namespace) -> int:
    from switchboard.callbacks.listen import Listener

    try:
        listener = Listener(host=args.host, port=args.port, secret=args.secret, fail_first=args.fail_first)
    except ValueError as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {e.strerror}") from None
    listener.serve_forever()
    return 0
