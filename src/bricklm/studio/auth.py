"""The studio's API key: where it comes from, and checking it in constant time.

    key = read_key(flag=None, key_file="studio.key", environ=os.environ)   # None: no key was given
    auth = ApiKey(key)
    auth.bearer_ok("Bearer " + key)             # the API: Authorization: Bearer KEY, as OpenAI's clients send it
    auth.cookie_ok("bricklm_key_8000=...", 8000)  # the page, after it opened /?key=KEY once
    auth.set_cookie(8000)                       # the Set-Cookie value that /?key=KEY answers with

The page can't put an Authorization header on its live stream (EventSource), so it trades the key
once, at /?key=KEY, for an HttpOnly, SameSite=Strict cookie, and is sent on to / so the key leaves
the address bar. The cookie holds a token derived from the key, not the key: what a browser keeps
can't be used as an API key elsewhere. Its name carries the port, so two studios on one machine
(cookies are shared across ports) each keep their own.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from pathlib import Path

from bricklm.errors import UserError

ENV = "BRICKLM_API_KEY"
MIN_LENGTH = 16
_KEY = re.compile(r"[A-Za-z0-9._~+/=-]+")  # base64 and URL-safe: fits a header and a query string as typed
_HOW = 'make one with: python -c "import secrets; print(secrets.token_urlsafe(24))"'


def read_key(flag: str | None, key_file: str | None, environ: Mapping[str, str]) -> str | None:
    """The API key from --api-key, --api-key-file or $BRICKLM_API_KEY (in that order); None if none is set.
    A UserError for both flags at once, an unreadable file, or a key that is short or has odd characters."""
    if flag is not None and key_file is not None:
        raise UserError("give the API key one way: --api-key or --api-key-file, not both")
    where = "--api-key"
    if key_file is not None:
        where = f"--api-key-file {key_file}"
        try:
            flag = Path(key_file).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise UserError(f"API key file not found: {key_file}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read the API key file {key_file}: {exc}") from None
    elif flag is None:
        flag, where = environ.get(ENV) or None, f"${ENV}"
    if flag is None:
        return None
    if len(flag) < MIN_LENGTH or not _KEY.fullmatch(flag):
        raise UserError(
            f"the API key from {where} must be at least {MIN_LENGTH} characters of A-Z a-z 0-9 . _ ~ + / = -; {_HOW}"
        )
    return flag


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


class ApiKey:
    """Checks a request's key (a bearer token, or the page's cookie) against the server's, in constant time."""

    def __init__(self, key: str):
        self.digest = _digest(key)  # compared by digest: equal lengths, so the time says nothing of the key
        self.token = hmac.new(key.encode(), b"bricklm studio page", hashlib.sha256).hexdigest()

    def matches(self, candidate: str) -> bool:
        return hmac.compare_digest(_digest(candidate), self.digest)

    def bearer_ok(self, authorization: str | None) -> bool:
        """Does an Authorization header carry the key ("Bearer KEY")?"""
        scheme, _, value = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and self.matches(value.strip())

    def cookie_ok(self, cookie_header: str | None, port: int | None) -> bool:
        """Does a Cookie header carry this server's page token?"""
        name = cookie_name(port)
        for part in (cookie_header or "").split(";"):
            key, eq, value = part.strip().partition("=")
            if eq and key == name and hmac.compare_digest(value.encode(), self.token.encode()):
                return True
        return False

    def set_cookie(self, port: int | None) -> str:
        """The cookie the page gets for the key: HttpOnly (scripts can't read it), SameSite=Strict (other
        sites' pages can't make the browser send it), for every path of this server."""
        return f"{cookie_name(port)}={self.token}; Path=/; HttpOnly; SameSite=Strict"


def cookie_name(port: int | None) -> str:
    return f"bricklm_key_{port or 0}"
