"""Joining a cluster that is not there ends in one line, not in minutes of waiting.

A learner's ``RAY_ADDRESS`` may name a cluster that was stopped, or carry a
typo; ``ray.init`` would wait minutes for its GCS. The user's road is a
notebook's first cell, so the test runs ``helpers.start()`` in a fresh
process, as a kernel would, with an address where nothing listens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from helpers.errors import SettingsError
from helpers.runtime.cluster import check_cluster_answers
from helpers.runtime.settings import REPO_ROOT

#: A notebook's first cell, in a fresh process: ``helpers.start()``, and the error it raises in one line.
START = "import helpers\ntry:\n    helpers.start()\nexcept Exception as err:\n    print(type(err).__name__, err)\n"


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_helpers_start_with_a_dead_address_fails_in_one_line():
    address = f"127.0.0.1:{closed_port()}"
    env = {**os.environ, "RAY_ADDRESS": address, "WORKSHOP_PROFILE": "cpu"}
    done = subprocess.run([sys.executable, "-c", START], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=90, check=False)  # a hang fails here instead of waiting for Ray
    assert done.stdout.startswith(f"SettingsError RAY_ADDRESS={address}: no Ray cluster answers there"), done.stderr
    assert "unset RAY_ADDRESS" in done.stdout


def test_helpers_start_with_a_web_servers_port_fails_in_one_line():
    """The Ray dashboard's port (8265) copied from its URL: something answers, but no GCS; it waited minutes."""
    from tests.conftest import web_server

    with web_server() as address:
        env = {**os.environ, "RAY_ADDRESS": address, "WORKSHOP_PROFILE": "cpu"}
        done = subprocess.run([sys.executable, "-c", START], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=90, check=False)  # a hang fails here instead of waiting for Ray
    assert done.stdout.startswith(f"SettingsError RAY_ADDRESS={address}: something answers at that port"), done.stderr
    assert "host:6379" in done.stdout


@pytest.mark.parametrize("address", ["auto", "local", "ray://head:10001", "not-an-address"])
def test_addresses_that_ray_resolves_itself_are_not_probed(address):
    check_cluster_answers(address)  # returns without a connection attempt


def test_a_listening_address_passes():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_cluster_answers(f"127.0.0.1:{server.getsockname()[1]}")


def test_a_closed_port_is_a_settings_error():
    with pytest.raises(SettingsError, match="no Ray cluster answers there"):
        check_cluster_answers(f"127.0.0.1:{closed_port()}")
