"""The server commands: `serve` (everything in one process), `api` and `worker` (cluster mode)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from switchboard.cli.common import LISTEN_PORT, load_config, run
from switchboard.config import Config


def serve(args: argparse.Namespace) -> int:
    from switchboard.app import run as run_gateway

    config = load_config(args, **{"server.host": args.host, "server.port": args.port})

    async def main() -> int:
        on_started = None if args.command != "serve" or args.no_demo else _demo_account(config)
        await run_gateway(config, role=args.command, on_started=on_started)
        return 0

    return run(main())


def _demo_account(config: Config) -> Callable[[Any], Awaitable[None]]:
    async def create(gateway: Any) -> None:
        if await gateway.store.list_accounts():
            return
        listener = f"http://127.0.0.1:{LISTEN_PORT}/"
        local = config.callbacks.allow_loopback or config.callbacks.allow_private_networks
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
