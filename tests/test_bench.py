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
