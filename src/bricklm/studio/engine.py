"""Generation off the event loop: a bounded pool of worker threads, each job streamed back as it is made.

    engine = Engine(workers=4, max_waiting=64)
    stream = engine.submit(lambda cancel: pieces(...))    # Busy if the pool and its queue are full
    async for piece in stream: ...                        # stopping early (or the client leaving) cancels

A job is a function that takes a threading.Event and returns an iterator; the worker checks the
event between items, so a cancelled job stops within one token. Sampling a token is mostly torch
work that releases the GIL, so the event loop stays free to serve pages and other streams.
A stream that is dropped without being read to the end (a browser that disconnects, a response
cancelled before it began) cancels its job too, through a finalizer.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_ITEM, _ERROR, _DONE = range(3)

Job = Callable[[threading.Event], Iterator[Any]]


class Busy(Exception):
    """Every worker is busy and the queue of waiting jobs is full."""


class Engine:
    """Runs jobs on `workers` threads; at most `max_waiting` more wait for one."""

    def __init__(self, workers: int = 4, max_waiting: int = 64):
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="bricklm-generate")
        self.limit = workers + max_waiting
        self.lock = threading.Lock()
        self.pending = 0  # submitted and not finished (waiting or running)
        self.running = 0
        self.tokens = 0  # tokens produced since the start, every job together

    def submit(self, job: Job) -> TokenStream:
        """Start `job` on a worker (or queue it); raises Busy when `limit` jobs are already pending."""
        with self.lock:
            if self.pending >= self.limit:
                raise Busy(f"{self.pending} generations are running or waiting; try again shortly")
            self.pending += 1
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def put(kind: int, item: Any = None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, item))
            except RuntimeError:  # the loop has closed (server shutting down): nobody is listening
                cancel.set()

        def work() -> None:
            with self.lock:
                self.running += 1
            try:
                if not cancel.is_set():  # a client that left while its job waited costs nothing
                    for item in job(cancel):
                        if cancel.is_set():
                            break
                        with self.lock:
                            self.tokens += getattr(item, "tokens", 1)  # a Piece says how many it holds
                        put(_ITEM, item)
            except Exception as exc:  # noqa: BLE001 - handed to the stream, which raises it in the request
                put(_ERROR, exc)
            finally:
                with self.lock:
                    self.running -= 1
                    self.pending -= 1
                put(_DONE)

        self.pool.submit(work)
        return TokenStream(queue, cancel)

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {"generating": self.running, "waiting": self.pending - self.running, "tokens": self.tokens}

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class TokenStream:
    """An async iterator over one job's items. Leaving early, by any route, cancels the job."""

    def __init__(self, queue: asyncio.Queue, cancel: threading.Event):
        self.queue, self.cancel = queue, cancel
        weakref.finalize(self, cancel.set)  # dropped unread: stop the worker

    def __aiter__(self) -> TokenStream:
        return self

    async def __anext__(self) -> Any:
        try:
            kind, item = await self.queue.get()
        except BaseException:  # cancelled: the client disconnected mid-stream
            self.cancel.set()
            raise
        if kind == _DONE:
            raise StopAsyncIteration
        if kind == _ERROR:
            raise item
        return item

    async def aclose(self) -> None:
        self.cancel.set()
