"""sipp (the Debian package sip-tester) as the far end of our SIP calls: scenario templates, run as a child.

The templates are tests/sipp/<name>.xml, filled in with `str.format` (so a literal brace is doubled; sipp's
own `[keyword]` and `[$variable]` pass through untouched). `render(name, **params)` fills one, with the
defaults of `DEFAULTS[name]` for what is not given:

    uas_answer             ring_ms, hangup ("us": we send BYE; "peer": sipp does, after hold_ms), payload_type
    uas_reject             status (486, 480, 603, 403, 503, ...), reason (by default the RFC 3261 phrase)
    uas_ring_until_cancel  cancel_timeout_ms (the call fails if no CANCEL comes by then)
    uas_silent             silence_ms (sipp answers nothing for that long, then ends the call as a success)
    uas_auth               challenge_status (401 or 407), realm, nonce, qop ("" or "auth"), username, password
    uas_by_number          hold_ms, silence_ms, cancel_timeout_ms: one far end for many calls, each choosing
                           its outcome by the called number's last two digits (see the template)

`SippPeer(name, calls=1, **params)` renders the template into a temporary directory and starts sipp on
127.0.0.1 as a UAS (a child process, never `-bg`) on free UDP ports: `port` for SIP, `media_port` for RTP
(sipp also binds media_port + 2, for video). With `rtp_echo=True` (the default) sipp sends every RTP packet
it gets on media_port back to where it came from, so a test reads what sipp received from its own socket.
`start()` returns once sipp has bound both ports; `stop()` (or `wait()`) returns a `SippResult`: the exit
code, the counts of successful and failed calls from sipp's statistics file, and every SIP message sipp
sent and received, from its message trace. Without sipp on PATH, `start()` skips the test.

    with SippPeer("uas_reject", status=486) as sipp:
        ... INVITE to (sipp.host, sipp.port) ...
    assert sipp.result.successful == 1

What sipp itself does not check, the result can: sipp's <verifyauth> reads only the Authorization header,
so for a 407 `check_digest` verifies the Proxy-Authorization of the retried INVITE from the trace.

Exit codes (`sipp -h`): 0 every call succeeded, 1 at least one failed, 97 stopped by an internal command,
99 no call processed, 255 fatal error, 254 could not bind a socket. sipp also exits 0 on SIGTERM, calls
unfinished, so a test asserts the counts, not the exit code alone.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "tests" / "sipp"
HOST = "127.0.0.1"

# The two ways uas_answer ends, put in place of its {hangup}.
HANGUP_BY_US = """\
  <recv request="BYE" timeout="{bye_timeout_ms}"/>

  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>"""

HANGUP_BY_PEER = """\
  <pause milliseconds="{hold_ms}"/>

  <!-- sipp is the callee: its From is the INVITE's To with its tag, its To the INVITE's From (RFC 3261
       §12.2.1.1); the request goes to the Contact of the INVITE, [next_url] (needs rrs="true") -->
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$our_party];tag=[pid]SIPpTag01[call_number]
      To: [$their_party]
      [last_Call-ID:]
      CSeq: 1 BYE
      Max-Forwards: 70
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>

  <recv response="200" timeout="{bye_timeout_ms}"/>"""

# uas_auth's {verify}: sipp checks the credentials of a 401's retry itself; for a 407's it can only see
# that a Proxy-Authorization is there (check_digest does the rest).
VERIFY_AUTHORIZATION = '<verifyauth assign_to="credentials_valid" username="{username}" password="{password}"/>'
VERIFY_PROXY_AUTHORIZATION = (
    '<ereg regexp="Digest .*" search_in="hdr" header="Proxy-Authorization:" assign_to="credentials_valid"/>'
)

REASONS = {  # RFC 3261 §21
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    500: "Server Internal Error",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
}
ENCODINGS = {0: "PCMU", 8: "PCMA"}  # RFC 3551 §6, table 4

_COMMON: dict[str, Any] = {"ack_timeout_ms": 10_000, "timewait_ms": 300}
DEFAULTS: dict[str, dict[str, Any]] = {
    "uas_answer": {
        **_COMMON,
        "ring_ms": 0,
        "hangup": "us",
        "hold_ms": 1_000,
        "bye_timeout_ms": 60_000,
        "payload_type": 0,
    },
    "uas_reject": {**_COMMON, "ring_ms": 0, "status": 486},
    "uas_ring_until_cancel": {**_COMMON, "cancel_timeout_ms": 60_000},
    "uas_silent": {"silence_ms": 2_000},
    "uas_by_number": {
        **_COMMON,
        "hold_ms": 200,
        "bye_timeout_ms": 60_000,
        "cancel_timeout_ms": 60_000,
        "silence_ms": 3_000,
    },
    "uas_auth": {
        **_COMMON,
        "challenge_status": 401,
        "realm": "switchboard.test",
        "nonce": "4f1c7a2b9d3e",
        "qop": "",
        "username": "switchboard",
        "password": "secret",
        "retry_timeout_ms": 10_000,
        "bye_timeout_ms": 60_000,
        "payload_type": 0,
    },
}


def render(name: str, **params: Any) -> str:
    """The scenario tests/sipp/<name>.xml with `params` (over DEFAULTS[name]) filled in."""
    if name not in DEFAULTS:
        raise ValueError(f"no sipp scenario template {name!r}; there are {sorted(DEFAULTS)}")
    values = {**DEFAULTS[name], **params}
    if "payload_type" in values:
        values.setdefault("encoding", ENCODINGS[int(values["payload_type"])])
    if name == "uas_answer":
        endings = {"us": HANGUP_BY_US, "peer": HANGUP_BY_PEER}
        values["hangup"] = endings[values["hangup"]].format_map(values)
    if name == "uas_reject":
        values.setdefault("reason", REASONS.get(int(values["status"]), "Rejected"))
    if name == "uas_auth":
        status = int(values["challenge_status"])
        if status not in (401, 407):
            raise ValueError(f"a digest challenge is a 401 or a 407, not {status}")
        values.setdefault("challenge_reason", REASONS[status])
        values["challenge_header"] = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        values["qop_param"] = f', qop="{values["qop"]}"' if values["qop"] else ""
        verify = VERIFY_AUTHORIZATION if status == 401 else VERIFY_PROXY_AUTHORIZATION
        values["verify"] = verify.format_map(values)
    return (SCENARIOS / f"{name}.xml").read_text(encoding="utf-8").format_map(values)


# --- what sipp reports ---


@dataclass(frozen=True)
class SippMessage:
    """One SIP message from sipp's message trace: sent by sipp or received by it."""

    direction: Literal["sent", "received"]
    time: str
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def method(self) -> str | None:
        """The method of a request; None for a response."""
        first = self.first_line
        return None if first.startswith("SIP/2.0") else first.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        """The status code of a response; None for a request."""
        first = self.first_line
        return int(first.split()[1]) if first.startswith("SIP/2.0 ") else None

    def header(self, name: str) -> str | None:
        """The value of the first header `name` (case-insensitive), or None."""
        head = self.text.replace("\r\n", "\n").split("\n\n", 1)[0]
        for line in head.split("\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


@dataclass
class SippResult:
    """How a sipp run ended: exit code, call counts (from its statistics), and its message trace."""

    exit_code: int
    successful: int
    failed: int
    counters: dict[str, int] = field(default_factory=dict)  # cumulative "(C)" counters, e.g. "FailedCallRejected"
    messages: list[SippMessage] = field(default_factory=list)
    stderr: str = ""
    screen: str = ""  # sipp's last screen (-trace_screen): scenario counts and its "Last Error"

    def received(self, method_or_status: str | int | None = None) -> list[SippMessage]:
        """Messages sipp received: all, the requests of a method, or the responses with a status."""
        return [m for m in self.messages if m.direction == "received" and _is(m, method_or_status)]

    def sent(self, method_or_status: str | int | None = None) -> list[SippMessage]:
        """Messages sipp sent: all, the requests of a method, or the responses with a status."""
        return [m for m in self.messages if m.direction == "sent" and _is(m, method_or_status)]

    def describe(self) -> str:
        """Everything worth reading when an assertion on this run fails."""
        flow = "\n".join(f"  {m.direction:8} {m.first_line}" for m in self.messages)
        return (
            f"sipp exit {self.exit_code}, {self.successful} successful, {self.failed} failed; "
            f"counters {self.counters}\nmessages:\n{flow}\nstderr: {self.stderr[-2000:]}\n{self.screen[-3000:]}"
        )


def _is(message: SippMessage, method_or_status: str | int | None) -> bool:
    if method_or_status is None:
        return True
    if isinstance(method_or_status, int):
        return message.status == method_or_status
    return message.method == method_or_status


def check_digest(message: SippMessage, *, username: str, password: str) -> bool:
    """Whether the request's Authorization or Proxy-Authorization carries a right MD5 digest response for
    these credentials (RFC 2617 §3.2.2, with or without qop=auth; RFC 3261 §22.4). Written apart from
    switchboard's own digest code on purpose: an independent check of it."""
    value = message.header("Proxy-Authorization") or message.header("Authorization")
    method = message.method
    if value is None or method is None or not value.lower().startswith("digest "):
        return False
    pairs = re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', value[7:])
    params: dict[str, str] = {key.lower(): quoted or bare for key, quoted, bare in pairs}
    if params.get("username") != username or params.get("algorithm", "MD5").upper() != "MD5":
        return False

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{username}:{params.get('realm', '')}:{password}")
    ha2 = md5(f"{method}:{params.get('uri', '')}")
    if params.get("qop"):
        nonce, nc, cnonce = params.get("nonce", ""), params.get("nc", ""), params.get("cnonce", "")
        expected = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{params['qop']}:{ha2}")
    else:
        expected = md5(f"{ha1}:{params.get('nonce', '')}:{ha2}")
    return params.get("response", "").lower() == expected


def _read_messages(path: Path) -> list[SippMessage]:
    """Parse sipp's -trace_msg file: a dashed line with the time, "UDP message sent|received ...", the text."""
    if not path.exists():
        return []
    messages = []
    chunks = re.split(r"^-{10,} (.+)$", path.read_text(encoding="utf-8", errors="replace"), flags=re.M)
    for when, chunk in zip(chunks[1::2], chunks[2::2], strict=True):
        intro, _, text = chunk.lstrip("\n").partition("\n")
        direction: Literal["sent", "received"] = "sent" if " sent" in intro else "received"
        messages.append(SippMessage(direction=direction, time=when.strip(), text=text.strip("\n") + "\n"))
    return messages


def _read_counters(path: Path) -> dict[str, int]:
    """The cumulative counters ("Name(C)" columns) of the last row of sipp's -trace_stat file."""
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        rows = [row for row in csv.reader(f, delimiter=";") if row]
    if len(rows) < 2:
        return {}
    counters = {}
    for name, value in zip(rows[0], rows[-1], strict=False):
        if name.endswith("(C)") and value.isdigit():
            counters[name[:-3]] = int(value)
    return counters


# --- the process ---


def sipp_binary() -> str:
    """The path of sipp; skips the test when it is not installed."""
    sipp = shutil.which("sipp")
    if sipp is None:
        pytest.skip("sipp is not on PATH: install the Debian package sip-tester to run the SIP tests against it")
    return sipp


def _free_port(*, with_plus_two: bool = False) -> int:
    """A UDP port on HOST that is free now (and port + 2 with it, for sipp's video socket)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind((HOST, 0))
            port: int = first.getsockname()[1]
            if not with_plus_two:
                return port
            if port + 2 > 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                try:
                    second.bind((HOST, port + 2))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free UDP port pair on the loopback")


def _bound_ports(pid: int) -> set[int]:
    """The UDP ports the process `pid` has bound, from /proc (Linux)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) > 9 and fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class SippPeer:
    """sipp as a UAS on 127.0.0.1, running the scenario template `name` for `calls` calls."""

    def __init__(
        self,
        name: str,
        *,
        calls: int = 1,
        rtp_echo: bool = True,
        timeout_s: float = 60.0,
        extra_args: tuple[str, ...] = (),
        **params: Any,
    ) -> None:
        self.name = name
        self.calls = calls
        self.rtp_echo = rtp_echo
        self.timeout_s = timeout_s
        self.extra_args = extra_args
        self.params = params
        self.scenario = render(name, **params)  # a template error shows before anything starts
        self.host = HOST
        self.port = 0
        self.media_port = 0
        self.command: list[str] = []
        self.result: SippResult | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.workdir = Path()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def messages(self) -> list[SippMessage]:
        """The SIP messages sipp has sent and received so far, from its message trace, while it runs (for a
        peer that serves many calls; `result` has them once it has stopped)."""
        if self.result is not None:
            return self.result.messages
        return _read_messages(self.workdir / "messages.log")

    def start(self, timeout: float = 10.0) -> SippPeer:
        """Start sipp and return once it has bound its SIP and media ports. Ports are picked free just
        before; if another process takes one in between sipp exits at once, and it is tried again."""
        sipp = sipp_binary()
        self._tmp = tempfile.TemporaryDirectory(prefix=f"sipp-{self.name}-")
        self.workdir = Path(self._tmp.name)
        scenario = self.workdir / f"{self.name}.xml"
        scenario.write_text(self.scenario, encoding="utf-8")
        failure = ""
        for _attempt in range(3):
            self.port = _free_port()
            self.media_port = _free_port(with_plus_two=True)
            self.command = self._command(sipp, scenario, control_port=_free_port())
            with (self.workdir / "stdout.txt").open("wb") as out, (self.workdir / "stderr.txt").open("wb") as err:
                self._process = subprocess.Popen(
                    self.command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.workdir
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                if {self.port, self.media_port} <= _bound_ports(self._process.pid):
                    return self
                time.sleep(0.01)
            if self._process.poll() is None:
                result = self.stop()
                raise AssertionError(f"sipp did not bind its ports within {timeout} s: {self.command}\n{result.stderr}")
            failure = self._read("stderr.txt")
            self._process = None
            if "bind" not in failure.lower():
                break  # not a port taken in the meantime: trying again would fail the same way
        self._tmp.cleanup()
        self._tmp = None
        raise AssertionError(f"sipp exited at start: {self.command}\n{failure}")

    def _command(self, sipp: str, scenario: Path, *, control_port: int) -> list[str]:
        files = self.workdir
        command = [
            sipp, "-sf", str(scenario),
            "-i", HOST, "-p", str(self.port), "-bind_local",  # listen on the loopback only
            "-mi", HOST, "-mp", str(self.media_port),
            "-ci", HOST, "-cp", str(control_port),  # its remote-control socket, else 0.0.0.0:8888 and up
            "-m", str(self.calls),
            "-nostdin",
            "-timeout", f"{self.timeout_s:g}s", "-timeout_error",
            "-trace_stat", "-stf", str(files / "stat.csv"), "-fd", "1",
            "-trace_msg", "-message_file", str(files / "messages.log"),
            "-trace_err", "-error_file", str(files / "errors.log"),
            "-trace_logs", "-log_file", str(files / "actions.log"),
            "-trace_screen", "-screen_file", str(files / "screen.log"),
        ]  # fmt: skip
        if self.rtp_echo:
            command.append("-rtp_echo")
        return command + list(self.extra_args)

    def wait(self, timeout: float = 30.0) -> SippResult:
        """Wait for sipp to end by itself (after `calls` calls, or its global timeout); stop it if it
        has not by `timeout`."""
        process = self._process
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        return self.stop()

    def stop(self, timeout: float = 5.0) -> SippResult:
        """End sipp (SIGTERM, then SIGKILL if it lingers) if it still runs, and read what it reported."""
        if self.result is not None:
            return self.result
        process = self._process
        if process is None:
            raise RuntimeError("sipp was not started")
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        counters = _read_counters(self.workdir / "stat.csv")
        self.result = SippResult(
            exit_code=process.returncode,
            successful=counters.get("SuccessfulCall", 0),
            failed=counters.get("FailedCall", 0),
            counters=counters,
            messages=_read_messages(self.workdir / "messages.log"),
            stderr=self._read("stderr.txt") + self._read("errors.log"),
            screen=self._read("screen.log"),
        )
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return self.result

    def _read(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def __enter__(self) -> SippPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def run_sipp(name: str, **options: Any) -> Iterator[SippPeer]:
    """A started `SippPeer(name, **options)`, stopped at the end of the block (its `result` set)."""
    peer = SippPeer(name, **options)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()
