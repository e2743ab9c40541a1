"""Generation off the event loop: worker threads that take turns, a token at a time, over every generation.

    engine = Engine(workers=4, max_jobs=68)
    stream = engine.submit(lambda: pieces(...))     # Busy if max_jobs generations are already going
    async for piece in stream: ...                  # stopping early (or the client leaving) cancels

A job is a function returning an iterator. A worker takes the job whose turn it is, advances it by
one item (one token), hands the item to the job's stream and puts the job at the back of the line.
So fifty clients all see their first token within fifty token-steps, rather than the fiftieth
waiting for forty-nine whole replies, and the total throughput is the same. A cancelled job is
closed at its next turn, and its slot is free at once (a client that gives up makes room for the next
one straight away, not after the line comes round to it). Sampling a token is mostly torch work that
releases the GIL, so the event loop stays free to serve pages. A stream dropped without being read to
the end (a browser that disconnects, a response cancelled before it began) cancels its job too,
through a finalizer.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

_ITEM, _ERROR, _DONE = range(3)

Job = Callable[[], Iterator[Any]]


class Busy(Exception):
    """max_jobs generations are already going."""


class _Turn:
    """One job in the line: its iterator (made on its first turn), where its items go, and its slot."""

    def __init__(self, engine: Engine, job: Job, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
        self.engine, self.job, self.loop, self.queue = engine, job, loop, queue
        self.cancel = threading.Event()
        self.items: Iterator[Any] | None = None
        self.holds_slot = True

    def release(self) -> None:
        """Give the job's slot back (once): when it ends, or as soon as its client gives up."""
        with self.engine.cv:
            if self.holds_slot:
                self.holds_slot = False
                self.engine.jobs -= 1

    def stop(self) -> None:
        """Cancel the job: its slot is free now, and a worker closes it at its next turn."""
        self.cancel.set()
        self.release()

    def put(self, kind: int, item: Any = None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, item))
        except RuntimeError:  # the loop has closed (server shutting down): nobody is listening
            self.cancel.set()


class Engine:
    """`workers` threads taking turns over at most `max_jobs` generations."""

    def __init__(self, workers: int = 4, max_jobs: int = 68):
        self.max_jobs = max_jobs
        self.line: deque[_Turn] = deque()
        self.cv = threading.Condition()
        self.jobs = 0  # holding a slot: submitted, and neither finished nor given up by their client
        self.tokens = 0  # tokens produced since the start, every job together
        self.closed = False
        for i in range(workers):
            threading.Thread(target=self._work, name=f"bricklm-generate-{i}", daemon=True).start()

    def submit(self, job: Job) -> TokenStream:
        """Put `job` in line; raises Busy when max_jobs are already going. Call from the event loop."""
        queue: asyncio.Queue = asyncio.Queue()
        with self.cv:
            if self.jobs >= self.max_jobs:
                raise Busy(f"{self.jobs} generations are going; try again shortly")
            self.jobs += 1
            turn = _Turn(self, job, asyncio.get_running_loop(), queue)
            self.line.append(turn)
            self.cv.notify()
        return TokenStream(queue, turn)

    def _work(self) -> None:
        while True:
            with self.cv:
                while not self.line and not self.closed:
                    self.cv.wait()
                if self.closed:
                    return
                turn = self.line.popleft()
            if self._advance(turn):
                turn.release()
            else:
                with self.cv:
                    self.line.append(turn)
                    self.cv.notify()

    def _advance(self, turn: _Turn) -> bool:
        """Give `turn` one step; True once its job is over (finished, failed or cancelled)."""
        try:
            if turn.cancel.is_set():
                if turn.items is not None:
                    turn.items.close()  # runs the job's own clean-up (finally blocks) now
                turn.put(_DONE)
                return True
            if turn.items is None:
                turn.items = iter(turn.job())
            item = next(turn.items)
        except StopIteration:
            turn.put(_DONE)
            return True
        except Exception as exc:  # noqa: BLE001 - handed to the stream, which raises it in the request
            turn.put(_ERROR, exc)
            return True
        with self.cv:
            self.tokens += getattr(item, "tokens", 1)  # a Piece says how many tokens it holds
        turn.put(_ITEM, item)
        return False

    def stats(self) -> dict[str, int]:
        with self.cv:
            return {"generating": self.jobs, "tokens": self.tokens}

    def shutdown(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify_all()


class TokenStream:
    """An async iterator over one job's items. Leaving early, by any route, cancels the job."""

    def __init__(self, queue: asyncio.Queue, turn: _Turn):
        self.queue, self.turn = queue, turn
        # Dropped unread: stop the job at its next turn. Only the event here: a finalizer may run inside
        # the engine's own locked code (garbage collection happens anywhere), so it takes no lock.
        weakref.finalize(self, turn.cancel.set)

    def __aiter__(self) -> TokenStream:
        return self

    async def __anext__(self) -> Any:
        try:
            kind, item = await self.queue.get()
        except BaseException:  # cancelled: the client disconnected mid-stream
            self.turn.stop()
            raise
        if kind == _DONE:
            raise StopAsyncIteration
        if kind == _ERROR:
            raise item
        return item

    async def aclose(self) -> None:
        self.turn.stop()
