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


def problems(settings, *reports, gpus: float = 2) -> str:
    with pytest.raises(ClusterMismatchError) as raised:
        preflight.check_nodes(ProfileDecision(settings.profile, "test", reports), settings, gpus)
    return str(raised.value)


def test_a_node_like_the_driver_passes(settings):
    assert preflight.check_nodes(ProfileDecision("cpu", "test", (like_the_driver(),)), settings, 2) == []


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
                                 settings, 2) == []


def test_a_storage_root_the_worker_cannot_read(settings):
    message = problems(settings, like_the_driver(storage_unreadable="Permission denied"))
    assert f"worker 10.0.0.3 (node 3f2a1b) cannot read the storage root {settings.storage} (Permission denied)" \
        in message
    assert "mount the same shared storage on every node" in message


def test_a_model_folder_incomplete_on_the_worker(settings):
    folder = ModelFolder(settings.llm.model, "llm", missing=("config.json",))
    message = problems(settings, like_the_driver(models=(folder,)))
    assert f"cannot load the model folder {settings.llm.model} (missing config.json): run ./setup.sh" in message


def test_a_gpu_too_small_for_the_lessons_packing(settings):
    gpu = dataclasses.replace(settings, profile="gpu")
    gpu = with_stage(with_stage(gpu, "image", model=HUB_IMAGE_MODEL), "llm", model=HUB_LLM_MODEL)
    small = like_the_driver(cuda=True, device="a 12 GiB GPU", gpu_memory_bytes=12 * 2**30)
    # Two GPUs: one of each model per GPU (about 8 GB of weights) fits; one GPU: two of each (16 GB) does not.
    notes = preflight.check_nodes(ProfileDecision("gpu", "test", (small,)), gpu, 2)
    assert notes == [
        f"{model} is not staged on the GPU nodes: each downloads it on first use (about {size}); "
        "stage it once with ./setup.sh --download"
        for model, size in ((HUB_IMAGE_MODEL, "7 GB"), (HUB_LLM_MODEL, "1 GB"))
    ]
    message = problems(gpu, small, gpus=1)
    assert ("worker 10.0.0.3 (node 3f2a1b)'s GPU (a 12 GiB GPU) has 12.0 GiB, the weights of 2 image actor(s) and "
            "2 LLM actor(s) per GPU need 14.9 GiB: use GPUs with more memory, or fewer actors") in message


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
