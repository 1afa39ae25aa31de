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
import math

from ray.exceptions import UserCodeException

from helpers.errors import ActionableError, ClusterMismatchError
from helpers.runtime import ray_internals
from helpers.runtime.node_constraints import (
    EPS,
    allows,
    constrained,
    constraint_problem,
    custom_resources,
    what_it_asks,
)
from helpers.runtime.packing import Stranding, find_stranding, first_fit, node_share, packing_fix
from helpers.runtime.stage_request import NodeCapacity, StageRequest, fix_hint, node_fix, task_fix

#: Ray Data needs at least this many CPUs free of actors for read and map tasks.
CPUS_FOR_TASKS = 1.0

log = logging.getLogger(__name__)


class ResourceMismatchError(ActionableError, RuntimeError, UserCodeException):
    """The pipeline cannot be scheduled on this cluster; the message says the fix.

    A ``UserCodeException`` too: otherwise Ray Data logs it as a bug in Ray, with
    its internal stack trace and a request to open an issue.
    """


def stage_requests(operators) -> list[StageRequest]:
    """Read the minimum resources of each physical operator of an execution."""
    return [StageRequest(**ray_internals.operator_minimum(op)) for op in operators]


def cluster_node(node: dict) -> NodeCapacity:
    """One entry of ``ray.nodes()`` as the check reads it."""
    return NodeCapacity(
        cpus=node["Resources"].get("CPU", 0.0),
        gpus=node["Resources"].get("GPU", 0.0),
        memory=node["Resources"].get("memory", float("inf")),
        custom=custom_resources(node["Resources"]),
        labels=tuple(sorted((node.get("Labels") or {}).items())),
    )


def cluster_nodes() -> list[NodeCapacity]:
    import ray

    return [cluster_node(node) for node in ray.nodes() if node.get("Alive")]


def _holds_one(node: NodeCapacity, stage: StageRequest) -> bool:
    """Whether ``node`` alone has the CPUs, GPUs and memory of one unit of ``stage``."""
    return node.cpus + EPS >= stage.cpus and node.gpus + EPS >= stage.gpus and node.memory >= stage.memory


def _check_one_unit(stage: StageRequest, nodes: list[NodeCapacity], have: str) -> None:
    """Raise when no node that ``stage`` may use holds one of its actors or tasks."""
    problem = constraint_problem(stage, nodes)
    if problem:
        raise ResourceMismatchError(problem)
    usable = [node for node in nodes if allows(node, stage)]
    scope = f" that meets its {what_it_asks(stage)}" if constrained(stage) and len(usable) < len(nodes) else ""
    unit = "actor" if stage.is_actor_pool else "task"
    if stage.gpus > max((node.gpus for node in usable), default=0.0) + EPS:
        raise ResourceMismatchError(
            f"{stage.name} asks for {stage.gpus:g} GPU(s) per {unit}, but no node{scope} has that many ({have}). "
            f"Fix: {fix_hint(stage)}."
        )
    if stage.cpus > max((node.cpus for node in usable), default=0.0) + EPS:
        raise ResourceMismatchError(
            f"{stage.name} asks for {stage.cpus:g} CPUs per unit, but no node{scope} has that many ({have}). "
            f"Fix: {fix_hint(stage)}."
        )
    largest_memory = max((node.memory for node in usable), default=0.0)
    if stage.memory > largest_memory:
        raise ResourceMismatchError(
            f"{stage.name} asks for memory={stage.memory / 2**30:.1f} GiB per {unit}, but the largest node{scope} "
            f"offers Ray {largest_memory / 2**30:.1f} GiB. Fix: lower memory= in its map_batches call, "
            "or run on a node with more memory."
        )
    if not any(_holds_one(node, stage) for node in usable):  # each fits somewhere, but not together
        memory = stage.memory > 0  # named only when asked for: the nodes' memory is otherwise beside the point
        asks = f"{stage.cpus:g} CPUs and {stage.gpus:g} GPU(s)" + (
            f" and memory={stage.memory / 2**30:.1f} GiB" if memory else "")
        shapes = ", ".join(f"{node.cpus:g} CPUs and {node.gpus:g} GPUs" + (
            f" and {node.memory / 2**30:.1f} GiB" if memory else "") for node in usable)
        raise ResourceMismatchError(
            f"{stage.name} asks for {asks} per {unit} on one node, "
            f"but no node{scope} has {'all of them' if memory else 'both'} (the nodes{scope} have {shapes}). "
            f"Fix: {fix_hint(stage)}."
        )


def _check_custom_totals(requests: list[StageRequest], nodes: list[NodeCapacity]) -> None:
    """Raise when the actor pools, with one task beside them, want more of a custom resource than the cluster has."""
    for name in sorted({resource for stage in requests for resource, _ in stage.custom}):
        def per_unit(stage: StageRequest, name: str = name) -> float:
            return dict(stage.custom).get(name, 0.0)

        pools = [stage for stage in requests if stage.is_actor_pool and per_unit(stage)]
        task = max((stage for stage in requests if not stage.is_actor_pool and per_unit(stage)), key=per_unit,
                   default=None)
        wanted = sum(stage.units * per_unit(stage) for stage in pools) + (per_unit(task) if task else 0.0)
        offered = sum(dict(node.custom).get(name, 0.0) for node in nodes)
        if wanted > offered + EPS:
            detail = ", ".join([f"{s.name}: {s.units} x {per_unit(s):g}" for s in pools]
                               + ([f"a task of {task.name}: {per_unit(task):g}"] if task else []))
            raise ResourceMismatchError(
                f"The actor pools ask for {wanted:g} of the resource {name!r} in all ({detail}), but the cluster "
                f"has {offered:g}, so one of them would wait forever. Fix: lower resources= or the pool size "
                "(ActorPoolStrategy(size=...)) in its map_batches call, or start nodes with more of it."
            )


def units_on(node: NodeCapacity, stage: StageRequest) -> int:
    """How many actors of ``stage`` alone fit on ``node`` at once: its CPUs, GPUs and custom resources."""
    if not allows(node, stage):
        return 0
    limits = [int(amount_on / amount + EPS) for name, amount in stage.custom
              for amount_on in (dict(node.custom).get(name, 0.0),)]
    if stage.cpus:
        limits.append(int(node.cpus / stage.cpus + EPS))
    if stage.gpus >= 1 - EPS:
        limits.append(int(node.gpus + EPS) // math.ceil(stage.gpus - EPS))
    elif stage.gpus:
        limits.append(int(node.gpus + EPS) * int(1 / stage.gpus + EPS))
    return min(limits, default=stage.units)


def _check_pools_with_custom_resources(requests: list[StageRequest], nodes: list[NodeCapacity]) -> None:
    """Raise when a pool asking for custom resources cannot start its actors on the nodes that have them.

    The cluster's total of a resource can suffice while it sits on nodes without the pool's GPUs:
    ``x`` on a GPU node and on a CPU node, and a pool of two actors that need a GPU and ``x`` each.
    """
    for stage in requests:
        if not (stage.is_actor_pool and stage.custom):
            continue
        per_node = [units_on(node, stage) for node in nodes]
        if sum(per_node) >= stage.units:
            continue
        where = ", ".join(f"node {i + 1}: {n}" for i, n in enumerate(per_node) if n) or "none on any node"
        raise ResourceMismatchError(
            f"{stage.name} needs {stage.units} actors at once, each with {stage.cpus:g} CPUs, {stage.gpus:g} "
            f"GPU(s) and {what_it_asks(stage)}, but the nodes hold only {sum(per_node)} of them ({where}), so the "
            f"others would wait forever. Fix: {fix_hint(stage)}, or start nodes that have all of it."
        )


def check_fits(requests: list[StageRequest], nodes: list[NodeCapacity]) -> None:
    """Raise :class:`ResourceMismatchError` when the stages cannot all start."""
    total_cpus = sum(node.cpus for node in nodes)
    total_gpus = sum(node.gpus for node in nodes)
    have = f"the cluster has {total_cpus:g} CPUs and {total_gpus:g} GPUs over {len(nodes)} node(s)"
    for stage in requests:
        _check_one_unit(stage, nodes, have)
    _check_custom_totals(requests, nodes)
    _check_pools_with_custom_resources(requests, nodes)

    pools = [stage for stage in requests if stage.is_actor_pool]
    tasks = [stage for stage in requests if not stage.is_actor_pool]
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
    if actor_cpus > total_cpus - (CPUS_FOR_TASKS if tasks else 0) + EPS:
        busiest = max(pools, key=lambda s: s.units * s.cpus)
        raise ResourceMismatchError(
            f"The actor pools take {actor_cpus:g} CPUs and {have}: no CPU would be left for the "
            f"read and map tasks, so the pipeline would hang. Fix: {fix_hint(busiest)}."
        )

    detail = ", ".join(f"{s.name}: {s.units} x {s.gpus:g}" for s in pools if s.gpus)
    blocked = first_fit(pools, nodes, tasks)
    if blocked is not None and (blocked.why == "GPU" or not blocked.stage.is_actor_pool):
        raise ResourceMismatchError(_no_packing(blocked, pools, nodes, have, detail))
    # Short of CPUs (or memory, or a resource) on a node: first-fit is not the tightest packing there,
    # so the message tells a placement Ray may choose, found by the search.
    stranding = find_stranding(pools, nodes, tasks)
    if stranding is None and blocked is not None:  # the search stopped at its limit
        raise ResourceMismatchError(_no_packing(blocked, pools, nodes, have, detail))
    if stranding is not None:
        shares = f"GPU shares ({detail})" if stranding.why == "GPU" else "actors"
        how = "fit only with a lucky placement" if blocked is None else (
            f"do not fit in every order Ray may start them (each actor needs "
            f"{_together(stranding.stage)} on one node)")
        raise ResourceMismatchError(
            f"The actor pools' {shares} {how}: "
            f"{stranding.describe()} and waits forever. Fix: {packing_fix(pools, nodes, stranding)}."
        )


def _together(stage: StageRequest) -> str:
    """``its GPU share and its 2 CPUs``: what one actor of ``stage`` must find on a single node."""
    return f"its GPU share and its {node_share(stage)}" if stage.gpus else f"its {node_share(stage)}"


def _no_packing(blocked: Stranding, pools: list[StageRequest], nodes: list[NodeCapacity], have: str,
                detail: str) -> str:
    """Why first-fit, largest first, leaves ``blocked.stage`` without room, and what to change."""
    stage = blocked.stage
    usable = [node for node in nodes if allows(node, stage)]
    if not stage.is_actor_pool:
        return (
            f"Once the actor pools ({' and '.join(pool.name for pool in pools)}) have their actors, no node has room "
            f"for a {stage.name} task ({stage.gpus:g} GPU(s) and {node_share(stage)}): it would wait for the "
            f"actors, and they for its output, forever. Fix: {task_fix(pools)}."
        )
    if blocked.why == "GPU":
        wanted_gpus = sum(pool.units * pool.gpus for pool in pools)
        only = (f"; {stage.name} may use only the {sum(int(node.gpus + EPS) for node in usable)} GPU(s) of the "
                f"{len(usable)} node(s) that meet its {what_it_asks(stage)}") if len(usable) < len(nodes) else ""
        return (f"The actor pools ask for {wanted_gpus:g} GPUs in all ({detail}), but {have}{only}, "
                f"so {stage.name} would wait forever. Fix: {fix_hint(stage)}.")
    shapes = ", ".join(f"node {i + 1}: {node.cpus:g} CPUs and {node.gpus:g} GPUs"
                       for i, node in enumerate(nodes) if node in usable)
    return (
        f"The actor pools' actors do not all fit on the nodes at once: each actor needs {_together(stage)} on "
        f"one node, and placed largest first, one {stage.name} actor finds no node with room "
        f"({shapes}), so it would wait forever. Fix: {node_fix(stage)}."
    )


class NodeJoinedMismatchError(ClusterMismatchError, UserCodeException):
    """A GPU node that joined after ``helpers.start()`` differs from the driver; the message says the fix.

    A ``UserCodeException`` for the same reason as :class:`ResourceMismatchError`.
    """


class ResourceGuard(ray_internals.execution_callback_base()):
    """Ray Data execution callback that runs :func:`check_fits` before each run, and checks GPU nodes that joined
    the cluster since ``helpers.start()`` (:func:`helpers.runtime.cluster.check_gpu_nodes_joined_since_start`)."""

    def before_execution_starts(self, executor) -> None:
        from helpers.runtime.cluster import check_gpu_nodes_joined_since_start

        operators = ray_internals.execution_operators(executor)
        try:
            check_fits(stage_requests(operators), cluster_nodes())
            try:
                check_gpu_nodes_joined_since_start()
            except ClusterMismatchError as err:
                raise NodeJoinedMismatchError(str(err)) from None
        except (ResourceMismatchError, NodeJoinedMismatchError):
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
