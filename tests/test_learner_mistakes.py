"""A careless learner's mistakes end in one line that says what to do.

* a lesson opened on a storage root without the data or the models
  (:mod:`helpers.runtime.readiness`): every lesson's first cell, in a real
  kernel told its notebook's name as Jupyter tells it, says what is missing
  and the same command to run, before any Ray starts;
* ``WORKSHOP_*`` pool sizes that cannot fit the cluster
  (:func:`helpers.runtime.settings_fit.check_settings_fit`): ``helpers.start()``
  refuses them, naming the variable and a value that fits;
* ``import helpers`` from a Python that is not the workshop's: which Python
  and which kernel to use.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.commands.notebooks import kernel_env
from helpers.errors import NotReadyError, SettingsError
from helpers.runtime import shared_ray
from helpers.runtime.readiness import LESSON_NEEDS, check_ready, needs
from helpers.runtime.settings import REPO_ROOT, TINY_IMAGE_MODEL, load_settings
from helpers.runtime.settings_fit import check_settings_fit
from helpers.runtime.stage_request import NodeCapacity
from tests.kernels import ANSI, run_cell, workshop_kernel

STUDENT = {path.name[:2]: path for path in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
TWO_GPUS = [NodeCapacity(cpus=8, gpus=2)]


@pytest.fixture
def empty_storage(tmp_path, monkeypatch):
    """A storage root on which ./setup.sh never ran, for this process and the kernels it starts."""
    storage = tmp_path / "storage"
    storage.mkdir()
    for name in [name for name in os.environ if name.startswith("WORKSHOP_")] + ["RAY_ADDRESS", "JPY_SESSION_NAME"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKSHOP_STORAGE", str(storage))
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    return storage


# ---------------------------------------------------------------- data and models on storage


def test_what_each_lesson_reads(empty_storage):
    settings = load_settings()
    assert needs(settings, "01") == []  # lesson 01 copies the data itself
    assert [need.path.name for need in needs(settings, "02")] == ["animals.csv"]
    assert [need.path.name for need in needs(settings, "04")] == ["animals.csv", "outfits.csv", TINY_IMAGE_MODEL]
    assert needs(settings, None) == needs(settings, "00") == needs(settings, "05")  # a notebook of no lesson: all
    assert not any(need.ready for need in needs(settings, None))


def test_ready_storage_passes_and_half_a_model_is_named(empty_storage):
    shutil.copytree(REPO_ROOT / "data", empty_storage / "data")
    settings = load_settings()
    check_ready(settings, "02")
    (settings.models_dir / TINY_IMAGE_MODEL / "unet").mkdir(parents=True)
    with pytest.raises(NotReadyError) as raised:
        check_ready(settings, "03")
    message = str(raised.value)
    model = settings.models_dir / TINY_IMAGE_MODEL
    assert f"image model {model} (missing model_index.json, unet/config.json" in message
    assert "animals.csv" not in message
    assert f"Run `WORKSHOP_STORAGE={empty_storage} ./setup.sh` in {REPO_ROOT}" in message


def test_a_model_folder_the_gpu_nodes_have_need_not_be_on_the_drivers_disk(empty_storage):
    """On a cluster the models load on the GPU nodes: what they all reported complete is not asked of the head."""
    shutil.copytree(REPO_ROOT / "data", empty_storage / "data")
    settings = load_settings()
    with pytest.raises(NotReadyError, match="image model"):
        check_ready(settings, "03")
    check_ready(settings, "03", loaded_elsewhere=frozenset({settings.image.model}))
    with pytest.raises(NotReadyError, match="LLM"):
        check_ready(settings, "05", loaded_elsewhere=frozenset({settings.image.model}))


def test_only_a_stage_on_gpus_loads_its_model_on_the_gpu_nodes_alone(empty_storage, monkeypatch):
    """WORKSHOP_IMAGE_GPUS=0: the image actors may run on the head, so its disk must hold their model."""
    from helpers.runtime.cluster import loaded_on_gpu_nodes
    from helpers.runtime.probe import ModelFolder, NodeReport, ProfileDecision

    settings = load_settings(cluster_gpus=2)
    complete = (ModelFolder(settings.image.model, "image"), ModelFolder(settings.llm.model, "llm"))
    decision = ProfileDecision("cpu", "test", (NodeReport("a" * 56, "10.0.0.3", models=complete),))
    assert loaded_on_gpu_nodes(settings, decision) == {settings.image.model, settings.llm.model}
    monkeypatch.setenv("WORKSHOP_IMAGE_GPUS", "0")
    assert loaded_on_gpu_nodes(load_settings(cluster_gpus=2), decision) == {settings.llm.model}
    assert loaded_on_gpu_nodes(settings, ProfileDecision("cpu", "no GPU node answered")) == frozenset()


def test_a_model_folder_setup_does_not_make_names_its_variable(empty_storage, monkeypatch, tmp_path):
    shutil.copytree(REPO_ROOT / "data", empty_storage / "data")
    monkeypatch.setenv("WORKSHOP_IMAGE_MODEL", str(tmp_path / "my-model"))
    with pytest.raises(NotReadyError, match=rf"WORKSHOP_IMAGE_MODEL={tmp_path / 'my-model'} is not a complete model"):
        check_ready(load_settings(), "03")


def _kernel_error(lesson: str, ray_dir: Path) -> tuple[dict, bool]:
    """The error of the lesson's first code cell in a fresh workshop kernel, and whether Ray was started."""
    first_cell = next(cell for cell in _code_cells(STUDENT[lesson]) if "helpers.start()" in cell)
    env = {**kernel_env(STUDENT[lesson]), "WORKSHOP_RAY_DIR": str(ray_dir)}
    with workshop_kernel(env, cwd=str(STUDENT[lesson].parent)) as (_, client):
        reply = run_cell(client, first_cell, timeout=120)
        started = run_cell(client, "import ray\nassert not ray.is_initialized()", timeout=60)["status"] != "ok"
    return reply, started


def _code_cells(path: Path) -> list[str]:
    import json

    return ["".join(cell["source"]) for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]


@pytest.mark.notebooks
def test_every_lesson_says_what_to_run_before_ray_starts(empty_storage, tmp_path):
    fixes = {}
    for lesson in sorted(lesson for lesson, wanted in LESSON_NEEDS.items() if wanted):
        reply, started = _kernel_error(lesson, tmp_path / "ray")
        assert reply["status"] == "error" and reply["ename"] == "NotReadyError", (lesson, reply)
        [line] = [ANSI.sub("", text) for text in reply["traceback"]]
        assert line.startswith(f"NotReadyError: Lesson {lesson} needs what ./setup.sh puts on the storage root"), line
        assert f"{empty_storage}/data/animals.csv (not there)" in line
        assert not started and shared_ray.running(tmp_path / "ray") is None, f"lesson {lesson} started Ray"
        fixes[lesson] = line[line.index("Run `"):]
    assert len(set(fixes.values())) == 1, fixes  # the same fix everywhere
    assert fixes["03"] == f"Run `WORKSHOP_STORAGE={empty_storage} ./setup.sh` in {REPO_ROOT} (in JupyterLab: " \
                          "File > New > Terminal), then run this cell again."


# ---------------------------------------------------------------- pool sizes that cannot fit


@pytest.mark.parametrize(
    ("variable", "value", "fix"),
    [
        ("WORKSHOP_IMAGE_ACTORS", "5", "Use WORKSHOP_IMAGE_ACTORS=2 or fewer."),
        ("WORKSHOP_IMAGE_GPUS", "3", "Use WORKSHOP_IMAGE_GPUS=1 or less."),
        ("WORKSHOP_LLM_ACTORS", "3", "Use WORKSHOP_LLM_ACTORS=2 or fewer."),
        ("WORKSHOP_ACTOR_CPUS", "4", "Use WORKSHOP_ACTOR_CPUS=1 or less."),
    ],
)
def test_a_pool_setting_that_cannot_fit_is_named_with_a_value_that_fits(empty_storage, monkeypatch, variable,
                                                                        value, fix):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        check_settings_fit(load_settings(cluster_gpus=2), TWO_GPUS)
    message = str(raised.value)
    assert message.startswith(f"{variable}={value} cannot fit this cluster: lessons 0") and message.endswith(fix)
    assert "2 GPUs and 8 CPUs over 1 node(s)" in message


def test_the_lessons_settings_fit_their_clusters(empty_storage):
    check_settings_fit(load_settings(cluster_gpus=2), TWO_GPUS)
    check_settings_fit(load_settings(cluster_gpus=1), [NodeCapacity(cpus=8, gpus=1)])  # requests halved
    workers = [NodeCapacity(cpus=2, gpus=0), NodeCapacity(cpus=2, gpus=1), NodeCapacity(cpus=2, gpus=1)]
    check_settings_fit(load_settings(cluster_gpus=2), workers)


def test_an_llm_share_above_the_image_stages_is_refused(empty_storage, monkeypatch):
    monkeypatch.setenv("WORKSHOP_IMAGE_GPUS", "0.5")
    monkeypatch.setenv("WORKSHOP_LLM_GPUS", "0.6")
    with pytest.raises(SettingsError, match=r"^WORKSHOP_LLM_GPUS=0.6 is more than WORKSHOP_IMAGE_GPUS=0.5"):
        check_settings_fit(load_settings(cluster_gpus=2), TWO_GPUS)


def test_an_llm_share_equal_to_the_image_stages_is_refused_as_it_leaves_the_images_no_gpu(empty_storage, monkeypatch):
    monkeypatch.setenv("WORKSHOP_IMAGE_GPUS", "0.5")
    monkeypatch.setenv("WORKSHOP_LLM_GPUS", "0.5")
    expected = r"^WORKSHOP_LLM_GPUS=0.5 equals WORKSHOP_IMAGE_GPUS=0.5: .* leave it no GPU"
    with pytest.raises(SettingsError, match=expected):
        check_settings_fit(load_settings(cluster_gpus=2), TWO_GPUS)


def test_image_actors_without_a_gpu_ask_for_llm_actors_without_one_too(empty_storage, monkeypatch):
    monkeypatch.setenv("WORKSHOP_IMAGE_GPUS", "0")
    monkeypatch.delenv("WORKSHOP_LLM_GPUS", raising=False)
    with pytest.raises(SettingsError, match=r"^WORKSHOP_IMAGE_GPUS=0 .* set WORKSHOP_LLM_GPUS=0 as well"):
        check_settings_fit(load_settings(cluster_gpus=2), TWO_GPUS)
    monkeypatch.setenv("WORKSHOP_LLM_GPUS", "0")
    check_settings_fit(load_settings(cluster_gpus=2), TWO_GPUS)


def test_no_gpus_at_all_says_how_to_get_some(empty_storage):
    with pytest.raises(SettingsError, match="Give it more GPUs"):
        check_settings_fit(load_settings(cluster_gpus=0), [NodeCapacity(cpus=8, gpus=0)])


def _python(*args: str, env: dict | None = None, executable: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.mark.slow
def test_start_refuses_image_actors_that_cannot_fit(empty_storage, tmp_path):
    """WORKSHOP_IMAGE_ACTORS=5 on the CPU profile's 2 logical GPUs, in a Ray of the script's own."""
    env = {**os.environ, "WORKSHOP_IMAGE_ACTORS": "5", "WORKSHOP_RAY": "process", "WORKSHOP_RAY_DIR": str(tmp_path)}
    done = _python("-c", "import helpers\nhelpers.start()", env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "helpers.errors.SettingsError: WORKSHOP_IMAGE_ACTORS=5 cannot fit this cluster: lessons 03-04 run 5 image "
        "actor(s) of 1 GPU and 1 CPU each at once, and this cluster has 2 GPUs and 8 CPUs over 1 node(s) (one CPU "
        "stays for the read tasks). Use WORKSHOP_IMAGE_ACTORS=2 or fewer."
    )
    assert "Ray:" not in done.stdout  # no start table: the session was refused


# ---------------------------------------------------------------- the wrong Python


def test_a_python_without_the_packages_is_told_which_to_use():
    """The Python this environment was made from has no Ray (pip installed it into .venv only)."""
    base = getattr(sys, "_base_executable", None)
    has_ray = _python("-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('ray') is None)",
                      executable=base).returncode == 0
    if not base or Path(base).parent == Path(sys.executable).parent or has_ray:
        pytest.skip("no Python without Ray here")
    done = _python("-c", "import helpers", executable=base)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"helpers.errors.WorkshopPythonError: {base} has no module named 'ray', which the workshop needs; use the "
        f"workshop's, {REPO_ROOT / '.venv' / 'bin' / 'python'}: in JupyterLab the kernel \"Ray Data workshop (.venv)\" "
        "(Kernel > Change Kernel), in a terminal that Python itself"
    )


def test_the_workshop_python_without_its_packages_is_told_to_run_setup_again():
    done = _python("-S", "-c", "import helpers")  # -S: no site-packages, as if pip had not run
    assert done.stderr.strip().splitlines()[-1].endswith(
        f"has no module named 'ray', which the workshop needs; its packages are incomplete: run ./setup.sh in "
        f"{REPO_ROOT} again"
    )


def test_a_package_missing_on_first_use_is_one_line_too():
    code = "import sys\nsys.modules['numpy'] = None  # as if numpy were not installed\nimport helpers\nhelpers.ImageGen"
    done = _python("-c", code)
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"helpers.errors.WorkshopPythonError: {sys.executable} has no module named 'numpy'"
    )
    assert importlib.util.find_spec("numpy") is not None
