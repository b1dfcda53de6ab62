"""Each `fetch_all` mode beside aiohttp's and urllib3's own clients, against one local server.

    python scripts/io_anchor.py                                # zero latency, 200 in flight: requests/s
    python scripts/io_anchor.py --latency 0.05 --concurrency 100 --requests 1000   # × the ideal
    python scripts/io_anchor.py --baseline                     # add httpx's default transports
    python scripts/io_anchor.py --engine                       # map_io's items/s and memory
    python scripts/io_anchor.py --downloads                    # 100 × 20 MiB to disk: peak RSS

Bodies are --size bytes (10 KiB), read whole by every client (fetch_all keeps them). The asyncio
rows run on asyncio's own loop, and again on uvloop where it is installed (fetch_all picks it
itself then; asyncio.run(afetch_all(...)) is the asyncio-loop row).

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
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import httpx
import urllib3

from partally.io.engine import map_io
from partally.io.fetch import afetch_all, fetch_all
from partally.io.server import server_process

try:
    import uvloop
except ImportError:
    uvloop = None


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


def _on_uvloop(coro_factory: Callable[[], object]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro_factory())


def engine(repeat: int) -> None:
    """map_io's rate with a trivial function, and its memory as the items grow (collect=False)."""

    async def trivial(x: int) -> int:
        await asyncio.sleep(0)  # one trip through the event loop, as any real await makes
        return x

    def sync(x: int) -> int:
        return x

    n = 10**5
    for name, fn, mode, limit in [
        ("map_io, async function, asyncio", trivial, "asyncio", 1000),
        ("map_io, sync function, threads", sync, "threads", 50),
    ]:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            map_io(fn, range(n), mode, limit=limit)
            times.append(time.perf_counter() - start)
        print(f"{name:42} limit {limit:4}: {n / statistics.median(times):9,.0f} items/s (median of {repeat})")
    for mode, fn in (("asyncio", trivial), ("threads", sync)):
        peaks = []
        for items in (10**4, 10**5):
            tracemalloc.start()
            map_io(fn, range(items), mode, limit=1000 if mode == "asyncio" else 50, collect=False,
                   on_result=lambda r: None)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        print(f"map_io {mode}, collect=False: peak traced memory {peaks[0] / 1024:,.0f} KiB for 10^4 "
              f"items, {peaks[1] / 1024:,.0f} KiB for 10^5")


def downloads(count: int = 100, size: int = 20 * 2**20) -> None:
    """Download `count` bodies of `size` bytes to a temporary folder; print the peak RSS."""
    with server_process(latency=0.0, size=size) as base, tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        results = fetch_all([f"{base}/{i}.bin" for i in range(count)], output=folder, limit=50)
        seconds = time.perf_counter() - start
        written = sum(os.path.getsize(r.path) for r in results if r.ok)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"downloads: {sum(r.ok for r in results)}/{count} ok, {written / 2**20:,.0f} MiB written in "
          f"{seconds:.1f} s; peak resident {peak:,.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--size", type=int, default=10240, help="body bytes (10240)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", action="store_true", help="add httpx's default transports")
    parser.add_argument("--engine", action="store_true", help="map_io's items/s and memory only")
    parser.add_argument("--downloads", action="store_true", help="the download memory check only")
    parser.add_argument("--in-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        engine(args.repeat)
        return
    if args.downloads:  # in a fresh process: its peak RSS is the downloads' alone
        if args.in_child:
            downloads()
        else:
            subprocess.run([sys.executable, __file__, "--downloads", "--in-child"], check=True)
        return
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
        ("fetch_all asyncio", n, c, lambda u: asyncio.run(afetch_all(u, limit=c))),
    ]
    if uvloop is not None:
        rows += [
            ("aiohttp ClientSession on uvloop (anchor)", n, c, lambda u: _on_uvloop(lambda: _aiohttp(u, c))),
            ("fetch_all asyncio on uvloop", n, c, lambda u: fetch_all(u, "asyncio", limit=c)),
        ]
    rows += [
        ("urllib3 PoolManager, threads (anchor)", threaded, c, urllib3_threads),
        ("fetch_all threads", threaded, c, lambda u: fetch_all(u, "threads", limit=c)),
        ("fetch_all sequential", sequential, 1, lambda u: fetch_all(u, "sequential")),
    ]
    if args.baseline:
        rows += [
            ("httpx AsyncClient, default transport", n, c, lambda u: asyncio.run(_httpx_default(u, c))),
            ("httpx Client, default transport, threads", threaded, c, httpx_default_threads),
        ]
    with server_process(latency=latency, size=args.size) as base:
        print(f"server latency {latency * 1000:g} ms, {args.size}-byte bodies, {c} in flight, "
              f"median of {args.repeat} rounds, rows in a new random order each round; "
              f"load {os.getloadavg()[0]:.1f}")
        urls = {name: [f"{base}/{i}" for i in range(count)] for name, count, _, _ in rows}
        for name, _, workers, run in rows:
            run(urls[name][:workers])  # warm up: imports, threads
        times: dict[str, list[float]] = {name: [] for name, *_ in rows}
        client_cpu: dict[str, list[float]] = {name: [] for name, *_ in rows}
        server_cpu: dict[str, list[float]] = {name: [] for name, *_ in rows}
        for _ in range(args.repeat):
            for name, _, _, run in random.sample(rows, len(rows)):
                start, cpu, served = time.perf_counter(), time.process_time(), _server_cpu()
                run(urls[name])
                times[name].append(time.perf_counter() - start)
                client_cpu[name].append(time.process_time() - cpu)
                server_cpu[name].append(_server_cpu() - served)
        for name, count, workers, _ in rows:
            median = statistics.median(times[name])
            client = statistics.median(client_cpu[name]) / count * 1e6
            server = statistics.median(server_cpu[name]) / median * 100
            ideal = math.ceil(count / workers) * latency
            versus = f"{median / ideal:5.2f} × ideal {ideal:.2f} s" if ideal else ""
            print(
                f"{name:42} {count:5} in {median:6.3f} s {count / median:7.0f} requests/s"
                f" {client:5.0f} µs CPU/request, server {server:3.0f} % of a core  {versus}"
            )
        print(f"load {os.getloadavg()[0]:.1f} at the end")
    pool.shutdown()


if __name__ == "__main__":
    main()
