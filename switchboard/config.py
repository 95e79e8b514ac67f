"""Configuration: one TOML file, `SWITCHBOARD_*` environment overrides, then CLI flags (ARCHITECTURE.md §4).

The only module that reads the environment: `load` for the server's configuration, `client_settings` for
what the client commands take from it (`SWITCHBOARD_URL`, `SWITCHBOARD_API_KEY`,
`SWITCHBOARD_WEBHOOK_SECRET`). Every mistake is a `ConfigError` naming the key and what is
wrong with it; unknown keys are mistakes too, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from switchboard.callbacks import RETRY_SCHEDULE
from switchboard.errors import ConfigError

ENV_PREFIX = "SWITCHBOARD_"
DEFAULT_URL = "http://127.0.0.1:8080"
"""Where the client commands find the server when neither --url nor SWITCHBOARD_URL says."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "./data"
    access_log: bool = True
    """One log line per request: method, path (never the query string: it may hold a key), status, time."""


class DatabaseConfig(_Section):
    url: str | None = None
    """`sqlite:///path` or `postgresql://user@host:5432/db`; default: `switchboard.db` in the data folder."""
    pool_size: int = 10


class CallbacksConfig(_Section):
    allow_loopback: bool = False
    """Let callback URLs reach loopback addresses (127.0.0.0/8, ::1, localhost), over plain http too: local
    development (`make run`). Private networks stay refused."""
    allow_private_networks: bool = False
    """Let callback URLs reach every address, private networks and loopback included, over http too: only for
    an operator whose receivers are on an internal network on purpose."""
    timeout_seconds: float = 10.0
    """A receiver must answer with a 2xx within this to count as delivered."""
    connections_per_host: int = 16
    """Open connections to one receiver host at most."""
    retry_schedule: list[float] = msgspec.field(default_factory=lambda: list(RETRY_SCHEDULE))
    """Seconds before each retry (±10 % jitter); after the last, the callback is failed (replayable)."""


class LimitsConfig(_Section):
    requests_per_second: float = 1000.0
    """Per account, for Send and Call; 0 turns the limit off."""
    burst: int = 2000


class WorkerConfig(_Section):
    batch_size: int = 500
    """Destinations claimed at once."""
    lease_seconds: float = 60.0
    """A claim not finished within this is handed out again (the worker is assumed dead)."""
    poll_interval: float = 1.0
    """How often to look for due work when nothing woke the worker."""
    retry_seconds: float = 30.0
    """Delay before a transient carrier failure is tried again."""


class SmsCarrierConfig(_Section):
    name: str
    kind: Literal["simulator", "smpp"] = "simulator"
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    binds: int = 1
    window: int = 10
    rate: float = 500.0
    delay: float = 0.5
    """Simulator only: seconds from submit to the delivery receipt."""
    id_form: Literal["text", "decimal", "hex"] = "text"
    """SMPP: how the SMSC writes message ids in submit_sm_resp (and receipt TLVs)."""
    receipt_id_form: Literal["text", "decimal", "hex"] | None = None
    """SMPP: how it writes them in receipt texts (`id:...`); default: as `id_form`."""


class SmsRouteConfig(_Section):
    carrier: str
    prefix: str | None = None
    country: str | None = None
    account: str | None = None
    sender: str | None = None


class SmsConfig(_Section):
    carriers: list[SmsCarrierConfig] = msgspec.field(default_factory=list)
    routes: list[SmsRouteConfig] = msgspec.field(default_factory=list)


class VoiceTrunkConfig(_Section):
    name: str
    kind: Literal["simulator", "sip"] = "simulator"
    host: str = "127.0.0.1"
    port: int = 5060
    username: str = ""
    password: str = ""
    cps: float = 10.0
    """Call setups per second at most; calls beyond it wait their turn."""
    max_calls: int = 500
    """Concurrent calls at most; calls beyond it wait for a free channel."""
    delay: float = 1.0
    """Simulator only: seconds a number rings before it answers."""
    bind_host: str = "0.0.0.0"
    """SIP: the local address the SIP and RTP sockets bind."""
    bind_port: int = 0
    """SIP: the local SIP port; 0 is any free one (a trunk that trusts our address may want 5060)."""
    public_host: str | None = None
    """SIP: the address to write in Via, Contact and SDP instead of the one found (behind NAT)."""
    caller_id_format: Literal["as_given", "e164", "digits"] = "as_given"
    """SIP: how the request's Sender is written as the caller ID (From)."""
    number_format: Literal["as_given", "e164", "digits"] = "e164"
    """SIP: how the called number is written in the Request-URI and To."""
    dial_prefix: str = ""
    """SIP: put before the called number (a trunk's technical prefix)."""
    from_domain: str | None = None
    """SIP: the domain of From; the trunk's host when not given."""
    rtp_ports: list[int] = msgspec.field(default_factory=lambda: [10000, 20000])
    """SIP: the RTP port range, [first, last]; even ports are used."""
    codecs: list[str] = msgspec.field(default_factory=lambda: ["PCMU", "PCMA"])
    """SIP: the G.711 laws offered, in order of preference."""
    asserted_identity: bool = False
    """SIP: also send P-Asserted-Identity with the caller ID (RFC 3325)."""
    t1_ms: int = 500
    """SIP: RFC 3261's T1, the round-trip estimate retransmissions start from; an INVITE with no response at
    all is given up after 64 × T1 (32 s by default). Lower it only on a fast, known network."""


class VoiceRouteConfig(_Section):
    trunk: str
    prefix: str | None = None
    country: str | None = None
    account: str | None = None
    sender: str | None = None


class VoiceConfig(_Section):
    trunks: list[VoiceTrunkConfig] = msgspec.field(default_factory=list)
    routes: list[VoiceRouteConfig] = msgspec.field(default_factory=list)
    tts_cache_mb: int = 200
    """Rendered speech kept on disk (in the data folder's tts-cache) at most."""


class Config(_Section):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    database: DatabaseConfig = msgspec.field(default_factory=DatabaseConfig)
    callbacks: CallbacksConfig = msgspec.field(default_factory=CallbacksConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    worker: WorkerConfig = msgspec.field(default_factory=WorkerConfig)
    sms: SmsConfig = msgspec.field(default_factory=SmsConfig)
    voice: VoiceConfig = msgspec.field(default_factory=VoiceConfig)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{Path(self.server.data_dir) / 'switchboard.db'}"


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """What the client commands read from the environment, as defaults for their flags. Not the server's
    configuration: no file, no section, and `load` leaves these variables alone."""

    url: str = DEFAULT_URL
    """`SWITCHBOARD_URL`: the server, for `send`, `status`, `call`, ... (`--url`)."""
    api_key: str | None = None
    """`SWITCHBOARD_API_KEY`: the key those commands send (`--api-key`)."""
    webhook_secret: str | None = None
    """`SWITCHBOARD_WEBHOOK_SECRET`: what `callbacks listen` verifies signatures with (`--secret`)."""


def client_settings(env: Mapping[str, str] | None = None) -> ClientSettings:
    """`ClientSettings` from `env` (default: this process's environment)."""
    env = os.environ if env is None else env
    return ClientSettings(
        url=env.get(f"{ENV_PREFIX}URL", DEFAULT_URL),
        api_key=env.get(f"{ENV_PREFIX}API_KEY"),
        webhook_secret=env.get(f"{ENV_PREFIX}WEBHOOK_SECRET"),
    )


_ENV_SECTIONS: dict[str, type[_Section]] = {
    "server": ServerConfig,
    "database": DatabaseConfig,
    "callbacks": CallbacksConfig,
    "limits": LimitsConfig,
    "worker": WorkerConfig,
    "sms": SmsConfig,
    "voice": VoiceConfig,
}
_TABLE_LISTS = frozenset({("sms", "carriers"), ("sms", "routes"), ("voice", "trunks"), ("voice", "routes")})
"""Lists of tables: set in the config file only."""


def _env_keys() -> dict[str, tuple[str, str]]:
    """`SWITCHBOARD_SECTION_KEY` → (section, key) for every scalar key; lists of tables have none."""
    return {
        f"{ENV_PREFIX}{section}_{key}".upper(): (section, key)
        for section, cls in _ENV_SECTIONS.items()
        for key in cls.__struct_fields__
        if (section, key) not in _TABLE_LISTS
    }


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read `path` (optional), apply `SWITCHBOARD_*` variables from `env`, then `overrides`
    ({"server.port": 9000, ...}, from CLI flags; None values are ignored)."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
        except OSError as e:
            raise ConfigError(f"config file {path} cannot be read: {e.strerror}") from None

    known = _env_keys()
    section_prefixes = tuple(f"{ENV_PREFIX}{section}_".upper() for section in _ENV_SECTIONS)
    for name, value in (os.environ if env is None else env).items():
        if not name.startswith(section_prefixes):
            continue  # SWITCHBOARD_URL, SWITCHBOARD_API_KEY and the like: `client_settings`
        if name not in known and name.startswith((f"{ENV_PREFIX}SMS_", f"{ENV_PREFIX}VOICE_")):
            raise ConfigError(f"{name}: carriers, trunks and routes are set in the config file, not the environment")
        if name not in known:
            raise ConfigError(f"unknown environment variable {name} (known: {', '.join(sorted(known))})")
        section, key = known[name]
        raw.setdefault(section, {})[key] = value
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        raw.setdefault(section, {})[key] = value

    try:
        # strict=False lets "8080" from the environment become an int, "true" a bool.
        config = msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as e:
        where = str(e).replace("$.", "")
        raise ConfigError(f"invalid configuration: {where}") from None
    _check(config)
    return config


def _check(config: Config) -> None:
    if not 0 < config.server.port < 65536:
        raise ConfigError(f"server.port must be 1..65535, not {config.server.port}")
    url = config.database_url
    if not (url.startswith("sqlite:///") or url.startswith(("postgresql://", "postgres://"))):
        raise ConfigError(f"database.url must start with sqlite:/// or postgresql://, not {url!r}")
    names = [c.name for c in config.sms.carriers]
    if len(set(names)) != len(names):
        raise ConfigError("sms.carriers: two carriers have the same name")
    for c in config.sms.carriers:
        if c.kind == "smpp" and not (0 < c.port < 65536 and c.host):
            raise ConfigError(f"sms.carriers {c.name!r}: an SMPP carrier needs a host and a port 1..65535")
        if c.binds < 1 or c.window < 1 or c.rate <= 0:
            raise ConfigError(f"sms.carriers {c.name!r}: binds, window and rate must be positive")
    for r in config.sms.routes:
        if r.carrier not in names:
            raise ConfigError(f"sms.routes: carrier {r.carrier!r} is not one of sms.carriers")
    trunks = [t.name for t in config.voice.trunks]
    if len(set(trunks)) != len(trunks):
        raise ConfigError("voice.trunks: two trunks have the same name")
    for t in config.voice.trunks:
        if t.cps <= 0 or t.max_calls < 1:
            raise ConfigError(f"voice.trunks {t.name!r}: cps and max_calls must be positive")
        if t.kind == "sip" and not (0 < t.port < 65536 and t.host):
            raise ConfigError(f"voice.trunks {t.name!r}: a SIP trunk needs a host and a port 1..65535")
        first, last = [*t.rtp_ports, 0, 0][:2]
        if len(t.rtp_ports) != 2 or not 1024 <= first < last <= 65535:
            raise ConfigError(f"voice.trunks {t.name!r}: rtp_ports must be [first, last] within 1024..65535")
        if not 10 <= t.t1_ms <= 5000:
            raise ConfigError(f"voice.trunks {t.name!r}: t1_ms must be 10..5000")
        for key, value in (("bind_host", t.bind_host), ("public_host", t.public_host)):
            # sockets bind an address, and SDP's c= line carries one: a name would fail every call
            if t.kind == "sip" and value is not None and not _is_ip(value):
                raise ConfigError(f"voice.trunks {t.name!r}: {key} must be an IP address, not {value!r}")
        if not t.codecs or any(c.upper() not in ("PCMU", "PCMA") for c in t.codecs):
            raise ConfigError(f"voice.trunks {t.name!r}: codecs must list PCMU and/or PCMA")
    for vr in config.voice.routes:
        if vr.trunk not in trunks:
            raise ConfigError(f"voice.routes: trunk {vr.trunk!r} is not one of voice.trunks")
    cb = config.callbacks
    if cb.timeout_seconds <= 0 or cb.connections_per_host < 1:
        raise ConfigError("callbacks.timeout_seconds and callbacks.connections_per_host must be positive")
    if not cb.retry_schedule or any(not 0 < step <= 7 * 86400 for step in cb.retry_schedule):
        raise ConfigError("callbacks.retry_schedule must list seconds, each more than 0 and at most a week")
    if config.worker.batch_size < 1 or config.worker.lease_seconds <= 0:
        raise ConfigError("worker.batch_size and worker.lease_seconds must be positive")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
