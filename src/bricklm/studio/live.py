"""The page's live view: server-sent events of runs as training writes them, one read per run however many follow.

    feed = LiveFeed(runs, live_runs, max_streams=32, stopping=lambda: False)
    stream = feed.open([run_a, run_b])          # TooMany beyond max_streams open streams
    return StreamingResponse(stream, media_type="text/event-stream")

Every POLL_S one task reads every run that some stream follows, in one trip to a worker thread: each
run's log is refreshed and its row described once, and each stream's news is cut from the shared
log by its own cursors there. The streams then only wait for their events, so a hundred tabs on
five runs cost five reads a second, not a hundred. A stream whose client hasn't taken its last
events yet is skipped until it has (its cursors stay put, so it gets everything at once later):
a slow reader never piles events up in memory. An event is `event: run` with {"id", "row", "reset",
"evals", "steps", "samples"}: everything at first (reset), then what was appended; a quiet stream
gets a comment line every KEEPALIVE_S, so a closed tab is noticed.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable

from fastapi.concurrency import run_in_threadpool

from bricklm.studio.api import sse
from bricklm.studio.logs import Cursor, LiveRuns, describe
from bricklm.studio.runsdir import Run, RunsDir

POLL_S = 1.0  # how often followed runs are read
KEEPALIVE_S = 15.0  # a comment line on a quiet stream
MAX_STREAMS = 32  # live streams open at once, every page together
MAX_RUNS = 32  # runs one stream follows

log = logging.getLogger("bricklm.studio")


class TooMany(Exception):
    """max_streams live streams are already open."""


class Subscription:
    """One stream's runs, what it has seen of each, and its events waiting to be sent."""

    def __init__(self, runs: list[Run]):
        self.runs = runs
        self.cursors = {run.id: Cursor() for run in runs}
        self.seen: dict[str, tuple] = {}
        self.queue: asyncio.Queue[list[str] | None] = asyncio.Queue()
        self.closed = False  # set by the stream as it ends (or by a finalizer if it never started)


class LiveStream:
    """The response body of one subscription: an async iterable of server-sent event text."""

    def __init__(self, feed: LiveFeed, sub: Subscription):
        self.feed, self.sub = feed, sub
        # A response cancelled before its body was read never runs the generator's finally: let go anyway.
        weakref.finalize(self, setattr, sub, "closed", True)

    def __aiter__(self) -> AsyncIterator[str]:
        return self.feed._events(self.sub)


class LiveFeed:
    """The live streams of every page, and the one task that reads the runs they follow."""

    def __init__(
        self, runs: RunsDir, logs: LiveRuns, max_streams: int = MAX_STREAMS, stopping: Callable[[], bool] = bool
    ):
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self.runs, self.logs, self.max_streams, self.stopping = runs, logs, max_streams, stopping
        self.subs: list[Subscription] = []
        self.poller: asyncio.Task | None = None
        self.wake = asyncio.Event()

    def open(self, runs: list[Run]) -> LiveStream:
        """A stream of `runs`' events; TooMany if max_streams are open. Call from the event loop."""
        self.subs = [s for s in self.subs if not s.closed]
        if len(self.subs) >= self.max_streams:
            raise TooMany(f"{len(self.subs)} live streams are open (at most {self.max_streams}); close a tab")
        sub = Subscription(runs)
        self.subs.append(sub)
        loop = asyncio.get_running_loop()
        if self.poller is None or self.poller.done() or self.poller.get_loop() is not loop:
            self.wake = asyncio.Event()  # an Event belongs to the loop that first waits on it
            self.poller = loop.create_task(self._poll())
        self.wake.set()  # its first event now, not at the next poll
        return LiveStream(self, sub)

    def open_streams(self) -> int:
        return sum(not s.closed for s in self.subs)

    def stop(self) -> None:
        """End every stream now (the server is shutting down)."""
        for sub in self.subs:
            sub.queue.put_nowait(None)
        self.wake.set()

    async def _events(self, sub: Subscription) -> AsyncIterator[str]:
        try:
            while not self.stopping():
                try:
                    events = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if events is None:
                    return
                for event in events:
                    yield event
        finally:
            sub.closed = True

    async def _poll(self) -> None:
        """Read the followed runs every POLL_S (or at once when a stream opens) while any stream is open."""
        try:
            while True:
                self.subs = [s for s in self.subs if not s.closed]
                if not self.subs:
                    return
                if self.stopping():
                    self.stop()
                    return
                self.wake.clear()
                ready = [s for s in self.subs if s.queue.empty()]
                try:
                    news = await run_in_threadpool(self.read, ready)
                except Exception:  # noqa: BLE001 - a bug reading one run must not end every page's stream
                    log.exception("reading the runs for the live view failed")
                    news = []
                for sub, events in news:
                    if events and not sub.closed:
                        sub.queue.put_nowait(events)
                try:
                    await asyncio.wait_for(self.wake.wait(), POLL_S)
                except asyncio.TimeoutError:  # the usual case: nothing new opened, read again
                    pass
        finally:
            if self.poller is asyncio.current_task():
                self.poller = None

    def read(self, subs: list[Subscription]) -> list[tuple[Subscription, list[str]]]:
        """Each run the streams follow read once, and each stream's news cut from it (blocking: reads files)."""
        wanted = {run.id: run for sub in subs for run in sub.runs}
        logs = {rid: self.logs.get(run) for rid, run in wanted.items()}
        rows = {rid: describe(self.runs, run, logs[rid]) for rid, run in wanted.items()}
        out = []
        for sub in subs:
            events = []
            for run in sub.runs:
                sub.cursors[run.id], delta = logs[run.id].since(sub.cursors[run.id])
                row = rows[run.id]
                update = {"id": run.id, "row": row, **(delta or {"reset": False})}
                now = (row["status"], row["step"], row["best_val_loss"], tuple(row["checkpoints"]))
                grew = update["reset"] or any(update.get(k) for k in ("evals", "steps", "samples"))
                if grew or sub.seen.get(run.id) != now:
                    sub.seen[run.id] = now
                    events.append(f"event: run\n{sse(update)}")
            out.append((sub, events))
        return out
