"""Refuse, once in ``helpers.start()``, ``WORKSHOP_*`` pool sizes that no lesson could schedule on this cluster.

The lessons size their actor pools from the ``WORKSHOP_*`` settings. When
those ask for more than the cluster has, each pipeline of each lesson would
fail on its own in the fail-fast resource check
(:mod:`helpers.runtime.resources`), with a message about the ``map_batches``
call instead of the setting behind it. This module runs the same check once,
on the pools the lessons will run at the same time, and names the variable to
change and a value that fits.
"""

from __future__ import annotations

import math

from helpers.runtime.packing import find_stranding, first_fit
from helpers.runtime.resources import CPUS_FOR_TASKS, ResourceMismatchError, check_fits
from helpers.runtime.settings import image_gpus_beside_llm, ray_takes_gpus, with_stage
from helpers.runtime.stage_request import NodeCapacity, StageRequest

#: The settings that size the lessons' actor pools: (variable, stages it sets, field of StageSettings).
POOL_SETTINGS = (
    ("WORKSHOP_IMAGE_ACTORS", ("image",), "actors"),
    ("WORKSHOP_LLM_ACTORS", ("llm",), "actors"),
    ("WORKSHOP_IMAGE_GPUS", ("image",), "num_gpus"),
    ("WORKSHOP_LLM_GPUS", ("llm",), "num_gpus"),
    ("WORKSHOP_ACTOR_CPUS", ("image", "llm"), "num_cpus"),
)


#: GPUs (or CPUs) per actor worth suggesting below one: the shares that pack evenly onto one GPU.
_GPU_SHARES = (0.5, 0.4, 0.33, 0.25, 0.2, 0.1)


def _pool(name: str, stage, gpus: float | None = None) -> StageRequest:
    return StageRequest(name, stage.actors, stage.num_cpus, stage.num_gpus if gpus is None else gpus, True)


def lesson_pools(settings) -> dict[str, list[StageRequest]]:
    """The actor pools that run at the same time in the lessons, with the read tasks beside them.

    Lessons 03-04 run the image stage alone; lessons 05-06 run the LLM's next
    to the image stage's, whose actors get what one had alone minus an LLM
    actor's share (1 - 0.5 = 0.5 GPU on the lessons' two GPUs: four equal shares, which fit
    two GPUs in any placement, where 0.6 and 0.4 could strand an LLM actor, see
    :func:`find_stranding`).
    """
    read = StageRequest("read tasks", 1, CPUS_FOR_TASKS, 0.0, False)
    image_share = image_gpus_beside_llm(settings)
    return {
        "lessons 03-04": [_pool("image", settings.image), read],
        "lessons 05-06": [_pool("LLM", settings.llm), _pool("image", settings.image, max(image_share, 0.0)), read],
    }


def _misfit(settings, nodes: list[NodeCapacity]) -> str | None:
    """What the lessons would ask for that these nodes cannot give, in words; None when all fits."""
    for lessons, requests in lesson_pools(settings).items():
        try:
            check_fits(requests, nodes)
        except ResourceMismatchError:
            pools = " and ".join(f"{s.units} {s.name} actor(s) of {s.gpus:g} GPU and {s.cpus:g} CPU each"
                                 for s in requests if s.is_actor_pool)
            actors = [s for s in requests if s.is_actor_pool]
            tasks = [s for s in requests if not s.is_actor_pool]
            blocked = first_fit(actors, nodes, tasks)
            # Told as Ray may place the actors, unless the GPUs alone fall short (the numbers say it).
            stranding = None if blocked is not None and blocked.why == "GPU" else find_stranding(
                actors, nodes, tasks)
            lucky = "" if stranding is None else f"; {stranding.describe()}"
            return (
                f"{lessons} run {pools} at once, and this cluster has {sum(n.gpus for n in nodes):g} GPUs and "
                f"{sum(n.cpus for n in nodes):g} CPUs over {len(nodes)} node(s) (one CPU stays for the read tasks)"
                f"{lucky}"
            )
    return None


def _candidates(field: str, now: float, nodes: list[NodeCapacity]) -> list[float]:
    """Smaller values of ``field`` to try, largest first."""
    if field == "actors":
        return list(range(int(now) - 1, 0, -1))
    resource = "gpus" if field == "num_gpus" else "cpus"
    whole = range(int(max((getattr(node, resource) for node in nodes), default=0)), 0, -1)
    return [value for value in (*whole, *_GPU_SHARES) if value < now]


def _with(settings, stages: tuple[str, ...], field: str, value):
    for stage in stages:
        settings = with_stage(settings, stage, **{field: value})
    return settings


def _ray_takes_share(settings) -> bool:
    """Whether Ray accepts the image actors' share beside the LLM (lessons 05-06)."""
    return ray_takes_gpus(image_gpus_beside_llm(settings))


def check_settings_fit(settings, nodes: list[NodeCapacity], environ: dict | None = None, *,
                       sized_here: bool = True) -> None:
    """Refuse pool sizes no lesson could schedule here, naming the ``WORKSHOP_*`` variable and a value that fits.

    Called once by ``helpers.start()``: otherwise each pipeline of each lesson
    fails on its own, with a message about the ``map_batches`` call instead of
    the setting behind it. The variables the learner set are tried first.
    ``sized_here`` is False for a cluster the workshop did not start, which
    ``WORKSHOP_NUM_GPUS`` does not size.
    """
    import os

    from helpers.errors import SettingsError

    environ = os.environ if environ is None else environ
    chosen = {name: environ[name] for name, _, _ in POOL_SETTINGS if environ.get(name)}
    share = image_gpus_beside_llm(settings)
    if share < 0 and settings.image.num_gpus == 0:
        raise SettingsError(
            f"WORKSHOP_IMAGE_GPUS=0 runs the image actors without a GPU, and lessons 05-06 give each the difference "
            f"to WORKSHOP_LLM_GPUS={settings.llm.num_gpus:g}, below 0: set WORKSHOP_LLM_GPUS=0 as well, or unset both."
        )
    if share < 0 or (share == 0 and settings.image.num_gpus > 0):
        relation = "is more than" if settings.llm.num_gpus > settings.image.num_gpus else "equals"
        raise SettingsError(
            f"WORKSHOP_LLM_GPUS={settings.llm.num_gpus:g} {relation} WORKSHOP_IMAGE_GPUS="
            f"{settings.image.num_gpus:g}: lessons 05-06 give each image actor the difference (1 - 0.5 GPU in the "
            "lessons), which would leave it no GPU. Use a WORKSHOP_LLM_GPUS below WORKSHOP_IMAGE_GPUS, or unset both."
        )
    problem = _misfit(settings, nodes)
    if problem is None:
        if not _ray_takes_share(settings):  # what fits, with a share Ray refuses when the first actor starts
            raise SettingsError(
                f"WORKSHOP_IMAGE_GPUS={settings.image.num_gpus:g} and WORKSHOP_LLM_GPUS={settings.llm.num_gpus:g}: "
                f"lessons 05-06 give each image actor the difference, {share:g} GPU, and Ray takes a share of one "
                "GPU (up to 1) or whole GPUs per actor. Use values whose difference is at most 1 or a whole number, "
                f"e.g. WORKSHOP_LLM_GPUS={settings.image.num_gpus - math.floor(share):g}."
            )
        return
    for name, stages, field in sorted(POOL_SETTINGS, key=lambda knob: knob[0] not in chosen):
        now = getattr(getattr(settings, stages[0]), field)
        fits = next((value for value in _candidates(field, now, nodes)
                     if _misfit(changed := _with(settings, stages, field, value), nodes) is None
                     and _ray_takes_share(changed)), None)
        if fits is None:
            continue
        if name in chosen:
            raise SettingsError(f"{name}={chosen[name]} cannot fit this cluster: {problem}. "
                                f"Use {name}={fits:g} or {'fewer' if field == 'actors' else 'less'}.")
        raise SettingsError(f"The lessons' actor pools cannot fit this cluster: {problem}. Set {name}={fits:g}.")
    more = ("WORKSHOP_NUM_GPUS on this machine, read when the workshop's Ray starts" if sized_here
            else "add GPU nodes, or on an autoscaling cluster give its GPU workers a minimum that has them and "
                 "start again once they have joined; WORKSHOP_NUM_GPUS sizes only a Ray the workshop starts")
    raise SettingsError(
        f"The lessons' actor pools cannot fit this cluster: {problem}. Give it more GPUs ({more}) or set "
        "WORKSHOP_IMAGE_GPUS=0 and WORKSHOP_LLM_GPUS=0 to run the models without GPUs."
    )
