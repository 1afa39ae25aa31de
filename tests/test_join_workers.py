"""A lesson's join runs in the worker processes its job already has.

Ray Data 2.60 gives a shuffle's map and reduce tasks runtime_envs of their own,
which keep them in worker pools of their own; a worker serves one job, so each
lesson's kernel started about ten workers for its first join.
``helpers.start()`` lets those tasks take the job's workers
(``ray_internals.share_shuffle_workers``) and gives every worker of the Ray it
starts the one polars thread Ray Data asked for.

The worker processes are counted from ``/proc`` as the raylet's children,
sampled while the join runs, so that a worker started and ended in between
still counts.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="counts processes from /proc (Linux)")

#: Warm workers before a join: the lessons' Ray has 8 logical CPUs, so at most 8 tasks run at once.
WARM_TASKS = 8


def children(parent: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def new_workers_while(run, raylet: int) -> set[int]:
    """The raylet's child processes that appeared while ``run()`` ran."""
    before = children(raylet)
    seen: set[int] = set()
    done = threading.Event()

    def sample():
        while not done.is_set():
            seen.update(children(raylet))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return seen - before


def warm_workers() -> tuple[int, set[str]]:
    """Start WARM_TASKS workers of this job; the raylet's pid and what they read in POLARS_MAX_THREADS."""
    import ray

    @ray.remote(num_cpus=1)
    def where():
        time.sleep(1)  # all at once: one worker each
        return os.getppid(), os.environ.get("POLARS_MAX_THREADS")

    answers = ray.get([where.remote() for _ in range(WARM_TASKS)], timeout=300)
    raylets = {parent for parent, _ in answers}
    assert len(raylets) == 1, f"the workers have several parents: {raylets}"
    return raylets.pop(), {threads for _, threads in answers}


def join(**options):
    """A lesson's join, in small: two blocks a side (few reads at once: the warm workers suffice)."""
    import ray

    def side():
        return ray.data.range(60, override_num_blocks=2)

    return side().join(side(), join_type="inner", num_partitions=2, on=("id",), **options)


def test_a_join_runs_in_the_jobs_workers(session):
    raylet, polars_threads = warm_workers()
    assert polars_threads == {"1"}, f"POLARS_MAX_THREADS in the workers: {polars_threads}"
    joined = join()
    counts = []
    started = new_workers_while(lambda: counts.extend(joined.count() for _ in range(2)), raylet)
    assert counts == [60, 60], counts
    # Ray's own pools would start at least one map and one reduce worker.
    assert len(started) <= 1, f"two joins started {len(started)} worker processes of their own"

    # The control: a reduce given a runtime_env of its own still gets workers of its own.
    raylet, _ = warm_workers()
    apart = join(aggregator_ray_remote_args={"runtime_env": {"env_vars": {"WORKSHOP_TEST_POOL": "apart"}}})
    started = new_workers_while(lambda: counts.append(apart.count()), raylet)
    assert counts[-1] == 60 and started, "a runtime_env of its own started no worker: the count cannot tell"


SHUFFLE_ENVS = """
import json, sys
from ray.data._internal.execution.operators.hash_shuffle_v2 import _SHUFFLE_MAP_RUNTIME_ENV
from ray.data._internal.execution.operators.shuffle_operators.shuffle_reduce_operator import (
    _SHUFFLE_REDUCE_RUNTIME_ENV,
)
from helpers.runtime.cluster import configure_data_context

configure_data_context(workshop_ray=sys.argv[1] == "workshop")
print(json.dumps([_SHUFFLE_MAP_RUNTIME_ENV["env_vars"], _SHUFFLE_REDUCE_RUNTIME_ENV["env_vars"]]))
"""


@pytest.mark.parametrize("ray_kind", ["workshop", "cluster"])
def test_only_a_ray_the_workshop_started_shares_the_shuffle_workers(ray_kind):
    """On a cluster the workshop did not start, the workers lack the polars cap: Ray Data's own pools stay."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SHUFFLE_ENVS, ray_kind], capture_output=True, text=True,
                          timeout=120, check=True)
    map_env, reduce_env = json.loads(done.stdout.strip().splitlines()[-1])
    if ray_kind == "workshop":
        assert map_env == {} and reduce_env == {}
    else:
        assert map_env and reduce_env, (map_env, reduce_env)
