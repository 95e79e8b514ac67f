"""`switchboard callbacks listen`: the local receiver verifies signatures and prints what it receives."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx

from switchboard.callbacks.signing import new_secret, sign
from switchboard.testing import free_port


def test_the_receiver_verifies_prints_and_can_fail_on_purpose() -> None:
    secret, port = new_secret(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchboard", "callbacks", "listen", "--port", str(port), "--secret", secret,
         "--fail-first", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "listening for callbacks" in proc.stdout.readline()
        body = json.dumps({"ID": "7865", "MobileNo": "0016175551212", "Status": "Delivered"}).encode()
        headers = sign(secrets=[secret], msg_id="msg_1", timestamp=int(time.time()), body=body)
        other = sign(secrets=[new_secret()], msg_id="msg_1", timestamp=int(time.time()), body=body)
        forged = {**headers, "webhook-signature": other["webhook-signature"]}
        url = f"http://127.0.0.1:{port}/"
        with httpx.Client(timeout=5) as client:
            first = client.post(url, content=body, headers=headers)
            second = client.post(url, content=body, headers=headers)
            bad = client.post(url, content=body, headers=forged)
        assert (first.status_code, second.status_code, bad.status_code) == (503, 200, 401)
        lines = [proc.stdout.readline() for _ in range(3)]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # also closes the pipe
    assert "signature ok" in lines[0] and "503 on purpose" in lines[0] and "0016175551212" in lines[0]
    assert "signature ok" in lines[1] and "msg_1" in lines[1]
    assert "REFUSED" in lines[2]


def test_a_malformed_secret_is_refused_at_start() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", "callbacks", "listen", "--port", str(free_port()), "--secret", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "switchboard:" in done.stderr
