"""Fail fast when a pipeline asks for resources the cluster does not have.

Ray's scheduler waits forever for a request it cannot satisfy: an actor pool
that asks for three GPUs on a two-GPU cluster, or GPU actors that take every
CPU so the read tasks never run, simply hang. In a workshop that looks like a
frozen notebook. This module checks every Ray Data execution *before* it
starts and raises :class:`ResourceMismatchError` with what was asked, what the
cluster has, and what to change.

It plugs into Ray Data as an execution callback (``DataContext``'s
``custom_execution_callback_classes``), so the lessons' ``map_batches`` calls
stay exactly as Ray's documentation writes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ray.exceptions import UserCodeException

from helpers.errors import ActionableError
from helpers.runtime import ray_internals

#: Ray Data needs at least this many CPUs free of actors for read and map tasks.
CPUS_FOR_TASKS = 1.0
_EPS = 1e-6

log = logging.getLogger(__name__)


class ResourceMismatchError(ActionableError, RuntimeError, UserCodeException):
    """The pipeline cannot be scheduled on this cluster; the message says the fix.

    A ``UserCodeException`` too: otherwise Ray Data logs it as a bug in Ray, with
    its internal stack trace and a request to open an issue.
    """


@dataclass(frozen=True)
class StageRequest:
    """What one operator of a pipeline needs before it can make progress."""

    name: str
    units: int  # actors that must start (1 for a task-based stage)
    cpus: float  # per unit
    gpus: float  # per unit
    is_actor_pool: bool
    memory: float = 0.0  # bytes per unit (Ray's ``memory=``), 0 when not asked


@dataclass(frozen=True)
class NodeCapacity:
    cpus: float
    gpus: float
    memory: float = float("inf")  # bytes Ray may schedule on the node


def stage_requests(operators) -> list[StageRequest]:
    """Read the minimum resources of each physical operator of an execution."""
    return [StageRequest(**ray_internals.operator_minimum(op)._asdict()) for op in operators]


def cluster_nodes() -> list[NodeCapacity]:
    import ray

    return [
        NodeCapacity(
            cpus=node["Resources"].get("CPU", 0.0),
            gpus=node["Resources"].get("GPU", 0.0),
            memory=node["Resources"].get("memory", float("inf")),
        )
        for node in ray.nodes()
        if node.get("Alive")
    ]


def _fix_hint(stage: StageRequest) -> str:
    if stage.gpus:
        return (
            f"lower compute=ActorPoolStrategy(size={stage.units}) or num_gpus={stage.gpus:g} for this stage, "
            "or run on a cluster with more GPUs (on a CPU machine: WORKSHOP_NUM_GPUS=<n> before helpers.start())"
        )
    return (
        f"lower compute=ActorPoolStrategy(size={stage.units}) or num_cpus={stage.cpus:g}, "
        "or give Ray more logical CPUs (WORKSHOP_NUM_CPUS=<n> before helpers.start())"
    )


def _pack_gpus(requests: list[StageRequest], nodes: list[NodeCapacity]) -> StageRequest | None:
    """First-fit-decreasing packing of GPU actors onto GPUs, as Ray places them.

    Fractional requests share one physical GPU (0.6 + 0.4 fit, 0.6 + 0.6 do
    not); whole-GPU requests take whole GPUs. Returns the first stage that does
    not fit, or None.
    """
    gpus = [1.0] * sum(int(node.gpus + _EPS) for node in nodes)
    units = sorted(
        ((stage.gpus, stage) for stage in requests if stage.gpus > 0 for _ in range(stage.units)),
        key=lambda item: item[0],
        reverse=True,
    )
    for amount, stage in units:
        if amount >= 1 - _EPS:
            whole = round(amount)
            free = [i for i, left in enumerate(gpus) if left >= 1 - _EPS]
            if len(free) < whole:
                return stage
            for i in free[:whole]:
                gpus[i] = 0.0
            continue
        for i, left in enumerate(gpus):
            if left >= amount - _EPS:
                gpus[i] = left - amount
                break
        else:
            return stage
    return None


def check_fits(requests: list[StageRequest], nodes: list[NodeCapacity]) -> None:
    """Raise :class:`ResourceMismatchError` when the stages cannot all start."""
    total_cpus = sum(node.cpus for node in nodes)
    total_gpus = sum(node.gpus for node in nodes)
    have = f"the cluster has {total_cpus:g} CPUs and {total_gpus:g} GPUs over {len(nodes)} node(s)"
    largest_gpus = max((node.gpus for node in nodes), default=0.0)
    largest_cpus = max((node.cpus for node in nodes), default=0.0)
    largest_memory = max((node.memory for node in nodes), default=0.0)

    for stage in requests:
        if stage.gpus > largest_gpus + _EPS:
            raise ResourceMismatchError(
                f"{stage.name} asks for {stage.gpus:g} GPU(s) per {'actor' if stage.is_actor_pool else 'task'}, "
                f"but no node has that many ({have}). Fix: {_fix_hint(stage)}."
            )
        if stage.cpus > largest_cpus + _EPS:
            raise ResourceMismatchError(
                f"{stage.name} asks for {stage.cpus:g} CPUs per unit, but no node has that many ({have}). "
                f"Fix: {_fix_hint(stage)}."
            )
        if stage.memory > largest_memory:
            raise ResourceMismatchError(
                f"{stage.name} asks for memory={stage.memory / 2**30:.1f} GiB per "
                f"{'actor' if stage.is_actor_pool else 'task'}, but the largest node offers Ray "
                f"{largest_memory / 2**30:.1f} GiB. Fix: lower memory= in its map_batches call, "
                "or run on a node with more memory."
            )

    pools = [stage for stage in requests if stage.is_actor_pool]
    wanted_gpus = sum(stage.units * stage.gpus for stage in pools)
    blocked = _pack_gpus(pools, nodes)
    if blocked is not None:
        detail = ", ".join(f"{s.name}: {s.units} x {s.gpus:g}" for s in pools if s.gpus)
        raise ResourceMismatchError(
            f"The actor pools ask for {wanted_gpus:g} GPUs in all ({detail}), but {have}, "
            f"so {blocked.name} would wait forever. Fix: {_fix_hint(blocked)}."
        )

    pool_memory = sum(stage.units * stage.memory for stage in pools)
    total_memory = sum(node.memory for node in nodes)
    if pool_memory > total_memory:
        detail = ", ".join(f"{s.name}: {s.units} x {s.memory / 2**30:.1f} GiB" for s in pools if s.memory)
        raise ResourceMismatchError(
            f"The actor pools ask for memory={pool_memory / 2**30:.1f} GiB in all ({detail}), but the cluster "
            f"offers Ray {total_memory / 2**30:.1f} GiB, so they would wait forever. "
            "Fix: lower memory= or the pool size (ActorPoolStrategy(size=...))."
        )

    actor_cpus = sum(stage.units * stage.cpus for stage in pools)
    has_tasks = any(not stage.is_actor_pool for stage in requests)
    if actor_cpus > total_cpus - (CPUS_FOR_TASKS if has_tasks else 0) + _EPS:
        busiest = max(pools, key=lambda s: s.units * s.cpus)
        raise ResourceMismatchError(
            f"The actor pools take {actor_cpus:g} CPUs and {have}: no CPU would be left for the "
            f"read and map tasks, so the pipeline would hang. Fix: {_fix_hint(busiest)}."
        )


class ResourceGuard(ray_internals.execution_callback_base()):
    """Ray Data execution callback that runs :func:`check_fits` before each run."""

    def before_execution_starts(self, executor) -> None:
        operators = ray_internals.execution_operators(executor)
        try:
            check_fits(stage_requests(operators), cluster_nodes())
        except ResourceMismatchError:
            # Operators have already asked for their actors; release them, or
            # the ones that did fit would hold their GPUs for the next run.
            _release(operators)
            raise


def _release(operators) -> None:
    for op in operators:
        try:
            ray_internals.shutdown_operator(op)
        except Exception as err:  # noqa: BLE001 - best effort: the mismatch error is what matters
            log.debug("could not shut down %s: %s", op.name, err)
