"""Accepting Call requests and campaigns, and answering for them: the voice use cases the API and CLI call.

`call` turns a checked request into one stored call per destination, queued for the dialer. A destination
that is not a valid international number does not fail the request: its call is stored Failed / General
Error at once, with its call record.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from switchboard.domain import numbers
from switchboard.domain.clock import Clock
from switchboard.domain.ids import IdGenerator
from switchboard.domain.voice_request import CallRequest
from switchboard.store.base import Store
from switchboard.store.records import (
    Account,
    CallRequestView,
    Campaign,
    CancelResult,
    NewCall,
    NewCallRequest,
)
from switchboard.voice.prompts import AudioLibrary

WAV_CONVERSIONS = 1
"""WAV uploads converted at once: a 20 MiB upload takes a few hundred MB while numpy and soxr convert it, and
uses a core; more uploads wait their turn rather than add up."""


@dataclass(frozen=True, slots=True)
class Accepted:
    request_id: int
    replayed: bool
    """True when an earlier request with the same Idempotency-Key is answered again."""


class VoiceService:
    def __init__(
        self,
        *,
        store: Store,
        ids: IdGenerator,
        clock: Clock,
        audio: AudioLibrary,
        on_accepted: Callable[[], None] | None = None,
        new_guid: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._store = store
        self._ids = ids
        self._clock = clock
        self._audio = audio
        self._on_accepted = on_accepted
        self._new_guid = new_guid
        self._converting = asyncio.Semaphore(WAV_CONVERSIONS)

    def request_id(self) -> int:
        """An id for a request that is refused: the vendor's error answers carry one too (it is logged, and
        nothing is stored under it)."""
        return self._ids.next()

    def locale(self, value: str) -> str | None:
        """The canonical form of a locale the text-to-speech engine speaks; None when it speaks no such one."""
        return self._audio.locale(value)

    async def campaign_usable(self, account: Account, campaign_id: str) -> bool:
        """Whether a Call may use this CampaignID: the account's own, not deleted (else error 5002)."""
        return await self._store.get_campaign(account.id, campaign_id) is not None

    async def call(self, account: Account, request: CallRequest, *, idempotency_key: str | None = None) -> Accepted:
        now = self._clock.now_ms()
        count = len(request.destinations)
        request_id = self._ids.block(count + 1)
        normalize = numbers.normalize
        calls = [NewCall(raw, normalize(raw), self._new_guid()) for raw in request.destinations]
        cb = request.callback
        stored_id = await self._store.accept_calls(
            NewCallRequest(
                id=request_id,
                account_id=account.id,
                reference_id=request.reference_id,
                sender=request.sender,
                message=request.message,
                locale=request.locale,
                campaign_id=request.campaign_id,
                callback=cb.mode.value,
                callback_url=cb.url,
                ring_timeout=request.ring_timeout,
                destination_count=count,
                created_at=now,
                idempotency_key=idempotency_key,
            ),
            calls,
        )
        if self._on_accepted is not None and stored_id == request_id:
            self._on_accepted()
        return Accepted(stored_id, replayed=stored_id != request_id)

    async def status(self, account: Account, request_id: int) -> CallRequestView | None:
        return await self._store.get_call_request(account.id, request_id)

    async def status_by_reference(self, account: Account, reference_id: str) -> CallRequestView | None:
        return await self._store.find_call_request_by_reference(account.id, reference_id)

    async def cancel(self, account: Account, request_id: int, *, mobile_no: str | None = None) -> CancelResult | None:
        """Cancel a request's calls (or those to one number): see `Store.cancel_calls`."""
        result = await self._store.cancel_calls(account.id, request_id, mobile_no=mobile_no, now=self._clock.now_ms())
        if result is not None and self._on_accepted is not None:
            self._on_accepted()  # the dialer looks for cancels now; the records written are due
        return result

    # campaigns

    async def create_campaign_from_wav(self, account: Account, *, name: str, data: bytes) -> Campaign:
        """A campaign from an uploaded WAV, converted once to 8 kHz; raises `AudioError` for a file
        that cannot be read."""
        async with self._converting:
            pcm = await asyncio.to_thread(self._audio.convert_wav, data)
        return await self._store_campaign(account, name=name, source="wav", text=None, locale=None, pcm=pcm)

    async def create_campaign_from_text(self, account: Account, *, name: str, text: str, locale: str) -> Campaign:
        """A campaign from text spoken in `locale` (canonical, supported), rendered once; raises
        `TtsError` when it cannot be rendered."""
        pcm = await self._audio.speak(text, locale=locale)
        return await self._store_campaign(account, name=name, source="tts", text=text, locale=locale, pcm=pcm)

    async def _store_campaign(
        self, account: Account, *, name: str, source: str, text: str | None, locale: str | None, pcm: bytes
    ) -> Campaign:
        campaign = Campaign(
            id=self._new_guid(),
            account_id=account.id,
            name=name,
            source=source,
            text=text,
            locale=locale,
            duration_ms=len(pcm) // 16,  # 8,000 16-bit samples a second
            created_at=self._clock.now_ms(),
        )
        await self._store.create_campaign(campaign, pcm)
        return campaign

    async def list_campaigns(self, account: Account) -> list[Campaign]:
        return await self._store.list_campaigns(account.id)

    async def get_campaign(self, account: Account, campaign_id: str) -> Campaign | None:
        return await self._store.get_campaign(account.id, campaign_id)

    async def delete_campaign(self, account: Account, campaign_id: str) -> bool:
        return await self._store.delete_campaign(account.id, campaign_id, now=self._clock.now_ms())
