"""Client CPU of one outgoing HTTP call: httpx vs aiohttp, against the chat simulator.

Run on demand, never in the test suite::

    .venv/bin/python -m bench.http_clients --calls 2000 --rounds 3

Starts the simulators in their own process (``nocode serve simulators``) and posts a chat
message (``POST /chat/webhook``, JSON body and an ``Idempotency-Key``, as notice does)
``--calls`` times, one after another, from one ``httpx.AsyncClient`` and then from one
``aiohttp.ClientSession``, on uvloop as the services run. Prints the client process's CPU
µs per call (``time.process_time``: the simulator's CPU is not in it), medians of rounds.
Why notice's chat posts and core's calls to Vertica, MIDAS and model use aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys

import aiohttp
import httpx
import uvloop

from bench.procs import client_cpu_us
from tests.support import free_port

BODY = {"text": "request 1: approved"}
HEADERS = {"Idempotency-Key": "bench"}


async def measure(base: str, calls: int, rounds: int) -> dict[str, float]:
    url = f"{base}/chat/webhook"
    results: dict[str, list[float]] = {"httpx": [], "aiohttp": []}
    async with httpx.AsyncClient() as client, aiohttp.ClientSession() as session:

        async def with_httpx() -> None:
            response = await client.post(url, json=BODY, headers=HEADERS)
            response.raise_for_status()

        async def with_aiohttp() -> None:
            async with session.post(url, json=BODY, headers=HEADERS) as response:
                response.raise_for_status()
                await response.read()

        for _ in range(rounds):
            results["httpx"].append(await client_cpu_us(with_httpx, calls))
            results["aiohttp"].append(await client_cpu_us(with_aiohttp, calls))
    return {name: statistics.median(values) for name, values in results.items()}


async def wait_ready(base: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(f"{base}/health/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the simulators did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    simulators = subprocess.Popen(
        [sys.executable, "-m", "nocode", "serve", "simulators"],
        env={**os.environ, "SIMULATORS_PORT": str(port)},
        stdout=subprocess.DEVNULL,  # the chat simulator prints every message
    )
    base = f"http://127.0.0.1:{port}"
    try:
        uvloop.run(wait_ready(base))
        results = uvloop.run(measure(base, args.calls, args.rounds))
    finally:
        simulators.terminate()
        simulators.wait(15)
    print(f"| client ({args.calls} calls, median of {args.rounds}) | client CPU µs per call |")
    print("|---|---:|")
    for name, us in results.items():
        print(f"| {name} | {us:.0f} |")


if __name__ == "__main__":
    main()
