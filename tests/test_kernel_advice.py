"""The workshop's kernel after a restart: a cell that needs an earlier one says to run the notebook from the top.

A real kernel of the spec that ``setup.sh`` registers ("Ray Data workshop (.venv)"),
started and restarted through jupyter_client as JupyterLab does, and sent cells
as JupyterLab sends them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from helpers.kernel import EXTENSION_ARGUMENT, KERNEL_NAME, restart_advice
from tests.kernels import ANSI, run_cell, workshop_kernel


def test_the_registered_kernel_loads_the_advice():
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    assert Path(spec.argv[0]).parent == Path(sys.executable).parent
    assert EXTENSION_ARGUMENT in spec.argv, f"run ./setup.sh: {spec.argv}"


def test_only_the_lessons_names_get_advice():
    assert "Run All Cells" in restart_advice("helpers", {})
    assert "Run All Above Selected Cell" in restart_advice("animals", {"helpers": object()})
    assert restart_advice("no_lesson_defines_this", {}) is None
    assert restart_advice("self", {}) is None  # a method's argument in the lessons, never a notebook's name


@pytest.fixture(scope="module")
def kernel():
    with workshop_kernel() as started:
        yield started


def run(client, code: str) -> dict:
    """Run ``code`` as a cell; return its error (ename, evalue, traceback without colours), or {}."""
    content = run_cell(client, code, timeout=60)
    if content["status"] != "error":
        return {}
    return {**content, "traceback": [ANSI.sub("", line) for line in content["traceback"]]}


def test_a_restarted_kernel_says_run_from_the_top(kernel):
    manager, client = kernel
    assert run(client, "import helpers\nlesson_value = 1") == {}
    manager.restart_kernel(now=True)
    client.wait_for_ready(timeout=120)

    error = run(client, "session = helpers.start()")
    assert error["ename"] == "NameError"
    expected = ("NameError: `helpers` is not defined yet: this kernel has not run the notebook's first cells (it "
                "was restarted or has just started). Run the notebook from the top: Run > Run All Cells.")
    assert error["traceback"] == [expected]


def test_a_skipped_cell_says_run_the_cells_above(kernel):
    _, client = kernel
    assert run(client, "import helpers") == {}
    [line] = run(client, "animals.count()")["traceback"]
    assert line.startswith("NameError: `animals` is not defined yet: a cell above this one defines it")
    assert line.endswith("Run the cells above: Run > Run All Above Selected Cell.")


def test_other_name_errors_keep_their_traceback(kernel):
    _, client = kernel
    error = run(client, "def typo():\n    return undefined_here\n\ntypo()")
    assert error["ename"] == "NameError"
    text = "\n".join(error["traceback"])
    assert len(error["traceback"]) > 1 and "return undefined_here" in text and "Run " not in text


def test_the_kernel_spec_is_written_by_setup_sh_s_step(tmp_path):
    """``python -m helpers.kernel`` adds the argument once to the spec ipykernel wrote, and keeps the rest."""
    from helpers.kernel import add_extension, kernel_json

    path = kernel_json(str(tmp_path))
    path.parent.mkdir(parents=True)
    written = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
               "display_name": "Ray Data workshop (.venv)", "language": "python"}
    path.write_text(json.dumps(written))
    add_extension(str(tmp_path))
    add_extension(str(tmp_path))
    assert json.loads(path.read_text()) == {**written, "argv": [*written["argv"], EXTENSION_ARGUMENT]}
