"""Time-ordered 63-bit identifiers, written as decimal strings in the API.

Layout, most significant first: 41 bits of milliseconds since 2024-01-01 UTC (enough until 2093),
10 bits of node (the process that made it), 12 bits of sequence within the millisecond. Numeric like the
vendor's IDs, so clients that parse them as numbers keep working, and unique across processes that were
given distinct nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
NODE_BITS = 10
SEQUENCE_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
_MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1


class IdGenerator:
    """Makes unique ids. When a millisecond's 4,096 sequence numbers run out it borrows the next
    millisecond rather than waiting, and never goes backwards if the wall clock does."""

    def __init__(self, *, node: int, clock_ms: Callable[[], int]) -> None:
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"node must be 0..{MAX_NODE}")
        self._node = node
        self._clock_ms = clock_ms
        self._last_ms = 0
        self._sequence = 0

    def next(self) -> int:
        return self.block(1)

    def block(self, count: int) -> int:
        """Reserve `count` consecutive ids (count ≤ 4096) and return the first."""
        now = self._clock_ms() - EPOCH_MS
        if now > self._last_ms:
            self._last_ms = now
            self._sequence = 0
        if self._sequence + count - 1 > _MAX_SEQUENCE:
            self._last_ms += 1
            self._sequence = 0
        first = (self._last_ms << (NODE_BITS + SEQUENCE_BITS)) | (self._node << SEQUENCE_BITS) | self._sequence
        self._sequence += count
        return first


def id_time(ident: int) -> datetime:
    """When an id was made."""
    ms = (ident >> (NODE_BITS + SEQUENCE_BITS)) + EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, UTC)
