"""core's HTTP adapters against the real simulators: what each answer becomes."""

from __future__ import annotations

import aiohttp
import httpx
import pytest

from core.adapters.midas import Midas, MidasRefused, MidasRejected
from core.adapters.model_client import ModelService, ModelUnavailable
from core.adapters.vertica import Vertica, VerticaUnavailable
from simulators.app import build_app
from tests.support import free_port, serving

pytestmark = pytest.mark.connected


async def test_answers_timeouts_and_refusals_become_the_adapters_outcomes() -> None:
    async with (
        serving(build_app(), free_port()) as url,
        httpx.AsyncClient(base_url=url) as control,
        aiohttp.ClientSession() as http,
    ):
        vertica = Vertica(http, f"{url}/vertica", timeout_s=0.3)
        batch = await vertica.training_batch("7", 0, 10)
        assert len(batch.rows) == 10 and batch.total > 10 and batch.next_offset == 10

        await control.put("/vertica/_faults", json={"delayS": 1.0})
        with pytest.raises(VerticaUnavailable, match=r"timed out after 0\.3s"):
            await vertica.training_batch("7", 0, 10)
        await control.put("/vertica/_faults", json={"failNext": 1})
        with pytest.raises(VerticaUnavailable, match="vertica answered 5"):
            await vertica.training_batch("7", 0, 10)

        midas = Midas(http, f"{url}/midas", timeout_s=2)
        send_id = await midas.send_lms("key-1", 1, "alice", 100, "hello")
        assert send_id and await midas.send_lms("key-1", 1, "alice", 100, "hello") == send_id
        await control.put("/midas/_faults", json={"failNext": 1, "status": 400})
        with pytest.raises(MidasRejected, match=r"midas rejected the send: 400 .*failure switched"):
            await midas.send_lms("key-2", 2, "alice", 100, "hello")
        await control.put("/midas/_faults", json={"failNext": 1, "status": 503})
        with pytest.raises(MidasRefused, match="midas answered 503"):
            await midas.send_lms("key-3", 3, "alice", 100, "hello")

        closed = ModelService(http, f"http://127.0.0.1:{free_port()}", timeout_s=1)
        with pytest.raises(ModelUnavailable, match="model unreachable: ClientConnector"):
            await closed.request_state("1")
