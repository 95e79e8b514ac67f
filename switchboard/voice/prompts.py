"""The audio a call plays, prepared before it is dialled: text spoken in a locale, or a campaign's recording,
always as 8 kHz 16-bit mono PCM (little-endian bytes) that the trunk encodes to the negotiated G.711 law.

Speech is rendered once per text, locale and voice and kept in the on-disk `TtsCache` (so 1,000 calls of one
request render once, and so does a restart); campaigns are read from the store and kept in memory while
recently used.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import numpy as np

from switchboard.store.base import Store
from switchboard.voice import audio, tts

CAMPAIGNS_IN_MEMORY = 32
"""Campaign recordings kept in memory (at most 9.6 MB each: 10 minutes of 8 kHz 16-bit audio)."""


class PromptError(Exception):
    """The audio of a call could not be prepared (the call fails with General Error)."""


class AudioLibrary:
    def __init__(self, *, engine: tts.TtsEngine, cache: tts.TtsCache, store: Store | None = None) -> None:
        self._engine = engine
        self._cache = cache
        self._store = store
        self._campaigns: OrderedDict[str, bytes] = OrderedDict()
        self._rendering: dict[str, asyncio.Future[bytes]] = {}

    @property
    def engine(self) -> tts.TtsEngine:
        return self._engine

    def locale(self, value: str) -> str | None:
        """The canonical form of a locale the engine speaks; None when it speaks no such one."""
        try:
            canonical = tts.normalize_locale(value)
        except tts.TtsError:
            return None
        return canonical if self._engine.locale_voice(canonical) is not None else None

    @staticmethod
    def convert_wav(data: bytes) -> bytes:
        """An uploaded WAV as 8 kHz 16-bit PCM; raises `audio.AudioError` when it cannot be read. Blocking
        (numpy and soxr): call it in a thread."""
        return audio.to_telephony(audio.read_wav(data)).astype("<i2").tobytes()

    async def speak(self, text: str, *, locale: str, voice: str | None = None) -> bytes:
        """`text` spoken in `locale`, from the cache or rendered now (once, however many ask at the same time);
        raises `tts.TtsError`."""
        key = self._cache.key(self._engine, text, locale, voice)
        pending = self._rendering.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        # Registered before the first await, so that every other caller of the same key waits for this one.
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._rendering[key] = future
        try:
            pcm = await asyncio.to_thread(self._cache.get, key)
            if pcm is None:
                rendered = await self._engine.render(text, locale=locale, voice=voice)
                pcm = await asyncio.to_thread(_telephony_bytes, rendered)
                await asyncio.to_thread(self._cache.put, key, pcm)
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(e)
                future.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            future.set_result(pcm)
            return pcm
        finally:
            del self._rendering[key]

    async def campaign(self, campaign_id: str) -> bytes:
        """A campaign's recording; raises PromptError when the store has none under this id."""
        pcm = self._campaigns.get(campaign_id)
        if pcm is not None:
            self._campaigns.move_to_end(campaign_id)
            return pcm
        if self._store is None:
            raise PromptError("no store to read campaigns from")
        found = await self._store.campaign_audio(campaign_id)
        if found is None:
            raise PromptError(f"campaign {campaign_id} has no recording")
        self._campaigns[campaign_id] = found
        while len(self._campaigns) > CAMPAIGNS_IN_MEMORY:
            self._campaigns.popitem(last=False)
        return found

    async def for_call(self, *, message: str | None, locale: str | None, campaign_id: str | None) -> bytes:
        """What a call plays; raises PromptError when it cannot be prepared."""
        try:
            if campaign_id is not None:
                return await self.campaign(campaign_id)
            if message is None or locale is None:
                raise PromptError("a call needs a message and a locale, or a campaign")
            return await self.speak(message, locale=locale)
        except tts.TtsError as e:
            raise PromptError(f"text to speech failed: {e}") from e


def _telephony_bytes(rendered: tts.Rendered) -> bytes:
    samples = rendered.samples.astype(np.float32) / 32768.0
    pcm = audio.to_telephony(audio.Pcm(samples=samples, rate=rendered.rate))
    return pcm.astype("<i2").tobytes()
