"""The studio's HTTP connections: uvicorn's h11 protocol, with a deadline for a request's headers.

    uvicorn.Config(app, http=with_header_timeout(10.0))

uvicorn times out an idle keep-alive connection, but not one that sends its headers slowly: a client
that opens a connection and sends a header line every few seconds holds it (and a slot of the
server's) forever, and a few hundred such clients hold them all ("slowloris"). Here a connection gets
`seconds` from when it opens, or from the end of its last response, until its request's headers are
all in; past that it is closed. Once a request is under way, the app's own limits bound it.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0


class HeaderDeadline(H11Protocol):
    """H11Protocol that closes a connection whose request headers don't arrive within header_timeout."""

    header_timeout = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if getattr(self, "_header_deadline", None) is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request's headers were read: the app takes it from here
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # the next request on this connection gets the same time for its headers
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        waiting = self.cycle is None or self.cycle.response_complete  # no request under way
        if waiting and not self.transport.is_closing():
            self.transport.close()


def with_header_timeout(seconds: float = HEADER_TIMEOUT_S) -> type[HeaderDeadline]:
    """The protocol class for uvicorn.Config(http=...), with its own header deadline."""
    return type("HeaderDeadline", (HeaderDeadline,), {"header_timeout": seconds})
