"""When the relay's last broker answer still speaks for the producer's connections."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from servicekit.kafka import BrokerCheck


class Conn:
    def __init__(self) -> None:
        self.open = True

    def connected(self) -> bool:
        return self.open


class Client:
    """What ``broker_view`` asks of aiokafka's client: a node, a Metadata answer."""

    def __init__(self) -> None:
        self._conns: dict[Any, Conn] = {(0, 0): Conn()}
        self.asked = 0

    def get_random_node(self) -> int:
        return 0

    async def send(self, node_id: int, request: Any) -> Any:
        self.asked += 1
        topics = [(0, name, False, [(0, 0)]) for name in request._topics]
        return SimpleNamespace(cluster_id="c1", topics=topics)


async def test_an_answer_holds_while_its_connections_stay_open_and_only_those() -> None:
    client = Client()
    check = BrokerCheck(client, max_age_s=60)  # type: ignore[arg-type]
    assert check.holds() is None  # nothing asked yet
    view = await check.ask(["a.events"])
    assert view.cluster_id == "c1" and view.topics == {"a.events"}
    assert check.holds(["a.events"]) == view and check.same_connections()
    assert check.holds(["b.events"]) is None  # a topic the answer does not list

    client._conns[(1, 0)] = Conn()  # a connection opened since: maybe another broker
    assert check.holds(["a.events"]) is None and not check.same_connections()
    await check.ask(["a.events"])
    assert check.holds(["a.events"]) is not None

    client._conns[(1, 0)].open = False  # the broker behind it went away
    assert check.holds(["a.events"]) is None
    await check.ask(["a.events"])
    client._conns[(1, 0)] = Conn()  # reconnected: another object under the same key
    assert check.holds(["a.events"]) is None
    assert client.asked == 3


async def test_an_answer_is_asked_again_once_it_is_older_than_its_max_age() -> None:
    check = BrokerCheck(Client(), max_age_s=0.05)  # type: ignore[arg-type]
    await check.ask(["a.events"])
    assert check.holds(["a.events"]) is not None
    await asyncio.sleep(0.06)
    assert check.holds(["a.events"]) is None
    check.forget()
    assert check.holds() is None and not check.same_connections()
