"""The server's coalescing transport (switchboard/api/server.py): a response's head and body leave in one
write, and nothing held is lost or reordered when the connection closes."""

from __future__ import annotations

import asyncio
from typing import Any

from switchboard.api.server import CoalescingTransport


class _Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8080) if name == "sockname" else default


async def _turn() -> None:
    await asyncio.sleep(0)


async def test_writes_of_one_turn_leave_as_one_write_in_order() -> None:
    raw = _Recording()
    t = CoalescingTransport(raw, asyncio.get_running_loop())
    t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    t.write(memoryview(b"{}"))
    assert raw.writes == []  # held until the end of the turn
    assert t.get_write_buffer_size() == 7 + 40
    await _turn()
    assert raw.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    t.write(b"next")
    await _turn()
    assert raw.writes[1:] == [b"next"]


async def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    raw = _Recording()
    t = CoalescingTransport(raw, asyncio.get_running_loop())
    t.writelines([b"a", b"b"])
    t.close()
    assert raw.writes == [b"ab"] and raw.closed
    await _turn()  # the scheduled flush finds nothing more to send
    assert raw.writes == [b"ab"]

    raw = _Recording()
    t = CoalescingTransport(raw, asyncio.get_running_loop())
    t.write(b"lost")
    t.abort()
    await _turn()
    assert raw.writes == [] and raw.aborted


async def test_a_transport_closed_under_it_gets_nothing_more() -> None:
    raw = _Recording()
    t = CoalescingTransport(raw, asyncio.get_running_loop())
    t.write(b"late")
    raw.close()  # the peer went away before the turn ended
    await _turn()
    assert raw.writes == []
    assert t.is_closing() and t.get_extra_info("sockname") == ("127.0.0.1", 8080)
