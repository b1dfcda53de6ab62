"""map_io of a function whose result is an awaitable (issue 31): awaited on asyncio, refused with
a TypeError on threads and sequentially; never an un-awaited coroutine as a value. The IO is real:
aiohttp against the loopback test server."""

from __future__ import annotations

import asyncio
import gc
import warnings

import aiohttp
import pytest

from partally.io.engine import amap_io, map_io
from partally.io.server import running_server


@pytest.fixture(scope="module")
def server():
    with running_server(latency=0.0, size=10) as running:
        yield running


async def get(url: str, session: aiohttp.ClientSession | None = None) -> int:
    """GET `url` (with `session`, or one of its own); the status."""
    if session is None:
        async with aiohttp.ClientSession() as own:
            return await get(url, own)
    async with session.get(url) as response:
        await response.read()
        return response.status


@pytest.mark.parametrize("mode", ["threads", "sequential", None])
def test_a_sync_fn_returning_a_coroutine_is_refused_where_nothing_awaits_it(server, mode):
    # It ran on threads and gave 20 of 20 results ok=True whose values were coroutine objects.
    server.app.reset()
    urls = [f"{server.url}/{i}" for i in range(20)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "coroutine ... was never awaited"
        with pytest.raises(TypeError, match="pass an `async def`"):
            map_io(lambda url: get(url), urls, mode, limit=4)
        gc.collect()  # an unclosed coroutine would warn here
    assert server.app.requests == 0


def test_the_refused_coroutines_are_closed():
    created = []

    async def never(k):
        return k

    def bound(k):
        created.append(coroutine := never(k))
        return coroutine

    with pytest.raises(TypeError):
        map_io(bound, range(5), "sequential")
    assert created and all(c.cr_frame is None for c in created)  # closed, never awaited


def test_a_sync_fn_returning_a_coroutine_is_awaited_by_map_io_asyncio(server):
    server.app.reset()
    urls = [f"{server.url}/{i}" for i in range(20)]
    results = map_io(lambda url: get(url), urls, "asyncio", limit=5)
    assert [(r.ok, r.value) for r in results] == [(True, 200)] * 20
    assert server.app.requests == 20


def test_a_sync_fn_returning_a_coroutine_is_awaited_by_amap_io(server):
    server.app.reset()
    urls = [f"{server.url}/{i}" for i in range(20)]

    async def main():
        async with aiohttp.ClientSession() as session:
            return await amap_io(lambda url: get(url, session), urls, limit=5)

    results = asyncio.run(main())
    assert [(r.ok, r.value) for r in results] == [(True, 200)] * 20
    assert server.app.requests == 20


def test_an_async_fn_returning_a_coroutine_unawaited_gives_its_result():
    async def inner(x):
        return x * 2

    async def forgot_await(x):
        return inner(x)

    assert [r.value for r in map_io(forgot_await, range(5), "asyncio")] == [0, 2, 4, 6, 8]


@pytest.mark.parametrize("mode", ["asyncio", "threads", "sequential"])
def test_an_async_generator_function_is_refused(mode):
    async def agen(x):
        yield x

    with pytest.raises(TypeError, match="async generator"):
        map_io(agen, range(3), mode)
