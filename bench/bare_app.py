"""The ceiling: a bare ASGI endpoint on the same server (uvicorn, httptools, uvloop) that reads the body,
decodes it with msgspec and answers what Send answers, with no auth, validation or storage."""

from __future__ import annotations

from typing import Any

import msgspec

_decode = msgspec.json.decode
_ANSWER = b'{"ID":"1","Status":"Received"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_ANSWER)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    _decode(body)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _ANSWER})
