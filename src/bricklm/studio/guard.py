"""The studio's outermost ASGI layer: only this server's Host, its key, bounded request bodies, defensive headers.

    app = Guard(fastapi_app, allowed_hosts=["127.0.0.1", "localhost", "::1"], api_key="...")

In order, before the app sees a request:
- Host: parsed strictly (hosts.host_of) and answered only if it is one of allowed_hosts (None: any),
  400 otherwise; this closes DNS rebinding (hosts.py says how).
- Origin, when a browser sends one: its host must be allowed too, 403 otherwise, so a page on
  another site can't make the browser run requests here (even ones whose answer it can't read).
- The API key, if the server has one: `Authorization: Bearer KEY`, or the page's cookie; 401 in
  OpenAI's error shape otherwise. GET /?key=KEY trades the key for the cookie (auth.py) and
  redirects to /.
- Bodies are counted as they arrive, so a request without Content-Length is bounded too (413).
Written as plain ASGI rather than Starlette's BaseHTTPMiddleware, which would buffer streamed
responses and hide a client's disconnect.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException

from bricklm.studio.auth import ApiKey
from bricklm.studio.hosts import host_of, normal_name

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


class Guard:
    def __init__(
        self, app, allowed_hosts: list[str] | None = None, api_key: str | None = None, max_body: int = MAX_BODY
    ):
        self.app, self.max_body = app, max_body
        self.allowed = None if allowed_hosts is None else {normal_name(h) or h.lower() for h in allowed_hosts}
        self.key = ApiKey(api_key) if api_key is not None else None

    @property
    def state(self):
        """The wrapped app's state (tests and the server reach the Studio through it)."""
        return self.app.state

    def host_ok(self, value: str | None) -> bool:
        return self.allowed is None or (value is not None and host_of(value) in self.allowed)

    def refusal(self, scope, headers: dict[str, str]) -> tuple | None:
        """Why a request is answered here instead of by the app: (status, message, code, extra headers), or None."""
        hosts = [v for k, v in scope["headers"] if k.lower() == b"host"]
        if len(hosts) > 1 or not self.host_ok(headers.get("host")):
            return 400, f"this server does not answer to the Host {headers.get('host', '')[:100]!r} (--allow-host)"
        origin = headers.get("origin")
        if origin is not None and not self.host_ok(origin.partition("://")[2] or None):
            return 403, f"requests from pages at {origin[:100]!r} are not allowed here (Origin)"
        if self.key is None:
            return None
        port = (scope.get("server") or (None, None))[1]
        query = parse_qs(scope["query_string"].decode("latin-1")) if scope["path"] == "/" else {}
        if "key" in query:  # the page signing in: the key for a cookie, and on to / without it in the address
            if not self.key.matches(query["key"][0]):
                return 401, "wrong key in /?key=", "invalid_api_key"
            return 303, "signed in", None, [(b"set-cookie", self.key.set_cookie(port).encode()), (b"location", b"/")]
        if self.key.bearer_ok(headers.get("authorization")) or self.key.cookie_ok(headers.get("cookie"), port):
            return None
        message = (
            "this server needs its API key: send Authorization: Bearer KEY (the OpenAI client's api_key), "
            "or open /?key=KEY once in the browser"
        )
        return 401, message, "invalid_api_key", [(b"www-authenticate", b"Bearer")]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refused = self.refusal(scope, headers)
        if refused is not None:
            return await reply(send, *refused)
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


async def reply(send, status: int, message: str, code: str | None = None, headers: list | None = None) -> None:
    """An error in the API's shape, sent before the app sees the request."""
    body = json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
                *HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
