"""What a Ray Data execution is doing, and what it did: the live view and ``helpers.show_run()``.

The live view (:class:`ProgressView`, fed by
:class:`helpers.runtime.progress.LiveProgress`) is one display per execution,
updated in place through an IPython display handle: HTML in JupyterLab, the same
rows as plain text for any other front end. An execution shorter than one
refresh stays one line; a longer one shows a table, one row per operator, whose
size does not change while it runs (no jumping output), and at the end each row
becomes that operator's summary: how it ran, its time, rows and rows per second.

``helpers.show_run()`` draws the latest execution as a timeline, one bar per
operator: when its actors were starting (loading the model) and when it worked.
Bars that overlap are stages that streamed at the same time.
"""

from __future__ import annotations

import html
import time

from helpers.runtime.progress import OperatorRun, Run, last_run
from helpers.show.ipython import in_notebook

#: Characters of a timeline bar.
TIMELINE_WIDTH = 40
STARTING, WORKING, IDLE = "░", "█", "·"

_TABLE = (
    '<table class="rdw-progress" style="font-size:12px;border-collapse:collapse;margin:2px 0;'
    'font-variant-numeric:tabular-nums">'
)
_CELL = 'style="padding:1px 10px 1px 0;text-align:{align};white-space:nowrap"'
_STATE_COLOURS = {"running": "#2e7d32", "running (backpressured)": "#c46a00", "backpressured": "#c46a00",
                  "starting actors": "#2f6db5"}


# ---------------------------------------------------------------- wording


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _names(run: Run) -> str:
    return " -> ".join(op.name for op in run.operators)


def state(op: OperatorRun) -> str:
    """What an operator is doing now, in the learner's words."""
    now = op.latest
    if now.done:
        return "done"
    if now.tasks and now.backpressured:
        return "running (backpressured)"
    if now.tasks:
        return "running"
    if now.is_actor_pool and now.actors_pending and not now.actors_running:
        return "starting actors"
    if now.backpressured:
        return "backpressured"
    return "waiting for input" if op.started is not None or now.actors_running else "waiting"


def workers(op: OperatorRun) -> str:
    """Its tasks or actors now: ``3 tasks``, ``actors: 1 running, 1 pending · 2 tasks``."""
    now = op.latest
    tasks = _count(now.tasks, "task")
    if not now.is_actor_pool:
        return tasks
    actors = [f"{now.actors_running} running"]
    if now.actors_pending:
        actors.append(f"{now.actors_pending} pending")
    if now.actors_restarting:
        actors.append(f"{now.actors_restarting} restarting")
    return f"actors: {', '.join(actors)} · {tasks}"


def rows_in(op: OperatorRun) -> str:
    """Rows received; a read's inputs are its read tasks, not rows, so it has none to show."""
    return "–" if op.name.startswith("Read") else str(op.latest.rows_in)


def queued(op: OperatorRun) -> str:
    return _count(op.latest.queued_blocks, "block") if op.latest.queued_blocks else ""


def ran_as(op: OperatorRun) -> str:
    """``2 actors``, ``4 tasks``, or ``–`` for an operator whose work Ray does not count as tasks (a limit)."""
    if op.latest.is_actor_pool:
        return _count(op.pool_size, "actor")
    return _count(op.latest.tasks_finished, "task") if op.latest.tasks_finished else "–"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}" if value < 10 else f"{value:.0f}"


def headline(run: Run) -> str:
    if run.outcome == "done":
        return f"Ray Data: done in {run.elapsed:.1f} s, {_count(run.rows, 'row')}"
    if run.outcome == "failed":
        return f"Ray Data: failed after {run.elapsed:.1f} s (the error follows)"
    return f"Ray Data: running for {run.elapsed:.0f} s"


LIVE_COLUMNS = ("operator", "state", "tasks or actors", "rows in", "rows out", "queued in front")
SUMMARY_COLUMNS = ("operator", "ran as", "time", "rows out", "rows/s")
TIMELINE_COLUMNS = ("operator", "timeline", "time", "rows/s")


def live_rows(run: Run) -> list[tuple[str, ...]]:
    return [(op.name, state(op), workers(op), rows_in(op), str(op.latest.rows_out), queued(op))
            for op in run.operators]


def summary_rows(run: Run) -> list[tuple[str, ...]]:
    return [(op.name, ran_as(op), _seconds(op.seconds), str(op.latest.rows_out), _rate(op.rows_per_second))
            for op in run.operators]


def timeline(op: OperatorRun, total: float, width: int = TIMELINE_WIDTH) -> str:
    """One bar: ``░`` while its actors were starting, ``█`` while it worked, ``·`` otherwise."""

    def column(t: float | None) -> int:
        return width if t is None else min(width, round(t / total * width)) if total > 0 else 0

    bar = [IDLE] * width
    if op.asked is not None:
        for i in range(column(op.asked), column(op.started if op.started is not None else op.ended)):
            bar[i] = STARTING
    if op.started is not None:
        first, last = column(op.started), column(op.ended)
        for i in range(first, max(last, first + 1)):
            bar[min(i, width - 1)] = WORKING
    return "".join(bar)


def timeline_rows(run: Run) -> list[tuple[str, ...]]:
    return [(op.name, timeline(op, run.elapsed), _seconds(op.seconds), _rate(op.rows_per_second))
            for op in run.operators]


# ---------------------------------------------------------------- text and HTML


def as_text(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]], footer: str = "") -> str:
    table = [columns, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = [title] + ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join(lines + ([footer] if footer else []))


def as_html(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]], footer: str = "") -> str:
    def cell(tag: str, text: str, i: int) -> str:
        align = "left" if i < 3 else "right"
        style = _CELL.format(align=align)
        colour = _STATE_COLOURS.get(text) if columns[i] == "state" else None
        body = html.escape(text)
        if columns[i] == "timeline":
            style = style[:-1] + ';font-family:monospace;letter-spacing:-1px"'
        if colour:
            body = f'<b style="color:{colour}">{body}</b>'
        return f"<{tag} {style}>{body}</{tag}>"

    head = "".join(cell("th", name, i) for i, name in enumerate(columns))
    body = "".join("<tr>" + "".join(cell("td", text, i) for i, text in enumerate(row)) + "</tr>" for row in rows)
    foot = f'<div style="font-size:11px;color:#666">{html.escape(footer)}</div>' if footer else ""
    return f"<div><b>{html.escape(title)}</b>{_TABLE}<tr>{head}</tr>{body}</table>{foot}</div>"


def render(run: Run, table: bool) -> tuple[str, str]:
    """The view of ``run`` as (text, HTML): one line, or a table of its operators (live, or the summary)."""
    if not table:
        if run.outcome == "running":
            line = f"Ray Data: {_names(run)}: running"
        elif run.outcome == "done":
            line = f"Ray Data: {_names(run)}: {_count(run.rows, 'row')} in {run.elapsed:.1f} s"
        else:
            line = f"Ray Data: {_names(run)}: failed after {run.elapsed:.1f} s (the error follows)"
        return line, f"<code>{html.escape(line)}</code>"
    title = headline(run)
    columns, rows = (LIVE_COLUMNS, live_rows(run)) if run.outcome == "running" else (SUMMARY_COLUMNS,
                                                                                     summary_rows(run))
    footer = " ".join(run.notes) if run.outcome == "running" else ""  # why it waits, while it does
    return as_text(title, columns, rows, footer), as_html(title, columns, rows, footer)


class ProgressView:
    """One execution's display, updated in place at most every ``refresh_s`` seconds.

    A run that ends within the first ``refresh_s`` stays one line; from the
    first refresh on it is a table. Updates that would show the same are skipped.
    """

    def __init__(self, refresh_s: float, clock=time.monotonic):
        self.refresh_s = refresh_s
        self.clock = clock
        self.handle = None
        self.shown: tuple[str, str] | None = None
        self.last = 0.0
        self.table = False

    def update(self, run: Run, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.last < self.refresh_s:
            return
        self.table = self.table or run.elapsed >= self.refresh_s
        content = render(run, self.table)
        self.last = now
        if content != self.shown:
            self.shown = content
            self._show(*content)

    def _show(self, text: str, html_text: str) -> None:
        from IPython.display import display

        bundle = {"text/plain": text, "text/html": html_text}
        if self.handle is None:
            self.handle = display(bundle, raw=True, display_id=True)
        else:
            self.handle.update(bundle, raw=True)


# ---------------------------------------------------------------- helpers.show_run()


class RunTimeline:
    """``helpers.show_run()``'s result: a timeline of an execution's operators, HTML or text."""

    def __init__(self, run: Run):
        self.run = run

    def _parts(self):
        title = f"{headline(self.run)}; each bar spans the whole run"
        footer = f"{STARTING} actors starting (each loads its model)   {WORKING} working   {IDLE} not working"
        return title, TIMELINE_COLUMNS, timeline_rows(self.run), footer

    def __repr__(self) -> str:
        return as_text(*self._parts())

    def _repr_html_(self) -> str:
        return as_html(*self._parts())


def show_run() -> RunTimeline | None:
    """Draw the latest Ray Data execution of this kernel: when each operator worked, its time and rows per second.

    Nothing runs: the live view recorded the execution while it ran. In a
    notebook the result displays as a table; elsewhere it prints as text.
    """
    run = last_run()
    if run is None:
        print("No Ray Data execution has run here since helpers.start() (the live view records them in notebooks).")
        return None
    timeline_view = RunTimeline(run)
    if not in_notebook():
        print(repr(timeline_view))
        return None
    return timeline_view
