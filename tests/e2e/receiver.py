"""A real callback receiver for the end-to-end tests, and the checks that every callback arrived in order."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import msgspec
from standardwebhooks import Webhook


class Receiver:
    """A callback receiver: verifies each signature, records what arrived in order, and answers 503 to the
    first `fail_first` attempts of every webhook-id."""

    def __init__(self, secret: str | None = None, fail_first: int = 1) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.lock = threading.Lock()
        self.attempts: defaultdict[str, int] = defaultdict(int)
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        self.bad_signatures = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/sms"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                self.send_response(receiver.receive({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def receive(self, headers: dict[str, str], body: bytes) -> int:
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
            except Exception:
                with self.lock:
                    self.bad_signatures += 1
                return 401
        msg_id = headers["webhook-id"]
        with self.lock:
            self.attempts[msg_id] += 1
            if self.attempts[msg_id] <= self.fail_first:
                return 503
            self.accepted.append((msg_id, msgspec.json.decode(body)))
        return 200

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


async def send_many(url: str, key: str, requests: int) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> str:
            async with sem:
                body = {
                    "Destination": [f"+1617555{i:04d}", "+15005550001", "12"],
                    "Message": f"m{i}",
                    "Sender": "OM",
                    "CallBack": "Yes",
                }
                r = await client.post("/api/SMS/Send", json=body)
                assert r.status_code == 200, r.text
                return str(r.json()["ID"])

        return list(await asyncio.gather(*(one(i) for i in range(requests))))


def expected_callbacks(ids: list[str], requests: int) -> dict[tuple[str, str], list[str]]:
    """Per (ID, MobileNo): the statuses its callbacks must carry, in Sequence order."""
    expected: dict[tuple[str, str], list[str]] = {}
    for i, ident in enumerate(ids):
        expected[(ident, f"+1617555{i:04d}")] = ["Sent", "Delivered"]
        expected[(ident, "+15005550001")] = ["Sent", "Undelivered"]
        expected[(ident, "12")] = ["Failed"]  # not a valid number: failed at once, with its error log
    return expected


def wait_for(receiver: Receiver, count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with receiver.lock:
            if len({msg_id for msg_id, _ in receiver.accepted}) >= count:
                return
        time.sleep(0.1)


def check_arrivals(receiver: Receiver, expected: dict[tuple[str, str], list[str]]) -> None:
    arrived: defaultdict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for _, body in receiver.accepted:
        arrived[(body["ID"], body["MobileNo"])].append((body["Sequence"], body["Status"]))
    missing = {k: v for k, v in expected.items() if [s for _, s in dict(arrived.get(k, [])).items()] != v}
    assert not missing, f"{len(missing)} destinations did not get all their callbacks, e.g. {list(missing.items())[:3]}"
    # In Sequence order per destination; a callback re-sent after the crash may repeat, never go back.
    out_of_order = {k: v for k, v in arrived.items() if [s for s, _ in v] != sorted(s for s, _ in v)}
    assert not out_of_order, f"out of order: {list(out_of_order.items())[:3]}"
    assert set(arrived) == set(expected)
