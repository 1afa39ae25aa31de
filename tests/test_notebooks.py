"""The curriculum runs: solutions end to end, student copies to the end with labs untouched.

Each notebook runs in a fresh kernel of the one its metadata names,
``ray-data-workshop`` (the venv's Python, registered by setup.sh), in its own
folder, exactly as "Run All" in JupyterLab runs it.

Nothing is prepared for them that a learner would not have (see the
``learners_ray`` fixture): the first notebook's ``helpers.start()`` starts the
Ray the lessons share, and the next ones join it, so the table of notebook
times that the suite prints is the learner's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.commands.notebooks import KERNELSPEC, run_notebooks
from helpers.runtime.settings import REPO_ROOT
from tests.conftest import NOTEBOOK_TIME
from tests.scheduling import wait_for_the_other_workers

pytestmark = pytest.mark.notebooks

SOLUTIONS = sorted((REPO_ROOT / "solutions").glob("*.ipynb"))
STUDENT = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
EXECUTED = REPO_ROOT / "build" / "executed"


@pytest.fixture(scope="module", autouse=True)
def alone(request):
    """Nothing else runs beside the notebooks, so that their times are the learner's.

    Under pytest-xdist the scheduler (``tests/scheduling.py``) gives this module
    to a worker once every other module has been handed out, and shuts the
    other workers down; here their last tests and their Rays' stop are awaited.
    """
    running = wait_for_the_other_workers(request.config, timeout_s=900)
    assert not running, (f"test workers {running} still run beside the notebooks: run the suite with its own "
                         "scheduling (tests/scheduling.py) or with -n 0")


def _texts(cell) -> str:
    """Everything a cell showed: streams, plain text, markdown and HTML.

    A saved notebook stores multi-line text as a list of lines (a cell that
    also printed Ray's log lines, say), so each value is joined first.
    """
    parts = []
    for output in cell.get("outputs", []):
        values = [output.get("text", "")]
        values += [output.get("data", {}).get(key, "") for key in ("text/plain", "text/markdown", "text/html")]
        parts += ["".join(value) if isinstance(value, list) else str(value) for value in values]
    return "\n".join(parts)


def _execute(path: Path, record_property):
    [result] = run_notebooks([path], EXECUTED, html=False, timeout=300)
    record_property(NOTEBOOK_TIME, (f"{path.parent.name}/{path.name}", result.seconds))
    assert result.ok, f"{path.name} failed: {result.error}"
    return json.loads(result.executed.read_text())


def test_the_curriculum_is_complete():
    names = [p.stem for p in SOLUTIONS]
    for expected in ("00_welcome", "01_ingest", "02_transform", "03_image_generation", "04_join",
                     "05_llm_enhancement", "06_parameterization", "07_under_the_hood"):
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
def test_solution_runs_end_to_end(path, learners_ray, record_property):
    nb = _execute(path, record_property)
    checks = [c for c in nb["cells"] if c["cell_type"] == "code" and "lab.check(" in "".join(c["source"])]
    for cell in checks:
        text = _texts(cell)
        assert "Correct" in text and "Incorrect" not in text, f"a lab check in {path.name} says: {text[:300]}"


@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.name)
def test_student_notebook_runs_and_labs_are_not_attempted(path, learners_ray, record_property):
    nb = _execute(path, record_property)
    checks = [c for c in nb["cells"] if c["cell_type"] == "code" and "lab.check(" in "".join(c["source"])]
    if path.stem != "00_welcome":
        assert checks, f"{path.name} has no lab"
    for cell in checks:
        text = _texts(cell)
        assert "Not attempted" in text, f"a lab in {path.name} did not say 'Not attempted': {text[:300]}"


def test_a_check_cell_that_also_printed_log_lines_is_read_whole():
    """Saved notebooks keep multi-line streams as lists of lines; the verdict is still found."""
    cell = {"outputs": [
        {"output_type": "stream", "name": "stderr", "text": ["(raylet) disk is over 95% full\n", "again\n"]},
        {"output_type": "display_data", "data": {"text/plain": ["✔ Correct: well done"]}},
    ]}
    text = _texts(cell)
    assert "Correct" in text and "disk is over 95% full\nagain" in text
