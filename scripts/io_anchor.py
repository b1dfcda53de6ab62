"""Each `fetch_all` mode beside aiohttp's and urllib3's own clients, against one local server.

    python scripts/io_anchor.py                                # zero latency, 200 in flight: requests/s
    python scripts/io_anchor.py --latency 0.05 --concurrency 100 --requests 1000   # × the ideal
    python scripts/io_anchor.py --baseline                     # add httpx's default transports

The server runs in a child process (its own GIL). The anchors use the same bounded workers over
the same server in the same run: aiohttp's `ClientSession` for asyncio, urllib3's `PoolManager`
on kept threads for threads. The thread rows fetch 4 × concurrency URLs (the issue's 100 threads,
400 requests), sequential as many as take 2 s at the ideal (or requests / 4 at zero latency).
Each row is the median of --repeat runs after one warm-up run, with the CPU time each request cost
the client (this process, all threads) and the server: a row whose server column nears 100 % of a
core was held back by the server, not by the client.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import httpx
import urllib3

from partally.io.fetch import fetch_all
from partally.io.server import server_process


async def _workers(urls: list[str], concurrency: int, get: Callable) -> None:
    todo = iter(urls)

    async def worker() -> None:
        for url in todo:
            await get(url)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _aiohttp(urls: list[str], concurrency: int) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get(url: str) -> None:
            async with session.get(url) as response:
                await response.read()

        await _workers(urls, concurrency, get)


async def _httpx_default(urls: list[str], concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        await _workers(urls, concurrency, client.get)


def _server_cpu() -> float:
    """CPU seconds used so far by this process's children (the server), from /proc; 0 elsewhere."""
    total = 0.0
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as f:
            pids = f.read().split()
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", action="store_true", help="add httpx's default transports")
    args = parser.parse_args()
    n, c, latency = args.requests, args.concurrency, args.latency
    threaded = min(n, 4 * c) if latency else n
    sequential = max(1, min(n, int(2 / latency))) if latency else n // 4
    pool = ThreadPoolExecutor(c)  # kept between runs, as fetch_all keeps its threads

    def urllib3_threads(urls: list[str]) -> None:
        manager = urllib3.PoolManager(maxsize=c)
        list(pool.map(lambda url: manager.request("GET", url).data, urls))

    def httpx_default_threads(urls: list[str]) -> None:
        limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
        with httpx.Client(limits=limits) as client:
            list(pool.map(client.get, urls))

    rows: list[tuple[str, int, int, Callable[[list[str]], object]]] = [
        ("aiohttp ClientSession (anchor)", n, c, lambda u: asyncio.run(_aiohttp(u, c))),
        ("fetch_all asyncio", n, c, lambda u: fetch_all(u, "asyncio", limit=c)),
        ("urllib3 PoolManager, threads (anchor)", threaded, c, urllib3_threads),
        ("fetch_all threads", threaded, c, lambda u: fetch_all(u, "threads", limit=c)),
        ("fetch_all sequential", sequential, 1, lambda u: fetch_all(u, "sequential")),
    ]
    if args.baseline:
        rows += [
            ("httpx AsyncClient, default transport", n, c, lambda u: asyncio.run(_httpx_default(u, c))),
            ("httpx Client, default transport, threads", threaded, c, httpx_default_threads),
        ]
    with server_process(latency=latency) as base:
        print(f"server latency {latency * 1000:g} ms, {c} in flight, median of {args.repeat}")
        for name, count, workers, run in rows:
            urls = [f"{base}/{i}" for i in range(count)]
            run(urls[:workers])  # warm up: imports, threads
            times, client_cpu, server_cpu = [], [], []
            for _ in range(args.repeat):
                start, cpu, served = time.perf_counter(), time.process_time(), _server_cpu()
                run(urls)
                times.append(time.perf_counter() - start)
                client_cpu.append(time.process_time() - cpu)
                server_cpu.append(_server_cpu() - served)
            median = statistics.median(times)
            client = statistics.median(client_cpu) / count * 1e6
            server = statistics.median(server_cpu) / median * 100
            ideal = math.ceil(count / workers) * latency
            versus = f"{median / ideal:5.2f} × ideal {ideal:.2f} s" if ideal else ""
            print(
                f"{name:42} {count:5} in {median:6.3f} s {count / median:7.0f} requests/s"
                f" {client:5.0f} µs CPU/request, server {server:3.0f} % of a core  {versus}"
            )
    pool.shutdown()


if __name__ == "__main__":
    main()
