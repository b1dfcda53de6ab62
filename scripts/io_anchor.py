"""Requests/s of each `fetch_all` mode beside aiohttp's own client, against one local server.

    python scripts/io_anchor.py [--requests 4000] [--concurrency 200] [--latency 0] [--baseline]

The server runs in a child process (its own GIL). aiohttp's `ClientSession` with the same bounded
workers is the anchor; `--baseline` adds httpx over its default transports (httpcore), tuned only
to keep `concurrency` connections alive.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import httpx

from partally._fetch import fetch_all
from partally._server import server_process


async def _workers(urls: list[str], concurrency: int, get: Callable) -> None:
    todo = iter(urls)

    async def worker() -> None:
        for url in todo:
            await get(url)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _aiohttp(urls: list[str], concurrency: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:

        async def get(url: str) -> None:
            async with s.get(url) as response:
                await response.read()

        await _workers(urls, concurrency, get)


async def _httpx_default(urls: list[str], concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        await _workers(urls, concurrency, client.get)


def _httpx_default_threads(urls: list[str], concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(limits=limits) as client, ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client.get, urls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--baseline", action="store_true", help="add httpx's default transports")
    args = parser.parse_args()
    n, c = args.requests, args.concurrency
    with server_process(latency=args.latency) as base:
        urls = [f"{base}/{i}" for i in range(n)]
        runs: dict[str, Callable[[list[str]], object]] = {
            "aiohttp ClientSession (anchor)": lambda u: asyncio.run(_aiohttp(u, c)),
            "fetch_all asyncio": lambda u: fetch_all(u, "asyncio", limit=c),
            "fetch_all threads": lambda u: fetch_all(u, "threads", limit=c),
            "fetch_all sequential": lambda u: fetch_all(u[: n // 4], "sequential"),
        }
        if args.baseline:
            runs["httpx AsyncClient, default transport"] = lambda u: asyncio.run(_httpx_default(u, c))
            runs["httpx Client, default transport, threads"] = lambda u: _httpx_default_threads(u, c)
        print(f"{n} requests, {c} in flight, server latency {args.latency} s")
        for name, run in runs.items():
            run(urls[:c])  # warm up: imports, first connections
            count = n // 4 if "sequential" in name else n
            start = time.perf_counter()
            run(urls)
            elapsed = time.perf_counter() - start
            print(f"{name:42} {count / elapsed:8.0f} requests/s  ({count} in {elapsed:.2f} s)")


if __name__ == "__main__":
    main()
