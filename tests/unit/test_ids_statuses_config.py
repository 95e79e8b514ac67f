from __future__ import annotations

from pathlib import Path

import pytest

from switchboard import config
from switchboard.domain.clock import format_time
from switchboard.domain.ids import IdGenerator, id_time
from switchboard.domain.statuses import SmsStatus, can_transition, least_advanced
from switchboard.errors import ConfigError


def test_ids_are_unique_time_ordered_and_fit_63_bits() -> None:
    now = [1_767_225_600_000]
    gen = IdGenerator(node=5, clock_ms=lambda: now[0])
    first = [gen.next() for _ in range(5000)]  # more than one millisecond's 4,096
    now[0] += 1
    later = gen.next()
    assert len(set(first)) == 5000
    assert first == sorted(first) and later > first[-1]
    assert all(0 < i < 2**63 for i in first)
    assert id_time(first[0]).year == 2026


def test_ids_never_go_backwards_when_the_clock_does() -> None:
    now = [1_767_225_600_000]
    gen = IdGenerator(node=0, clock_ms=lambda: now[0])
    a = gen.next()
    now[0] -= 5000
    assert gen.next() > a


def test_a_block_of_ids_is_consecutive_and_does_not_overlap_the_next() -> None:
    gen = IdGenerator(node=1, clock_ms=lambda: 1_767_225_600_000)
    first = gen.block(1001)
    assert gen.next() >= first + 1001


def test_terminal_statuses_never_change_back() -> None:
    for terminal in [s for s in SmsStatus if s.terminal]:
        assert not any(can_transition(terminal, s) for s in SmsStatus)
    assert can_transition(SmsStatus.RECEIVED, SmsStatus.SENT)
    assert can_transition(SmsStatus.SENT, SmsStatus.DELIVERED)
    assert not can_transition(SmsStatus.RECEIVED, SmsStatus.DELIVERED)
    assert can_transition(SmsStatus.SCHEDULED, SmsStatus.CANCELLED)


def test_overall_status_is_delivered_only_when_all_are() -> None:
    assert least_advanced([SmsStatus.DELIVERED, SmsStatus.DELIVERED]) is SmsStatus.DELIVERED
    assert least_advanced([SmsStatus.DELIVERED, SmsStatus.SENT]) is SmsStatus.SENT
    assert least_advanced([SmsStatus.DELIVERED, SmsStatus.FAILED]) is SmsStatus.FAILED


def test_times_are_written_the_vendor_way() -> None:
    assert format_time(1_500_206_936_690) == "2017-07-16 12:08:56.690"
    assert format_time(None) == ""


def test_config_defaults_give_the_embedded_server() -> None:
    c = config.load(env={})
    assert (c.server.host, c.server.port) == ("127.0.0.1", 8080)
    assert c.database_url == "sqlite:///data/switchboard.db"
    assert c.callbacks.allow_private_networks is False
    assert c.callbacks.allow_loopback is False


def test_loopback_callbacks_are_a_setting_of_their_own() -> None:
    c = config.load(env={"SWITCHBOARD_CALLBACKS_ALLOW_LOOPBACK": "true"})
    assert (c.callbacks.allow_loopback, c.callbacks.allow_private_networks) == (True, False)
    c = config.load(env={}, overrides={"callbacks.allow_loopback": True})
    assert (c.callbacks.allow_loopback, c.callbacks.allow_private_networks) == (True, False)


def test_config_file_then_environment_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[database]\nurl = "postgresql://u@h/db"\n')
    c = config.load(f, env={"SWITCHBOARD_SERVER_PORT": "9001"}, overrides={"server.host": "127.0.0.2"})
    assert (c.server.port, c.server.host, c.database_url) == (9001, "127.0.0.2", "postgresql://u@h/db")
    assert config.load(f, env={"SWITCHBOARD_CALLBACKS_ALLOW_PRIVATE_NETWORKS": "true"}).callbacks.allow_private_networks
    assert config.load(f, env={"SWITCHBOARD_VOICE_TTS_CACHE_MB": "50"}).voice.tts_cache_mb == 50


def test_the_data_dir_moves_the_default_database() -> None:
    assert (
        config.load(env={}, overrides={"server.data_dir": "/tmp/x"}).database_url == "sqlite:////tmp/x/switchboard.db"
    )


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[server]\nprot = 1\n", {}, "unknown field `prot`"),
        ('[server]\nport = "abc"\n', {}, "server.port"),
        ("[server]\nport = 70000\n", {}, "1..65535"),
        ("[server\n", {}, "not valid TOML"),
        ('[database]\nurl = "mysql://x"\n', {}, "database.url"),
        ('[[sms.routes]]\ncarrier = "nope"\n', {}, "not one of sms.carriers"),
        # written into SDP's c= line: a name there failed every call of the trunk, not the start
        ('[[voice.trunks]]\nname = "t"\nkind = "sip"\npublic_host = "gw.example.com"\n', {}, "public_host"),
        ('[[voice.trunks]]\nname = "t"\nkind = "sip"\nbind_host = "localhost"\n', {}, "bind_host"),
        ("", {"SWITCHBOARD_SERVER_PROT": "1"}, "unknown environment variable SWITCHBOARD_SERVER_PROT"),
        ("", {"SWITCHBOARD_SERVER_PORT": "eighty"}, "server.port"),
        ("", {"SWITCHBOARD_VOICE_TTS_CACHE_MB": "lots"}, "voice.tts_cache_mb"),
        ("", {"SWITCHBOARD_SMS_CARRIERS": "x"}, "carriers, trunks and routes are set in the config file"),
        ("", {"SWITCHBOARD_VOICE_TRUNKS": "x"}, "carriers, trunks and routes are set in the config file"),
    ],
)
def test_a_bad_config_says_which_key_and_why(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        config.load(f, env=env)


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml", env={})


def test_client_variables_are_not_config_keys() -> None:
    config.load(env={"SWITCHBOARD_API_KEY": "x", "SWITCHBOARD_URL": "http://h"})


def test_client_settings_are_read_from_the_environment_by_config_alone() -> None:
    assert config.client_settings({}) == config.ClientSettings(url="http://127.0.0.1:8080")
    env = {"SWITCHBOARD_URL": "http://127.0.0.1:9", "SWITCHBOARD_API_KEY": "k", "SWITCHBOARD_WEBHOOK_SECRET": "whsec_x"}
    assert config.client_settings(env) == config.ClientSettings("http://127.0.0.1:9", "k", "whsec_x")
    config.load(env=env)  # not configuration keys: `load` leaves them alone


def test_no_module_but_config_reads_the_environment() -> None:
    package = Path(config.__file__).parent
    readers = {
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "os.environ" in (text := path.read_text()) or "getenv" in text
    }
    # testing.py hands the test's environment on to the server subprocesses it starts; it reads no setting.
    assert readers == {"config.py", "testing.py"}
