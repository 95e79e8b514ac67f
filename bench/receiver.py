"""A callback receiver for the benchmarks: a bare ASGI app (run on uvicorn with httptools and uvloop) that
reads the body and answers 200 with an empty body, so that the receiver is not what is measured.

`BENCH_FAIL_EVERY=N` (environment) answers 500 to every event whose callback id is a multiple of N, read
from the `webhook-id` header ("msg_<id>"): the same events fail on every attempt, so which ones fail does
not depend on the order in which they arrive.

`BENCH_RECORD=1` (the inbound benchmark) also keeps, for each callback answered 200, its arrival time
(time.time()) and its body (decoded later, not on the request's path); `GET /count` answers
`{"count": N, "last": T}` and `GET /arrivals` `[[T, body], ...]` in arrival order. Nothing is verified
(signatures are the end-to-end tests' business): the receiver stays cheap.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

_FAIL_EVERY = int(os.environ.get("BENCH_FAIL_EVERY", "0"))
_RECORD = os.environ.get("BENCH_RECORD", "") not in ("", "0")
_HEADERS = [(b"content-length", b"0")]
_OK = {"type": "http.response.start", "status": 200, "headers": _HEADERS}
_ERROR = {"type": "http.response.start", "status": 500, "headers": _HEADERS}
_EMPTY = {"type": "http.response.body", "body": b""}
_arrivals: list[tuple[float, bytes]] = []


def _fails(scope: dict[str, Any]) -> bool:
    if not _FAIL_EVERY:
        return False
    for name, value in scope["headers"]:
        if name == b"webhook-id":
            return int(value.removeprefix(b"msg_")) % _FAIL_EVERY == 0
    return False


async def _answer_json(send: Any, value: object) -> None:
    body = json.dumps(value).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if _RECORD and scope["method"] == "GET":
        if scope["path"] == "/count":
            await _answer_json(send, {"count": len(_arrivals), "last": _arrivals[-1][0] if _arrivals else None})
        else:
            await _answer_json(send, [[t, body.decode()] for t, body in _arrivals])
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    if _fails(scope):
        await send(_ERROR)
    else:
        if _RECORD:
            _arrivals.append((time.time(), b"".join(chunks)))
        await send(_OK)
    await send(_EMPTY)
