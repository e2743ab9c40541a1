"""Running the studio: bind the address (loopback unless told otherwise), then serve it with uvicorn.

    serve("runs")                                  # bricklm studio: http://127.0.0.1:8000/
    serve("runs/blog", single_run=True)            # bricklm serve --run runs/blog
    serve("runs", host="0.0.0.0", port=8080)       # warns: anyone on the network can reach it

The socket is bound here, before uvicorn starts, so a port in use or an address that isn't this
machine's is a UserError with one line instead of uvicorn's log and exit.
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

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1"]
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


def serve(runs_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, single_run: bool = False, log=print) -> None:
    """Serve the studio for `runs_dir` (or one run) until Ctrl-C. Blocks."""
    loopback = is_loopback(host)
    hosts = sorted({*LOOPBACK_NAMES, host}) if loopback else None
    app = create_app(runs_dir, single_run, allowed_hosts=hosts, workers=WORKERS)
    address_of(host, port)  # a typo in --host or --port is an error, not a warning about the network
    if not loopback:
        warnings.warn(
            f"listening on {host}: anyone on the network can reach this server, read the runs in {runs_dir} "
            "and generate from them; leave out --host to stay on 127.0.0.1",
            stacklevel=2,
        )
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    what = f"run {Path(runs_dir)}" if single_run else f"runs in {Path(runs_dir)}"
    log(f"bricklm studio: http://{shown}:{sock.getsockname()[1]}/  ({what}; Ctrl-C to stop)")
    # The worker threads are the parallelism: a token-step of a small model is too short to split across
    # cores, and torch's own threads spinning beside them slowed generation ~50x on a loaded 2-core machine.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // WORKERS))
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="on")
    server = uvicorn.Server(config)
    app.state.studio.exiting = lambda: server.should_exit  # Ctrl-C ends the pages' live streams too
    server.run(sockets=[sock])
