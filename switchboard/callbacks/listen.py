"""`switchboard callbacks listen`: a local receiver for trying the gateway out. It verifies each callback's
Standard Webhooks signature, prints it, and answers 200 (401 for a bad signature). `fail_first` answers
503 to the first deliveries, to watch the gateway retry."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO

from switchboard.callbacks.signing import verify
from switchboard.errors import InvalidSignature

MAX_BODY_BYTES = 1024 * 1024


class Listener:
    def __init__(self, *, host: str, port: int, secret: str | None, fail_first: int = 0, out: TextIO = sys.stdout):
        if secret is not None:  # a malformed secret raises ValueError now, not on the first callback
            with contextlib.suppress(InvalidSignature):
                verify(secret=secret, headers={}, body=b"", now=0)
        self._secret = secret
        self._out = out
        self._lock = threading.Lock()
        self._failures_left = fail_first
        self.server = ThreadingHTTPServer((host, port), self._handler())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if not 0 <= length <= MAX_BODY_BYTES:
                    return self._answer(413)
                body = self.rfile.read(length)
                status = listener.receive({k.lower(): v for k, v in self.headers.items()}, body)
                self._answer(status)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Silenced: `receive` prints what matters."""

        return Handler

    def receive(self, headers: dict[str, str], body: bytes) -> int:
        verdict = "unsigned check skipped (no --secret)"
        status = 200
        if self._secret is not None:
            try:
                verify(secret=self._secret, headers=headers, body=body, now=int(time.time()))
                verdict = "signature ok"
            except InvalidSignature as e:
                verdict, status = f"REFUSED: {e}", 401
        with self._lock:
            if status == 200 and self._failures_left > 0:
                self._failures_left -= 1
                verdict, status = f"{verdict}; answering 503 on purpose ({self._failures_left} more)", 503
            try:
                shown = json.dumps(json.loads(body), ensure_ascii=False)
            except ValueError:
                shown = body[:500].decode("utf-8", "replace")
            print(f"{time.strftime('%H:%M:%S')} {headers.get('webhook-id', '-')} [{verdict}] {shown}", file=self._out)
            self._out.flush()
        return status

    def serve_forever(self) -> None:
        host, port = self.server.server_address[:2]
        print(f"listening for callbacks on http://{host!s}:{port}/", file=self._out, flush=True)
        try:
            self.server.serve_forever()
        finally:
            self.server.server_close()
