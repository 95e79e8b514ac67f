"""The schema, as SQLAlchemy Core metadata: what the Alembic migrations build, and what the migration test
compares a migrated database against. Queries themselves are plain SQL in each store implementation.

Times are integer milliseconds since the Unix epoch (UTC) in every table: the same on both databases and
no conversion on the hot path. Ids are made by `domain.ids.IdGenerator`, never by the database, so a row's
id is known before its transaction commits.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    text,
)

# SQLite makes a primary key the rowid itself (no second index to keep, self-numbering when no value is
# given) only when its type is exactly INTEGER, which holds 64 bits there.
ID = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False, unique=True),
    Column("sms_callback_url", Text),
    Column("voice_callback_url", Text),
    Column("webhook_secret", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # A secret rotation keeps the previous secret signing for a grace period (callbacks/signing.py).
    Column("previous_webhook_secret", Text),
    Column("secret_rotated_at", BigInteger),
    # Why the account's callback URL is no longer used (a 410 from it), until the URL is set again.
    Column("sms_callback_disabled", Text),
    Column("voice_callback_disabled", Text),
    Column("inbound_callback_url", Text),
    Column("inbound_callback_disabled", Text),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=False),
    Column("account_id", BigInteger, nullable=False, index=True),
    Column("digest", Text, nullable=False, unique=True),
    Column("prefix", Text, nullable=False),
    Column("label", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
)

messages = Table(
    "messages",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=False),
    Column("account_id", BigInteger, nullable=False),
    Column("reference_id", Text),
    Column("sender", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("encoding", Text, nullable=False),
    Column("segments", Integer, nullable=False),
    Column("callback", Text, nullable=False),
    Column("callback_url", Text),
    Column("destination_count", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("schedule_at", BigInteger),
    Column("expires_at", BigInteger),
    Column("idempotency_key", Text),
    Index("ix_messages_reference", "account_id", "reference_id"),
    Index(
        "ux_messages_idempotency",
        "account_id",
        "idempotency_key",
        unique=True,
        sqlite_where=text("idempotency_key IS NOT NULL"),
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ),
)

destinations = Table(
    "destinations",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=False),
    # A message's destinations are the ids right after its own: message.id + 1 … message.id +
    # destination_count (one IdGenerator.block), so reading them needs no index of its own.
    Column("message_id", BigInteger, nullable=False),
    Column("position", Integer, nullable=False),
    Column("mobile_no", Text, nullable=False),
    Column("e164", Text),
    Column("status", Text, nullable=False),
    Column("error", Text),
    Column("error_log_id", BigInteger),
    Column("due_at", BigInteger),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("carrier", Text),
    Column("carrier_ref", Text),
    Column("sequence", Integer, nullable=False, server_default=text("0")),
    Column("updated_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger),
    # The work queue: only rows with work pending are in this index.
    Index(
        "ix_destinations_due",
        "due_at",
        sqlite_where=text("due_at IS NOT NULL"),
        postgresql_where=text("due_at IS NOT NULL"),
    ),
    # Receipts find their destination by the carrier's message id.
    Index(
        "ix_destinations_carrier_ref",
        "carrier",
        "carrier_ref",
        sqlite_where=text("carrier_ref IS NOT NULL"),
        postgresql_where=text("carrier_ref IS NOT NULL"),
    ),
)

# The parts of a destination sent in several parts (a long message): each has the carrier's reference
# its receipt comes back with. The destination is final once every part is (store/changes.py). Written with
# the destination's Sent change; a single-part destination has no rows here.
destination_parts = Table(
    "destination_parts",
    metadata,
    Column("destination_id", BigInteger, primary_key=True, autoincrement=False),
    Column("part", Integer, primary_key=True, autoincrement=False),  # 1 … the number of parts
    Column("carrier", Text, nullable=False),
    Column("carrier_ref", Text, nullable=False),
    Column("status", Text, nullable=False),  # Sent, then the part's receipt's status
    Column("updated_at", BigInteger, nullable=False),
    # Receipts find their part by the carrier's message id.
    Index("ix_destination_parts_carrier_ref", "carrier", "carrier_ref"),
)

status_history = Table(
    "status_history",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("destination_id", BigInteger, nullable=False, index=True),
    Column("status", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("detail", Text),
)

error_logs = Table(
    "error_logs",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=False),
    Column("account_id", BigInteger, nullable=False),
    Column("destination_id", BigInteger, nullable=False, index=True),
    Column("code", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
)

# The callback outbox: one row per event, written in the transaction of the status change that caused it.
# It is a work queue like destinations: a row with a `due_at` waits for the dispatcher, which claims it by
# pushing `due_at` one lease ahead. Events of one subject (an SMS destination, a call) go out in `sequence`
# order: only the oldest pending event of a subject is ever due; the others wait with `due_at` NULL and the
# dispatcher makes the next one due when the one before it is done (delivered or given up).
callbacks = Table(
    "callbacks",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("account_id", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),  # "sms" or "voice": which of the account's URLs
    Column("subject_id", BigInteger, nullable=False),  # the destination (or call) it is about
    Column("sequence", Integer, nullable=False),
    Column("url", Text),  # the request's own URL; NULL: the account's URL of this kind, read at delivery
    Column("body", Text, nullable=False),  # the exact JSON posted, the same on every attempt
    Column("state", Text, nullable=False),  # pending, delivered, failed, cancelled (records.CallbackState)
    Column("due_at", BigInteger),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index(
        "ix_callbacks_due",
        "due_at",
        sqlite_where=text("due_at IS NOT NULL"),
        postgresql_where=text("due_at IS NOT NULL"),
    ),
    # The pending events of a subject: is one before this one still pending, which one is next.
    Index(
        "ix_callbacks_pending_subject",
        "subject_id",
        "sequence",
        sqlite_where=text("state = 'pending'"),
        postgresql_where=text("state = 'pending'"),
    ),
    Index("ix_callbacks_account_state", "account_id", "state", "id"),
)

callback_attempts = Table(
    "callback_attempts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("callback_id", BigInteger, nullable=False, index=True),
    Column("at", BigInteger, nullable=False),
    Column("url", Text),
    Column("status_code", Integer),  # NULL when no response came
    Column("latency_ms", Integer, nullable=False),
    Column("error", Text),
)

# Mobile-originated messages (a handset writing to one of our numbers), as carriers hand them over. `body` is the
# decoded text, NULL when its data_coding is not one we decode; `raw` is the message octets as received (hex)
# when `body` is NULL or the octets begin with a user data header (a part of a concatenated message: the header
# says which), else NULL.
inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("carrier", Text, nullable=False),
    Column("source_addr", Text, nullable=False),
    Column("destination_addr", Text, nullable=False),
    Column("body", Text),
    Column("data_coding", Integer, nullable=False),
    Column("raw", Text),
    Column("received_at", BigInteger, nullable=False),
    # Routed when stored (domain/inbound.py): the account whose number (and keyword) it was sent to, NULL for
    # the operator's unrouted inbox; the numbers in the form they are compared in (E.164, else as written).
    Column("account_id", BigInteger),
    Column("keyword", Text),
    Column("to_number", Text),
    Column("from_number", Text),
    # Joined from this many parts (the parts that came); `missing` lists those that never did ("2,3"), NULL
    # when it is whole (store/inbound.py).
    Column("segments", Integer, nullable=False, server_default="1"),
    Column("missing", Text),
    # One of our numbers' messages, newest first.
    Index("ix_inbound_messages_destination", "destination_addr", "id"),
    # GET /api/SMS/Inbound: an account's messages newest first, all of them, to one number, or from one.
    Index("ix_inbound_messages_account", "account_id", "id"),
    Index("ix_inbound_messages_account_to", "account_id", "to_number", "id"),
    Index("ix_inbound_messages_account_from", "account_id", "from_number", "id"),
)

# Parts of concatenated inbound messages whose other parts have not all come yet: stored before the carrier
# acknowledges them, joined into inbound_messages (and deleted) in the transaction that stores the last one,
# or stored as what came by the sweep after the time limit (store/inbound.py, PARTS_TIME_LIMIT_MS). `octets` is
# the part's payload after its user data header, hex.
inbound_parts = Table(
    "inbound_parts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("carrier", Text, nullable=False),
    Column("source_addr", Text, nullable=False),
    Column("destination_addr", Text, nullable=False),
    Column("reference", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("data_coding", Integer, nullable=False),
    Column("octets", Text, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Index(
        "ux_inbound_parts_part", "carrier", "source_addr", "destination_addr", "reference", "total", "seq", unique=True
    ),
    Index("ix_inbound_parts_received", "received_at"),
)

# Inbound messages (and parts) taken in the last DUPLICATE_WINDOW_MS, by a digest of what identifies them
# (store/inbound.py, `seen_key`): the same one again within the window is a resend of the SMSC's and is
# acknowledged without being stored twice. The sweep forgets the old ones.
inbound_seen = Table(
    "inbound_seen",
    metadata,
    Column("digest", Text, primary_key=True),
    Column("seen_at", BigInteger, nullable=False),
    Index("ix_inbound_seen_at", "seen_at"),
)

# Our numbers assigned to accounts by the operator (`switchboard numbers assign`), optionally with a keyword on a
# shared number: an inbound message to `number` whose first word is `keyword` belongs to `account_id`; the
# number's row with keyword "" takes the rest (domain/inbound.py).
numbers = Table(
    "numbers",
    metadata,
    Column("number", Text, primary_key=True),  # E.164 when valid, else as written (a short code)
    Column("keyword", Text, primary_key=True),  # upper case; "" for the number as a whole
    Column("account_id", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_numbers_account", "account_id", "number"),
)

# Receipts that matched no destination when they came: the submit response of their message is not written
# yet. Stored in the transaction that found them unmatched, before the carrier acknowledges them, and matched
# again by the worker's sweep (`Store.retry_held_receipts`), in id order (arrival order), until they match or
# are too old (sms/worker.py, HELD_RECEIPT_SECONDS).
held_receipts = Table(
    "held_receipts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("carrier", Text, nullable=False),
    Column("carrier_ref", Text, nullable=False),
    Column("status", Text, nullable=False),  # the receipt's SmsStatus
    Column("error", Text),
    Column("received_at", BigInteger, nullable=False),
)

# Voice. A Call request and its calls, one per destination: `calls` is a work queue like `destinations` (ids
# are the request's id + 1 + position; `due_at` is set while a dialer should look at the call: queued, or
# under way with `due_at` as its lease, after which the call is taken as abandoned).
call_requests = Table(
    "call_requests",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=False),
    Column("account_id", BigInteger, nullable=False),
    Column("reference_id", Text),
    Column("sender", Text, nullable=False),
    Column("message", Text),
    Column("locale", Text),
    Column("campaign_id", Text),
    Column("callback", Text, nullable=False),
    Column("callback_url", Text),
    Column("ring_timeout", Integer, nullable=False),
    Column("destination_count", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("idempotency_key", Text),
    Index("ix_call_requests_reference", "account_id", "reference_id"),
    Index(
        "ux_call_requests_idempotency",
        "account_id",
        "idempotency_key",
        unique=True,
        sqlite_where=text("idempotency_key IS NOT NULL"),
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ),
)

calls = Table(
    "calls",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=False),
    Column("request_id", BigInteger, nullable=False),
    Column("position", Integer, nullable=False),
    Column("guid", Text, nullable=False),
    Column("mobile_no", Text, nullable=False),
    Column("e164", Text),
    Column("status", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=text("''")),
    Column("detail", Text),
    Column("due_at", BigInteger),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("trunk", Text),
    Column("call_time", BigInteger),
    Column("answer_time", BigInteger),
    Column("end_time", BigInteger),
    Column("cancel_requested", Integer, nullable=False, server_default=text("0")),
    Column("updated_at", BigInteger, nullable=False),
    Index(
        "ix_calls_due",
        "due_at",
        sqlite_where=text("due_at IS NOT NULL"),
        postgresql_where=text("due_at IS NOT NULL"),
    ),
)

# Recordings to play: an uploaded WAV or text rendered once, kept as 8 kHz 16-bit mono PCM. A deleted campaign
# keeps its row and audio (calls queued before the delete still play it) but new calls may not use it.
campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Text, primary_key=True),  # a GUID
    Column("account_id", BigInteger, nullable=False),
    Column("name", Text, nullable=False),
    Column("source", Text, nullable=False),  # "wav" or "tts"
    Column("text", Text),
    Column("locale", Text),
    Column("duration_ms", Integer, nullable=False),
    Column("audio", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger),
    Index("ix_campaigns_account", "account_id", "created_at"),
)

# Per-account limits the operator set (`switchboard accounts limits`); an account without a row, or a NULL
# column, has the defaults of [limits]. `countries` is a comma-separated list of ISO 3166 alpha-2 codes.
account_limits = Table(
    "account_limits",
    metadata,
    Column("account_id", BigInteger, primary_key=True, autoincrement=False),
    Column("requests_per_second", Double),
    Column("burst", BigInteger),
    Column("destinations_per_day", BigInteger),
    Column("countries", Text),
)

# The request rate shared by every api process (`Store.lease_rate`): a token bucket per account that the
# processes take tokens from in leases. `granted` is the last lease's size, so the one upsert that takes a
# lease can return it (RETURNING sees only the new row).
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("account_id", BigInteger, primary_key=True, autoincrement=False),
    Column("tokens", Double, nullable=False),
    Column("granted", Double, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Destinations counted against an account's daily cap (`Store.lease_daily`), per UTC day (days since the
# epoch); `granted` as in rate_buckets.
daily_counts = Table(
    "daily_counts",
    metadata,
    Column("account_id", BigInteger, primary_key=True, autoincrement=False),
    Column("day", BigInteger, primary_key=True, autoincrement=False),
    Column("used", BigInteger, nullable=False),
    Column("granted", BigInteger, nullable=False),
)

# Opt-out (ARCHITECTURE.md §2, "Two-way messaging"): the numbers each account may not send to, in E.164 when
# valid, else as written without separators (domain/inbound.py number_key). `source` is "keyword" (the handset
# wrote STOP) or "api" (POST /api/OptOuts).
opt_outs = Table(
    "opt_outs",
    metadata,
    Column("account_id", BigInteger, primary_key=True, autoincrement=False),
    Column("number", Text, primary_key=True),
    Column("source", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# The replies an account sends to its keywords (PUT /api/Account OptOutReply, OptInReply, HelpReply): NULL for
# the default (domain/optout.py), "" for none.
account_replies = Table(
    "account_replies",
    metadata,
    Column("account_id", BigInteger, primary_key=True, autoincrement=False),
    Column("opt_out_reply", Text),
    Column("opt_in_reply", Text),
    Column("help_reply", Text),
)

# Replies to keywords, written in the transaction that stored the keyword and turned into a Send of the account
# by the reply sender (switchboard/optouts.py), which deletes the row once the Send is accepted; the Send's
# Idempotency-Key is made of the row's id, so a row sent twice (a crash between the two) is one message.
opt_out_replies = Table(
    "opt_out_replies",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("account_id", BigInteger, nullable=False),
    Column("sender", Text, nullable=False),
    Column("mobile_no", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
