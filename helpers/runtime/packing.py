"""The packing search: whether some placement Ray may choose leaves an actor of the pools waiting forever.

Ray 2.60's raylet puts a fractional actor on the GPU of its node where it
leaves the least room (best fit), and a whole-GPU actor on free GPUs, in the
order the actors' requests arrive; across nodes Ray picks the node. That order
is not promised, so pools whose totals fit can still strand an actor: two
pools of 2 x 0.6 and 2 x 0.4 GPU on two GPUs fit only when the 0.6 actors come
first. The fail-fast resource check (:mod:`helpers.runtime.resources`) and the
start-time check of the ``WORKSHOP_*`` settings
(:mod:`helpers.runtime.settings_fit`) ask this module for such a placement
(:func:`find_stranding`), for the one first-fit-decreasing order
(:func:`first_fit`), and for equal shares that fit in every placement
(:func:`packing_fix`), so that their messages can tell a placement Ray may
choose instead of a frozen notebook.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

from helpers.runtime.node_constraints import EPS, allows
from helpers.runtime.stage_request import NodeCapacity, StageRequest, fix_hint, node_fix, task_fix

#: Ray counts resources in ten-thousandths (its FixedPoint); so does the packing search.
_UNIT = 10_000
#: Placements the packing search looks at before it settles for first-fit (far above any workshop's pools).
_SEARCH_LIMIT = 20_000

log = logging.getLogger(__name__)


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
        lacks = "no GPU with room" if self.why == "GPU" else f"no node with {node_share(self.stage)} left"
        if not self.slots:
            return f"placed largest first, one {self.stage.name} {unit} finds {lacks}"

        def counted(actors: tuple[StageRequest, ...]) -> str:
            counts = {stage: actors.count(stage) for stage in dict.fromkeys(actors)}
            return " + ".join(f"{n} x {stage.name}" for stage, n in counts.items())

        placed = ", ".join(f"{label}: {counted(actors)} ({used})" for label, actors, used in self.slots)
        asks = f"{self.stage.gpus:g} GPU" if self.why == "GPU" else node_share(self.stage)
        which = "the next" if self.stage.is_actor_pool else "a"
        return f"Ray may place {placed}, and then {which} {self.stage.name} {unit} ({asks}) finds {lacks}"


def node_share(stage: StageRequest) -> str:
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
                return first_fit(actors, nodes, tasks)
        frontier = following
    return None


def _shape(node: NodeCapacity) -> tuple:
    """A node's capacity as a tuple that sorts."""
    return node.cpus, node.gpus, node.memory, node.custom, node.labels


def first_fit(requests: list[StageRequest], nodes: list[NodeCapacity],
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


def packing_fix(pools: list[StageRequest], nodes: list[NodeCapacity], stranding: Stranding) -> str:
    """Equal shares that divide a GPU evenly, when they fit in every placement; else the stage's own fix."""
    if not stranding.stage.is_actor_pool:
        return task_fix(pools)
    if stranding.why == "node":
        return node_fix(stranding.stage)
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
    return fix_hint(stranding.stage)
