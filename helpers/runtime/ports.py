"""Two questions about TCP ports: which one is free here, and does ``host:port`` answer.

The workshop asks them wherever it starts or joins a server: the shared Ray
and its dashboard, JupyterLab for the browser test, a cluster address given in
``RAY_ADDRESS``. One answer each keeps the timeouts and the parsing alike.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_host_port(address: str) -> bool:
    """True for a plain ``host:port`` (``[::1]:6379`` too); False for ``auto``, ``ray://...`` and the like."""
    host, _, port = address.rpartition(":")
    return "://" not in address and bool(host) and port.isdigit()


def connection_error(address: str, timeout: float = 1.0) -> OSError | None:
    """None when ``host:port`` accepts a TCP connection within ``timeout`` seconds; else why not.

    An address that is not ``host:port`` (:func:`is_host_port`) gets an error
    that says so.
    """
    if not is_host_port(address):
        return OSError(f"{address!r} is not host:port")
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except OSError as err:
        return err


def answers(address: str, timeout: float = 1.0) -> bool:
    """True when ``host:port`` accepts a TCP connection within ``timeout`` seconds."""
    return connection_error(address, timeout) is None
