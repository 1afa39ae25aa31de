"""The two port questions the workshop asks before it starts or joins a server."""

from __future__ import annotations

import socket

from helpers.runtime.ports import answers, connection_error, free_port, is_host_port


def test_a_free_port_can_be_listened_on():
    port = free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert answers(f"127.0.0.1:{port}")
        assert connection_error(f"[127.0.0.1]:{port}") is None  # brackets, as IPv6 addresses are written


def test_a_port_nobody_listens_on_says_why():
    port = free_port()
    err = connection_error(f"127.0.0.1:{port}", timeout=2)
    assert isinstance(err, ConnectionRefusedError)
    assert not answers(f"127.0.0.1:{port}")


def test_an_address_without_a_port_is_not_probed():
    for address in ("127.0.0.1", "localhost:port", ":6379"):
        err = connection_error(address)
        assert err is not None and "host:port" in str(err), address


def test_addresses_that_ray_resolves_itself_are_not_host_port():
    for address in ("auto", "local", "ray://head:10001", "http://head:8265", "127.0.0.1", ":6379"):
        assert not is_host_port(address), address
    for address in ("127.0.0.1:6379", "head.example.org:6379", "[::1]:6379"):
        assert is_host_port(address), address
