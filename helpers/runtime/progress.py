"""Ray Data progress a learner can read: one updating line per execution in a notebook.

What Ray 2.60 does on its own: a Jupyter kernel's stdout is not a terminal, so
Ray Data picks its *logging* progress manager, which logs a block of
``Total Progress: n/m`` lines (and one per operator) every 10 s, plus three
INFO lines per execution (start with the log folder, the plan, the finish).
In a cell they all land in the red stderr area, pages of them in a long run.

Here, inside an IPython kernel, those INFO records are caught by a logging
filter on Ray Data's own loggers: each execution gets one line, updated in
place (an IPython display handle), that says which operators run, how many rows
are done and, at the end, how long it took. The records are marked ``hide``,
which Ray Data's console handler honours, so they still reach Ray's log file
(``ray-data.log``) and nothing else on screen. Warnings and errors are left
alone. Outside a notebook (the pipeline command, tests) progress logging is
only quietened, as before.
"""

from __future__ import annotations

import logging

from helpers.runtime.ray_internals import (
    EXECUTOR_LOGGER,
    LOGGING_PROGRESS_LOGGER,
    PROGRESS_LOGGER,
    ProgressEvent,
    hide_from_console,
    progress_event,
    set_progress_log_interval,
    short_plan,
)
from helpers.show.ipython import in_notebook

#: Seconds between progress updates in the notebook (Ray's default is 10).
REFRESH_S = 2


class NotebookProgress(logging.Filter):
    """Turns Ray Data's INFO progress records into one updating line per execution."""

    def __init__(self):
        super().__init__()
        self.handle = None
        self.plan = ""
        self.rows = ""

    def _show(self, text: str, new: bool = False) -> None:
        from IPython.display import display

        if new or self.handle is None:
            self.handle = display({"text/plain": text}, raw=True, display_id=True)
        else:
            self.handle.update({"text/plain": text}, raw=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        event = progress_event(record.getMessage())
        if event is not None:
            self._update(event)
        hide_from_console(record)  # Ray Data's console handler drops it; its log file keeps it
        return True

    def _update(self, event: ProgressEvent) -> None:
        if event.kind == "start":
            self.plan, self.rows = "", ""
            self._show("Ray Data: starting ...", new=True)
        elif event.kind == "plan":
            self.plan = short_plan(event.plan)
            self._show(f"Ray Data: {self.plan}: running")
        elif event.kind == "total":
            self.rows = f"{event.done}/{event.total} rows" if event.total != "?" else f"{event.done} rows"
            self._show(f"Ray Data: {self.plan}: {self.rows}")
        elif event.kind == "finished":
            self._show(f"Ray Data: {self.plan}: done in {event.seconds:.1f} s")
        else:
            self._show(f"Ray Data: {self.plan}: failed (the error follows)")


_notebook_progress: NotebookProgress | None = None


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
    """Show Ray Data's progress as one updating line per execution in a notebook; quiet elsewhere.

    Called by ``helpers.start()`` (via ``configure_data_context``); calling it again changes nothing.
    """
    global _notebook_progress
    logging.getLogger(PROGRESS_LOGGER).setLevel(logging.WARNING)  # e.g. "Progress will be logged because ..."
    if not in_notebook():
        return
    import sys

    hide_known_noise(sys.stderr)
    set_progress_log_interval(REFRESH_S)
    if _notebook_progress is None:
        _notebook_progress = NotebookProgress()
    for name in (EXECUTOR_LOGGER, LOGGING_PROGRESS_LOGGER):
        logger = logging.getLogger(name)
        if _notebook_progress not in logger.filters:
            logger.addFilter(_notebook_progress)
        logger.setLevel(logging.INFO)
