"""JupyterLab in Chromium, driven as a learner drives it: open a notebook, Run > Run All Cells, wait.

The lessons benchmark (:mod:`helpers.commands.lessons_bench`) and the browser
tests (``tests/test_browser.py``) share this module, so that the benchmark's
figures come from the road the tests check.

:class:`Lab` starts the venv's ``jupyter lab`` on 127.0.0.1 with a fresh token,
passed in ``JUPYTER_TOKEN`` (a command line is visible to every user in ``ps``),
serving a folder of notebook copies, so the outputs and checkpoints of a run
never land in the committed notebooks. JupyterLab reads its settings and
workspaces from a temporary folder, so a user's own settings cannot change
what runs, and nothing of the user's is written. :func:`chromium` drives
Debian's ``chromium`` with Playwright (no browser download). Playwright is a
test requirement, imported only when a browser is opened: the lessons never
need it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from helpers.commands.notebooks import KERNELSPEC
from helpers.runtime.ports import free_port

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get install -y --no-install-recommends chromium"
JUPYTER = Path(sys.executable).parent / "jupyter"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
#: Hard limits, so that a stuck server, page or kernel fails instead of hanging.
SERVER_START_S = 90
PAGE_LOAD_S = 120
#: Lesson 03 generates 120 images on two CPU cores: 1-2 minutes when the machine is idle.
RUN_ALL_S = 600
#: How often the page is read while cells run: fine enough for seconds, light on two cores.
POLL_S = 0.2
#: The status bar once the notebook's own kernel (its metadata's, registered by setup.sh) has started;
#: escaped for a JavaScript regular expression literal.
KERNEL_IDLE = re.sub(r"[.*+?^${}()|[\]\\/]", r"\\\g<0>", KERNELSPEC["display_name"]) + r" \| Idle"
#: The notebook on screen (JupyterLab keeps other tabs in the DOM, hidden).
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"
#: JupyterLab settings for these runs: every cell in the DOM (not only those on screen), so that
#: every prompt can be read, and no news or update notification covering the notebook in screenshots.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}
_EXECUTED = re.compile(r"\[\d+\]:")


class LabError(RuntimeError):
    """JupyterLab, Chromium or a notebook in them did not do what a learner would see; the message says what."""


def api(base: str, token: str, path: str, method: str = "GET"):
    """One call to the server's REST API, as JSON."""
    request = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


class Lab:
    """A running JupyterLab server on ``root``, configured from ``home``: its URL, token and process group."""

    def __init__(self, root: Path, home: Path):
        self.root = root
        self.port = free_port()
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
        self._kernels: set[psutil.Process] = set()
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise

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
                raise LabError(f"jupyter lab exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                api(self.base, self.token, "/api/status")
                return
            time.sleep(0.5)
        raise LabError(f"jupyter lab did not answer within {SERVER_START_S} s:\n{self.log()}")

    def require_kernel(self):
        """Without the notebooks' kernel, JupyterLab would ask which kernel to start instead of starting one."""
        kernels = api(self.base, self.token, "/api/kernelspecs")["kernelspecs"]
        if KERNELSPEC["name"] not in kernels:
            raise LabError(f"JupyterLab has no kernel {KERNELSPEC['name']!r} ({sorted(kernels)}): run ./setup.sh")

    def url(self, path: str = "", workspace: str | None = None) -> str:
        """The page for ``path``; a workspace of its own (named after it) unless told, so no earlier tab comes back."""
        workspace = workspace or re.sub(r"\W", "-", Path(path).stem or "lab")
        return f"{self.base}/lab/workspaces/{workspace}/tree/{path}?token={self.token}"

    def shutdown_sessions(self):
        """Shut every kernel down through the server, as closing them in the UI would."""
        self._remember_kernels()
        with contextlib.suppress(OSError):
            for session in api(self.base, self.token, "/api/sessions") or []:
                with contextlib.suppress(OSError):
                    api(self.base, self.token, f"/api/sessions/{session['id']}", method="DELETE")

    def _remember_kernels(self):
        """The server's children, its kernels (each in a process group of its own), to end any it leaves behind.

        Only the children: what a kernel started in a session of its own, such as the Ray the lessons
        share, is stopped its own way.
        """
        with contextlib.suppress(psutil.Error):
            self._kernels.update(psutil.Process(self.process.pid).children())

    def stop(self):
        """Kernels, then the server; whatever still runs after 30 s is killed."""
        self.shutdown_sessions()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        _, alive = psutil.wait_procs(list(self._kernels), timeout=10)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()


def chromium_missing() -> str | None:
    """What this machine lacks to drive Chromium, with how to install it; None when nothing."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed; install it with: {INSTALL}"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed in this environment: run ./setup.sh"
    return None


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """Debian's Chromium under Playwright; closed on the way out, whatever happened."""
    missing = chromium_missing()
    if missing:
        raise LabError(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            with contextlib.suppress(Exception):  # after Ctrl-C Playwright may have closed it already
                browser.close()


def new_page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(PAGE_LOAD_S * 1000)
    return page


def wait_for_kernel(page):
    """Until the notebook on screen shows its cells and its own kernel, started and idle."""
    page.wait_for_selector(f"{NOTEBOOK} .jp-CodeCell")
    page.wait_for_selector(f"#jp-main-statusbar >> text=/{KERNEL_IDLE}/")


def open_notebook(page, lab: Lab, relative: str):
    """Load JupyterLab with ``relative`` (a path under its root) in a workspace of its own; wait for its kernel."""
    page.goto(lab.url(relative))
    wait_for_kernel(page)


def open_folder(page, lab: Lab, folder: str, workspace: str):
    """Load JupyterLab with its file browser on ``folder``, as a learner finds the lessons."""
    page.goto(lab.url(folder, workspace=workspace))
    page.wait_for_selector(".jp-DirListing-item")


def open_from_file_browser(page, name: str):
    """Double-click ``name`` in the file browser, as a learner opens a lesson; wait until its kernel is idle."""
    page.locator(".jp-DirListing-item", has_text=name).dblclick()
    page.wait_for_selector(f"#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel:text-is('{name}')")
    wait_for_kernel(page)


def prompts(page) -> list[str]:
    """The code cells' prompts of the notebook on screen: ``[ ]:``, ``[*]:`` or ``[3]:``."""
    return page.eval_on_selector_all(
        f"{NOTEBOOK} .jp-CodeCell .jp-InputPrompt", "nodes => nodes.map(n => n.textContent.trim())"
    )


#: Installed before Run All: the time of the first output of the notebook on screen, on the page's clock.
_WATCH_FIRST_OUTPUT = """notebook => {
    const seen = () => notebook.querySelector('.jp-OutputArea-output') !== null;
    window.__firstOutputAt = null;
    const observer = new MutationObserver(() => {
        if (seen()) { window.__firstOutputAt = performance.now(); observer.disconnect(); }
    });
    observer.observe(notebook, {childList: true, subtree: true});
    return performance.now();
}"""
#: Done when the first cell ran, none is queued or running, and the status bar says the kernel is idle
#: (after an error JupyterLab runs no further cell: their prompts stay empty).
_STATE = f"""notebook => ({{
    prompts: [...notebook.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(n => n.textContent.trim()),
    idle: /{KERNEL_IDLE}/.test(document.querySelector('#jp-main-statusbar').textContent),
    now: performance.now(),
    firstOutputAt: window.__firstOutputAt,
}})"""


@dataclass(frozen=True)
class RunAll:
    """What one Run All Cells took and left: seconds from the click, and the prompts at the end."""

    seconds: float
    first_output_s: float | None
    prompts: list[str]

    @property
    def complete(self) -> bool:
        """Every code cell ran (after an error, the cells below it do not)."""
        return bool(self.prompts) and all(_EXECUTED.fullmatch(p) for p in self.prompts)


def run_all(page, timeout_s: float = RUN_ALL_S, while_running=None) -> RunAll:
    """Run > Run All Cells from the menu on the notebook on screen; wait until no cell is left to run.

    Times are read on the page's clock: from the click to the first output shown, and to the
    moment the page showed every cell done and the kernel idle. ``while_running(page)``, when
    given, is called at each look until it returns True: what to do while the cells run (a
    screenshot of a live output).
    """
    notebook = page.query_selector(NOTEBOOK)
    existing = notebook.query_selector(".jp-OutputArea-output")
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    began = notebook.evaluate(_WATCH_FIRST_OUTPUT)
    page.click(".lm-Menu-item[data-command='runmenu:run-all']")
    deadline = time.monotonic() + timeout_s
    while True:
        state = notebook.evaluate(_STATE)
        found = state["prompts"]
        if found and _EXECUTED.fullmatch(found[0]) and "[*]:" not in found and state["idle"]:
            break
        if while_running is not None and while_running(page):
            while_running = None
        if time.monotonic() > deadline:
            raise LabError(f"cells still not done after {timeout_s:.0f} s: {found}")
        time.sleep(POLL_S)
    first = state["firstOutputAt"]
    return RunAll(
        seconds=round((state["now"] - began) / 1000, 1),
        first_output_s=round((first - began) / 1000, 1) if first is not None and existing is None else None,
        prompts=found,
    )


def save(page, path: Path) -> dict:
    """Save the notebook on screen (Ctrl+S) and return it as written to ``path``, with every cell that ran."""
    executed = sum(bool(_EXECUTED.fullmatch(p)) for p in prompts(page))
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError, ValueError):  # read while being written
            notebook = json.loads(path.read_text())
            if sum(cell.get("execution_count") is not None for cell in notebook["cells"]) >= executed:
                return notebook
        if time.monotonic() > deadline:
            raise LabError(f"{path.name} was not saved with its {executed} executed cells within 30 s")
        time.sleep(0.5)


def cell_errors(notebook: dict) -> list[str]:
    """Every error a cell of a saved notebook raised, as ``"ValueError: first line of the message"``."""
    return [
        f"{output.get('ename')}: {next(iter(str(output.get('evalue')).splitlines()), '')}"
        for cell in notebook["cells"]
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
