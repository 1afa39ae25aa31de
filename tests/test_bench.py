"""``python -m helpers.bench`` at a tiny size: the JSON line's schema, no timings.

Timings are the benchmark's business (docs/benchmarks.md); here only what must
hold on any machine: both runs did the work (the Ray run fails unless it wrote
every row) and every key is there with the right type.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from helpers.runtime.settings import REPO_ROOT

ROWS = 4
NUMBERS = ("naive_seconds", "ray_seconds", "floor_seconds", "speedup", "efficiency", "peak_rss_gb",
           "ray_start_seconds")


@pytest.fixture(scope="module")
def result():
    """A whole bench run at 4 rows, with one actor per model stage (``--actors 1``: two model
    loads in the Ray run instead of the profile's four; the line's schema is the same)."""
    env = {**os.environ, "WORKSHOP_PROFILE": "cpu"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-m", "helpers.bench", "--rows", str(ROWS), "--actors", "1"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_last_line_has_every_key(result):
    assert result["rows"] == ROWS
    for key in NUMBERS:
        assert isinstance(result[key], (int, float)) and result[key] > 0, (key, result[key])
    assert result["device"] == "cpu"
    assert result["stages"] == ["enhance", "generate"]
    assert result["actors"] == {"llm": 1, "image": 1}
    assert len(result["load_avg"]) == 3 and result["machine"]["cores"] >= 1


def test_a_bad_stage_is_refused_before_any_work():
    done = subprocess.run([sys.executable, "-m", "helpers.bench", "--stages", "paint"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--stages" in done.stderr


@pytest.mark.slow
def test_the_pipeline_benchmark_weighs_the_commands_driver():
    """``python -m helpers.bench pipeline`` on two tiny runs: the schema of its line (figures: docs/benchmarks.md)."""
    import os

    env = {**os.environ, "WORKSHOP_PROFILE": "cpu", "WORKSHOP_IMAGE_ACTORS": "1"}
    done = subprocess.run([sys.executable, "-m", "helpers.bench", "pipeline", "--rows", "2,4", "--image-size", "32"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert [run["rows"] for run in line["runs"]] == [2, 4] and line["image_size"] == 32
    for run in line["runs"]:
        assert run["exit"] == 0 and run["driver_peak_mb"] > 0 and run["seconds"] > 0, run
    assert isinstance(line["growth"], float) and len(line["load_avg"]) == 3


def test_the_pipeline_benchmark_refuses_bad_row_counts_before_any_work():
    done = subprocess.run([sys.executable, "-m", "helpers.bench", "pipeline", "--rows", "200,many"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--rows takes whole numbers" in done.stderr


def _skip_without_chromium():
    """Fail where Chromium is missing, naming the install and the way to leave the browser tests out.

    Not a skip: a green run of the README's test command has driven JupyterLab in a browser.
    """
    from helpers.commands.jupyterlab_browser import chromium_missing

    missing = chromium_missing()
    if missing:
        pytest.fail(f"{missing}; install it (apt-get install chromium), or leave the browser tests out: "
                    "pytest -m 'not browser'")


def _processes_of_the_browser_driver() -> list[str]:
    """JupyterLab and its kernels name the driver's temporary folder on their command lines."""
    from helpers.commands.lessons_bench import TEMP_PREFIX

    lines = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if f"/{TEMP_PREFIX}" in line:
            lines.append(line)
    return lines


@pytest.mark.browser
@pytest.mark.notebooks
def test_the_lessons_benchmark_runs_a_lesson_in_jupyterlab_as_a_learner_does(learners_ray):
    """``python -m helpers.bench lessons`` on lesson 00 only, in JupyterLab and Chromium: the line's schema;
    JupyterLab, its kernel and the shared Ray the lesson started are stopped, and the workshop's Ray of a
    learner's own open lessons (started here first) is left running, its outputs untouched."""
    from helpers.runtime import shared_ray
    from helpers.runtime.settings import resolve_storage

    _skip_without_chromium()
    subprocess.run([sys.executable, "-c", "import helpers; helpers.start(quiet=True)"], cwd=REPO_ROOT,
                   env={**os.environ, "WORKSHOP_RAY": "shared"}, check=True, capture_output=True, timeout=300)
    learners = shared_ray.running(learners_ray)
    assert learners is not None
    bench_dirs = set(Path("/tmp").glob("rdwb*"))
    done = subprocess.run([sys.executable, "-m", "helpers.bench", "lessons", "--only", "00"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    [lesson] = line["lessons"]
    assert line["driver"] == "browser" and line["set"] == "notebooks"
    assert lesson["lesson"] == "notebooks/00_welcome.ipynb" and "error" not in lesson, lesson
    for key in ("open_s", "seconds", "first_output_s"):
        assert isinstance(lesson[key], float) and lesson[key] > 0, (key, lesson[key])
    assert lesson["first_output_s"] <= lesson["seconds"] == line["total_s"]
    assert line["open_total_s"] == lesson["open_s"]
    assert line["failed"] == [] and line["slowest"] == lesson["lesson"]
    for key in ("memory_before_gb", "memory_with_lab_gb", "memory_after_last_gb", "memory_added_gb"):
        assert isinstance(line[key], float), (key, line[key])
    assert line["memory_after_last_gb"] == lesson["memory_in_use_gb"]
    assert len(line["load_before"]) == len(line["load_after"]) == 3 and line["machine"]["cpus"] >= 1
    assert shared_ray.running(learners_ray) == learners, "the benchmark stopped a learner's workshop Ray"
    assert set(Path("/tmp").glob("rdwb*")) == bench_dirs, "the benchmark left its own workshop Ray's folder"
    assert not list((resolve_storage() / "outputs").glob("lessons-bench-*")), "the benchmark left its outputs"
    assert _processes_of_the_browser_driver() == []


def _two_lessons(folder: Path) -> Path:
    """Two small lessons in the workshop's kernel: one prints, the other raises in its second cell."""
    import nbformat

    from helpers.commands.notebooks import KERNELSPEC

    folder.mkdir()
    for name, cells in {"a_prints.ipynb": ["import time", "time.sleep(0.5)\nprint('first output')"],
                        "b_raises.ipynb": ["x = 1", "raise ValueError('no such animal\\nsee the list')", "x"]}.items():
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in cells])
        notebook.metadata["kernelspec"] = KERNELSPEC
        nbformat.write(notebook, folder / name)
    return folder


@pytest.mark.parametrize("driver", [pytest.param("browser", marks=pytest.mark.browser), "kernels"])
def test_each_driver_times_a_lesson_and_names_a_cells_error_by_its_first_line(driver, tmp_path):
    from helpers.commands import lessons_bench

    lessons = _two_lessons(tmp_path / "lessons")
    if driver == "browser":
        _skip_without_chromium()
        running = lessons_bench.in_browser(lessons, {})
    else:
        running = lessons_bench.in_kernels(keep=False)
    with running as run_lesson:
        printed = run_lesson(lessons / "a_prints.ipynb")
        raised = run_lesson(lessons / "b_raises.ipynb")
    assert "error" not in printed, printed
    for key in ("open_s", "seconds", "first_output_s"):
        assert isinstance(printed[key], float), (key, printed)
    assert raised["error"] == "ValueError: no such animal", raised
    assert _processes_of_the_browser_driver() == []


def test_the_lessons_benchmark_refuses_an_unknown_lesson():
    done = subprocess.run([sys.executable, "-m", "helpers.bench", "lessons", "--only", "99"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "no lesson in notebooks/ starts with 99" in done.stderr
