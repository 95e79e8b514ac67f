"""The store interface. Two implementations (SQLite, PostgreSQL) pass one contract suite
(tests/contract/test_store.py).

The store is also the work queue: a destination with a `due_at` is waiting for a worker. `claim` hands
out due destinations and pushes their `due_at` one lease into the future, so a claim whose worker dies is
simply due again when the lease runs out: delivery is at-least-once, never lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

from switchboard.store.records import (
    Account,
    AccountLimits,
    ApiKey,
    AssignedNumber,
    CallbackResult,
    CallbackState,
    CallbackView,
    CallEnd,
    CallProgress,
    CallRequestView,
    Campaign,
    CancelResult,
    ClaimedCall,
    ClaimedCallback,
    ClaimedDestination,
    HeldReceipts,
    HistoryEntry,
    InboundMessage,
    InFlight,
    Lease,
    MessageCancel,
    MessageView,
    NewCall,
    NewCallRequest,
    NewDestination,
    NewErrorLog,
    NewMessage,
    OptOut,
    Outcome,
    PendingReply,
    Receipt,
    StoredInbound,
)

Replay = Literal["replayed", "pending", "missing"]
"""What `replay_callback` did: replayed it; nothing, it is pending already; nothing, the account has no such
callback."""

CallbackCancel = Literal["cancelled", "final", "missing"]
"""What `cancel_callback` did: cancelled it; nothing, it was delivered, failed or cancelled already; nothing,
the account has no such callback."""


class Store(Protocol):
    dialect: str
    """"sqlite" or "postgresql"."""

    async def open(self) -> None:
        """Connect; the schema must be migrated already (`migrate.upgrade`)."""

    async def close(self) -> None:
        """Finish pending writes and disconnect."""

    async def ping(self) -> None:
        """Raise StoreError unless the database answers."""

    async def node_id(self) -> int:
        """A number 0..1023 for this process's id generator, distinct among live processes."""

    # accounts and keys
    async def create_account(self, account: Account) -> None: ...
    async def get_account(self, account_id: int) -> Account | None: ...
    async def get_account_by_name(self, name: str) -> Account | None: ...
    async def list_accounts(self) -> list[Account]: ...
    async def set_callback_url(self, account_id: int, kind: str, url: str | None) -> None:
        """Set (or clear) the account's "sms", "voice" or "inbound" callback URL, which enables it again if a 410 had
        disabled it. Only that URL's columns are written."""

    async def rotate_secret(self, account_id: int, secret: str, *, now: int) -> None:
        """Make `secret` the account's webhook secret; the one before it is kept as the previous secret."""

    async def add_api_key(self, key: ApiKey) -> None: ...
    async def list_api_keys(self, account_id: int) -> list[ApiKey]: ...
    async def revoke_api_key(self, account_id: int, key_id: int, at: int) -> bool:
        """Revoke one of the account's keys; False when it has no such unrevoked key."""

    async def find_api_key(self, digest: str) -> tuple[ApiKey, Account] | None:
        """The unrevoked key with this digest and its account."""

    # messages
    async def accept(self, message: NewMessage, destinations: list[NewDestination], errors: list[NewErrorLog]) -> int:
        """Store a Send request durably; returns when it is committed. Returns the message id, which is
        an earlier message's when the account already used `message.idempotency_key`.

        Destination number `position` (from 0) gets the id `message.id + 1 + position` (the caller made
        them with one `IdGenerator.block`): that is how a message's destinations are found without an index
        of their own. Each starts as `message.status`, due at `message.due_at`, except the destinations an
        error log entry points at: those are stored Failed, with the entry's text as their error, and are
        never due."""

    async def get_message(self, account_id: int, message_id: int) -> MessageView | None: ...
    async def find_message_by_reference(self, account_id: int, reference_id: str) -> MessageView | None:
        """The newest of the account's messages with that ReferenceID."""

    async def cancel_message(
        self, account_id: int, message_id: int, *, mobile_no: str | None = None, now: int
    ) -> MessageCancel | None:
        """Cancel the message's Scheduled destinations (or those to `mobile_no`, as written or in E.164) that no
        worker has taken yet: Cancelled at `now`, never due again, with a callback each when the message asked
        for callbacks. Any other destination is left as it is (one a worker took may be with a carrier). None:
        the account has no such message."""

    async def history(self, destination_id: int) -> list[HistoryEntry]: ...

    # the work queue
    async def claim(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedDestination]: ...
    async def finish(self, outcomes: list[Outcome], *, now: int) -> None:
        """Apply what became of claimed destinations; outcomes of superseded claims are ignored."""

    async def apply_receipts(self, receipts: list[Receipt], *, now: int) -> list[Receipt]:
        """Apply carriers' reports; returns those that matched no destination (nor part), which are held
        (table held_receipts, received at `now`) in the same transaction: stored when this returns, as the
        applied ones are, so a carrier may acknowledge them all."""

    async def retry_held_receipts(self, *, now: int, drop_before: int) -> HeldReceipts:
        """Match the held receipts again, in one transaction and in the order they came (id order), as
        `apply_receipts` does: those that match now are applied (at `now`) and deleted; those that still
        match nothing and were received before `drop_before` are deleted and returned; the rest stay.
        On PostgreSQL, held receipts another process is matching at the moment are passed over."""

    async def watch_for_work(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever another process stores work (PostgreSQL's LISTEN/NOTIFY); workers still
        poll as a fallback. In the embedded store there is no other process: nothing to do."""

    async def in_flight(self, carrier: str, *, limit: int) -> list[InFlight]:
        """Destinations the carrier accepted and has not reported on."""

    # the callback outbox (events are written by accept, finish and apply_receipts)
    async def claim_callbacks(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedCallback]:
        """Due callbacks, each the oldest pending event of its subject, leased like destinations."""

    async def finish_callbacks(self, results: list[CallbackResult]) -> None:
        """Log each attempt and apply what became of it; the next event of a finished subject becomes due."""

    async def list_callbacks(
        self, account_id: int, *, state: CallbackState | None, limit: int, before_id: int | None = None
    ) -> list[CallbackView]:
        """The account's callbacks, newest first, without their attempt history."""

    async def get_callback(self, account_id: int, callback_id: int) -> CallbackView | None:
        """One of the account's callbacks with every attempt."""

    async def replay_callback(self, account_id: int, callback_id: int, *, now: int) -> Replay:
        """Make a delivered or failed callback pending again, its retry schedule started afresh: due now, or,
        when another callback of its destination is pending, right after that one is done (order holds).
        A pending callback is left alone."""

    async def cancel_callback(self, account_id: int, callback_id: int, *, now: int) -> CallbackCancel:
        """Stop a pending callback (one being retried, or one waiting for its destination's earlier callback):
        it becomes cancelled, is attempted no more, and the next callback of its destination becomes due, as
        after a delivery. An attempt on its way when it is cancelled is logged, and changes nothing."""

    async def pending_callbacks(self) -> int:
        """How many callbacks are pending, all accounts together."""

    # inbound (mobile-originated) messages
    async def store_inbound(self, messages: list[InboundMessage]) -> None:
        """Store carriers' inbound messages durably, in order; returns when they are committed. Each is routed
        as it is stored (`domain.inbound.owner`): to the account its number (and first word, as a keyword) is
        assigned to, or else to the operator's unrouted inbox (`account_id` None). For an account with an
        inbound callback URL, its "inbound" callback is written to the outbox in the same transaction.
        A message identical to one taken within `inbound.DUPLICATE_WINDOW_MS` is an SMSC's resend: taken, not
        stored again. A part of a concatenated message is stored as a part, and the message is stored (joined,
        as above) in the transaction that stores its last part (store/inbound.py)."""

    async def sweep_inbound(self, *, parts_before: int, seen_before: int) -> int:
        """Store, as what came, each concatenated message whose first part came before `parts_before` (ms) and
        whose parts have not all come (Segments the parts that came, the others noted as missing), routed as any
        inbound message; forget the inbound messages seen before `seen_before` (the resend window). Returns how
        many messages were stored."""

    async def list_inbound(self, *, limit: int, before_id: int | None = None) -> list[StoredInbound]:
        """Stored inbound messages, newest first; `before_id` pages on (only ids below it)."""

    async def list_account_inbound(
        self,
        account_id: int | None,
        *,
        limit: int,
        before_id: int | None = None,
        since: int | None = None,
        to_number: str | None = None,
        from_number: str | None = None,
    ) -> list[StoredInbound]:
        """The account's inbound messages (None: the operator's unrouted inbox), newest first; `before_id` pages
        on; only those received at or after `since`, to `to_number`, from `from_number` (each a
        `domain.inbound.number_key`) when given."""

    # numbers (two-way messaging)
    async def assign_number(self, number: str, keyword: str, account_id: int, *, now: int) -> int:
        """Assign the number (a `domain.inbound.number_key`), with the keyword (upper case, "" for the number as a
        whole), to the account. Returns the account it is assigned to: `account_id`, or, when that number and
        keyword were assigned already, the account they are assigned to (unchanged)."""

    async def unassign_number(self, number: str, keyword: str) -> bool:
        """Take the number (with that keyword) back; False when it was not assigned."""

    async def list_numbers(self, account_id: int | None = None) -> list[AssignedNumber]:
        """The assigned numbers (the account's, or every account's), by number and keyword."""

    # voice: calls are queued like destinations; a call's record (a "voice" callback) is written when it ends
    async def accept_calls(self, request: NewCallRequest, calls: list[NewCall]) -> int:
        """Store a Call request and one call per destination, due now, in one transaction; returns the
        request's id. A call without a valid number is stored Failed / General Error with its call record
        (when the request wants records). With an `idempotency_key` already used by the account, nothing is
        stored and the earlier request's id is returned."""

    async def get_call_request(self, account_id: int, request_id: int) -> CallRequestView | None: ...
    async def find_call_request_by_reference(self, account_id: int, reference_id: str) -> CallRequestView | None:
        """The newest of the account's Call requests with this ReferenceID."""

    async def claim_calls(self, *, now: int, limit: int, lease_ms: int) -> list[ClaimedCall]:
        """Due calls, leased: queued ones to dial, and any whose dialer's lease ran out mid-call."""

    async def progress_calls(self, changes: list[CallProgress]) -> list[int]:
        """Record calls moving on (Dialing, InProgress); changes of superseded claims, and of calls that
        ended meanwhile, are ignored. Returns the ids of the calls whose change was applied."""

    async def end_calls(self, ends: list[CallEnd]) -> None:
        """Write how calls ended, each with its call record in the same transaction; a call already final
        (cancelled meanwhile) or claimed again since is left alone."""

    async def cancel_calls(
        self, account_id: int, request_id: int, *, mobile_no: str | None = None, now: int
    ) -> CancelResult | None:
        """Cancel a request's calls (or only those to `mobile_no`): queued ones end at once as Failed /
        Cancel; those under way are marked for their dialer to hang up. None: no such request."""

    async def cancels_requested(self, call_ids: list[int]) -> list[int]:
        """Which of these calls (under way) were asked to stop through `cancel_calls`."""

    async def create_campaign(self, campaign: Campaign, audio: bytes) -> None: ...
    async def get_campaign(self, account_id: int, campaign_id: str) -> Campaign | None:
        """The account's campaign; None when unknown, deleted or another account's."""

    async def campaign_audio(self, campaign_id: str) -> bytes | None:
        """The campaign's 8 kHz 16-bit mono PCM (little-endian), also after it was deleted (queued calls
        may still play it); None when unknown."""

    async def list_campaigns(self, account_id: int) -> list[Campaign]:
        """The account's campaigns that are not deleted, newest first."""

    async def delete_campaign(self, account_id: int, campaign_id: str, *, now: int) -> bool:
        """Mark it deleted (new calls may not use it); False when it was not the account's or already gone."""

    # limits (switchboard/limits.py): what the operator set per account, and what every api process shares

    async def get_limits(self, account_id: int) -> AccountLimits | None:
        """What the operator set for the account; None when nothing was (the defaults apply)."""

    async def set_limits(self, limits: AccountLimits) -> None:
        """Set every one of the account's limits at once (None: the default)."""

    async def list_limits(self) -> list[AccountLimits]:
        """Every account's limits the operator set, by account id."""

    async def lease_rate(self, account_id: int, *, want: float, rate: float, burst: float, now: int) -> Lease:
        """Take up to `want` tokens from the account's request bucket, which every process shares: it holds
        `burst` tokens at first and gains `rate` a second (since the latest `now` it saw) up to `burst`. Grants
        what it holds up to `want`, nothing when it holds less than one token; `left` is what it holds after.
        One atomic statement: two processes never take the same token."""

    async def lease_daily(self, account_id: int, *, day: int, want: int, cap: int) -> Lease:
        """Count up to `want` destinations against the account's `cap` for `day` (days since the epoch, UTC),
        all processes together: grants what is left of the cap up to `want`; `left` is the day's count after
        it. One atomic statement: the count never passes the cap."""

    async def daily_used(self, account_id: int, *, day: int) -> int:
        """Destinations counted against the account's cap on `day` (leases handed out, spent or not)."""

    # opt-out (ARCHITECTURE.md §2, "Two-way messaging"; the keywords are applied by `store_inbound`)

    async def add_opt_out(self, account_id: int, number: str, *, source: str, now: int) -> bool:
        """Put the number (a `domain.inbound.number_key`) on the account's list; False when it was already
        (its first source and time are kept)."""

    async def remove_opt_out(self, account_id: int, number: str) -> bool:
        """Take the number off the account's list; False when it was not on it."""

    async def list_opt_outs(self, account_id: int, *, limit: int, after: str | None = None) -> list[OptOut]:
        """The account's list in number order; `after` pages on (only numbers after it)."""

    async def opted_out_among(self, account_id: int, numbers: list[str]) -> set[str]:
        """Which of the numbers are on the account's list."""

    async def set_reply_texts(
        self, account_id: int, *, opt_out: str | None, opt_in: str | None, help_text: str | None
    ) -> None:
        """Set the account's replies to STOP, START and HELP (None: the default; "": none), all three at once."""

    async def get_reply_texts(self, account_id: int) -> tuple[str | None, str | None, str | None]:
        """The account's reply texts (opt-out, opt-in, help); None for each it did not set."""

    async def pending_replies(self, *, limit: int) -> list[PendingReply]:
        """Replies to keywords not yet made Sends, oldest first."""

    async def delete_reply(self, reply_id: int) -> None:
        """The reply was accepted as a Send: it leaves the outbox."""
