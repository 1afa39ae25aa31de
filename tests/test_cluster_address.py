"""Joining a cluster that is not there ends in one line, not in minutes of waiting.

A learner's ``RAY_ADDRESS`` may name a cluster that was stopped, or carry a
typo; ``ray.init`` would wait minutes for its GCS. The user's road is a
notebook's first cell, so the test runs ``helpers.start()`` in a fresh
process, as a kernel would, with an address where nothing listens.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from helpers.errors import SettingsError
from helpers.runtime.cluster import check_cluster_answers
from helpers.runtime.settings import REPO_ROOT

#: A notebook's first cell, in a fresh process: ``helpers.start()``, and the error it raises in one line.
START = "import helpers\ntry:\n    helpers.start()\nexcept Exception as err:\n    print(type(err).__name__, err)\n"
#: START, then what the failed start left in this process's WORKSHOP_PROFILE.
START_THEN_PROFILE = START + "import os\nprint('PROFILE AFTER', os.environ.get('WORKSHOP_PROFILE'))\n"


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


@pytest.mark.slow
def test_a_ray_start_of_the_learners_own_is_joined_and_left_with_workshop_ray(tmp_path):
    """A learner ran ``ray start --head`` (no GPUs) on their laptop: the lessons join it, are told why they cannot
    run there and how to use the workshop's own Ray, and with WORKSHOP_RAY=process they start a Ray beside it.

    Set-up a learner would not have: ``RAY_TMPDIR`` puts that Ray's record in a folder of the test (the default,
    ``/tmp/ray``, would be seen by every other test on this machine), and its token file is named to both sides.
    """
    from tests.local_cluster import _start_node, _stop, wait_for_nodes
    from tests.test_pipeline_cli import STORAGE

    base = Path(tempfile.mkdtemp(prefix="rwr", dir="/tmp"))  # short: Ray's socket paths live under it
    token = base / "auth_token"
    token.write_text("a" * 64)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "WORKSHOP_"))}
    env.update(RAY_TMPDIR=str(base), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token),
               WORKSHOP_STORAGE=str(STORAGE), WORKSHOP_RAY_DIR=str(base / "w"))
    head = _start_node(["--head", f"--port={closed_port()}", "--include-dashboard=false", "--num-cpus=4",
                        "--num-gpus=0"], env)
    try:
        record = base / "ray" / "ray_current_cluster"
        for _ in range(120):
            if record.is_file():
                break
            time.sleep(0.5)
        address = record.read_text().strip()
        wait_for_nodes({**env, "RAY_ADDRESS": address}, count=1)
        joined = subprocess.run([sys.executable, "-c", START_THEN_PROFILE], env=env, cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=240, check=False)
        assert joined.stdout.startswith("SettingsError The lessons' actor pools cannot fit this cluster"), (
            joined.stdout + joined.stderr[-2000:])
        assert f"This lesson joined the Ray that `ray start` runs on this machine ({address}" in joined.stdout
        assert "WORKSHOP_NUM_GPUS on this machine" not in joined.stdout, "that variable does not size this Ray"
        # `auto` was decided (cpu) on the cluster before the fit check refused it; a start() after the fix decides
        # again instead of reading that decision as the learner's WORKSHOP_PROFILE.
        assert joined.stdout.splitlines()[-1] == "PROFILE AFTER None"
        own = "import helpers\ns = helpers.start(quiet=True)\nprint('ADDRESS', s.address)\nhelpers.stop()\n"
        beside = subprocess.run([sys.executable, "-c", own], env={**env, "WORKSHOP_RAY": "process"}, cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=240, check=False)
        assert beside.returncode == 0, beside.stdout + beside.stderr[-2000:]
        [line] = [line for line in beside.stdout.splitlines() if line.startswith("ADDRESS ")]
        assert line.split()[1] != address, "WORKSHOP_RAY=process joined the learner's `ray start` instead"
    finally:
        _stop([head])
        shutil.rmtree(base, ignore_errors=True)
