"""What generation runs on: the bounded model cache, the engine's turns, and a client that leaves."""

import asyncio
import time

import pytest

from bricklm.studio.engine import Busy, Engine
from bricklm.studio.models import ModelCache
from bricklm.studio.runsdir import RunsDir


def test_model_cache_loads_once_and_is_bounded(runs_root):
    runs = RunsDir(runs_root)
    cache = ModelCache(runs, capacity=2)
    tiny = runs.get("tiny")
    first = cache.get(tiny, "best")
    assert cache.get(tiny, "best") is first and cache.get(tiny, "step-000000006") is first  # best is step 6
    cache.get(tiny, "step-000000003")
    cache.get(tiny, "loss-4.00")
    assert cache.loaded() == ["tiny@step-000000003", "tiny@loss-4.00"]


def test_engine_takes_turns_is_bounded_and_cancels_a_stream_that_is_dropped():
    async def scenario():
        engine = Engine(workers=1, max_jobs=2)
        loop = asyncio.get_running_loop()
        closed = loop.create_future()

        def endless(name):
            def job():
                try:
                    while True:
                        yield name
                finally:  # the engine closed the job once its stream was dropped
                    if name == "b":  # a's may run after the loop has closed (when its generator is collected)
                        loop.call_soon_threadsafe(closed.set_result, name)

            return job

        a, b = engine.submit(endless("a")), engine.submit(endless("b"))
        with pytest.raises(Busy):
            engine.submit(endless("c"))
        # One worker, two jobs: both make progress (turns), neither waits for the other to finish.
        assert [await a.__anext__() for _ in range(3)] == ["a"] * 3 and await b.__anext__() == "b"
        del b  # dropped unread, as when a response is abandoned
        assert await asyncio.wait_for(closed, 5) == "b"
        await a.aclose()
        deadline = time.monotonic() + 5
        while engine.stats()["generating"] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert engine.stats()["generating"] == 0
        engine.shutdown()

    asyncio.run(scenario())


def test_a_client_that_disconnects_stops_its_generation(http):
    before = http.get("/health").json()["tokens"]
    body = {"model": "tiny", "prompt": "The ", "max_tokens": 4096, "stream": True}
    with http.stream("POST", "/v1/completions", json=body) as r:
        lines = r.iter_lines()
        next(lines), next(lines), next(lines)  # the first chunks arrived; now the client goes away
    deadline = time.monotonic() + 10
    while (health := http.get("/health").json())["generating"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health["generating"] == 0
    time.sleep(0.3)
    made = http.get("/health").json()["tokens"] - before
    assert made < 4096, f"generation went on after the client left ({made} tokens)"
