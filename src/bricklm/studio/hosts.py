"""Which Host names the studio answers to, and reading a Host header strictly.

    host_of("127.0.0.1:8000")      # "127.0.0.1"; "[::1]:80" → "::1"; "Example.COM." → "example.com"
    host_of("[::1]evil.example")   # None: not a host name or a bracketed IPv6 address with an optional port
    allowed_hosts("0.0.0.0", ["studio.lan"])   # loopback names, this machine's names and addresses, studio.lan

A browser sends the name it used to reach a server as Host. A server on 127.0.0.1 is still reachable
from a web page on another site if that site's name is made to resolve to 127.0.0.1 (DNS rebinding);
the browser then sends the other site's name. Answering only to our own names closes that, on
loopback and beyond it. Anything that isn't a plain name or address (with a port) is refused, so
no two parts of the server can read one header two ways.
"""

from __future__ import annotations

import ipaddress
import re
import socket

from bricklm.errors import UserError

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1"]
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_PORT = re.compile(r"[0-9]{1,5}")
# Documentation addresses (RFC 5737, RFC 3849): "connecting" a UDP socket to one sends nothing, but
# makes the kernel pick the address this machine would reach the network from.
_PROBES = [(socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")]


def host_of(header: str) -> str | None:
    """The host in a Host header (or an Origin's host and port), normalised; None unless it is a host
    name or an IPv4 address, or an IPv6 address in brackets, each with an optional :port and nothing else."""
    if header.startswith("["):
        literal, bracket, rest = header[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:]))):
            return None
        try:
            address = ipaddress.IPv6Address(literal)
        except ValueError:
            return None
        return None if address.scope_id else address.compressed  # no zone ids: "fe80::1%eth0" is refused
    name, colon, port = header.partition(":")
    if colon and not _PORT.fullmatch(port):
        return None
    return normal_name(name)


def normal_name(name: str) -> str | None:
    """A host name or address as compared: lowercase, no trailing dot, IPv6 compressed; None if it is neither."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return None if getattr(address, "scope_id", None) else address.compressed
    name = name.lower()
    name = name[:-1] if name.endswith(".") else name
    if not 0 < len(name) <= 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return None
    return name


def machine_names() -> set[str]:
    """This machine's name, its canonical name and the addresses they resolve to, and the addresses it
    reaches the network from. Forward lookups only: a reverse one (getfqdn) can stall the start for seconds."""
    name = socket.gethostname()
    found = {name}
    try:
        for _, _, _, canonical, address in socket.getaddrinfo(name, None, flags=socket.AI_CANONNAME):
            found |= {canonical, address[0]} - {""}
    except OSError:
        pass
    for family, probe in _PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                found.add(s.getsockname()[0])
        except OSError:  # no such network (no IPv6, no route): nothing to add
            pass
    return {n for n in map(normal_name, (f.split("%")[0] for f in found)) if n}


def allowed_hosts(bind: str, extra: list[str] = (), loopback_only: bool = True) -> list[str]:
    """The Host names a server bound to `bind` answers to: loopback names and `bind` itself, and unless
    loopback_only, this machine's names and addresses too; `extra` (--allow-host) always. A name in
    `extra` that isn't a host name is a UserError naming it."""
    hosts = {*LOOPBACK_NAMES}
    for name in extra:
        normal = normal_name(name[1:-1] if name.startswith("[") and name.endswith("]") else name)
        if normal is None:
            raise UserError(f"--allow-host {name!r} is not a host name or an IP address")
        hosts.add(normal)
    if not loopback_only:
        hosts |= machine_names()
    bound = normal_name(bind)
    if bound and bound not in ("0.0.0.0", "::"):  # a wildcard is no name anyone can send
        hosts.add(bound)
    return sorted(hosts)
