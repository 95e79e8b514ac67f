"""Running a real Switchboard server as a subprocess, for the end-to-end tests and the benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run `switchboard ARGS` and return what it printed; raise with its stderr when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if done.returncode != 0:
        raise RuntimeError(f"switchboard {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


class ServerProcess:
    """`switchboard serve` on a free port with its own data folder and config file."""

    def __init__(
        self,
        data_dir: Path,
        *,
        config: str = "",
        server: str = "",
        extra_args: tuple[str, ...] = (),
        command: str = "serve",
        demo: bool = False,
    ) -> None:
        """`config` is TOML appended to the file; `server` is more keys for its [server] table. `demo`: let
        `serve` create the demo account (and print its key) on first start, as `make run` does."""
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = data_dir / "switchboard.toml"
        self.log_path = data_dir / "server.log"
        self._config = config
        self._server = server
        self._extra = extra_args
        self._command = command
        self._demo = demo
        self.process: subprocess.Popen[bytes] | None = None

    def create_account(self, name: str, *extra: str) -> dict[str, Any]:
        out = cli("accounts", "create", name, "--json", "--config", str(self.config_path), *extra)
        result: dict[str, Any] = json.loads(out)
        return result

    def write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            f'[server]\ndata_dir = "{self.data_dir}"\nport = {self.port}\n{self._server}\n{self._config}'
        )

    def start(self, timeout: float = 30) -> None:
        self.write_config()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "switchboard", self._command, "--config", str(self.config_path)]
            + (["--no-demo"] if self._command == "serve" and not self._demo else [])
            + list(self._extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not answer within {timeout}s: {self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no chance to flush or clean up, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


FINAL_STATUSES = frozenset({"Delivered", "Undelivered", "Expired", "Rejected", "Failed", "Cancelled"})


def wait_final(client: Any, ident: str, timeout: float) -> list[str]:
    """The statuses of a Send's destinations once all are final, or as they are after `timeout` seconds;
    `client` is an httpx.Client with the key and base URL set."""
    deadline = time.monotonic() + timeout
    while True:
        doc = client.get("/api/SMS/GetStatus", params={"ID": ident}).json()
        statuses = [d["Status"] for d in doc["Destinations"]]
        if all(s in FINAL_STATUSES for s in statuses) or time.monotonic() > deadline:
            return statuses
        time.sleep(0.2)
