"""The benchmark as a picture: rows per second for the plain loop, Ray Data and the floor.

Reads what ``python -m helpers.bench`` printed and was collected in
``docs/benchmarks.json`` (a list of its JSON lines). Left: for each run at the
pool size most runs used (the profile's default), rows/s of the plain loop, of
the Ray Data pipeline, and of the floor (the best any pipeline could do on that
machine). Right, when one row count was run with several ``--actors K``: Ray
Data's rows/s against the actors per stage, to show how it scales.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers.runtime.settings import REPO_ROOT

BENCHMARKS = REPO_ROOT / "docs" / "benchmarks.json"
HOW_TO = (
    "No benchmark results yet ({path} is missing): run `python -m helpers.bench --rows 64` "
    "(add `--actors K` for scaling) and collect its JSON lines in a list in that file."
)


def load_benchmarks(path: Path | str = BENCHMARKS) -> list[dict] | None:
    """The results in ``path`` (a JSON list of ``helpers.commands.bench`` lines), or None when there is no file."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{path} is not JSON ({err}); write the JSON lines `python -m helpers.bench` prints, "
                         "in a list") from None
    if isinstance(results, dict):
        results = [results]
    for needed in ("rows", "naive_seconds", "ray_seconds", "floor_seconds"):
        missing = [i for i, result in enumerate(results) if needed not in result]
        if missing:
            raise ValueError(
                f"{path}: result(s) {missing} have no {needed!r}; write the JSON lines `python -m helpers.bench` prints"
            )
    return results


def actors_of(result: dict) -> int | None:
    """Actors per model stage of a run: an int, or the largest of ``{"llm": n, "image": m}``."""
    actors = result.get("actors")
    if isinstance(actors, dict):
        return max(actors.values()) if actors else None
    return actors


def rows_per_second(result: dict) -> dict[str, float]:
    """Throughput of the three ways a run measured, in rows per second."""
    return {
        "plain loop": result["rows"] / result["naive_seconds"],
        "Ray Data": result["rows"] / result["ray_seconds"],
        "floor": result["rows"] / result["floor_seconds"],
    }


def scaling_series(results: list[dict]) -> dict[int, list[tuple[int, float]]]:
    """For each row count measured with more than one pool size: (actors, Ray Data rows/s), by actors.

    Only runs of the same size are comparable: fixed start-up costs weigh more in a short run.
    """
    by_rows: dict[int, dict[int, float]] = {}
    for result in results:
        actors = actors_of(result)
        if actors is not None:
            by_rows.setdefault(result["rows"], {})[actors] = rows_per_second(result)["Ray Data"]
    return {rows: sorted(points.items()) for rows, points in sorted(by_rows.items()) if len(points) > 1}


def default_pool(results: list[dict]) -> int | None:
    """The pool size most runs used (the larger one on a tie): the profile's default."""
    counts: dict[int, int] = {}
    for actors in map(actors_of, results):
        if actors is not None:
            counts[actors] = counts.get(actors, 0) + 1
    return max(counts, key=lambda a: (counts[a], a)) if counts else None


def plot_benchmark(results: list[dict]):
    """A matplotlib figure: rows/s per run (and scaling with actors when there are several pool sizes)."""
    import matplotlib.pyplot as plt

    series = scaling_series(results)
    fig, axes = plt.subplots(1, 2 if series else 1, figsize=(14 if series else 8, 5), squeeze=False)
    bars = axes[0][0]
    pool = default_pool(results)
    shown = sorted((r for r in results if actors_of(r) in (pool, None)), key=lambda r: r["rows"]) or results
    colours = {"plain loop": "#8a8a8a", "Ray Data": "#2f6db5", "floor": "#2e7d32"}
    width = 0.8 / len(colours)
    for k, (name, colour) in enumerate(colours.items()):
        values = [rows_per_second(r)[name] for r in shown]
        positions = [i + (k - 1) * width for i in range(len(shown))]
        bars.bar(positions, values, width, label=name, color=colour)
        for x, value in zip(positions, values):
            bars.text(x, value, f"{value:.2g}", ha="center", va="bottom", fontsize=11)
    bars.set_xticks(range(len(shown)))
    bars.set_xticklabels([f"{r['rows']} rows\n{r.get('device', '')}" for r in shown], fontsize=12)
    bars.set_ylabel("rows per second (higher is better)", fontsize=12)
    bars.set_title("Plain loop vs Ray Data vs the floor", fontsize=14)
    top = max(v for r in shown for v in rows_per_second(r).values())
    bars.set_ylim(0, top * 1.3)  # room for the legend above the bars
    bars.legend(fontsize=11, loc="upper center", ncol=3)
    if series:
        line = axes[0][1]
        for rows, points in series.items():
            line.plot([a for a, _ in points], [v for _, v in points], "o-", linewidth=2.5, label=f"{rows} rows")
        line.set_xticks(sorted({a for points in series.values() for a, _ in points}))
        line.set_xlabel("actors per model stage", fontsize=12)
        line.set_ylabel("Ray Data rows per second", fontsize=12)
        line.set_title("Scaling with actors (same rows)", fontsize=14)
        line.legend(fontsize=11)
    fig.tight_layout()
    return fig


def show_benchmark(path: Path | str = BENCHMARKS) -> None:
    """Plot the committed benchmark results, or say in one line how to produce them."""
    results = load_benchmarks(path)
    if not results:
        print(HOW_TO.format(path=Path(path).relative_to(REPO_ROOT) if Path(path).is_relative_to(REPO_ROOT) else path))
        return
    import matplotlib.pyplot as plt

    plot_benchmark(results)
    plt.show()
