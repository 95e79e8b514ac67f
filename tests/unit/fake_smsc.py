"""A fake SMSC for unit tests: our own codec on the other side of a real TCP connection on loopback, with
knobs for how it answers (tests/unit/test_smpp_session.py, tests/unit/test_smpp_connector.py). The
integration tests use a real one instead (tests/integration/smsc.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from switchboard.errors import PduError
from switchboard.sms.smpp.pdu import (
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CommandStatus,
    DataSm,
    DataSmResp,
    EnquireLink,
    EnquireLinkResp,
    FrameReader,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    decode,
    encode,
)

S = CommandStatus
OK = S.ESME_ROK


class Connection:
    """One client connection as the fake SMSC sees it."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.received: list[Pdu] = []
        self.undecodable: list[bytes] = []
        self.closed = asyncio.Event()
        self.held: list[SubmitSm] = []

    def send(self, item: Pdu | bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(item if isinstance(item, bytes) else encode(item))

    def drop(self) -> None:
        self.writer.close()


class FakeSmsc:
    """An SMSC with knobs: how it answers binds and submits, whether it answers enquire_link and unbind,
    and a log of what it received and how many submits it held unanswered at once."""

    def __init__(self) -> None:
        self.bind_status: int = OK
        self.submit_status: int = OK
        self.submit_delay = 0.0
        self.answer_submits = True
        self.hold_submits = 0
        """Keep submits until this many are held, then answer them newest first (out of order)."""
        self.answer_enquire_link = True
        self.answer_unbind = True
        self.drop_after_bind = False
        self.on_submit: Callable[[Connection, SubmitSm], Awaitable[None]] | None = None
        self.connections: list[Connection] = []
        self.new_connection = asyncio.Event()
        self.outstanding = 0
        self.max_outstanding = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._arrived = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for connection in self.connections:
            connection.drop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def last(self) -> Connection:
        return self.connections[-1]

    def received(self, kind: type[Any]) -> list[Any]:
        return [pdu for c in self.connections for pdu in c.received if isinstance(pdu, kind)]

    async def wait_for(self, kind: type[Any], count: int = 1) -> list[Any]:
        """What the SMSC received of `kind`, once there are `count` of them (within a second)."""
        async with asyncio.timeout(1.0):
            while len(self.received(kind)) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.received(kind)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        connection = Connection(writer)
        self.connections.append(connection)
        self.new_connection.set()
        frames = FrameReader()
        try:
            while data := await reader.read(65536):
                frames.feed(data)
                while (frame := frames.next_frame()) is not None:
                    try:
                        pdu = decode(frame)
                    except PduError:
                        connection.undecodable.append(frame)
                        continue
                    connection.received.append(pdu)
                    self._arrived.set()
                    await self._answer(connection, pdu)
        except (ConnectionError, PduError):
            pass
        finally:
            connection.closed.set()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, c: Connection, pdu: Pdu) -> None:
        if isinstance(pdu, BindTransceiver | BindTransmitter):
            resp = BindTransceiverResp if isinstance(pdu, BindTransceiver) else BindTransmitterResp
            c.send(resp(sequence=pdu.sequence, status=self.bind_status, system_id="fake"))
            if self.drop_after_bind:
                c.drop()
        elif isinstance(pdu, EnquireLink) and self.answer_enquire_link:
            c.send(EnquireLinkResp(sequence=pdu.sequence))
        elif isinstance(pdu, Unbind) and self.answer_unbind:
            c.send(UnbindResp(sequence=pdu.sequence))
        elif isinstance(pdu, SubmitSm):
            self.outstanding += 1
            self.max_outstanding = max(self.max_outstanding, self.outstanding)
            if self.on_submit is not None:
                await self.on_submit(c, pdu)
            elif self.hold_submits:
                c.held.append(pdu)
                if len(c.held) >= self.hold_submits:
                    for held in reversed(c.held):
                        self.respond(c, held)
                    c.held.clear()
            elif self.answer_submits:
                if self.submit_delay:
                    task = asyncio.create_task(self._respond_later(c, pdu))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:
                    self.respond(c, pdu)
        elif isinstance(pdu, DataSm):
            c.send(DataSmResp(sequence=pdu.sequence, message_id="d1"))

    def respond(self, c: Connection, pdu: SubmitSm, status: int | None = None) -> None:
        self.outstanding -= 1
        status = self.submit_status if status is None else status
        message_id = f"id-{pdu.short_message.decode()}" if status == OK else ""
        c.send(SubmitSmResp(sequence=pdu.sequence, status=status, message_id=message_id))

    async def _respond_later(self, c: Connection, pdu: SubmitSm) -> None:
        await asyncio.sleep(self.submit_delay)
        self.respond(c, pdu)
