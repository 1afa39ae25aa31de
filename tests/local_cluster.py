"""Real Ray clusters for tests, started with Ray's own ``ray start`` on this machine.

A cluster here is what a learner's notebook meets on a shared machine: a head
node (and optional worker nodes) that drivers join through ``RAY_ADDRESS``,
with Ray 2.60's token authentication on. Each cluster gets its own temp dir,
port and token, and is torn down by the process groups it started, so it never
touches another Ray on the machine (``ray stop`` would).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers.runtime.ports import free_port
from helpers.runtime.shared_ray import kill_once_idle

RAY = str(Path(sys.executable).with_name("ray"))


@dataclass(frozen=True)
class LocalCluster:
    address: str
    env: dict  # what a driver (or a notebook kernel) needs to join: RAY_ADDRESS, auth, settings


def node_ip() -> str:
    """This machine's address as Ray picks it for local nodes."""
    from ray.util import get_node_ip_address

    return get_node_ip_address()


def _start_node(args: list[str], env: dict) -> subprocess.Popen:
    # --block keeps each node a child of the test, in a process group of its own,
    # so teardown stops exactly what was started here.
    return subprocess.Popen(
        [RAY, "start", "--block", "--disable-usage-stats", "--object-store-memory=500000000", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(nodes: list[subprocess.Popen]) -> None:
    """Stop each node as ``python -m helpers.workshop_ray stop`` stops the workshop's Ray.

    SIGTERM, then a wait for the node's raylet and workers only: the head's GCS
    server takes 30 s to leave after SIGTERM and holds nothing a test needs.
    """
    for node in reversed(nodes):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGTERM)
    for node in reversed(nodes):
        kill_once_idle(node.pid)  # the node's process group: started with start_new_session
        node.wait(timeout=10)


def wait_for_nodes(env: dict, count: int, timeout: int = 120) -> None:
    """Block until ``count`` nodes are alive, seen by a driver that joins as a notebook would."""
    code = (
        "import ray, time\n"
        "ray.init(log_to_driver=False)\n"
        f"end = time.monotonic() + {timeout}\n"
        f"while sum(n['Alive'] for n in ray.nodes()) < {count}:\n"
        "    assert time.monotonic() < end, ray.nodes()\n"
        "    time.sleep(0.5)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the test cluster did not come up: {done.stderr[-2000:]}")


@contextlib.contextmanager
def local_cluster(head_args: list[str], worker_args: list[list[str]] = (), env: dict | None = None,
                  ) -> Iterator[LocalCluster]:
    """Start a head node (``head_args``) and one worker node per entry of ``worker_args``."""
    # Unix socket paths must stay short: a temp dir under /tmp, not pytest's.
    temp_dir = Path(tempfile.mkdtemp(prefix="rwk", dir="/tmp"))
    token_file = temp_dir / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    port = free_port()
    address = f"{node_ip()}:{port}"
    node_env = {**(env or os.environ), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
    node_env.pop("RAY_ADDRESS", None)
    # --include-dashboard is refused on worker nodes ("only ... with --head").
    nodes = [_start_node(["--head", f"--port={port}", f"--temp-dir={temp_dir}", "--include-dashboard=false",
                          *head_args], node_env)]
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as sock:
                if sock.connect_ex((address.rsplit(":", 1)[0], port)) == 0:
                    break
            if nodes[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the head node did not open {address}")
            time.sleep(0.3)
        driver_env = {**node_env, "RAY_ADDRESS": address}
        # One worker node at a time: nodes started together on one machine race for the
        # same socket names in the session folder, and the loser never joins.
        for args in worker_args:
            nodes.append(_start_node([f"--address={address}", *args], node_env))
            wait_for_nodes(driver_env, count=len(nodes))
        if not worker_args:
            wait_for_nodes(driver_env, count=1)
        yield LocalCluster(address=address, env=driver_env)
    finally:
        _stop(nodes)
        shutil.rmtree(temp_dir, ignore_errors=True)
