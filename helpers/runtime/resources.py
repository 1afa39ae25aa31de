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
from dataclasses import dataclass, replace

from ray.exceptions import UserCodeException

from helpers.errors import ActionableError
from helpers.runtime import ray_internals
from helpers.runtime.node_constraints import (
    EPS,
    allows,
    constrained,
    constraint_problem,
    custom_resources,
    what_it_asks,
)
from helpers.runtime.settings import image_gpus_beside_llm, ray_takes_gpus, with_stage

#: Ray Data needs at least this many CPUs free of actors for read and map tasks.
CPUS_FOR_TASKS = 1.0

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


#: Ray counts resources in ten-thousandths (its FixedPoint); so does the packing search.
_UNIT = 10_000
#: Placements the packing search looks at before it settles for first-fit (far above any workshop's pools).
_SEARCH_LIMIT = 20_000


@dataclass(frozen=True)
class Stranding:
    """A placement Ray may choose in which one more actor (or a task) of ``stage`` finds no room.

    ``slots`` lists what is placed, with what it uses: GPU by GPU when the
    waiting one lacks a GPU share (``why="GPU"``), node by node when it lacks
    its node share, the CPUs, memory or custom resources (``why="node"``).
    """

    stage: StageRequest
    slots: tuple[tuple[str, tuple[StageRequest, ...], str], ...]  # (label, the actors there, what they use)
    why: str = "GPU"

    def describe(self) -> str:
        """``GPU 1: 1 x A (0.6 used), GPU 2: 2 x B (0.8 used), and then the next A actor (0.6 GPU) finds ...``."""
        unit = "actor" if self.stage.is_actor_pool else "task"
        lacks = "no GPU with room" if self.why == "GPU" else f"no node with {_node_share(self.stage)} left"
        if not self.slots:
            return f"placed largest first, one {self.stage.name} {unit} finds {lacks}"

        def counted(actors: tuple[StageRequest, ...]) -> str:
            counts = {stage: actors.count(stage) for stage in dict.fromkeys(actors)}
            return " + ".join(f"{n} x {stage.name}" for stage, n in counts.items())

        placed = ", ".join(f"{label}: {counted(actors)} ({used})" for label, actors, used in self.slots)
        asks = f"{self.stage.gpus:g} GPU" if self.why == "GPU" else _node_share(self.stage)
        which = "the next" if self.stage.is_actor_pool else "a"
        return f"Ray may place {placed}, and then {which} {self.stage.name} {unit} ({asks}) finds {lacks}"


def _node_share(stage: StageRequest) -> str:
    """``2 CPUs and memory=4.0 GiB and resources={'x': 1}``: what one unit takes from its node, GPUs aside."""
    parts = [f"{stage.cpus:g} CPUs"]
    if stage.memory:
        parts.append(f"memory={stage.memory / 2**30:.1f} GiB")
    if stage.custom:
        parts.append("resources={" + ", ".join(f"{name!r}: {amount:g}" for name, amount in stage.custom) + "}")
    return " and ".join(parts)


def _slot_labels(nodes: list[NodeCapacity]) -> list[tuple[int, str, bool]]:
    """(node index, label, is a GPU) for every GPU, and one slot per node for what runs beside its GPUs.

    Labels read ``GPU 1`` on one node and ``node 2 GPU 1`` on several; a node's
    own slot reads ``node 2`` (``the node`` when there is one).
    """
    gpu_nodes = [i for i, node in enumerate(nodes) if int(node.gpus + EPS)]
    slots = []
    for i, node in enumerate(nodes):
        slots.append((i, f"node {i + 1}" if len(nodes) > 1 else "the node", False))
        for k in range(int(node.gpus + EPS)):
            slots.append((i, f"GPU {k + 1}" if len(gpu_nodes) == 1 else f"node {i + 1} GPU {k + 1}", True))
    return slots


class _Packing:
    """Actors placed on nodes and GPUs as Ray places them: what is used, and where one more unit may go.

    A slot is one GPU, or a node's room beside its GPUs; an actor's CPUs,
    memory and custom resources are taken from the node of its slot. Ray puts
    a whole-GPU actor on free GPUs of one node and a fractional one on the GPU
    of its node that it fills most (best fit), and picks the node itself, so
    :meth:`options` yields every node with room and, there, the GPU Ray picks.
    """

    def __init__(self, actors: list[StageRequest], nodes: list[NodeCapacity]):
        self.actors, self.nodes = actors, nodes
        self.slots = _slot_labels(nodes)
        self.node_of = [node for node, _, _ in self.slots]
        self.is_gpu = [is_gpu for _, _, is_gpu in self.slots]
        self.slots_on = {node: [k for k, on in enumerate(self.node_of) if on == node] for node in range(len(nodes))}
        # Nodes that allow the same actors and have the same capacity are interchangeable in the search.
        self.node_key = {node: (tuple(allows(capacity, stage) for stage in actors), _shape(capacity))
                         for node, capacity in enumerate(nodes)}

    def demand(self, stage: StageRequest) -> int:
        return round(stage.gpus * _UNIT)

    def on_node(self, placed: list[tuple[int, ...]], node: int) -> list[StageRequest]:
        """The actors placed on ``node``, each once: an actor of two whole GPUs sits in two GPU slots."""
        slots_per_actor = {}
        for k in self.slots_on[node]:
            for i in placed[k]:
                slots_per_actor[i] = slots_per_actor.get(i, 0) + 1
        return [self.actors[i] for i, slots in slots_per_actor.items()
                for _ in range(slots // self.whole_gpus(self.actors[i]))]

    def whole_gpus(self, stage: StageRequest) -> int:
        """The GPU slots one actor of ``stage`` takes: its whole GPUs, or one (a share, or its node's room)."""
        return -(-self.demand(stage) // _UNIT) if self.demand(stage) >= _UNIT else 1

    def why(self, placed: list[tuple[int, ...]], stage: StageRequest) -> str:
        """What ``stage`` lacks beside ``placed`` when it finds no room: ``"GPU"``, or ``"node"`` (its node share)."""
        return "node" if self.gpu_room(placed, stage) else "GPU"

    def node_has_room(self, placed: list[tuple[int, ...]], node: int, stage: StageRequest) -> bool:
        """Whether ``node`` has the CPUs, memory and custom resources of one more ``stage`` beside ``placed``."""
        on = self.on_node(placed, node)
        capacity = self.nodes[node]
        if sum(s.cpus for s in on) + stage.cpus > capacity.cpus + EPS:
            return False
        if stage.memory and sum(s.memory for s in on) + stage.memory > capacity.memory:
            return False
        have = dict(capacity.custom)
        return all(sum(dict(s.custom).get(name, 0.0) for s in on) + amount <= have.get(name, 0.0) + EPS
                   for name, amount in stage.custom)

    def options(self, placed: list[tuple[int, ...]], stage: StageRequest, index: int):
        """Every state with one more unit of ``stage`` (actor ``index``) placed where Ray may put it."""
        demand = self.demand(stage)
        for node, mine in self.slots_on.items():
            if not allows(self.nodes[node], stage) or not self.node_has_room(placed, node, stage):
                continue
            if demand == 0:
                k = next(k for k in mine if not self.is_gpu[k])
            elif demand >= _UNIT:  # whole GPUs, all on one node
                free = [k for k in mine if self.is_gpu[k] and not placed[k]]
                if len(free) < self.whole_gpus(stage):
                    continue
                taken = free[: self.whole_gpus(stage)]
                yield [(index,) if k in taken else slot for k, slot in enumerate(placed)]
                continue
            else:  # and there the GPU Ray picks: the fullest with room
                room = [k for k in mine if self.is_gpu[k] and self.load(placed[k]) + demand <= _UNIT]
                if not room:
                    continue
                k = max(room, key=lambda k: self.load(placed[k]))
            yield [tuple(sorted((*slot, index))) if j == k else slot for j, slot in enumerate(placed)]

    def gpu_room(self, placed: list[tuple[int, ...]], stage: StageRequest) -> bool:
        """Whether some node ``stage`` may use has the GPU share of one unit free, its node share aside."""
        return any(self._gpu_fits(placed, node, stage) for node in self.slots_on if allows(self.nodes[node], stage))

    def _gpu_fits(self, placed, node: int, stage: StageRequest) -> bool:
        demand = self.demand(stage)
        mine = [k for k in self.slots_on[node] if self.is_gpu[k]]
        if demand >= _UNIT:
            return sum(not placed[k] for k in mine) >= self.whole_gpus(stage)
        return demand == 0 or any(self.load(placed[k]) + demand <= _UNIT for k in mine)

    def load(self, slot: tuple[int, ...]) -> int:
        return sum(self.demand(self.actors[i]) for i in slot)

    def stranding(self, placed: list[tuple[int, ...]], stage: StageRequest) -> Stranding:
        """What ``placed`` holds, told the way that shows why ``stage`` finds no room."""
        if self.why(placed, stage) == "GPU":
            return Stranding(stage, tuple(
                (label, actors, f"{min(1.0, sum(actor.gpus for actor in actors)):g} used")
                for (_, label, is_gpu), slot in zip(self.slots, placed) if slot and is_gpu
                for actors in (tuple(self.actors[j] for j in slot),)
            ), "GPU")
        per_node = []
        for node in self.slots_on:
            actors = tuple(self.on_node(placed, node))
            if actors:
                label = self.slots[self.slots_on[node][0]][1]  # the node's own slot is its first
                used = f"{sum(actor.cpus for actor in actors):g} of {self.nodes[node].cpus:g} CPUs used"
                per_node.append((label, actors, used))
        return Stranding(stage, tuple(per_node), "node")


def find_stranding(pools: list[StageRequest], nodes: list[NodeCapacity],
                   tasks: list[StageRequest] = ()) -> Stranding | None:
    """Whether some placement of the actor pools leaves an actor, or one task beside them, waiting forever.

    Ray 2.60's raylet puts a fractional actor on the GPU of its node where it
    leaves the least room (best fit), and a whole-GPU actor on free GPUs, in
    the order the actors' requests arrive. Ray Data asks for the upstream
    pool's actors first, yet that order is not promised (requests race, an
    actor restarts, an earlier run's actors are still releasing), and across
    nodes Ray picks the node. So the search tries every order of the requests
    and every node with room, and on a node the GPU Ray picks: an actor that
    finds no room in one of them could wait forever. Two pools of 2 x 0.6 and
    2 x 0.4 on two GPUs fail it (both 0.4 on one GPU leave 0.2 and 1.0, room
    for one 0.6 only), although Ray places them well when the 0.6 actors come
    first; 4 x 0.5 pass in every order, and so do 1 x 1.0 and 2 x 0.5 (the
    second half joins the first on its GPU).

    An actor's GPU share, CPUs, memory and custom resources are all on one
    node: a CPU-only head's CPUs do not help an actor on a GPU worker, and two
    pools whose actors take every CPU of the GPU nodes leave a third none. An
    actor goes only to the nodes its custom resources and label selector
    allow. Once every actor is placed, one task of each of ``tasks`` must
    still find room: a GPU task beside pools that hold every GPU waits for
    them, and they wait for its output (measured on Ray 2.60).

    Returns the first stranding found with the fewest actors placed, or None
    when every placement fits.
    """
    actors = [stage for stage in pools if stage.is_actor_pool]
    tasks = [stage for stage in tasks if not stage.is_actor_pool]
    packing = _Packing(actors, nodes)

    def placed_units(state: list[tuple[int, ...]], i: int) -> int:
        return sum(slot.count(i) for slot in state) // packing.whole_gpus(actors[i])

    def canonical(state: list[tuple[int, ...]]) -> tuple:
        # A node's GPUs are interchangeable, and so are nodes that allow the same actors and hold the same.
        return tuple(sorted(
            (packing.node_key[node], state[slots[0]], tuple(sorted(state[k] for k in slots[1:])))
            for node, slots in packing.slots_on.items()
        ))

    start = [()] * len(packing.slots)
    frontier, seen = [start], {canonical(start)}
    while frontier:  # breadth first: the stranding with the fewest actors placed reads best
        following = []
        for state in frontier:
            waiting = [i for i, stage in enumerate(actors) if placed_units(state, i) < stage.units]
            for task in tasks if not waiting else ():
                if not any(True for _ in packing.options(state, task, -1)):
                    return packing.stranding(state, task)
            for i in waiting:
                options = list(packing.options(state, actors[i], i))
                if not options:
                    return packing.stranding(state, actors[i])
                for option in options:
                    key = canonical(option)
                    if key not in seen:
                        seen.add(key)
                        following.append(option)
            if len(seen) > _SEARCH_LIMIT:
                log.debug("packing search stopped after %d placements; first-fit decides", len(seen))
                return _first_fit(actors, nodes, tasks)
        frontier = following
    return None


def _shape(node: NodeCapacity) -> tuple:
    """A node's capacity as a tuple that sorts."""
    return node.cpus, node.gpus, node.memory, node.custom, node.labels


def _first_fit(requests: list[StageRequest], nodes: list[NodeCapacity],
               tasks: list[StageRequest] = ()) -> Stranding | None:
    """First-fit-decreasing packing, one order Ray may follow: what it cannot place there, or None.

    A shortfall here can happen in Ray. When it is a node's CPUs, memory or
    resources, first-fit may have packed worse than another order would, so
    :func:`check_fits` tells it through the placement :func:`find_stranding` finds.

    Actors go largest GPU share first, then most CPUs, each to the first node
    with room; then one task of each of ``tasks`` must find room beside them.
    """
    actors = [stage for stage in requests if stage.is_actor_pool]
    packing = _Packing(actors, nodes)
    state = [()] * len(packing.slots)
    order = sorted(((i, stage) for i, stage in enumerate(actors) for _ in range(stage.units)),
                   key=lambda item: (item[1].gpus, item[1].cpus), reverse=True)
    for i, stage in order:
        option = next(packing.options(state, stage, i), None)
        if option is None:
            return Stranding(stage, (), packing.why(state, stage))
        state = option
    for task in tasks:
        if not task.is_actor_pool and next(packing.options(state, task, -1), None) is None:
            return Stranding(task, (), packing.why(state, task))
    return None


def _packing_fix(pools: list[StageRequest], nodes: list[NodeCapacity], stranding: Stranding) -> str:
    """Equal shares that divide a GPU evenly, when they fit in every placement; else the stage's own fix."""
    if not stranding.stage.is_actor_pool:
        return _task_fix(pools)
    if stranding.why == "node":
        return _node_fix(stranding.stage)
    shared = [stage for stage in pools if 0 < stage.gpus < 1]
    free_gpus = sum(int(node.gpus + EPS) for node in nodes) - sum(
        stage.units * math.ceil(stage.gpus) for stage in pools if stage.gpus >= 1)
    if shared and free_gpus > 0:
        per_gpu = math.ceil(sum(stage.units for stage in shared) / free_gpus)
        share = math.floor(_UNIT / per_gpu) / _UNIT
        even = [replace(stage, gpus=share) if stage in shared else stage for stage in pools]
        if find_stranding(even, nodes) is None:
            names = " and ".join(stage.name for stage in shared)
            return (f"num_gpus={share:g} for {names}: {per_gpu} equal shares fill a GPU, so they fit whatever GPU "
                    "Ray picks (or fewer actors)")
    return _fix_hint(stranding.stage)


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
            f"Fix: {_fix_hint(stage)}."
        )
    if stage.cpus > max((node.cpus for node in usable), default=0.0) + EPS:
        raise ResourceMismatchError(
            f"{stage.name} asks for {stage.cpus:g} CPUs per unit, but no node{scope} has that many ({have}). "
            f"Fix: {_fix_hint(stage)}."
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
            f"Fix: {_fix_hint(stage)}."
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
            f"others would wait forever. Fix: {_fix_hint(stage)}, or start nodes that have all of it."
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
            f"read and map tasks, so the pipeline would hang. Fix: {_fix_hint(busiest)}."
        )

    detail = ", ".join(f"{s.name}: {s.units} x {s.gpus:g}" for s in pools if s.gpus)
    blocked = _first_fit(pools, nodes, tasks)
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
            f"{stranding.describe()} and waits forever. Fix: {_packing_fix(pools, nodes, stranding)}."
        )


def _together(stage: StageRequest) -> str:
    """``its GPU share and its 2 CPUs``: what one actor of ``stage`` must find on a single node."""
    return f"its GPU share and its {_node_share(stage)}" if stage.gpus else f"its {_node_share(stage)}"


def _no_packing(blocked: Stranding, pools: list[StageRequest], nodes: list[NodeCapacity], have: str,
                detail: str) -> str:
    """Why first-fit, largest first, leaves ``blocked.stage`` without room, and what to change."""
    stage = blocked.stage
    usable = [node for node in nodes if allows(node, stage)]
    if not stage.is_actor_pool:
        return (
            f"Once the actor pools ({' and '.join(pool.name for pool in pools)}) have their actors, no node has room "
            f"for a {stage.name} task ({stage.gpus:g} GPU(s) and {_node_share(stage)}): it would wait for the "
            f"actors, and they for its output, forever. Fix: {_task_fix(pools)}."
        )
    if blocked.why == "GPU":
        wanted_gpus = sum(pool.units * pool.gpus for pool in pools)
        only = (f"; {stage.name} may use only the {sum(int(node.gpus + EPS) for node in usable)} GPU(s) of the "
                f"{len(usable)} node(s) that meet its {what_it_asks(stage)}") if len(usable) < len(nodes) else ""
        return (f"The actor pools ask for {wanted_gpus:g} GPUs in all ({detail}), but {have}{only}, "
                f"so {stage.name} would wait forever. Fix: {_fix_hint(stage)}.")
    shapes = ", ".join(f"node {i + 1}: {node.cpus:g} CPUs and {node.gpus:g} GPUs"
                       for i, node in enumerate(nodes) if node in usable)
    return (
        f"The actor pools' actors do not all fit on the nodes at once: each actor needs {_together(stage)} on "
        f"one node, and placed largest first, one {stage.name} actor finds no node with room "
        f"({shapes}), so it would wait forever. Fix: {_node_fix(stage)}."
    )


def _task_fix(pools: list[StageRequest]) -> str:
    """What to change when the actor pools leave a task no room."""
    return (f"fewer actors or smaller num_gpus/num_cpus for {' and '.join(pool.name for pool in pools)}, so that "
            "one task fits beside them")


def _node_fix(stage: StageRequest) -> str:
    """What to change when an actor's CPUs, beside its GPU share, find no node with room."""
    return (f"lower compute=ActorPoolStrategy(size={stage.units}) or num_cpus={stage.cpus:g} for this stage, or "
            f"start {'the GPU nodes' if stage.gpus else 'nodes'} with more CPUs (on one machine: "
            "WORKSHOP_NUM_CPUS=<n> before helpers.start())")


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


# ---------------------------------------------------------------- the settings, once, in helpers.start()

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
            first_fit = _first_fit(actors, nodes, tasks)
            # Told as Ray may place the actors, unless the GPUs alone fall short (the numbers say it).
            stranding = None if first_fit is not None and first_fit.why == "GPU" else find_stranding(
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
            else "add GPU nodes; WORKSHOP_NUM_GPUS sizes only a Ray the workshop starts")
    raise SettingsError(
        f"The lessons' actor pools cannot fit this cluster: {problem}. Give it more GPUs ({more}) or set "
        "WORKSHOP_IMAGE_GPUS=0 and WORKSHOP_LLM_GPUS=0 to run the models without GPUs."
    )
