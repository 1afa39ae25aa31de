"""The workshop as a learner uses it: JupyterLab in a real browser, Run All, read the page.

JupyterLab and Chromium are started and driven by :mod:`helpers.commands.jupyterlab_browser`,
the machinery of ``python -m helpers.bench lessons``: the venv's ``jupyter lab`` on 127.0.0.1 with
a fresh token that no command line shows, Debian's ``chromium`` under Playwright. Each notebook is
a copy in a temporary folder, so the outputs and checkpoints of the run never land in the
committed notebooks, and JupyterLab's settings come from another temporary folder.

For each notebook: open it, choose Run > Run All Cells, wait until every code
cell has its execution number, then assert what a learner would look for: no
traceback, the lab check's outcome and, for the image lesson, the picture grid; for lesson 05,
the live view of the run while both actor pools work. Screenshots go to ``build/screenshots/``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from helpers.commands import jupyterlab_browser as browser_lab
from helpers.commands.jupyterlab_browser import NOTEBOOK
from helpers.runtime.settings import REPO_ROOT

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
#: Diffusion steps per image in lesson 05's run (the CPU profile's default is 1): see lab_with_slow_images.
IMAGE_STEPS = 100
STDERR_MIME = "application/vnd.jupyter.stderr"


def _chromium_or_skip():
    """Fail where Chromium is missing, naming the install and the way to leave the browser tests out.

    Not a skip: a green run of the README's test command has driven JupyterLab in a browser.
    """
    missing = browser_lab.chromium_missing()
    if missing:
        pytest.fail(f"{missing}; install it (apt-get install chromium), or leave the browser tests out: "
                    "pytest -m 'not browser'")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Copies of the notebooks under test, laid out as in the clone."""
    root = tmp_path_factory.mktemp("lab_root")
    for relative in ("notebooks/01_ingest.ipynb", "solutions/03_image_generation.ipynb",
                     "solutions/05_llm_enhancement.ipynb"):
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
def lab_with_slow_images(workspace, tmp_path_factory, learners_ray):
    """A JupyterLab whose kernels draw each image in :data:`IMAGE_STEPS` steps instead of one, and
    write replies of up to 120 tokens (the GPU profile's) instead of 40.

    On the CPU profile the image model draws lesson 05's first batch in half a second, the
    last half second of the run: too short for a view that refreshes every 2 s to show both
    actor pools at work. With more steps the image stage runs for seconds beside the LLM's; with
    longer replies the LLM's batches last seconds too, so that on a busy machine (the suite's other
    worker) an LLM batch is still running while the images are drawn, instead of waiting for them.
    Set-up a learner would not have, said here: both only slow the models down.
    """
    _chromium_or_skip()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WORKSHOP_IMAGE_STEPS", str(IMAGE_STEPS))
        env.setenv("WORKSHOP_MAX_NEW_TOKENS", "120")
        server = browser_lab.Lab(workspace, tmp_path_factory.mktemp("jupyter_home_slow"))
    try:
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


def run_all(lab: browser_lab.Lab, browser, relative: str, screenshot: str, while_running=None) -> tuple:
    """Open a notebook, Run All Cells from the menu, wait for every cell; return (page, saved notebook)."""
    page = browser_lab.new_page(browser)
    browser_lab.open_notebook(page, lab, relative)
    count = len(browser_lab.prompts(page))
    try:
        done = browser_lab.run_all(page, while_running=while_running)
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


#: The live view of a run (helpers.show.progress) whose rows for both model stages say they are running.
_BOTH_POOLS_RUNNING = """notebook => {
    const running = (table, name) => [...table.rows].some(row => row.cells.length > 2
        && row.cells[0].textContent === name && row.cells[1].textContent.startsWith('running'));
    const table = [...notebook.querySelectorAll('table.rdw-progress')].find(
        t => running(t, 'MapBatches(Enhancer)') && running(t, 'MapBatches(ImageGen)'));
    if (!table) return false;
    table.scrollIntoView({block: 'center'});
    return true;
}"""


def test_llm_lesson_shows_both_actor_pools_running_at_once(lab_with_slow_images, browser):
    """Lesson 05 streams: the live view shows the LLM's and the image model's actor pools running together."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / "05_llm_enhancement.png"
    target.unlink(missing_ok=True)

    def both_pools_running(page) -> bool:
        if not page.query_selector(NOTEBOOK).evaluate(_BOTH_POOLS_RUNNING):
            return False
        page.screenshot(path=str(target))
        return True

    lab = lab_with_slow_images
    page, notebook = run_all(lab, browser, "solutions/05_llm_enhancement.ipynb", "05_llm_enhancement.png",
                             while_running=both_pools_running)
    try:
        assert _tracebacks(page) == []
        assert browser_lab.cell_errors(notebook) == []
        outcomes = _lab_outcome_texts(page)
        assert outcomes and all("Correct" in text and "Incorrect" not in text for text in outcomes), outcomes
        assert target.exists(), "the live view never showed MapBatches(Enhancer) and MapBatches(ImageGen) running"
        timeline = page.locator(f"{NOTEBOOK} .jp-CodeCell:has-text('helpers.show_run') table.rdw-progress")
        assert "MapBatches(Enhancer)" in timeline.first.text_content(), "helpers.show_run() drew no timeline"
    finally:
        page.close()
        lab.shutdown_sessions()
