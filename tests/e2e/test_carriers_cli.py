"""`switchboard carriers list|test` as a subprocess, against the npm `smpp` SMSC (tests/smsc)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from switchboard.testing import cli, free_port
from tests.integration.smsc import SmscPeer, smsc_fixture

smsc = smsc_fixture(receipt_delay_ms=20)


def config(tmp_path: Path, peer: SmscPeer, *, password: str = "secret", port: int | None = None) -> str:
    path = tmp_path / "switchboard.toml"
    path.write_text(
        f"""
[[sms.carriers]]
name = "smsc1"
kind = "smpp"
host = "{peer.host}"
port = {peer.port if port is None else port}
system_id = "switchboard"
password = "{password}"
binds = 2

[[sms.carriers]]
name = "sim"

[[sms.routes]]
carrier = "sim"
prefix = "+1500555"
"""
    )
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard", *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_list_shows_carriers_and_routes_but_never_the_password(tmp_path: Path, smsc: SmscPeer) -> None:
    path = config(tmp_path, smsc, password="s3cr3t")
    out = cli("carriers", "list", "--config", path)
    assert f"smsc1  smpp  {smsc.host}:{smsc.port}" in out and "binds 2" in out and "password set" in out
    assert "sim  simulator" in out and "prefix +1500555 -> sim" in out
    doc = json.loads(cli("carriers", "list", "--config", path, "--json"))
    assert [c["name"] for c in doc["carriers"]] == ["smsc1", "sim"]
    assert doc["carriers"][0]["password"] == "set"
    assert doc["routes"] == [{"prefix": "+1500555", "country": None, "account": None, "sender": None, "carrier": "sim"}]
    assert "s3cr3t" not in out + json.dumps(doc)


def test_every_bind_comes_up(tmp_path: Path, smsc: SmscPeer) -> None:
    done = run("carriers", "test", "smsc1", "--config", config(tmp_path, smsc), "--timeout", "5")
    assert done.returncode == 0, done.stderr
    assert "bind 1: bound in" in done.stdout and "bind 2: bound in" in done.stdout


def test_a_wrong_password_is_named(tmp_path: Path, smsc: SmscPeer) -> None:
    path = config(tmp_path, smsc, password="wrong")
    done = run("carriers", "test", "smsc1", "--config", path, "--timeout", "5")
    assert done.returncode == 1
    assert "bind refused: ESME_RINVPASWD" in done.stdout
    doc = json.loads(run("carriers", "test", "smsc1", "--config", path, "--json").stdout)
    assert not doc["ok"] and [b["bound"] for b in doc["binds"]] == [False, False]


def test_a_closed_port_fails_within_the_timeout(tmp_path: Path, smsc: SmscPeer) -> None:
    started = time.monotonic()
    done = run("carriers", "test", "smsc1", "--config", config(tmp_path, smsc, port=free_port()), "--timeout", "3")
    assert done.returncode == 1
    assert "connection error" in done.stdout
    assert time.monotonic() - started < 10


def test_to_sends_one_message_and_waits_for_its_receipt(tmp_path: Path, smsc: SmscPeer) -> None:
    since = smsc.mark()
    path = config(tmp_path, smsc)
    args = ("carriers", "test", "smsc1", "--config", path, "--to", "+4915100000000", "--message", "hi")
    done = run(*args, "--sender", "OM", "--timeout", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "accepted: message id" in done.stdout
    assert "receipt: Delivered" in done.stdout
    assert smsc.find("submit_sm", since=since, destination_addr="4915100000000")


def test_an_unknown_carrier_is_a_usage_error(tmp_path: Path, smsc: SmscPeer) -> None:
    done = run("carriers", "test", "nope", "--config", config(tmp_path, smsc))
    assert done.returncode == 2
    assert "no carrier named 'nope'" in done.stderr and "smsc1, sim" in done.stderr
