"""The audio a call plays, prepared before it is dialled: text spoken in a locale, or a campaign's recording,
always as 8 kHz 16-bit mono PCM (little-endian bytes) that the trunk encodes to the negotiated G.711 law.

Speech is rendered once per text, locale and voice and kept in the on-disk `TtsCache` (so 1,000 calls of one
request render once, and so does a restart); campaigns are read from the store. Either is then kept in memory
while recently used, within `MEMORY_BYTES`, so that the calls of one request share one copy of their audio.
However many calls ask for the same audio at once, it is read or rendered once and the others wait for it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import numpy as np

from switchboard.errors import PromptError, TtsError
from switchboard.store.base import Store
from switchboard.voice import audio, tts

MEMORY_BYTES = 64 * 1024 * 1024
"""Audio kept in memory, recently used first: about 70 minutes of 8 kHz 16-bit audio (a campaign is at most
10 minutes, 9.6 MB)."""


class AudioLibrary:
    def __init__(
        self,
        *,
        engine: tts.TtsEngine,
        cache: tts.TtsCache,
        store: Store | None = None,
        memory_bytes: int = MEMORY_BYTES,
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._store = store
        self._memory_bytes = memory_bytes
        self._recent: OrderedDict[str, bytes] = OrderedDict()
        """Audio by "tts:<cache key>" or "campaign:<id>", least recently used first, within `memory_bytes`."""
        self._recent_bytes = 0
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        """Audio being read or rendered, by the same keys: later callers wait for it instead of doing it again."""

    @property
    def engine(self) -> tts.TtsEngine:
        return self._engine

    def locale(self, value: str) -> str | None:
        """The canonical form of a locale the engine speaks; None when it speaks no such one."""
        try:
            canonical = tts.normalize_locale(value)
        except TtsError:
            return None
        return canonical if self._engine.locale_voice(canonical) is not None else None

    @staticmethod
    def convert_wav(data: bytes) -> bytes:
        """An uploaded WAV as 8 kHz 16-bit PCM; raises `AudioError` when it cannot be read. Blocking
        (numpy and soxr): call it in a thread."""
        return audio.to_telephony(audio.read_wav(data)).astype("<i2").tobytes()

    async def speak(self, text: str, *, locale: str, voice: str | None = None) -> bytes:
        """`text` spoken in `locale`, from memory, the cache or rendered now (once, however many ask at the same
        time); raises `TtsError`."""
        key = self._cache.key(self._engine, text, locale, voice)
        return await self._once(f"tts:{key}", lambda: self._render(key, text, locale, voice))

    async def _render(self, key: str, text: str, locale: str, voice: str | None) -> bytes:
        try:
            pcm = await asyncio.to_thread(self._cache.get, key)
            if pcm is None:
                rendered = await self._engine.render(text, locale=locale, voice=voice)
                pcm = await asyncio.to_thread(_telephony_bytes, rendered)
                await asyncio.to_thread(self._cache.put, key, pcm)
        except OSError as e:  # the cache's disk (full, unreadable): the one place its errors become ours
            raise TtsError(f"the speech cache cannot be used: {e}") from e
        return pcm

    async def campaign(self, campaign_id: str) -> bytes:
        """A campaign's recording; raises PromptError when the store has none under this id."""
        return await self._once(f"campaign:{campaign_id}", lambda: self._read_campaign(campaign_id))

    async def _read_campaign(self, campaign_id: str) -> bytes:
        if self._store is None:
            raise PromptError("no store to read campaigns from")
        found = await self._store.campaign_audio(campaign_id)
        if found is None:
            raise PromptError(f"campaign {campaign_id} has no recording")
        return found

    async def _once(self, key: str, produce: Callable[[], Awaitable[bytes]]) -> bytes:
        """The audio under `key`: from memory, or from `produce`, run once for every caller that asks meanwhile."""
        pcm = self._recent.get(key)
        if pcm is not None:
            self._recent.move_to_end(key)
            return pcm
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        # Registered before the first await, so that every other caller of the same key waits for this one.
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            pcm = await produce()
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(e)
                future.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            self._remember(key, pcm)
            future.set_result(pcm)
            return pcm
        finally:
            del self._pending[key]

    def _remember(self, key: str, pcm: bytes) -> None:
        if len(pcm) > self._memory_bytes:
            return
        self._recent[key] = pcm
        self._recent_bytes += len(pcm)
        while self._recent_bytes > self._memory_bytes:
            _, dropped = self._recent.popitem(last=False)
            self._recent_bytes -= len(dropped)

    async def for_call(self, *, message: str | None, locale: str | None, campaign_id: str | None) -> bytes:
        """What a call plays; raises PromptError when it cannot be prepared."""
        try:
            if campaign_id is not None:
                return await self.campaign(campaign_id)
            if message is None or locale is None:
                raise PromptError("a call needs a message and a locale, or a campaign")
            return await self.speak(message, locale=locale)
        except TtsError as e:
            raise PromptError(f"text to speech failed: {e}") from e


def _telephony_bytes(rendered: tts.Rendered) -> bytes:
    samples = rendered.samples.astype(np.float32) / 32768.0
    pcm = audio.to_telephony(audio.Pcm(samples=samples, rate=rendered.rate))
    return pcm.astype("<i2").tobytes()
