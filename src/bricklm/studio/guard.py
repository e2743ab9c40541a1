"""The studio's outermost ASGI layer: only this server's Host, bounded request bodies, defensive headers.

    app = Guard(fastapi_app, allowed_hosts=["127.0.0.1", "localhost", "::1"])   # None: any Host

A server on 127.0.0.1 is still reachable from a web page on another site if that site's name is
made to resolve to 127.0.0.1 (DNS rebinding); the browser then sends the other site's name as
Host. Answering only to our own names closes that. Bodies are counted as they arrive, so a
request without Content-Length is bounded too. Written as plain ASGI rather than Starlette's
BaseHTTPMiddleware, which would buffer streamed responses and hide a client's disconnect.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException

MAX_BODY = 1 << 20  # bytes: a request is a prompt of at most 16k characters and a few settings

HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    # The page loads only its own files; uPlot sets element styles from JS, which 'unsafe-inline' allows.
    (
        b"content-security-policy",
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    ),
]


def host_name(header: str) -> str:
    """The host of a Host header without its port: "127.0.0.1:8000" → "127.0.0.1", "[::1]:80" → "::1"."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    def __init__(self, app, allowed_hosts: list[str] | None = None, max_body: int = MAX_BODY):
        self.app, self.max_body = app, max_body
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    @property
    def state(self):
        """The wrapped app's state (tests and the server reach the Studio through it)."""
        return self.app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.allowed is not None and host_name(headers.get("host", "")).lower() not in self.allowed:
            return await reply(
                send,
                400,
                f"this server answers only requests addressed to {' or '.join(sorted(self.allowed))} (Host header)",
            )
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > self.max_body:
            return await reply(send, 413, f"request body over {self.max_body} bytes")
        received, started = 0, False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:  # an HTTPException, which FastAPI's body parsing passes on as is
                    raise HTTPException(413, f"request body over {self.max_body} bytes")
            return message

        async def guarded_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except HTTPException as exc:  # raised by counted_receive outside a route (none reads a body there)
            if not started:
                await reply(send, exc.status_code, str(exc.detail))


async def reply(send, status: int, message: str) -> None:
    """An error in the API's shape, sent before the app sees the request."""
    body = json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": body})
