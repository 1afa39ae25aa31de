"""The pre-flight check: each way a model node can differ from the driver is one line with the node and the fix.

Unit tests: the nodes' reports are written here, as the probe task returns
them (a worker with another transformers is a report that says so, not a
second Python installed on this machine). The real probe on a real cluster,
and the token check against a real token-authenticated cluster, are in
tests/test_multinode.py.
"""

from __future__ import annotations

import dataclasses
import socket

import pytest

from helpers.errors import ClusterMismatchError, SettingsError
from helpers.runtime import preflight
from helpers.runtime.probe import ModelFolder, NodeReport, ProfileDecision
from helpers.runtime.settings import HUB_IMAGE_MODEL, HUB_LLM_MODEL, load_settings, with_stage


@pytest.fixture
def settings(monkeypatch, tmp_path):
    for name in list(__import__("os").environ):
        if name.startswith("WORKSHOP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path))
    return load_settings("cpu", cluster_gpus=2)


def like_the_driver(**changes) -> NodeReport:
    python, packages = preflight.driver_report()
    return dataclasses.replace(NodeReport("3f2a1b" + "0" * 50, "10.0.0.3", python=python, packages=packages), **changes)


def problems(settings, *reports) -> str:
    with pytest.raises(ClusterMismatchError) as raised:
        preflight.check_nodes(ProfileDecision(settings.profile, "test", reports), settings)
    return str(raised.value)


def test_a_node_like_the_driver_passes(settings):
    assert preflight.check_nodes(ProfileDecision("cpu", "test", (like_the_driver(),)), settings) == []


def test_another_transformers_on_a_worker_names_the_node_the_versions_and_the_fix(settings):
    _, packages = preflight.driver_report()
    message = problems(settings, like_the_driver(packages={**packages, "transformers": "4.57.0"}))
    assert (f"worker 10.0.0.3 (node 3f2a1b) has transformers 4.57.0, the driver {packages['transformers']}: "
            "install requirements.txt on every node") in message
    assert "or use the cluster image" in message


def test_another_python_or_a_missing_package(settings):
    _, packages = preflight.driver_report()
    message = problems(settings, like_the_driver(python="3.10", packages={**packages, "diffusers": None}))
    assert "runs Python 3.10, the driver 3.11" in message
    assert f"has no diffusers, the driver {packages['diffusers']}" in message
    assert message.startswith("2 problem(s)")


def test_a_cuda_build_on_the_worker_is_the_same_release(settings):
    _, packages = preflight.driver_report()
    cuda_build = {**packages, "torch": packages["torch"].split("+")[0] + "+cu128"}
    assert preflight.check_nodes(ProfileDecision("cpu", "test", (like_the_driver(packages=cuda_build),)),
                                 settings) == []


def test_a_storage_root_the_worker_cannot_read(settings):
    message = problems(settings, like_the_driver(storage_unreadable="Permission denied"))
    assert f"worker 10.0.0.3 (node 3f2a1b) cannot read the storage root {settings.storage} (Permission denied)" \
        in message
    assert "mount the same shared storage on every node" in message


def test_a_storage_root_that_is_a_folder_of_the_workers_own(settings):
    message = problems(settings, like_the_driver(storage_elsewhere=True))
    assert (f"worker 10.0.0.3 (node 3f2a1b) has a folder {settings.storage} of its own, not this driver's (it does "
            "not see the file the driver just wrote there)") in message
    assert "mount the same shared storage on every node" in message


def test_a_model_folder_incomplete_on_the_worker(settings):
    folder = ModelFolder(settings.llm.model, "llm", missing=("config.json",))
    message = problems(settings, like_the_driver(models=(folder,)))
    assert f"cannot load the model folder {settings.llm.model} (missing config.json): run ./setup.sh" in message


def gpu_settings(cluster_gpus: int):
    """The gpu profile's requests for ``cluster_gpus`` GPUs, with the models coming from the hub (7 + 1 GB)."""
    gpu = load_settings("gpu", cluster_gpus=cluster_gpus)
    return with_stage(with_stage(gpu, "image", model=HUB_IMAGE_MODEL), "llm", model=HUB_LLM_MODEL)


def test_a_gpu_too_small_for_the_weights_ray_may_put_on_one(settings):
    """Lesson 05 on two GPUs: Ray may put both sdxl-turbo actors (0.5 each) on one GPU, 14 GB, not one of each."""
    small = like_the_driver(cuda=True, device="a 12 GiB GPU", gpu_memory_bytes=12 * 2**30)
    message = problems(gpu_settings(2), small)
    assert ("worker 10.0.0.3 (node 3f2a1b)'s GPU (a 12 GiB GPU) has 12.0 GiB, and Ray may put 2 image actor(s) and "
            "0 LLM actor(s) on one GPU, whose weights need 13.0 GiB: use GPUs with more memory, or fewer actors") in (
        message)
    enough = like_the_driver(cuda=True, device="a 16 GiB GPU", gpu_memory_bytes=16 * 2**30)
    notes = preflight.check_nodes(ProfileDecision("gpu", "test", (enough,)), gpu_settings(2))
    assert notes == [
        f"{model} is not staged on the GPU nodes: each downloads it on first use (about {size}); "
        "stage it once with ./setup.sh --download"
        for model, size in ((HUB_IMAGE_MODEL, "7 GB"), (HUB_LLM_MODEL, "1 GB"))
    ]
    # One GPU: every actor of lesson 05 on it, two of each model (16 GB).
    message = problems(gpu_settings(1), small)
    assert "Ray may put 2 image actor(s) and 2 LLM actor(s) on one GPU, whose weights need 14.9 GiB" in message


def test_the_heaviest_gpu_follows_the_shares(settings):
    """Unit test of the search: which actors' shares fit on one GPU, and the heaviest such set."""
    weights = {"image": 7.0, "llm": 1.0}
    two = gpu_settings(2)
    assert preflight.heaviest_gpu(two, weights) == (14.0, 2, 0)
    three_llms = with_stage(with_stage(two, "llm", actors=3, num_gpus=0.3), "image", num_gpus=1.0)
    # Beside the LLM each image actor gets 0.7: one image and one LLM actor (8), or three LLM actors (3).
    assert preflight.heaviest_gpu(three_llms, weights) == (8.0, 1, 1)
    # Actors of no GPU share load onto the node's first GPU all the same: every one of them counts.
    no_share = with_stage(with_stage(two, "llm", num_gpus=0.0), "image", num_gpus=0.0)
    assert preflight.heaviest_gpu(no_share, weights) == (16.0, 2, 2)


def test_a_web_servers_port_is_refused_at_once():
    """The dashboard's port (8265) copied from its URL into RAY_ADDRESS: ``ray.init`` retried for minutes there."""
    from tests.conftest import web_server

    with (web_server() as address,
          pytest.raises(SettingsError, match=rf"^RAY_ADDRESS={address}: something answers .* not a Ray cluster")):
        preflight.check_token(address)


def test_the_token_check_leaves_addresses_it_cannot_ask_alone():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    for address in ("auto", "ray://head:10001", f"127.0.0.1:{closed}"):
        preflight.check_token(address)  # nothing answers UNAUTHENTICATED: ray.init says what it says
