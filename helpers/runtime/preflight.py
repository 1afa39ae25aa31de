"""Checks made when joining a cluster, before the first lesson runs: seconds, never a hang.

A cluster whose nodes differ from the notebook's machine used to fail minutes
into a lesson, as a worker's traceback: another transformers on a GPU node, a
storage root that node does not mount, a model folder staged only on the head.
Joining now compares what the nodes that run the model stages reported
(:mod:`helpers.runtime.probe`) with this driver, and stops with one line per
difference, each naming the node and the fix (:class:`ClusterMismatchError`).

Joining itself fails in one line too: a cluster with token authentication
refuses a driver without its token, and Ray says so only as ``ConnectionError:
Failed to connect to Ray cluster`` after retrying for 20 s
(:func:`check_token` asks the cluster in milliseconds instead; it also
refuses a web server's port, such as the dashboard's, at once).
"""

from __future__ import annotations

import os
import sys

from helpers.errors import ClusterMismatchError, SettingsError
from helpers.runtime import ray_internals
from helpers.runtime.node_constraints import EPS
from helpers.runtime.probe import PACKAGES, NodeReport, ProfileDecision, package_version
from helpers.runtime.settings import HUB_IMAGE_MODEL, HUB_LLM_MODEL, Settings

VERSIONS_FIX = "install requirements.txt on every node (pip install -r requirements.txt), or use the cluster image"
STORAGE_FIX = "mount the same shared storage on every node, or set WORKSHOP_STORAGE to a folder every node sees"
MODELS_FIX = "run ./setup.sh (./setup.sh --download for the real models) with WORKSHOP_STORAGE on the shared storage"
#: What a GPU node downloads for a model that is not staged: the fp16 weights, as ``setup.sh --download`` fetches them.
HUB_DOWNLOAD_BYTES = {HUB_IMAGE_MODEL: 7e9, HUB_LLM_MODEL: 1e9}
#: Where Ray looks for the token, in its order (the messages of Ray 2.60's token loader, in ``ray/_raylet.so``).
TOKEN_PLACES = "the RAY_AUTH_TOKEN variable, the file RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token"
#: How long the cluster may take to answer the token question.
TOKEN_PROBE_S = 3.0


def check_token(address: str) -> None:
    """Fail in one line when ``host:port`` is no Ray cluster's GCS, or wants a token that this process does not send.

    Ray sends a token only when ``RAY_AUTH_MODE=token`` (an explicit address
    never turns it on by itself) and it finds one in :data:`TOKEN_PLACES`. A web
    server's port (the dashboard's 8265, copied from its URL) would keep
    ``ray.init`` retrying for minutes.
    """
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    token_mode = os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "token"
    token = ray_internals.auth_token() if token_mode else None
    answer = ray_internals.gcs_answer(address, token, TOKEN_PROBE_S)
    if answer == "not-grpc":
        raise SettingsError(
            f"RAY_ADDRESS={address}: something answers at that port, but it is not a Ray cluster (it does not speak "
            "gRPC: a web server, such as the Ray dashboard at 8265); use the head's GCS address, host:6379 unless the "
            "cluster chose another port (`ray status` on the head runs against it)"
        )
    if answer != "unauthenticated":
        return
    if token:
        problem = "refused the token this process sends"
    elif token_mode:
        problem = f"this process has no token (RAY_AUTH_MODE=token, but none in {TOKEN_PLACES})"
    else:
        problem = "this process sends no token (RAY_AUTH_MODE is not 'token')"
    raise SettingsError(
        f"RAY_ADDRESS={address}: the cluster uses token authentication and {problem}; set RAY_AUTH_MODE=token "
        f"and put the cluster's token (`ray get-auth-token` on its head prints it) in {TOKEN_PLACES}"
    )


def driver_report() -> tuple[str, dict[str, str | None]]:
    """This process's Python (major.minor) and package versions, as a node reports its own."""
    return f"{sys.version_info.major}.{sys.version_info.minor}", {name: package_version(name) for name in PACKAGES}


def _release(version: str | None) -> str | None:
    """``2.9.0`` for ``2.9.0+cu128``: a CUDA build on a GPU node and a CPU build on the head are the same release."""
    return version.split("+", 1)[0] if version else None


def version_problems(report: NodeReport, python: str, packages: dict[str, str | None]) -> list[str]:
    problems = []
    if report.python != python:
        problems.append(f"{report.name} runs Python {report.python}, the driver {python}: {VERSIONS_FIX}")
    for name, mine in packages.items():
        theirs = report.packages.get(name)
        if _release(theirs) != _release(mine):
            what = f"{name} {theirs}" if theirs else f"no {name}"
            problems.append(f"{report.name} has {what}, the driver {mine or 'none'}: {VERSIONS_FIX}")
    return problems


def storage_problems(report: NodeReport, settings: Settings) -> list[str]:
    problems = []
    if report.storage_unreadable:
        problems.append(
            f"{report.name} cannot read the storage root {settings.storage} ({report.storage_unreadable}): "
            f"{STORAGE_FIX}"
        )
    elif report.storage_elsewhere:
        problems.append(
            f"{report.name} has a folder {settings.storage} of its own, not this driver's (it does not see the "
            f"file the driver just wrote there), so what its actors write never reaches the lessons: {STORAGE_FIX}"
        )
    for stage in (settings.image, settings.llm):
        folder = report.model(stage.model)
        if folder is None or folder.complete:  # a hub id, or a folder the probe was not asked about
            continue
        why = folder.unreadable or f"missing {', '.join(folder.missing[:3])}"
        problems.append(f"{report.name} cannot load the model folder {folder.path} ({why}): {MODELS_FIX}")
    return problems


def heaviest_gpu(settings: Settings, weights: dict[str, float]) -> tuple[float, int, int]:
    """The most model weight Ray may put on one GPU, and of how many image and LLM actors.

    Lessons 03-04 run the image actors alone (``settings.image.num_gpus`` each),
    lessons 05-06 beside the LLM's (the image share then is what the LLM's
    leaves, :func:`helpers.runtime.settings.image_gpus_beside_llm`). Ray puts
    a fractional actor on the GPU it fills most, so any actors whose shares
    add up to at most one GPU may end up together: two sdxl-turbo actors of
    lesson 05 on one GPU and both LLM actors on the other, not one of each.
    Actors of no GPU share (``WORKSHOP_*_GPUS=0``) on a GPU node still load
    onto its first GPU, so all of them count.
    """
    from helpers.runtime.settings import image_gpus_beside_llm

    def on_one_gpu(image_share: float, llm_share: float, llm_actors: int) -> tuple[float, int, int]:
        most = (0.0, 0, 0)
        for images in range(settings.image.actors + 1):
            for llms in range(llm_actors + 1):
                # An actor of no GPU share still loads onto a GPU of its node (the first): any number may.
                shares = images * min(max(image_share, 0.0), 1.0) + llms * min(max(llm_share, 0.0), 1.0)
                if shares > 1 + EPS:
                    continue
                most = max(most, (images * weights["image"] + llms * weights["llm"], images, llms))
        return most

    alone = on_one_gpu(settings.image.num_gpus, 0.0, 0)
    beside = on_one_gpu(image_gpus_beside_llm(settings), settings.llm.num_gpus, settings.llm.actors)
    return max(alone, beside)


def memory_problems(report: NodeReport, settings: Settings) -> list[str]:
    """GPUs too small for the weights Ray may put on one (activations come on top: this is a floor)."""
    if not report.cuda or settings.profile != "gpu":
        return []
    weights = {}
    for stage, kind in ((settings.image, "image"), (settings.llm, "llm")):
        folder = report.model(stage.model)
        weights[kind] = folder.weight_bytes if folder is not None else HUB_DOWNLOAD_BYTES.get(stage.model, 0)
    need, images, llms = heaviest_gpu(settings, weights)
    if report.gpu_memory_bytes >= need:
        return []
    problem = (
        f"{report.name}'s GPU ({report.device}) has {report.gpu_memory_bytes / 2**30:.1f} GiB, and Ray may put "
        f"{images} image actor(s) and {llms} LLM actor(s) on one GPU, whose weights need {need / 2**30:.1f} GiB: "
        "use GPUs with more memory, or fewer actors (WORKSHOP_IMAGE_ACTORS, WORKSHOP_LLM_ACTORS)"
    )
    return [problem]


def download_notes(decision: ProfileDecision, settings: Settings) -> list[str]:
    """Models that are hub ids: each GPU node downloads them on first use."""
    if not decision.reports:
        return []
    return [
        f"{stage.model} is not staged on the GPU nodes: each downloads it on first use "
        f"(about {HUB_DOWNLOAD_BYTES[stage.model] / 1e9:.0f} GB); stage it once with ./setup.sh --download"
        for stage in (settings.image, settings.llm)
        if stage.model in HUB_DOWNLOAD_BYTES
    ]


def check_nodes(decision: ProfileDecision, settings: Settings) -> list[str]:
    """Raise :class:`ClusterMismatchError` listing every difference; return notes for the start table."""
    python, packages = driver_report()
    problems = []
    for report in decision.reports:
        problems += version_problems(report, python, packages)
        problems += storage_problems(report, settings)
        problems += memory_problems(report, settings)
    if problems:
        raise ClusterMismatchError(
            f"{len(problems)} problem(s) on the nodes that run the models:\n" + "\n".join(problems)
        )
    return download_notes(decision, settings)
