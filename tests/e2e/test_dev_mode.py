"""`make run` as a new user gets it: `serve --allow-loopback-callbacks` on a data folder that does not exist
yet. The demo account's callbacks go to the local receiver's loopback URL, private addresses stay refused,
and the database files are created for their owner alone."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from switchboard.testing import ServerProcess


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    data = tmp_path / "fresh" / "data"  # made by serve, as ./data is by the first `make run`
    s = ServerProcess(tmp_path / "run", demo=True, extra_args=("--data-dir", str(data), "--allow-loopback-callbacks"))
    s.start()
    try:
        yield s, data
    finally:
        s.stop()


def test_make_run_reaches_loopback_only_and_keeps_its_files_private(dev_server: tuple[ServerProcess, Path]) -> None:
    server, data = dev_server
    found = re.search(r"shown only now:\s+(\S+)", server.log())
    assert found, server.log()
    assert "callbacks may go to loopback addresses" in server.log()
    headers = {"Authorization": f"Bearer {found.group(1)}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        account = client.get("/api/Account").json()
        assert (account["SmsCallbackUrl"], account["VoiceCallbackUrl"]) == ("http://127.0.0.1:8081/",) * 2
        r = client.put("/api/Account", json={"SmsCallbackUrl": "http://localhost:8081/sms"})
        assert r.status_code == 200, r.text
        for url in ("http://10.0.0.1/", "https://10.0.0.1/", "https://192.168.1.1/", "http://169.254.169.254/"):
            r = client.put("/api/Account", json={"VoiceCallbackUrl": url})
            assert r.status_code == 400 and "refused" in r.json()["Error"], (url, r.text)
        r = client.post(
            "/api/SMS/Send",
            json={"Destination": "+16175550100", "Message": "x", "Sender": "OM", "CallBack": "http://10.0.0.1/cb"},
        )
        assert r.json()["Error ID"] == "127"

    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.glob("switchboard.db*") if ".node-" not in p.name}
    assert modes.keys() >= {"switchboard.db", "switchboard.db-wal", "switchboard.db-shm"}, modes
    assert set(modes.values()) == {0o600}, modes
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
