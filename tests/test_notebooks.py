"""The curriculum runs: solutions end to end, student copies to the end with labs untouched.

Each notebook runs in a fresh kernel of the one its metadata names,
``ray-data-workshop`` (the venv's Python, registered by setup.sh), in its own
folder, exactly as "Run All" in JupyterLab runs it.

All of them join one Ray cluster of the lessons' shape (8 logical CPUs, 2
logical GPUs), started once for this module, as notebooks on a shared
workshop machine do: ``helpers.start()`` then connects in a second instead of
starting and stopping a Ray of its own per notebook (about 9 s each on 2 cores).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.commands.notebooks import KERNELSPEC, run_notebooks
from helpers.runtime.cluster import LOGICAL_CPUS_FOR_LESSONS
from helpers.runtime.settings import LESSON_GPUS, REPO_ROOT
from tests.conftest import NOTEBOOK_SECONDS
from tests.local_cluster import local_cluster

pytestmark = pytest.mark.notebooks

SOLUTIONS = sorted((REPO_ROOT / "solutions").glob("*.ipynb"))
STUDENT = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
EXECUTED = REPO_ROOT / "build" / "executed"


def _texts(cell) -> str:
    """Everything a cell showed: streams, plain text, markdown and HTML."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        for key in ("text/plain", "text/markdown", "text/html"):
            parts.append(str(output.get("data", {}).get(key, "")))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def lesson_cluster():
    """One cluster for every notebook of this module; kernels inherit the variables that join it."""
    head = [f"--num-cpus={LOGICAL_CPUS_FOR_LESSONS}", f"--num-gpus={LESSON_GPUS}"]
    with local_cluster(head) as cluster, pytest.MonkeyPatch.context() as env:
        for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
            env.setenv(name, cluster.env[name])
        # The cluster was started from this clone with this environment: nothing to ship.
        env.setenv("WORKSHOP_CLUSTER_HAS_HELPERS", "1")
        yield cluster


def _execute(path: Path):
    [result] = run_notebooks([path], EXECUTED, html=False, timeout=300)
    NOTEBOOK_SECONDS[f"{path.parent.name}/{path.name}"] = result.seconds
    assert result.ok, f"{path.name} failed: {result.error}"
    return json.loads(result.executed.read_text())


def test_the_curriculum_is_complete():
    names = [p.stem for p in SOLUTIONS]
    for expected in ("00_welcome", "01_ingest", "02_transform", "03_image_generation", "04_join",
                     "05_llm_enhancement", "06_parameterization"):
        assert expected in names
    assert [p.name for p in STUDENT] == [p.name for p in SOLUTIONS]


def test_student_notebooks_are_in_sync_with_solutions():
    done = subprocess.run([sys.executable, "-m", "helpers.notebooks", "build", "--check"],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", SOLUTIONS + STUDENT, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_notebooks_have_no_outputs_and_the_workshop_kernel(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"] == KERNELSPEC
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None, f"{path.name} carries outputs"


def test_the_workshop_kernel_runs_this_environment():
    """The kernel the notebooks name is registered, and starts this Python (setup.sh's ``ipykernel install``)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNELSPEC["name"])
    except NoSuchKernel:
        pytest.fail(f"no Jupyter kernel named {KERNELSPEC['name']!r}: run ./setup.sh to register it")
    assert spec.display_name == KERNELSPEC["display_name"]
    assert Path(spec.argv[0]).parent.resolve() == Path(sys.executable).parent.resolve(), spec.argv


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_runs_end_to_end(path, lesson_cluster):
    nb = _execute(path)
    checks = [c for c in nb["cells"] if c["cell_type"] == "code" and "lab.check(" in "".join(c["source"])]
    for cell in checks:
        text = _texts(cell)
        assert "Correct" in text and "Incorrect" not in text, f"a lab check in {path.name} says: {text[:300]}"


@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.name)
def test_student_notebook_runs_and_labs_are_not_attempted(path, lesson_cluster):
    nb = _execute(path)
    checks = [c for c in nb["cells"] if c["cell_type"] == "code" and "lab.check(" in "".join(c["source"])]
    if path.stem != "00_welcome":
        assert checks, f"{path.name} has no lab"
    for cell in checks:
        text = _texts(cell)
        assert "Not attempted" in text, f"a lab in {path.name} did not say 'Not attempted': {text[:300]}"
