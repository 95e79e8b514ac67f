"""`sms.smpp.probe`: each bind's outcome, and one message with its receipt, as a report (fake SMSC)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from switchboard.domain.clock import SystemClock
from switchboard.sms.simulator import SimulatedCarrier
from switchboard.sms.smpp.connector import SmppCarrier
from switchboard.sms.smpp.pdu import BindTransceiver, CommandStatus
from switchboard.sms.smpp.probe import BindOutcome, ProbeMessage, probe
from tests.unit.fake_smsc import FakeSmsc


@pytest.fixture
async def smsc() -> AsyncIterator[FakeSmsc]:
    server = FakeSmsc()
    await server.start()
    yield server
    await server.stop()


def carrier(port: int, binds: int = 2) -> SmppCarrier:
    return SmppCarrier(
        name="smsc1", host="127.0.0.1", port=port, system_id="sb", password="pw", clock=SystemClock(), binds=binds
    )


async def test_every_bind_is_reported_with_the_carriers_own_credentials(smsc: FakeSmsc) -> None:
    report = await probe(carrier(smsc.port), limit=2)
    assert report.ok and report.kind == "smpp" and report.peer == f"127.0.0.1:{smsc.port}"
    assert [(b.bind, b.bound, b.error) for b in report.binds or []] == [(1, True, None), (2, True, None)]
    binds = smsc.received(BindTransceiver)
    assert [(b.system_id, b.password) for b in binds] == [("sb", "pw"), ("sb", "pw")]
    assert report.as_json()["binds"][0].keys() == {"bind", "bound", "seconds", "error"}


async def test_a_refused_bind_names_the_status_and_no_message_is_sent(smsc: FakeSmsc) -> None:
    smsc.bind_status = CommandStatus.ESME_RINVPASWD
    report = await probe(carrier(smsc.port, binds=1), limit=2, message=ProbeMessage("+4915100000000", "OM", "hi"))
    (bind,) = report.binds or []
    assert not bind.bound and bind.error is not None and bind.error.startswith("bind refused: ESME_RINVPASWD")
    assert report.message is not None and not report.message.sent
    assert not report.ok
    assert report.as_json()["message"] == {"to": "+4915100000000", "sent": False, "error": "not sent: no bind came up"}


async def test_the_simulator_sends_one_message_and_its_receipt_comes() -> None:
    simulator = SimulatedCarrier(name="sim", delay=0.05, rate=100, clock=SystemClock())
    report = await probe(simulator, limit=2, message=ProbeMessage("+16175551212", "OM", "hi"))
    assert report.binds is None and report.simulated
    assert report.message is not None and report.message.accepted
    assert report.message.receipt is not None and report.message.receipt.status == "Delivered"
    assert report.ok and report.as_json()["ok"] is True


def test_ok_needs_every_bind() -> None:
    from switchboard.sms.smpp.probe import ProbeReport

    up, down = BindOutcome(1, True, 0.1, None), BindOutcome(2, False, 0.1, "no answer within 1 s")
    assert ProbeReport("c", simulated=False, binds=[up]).ok
    assert not ProbeReport("c", simulated=False, binds=[up, down]).ok
