"""``python -m helpers.bench`` at a tiny size: the JSON line's schema, no timings.

Timings are the benchmark's business (docs/benchmarks.md); here only what must
hold on any machine: both runs did the work (the Ray run fails unless it wrote
every row) and every key is there with the right type.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers.runtime.settings import REPO_ROOT

ROWS = 4
NUMBERS = ("naive_seconds", "ray_seconds", "floor_seconds", "speedup", "efficiency", "peak_rss_gb",
           "ray_start_seconds")


@pytest.fixture(scope="module")
def result():
    import os

    env = {**os.environ, "WORKSHOP_PROFILE": "cpu"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-m", "helpers.bench", "--rows", str(ROWS)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_last_line_has_every_key(result):
    assert result["rows"] == ROWS
    for key in NUMBERS:
        assert isinstance(result[key], (int, float)) and result[key] > 0, (key, result[key])
    assert result["device"] == "cpu"
    assert result["stages"] == ["enhance", "generate"]
    assert set(result["actors"]) == {"llm", "image"}
    assert len(result["load_avg"]) == 3 and result["machine"]["cores"] >= 1


def test_a_bad_stage_is_refused_before_any_work():
    done = subprocess.run([sys.executable, "-m", "helpers.bench", "--stages", "paint"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--stages" in done.stderr


@pytest.mark.notebooks
def test_the_lessons_benchmark_runs_a_lesson_as_a_learner_does(learners_ray):
    """``python -m helpers.bench lessons`` on lesson 00 only: the line's schema; the shared Ray it used is stopped."""
    from helpers.runtime import shared_ray

    done = subprocess.run([sys.executable, "-m", "helpers.bench", "lessons", "--only", "00"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    [lesson] = line["lessons"]
    assert lesson["lesson"] == "notebooks/00_welcome.ipynb" and "error" not in lesson, lesson
    assert 0 < lesson["first_output_s"] <= lesson["seconds"] == line["total_s"]
    assert line["failed"] == [] and line["slowest"] == lesson["lesson"]
    for key in ("memory_before_gb", "memory_after_last_gb", "memory_added_gb"):
        assert isinstance(line[key], float), (key, line[key])
    assert shared_ray.running(learners_ray) is None, "the benchmark left the workshop's Ray running"


def test_the_lessons_benchmark_refuses_an_unknown_lesson():
    done = subprocess.run([sys.executable, "-m", "helpers.bench", "lessons", "--only", "99"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "no lesson in notebooks/ starts with 99" in done.stderr
