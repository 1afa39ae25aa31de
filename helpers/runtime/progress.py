"""Ray Data progress a learner can read: a live view per execution, one row per operator.

What Ray 2.60 does on its own: a Jupyter kernel's stdout is not a terminal, so
Ray Data picks its *logging* progress manager, which logs a block of
``Total Progress: n/m`` lines (and one per operator) every 10 s, plus three
INFO lines per execution (start with the log folder, the plan, the finish).
In a cell they all land in the red stderr area, pages of them in a long run.

Here, inside an IPython kernel, those INFO records are marked ``hide`` by a
logging filter on Ray Data's own loggers (its console handler honours the mark,
its log file ``ray-data.log`` keeps them; warnings and errors are left alone),
and an execution callback, :class:`LiveProgress`, shows each execution instead:
one row per operator with its state, its tasks or actors (running, pending,
restarting), rows in and out and the blocks queued in front of it, updated in
place (:mod:`helpers.show.progress`) every :data:`REFRESH_S` at most. Streaming
shows as several operators *running* at once, backpressure as an operator that
Ray holds back. When the run ends, each operator's row becomes its summary
(time, rows, rows per second), and :func:`last_run` keeps the run for
``helpers.show_run()``. Outside a notebook (the pipeline command, tests)
progress logging is only quietened, as before, and the runs are recorded
without a display.

The callback reads the operators every :data:`SAMPLE_S` through
:func:`helpers.runtime.ray_internals.operator_progress`: Ray has no public API
for a running execution's operators.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from helpers.runtime import ray_internals
from helpers.runtime.ray_internals import (
    EXECUTOR_LOGGER,
    LOGGING_PROGRESS_LOGGER,
    PROGRESS_LOGGER,
    OperatorProgress,
    hide_from_console,
)
from helpers.show.ipython import in_notebook

log = logging.getLogger(__name__)

#: Seconds between two updates of the view at most: calm on a projector, and no flicker.
REFRESH_S = 2.0
#: Seconds between two readings of the operators: the resolution of each operator's start and end.
SAMPLE_S = 0.25


# ---------------------------------------------------------------- what ran, in plain values


@dataclass
class OperatorRun:
    """One operator over one execution: its latest state and when it worked.

    ``asked`` is when its actors were first seen pending (actor pools only),
    ``started`` when its first task ran or its first rows arrived (an actor
    pool's first call comes after ``__init__`` loaded the model), ``ended`` when
    it completed (or when the execution ended, for an operator a limit such as
    ``take_batch`` stopped). Seconds since the execution began. ``pool_size``
    is the most actors it had, started or not.
    """

    latest: OperatorProgress
    asked: float | None = None
    started: float | None = None
    ended: float | None = None
    pool_size: int = 0

    @property
    def name(self) -> str:
        return self.latest.name

    @property
    def seconds(self) -> float | None:
        """Time from its first task or rows to its end; None when neither was seen."""
        if self.started is None or self.ended is None:
            return None
        return max(self.ended - self.started, 0.0)

    @property
    def rows_per_second(self) -> float | None:
        seconds = self.seconds
        return self.latest.rows_out / seconds if seconds and self.latest.rows_out else None


@dataclass
class Run:
    """One execution, as the live view saw it: its operators in order, sources first."""

    operators: list[OperatorRun] = field(default_factory=list)
    elapsed: float = 0.0  # seconds since it began, at the latest reading
    outcome: str = "running"  # "running", "done" or "failed"
    notes: list[str] = field(default_factory=list)  # why it waits, when another job holds what it needs

    def observe(self, elapsed: float, states: list[OperatorProgress]) -> None:
        """Take one reading of the operators, ``elapsed`` seconds after the execution began."""
        self.elapsed = elapsed
        if len(self.operators) != len(states):
            self.operators = [OperatorRun(state) for state in states]
        for run, state in zip(self.operators, states):
            run.latest = state
            actors = state.actors_running + state.actors_pending + state.actors_restarting
            run.pool_size = max(run.pool_size, actors)
            if state.is_actor_pool and run.asked is None and actors:
                run.asked = elapsed
            if run.started is None and (state.tasks or state.tasks_finished or state.rows_in):
                run.started = elapsed
            if run.ended is None and state.done:
                run.ended = elapsed

    def finish(self, elapsed: float, ok: bool) -> None:
        """The execution ended: operators still open end now."""
        self.elapsed = elapsed
        self.outcome = "done" if ok else "failed"
        for run in self.operators:
            if run.started is not None and run.ended is None:
                run.ended = elapsed

    @property
    def rows(self) -> int:
        """Rows out of the last operator: what the execution delivered."""
        return self.operators[-1].latest.rows_out if self.operators else 0


_last_run: Run | None = None


def last_run() -> Run | None:
    """The latest execution the live view followed in this kernel, or None."""
    return _last_run


# ---------------------------------------------------------------- the live view


class LiveProgress(ray_internals.execution_callback_base()):
    """Ray Data execution callback that keeps a :class:`Run` and shows it in the cell that runs it.

    Ray creates one per execution. Its hooks never raise: a display problem
    turns the view off for that execution and leaves the pipeline alone.
    """

    def __init__(self):
        super().__init__()
        self.run = Run()
        self.recording = False
        self.view = None  # in a notebook only; elsewhere the run is recorded for helpers.show_run()
        self.began = self.last_sample = 0.0
        self.watch = None  # explains a wait on other jobs' actors (helpers.runtime.contention)

    def before_execution_starts(self, executor) -> None:
        self._guarded(self._start, executor)

    def on_execution_step(self, executor) -> None:
        if self.recording and time.monotonic() - self.last_sample >= SAMPLE_S:
            self._guarded(self._step, executor)

    def after_execution_succeeds(self, executor) -> None:
        self._guarded(self._end, executor, True)

    def after_execution_fails(self, executor, error: Exception) -> None:
        self._guarded(self._end, executor, False)

    def _guarded(self, hook, *args) -> None:
        try:
            hook(*args)
        except Exception as err:  # the view must never break a learner's pipeline
            log.debug("the live progress view stopped: %s", err, exc_info=True)
            self.recording, self.view = False, None

    def _sample(self, executor) -> None:
        self.last_sample = time.monotonic()
        self.run.observe(self.last_sample - self.began, ray_internals.operator_progress(executor))

    def _start(self, executor) -> None:
        from helpers.show.progress import ProgressView

        global _last_run
        self.began = time.monotonic()
        self._sample(executor)
        self.watch = _wait_watch(executor)
        _last_run, self.recording = self.run, True
        if _show_live:
            self.view = ProgressView(REFRESH_S)
            self.view.update(self.run, force=True)

    def _step(self, executor) -> None:
        self._sample(executor)
        self._explain_waits()
        if self.view is not None:
            self.view.update(self.run)

    def _explain_waits(self) -> None:
        """Warn once when a pool waits for what another job's actors hold; a failure here ends only the watch."""
        if self.watch is None:
            return
        try:
            notes = self.watch.notes([op.latest for op in self.run.operators])
        except Exception as err:  # the explanation must never stop the run or its view
            log.debug("the wait explanation stopped: %s", err, exc_info=True)
            self.watch, self.run.notes = None, []
            return
        for note in notes:
            log.warning(note)
        self.run.notes = self.watch.shown()  # under the live view while its pool waits

    def _end(self, executor, ok: bool) -> None:
        if not self.recording:
            return
        self._sample(executor)
        self.run.finish(self.last_sample - self.began, ok)
        self.recording = False
        if self.view is not None:
            self.view.update(self.run, force=True)


def _wait_watch(executor):
    """A :class:`helpers.runtime.contention.WaitWatch` for this execution, or None when it cannot start."""
    try:
        import ray

        from helpers.runtime.contention import WaitWatch
        from helpers.runtime.resources import stage_requests

        requests = stage_requests(ray_internals.execution_operators(executor))
        return WaitWatch(requests, ray.get_runtime_context().get_job_id())
    except Exception as err:  # the view and the run go on without it
        log.debug("no wait explanation for this execution: %s", err, exc_info=True)
        return None


class HideProgressRecords(logging.Filter):
    """Marks Ray Data's INFO progress records so that its console handler drops them; the log file keeps them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            hide_from_console(record)
        return True


_hide_progress_records = HideProgressRecords()
#: Whether executions show the live view (in a notebook kernel), set by configure_progress().
_show_live = False


#: Lines Ray prints for what the lessons do on purpose, with nothing for a learner to act on.
#: Ray Data's actor pools restart actors by default and keep the class's arguments in the
#: object store, so Ray's C++ core logs this at error level for every pool of every lesson.
KNOWN_NOISE = ("has constructor arguments in the object store and max_restarts > 0",)


def without_noise(text: str) -> str:
    """``text`` without the lines that hold one of :data:`KNOWN_NOISE`."""
    if not any(marker in text for marker in KNOWN_NOISE):
        return text
    return "".join(line for line in text.splitlines(keepends=True)
                   if not any(marker in line for marker in KNOWN_NOISE))


def hide_known_noise(stream) -> None:
    """Drop :data:`KNOWN_NOISE` lines from a kernel's stderr stream.

    The C++ core writes them straight to file descriptor 2, which ipykernel
    reads in a thread and passes to the stream's ``write``: wrapping that
    ``write`` is the one place they can be caught. Everything else passes.
    """
    write = stream.write
    if getattr(write, "_without_noise", False):
        return

    def filtered(text: str):
        kept = without_noise(text)
        return write(kept) if kept else len(text)

    filtered._without_noise = True
    stream.write = filtered


def configure_progress() -> None:
    """Show a live view of each Ray Data execution in a notebook; elsewhere keep quiet and only record the runs.

    Called by ``helpers.start()`` (via ``configure_data_context``); calling it again changes nothing.
    """
    import ray

    global _show_live
    logging.getLogger(PROGRESS_LOGGER).setLevel(logging.WARNING)  # e.g. "Progress will be logged because ..."
    callbacks = ray.data.DataContext.get_current().custom_execution_callback_classes
    if LiveProgress not in callbacks:
        callbacks.append(LiveProgress)
    if not in_notebook():
        return
    import sys

    _show_live = True
    hide_known_noise(sys.stderr)
    for name in (EXECUTOR_LOGGER, LOGGING_PROGRESS_LOGGER):
        logger = logging.getLogger(name)
        if _hide_progress_records not in logger.filters:
            logger.addFilter(_hide_progress_records)
        logger.setLevel(logging.INFO)
