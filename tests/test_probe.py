"""The profile ``auto`` picks from what the cluster's GPU nodes report, and what one node reports.

The decision is unit-tested on report values written here, as the probe task
would return them from a CUDA worker, a worker with logical GPUs and a mix of
both (this machine has no CUDA to report). The report itself is made for real
on this machine, by the function the probe task runs.
"""

from __future__ import annotations

import sys

from helpers.runtime import settings as config
from helpers.runtime.probe import (
    ModelFolder,
    NodeReport,
    ProfileDecision,
    decide_profile,
    report_node,
    storage_marker,
)


def cuda_worker(node: str = "aaaaaa") -> NodeReport:
    return NodeReport(node_id=node * 4, node_ip="10.0.0.3", cuda=True, device="NVIDIA L4",
                      gpu_memory_bytes=24 * 2**30)


def logical_worker(node: str = "bbbbbb") -> NodeReport:
    return NodeReport(node_id=node * 4, node_ip="10.0.0.4", cuda=False)


def test_a_cuda_worker_means_the_gpu_profile():
    decision = decide_profile([cuda_worker()], cluster_gpus=1)
    assert decision.profile == "gpu"
    assert "CUDA" in decision.reason
    assert "worker 10.0.0.3 (node aaaaaa): CUDA NVIDIA L4, 24 GiB" in "\n".join(decision.lines())


def test_logical_gpus_mean_the_cpu_profile():
    decision = decide_profile([logical_worker(), logical_worker("cccccc")], cluster_gpus=2)
    assert decision.profile == "cpu"
    assert "no CUDA (logical GPUs)" in decision.reason
    assert "worker 10.0.0.4 (node bbbbbb): logical GPU, no CUDA" in "\n".join(decision.lines())
    assert not decision.nodes_resolve_differently  # each worker, resolving auto itself, also picks cpu


def test_a_mixed_cluster_means_the_cpu_profile_and_says_why():
    decision = decide_profile([cuda_worker(), logical_worker()], cluster_gpus=2)
    assert decision.profile == "cpu"
    assert "only 1 of 2 GPU nodes have CUDA" in decision.reason
    assert "WORKSHOP_PROFILE=gpu" in decision.reason
    assert decision.nodes_resolve_differently  # the CUDA worker alone would pick gpu: the decision must travel


def test_no_gpus_or_no_answer_mean_the_cpu_profile():
    assert decide_profile([], cluster_gpus=0).reason.startswith("auto: the cluster has no GPUs (on an autoscaling "
                                                                "cluster, give its GPU workers a minimum above 0")
    silent = decide_profile([], ["node 10.0.0.3 (aaaaaa)"], cluster_gpus=1)
    assert silent.profile == "cpu" and "no GPU node answered" in silent.reason
    assert any("did not answer" in line for line in silent.lines())
    assert silent.nodes_resolve_differently, "a silent GPU node may pick gpu for itself: the decision must travel"


def test_models_ready_on_every_gpu_node_decide_staged_or_hub(monkeypatch, tmp_path):
    for name in list(__import__("os").environ):
        if name.startswith("WORKSHOP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path))
    staged = str(tmp_path / "models" / config.STAGED_LLM_MODEL)
    ready = ModelFolder(staged, "llm")
    absent = ModelFolder(staged, "llm", unreadable="No such file or directory")
    both = ProfileDecision("gpu", "test", (NodeReport("a" * 24, "10.0.0.3", models=(ready,)),
                                           NodeReport("b" * 24, "10.0.0.4", models=(ready,))))
    one = ProfileDecision("gpu", "test", (NodeReport("a" * 24, "10.0.0.3", models=(ready,)),
                                          NodeReport("b" * 24, "10.0.0.4", models=(absent,))))
    # Not staged on this machine: the GPU nodes' answers decide, not this machine's folders.
    assert config.load_settings("gpu", ready_model_folders=both.ready_model_folders()).llm.model == staged
    assert config.load_settings("gpu", ready_model_folders=one.ready_model_folders()).llm.model == config.HUB_LLM_MODEL


def test_a_gpu_node_without_torch_has_no_usable_cuda(tmp_path, monkeypatch):
    """Instead of a ModuleNotFoundError in the probe: the node's package versions then say torch is missing."""
    (tmp_path / "nvidia0").touch()
    monkeypatch.setitem(sys.modules, "torch", None)  # ``import torch`` raises ImportError
    assert config.cuda_usable(tmp_path) is False


def test_a_node_reports_its_versions_storage_and_model_folders(tmp_path, session):
    import ray

    complete = tmp_path / "llm"
    complete.mkdir()
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json"):
        (complete / name).write_text("{}")
    (complete / "model.safetensors").write_bytes(b"0" * 1000)
    report = ray.get(
        ray.remote(report_node).remote(str(tmp_path / "not-mounted"), [(str(complete), "llm"),
                                                                      (str(tmp_path / "empty"), "image")]),
        timeout=120,
    )
    assert not report.cuda  # logical GPUs, or none: this machine has no CUDA
    assert report.python.count(".") == 1 and report.packages["ray"] == ray.__version__
    assert report.storage_unreadable == "No such file or directory"
    folder = report.model(str(complete))
    assert folder.complete and folder.weight_bytes == 1000
    assert not report.model(str(tmp_path / "empty")).complete


def test_a_node_that_does_not_see_the_drivers_file_in_the_storage_root_has_a_folder_of_its_own(tmp_path, session):
    """What a GPU worker with a local folder at the storage root's path answers (here: a folder beside it).

    The driver's half is real: ``storage_marker`` writes its file in the storage root and removes it after.
    """
    import ray

    shared, own = tmp_path / "shared", tmp_path / "own"
    shared.mkdir()
    own.mkdir()
    probe = ray.remote(report_node)
    with storage_marker(str(shared)) as marker:
        assert marker is not None and (shared / marker).is_file()
        sees_it = ray.get(probe.remote(str(shared), [], marker), timeout=120)
        elsewhere = ray.get(probe.remote(str(own), [], marker), timeout=120)
    assert not sees_it.storage_elsewhere and sees_it.storage_unreadable is None
    assert elsewhere.storage_elsewhere
    assert list(shared.iterdir()) == [], "the driver's file goes once the nodes have answered"
    with storage_marker(None) as marker:  # an object store: the driver alone reads it
        assert marker is None


def test_a_node_whose_gpus_another_lesson_holds_answers_without_one(session, monkeypatch):
    """Another learner's lesson holds every GPU of the node: the probe's twin, which asks for no GPU, answers
    instead of the start waiting for that lesson to end. The sliver's wait is 2 s here (15 s in use)."""
    import ray

    from helpers.runtime import probe
    from tests.conftest import deadline

    monkeypatch.setattr(probe, "GPU_WAIT_S", 2.0)

    @ray.remote(num_gpus=session.resources["GPU"], num_cpus=0)
    class HoldsEveryGpu:
        def ready(self):
            return True

    holder = HoldsEveryGpu.remote()
    try:
        assert ray.get(holder.ready.remote(), timeout=120)
        with deadline(60, "the probe while every GPU is reserved"):
            reports, silent = probe.ask_gpu_nodes(None, [])
        assert silent == [] and len(reports) == 1
        assert reports[0].gpus_reserved and not reports[0].cuda
        assert "(asked without a GPU: its GPUs were all reserved, or slow to answer)" in reports[0].describe()
    finally:
        ray.kill(holder)
    with deadline(120, "the probe with the GPUs free"):
        reports, silent = probe.ask_gpu_nodes(None, [])
    assert silent == [] and [report.gpus_reserved for report in reports] == [False]


def test_a_node_without_the_helpers_package_is_named_with_the_setting_that_said_it_had_it(session, monkeypatch):
    """The probe task fails on such a node as it would there (a stand-in task raising Python's own error): one
    line with the node and the fix, not a worker's traceback."""
    import pytest
    import ray

    from helpers.errors import ClusterMismatchError
    from helpers.runtime import probe

    @ray.remote
    def cannot_import_helpers():
        raise ModuleNotFoundError("No module named 'helpers'")

    node = {"NodeManagerAddress": "10.0.0.9", "NodeID": "c0ffee" + "0" * 50}
    monkeypatch.setenv("WORKSHOP_CLUSTER_HAS_HELPERS", "1")
    with pytest.raises(ClusterMismatchError) as raised:
        probe._answer(cannot_import_helpers.remote(), node, timeout=60)
    assert str(raised.value).startswith("node 10.0.0.9 (c0ffee) cannot import this workshop's helpers package, but "
                                        "WORKSHOP_CLUSTER_HAS_HELPERS=1 says every node has it: unset")


#: Run in a Ray of its own, started as a cluster node would be with Ray's switch back to blanking
#: ``CUDA_VISIBLE_DEVICES`` for tasks without GPUs: the probe while a lesson holds the node's one GPU,
#: its report carrying (in ``device``) the ``CUDA_VISIBLE_DEVICES`` the answering task saw.
_BLANKING_NODE = """
import os, sys
from dataclasses import replace
import ray
from helpers.runtime import probe

ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False)
real_report = probe.report_node
probe.report_node = lambda *args: replace(real_report(*args), device=os.environ.get("CUDA_VISIBLE_DEVICES"))
probe.GPU_WAIT_S = 1.0

@ray.remote(num_gpus=1, num_cpus=0)
class HoldsTheGpu:
    def ready(self):
        return True

holder = HoldsTheGpu.remote()
ray.get(holder.ready.remote(), timeout=120)
reports, silent = probe.ask_gpu_nodes(None, [], timeout=90)
print("SAW", [(report.gpus_reserved, report.device) for report in reports], silent)
"""


def test_the_twin_sees_the_nodes_gpus_where_the_cluster_blanks_them_for_tasks_without_gpus():
    """A cluster node set to ``RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=1`` hands a task without GPUs an empty
    ``CUDA_VISIBLE_DEVICES``; the twin, which answers while every GPU is reserved, would report no CUDA
    there and ``auto`` would pick the CPU models. A real Ray started with that setting (logical GPU
    "0"); the report is the real one, carrying the variable the twin saw."""
    import os
    import shutil
    import subprocess
    import tempfile

    ray_dir = tempfile.mkdtemp(prefix="rtw", dir="/tmp")  # short: Ray's socket paths live under it
    env = {**os.environ, "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1", "CUDA_VISIBLE_DEVICES": "0",
           "RAY_TMPDIR": ray_dir}
    env.pop("RAY_ADDRESS", None)
    try:
        done = subprocess.run([sys.executable, "-c", _BLANKING_NODE], check=False, env=env, capture_output=True,
                              text=True, timeout=240)
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SAW [(True, '0')] []" in done.stdout, done.stdout + done.stderr[-3000:]
