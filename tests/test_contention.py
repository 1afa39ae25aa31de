"""A pool that waits for GPUs another notebook holds says so, names that notebook, and runs once they are free.

The learner's road: two notebook kernels, started as JupyterLab starts them
(its ``JPY_SESSION_NAME`` names each one's notebook), run ``helpers.start()``
under ``learners_ray``: the first starts the Ray the lessons share, the second
joins it. Lesson 03's kernel takes a look at the first batch of a slow
pipeline and leaves the iterator open, so its two actors keep both logical
GPUs; lesson 04's kernel then asks for one GPU. Its wait must be explained
within the deadline, naming lesson 03's notebook, and its run must end once
lesson 03 does what the note says (``del`` the iterator). The first tests are
the explanation's arithmetic, without Ray.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import time

import pytest

from helpers.runtime.contention import WAIT_S, Look, WaitWatch, driver_name, missing, wait_note
from helpers.runtime.ray_internals import ActorHold, JobDriver, OperatorProgress
from helpers.runtime.stage_request import NodeCapacity, StageRequest
from tests.kernels import run_ok, workshop_kernel

IMAGES = StageRequest("MapBatches(ImageGen)", 2, cpus=1, gpus=1, is_actor_pool=True)
OTHER_JOB, OUR_JOB, NODE = "02000000", "03000000", "node-a"


def pending(name: str, done: bool = False, running: int = 0, waiting: int = 2) -> OperatorProgress:
    return OperatorProgress(name=name, is_actor_pool=True, tasks=0, tasks_finished=0, actors_running=running,
                            actors_pending=waiting, actors_restarting=0, rows_in=0, rows_out=0, queued_blocks=0,
                            backpressured=False, done=done)


def test_what_is_missing_for_one_actor():
    assert missing(IMAGES, [NodeCapacity(cpus=6, gpus=1)]) == []
    assert missing(IMAGES, [NodeCapacity(cpus=6, gpus=0.5)]) == ["GPU"]
    # Each resource is free somewhere, never both on one node: both are named.
    assert missing(IMAGES, [NodeCapacity(cpus=6, gpus=0), NodeCapacity(cpus=0, gpus=1)]) == ["CPU", "GPU"]


WAITING = ActorHold(OUR_JOB, "MapWorker(MapBatches(ImageGen))", {"CPU": 1.0, "GPU": 1.0}, NODE, placed=False)


def test_the_note_names_the_holders_and_what_they_hold():
    theirs = ActorHold(OTHER_JOB, "MapWorker(MapBatches(ImageGen))", {"CPU": 1.0, "GPU": 1.0}, NODE)
    holds = [theirs, theirs, WAITING, ActorHold(OTHER_JOB, "Cache", {"CPU": 1.0}, NODE)]  # the cache holds no GPU
    drivers = {OTHER_JOB: JobDriver(4242, "10.0.0.9")}
    note = wait_note(IMAGES, ["GPU"], holds, OUR_JOB, drivers, here="10.0.0.1", usable={NODE})
    assert note.startswith("MapBatches(ImageGen) is waiting: each of its actors needs 1 GPU, no node has that free")
    assert "a Ray program on 10.0.0.9 (pid 4242): 2 actor(s) MapWorker(MapBatches(ImageGen)), 2 GPU in all" in note
    assert "Kernel > Shut Down Kernel" in note
    # Nothing to say when the holders are on nodes it may not use ...
    assert wait_note(IMAGES, ["GPU"], holds, OUR_JOB, drivers, "10.0.0.1", {"node-b"}) is None
    # ... or when none of this job's actors waits for a place: placed ones only load their model.
    loading = WAITING._replace(placed=True)
    assert wait_note(IMAGES, ["GPU"], [theirs, loading], OUR_JOB, drivers, "10.0.0.1", {NODE}, own_started=1) is None


def test_an_earlier_half_read_run_of_the_same_notebook_is_named_with_what_to_do_here():
    mine = ActorHold(OUR_JOB, "MapWorker(MapBatches(Slow))", {"CPU": 1.0, "GPU": 1.0}, NODE)
    # Two placed actors of this job hold GPUs while one of it waits, and this execution has placed none.
    note = wait_note(IMAGES, ["GPU"], [mine, mine, WAITING], OUR_JOB, {}, "10.0.0.1", {NODE}, own_started=0)
    assert "this notebook holds it itself: 2 actor(s) MapWorker(MapBatches(Slow)) of an earlier run" in note, note
    assert note.endswith("interrupt this cell (Kernel > Interrupt Kernel), delete that iterator, and run the cell "
                         "again."), note
    # Both placed actors are this execution's own: no earlier run holds anything.
    assert wait_note(IMAGES, ["GPU"], [mine, mine, WAITING], OUR_JOB, {}, "10.0.0.1", {NODE}, own_started=2) is None


class Cluster:
    """What the watch's looks find: one node with two GPUs, all held; the holders change between tests."""

    def __init__(self, holds):
        self.holds, self.looks = holds, 0

    def __call__(self) -> Look:
        self.looks += 1
        total = NodeCapacity(cpus=8, gpus=2)
        return Look([(NODE, total, NodeCapacity(cpus=6, gpus=0))], self.holds, {}, "10.0.0.1")


def test_the_watch_tells_once_after_two_looks_agree_and_shows_the_note_while_the_pool_waits():
    theirs = ActorHold(OTHER_JOB, "MapWorker(MapBatches(Slow))", {"CPU": 1.0, "GPU": 1.0}, NODE)
    cluster, clock = Cluster([theirs, theirs, WAITING]), [0.0]
    pool = StageRequest(IMAGES.name, 1, cpus=1, gpus=1, is_actor_pool=True)
    watch = WaitWatch([pool], OUR_JOB, clock=lambda: clock[0], looker=cluster)
    states = [pending(IMAGES.name, waiting=1)]
    found = []
    for _ in range(8):  # 0 to 7 s, a step a second: due at 5 s, a first look then, the second agrees at 7 s
        found += watch.notes(states)
        clock[0] += 1.0
    assert len(found) == 1 and "other Ray programs hold it" in found[0], found
    assert cluster.looks == 2 and watch.shown() == found
    clock[0] += 10.0
    assert watch.notes(states) == [] and cluster.looks == 2  # told once: no more looks for this pool
    assert watch.notes([pending(IMAGES.name, waiting=0, running=1)]) == []
    assert watch.shown() == []  # its actor started: the note goes


def test_the_watch_says_nothing_while_the_pools_own_actors_load_their_model():
    theirs = ActorHold(OTHER_JOB, "MapWorker(MapBatches(Slow))", {"CPU": 1.0, "GPU": 1.0}, NODE)
    cluster, clock = Cluster([theirs, WAITING._replace(placed=True)]), [0.0]
    watch = WaitWatch([IMAGES], OUR_JOB, clock=lambda: clock[0], looker=cluster)
    for _ in range(30):
        assert watch.notes([pending(IMAGES.name, waiting=1)]) == []
        clock[0] += 1.0
    assert cluster.looks > 2


def test_a_driver_on_this_machine_is_named_by_its_notebook():
    kernel = subprocess.Popen([sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env={**os.environ, "JPY_SESSION_NAME": "/srv/nb/03_image_generation.ipynb"})
    try:
        assert kernel.stdout.readline() == b"ready\n"  # past exec: /proc shows its environment from here on
        assert driver_name(JobDriver(kernel.pid, "10.0.0.1"), here="10.0.0.1") == (
            f"the notebook 03_image_generation.ipynb (kernel pid {kernel.pid})")
    finally:
        kernel.communicate(b"", timeout=30)
    assert f"(pid {os.getpid()}: " in driver_name(JobDriver(os.getpid(), "10.0.0.1"), here="10.0.0.1")


def test_the_watch_looks_only_after_a_pool_has_waited():
    clock = [100.0]
    watch = WaitWatch([IMAGES], OUR_JOB, clock=lambda: clock[0])
    assert watch.waiting([pending(IMAGES.name)]) == []
    clock[0] += WAIT_S - 0.5
    assert watch.waiting([pending(IMAGES.name)]) == []
    clock[0] += 1.0
    assert watch.waiting([pending(IMAGES.name)]) == [IMAGES]
    assert watch.waiting([pending(IMAGES.name, done=True)]) == []  # its wait is over: the clock starts again
    assert watch.waiting([pending(IMAGES.name)]) == []
    # A pool that runs its two actors and asks for more is scaling up: never due, however long.
    clock[0] += 10 * WAIT_S
    assert watch.waiting([pending(IMAGES.name, running=2)]) == []
    clock[0] += 10 * WAIT_S
    assert watch.waiting([pending(IMAGES.name, running=2)]) == []


FIRST_LESSON = """
import time
import ray
import helpers

session = helpers.start()


class Slow:
    def __call__(self, batch):
        time.sleep(0.5)
        return batch


ds = ray.data.range(4000, override_num_blocks=400).map_batches(
    Slow, batch_size=10, num_gpus=1, compute=ray.data.ActorPoolStrategy(size=2))
rows = iter(ds.iter_batches(batch_size=10))
first = next(rows)  # a look at the first batch; the iterator stays open, and its two actors hold both GPUs
"""

SECOND_LESSON = """
import ray
import helpers

session = helpers.start()


class Passthrough:
    def __call__(self, batch):
        return batch


ds = ray.data.range(4).map_batches(
    Passthrough, batch_size=2, num_gpus=1, compute=ray.data.ActorPoolStrategy(size=1))
print("ROWS", ds.count())
"""


def reply_to(client, msg_id: str, timeout: float) -> dict:
    """The shell reply to ``msg_id``; replies to earlier requests (the kernel_info of the start) are passed over."""
    while True:
        reply = client.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]


def texts_until(client, msg_id: str, marker: str | None, seconds: float) -> tuple[list[str], str]:
    """What one request shows (streams, displays and their updates) until ``marker`` appears or the kernel is idle.

    Returns the texts and why it stopped: ``"marker"``, ``"idle"`` or ``"timeout"``.
    """
    seen, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            message = client.get_iopub_msg(timeout=max(0.1, end - time.monotonic()))
        except queue.Empty:
            break
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            seen.append(content["text"])
        elif kind in ("display_data", "update_display_data", "execute_result"):
            seen.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            seen.append("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return seen, "idle"
        if marker and seen and marker in seen[-1]:
            return seen, "marker"
    return seen, "timeout"


@pytest.mark.notebooks
def test_a_lesson_waiting_for_gpus_another_lessons_kernel_holds_is_told_whose_they_are(learners_ray):
    env = {**os.environ, "WORKSHOP_PROFILE": "cpu"}
    env.pop("RAY_ADDRESS", None)
    first_lesson = {**env, "JPY_SESSION_NAME": "notebooks/03_image_generation.ipynb"}
    with workshop_kernel(first_lesson) as (first_manager, first), \
            workshop_kernel({**env, "JPY_SESSION_NAME": "notebooks/04_join.ipynb"}) as (_, second):
        run_ok(first, FIRST_LESSON)
        msg_id = second.execute(SECOND_LESSON)
        shown, stopped = texts_until(second, msg_id, "is waiting", 120)
        run_ok(first, "del rows")  # what the note advises: the half-read Dataset's actors let go
        rest, _ = texts_until(second, msg_id, None, 180) if stopped != "idle" else (shown, "idle")
        reply = reply_to(second, msg_id, 60)
        pid = first_manager.provisioner.pid
    assert stopped == "marker", f"no explanation while waiting ({stopped}):\n" + "".join(shown[-10:])
    note = next(text for text in shown if "is waiting" in text)
    assert "MapBatches(Passthrough) is waiting: each of its actors needs 1 GPU" in note, note
    assert f"the notebook 03_image_generation.ipynb (kernel pid {pid}): 2 actor(s) MapWorker(MapBatches(Slow))" in note
    assert "2 GPU in all" in note, note
    assert reply["status"] == "ok" and any("ROWS 4" in text for text in rest), rest


@pytest.mark.notebooks
def test_a_cell_waiting_for_gpus_its_own_notebook_holds_says_how_to_free_them(learners_ray):
    """One kernel: the half-read iterator of an earlier cell holds both GPUs, so the next pipeline waits."""
    env = {**os.environ, "WORKSHOP_PROFILE": "cpu", "JPY_SESSION_NAME": "notebooks/03_image_generation.ipynb"}
    env.pop("RAY_ADDRESS", None)
    with workshop_kernel(env) as (manager, client):
        run_ok(client, FIRST_LESSON)
        waiting = client.execute(SECOND_LESSON.replace("session = helpers.start()", ""))
        shown, stopped = texts_until(client, waiting, "is waiting", 120)
        manager.interrupt_kernel()  # what the note says: interrupt, delete the iterator, run again
        texts_until(client, waiting, None, 120)
        reply_to(client, waiting, 60)
        again = client.execute("del rows\n" + SECOND_LESSON.replace("session = helpers.start()", ""))
        rest, _ = texts_until(client, again, None, 180)
        reply = reply_to(client, again, 60)
    assert stopped == "marker", f"no explanation while waiting ({stopped}):\n" + "".join(shown[-10:])
    note = next(text for text in shown if "is waiting" in text)
    assert "this notebook holds it itself: 2 actor(s) MapWorker(MapBatches(Slow)) of an earlier run" in note, note
    assert reply["status"] == "ok" and any("ROWS 4" in text for text in rest), rest
