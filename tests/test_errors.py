"""The workshop's own errors reach a learner as one line that says the fix."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers.runtime.settings import REPO_ROOT


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)


def test_ipython_shows_the_message_instead_of_the_traceback():
    # A real IPython shell, as in a JupyterLab kernel: the error is raised two frames down.
    done = _python(
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance(colors='nocolor')\n"
        "shell.run_cell('from helpers.runtime.resources import ResourceMismatchError\\n'\n"
        "               'def plan():\\n'\n"
        "               '    raise ResourceMismatchError(\"asks for 3 GPUs; the cluster has 2. Fix: lower size\")\\n'\n"
        "               'plan()')\n"
    )
    shown = [line for line in done.stdout.splitlines() if line.strip()]
    assert any("ResourceMismatchError" in line and "Fix: lower size" in line for line in shown), done.stdout
    assert "Traceback" not in done.stdout and "def plan" not in done.stdout, done.stdout


def test_a_plain_error_keeps_its_traceback_in_ipython():
    done = _python(
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance(colors='nocolor')\n"
        "shell.run_cell('def plan():\\n    raise ValueError(\"a bug in the lesson code\")\\nplan()')\n"
    )
    assert "Traceback" in done.stdout and "plan()" in done.stdout, done.stdout


def test_start_refuses_a_storage_root_it_cannot_write_before_ray_starts(tmp_path):
    # CI runs as root, so a read-only mode would not stop it: a folder under a file cannot exist for anyone.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = _python(
        "import ray, helpers\n"
        "from helpers.errors import SettingsError\n"
        "try:\n"
        "    helpers.start()\n"
        "except SettingsError as err:\n"
        "    print('refused:', err)\n"
        "print('ray started:', ray.is_initialized())\n",
        WORKSHOP_STORAGE=str(blocker / "storage"),
        RAY_ADDRESS="",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"refused: storage root {blocker / 'storage'} is not writable" in done.stdout
    assert "Set WORKSHOP_STORAGE" in done.stdout
    assert "ray started: False" in done.stdout


def test_a_ray_started_before_start_that_lacks_the_lessons_gpus_says_to_restart_the_kernel():
    """A lesson cell that runs ``ray.init()`` (or a ``ray.data`` call) before ``helpers.start()``: start() uses
    that Ray as it is, so advice to set a size would be followed in vain."""
    done = _python(
        "import ray\n"
        "ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)\n"
        "import helpers\n"
        "from helpers.errors import SettingsError\n"
        "try:\n"
        "    helpers.start()\n"
        "except SettingsError as err:\n"
        "    print('refused:', err)\n",
        WORKSHOP_PROFILE="cpu", WORKSHOP_RAY="process", RAY_ADDRESS="",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: The lessons' actor pools cannot fit this cluster" in done.stdout, done.stdout[-2000:]
    assert "Ray was already running in this kernel before helpers.start()" in done.stdout
    assert "restart the kernel (Kernel > Restart Kernel) and run helpers.start() before anything else" in done.stdout
