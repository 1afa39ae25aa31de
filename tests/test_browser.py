"""The workshop as a learner uses it: JupyterLab in a real browser, Run All, read the page.

JupyterLab and Chromium are started and driven by :mod:`helpers.commands.jupyterlab_browser`,
the machinery of ``python -m helpers.bench lessons``: the venv's ``jupyter lab`` on 127.0.0.1 with
a fresh token that no command line shows, Debian's ``chromium`` under Playwright. Each notebook is
a copy in a temporary folder, so the outputs and checkpoints of the run never land in the
committed notebooks, and JupyterLab's settings come from another temporary folder.

For each notebook: open it, choose Run > Run All Cells, wait until every code
cell has its execution number, then assert what a learner would look for: no
traceback, the lab check's outcome and, for the image lesson, the picture grid.
Screenshots go to ``build/screenshots/``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from helpers.commands import jupyterlab_browser as browser_lab
from helpers.commands.jupyterlab_browser import NOTEBOOK
from helpers.runtime.settings import REPO_ROOT

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
STDERR_MIME = "application/vnd.jupyter.stderr"


def _chromium_or_skip():
    """Skipped where Chromium is missing, except in CI, where starting it fails with what to install."""
    missing = browser_lab.chromium_missing()
    if missing and not os.environ.get("CI"):
        pytest.skip(missing)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Copies of the notebooks under test, laid out as in the clone."""
    root = tmp_path_factory.mktemp("lab_root")
    for relative in ("notebooks/01_ingest.ipynb", "solutions/03_image_generation.ipynb"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / relative, root / relative)
    return root


@pytest.fixture(scope="module")
def lab(workspace, tmp_path_factory, learners_ray):
    _chromium_or_skip()
    server = browser_lab.Lab(workspace, tmp_path_factory.mktemp("jupyter_home"))
    try:
        # The server took its token from JUPYTER_TOKEN (its API refuses any other), and no command line shows it.
        assert not [line for line in server.command_lines() if server.token in line]
        server.require_kernel()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(lab):
    with browser_lab.chromium() as chromium:
        yield chromium


def _tracebacks(page) -> list[str]:
    texts = page.eval_on_selector_all(
        f'{NOTEBOOK} .jp-OutputArea-output[data-mime-type="{STDERR_MIME}"]',
        "nodes => nodes.map(n => n.textContent)",
    )
    return [text for text in texts if "Traceback" in text or re.search(r"^\w+Error\b", text, re.MULTILINE)]


def run_all(lab: browser_lab.Lab, browser, relative: str, screenshot: str) -> tuple:
    """Open a notebook, Run All Cells from the menu, wait for every cell; return (page, saved notebook)."""
    page = browser_lab.new_page(browser)
    browser_lab.open_notebook(page, lab, relative)
    count = len(browser_lab.prompts(page))
    try:
        done = browser_lab.run_all(page)
    except browser_lab.LabError as err:
        page.screenshot(path=str(SCREENSHOTS / f"timeout-{screenshot}"), full_page=False)
        pytest.fail(f"{relative}: {err}\n{lab.log()}")
    if not done.complete:
        page.screenshot(path=str(SCREENSHOTS / f"failed-{screenshot}"), full_page=False)
        pytest.fail(f"{relative}: a cell failed:\n{(_tracebacks(page) or [''])[0][-3000:]}")
    assert len(done.prompts) == count
    return page, browser_lab.save(page, lab.root / relative)


def _lab_outcome_texts(page) -> list[str]:
    """What the cells that call ``lab.check(...)`` showed, as a learner reads them."""
    return page.eval_on_selector_all(
        f"{NOTEBOOK} .jp-CodeCell",
        """cells => cells
            .filter(c => c.querySelector('.jp-InputArea-editor').textContent.includes('lab.check('))
            .map(c => (c.querySelector('.jp-OutputArea') || {textContent: ''}).textContent)""",
    )


def _scroll_to_outputs_of(page, code: str):
    """Scroll the notebook so that the cell whose code contains ``code`` shows its outputs."""
    page.eval_on_selector_all(
        f"{NOTEBOOK} .jp-CodeCell",
        """(cells, code) => {
            const cell = cells.find(c => c.querySelector('.jp-InputArea-editor').textContent.includes(code));
            cell.scrollIntoView({block: 'start'});
        }""",
        code,
    )
    page.wait_for_timeout(500)


def test_student_ingest_notebook_runs_in_jupyterlab(lab, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page, notebook = run_all(lab, browser, "notebooks/01_ingest.ipynb", "01_ingest.png")
    try:
        assert _tracebacks(page) == []
        assert browser_lab.cell_errors(notebook) == []
        outcomes = _lab_outcome_texts(page)
        assert outcomes and all("Not attempted" in text for text in outcomes), outcomes
        _scroll_to_outputs_of(page, "lab.check(")
        page.screenshot(path=str(SCREENSHOTS / "01_ingest.png"))
    finally:
        page.close()
        lab.shutdown_sessions()


def test_image_generation_solution_runs_in_jupyterlab(lab, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page, notebook = run_all(lab, browser, "solutions/03_image_generation.ipynb", "03_image_generation.png")
    try:
        assert _tracebacks(page) == []
        assert browser_lab.cell_errors(notebook) == []
        outcomes = _lab_outcome_texts(page)
        assert outcomes and all("Correct" in text and "Incorrect" not in text for text in outcomes), outcomes
        grid = page.locator(f"{NOTEBOOK} .jp-CodeCell:has-text('helpers.show_images') .jp-RenderedImage img")
        assert grid.count() >= 1, "the image grid is not shown as an image"
        assert grid.first.evaluate("img => img.naturalWidth > 400 && img.complete")
        _scroll_to_outputs_of(page, "helpers.show_images(")
        page.screenshot(path=str(SCREENSHOTS / "03_image_generation.png"))
    finally:
        page.close()
        lab.shutdown_sessions()
