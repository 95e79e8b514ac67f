"""A real SMSC peer for the SMPP tests: tests/smsc/server.js, built on the npm package `smpp`, run with node.

`SmscPeer(**options)` takes server.js's options as keywords (`receipt_delay_ms=10` is `--receipt-delay-ms
10`, `hex_ids=True` is `--hex-ids`, False or None leaves an option out); `start()` installs the node modules
when they are missing or stale (`npm ci`, as `make test` does), starts the server, and waits for its
"listening" line; `events` are the JSON lines it printed since, and `wait_for` waits for one. The SMSC's
own commands (an MO, an unbind from its side, a dropped connection) go through `command` / `send_mo`.
Without node on PATH, `start()` skips the test.

    smsc = SmscPeer(throttle_every=3)
    smsc.start()
    ... connect to smsc.host, smsc.port ...
    smsc.wait_for("submit_sm", destination_addr="4915100000001")
    smsc.stop()

`smsc_fixture(scope=..., **options)` makes a pytest fixture yielding a started peer, stopped afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMSC_DIR = ROOT / "tests" / "smsc"
SERVER = SMSC_DIR / "server.js"
LOCK = SMSC_DIR / "package-lock.json"
NODE_MODULES = SMSC_DIR / "node_modules"

Event = dict[str, Any]
Scope = Literal["session", "package", "module", "class", "function"]

_install_lock = threading.Lock()


def _stamp() -> Path:
    """The file `make test` touches after `npm ci`: named by the POSIX cksum of package-lock.json."""
    try:
        out = subprocess.run(["cksum", str(LOCK)], capture_output=True, text=True, check=True).stdout
        return NODE_MODULES / f".installed-{out.split()[0]}"
    except (OSError, subprocess.CalledProcessError, IndexError):
        return NODE_MODULES / "smpp" / "package.json"  # no cksum: settle for the package being there


def ensure_installed() -> None:
    """`npm ci` in tests/smsc unless the modules for this package-lock.json are in place; skips without npm."""
    with _install_lock:
        stamp = _stamp()
        if stamp.exists():
            return
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not on PATH: cannot install the test SMSC's node modules (tests/smsc)")
        result = subprocess.run(
            [npm, "ci", "--prefix", str(SMSC_DIR), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"npm ci in {SMSC_DIR} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        stamp.touch()


def _arguments(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        else:
            args += [flag, str(value)]
    return args


class SmscPeer:
    """tests/smsc/server.js as a subprocess: its options, its port, and the events it printed."""

    def __init__(self, **options: Any) -> None:
        self.options = {"port": 0, **options}
        self.host = "127.0.0.1"
        self.port = 0
        self._events: list[Event] = []
        self._stderr: list[str] = []
        self._changed = threading.Condition()
        self._process: subprocess.Popen[str] | None = None
        self._threads: list[threading.Thread] = []

    # --- life ---

    def start(self, timeout: float = 10.0) -> SmscPeer:
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is not on PATH: the SMPP tests need it to run the test SMSC (tests/smsc/server.js)")
        ensure_installed()
        self._process = subprocess.Popen(
            [node, str(SERVER), *_arguments(self.options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
            cwd=SMSC_DIR,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        self._threads = [
            threading.Thread(target=self._read_events, name="smsc-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="smsc-stderr", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        try:
            listening = self.wait_for("listening", timeout=timeout)
        except AssertionError:
            self.stop()
            raise
        self.host = listening["host"]
        self.port = int(listening["port"])
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close its stdin (the server exits on EOF), then terminate or kill it if it lingers."""
        process = self._process
        if process is None:
            return
        self._process = None
        if process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for thread in self._threads:
            thread.join(timeout)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> SmscPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # --- events ---

    def _read_events(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        for line in process.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unparsed", "line": line}
            with self._changed:
                self._events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._events.append({"event": "eof"})
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        process = self._process
        assert process is not None and process.stderr is not None
        for line in process.stderr:
            self._stderr.append(line.rstrip("\n"))

    @property
    def events(self) -> list[Event]:
        """Every event so far, oldest first (a copy)."""
        with self._changed:
            return list(self._events)

    def mark(self) -> int:
        """A position in the events: pass it as `since` to look only at later ones."""
        with self._changed:
            return len(self._events)

    def find(self, event: str, *, since: int = 0, **fields: Any) -> list[Event]:
        """The events named `event` with these field values, from position `since` on."""
        return [e for e in self.events[since:] if _matches(e, event, fields)]

    def wait_for(self, event: str, *, since: int = 0, timeout: float = 5.0, **fields: Any) -> Event:
        """The first event named `event` with these field values from `since` on, waiting up to `timeout` s.
        Fails the test, with the events seen, if none comes (or the server exits)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for e in self._events[since:]:
                    if _matches(e, event, fields):
                        return e
                remaining = deadline - time.monotonic()
                ended = any(e["event"] == "eof" for e in self._events)
                if remaining <= 0 or ended:
                    raise AssertionError(
                        f"no {event} {fields} from the test SMSC within {timeout} s"
                        + (" (it exited)" if ended else "")
                        + f"; events: {self._events[since:]!r}; stderr: {self._stderr[-20:]!r}"
                    )
                self._changed.wait(remaining)

    def wait_count(self, event: str, count: int, *, since: int = 0, timeout: float = 5.0, **fields: Any) -> list[Event]:
        """Wait until at least `count` such events have come; return them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [e for e in self._events[since:] if _matches(e, event, fields)]
                remaining = deadline - time.monotonic()
                if len(found) >= count:
                    return found
                if remaining <= 0:
                    raise AssertionError(f"{len(found)} of {count} {event} {fields} within {timeout} s: {found!r}")
                self._changed.wait(remaining)

    # --- commands ---

    def command(self, cmd: str, **fields: Any) -> None:
        """Send server.js a command on its stdin: "mo", "mo_burst", "unbind", "enquire_link", "drop"."""
        process = self._process
        if process is None or process.stdin is None:
            raise RuntimeError("the test SMSC is not running")
        process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        process.stdin.flush()

    def send_mo(self, source: str, destination: str, text: str = "", *, data_coding: int = 0, **fields: Any) -> None:
        """Make the SMSC send a mobile-originated deliver_sm to the first bound receiver or transceiver."""
        self.command("mo", **{"from": source, "to": destination, "text": text, "data_coding": data_coding, **fields})


def _matches(event: Event, name: str, fields: dict[str, Any]) -> bool:
    return event.get("event") == name and all(event.get(k) == v for k, v in fields.items())


def smsc_fixture(*, scope: Scope = "module", **options: Any) -> Any:
    """A pytest fixture (named by the variable it is assigned to) yielding a started `SmscPeer(**options)`."""

    @pytest.fixture(scope=scope)
    def peer() -> Iterator[SmscPeer]:
        smsc = SmscPeer(**options)
        smsc.start()
        try:
            yield smsc
        finally:
            smsc.stop()

    return peer
