"""Two-way messaging end to end: `switchboard serve` bound to the npm `smpp` SMSC (tests/smsc), numbers assigned
with the CLI, mobile-originated messages sent by the SMSC reaching the owner account's real callback receiver,
signed with that account's secret and verified, listed by `GET /api/SMS/Inbound`, and the rest kept in the
operator's unrouted inbox (`switchboard inbound list --unrouted`)."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.testing import ServerProcess, cli
from tests.e2e.receiver import Receiver, wait_for
from tests.integration.smsc import SmscPeer

SHARED = "+16175550100"
CONFIG = """
[worker]
poll_interval = 0.2

[callbacks]
allow_loopback = true
timeout_seconds = 2
retry_schedule = [0.2, 0.4, 0.8, 1, 1, 1, 1, 1, 1]

[[sms.carriers]]
name = "smsc1"
kind = "smpp"
host = "{host}"
port = {port}
system_id = "switchboard"
password = "secret"
"""


def admin(server: ServerProcess, *args: str) -> str:
    return cli(*args, "--config", str(server.config_path))


def test_mo_messages_reach_their_accounts_receivers_signed_or_stay_in_the_unrouted_inbox(tmp_path: Path) -> None:
    with SmscPeer() as smsc, Receiver(fail_first=0) as acme_hooks, Receiver(fail_first=0) as pizza_hooks:
        server = ServerProcess(tmp_path / "server", config=CONFIG.format(host=smsc.host, port=smsc.port))
        server.write_config()
        acme: dict[str, Any] = server.create_account("acme")
        pizza: dict[str, Any] = server.create_account("pizza")
        acme_hooks.secret, pizza_hooks.secret = acme["webhook_secret"], pizza["webhook_secret"]
        # The number written three ways: one number.
        assert "acme's" in admin(server, "numbers", "assign", "acme", "0016175550100")
        assert "pizza's" in admin(server, "numbers", "assign", "pizza", "+1 617 555 0100", "--keyword", " Pizza ")
        with pytest.raises(RuntimeError, match="assigned to acme"):
            admin(server, "numbers", "assign", "pizza", "16175550100")
        listed = json.loads(admin(server, "numbers", "list", "--json"))
        assert [(n["number"], n["keyword"], n["account"]) for n in listed] == [
            (SHARED, "", "acme"),
            (SHARED, "PIZZA", "pizza"),
        ]
        server.start()
        try:
            smsc.wait_for("bind", timeout=15)
            for account, hooks in ((acme, acme_hooks), (pizza, pizza_hooks)):
                with httpx.Client(base_url=server.url, headers=_auth(account), timeout=10) as client:
                    set_url = client.put("/api/Account", json={"InboundCallbackUrl": hooks.url})
                    assert set_url.status_code == 200 and set_url.json()["InboundCallbackUrl"] == hooks.url
            mark = smsc.mark()
            smsc.send_mo("4915100000077", "16175550100", "Hello acme")
            smsc.send_mo("4915100000078", "16175550100", "  pIZZa   large, no olives")
            smsc.send_mo("4915100000079", "16175550199", "nobody has this number")
            answers = smsc.wait_count("deliver_sm_resp", 3, since=mark, timeout=15)
            assert [a["status"] for a in answers] == [0, 0, 0]  # each acknowledged once stored
            wait_for(acme_hooks, 1, 20)
            wait_for(pizza_hooks, 1, 20)
            time.sleep(0.5)  # nothing else comes: the unrouted message has no callback
            with httpx.Client(base_url=server.url, headers=_auth(acme), timeout=10) as client:
                mine = client.get(
                    "/api/SMS/Inbound", params={"To": "0016175550100", "MobileNo": "+49 151 00000077"}
                ).json()
                numbers = client.get("/api/Numbers").json()
            with httpx.Client(base_url=server.url, headers=_auth(pizza), timeout=10) as client:
                pizzas = client.get("/api/SMS/Inbound").json()
        finally:
            server.stop()

    assert acme_hooks.bad_signatures == 0 and pizza_hooks.bad_signatures == 0
    [(_, to_acme)] = acme_hooks.accepted
    [(_, to_pizza)] = pizza_hooks.accepted
    assert {k: to_acme[k] for k in ("MobileNo", "To", "Message", "Segments", "Keyword")} == {
        "MobileNo": "+4915100000077", "To": SHARED, "Message": "Hello acme", "Segments": 1, "Keyword": ""
    }  # fmt: skip
    assert (to_pizza["Message"], to_pizza["Keyword"], to_pizza["To"]) == ("  pIZZa   large, no olives", "PIZZA", SHARED)
    assert [m["ID"] for m in mine["Messages"]] == [to_acme["ID"]] and mine["Messages"][0] == to_acme
    assert [m["ID"] for m in pizzas["Messages"]] == [to_pizza["ID"]] and pizzas["Next"] == ""
    assert [(n["Number"], n["Keyword"]) for n in numbers["Numbers"]] == [(SHARED, "")]
    inbox = json.loads(admin(server, "inbound", "list", "--unrouted", "--json"))
    assert [(m["MobileNo"], m["To"], m["Message"]) for m in inbox["Messages"]] == [
        ("+4915100000079", "+16175550199", "nobody has this number")
    ]
    assert admin(server, "numbers", "unassign", SHARED, "--keyword", "PIZZA").startswith("unassigned")


def _auth(account: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['api_key']}"}


def test_the_inbound_listing_refuses_bad_parameters_and_needs_a_key(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server")
    server.write_config()
    account: dict[str, Any] = server.create_account("acme")
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers=_auth(account), timeout=10) as client:
            assert client.get("/api/SMS/Inbound").json() == {"Messages": [], "Next": ""}
            assert client.get("/api/numbers/").json() == {"Numbers": []}  # any letter case, trailing slash
            since = client.get("/api/SMS/Inbound", params={"Since": "2025-06-15 15:06:40", "To": "12345"})
            assert since.status_code == 200
            for params, error in (
                ({"Limit": "0"}, "Limit must be a whole number from 1 to 500"),
                ({"Limit": "501"}, "Limit must be"),
                ({"Before": "x"}, "Before must be"),
                ({"Since": "yesterday"}, "Since must be a time"),
                ({"To": "12\x00"}, "To is not a number"),  # PostgreSQL refuses NUL in text: never ask it
                ({"MobileNo": "1" * 60_000}, "MobileNo is not a number"),
            ):
                r = client.get("/api/SMS/Inbound", params=params)
                assert (r.status_code, error in r.json()["Error"]) == (400, True), params
        assert httpx.get(server.url + "/api/SMS/Inbound", timeout=10).status_code == 401
        assert httpx.get(server.url + "/api/Numbers", timeout=10).status_code == 401
    finally:
        server.stop()


def test_a_three_part_ucs2_mo_arrives_as_one_message_with_a_character_split_across_parts(tmp_path: Path) -> None:
    text = "A" * 59 + "👋" + " Grüße aus Köln, 你好! " * 4  # the wave's surrogate pair straddles parts 1 and 2
    octets = text.encode("utf-16-be")
    cuts = [0, 120, 240, len(octets)]  # 60 UTF-16 units a part: the first part ends on the high surrogate
    parts = [octets[a:b] for a, b in itertools.pairwise(cuts)]
    with SmscPeer() as smsc, Receiver(fail_first=0) as hooks:
        server = ServerProcess(tmp_path / "server", config=CONFIG.format(host=smsc.host, port=smsc.port))
        server.write_config()
        acme: dict[str, Any] = server.create_account("acme")
        hooks.secret = acme["webhook_secret"]
        admin(server, "numbers", "assign", "acme", SHARED)
        server.start()
        try:
            smsc.wait_for("bind", timeout=15)
            with httpx.Client(base_url=server.url, headers=_auth(acme), timeout=10) as client:
                assert client.put("/api/Account", json={"InboundCallbackUrl": hooks.url}).status_code == 200
                mark = smsc.mark()
                for seq in (2, 3, 1):  # out of order: the message is whole when the last one to come is stored
                    udh = bytes([5, 0, 3, 0x2A, 3, seq])
                    smsc.send_mo("4915100000077", "16175550100", hex=(udh + parts[seq - 1]).hex(), data_coding=8,
                                 esm_class=0x40)  # fmt: skip
                answers = smsc.wait_count("deliver_sm_resp", 3, since=mark, timeout=15)
                assert [a["status"] for a in answers] == [0, 0, 0]  # each part acknowledged once stored
                wait_for(hooks, 1, 20)
                time.sleep(0.5)  # and no second callback: one message, not three
                listed = client.get("/api/SMS/Inbound").json()["Messages"]
        finally:
            server.stop()
    assert hooks.bad_signatures == 0
    [(_, body)] = hooks.accepted
    assert (body["Message"], body["Segments"], body["MobileNo"], body["To"]) == (text, 3, "+4915100000077", SHARED)
    assert [(m["Message"], m["Segments"]) for m in listed] == [(text, 3)]
