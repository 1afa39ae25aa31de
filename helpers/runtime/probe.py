"""Ask the nodes that run the models what they have, and pick the profile from their answers.

``WORKSHOP_PROFILE=auto`` used to look for CUDA on the notebook's machine. On
the instructor's cluster that machine is a CPU head whose GPU workers run the
models, so ``auto`` picked the small CPU models and loaded them onto real GPUs.
When ``helpers.start()`` joins a cluster it now sends one short task to every
node with GPUs; the task asks for a sliver of one GPU, so that Ray hands it a
GPU (``CUDA_VISIBLE_DEVICES``) exactly as it hands one to a model actor, and
reports what it finds: CUDA or not, the device and its memory, and what the
pre-flight check (:mod:`helpers.runtime.preflight`) compares with the driver
(Python, package versions, the storage root and the model folders as that node
sees them). Logical GPUs on a CPU cluster report no CUDA.

:func:`decide_profile` turns the answers into ``gpu`` (every GPU node that
answered has CUDA) or ``cpu`` (no GPUs, logical GPUs, or a mix: the big models
would run on a CPU wherever a GPU is logical). A local Ray runs on this machine,
so there the answer is this machine's CUDA (:func:`decide_here`), without a task.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from helpers.runtime.settings import (
    SMALL_LLM_MODEL,
    STAGED_IMAGE_MODEL,
    STAGED_LLM_MODEL,
    TINY_IMAGE_MODEL,
    _env,
    cuda_usable,
    env_flag,
    requested_profile,
    resolve_models_dir,
)

#: The GPU share the probe asks for: enough for Ray to assign it a GPU, little enough
#: to fit beside another learner's actors on a shared GPU that has any room left.
PROBE_GPU = 0.01
#: How long the probe waits for that sliver before it takes the answer of its twin, which
#: asks for no GPU: while another learner's lesson holds every GPU of a node, the sliver
#: would wait until that lesson ends. Ray 2.60 leaves ``CUDA_VISIBLE_DEVICES`` as the node
#: has it for a task without GPUs, so the twin still sees the node's GPUs.
GPU_WAIT_S = 15.0
#: The twin's worker: a cluster started with ``RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=1`` (Ray's
#: switch back to its older behaviour) blanks ``CUDA_VISIBLE_DEVICES`` for a task without
#: GPUs, and the twin would then report no CUDA on a GPU node; its own worker switches it off.
TWIN_RUNTIME_ENV = {"env_vars": {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}}
#: How long the probes may take all together: a fresh worker on a cluster node must
#: first unpack the job's runtime environment (this package); a node whose GPUs stay
#: busy that long is reported as not answering instead of holding up the start.
PROBE_TIMEOUT_S = 60.0
#: The packages whose versions must match between the driver and the model nodes.
PACKAGES = ("ray", "torch", "diffusers", "transformers")


@dataclass(frozen=True)
class ModelFolder:
    """A model folder as one node sees it."""

    path: str
    kind: str  # "image" or "llm", as helpers.models.folders names them
    unreadable: str | None = None  # why the node cannot read it, None when it can
    missing: tuple[str, ...] = ()  # files a complete model would have
    weight_bytes: int = 0  # the weight files a GPU loads (the fp16 variant where there is one)

    @property
    def complete(self) -> bool:
        return self.unreadable is None and not self.missing


@dataclass(frozen=True)
class NodeReport:
    """What one node that will host a model stage says about itself."""

    node_id: str
    node_ip: str
    head: bool = False
    cuda: bool = False
    device: str | None = None  # the GPU's name, when CUDA is usable
    gpu_memory_bytes: int = 0
    python: str = ""  # major.minor
    packages: dict[str, str | None] = field(default_factory=dict)  # None: not installed there
    storage_unreadable: str | None = None  # why the node cannot read the storage root
    storage_elsewhere: bool = False  # reads a storage root without the file the driver just wrote there: not shared
    models: tuple[ModelFolder, ...] = ()
    gpus_reserved: bool = False  # answered without a GPU of its own: the GPUs were all reserved (or slow)

    @property
    def name(self) -> str:
        """``worker 10.0.0.3 (node 3f2a1b)``: the address, and the node id for nodes that share one."""
        return f"{'head' if self.head else 'worker'} {self.node_ip} (node {self.node_id[:6]})"

    def model(self, path: str) -> ModelFolder | None:
        return next((m for m in self.models if m.path == path), None)

    def describe(self) -> str:
        if self.cuda:
            gpu = f"CUDA {self.device}, {self.gpu_memory_bytes / 2**30:.0f} GiB"
        else:
            gpu = "logical GPU, no CUDA"
        busy = " (asked without a GPU: its GPUs were all reserved, or slow to answer)" if self.gpus_reserved else ""
        return f"{self.name}: {gpu}{busy}"


@dataclass(frozen=True)
class ProfileDecision:
    """The profile ``helpers.start()`` uses, why, and what the GPU nodes reported."""

    profile: str
    reason: str
    reports: tuple[NodeReport, ...] = ()
    silent: tuple[str, ...] = ()  # GPU nodes that did not answer in time
    asked: frozenset[str] = frozenset()  # the node ids of the GPU nodes asked (answered or silent)

    @property
    def nodes_resolve_differently(self) -> bool:
        """Whether some GPU node would, or may, pick another profile for itself (workers resolve ``auto``
        locally): one that answered otherwise, or one that did not answer."""
        return bool(self.silent) or any(report.cuda != (self.profile == "gpu") for report in self.reports)

    def ready_model_folders(self) -> frozenset[str] | None:
        """The model folders complete on every GPU node that answered; None when none answered."""
        if not self.reports:
            return None
        sets = [{m.path for m in report.models if m.complete} for report in self.reports]
        return frozenset(set.intersection(*sets))

    def lines(self) -> list[str]:
        lines = [f"Profile: {self.profile} - {self.reason}"]
        lines += [f"  {report.describe()}" for report in self.reports]
        lines += [f"  {name}: did not answer within {PROBE_TIMEOUT_S:g} s (its GPUs busy?)" for name in self.silent]
        return lines


def _model_folder(path: str, kind: str) -> ModelFolder:
    from helpers.models.folders import missing_model_files

    folder = Path(path)
    try:
        os.listdir(folder)
    except OSError as err:
        return ModelFolder(path, kind, unreadable=err.strerror or str(err))
    files = [f for f in folder.rglob("*") if f.suffix in (".safetensors", ".bin") and f.is_file()]
    fp16 = [f for f in files if ".fp16." in f.name]
    return ModelFolder(path, kind, missing=tuple(missing_model_files(folder, kind)),
                       weight_bytes=sum(f.stat().st_size for f in fp16 or files))


def package_version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def report_node(storage: str | None, model_folders: list[tuple[str, str]],
                storage_marker: str | None = None) -> NodeReport:
    """Run on a node: what the pre-flight check and the profile decision need to know about it.

    ``storage`` is the driver's storage root (None for an object store, which
    only the driver reads); ``model_folders`` are ``(path, kind)`` pairs;
    ``storage_marker`` names a file the driver has just written in ``storage``.
    A node that reads the folder but not that file has a folder of its own at
    that path, not the shared one: what its actors write there, the driver and
    the labs never see.
    """
    import ray

    cuda = cuda_usable()  # looks for /dev/nvidia* first, so logical GPUs answer without importing torch
    device, memory = None, 0
    if cuda:
        import torch

        device = torch.cuda.get_device_name(0)
        memory = torch.cuda.get_device_properties(0).total_memory
    storage_unreadable, storage_elsewhere = None, False
    if storage is not None:
        try:
            os.listdir(storage)
        except OSError as err:
            storage_unreadable = err.strerror or str(err)
        else:
            storage_elsewhere = storage_marker is not None and not os.path.isfile(os.path.join(storage, storage_marker))
    return NodeReport(
        node_id=ray.get_runtime_context().get_node_id(),
        node_ip=ray.util.get_node_ip_address(),
        cuda=cuda,
        device=device,
        gpu_memory_bytes=memory,
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        packages={name: package_version(name) for name in PACKAGES},
        storage_unreadable=storage_unreadable,
        storage_elsewhere=storage_elsewhere,
        models=tuple(_model_folder(path, kind) for path, kind in model_folders),
    )


def gpu_nodes() -> list[dict]:
    """The alive nodes with GPUs: the ones Ray places model stages on."""
    import ray

    return [node for node in ray.nodes() if node.get("Alive") and node["Resources"].get("GPU", 0) > 0]


def ask_gpu_nodes(storage: str | None, model_folders: list[tuple[str, str]],
                  timeout: float = PROBE_TIMEOUT_S, storage_marker: str | None = None,
                  only: frozenset[str] | None = None, gpu_wait_s: float = GPU_WAIT_S,
                  ) -> tuple[list[NodeReport], list[str]]:
    """Two :func:`report_node` tasks on every GPU node: the reports, and the nodes that did not answer in time.

    One asks for a sliver of a GPU, as a model actor gets one; its twin asks
    for none and answers at once even while every GPU of the node is reserved
    (another learner's lesson). The first's answer is taken when it comes
    within ``gpu_wait_s`` (:data:`GPU_WAIT_S`), else the twin's. ``only``: the
    node ids to ask (default: every GPU node).
    """
    import time

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(report_node)
    began = time.monotonic()
    asked = []  # (node, with a GPU, without one)
    for node in gpu_nodes():
        if only is not None and node["NodeID"] not in only:
            continue
        on_node = {"num_cpus": 0,  # a node whose CPUs are all taken still answers
                   "scheduling_strategy": NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)}
        twin = probe.options(num_gpus=0, runtime_env=TWIN_RUNTIME_ENV, **on_node)
        asked.append((node, probe.options(num_gpus=PROBE_GPU, **on_node).remote(storage, model_folders, storage_marker),
                      twin.remote(storage, model_folders, storage_marker)))
    with_gpu = [gpu_ref for _, gpu_ref, _ in asked]
    if with_gpu:
        ray.wait(with_gpu, num_returns=len(with_gpu), timeout=min(gpu_wait_s, timeout))
    reports, silent = [], []
    for node, gpu_ref, free_ref in asked:
        left = max(0.0, timeout - (time.monotonic() - began))
        ready, _ = ray.wait([gpu_ref], timeout=0)
        if not ready:
            ready, _ = ray.wait([gpu_ref, free_ref], num_returns=1, timeout=left)
        for ref in (gpu_ref, free_ref):
            if ref not in ready:
                ray.cancel(ref)
        if not ready:
            silent.append(f"node {node['NodeManagerAddress']} ({node['NodeID'][:6]})")
            continue
        head = "node:__internal_head__" in node["Resources"]
        report = _answer(ready[0], node, timeout)
        reports.append(replace(report, head=head, gpus_reserved=ready[0] == free_ref))
    return sorted(reports, key=lambda r: (r.node_ip, r.node_id)), silent


def _answer(ref, node: dict, timeout: float) -> NodeReport:
    """The probe's report; a node that cannot even run it is a mismatch that names the node and the fix."""
    import ray

    from helpers.errors import ClusterMismatchError

    try:
        return ray.get(ref, timeout=timeout)
    except Exception as err:  # noqa: BLE001 - whatever the node raised, said in one line
        where = f"node {node['NodeManagerAddress']} ({node['NodeID'][:6]})"
        if "No module named 'helpers'" in str(err) and env_flag("WORKSHOP_CLUSTER_HAS_HELPERS"):
            raise ClusterMismatchError(
                f"{where} cannot import this workshop's helpers package, but WORKSHOP_CLUSTER_HAS_HELPERS=1 says every "
                "node has it: unset WORKSHOP_CLUSTER_HAS_HELPERS (the package then travels with each job), or "
                "install the clone on every node (pip install -e .)"
            ) from None
        lines = [line for line in str(err).strip().splitlines() if line.strip()]
        raise ClusterMismatchError(f"{where} could not report what it has: {lines[-1] if lines else err!r}") from None


def decide_profile(reports: list[NodeReport], silent: list[str] = (), cluster_gpus: float = 0) -> ProfileDecision:
    """``gpu`` when every GPU node that answered has CUDA, else ``cpu``, with the reason in words."""
    reports, silent = tuple(reports), tuple(silent)
    with_cuda = [r for r in reports if r.cuda]
    if not cluster_gpus and not reports and not silent:
        return ProfileDecision("cpu", "auto: the cluster has no GPUs (on an autoscaling cluster, give its GPU "
                                      "workers a minimum above 0, wait until they have joined, then start again)")
    if not reports:
        return ProfileDecision(
            "cpu", "auto: no GPU node answered; set WORKSHOP_PROFILE=gpu if its GPUs have CUDA", reports, silent
        )
    if len(with_cuda) == len(reports):
        return ProfileDecision("gpu", f"auto: every GPU node has CUDA ({len(reports)} of {len(reports)})",
                               reports, silent)
    if not with_cuda:
        return ProfileDecision("cpu", "auto: the cluster's GPUs have no CUDA (logical GPUs)", reports, silent)
    return ProfileDecision(
        "cpu",
        f"auto: only {len(with_cuda)} of {len(reports)} GPU nodes have CUDA, and the real models would run on "
        "CPU on the others; set WORKSHOP_PROFILE=gpu to use them anyway",
        reports,
        silent,
    )


def decide_here() -> ProfileDecision:
    """A local Ray runs on this machine: ``gpu`` when CUDA is usable here."""
    if cuda_usable():
        return ProfileDecision("gpu", "auto: CUDA on this machine")
    return ProfileDecision("cpu", "auto: no CUDA on this machine")


def model_folders_to_check(storage) -> list[tuple[str, str]]:
    """Every model folder either profile may load, as ``(path, kind)``: the probe runs before the profile is known."""
    models_dir = resolve_models_dir(storage)
    folders = [(str(models_dir / name), kind) for name, kind in (
        (STAGED_IMAGE_MODEL, "image"), (STAGED_LLM_MODEL, "llm"), (TINY_IMAGE_MODEL, "image"), (SMALL_LLM_MODEL, "llm"),
    )]
    for variable, kind in (("WORKSHOP_IMAGE_MODEL", "image"), ("WORKSHOP_LLM_MODEL", "llm")):
        explicit = _env(variable)
        if explicit is not None and explicit.startswith(("/", ".", "~")):  # a folder, not a hub id
            folders.append((os.path.abspath(os.path.expanduser(explicit)), kind))
    return folders


@contextlib.contextmanager
def storage_marker(root: str | None) -> Iterator[str | None]:
    """A new, empty file in the storage root while the nodes are asked (its name), removed after; None without one.

    A random name: no node has looked it up before, so no cache of a shared
    file system can say it is missing when it is there.
    """
    if root is None:
        yield None
        return
    name = f".workshop-shared-check-{secrets.token_hex(6)}"
    path = os.path.join(root, name)
    try:
        with open(path, "x"):
            pass
    except OSError:  # a storage root this driver cannot write is refused before Ray starts; nothing to compare
        yield None
        return
    try:
        yield name
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)


def _ask_about_storage(storage, **ask) -> tuple[list[NodeReport], list[str]]:
    """:func:`ask_gpu_nodes` about ``storage`` (its root, with :func:`storage_marker`, and its model folders)."""
    root = str(storage) if isinstance(storage, Path) else None  # an object store is read by the driver only
    with storage_marker(root) as marker:
        return ask_gpu_nodes(root, model_folders_to_check(storage), storage_marker=marker, **ask)


def decide(requested: str | None, joined: bool, storage, cluster_gpus: float | None) -> ProfileDecision:
    """The session's profile: asked of the cluster's GPU nodes when joining, else of this machine.

    When joining, the GPU nodes are asked whatever the profile, because the
    pre-flight check compares their answers with this driver.
    """
    profile = requested_profile(requested)
    chosen = f"start(profile={requested!r})" if requested else f"WORKSHOP_PROFILE={profile}"
    if not joined:
        return decide_here() if profile == "auto" else ProfileDecision(profile, chosen)
    asked = frozenset(node["NodeID"] for node in gpu_nodes())  # a node joining meanwhile is asked again later
    reports, silent = _ask_about_storage(storage)
    if profile == "auto":
        return replace(decide_profile(reports, silent, cluster_gpus or 0), asked=asked)
    return ProfileDecision(profile, chosen, tuple(reports), tuple(silent), asked)


def ask_new_gpu_nodes(known: frozenset[str], storage, profile: str) -> ProfileDecision:
    """The GPU nodes that are not in ``known`` (joined since they were asked), asked as :func:`decide` asks.

    Their answers come as a decision of ``profile``, for the pre-flight check;
    ``asked`` holds the nodes asked. A run's actor pools have asked for their
    GPUs by then, so the answer of the task without a GPU is taken at once.
    """
    new = frozenset(node["NodeID"] for node in gpu_nodes()) - known
    if not new:
        return ProfileDecision(profile, "no GPU node joined")
    reports, silent = _ask_about_storage(storage, only=new, gpu_wait_s=0)
    return ProfileDecision(profile, "GPU nodes that joined since helpers.start()", tuple(reports), tuple(silent),
                           new)
