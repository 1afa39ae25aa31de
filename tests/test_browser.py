"""The workshop as a learner uses it: JupyterLab in a real browser, Run All, read the page.

Starts the venv's ``jupyter lab`` on 127.0.0.1 with a fresh token, passed in
``JUPYTER_TOKEN`` (a command line is visible to every user in ``ps``), and drives
Debian's ``chromium`` with Playwright (no browser download). Each notebook is a
copy in a temporary folder, so the outputs and checkpoints of the run never land
in the committed notebooks. JupyterLab reads its settings from another
temporary folder, so a user's own settings cannot change what is tested.

For each notebook: open it, choose Run > Run All Cells, wait until every code
cell has its execution number, then assert what a learner would look for: no
traceback, the lab check's outcome and, for the image lesson, the picture grid.
Screenshots go to ``build/screenshots/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from helpers.commands.notebooks import KERNELSPEC
from helpers.runtime.settings import REPO_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get install -y --no-install-recommends chromium"
JUPYTER = Path(sys.executable).parent / "jupyter"
SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
#: Hard limits, so that a stuck server, page or kernel fails the test instead of hanging CI.
SERVER_START_S = 90
PAGE_LOAD_S = 120
#: Lesson 03 generates 120 images on two CPU cores: 1-2 minutes when the machine is idle.
RUN_ALL_S = 480
STDERR_MIME = "application/vnd.jupyter.stderr"
#: The status bar once the notebook's own kernel (its metadata's, registered by setup.sh) has started;
#: escaped for a JavaScript regular expression literal.
KERNEL_IDLE = re.sub(r"[.*+?^${}()|[\]\\/]", r"\\\g<0>", KERNELSPEC["display_name"]) + r" \| Idle"

#: The notebook on screen (JupyterLab keeps other tabs in the DOM, hidden).
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"
#: JupyterLab settings for the test: every cell in the DOM (not only those on screen),
#: and no news or update notification covering the notebook in screenshots.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def _chromium_or_skip():
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is not installed; install it with: {INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _api(base: str, token: str, path: str, method: str = "GET"):
    request = urllib.request.Request(
        f"{base}{path}", method=method, headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


class Lab:
    """A running JupyterLab server: its URL, token and process group."""

    def __init__(self, root: Path, home: Path):
        self.root = root
        self.port = _free_port()
        self.token = secrets.token_hex(24)
        self.base = f"http://127.0.0.1:{self.port}"
        settings = home / "lab-settings"
        for name, values in LAB_SETTINGS.items():
            (settings / name).parent.mkdir(parents=True, exist_ok=True)
            (settings / name).write_text(json.dumps(values))
        env = dict(
            os.environ,
            JUPYTER_TOKEN=self.token,
            JUPYTER_CONFIG_DIR=str(home / "config"),
            JUPYTER_RUNTIME_DIR=str(home / "runtime"),
            JUPYTER_DATA_DIR=str(home / "data"),
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
            IPYTHONDIR=str(home / "ipython"),
            JUPYTER_PLATFORM_DIRS="1",
        )
        command = [
            str(JUPYTER), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.port_retries=0",
        ]  # fmt: skip
        if os.geteuid() == 0:
            command.append("--allow-root")  # JupyterLab refuses root without it; CI containers run as root
        self.log_path = home / "jupyter.log"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_until_up()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def command_lines(self) -> list[str]:
        """What ``ps`` shows every user for the server and its children."""
        server = psutil.Process(self.process.pid)
        return [" ".join(proc.cmdline()) for proc in (server, *server.children(recursive=True))]

    def _wait_until_up(self):
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"jupyter lab exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                _api(self.base, self.token, "/api/status")
                return
            time.sleep(0.5)
        pytest.fail(f"jupyter lab did not answer within {SERVER_START_S} s:\n{self.log()}")

    def url(self, path: str) -> str:
        """The notebook in a workspace of its own, so no tab of an earlier test is restored next to it."""
        workspace = re.sub(r"\W", "-", Path(path).stem)
        return f"{self.base}/lab/workspaces/{workspace}/tree/{path}?token={self.token}"

    def shutdown_sessions(self):
        """Shut every kernel down through the server, as closing them in the UI would."""
        with contextlib.suppress(OSError):
            for session in _api(self.base, self.token, "/api/sessions") or []:
                with contextlib.suppress(OSError):
                    _api(self.base, self.token, f"/api/sessions/{session['id']}", method="DELETE")

    def stop(self):
        self.shutdown_sessions()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


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
    server = Lab(workspace, tmp_path_factory.mktemp("jupyter_home"))
    try:
        # The server took its token from JUPYTER_TOKEN (its API refuses any other), and no command line shows it.
        assert not [line for line in server.command_lines() if server.token in line]
        # Without the notebooks' kernel, JupyterLab would ask which kernel to start instead of starting one.
        kernels = _api(server.base, server.token, "/api/kernelspecs")["kernelspecs"]
        assert KERNELSPEC["name"] in kernels, f"no kernel {KERNELSPEC['name']!r} ({sorted(kernels)}): run ./setup.sh"
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield chromium
        finally:
            chromium.close()


def _prompts(page) -> list[str]:
    return page.eval_on_selector_all(
        f"{NOTEBOOK} .jp-CodeCell .jp-InputPrompt", "nodes => nodes.map(n => n.textContent.trim())"
    )


def _tracebacks(page) -> list[str]:
    texts = page.eval_on_selector_all(
        f'{NOTEBOOK} .jp-OutputArea-output[data-mime-type="{STDERR_MIME}"]', "nodes => nodes.map(n => n.textContent)"
    )
    return [text for text in texts if "Traceback" in text or re.search(r"^\w+Error\b", text, re.MULTILINE)]


def run_all(lab: Lab, browser, relative: str, screenshot: str) -> tuple:
    """Open a notebook, Run All Cells from the menu, wait for every cell; return (page, saved notebook)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(PAGE_LOAD_S * 1000)
    page.goto(lab.url(relative))
    page.wait_for_selector(f"{NOTEBOOK} .jp-CodeCell")
    page.wait_for_selector(f"#jp-main-statusbar >> text=/{KERNEL_IDLE}/")
    count = len(_prompts(page))
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-item[data-command='runmenu:run-all']")

    deadline = time.monotonic() + RUN_ALL_S
    while True:
        prompts = _prompts(page)
        if prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
            break
        errors = _tracebacks(page)
        if errors:
            page.screenshot(path=str(SCREENSHOTS / f"failed-{screenshot}"), full_page=False)
            pytest.fail(f"{relative}: a cell failed:\n{errors[0][-3000:]}")
        if time.monotonic() > deadline:
            page.screenshot(path=str(SCREENSHOTS / f"timeout-{screenshot}"), full_page=False)
            pytest.fail(f"{relative}: cells still not done after {RUN_ALL_S} s: {prompts}\n{lab.log()}")
        time.sleep(1)
    assert len(prompts) == count
    page.wait_for_selector("#jp-main-statusbar >> text=/\\| Idle/")

    page.keyboard.press("Control+s")
    saved = lab.root / relative
    deadline = time.monotonic() + 30
    while not any(cell.get("outputs") for cell in json.loads(saved.read_text())["cells"] if "outputs" in cell):
        assert time.monotonic() < deadline, f"{relative} was not saved with its outputs"
        time.sleep(0.5)
    return page, json.loads(saved.read_text())


def _error_outputs(notebook: dict) -> list[str]:
    return [
        f"{output.get('ename')}: {output.get('evalue')}"
        for cell in notebook["cells"]
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


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
        assert _error_outputs(notebook) == []
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
        assert _error_outputs(notebook) == []
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
