"""The benchmark plot: reads helpers.commands.bench's JSON lines, draws rows/s and scaling; no results, one line.

The results below are made up for the test (shapes only); real figures live in
docs/benchmarks.json, written by ``python -m helpers.bench``.
"""

from __future__ import annotations

import json

import matplotlib
import pytest

from helpers.show.benchmark import actors_of, load_benchmarks, plot_benchmark, rows_per_second, show_benchmark

matplotlib.use("Agg")


def result(rows=64, naive=40.0, ray=20.0, floor=10.0, actors=None) -> dict:
    line = {"rows": rows, "naive_seconds": naive, "ray_seconds": ray, "floor_seconds": floor, "device": "cpu"}
    if actors is not None:
        line["actors"] = actors
    return line


def test_rows_per_second_of_the_three_ways():
    assert rows_per_second(result()) == {"plain loop": 1.6, "Ray Data": 3.2, "floor": 6.4}


def test_actors_as_int_or_per_stage_dict():
    assert actors_of(result(actors=3)) == 3
    assert actors_of(result(actors={"llm": 2, "image": 4})) == 4
    assert actors_of(result()) is None


def test_one_panel_without_scaling_runs():
    fig = plot_benchmark([result(actors={"llm": 2, "image": 2})])
    [ax] = fig.axes
    assert len(ax.patches) == 3
    assert sorted(p.get_height() for p in ax.patches) == pytest.approx([1.6, 3.2, 6.4])


def test_scaling_panel_when_pool_sizes_differ():
    fig = plot_benchmark([result(actors=1, ray=30.0), result(actors=2), result(actors=4, ray=12.0)])
    bars, scaling = fig.axes
    assert len(bars.patches) == 3, "the bars show the default (smallest) pool's run"
    [line] = scaling.get_lines()
    assert list(line.get_xdata()) == [1, 2, 4]
    assert list(line.get_ydata()) == pytest.approx([64 / 30, 3.2, 64 / 12])


def test_missing_file_prints_how_to_produce_it(tmp_path, capsys):
    show_benchmark(tmp_path / "benchmarks.json")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "python -m helpers.bench --rows" in out


def test_a_line_without_its_figures_is_an_error(tmp_path):
    path = tmp_path / "benchmarks.json"
    path.write_text(json.dumps([{"rows": 4, "naive_seconds": 1}]))
    with pytest.raises(ValueError, match="ray_seconds"):
        load_benchmarks(path)


def test_scaling_compares_runs_of_the_same_size_and_bars_show_the_default_pool():
    from helpers.show.benchmark import default_pool, scaling_series

    def run(rows, actors, ray_seconds):
        return {"rows": rows, "naive_seconds": 10.0, "ray_seconds": ray_seconds, "floor_seconds": 5.0,
                "actors": {"llm": actors, "image": actors}}

    results = [run(64, 2, 32.0), run(64, 1, 64.0), run(256, 2, 128.0)]
    assert scaling_series(results) == {64: [(1, 1.0), (2, 2.0)]}  # the 256-row run has no partner
    assert default_pool(results) == 2
