"""Running the studio: who may reach it, binding the address (loopback unless told otherwise), uvicorn.

    serve("runs")                                             # bricklm studio: http://127.0.0.1:8000/
    serve("runs/blog", single_run=True)                       # bricklm serve --run runs/blog
    serve("runs", host="0.0.0.0", api_key=key)                # beyond loopback: a key, or no_auth=True
    serve("runs", host="0.0.0.0", allow_hosts=["studio.lan"]) # ... and the names clients use for it

Beyond loopback the server needs an API key (auth.py) unless no_auth says otherwise, and answers only
requests addressed to its own names (hosts.py). The socket is bound here, before uvicorn starts, so a
port in use or an address that isn't this machine's is a UserError with one line instead of
uvicorn's log and exit.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import warnings
from pathlib import Path

import torch
import uvicorn

from bricklm.errors import UserError
from bricklm.studio.app import create_app
from bricklm.studio.auth import read_key
from bricklm.studio.connections import HEADER_TIMEOUT_S, with_header_timeout
from bricklm.studio.hosts import allowed_hosts
from bricklm.studio.live import MAX_STREAMS

WORKERS = 4  # generation threads


def is_loopback(host: str) -> bool:
    """Does `host` name only this machine (127.0.0.0/8, ::1, localhost)?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def address_of(host: str, port: int) -> tuple:
    """(family, type, proto, canonname, sockaddr) to listen on; UserError for a bad port or an unknown host."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {port}")
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError:
        raise UserError(f"cannot listen on {host!r}: not an address or a host name this machine knows") from None


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: any free port); UserError with one line if that can't be."""
    family, kind, proto, _, address = address_of(host, port)
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart right after a stop can rebind
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use (another server?); pick another with --port") from None
        if exc.errno == errno.EACCES:
            raise UserError(f"not allowed to listen on port {port} (below 1024 needs privileges); use --port") from None
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def access(
    host: str, api_key: str | None, no_auth: bool = False, allow_hosts: list[str] = ()
) -> tuple[list[str], str | None]:
    """(Host names to answer, API key to require) for a server on `host`; a UserError for a server beyond
    loopback without a key (unless no_auth), or no_auth together with a key. Checked before anything listens."""
    loopback = is_loopback(host)
    if no_auth and api_key is not None:
        raise UserError(
            "--no-auth and an API key (--api-key, --api-key-file or $BRICKLM_API_KEY) contradict each other"
        )
    if not loopback and api_key is None and not no_auth:
        raise UserError(
            f"listening on {host} lets anyone on the network reach this server: give it an API key "
            "($BRICKLM_API_KEY, --api-key-file FILE or --api-key KEY), or pass --no-auth to serve without one"
        )
    return allowed_hosts(host, list(allow_hosts), loopback_only=loopback), api_key


def uvicorn_config(app, header_timeout: float = HEADER_TIMEOUT_S) -> uvicorn.Config:
    """How the studio runs under uvicorn: quiet, a short grace period, a deadline for request headers."""
    return uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=2, lifespan="on", http=with_header_timeout(header_timeout)
    )


def serve(
    runs_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    single_run: bool = False,
    log=print,
    *,
    api_key: str | None = None,
    api_key_file: str | None = None,
    no_auth: bool = False,
    allow_hosts: list[str] = (),
    max_live: int = MAX_STREAMS,
    max_copied: int | None = None,
) -> None:
    """Serve the studio for `runs_dir` (or one run) until Ctrl-C. Blocks. The API key is api_key, or read
    from api_key_file, or from $BRICKLM_API_KEY (auth.read_key)."""
    address_of(host, port)  # a typo in --host or --port is an error, not a refusal about keys
    if max_live < 1:
        raise UserError(f"--max-live must be at least 1, got {max_live}")
    hosts, key = access(host, read_key(api_key, api_key_file, os.environ), no_auth, allow_hosts)
    app = create_app(
        runs_dir,
        single_run,
        allowed_hosts=hosts,
        workers=WORKERS,
        api_key=key,
        max_live=max_live,
        max_copied=max_copied,
    )
    if no_auth and not is_loopback(host):
        warnings.warn(
            f"listening on {host} without an API key (--no-auth): anyone on the network can reach this server, "
            f"read the runs in {runs_dir} and generate from them",
            stacklevel=2,
        )
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    what = f"run {Path(runs_dir)}" if single_run else f"runs in {Path(runs_dir)}"
    signin = "; open /?key=YOUR_KEY once in the browser" if key else ""
    if max_copied is not None:
        signin += f"; no response recites more than {max_copied} characters of training text"
    log(f"bricklm studio: http://{shown}:{sock.getsockname()[1]}/  ({what}{signin}; Ctrl-C to stop)")
    # The worker threads are the parallelism: a token-step of a small model is too short to split across
    # cores, and torch's own threads spinning beside them slowed generation ~50x on a loaded 2-core machine.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // WORKERS))
    server = uvicorn.Server(uvicorn_config(app))
    app.state.studio.exiting = lambda: server.should_exit  # Ctrl-C ends the pages' live streams too
    server.run(sockets=[sock])
