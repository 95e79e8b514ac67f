"""The callback transport against real HTTP servers on loopback: what counts as an answer, redirects not
followed, the timeout, and connections per host (a post queued behind a slow receiver's others is not
timed out for the wait)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from switchboard.callbacks.transport import HttpTransport, Response
from switchboard.errors import DeliveryFailed, NotSent

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.concurrent = 0
        self.most_concurrent = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.concurrent += 1
        self.most_concurrent = max(self.most_concurrent, self.concurrent)
        try:
            return await self.handler(request)
        finally:
            self.concurrent -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    servers: list[Server] = []

    async def start(handler: Handler) -> Server:
        server = Server(handler)
        await server.start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        await s.stop()


@pytest.fixture
async def transport() -> AsyncIterator[HttpTransport]:
    t = HttpTransport(allow_private=True, timeout=1.0, connections_per_host=2)
    yield t
    await t.close()


async def test_the_status_and_retry_after_come_back_and_redirects_are_not_followed(
    serve: Callable[[Handler], Awaitable[Server]], transport: HttpTransport
) -> None:
    followed = []

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/elsewhere":
            followed.append(request.path)
            return web.Response(status=200)
        if request.path == "/busy":
            return web.Response(status=503, headers={"Retry-After": "120"})
        return web.Response(status=302, headers={"Location": "/elsewhere"})

    server = await serve(handler)
    assert await transport.post(server.url, b"{}", {}) == Response(302, None)
    assert await transport.post(server.url.replace("/hook", "/busy"), b"{}", {}) == Response(503, "120")
    assert followed == []


async def test_the_body_and_headers_arrive_as_given(
    serve: Callable[[Handler], Awaitable[Server]], transport: HttpTransport
) -> None:
    seen: list[tuple[bytes, str, str, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(
            (await request.read(), request.headers["webhook-id"], request.headers["Content-Type"], request.host)
        )
        return web.Response(status=204)

    server = await serve(handler)
    body = b'{"ID":"1","Status":"Delivered"}'
    headers = {"webhook-id": "msg_1", "Content-Type": "application/json"}
    assert (await transport.post(server.url, body, headers)).status == 204
    assert seen == [(body, "msg_1", "application/json", server.url.split("/")[2])]


async def test_a_receiver_that_does_not_answer_in_time_fails_the_attempt(
    serve: Callable[[Handler], Awaitable[Server]], transport: HttpTransport
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(1.5)
        return web.Response(status=200)

    server = await serve(handler)
    with pytest.raises(DeliveryFailed, match="no answer within 1 s") as failed:
        await transport.post(server.url, b"{}", {})
    assert not failed.value.permanent


async def test_a_closed_port_fails_the_attempt_and_may_be_retried(transport: HttpTransport) -> None:
    from switchboard.testing import free_port

    with pytest.raises(DeliveryFailed, match="cannot connect") as failed:
        await transport.post(f"http://127.0.0.1:{free_port()}/", b"{}", {})
    assert not failed.value.permanent


async def test_posts_queued_for_a_host_are_timed_only_once_they_are_sent(
    serve: Callable[[Handler], Awaitable[Server]], transport: HttpTransport
) -> None:
    """Two connections per host and a receiver taking 0.4 s: the sixth post waits 1.2 s, more than the
    1 s timeout, before it is sent. It must not be failed for that wait."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.4)
        return web.Response(status=200)

    server = await serve(handler)
    answers = await asyncio.gather(*(transport.post(server.url, b"{}", {}) for _ in range(6)))
    assert [a.status for a in answers] == [200] * 6
    assert server.most_concurrent == 2


async def test_a_post_that_waits_too_long_for_a_connection_is_not_sent(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    """One connection, a receiver taking 0.5 s, at most 0.3 s of waiting: the first is sent, the others are
    handed back as NotSent (not attempts), never sent late."""
    calls = []

    async def handler(request: web.Request) -> web.StreamResponse:
        calls.append(request.path)
        await asyncio.sleep(0.5)
        return web.Response(status=200)

    server = await serve(handler)
    t = HttpTransport(allow_private=True, timeout=2.0, max_wait=0.3, connections_per_host=1)
    try:
        answers = await asyncio.gather(*(t.post(server.url, b"{}", {}) for _ in range(3)), return_exceptions=True)
    finally:
        await t.close()
    assert isinstance(answers[0], Response) and answers[0].status == 200
    assert all(isinstance(a, NotSent) for a in answers[1:])
    assert len(calls) == 1
