"""Why an actor pool waits: what it needs is held by another notebook's run, and whose it is.

The lessons share one Ray (:mod:`helpers.runtime.shared_ray`), and so do the
attendees of a workshop on one cluster. An actor pool that asks for GPUs which
another driver's actors hold waits until they are released: when that run
ends, or never, when it was left half-read (``it = iter(ds.iter_batches())``
and one ``next(it)`` keep that Dataset's actors alive as long as ``it`` lives).
Ray says nothing meanwhile, so the notebook looks frozen.

The resource check cannot refuse such a run up front: what other drivers hold
changes all the time, and most waits end within seconds. So the live view
(:class:`helpers.runtime.progress.LiveProgress`) asks :class:`WaitWatch` at
each step: once a pool's actors have been pending for :data:`WAIT_S` and no node
it may use has room for one of them, it looks up the live actors of *other*
Ray jobs that hold what is missing, and says once, as a warning and under the
live view, whose they are (the notebook, from its kernel's
``JPY_SESSION_NAME``, or the process), how much they hold, and how to free it.
The run keeps waiting: it starts as soon as the other run lets go.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

from helpers.runtime import ray_internals
from helpers.runtime.node_constraints import EPS, allows
from helpers.runtime.resources import cluster_node
from helpers.runtime.stage_request import NodeCapacity, StageRequest

#: Seconds an actor pool's actors may be pending before the watch looks why (loading a model is also pending).
WAIT_S = 5.0
#: Seconds between two looks at the cluster while a pool waits.
LOOK_EVERY_S = 2.0


class Look(NamedTuple):
    """One look at the cluster: each node's total and free resources, every live actor, each job's driver."""

    nodes: list[tuple[str, NodeCapacity, NodeCapacity]]  # (node id, what it has, what it has free now)
    holds: list[ray_internals.ActorHold]
    drivers: dict[str, ray_internals.JobDriver]
    here: str  # this driver's IP address


def look() -> Look:
    """What the watch reads from the cluster; a few GCS calls, only while a pool waits."""
    import ray

    free = ray_internals.free_per_node()
    nodes = []
    for node in ray.nodes():
        if node.get("Alive"):
            now = free.get(node["NodeID"], {})
            nodes.append((node["NodeID"], cluster_node(node), cluster_node({**node, "Resources": now})))
    return Look(nodes, ray_internals.actor_holds(), ray_internals.job_drivers(), ray.util.get_node_ip_address())


def asks(stage: StageRequest) -> dict[str, float]:
    """What one actor of ``stage`` holds while it lives, in Ray's resource names."""
    wanted = {"CPU": stage.cpus, "GPU": stage.gpus, "memory": stage.memory, **dict(stage.custom)}
    return {name: amount for name, amount in wanted.items() if amount}


def missing(stage: StageRequest, free: list[NodeCapacity]) -> list[str]:
    """The resources that no node of ``free`` (the nodes ``stage`` may use) has enough of for one actor.

    [] when one has room for a whole actor.
    """
    wanted = asks(stage)
    lacking = []  # per node, what it lacks of one actor
    for node in free:
        has = {"CPU": node.cpus, "GPU": node.gpus, "memory": node.memory, **dict(node.custom)}
        lacking.append({name for name, amount in wanted.items() if has.get(name, 0.0) + EPS < amount})
    if any(not lacks for lacks in lacking):
        return []
    short = [name for name in wanted if all(name in lacks for lacks in lacking)]
    return short or list(wanted)  # each is free somewhere, but never all on one node


def _amount(value: float, name: str) -> str:
    return f"{value / 2**30:.1f} GiB of memory" if name == "memory" else f"{value:g} {name}"


def driver_name(driver: ray_internals.JobDriver | None, here: str) -> str:
    """``the notebook 03_image_generation.ipynb (kernel pid 4242)``, or the process, or where it runs."""
    if driver is None:
        return "a Ray program that has ended"
    if driver.ip != here:
        return f"a Ray program on {driver.ip} (pid {driver.pid})"
    import psutil

    try:  # psutil: /proc on Linux, the kernel on macOS (a process of this user's)
        process = psutil.Process(driver.pid)
        notebook, command = process.environ().get("JPY_SESSION_NAME"), process.cmdline()
    except psutil.Error:
        return f"another Ray program on this machine (pid {driver.pid})"
    if notebook:
        return f"the notebook {Path(notebook).name} (kernel pid {driver.pid})"
    shown = " ".join(part for part in command if part)[:80]
    return f"another Ray program on this machine (pid {driver.pid}: {shown})"


#: What frees actors that a Dataset left half-read holds.
HALF_READ = ("A Dataset left half-read (an iterator from iter_batches or iter_rows, not run to its end) keeps its "
             "actors until the iterator is deleted (del) or its kernel is restarted or shut down")


def _own_note(stage: StageRequest, each: str, extra: list[ray_internals.ActorHold]) -> str:
    classes = ", ".join(dict.fromkeys(hold.class_name for hold in extra))
    return (
        f"{stage.name} is waiting: each of its actors needs {each}, no node has that free, and this notebook holds "
        f"it itself: {len(extra)} actor(s) {classes} of an earlier run. {HALF_READ}: interrupt this cell "
        "(Kernel > Interrupt Kernel), delete that iterator, and run the cell again."
    )


def wait_note(stage: StageRequest, short: list[str], holds: list[ray_internals.ActorHold], job_id: str,
              drivers: dict[str, ray_internals.JobDriver], here: str, usable: set[str],
              own_started: int = 0) -> str | None:
    """What a waiting pool's learner needs to know, or None when nothing says that another run holds what it misses.

    ``usable``: the ids of the nodes the stage may use; actors elsewhere hold nothing it could have.
    ``own_started``: this execution's actors that hold some of ``short`` (running, or placed and loading
    their model); this job's placed actors beyond them belong to an earlier run of the same notebook.
    Silent unless some actor of this job has no place yet: placed actors that load a model wait for
    nothing but their ``__init__``.
    """
    def holds_some(hold: ray_internals.ActorHold) -> bool:
        return any(hold.resources.get(name) for name in short)

    if not any(hold.job_id == job_id and not hold.placed and holds_some(hold) for hold in holds):
        return None
    theirs: dict[str, list[ray_internals.ActorHold]] = {}
    for hold in holds:
        if hold.placed and hold.node_id in usable and holds_some(hold):
            theirs.setdefault(hold.job_id, []).append(hold)
    own = theirs.pop(job_id, [])
    wanted = asks(stage)
    each = " and ".join(_amount(wanted[name], name) for name in short)
    if not theirs:
        return _own_note(stage, each, own[own_started:]) if len(own) > own_started else None
    parts = []
    for job, job_holds in theirs.items():
        classes = ", ".join(dict.fromkeys(hold.class_name for hold in job_holds))
        held = " and ".join(_amount(sum(hold.resources.get(name, 0.0) for hold in job_holds), name)
                            for name in short if any(hold.resources.get(name) for hold in job_holds))
        parts.append(f"{driver_name(drivers.get(job), here)}: {len(job_holds)} actor(s) {classes}, {held} in all")
    return (
        f"{stage.name} is waiting: each of its actors needs {each}, no node has that free, and other Ray "
        f"programs hold it: {'; '.join(parts)}. Its actors start when those are released, at the end of that "
        f"run. {HALF_READ} (Kernel > Shut Down Kernel in that notebook's tab)."
    )


class WaitWatch:
    """Follows one execution's actor pools and explains a wait on actors of another run, once per pool.

    A note stays in :meth:`shown` while its pool waits. It is given only when two looks in a row,
    :data:`LOOK_EVERY_S` apart, find the same: the pool's own counts (read from Ray Data) and the
    cluster's actors (read from the GCS) are read at slightly different moments.
    """

    def __init__(self, requests: list[StageRequest], job_id: str, clock=time.monotonic, looker=look):
        self.requests = {stage.name: stage for stage in requests if stage.is_actor_pool}
        self.job_id = job_id
        self.clock = clock
        self.looker = looker
        self.pending_since: dict[str, float] = {}
        self.told: dict[str, str] = {}  # pool name -> its note, once given
        self.active: set[str] = set()  # the pools whose note stands: still waiting
        self.seen_once: dict[str, str] = {}  # pool name -> the note the last look found
        self.last_look = float("-inf")

    def started_with(self, states, short: list[str]) -> int:
        """This execution's actors that hold some of ``short`` once placed: running or pending."""
        return sum(state.actors_running + state.actors_pending for state in states
                   if state.name in self.requests and any(asks(self.requests[state.name]).get(name) for name in short))

    def waiting(self, states) -> list[StageRequest]:
        """The pools short of their minimum actors for :data:`WAIT_S`, with some pending, and not explained yet.

        A pool that already runs its minimum (``ActorPoolStrategy(min_size=...)``) and asks for more
        is scaling up, not stuck: its extra actors may wait without a word.
        """
        now, due = self.clock(), []
        for state in states:
            stage = self.requests.get(state.name)
            if not (stage and state.actors_pending and state.actors_running < stage.units and not state.done):
                self.pending_since.pop(state.name, None)
                self.active.discard(state.name)
                continue
            since = self.pending_since.setdefault(state.name, now)
            if now - since >= WAIT_S and state.name not in self.told:
                due.append(stage)
        return due

    def shown(self) -> list[str]:
        """The notes of the pools that still wait."""
        return [note for name, note in self.told.items() if name in self.active]

    def notes(self, states) -> list[str]:
        """New explanations for this step: at most one per pool and execution."""
        due = self.waiting(states)
        if not due or self.clock() - self.last_look < LOOK_EVERY_S:
            return []
        self.last_look = self.clock()
        seen = self.looker()
        found = []
        for stage in due:
            usable = {node_id for node_id, total, _ in seen.nodes if allows(total, stage)}
            short = missing(stage, [free for node_id, _, free in seen.nodes if node_id in usable])
            unplaced = sum(1 for hold in seen.holds if hold.job_id == self.job_id and not hold.placed
                           and any(hold.resources.get(name) for name in short))
            own_started = self.started_with(states, short) - unplaced
            note = wait_note(stage, short, seen.holds, self.job_id, seen.drivers, seen.here, usable,
                             own_started) if short else None
            if note is None or self.seen_once.get(stage.name) != note:
                self.seen_once[stage.name] = note
                continue
            self.told[stage.name] = note
            self.active.add(stage.name)
            found.append(note)
        return found
