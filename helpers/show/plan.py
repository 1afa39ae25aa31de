"""Draw a Dataset's pipeline from its plan: the operators, how they run, and where blocks flow.

``helpers.show_pipeline(ds)`` reads the lazy Dataset's *logical plan*, the
graph Ray Data will optimize and run, so the drawing always matches the code
above it: nothing is drawn by hand and nothing runs. Each box is one operator,
in the order blocks reach it, with what it runs as (tasks or an actor pool),
what each task or actor reserves, and its batch size. In a notebook it is an
SVG sized for a projector; elsewhere it prints as text.

Ray has no public API for the plan's per-operator arguments, so
:func:`plan_steps` reads them through
:func:`helpers.runtime.ray_internals.logical_operators`, whose test fails
loudly when a Ray upgrade moves them.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from helpers.runtime.ray_internals import PlanOperator, logical_operators
from helpers.show.ipython import ipython_shell

#: Box colours by how an operator runs (fill, border): readable on a projector and in print.
COLOURS = {
    "read": ("#eef2f7", "#5b6b82"),
    "tasks": ("#e6f0fb", "#2f6db5"),
    "actors": ("#fff1e0", "#c46a00"),
    "shuffle": ("#f1eafa", "#7442b8"),
    "write": ("#e8f5ea", "#2e7d32"),
    "data": ("#f4f4f4", "#777777"),
}


@dataclass(frozen=True)
class PlanStep:
    """One operator of a plan, as a learner would describe it."""

    index: int
    name: str
    kind: str  # a key of COLOURS
    inputs: tuple[int, ...]  # indices of the steps whose blocks flow into this one
    actors: str | None = None  # pool size, e.g. "2" or "1-4"; None for tasks
    num_gpus: float = 0.0
    num_cpus: float | None = None
    batch_size: int | str | None = None
    detail: str = ""

    @property
    def runs_as(self) -> str:
        if self.actors is not None:
            return f"actor pool of {self.actors}"
        return {"read": "read tasks", "shuffle": "all-to-all", "data": "in memory"}.get(self.kind, "tasks")

    def resources(self) -> str:
        """What each task or actor reserves, e.g. ``1 GPU + 1 CPU each``."""
        if self.kind in ("shuffle", "data"):
            return ""
        parts = []
        if self.num_gpus:
            parts.append(f"{self.num_gpus:g} GPU")
        parts.append(f"{1 if self.num_cpus is None else self.num_cpus:g} CPU")
        return " + ".join(parts) + " each"

    def summary(self) -> str:
        """The step's second line: how it runs, resources, batch size and any detail."""
        parts = [self.runs_as, self.resources()]
        if self.batch_size is not None:
            parts.append(f"batch_size={self.batch_size}")
        parts.append(self.detail)
        return " · ".join(part for part in parts if part)


def _pool_size(compute) -> str | None:
    from ray.data import ActorPoolStrategy

    if not isinstance(compute, ActorPoolStrategy):
        return None
    low, high = compute.min_size, compute.max_size
    if high == low:
        return f"{low}"
    return f"{low}+" if high == float("inf") else f"{low}-{high}"


def _kind_and_detail(op: PlanOperator) -> tuple[str, str]:
    if op.kind == "read":
        return "read", ""
    if op.kind == "join":
        keys = ", ".join(op.join_keys)
        return "shuffle", f"hash-shuffled {op.join_type} join on {keys}, {op.num_partitions} partitions"
    if op.kind == "repartition":
        return "shuffle", f"into {op.num_outputs} blocks" if op.num_outputs else ""
    if op.kind == "streaming_repartition":
        return "tasks", f"{op.target_num_rows_per_block} rows per block"
    if op.kind == "all_to_all":
        return "shuffle", ""
    if op.kind == "write":
        return "write", ""
    if op.kind == "input_data":
        return "data", "materialized blocks"
    return "tasks", ""


def plan_steps(dataset) -> list[PlanStep]:
    """The operators of ``dataset``'s logical plan, sources first, each once.

    Read through :func:`helpers.runtime.ray_internals.logical_operators`: the
    plan's operators, where each one's blocks come from, its ``compute``,
    ``ray_remote_args`` and ``batch_size``. Nothing is executed.
    """
    steps = []
    for i, op in enumerate(logical_operators(dataset)):
        kind, detail = _kind_and_detail(op)
        remote = op.ray_remote_args
        actors = _pool_size(op.compute)
        steps.append(
            PlanStep(
                index=i,
                name=op.name.split("[")[0],
                kind="actors" if actors is not None else kind,
                inputs=op.inputs,
                actors=actors,
                num_gpus=float(remote.get("num_gpus") or 0),
                num_cpus=None if remote.get("num_cpus") is None else float(remote["num_cpus"]),
                batch_size=op.batch_size,
                detail=detail,
            )
        )
    return steps


# ---------------------------------------------------------------- text


def pipeline_text(steps: list[PlanStep]) -> str:
    """The plan as numbered lines, for a terminal or a log."""
    lines = [f"Pipeline: {len(steps)} operators; blocks flow from the sources down"]
    width = max(len(step.name) for step in steps)
    for step in steps:
        source = f" <- {', '.join(str(i + 1) for i in step.inputs)}" if len(step.inputs) > 1 else ""
        lines.append(f"{step.index + 1:>2}. {step.name:<{width}}  {step.summary()}{source}")
    return "\n".join(lines)


# ---------------------------------------------------------------- drawing

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 560, 72, 40, 46, 12
TITLE_PX, LINE_PX = 21, 16


def _levels(steps: list[PlanStep]) -> list[int]:
    """Each step's row: one below the lowest of its inputs, so sources share the top row."""
    level: list[int] = []
    for step in steps:
        level.append(1 + max((level[i] for i in step.inputs), default=-1))
    return level


def _layout(steps: list[PlanStep]) -> dict[int, tuple[float, float, float]]:
    """Each step's box: left, top and width."""
    level = _levels(steps)
    rows: dict[int, list[int]] = {}
    for step in steps:
        rows.setdefault(level[step.index], []).append(step.index)
    widest = max(len(row) for row in rows.values())
    box_w = BOX_W if widest == 1 else (BOX_W * 2 + GAP_X) / widest - GAP_X / 2
    total = widest * box_w + (widest - 1) * GAP_X
    places = {}
    for row, members in rows.items():
        span = len(members) * box_w + (len(members) - 1) * GAP_X
        left = MARGIN + (total - span) / 2
        for k, i in enumerate(members):
            places[i] = (left + k * (box_w + GAP_X), MARGIN + row * (BOX_H + GAP_Y), box_w)
    return places


def pipeline_svg(steps: list[PlanStep]) -> str:
    """The plan as an SVG: one box per operator, arrows where blocks flow."""
    places = _layout(steps)
    width = max(x + w for x, _, w in places.values()) + MARGIN
    height = max(y for _, y, _ in places.values()) + BOX_H + MARGIN
    header = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" style="max-width: 100%; height: auto" '
        'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">'
    )
    arrow = (
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/></marker></defs>'
    )
    parts = [header, arrow]
    for step in steps:
        x, y, w = places[step.index]
        for source in step.inputs:
            sx, sy, sw = places[source]
            parts.append(
                f'<line x1="{sx + sw / 2:.0f}" y1="{sy + BOX_H:.0f}" x2="{x + w / 2:.0f}" y2="{y - 2:.0f}" '
                'stroke="#444" stroke-width="2.5" marker-end="url(#arrow)"/>'
            )
    for step in steps:
        x, y, w = places[step.index]
        fill, border = COLOURS[step.kind]
        parts.append(
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{BOX_H}" rx="10" '
            f'fill="{fill}" stroke="{border}" stroke-width="2.5"/>'
        )
        parts.append(
            f'<text x="{x + 14:.0f}" y="{y + 30:.0f}" font-size="{TITLE_PX}" font-weight="bold" '
            f'fill="#1a1a1a">{html.escape(step.name)}</text>'
        )
        summary = step.summary()
        # Squeeze only a line that would overflow its box (estimated at 0.6 em per character).
        too_wide = LINE_PX * 0.6 * len(summary) > w - 28
        fit = f' textLength="{w - 28:.0f}" lengthAdjust="spacingAndGlyphs"' if too_wide else ""
        parts.append(
            f'<text x="{x + 14:.0f}" y="{y + 56:.0f}" font-size="{LINE_PX}" fill="{border}"{fit}>'
            f"{html.escape(summary)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def show_pipeline(dataset) -> None:
    """Draw ``dataset``'s pipeline (nothing runs): an SVG in a notebook, text elsewhere."""
    steps = plan_steps(dataset)
    if ipython_shell() is not None:
        from IPython.display import display

        display({"image/svg+xml": pipeline_svg(steps), "text/plain": pipeline_text(steps)}, raw=True)
    else:
        print(pipeline_text(steps))
