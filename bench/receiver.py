"""A callback receiver for the callbacks benchmark: a bare ASGI app (run on uvicorn with httptools and uvloop)
that reads the body and answers 200 with an empty body, so that the receiver is not what is measured.

`BENCH_FAIL_EVERY=N` (environment) answers 500 to every event whose callback id is a multiple of N, read
from the `webhook-id` header ("msg_<id>"): the same events fail on every attempt, so which ones fail does
not depend on the order in which they arrive.
"""

from __future__ import annotations

import os
from typing import Any

_FAIL_EVERY = int(os.environ.get("BENCH_FAIL_EVERY", "0"))
_HEADERS = [(b"content-length", b"0")]
_OK = {"type": "http.response.start", "status": 200, "headers": _HEADERS}
_ERROR = {"type": "http.response.start", "status": 500, "headers": _HEADERS}
_EMPTY = {"type": "http.response.body", "body": b""}


def _fails(scope: dict[str, Any]) -> bool:
    if not _FAIL_EVERY:
        return False
    for name, value in scope["headers"]:
        if name == b"webhook-id":
            return int(value.removeprefix(b"msg_")) % _FAIL_EVERY == 0
    return False


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    await send(_ERROR if _fails(scope) else _OK)
    await send(_EMPTY)
