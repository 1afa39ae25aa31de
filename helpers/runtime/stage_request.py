"""What a stage of a pipeline asks of the cluster, what a node offers, and what to change when it asks too much.

The terms the fail-fast resource check (:mod:`helpers.runtime.resources`) and
its packing search (:mod:`helpers.runtime.packing`) both read. They live apart
from both because the check runs the search, and the search builds its
suggestions from the same fixes the check names: kept in either, the two
modules would import each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageRequest:
    """What one operator of a pipeline needs before it can make progress."""

    name: str
    units: int  # actors that must start (1 for a task-based stage)
    cpus: float  # per unit
    gpus: float  # per unit
    is_actor_pool: bool
    memory: float = 0.0  # bytes per unit (Ray's ``memory=``), 0 when not asked
    custom: tuple = ()  # (resource, amount) per unit: ``resources=``, and ``accelerator_type=`` as Ray reads it
    labels: tuple = ()  # (label, selector): the ``label_selector`` a node must match
    fallbacks: tuple = ()  # the label selectors Ray tries when ``labels`` matches no node


@dataclass(frozen=True)
class NodeCapacity:
    cpus: float
    gpus: float
    memory: float = float("inf")  # bytes Ray may schedule on the node
    custom: tuple = ()  # (resource, amount): ``--resources``, and ``accelerator_type:<type>`` for detected GPUs
    labels: tuple = ()  # (label, value)


def fix_hint(stage: StageRequest) -> str:
    if stage.gpus:
        return (
            f"lower compute=ActorPoolStrategy(size={stage.units}) or num_gpus={stage.gpus:g} for this stage, "
            "or run on a cluster with more GPUs (on a CPU machine: WORKSHOP_NUM_GPUS=<n> before helpers.start())"
        )
    return (
        f"lower compute=ActorPoolStrategy(size={stage.units}) or num_cpus={stage.cpus:g}, "
        "or give Ray more logical CPUs (WORKSHOP_NUM_CPUS=<n> before helpers.start())"
    )


def task_fix(pools: list[StageRequest]) -> str:
    """What to change when the actor pools leave a task no room."""
    return (f"fewer actors or smaller num_gpus/num_cpus for {' and '.join(pool.name for pool in pools)}, so that "
            "one task fits beside them")


def node_fix(stage: StageRequest) -> str:
    """What to change when an actor's CPUs, beside its GPU share, find no node with room."""
    return (f"lower compute=ActorPoolStrategy(size={stage.units}) or num_cpus={stage.cpus:g} for this stage, or "
            f"start {'the GPU nodes' if stage.gpus else 'nodes'} with more CPUs (on one machine: "
            "WORKSHOP_NUM_CPUS=<n> before helpers.start())")
