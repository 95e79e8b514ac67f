"""What the command modules share: the error for a user's mistake, loading the configuration, running a
coroutine."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable
from typing import Any

from switchboard.config import Config, load

LISTEN_PORT = 8081
"""Where `callbacks listen` listens by default, and where the demo account's callbacks go under `make run`."""


def load_config(args: argparse.Namespace, **extra: Any) -> Config:
    """The configuration: the file given with --config, the environment, then the flags in `args` (those a
    command does not take are absent) and `extra` ({"server.port": 9000}; None values are ignored)."""
    overrides = {
        "server.data_dir": getattr(args, "data_dir", None),
        "database.url": getattr(args, "database_url", None),
        "callbacks.allow_private_networks": getattr(args, "allow_private_callbacks", None),
        "callbacks.allow_loopback": getattr(args, "allow_loopback_callbacks", None),
        **extra,
    }
    return load(args.config, overrides=overrides)


def run(coro: Awaitable[int]) -> int:
    try:
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
