"""``python -m helpers.bench lessons``: the lessons in order, as a learner runs them, timed and weighed.

A learner runs ``.venv/bin/jupyter lab``, opens lesson after lesson from the
file browser and chooses Run > Run All Cells on each; JupyterLab keeps every
kernel running until it is shut down. By default (``--driver browser``) this
command does just that, in Chromium (:mod:`helpers.commands.jupyterlab_browser`),
on copies of the lessons in a temporary folder, with JupyterLab settings of its
own: nothing of the user's is read or written. ``--driver kernels`` runs the
lessons with Jupyter's kernel machinery alone (the kernels JupyterLab would
start, in the notebook's folder, no server and no browser), for a machine
without Chromium.

It prints one JSON line: per lesson the seconds to open it (until its kernel
is idle), the Run All seconds, the seconds from Run All to its first output,
and the memory in use on the machine after it; then the totals. Per-lesson
lines go to stderr as each lesson ends. A cell that raises ends the run: the
line names the lesson and the error's first line, and the exit status is 1.

Nothing is prepared: the first lesson's ``helpers.start()`` starts the Ray the
lessons share, as on a learner's laptop. So that a learner's own open lessons
are not touched, that Ray has a folder of its own (``WORKSHOP_RAY_DIR``) and the
lessons write as a learner of their own (``WORKSHOP_USER=lessons-bench-<pid>``).
At the end JupyterLab, Chromium and the kernels are shut down, that Ray is
stopped the way the README says and the lessons' outputs are removed, also
after an error or Ctrl-C; ``--keep`` leaves that Ray (and the kernels driver's
kernels) running, and says how to stop it. Memory in use is ``MemTotal - MemAvailable`` from
``/proc/meminfo`` (Linux), measured before anything starts and after each lesson.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from helpers.commands import jupyterlab_browser as browser_lab
from helpers.commands.notebooks import KERNELSPEC
from helpers.errors import first_line
from helpers.runtime.settings import REPO_ROOT

PROG = "python -m helpers.bench lessons"
LESSON_TIMEOUT_S = browser_lab.RUN_ALL_S
#: The signals that stopped the run (Ctrl-C, kill), for the lesson that was running to tell an interruption.
_INTERRUPTED: list[int] = []
#: The browser driver's temporary folder (JupyterLab's root and settings) starts so.
TEMP_PREFIX = "rdw-lessons-"
#: One lesson's figures from its path: ``open_s``, ``seconds``, ``first_output_s`` and, when a cell raised, ``error``.
RunLesson = Callable[[Path], dict]


def memory_in_use_gb() -> float | None:
    """Memory in use on this machine, in GB (None where /proc/meminfo does not exist)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    except OSError:
        return None
    kib = int(fields["MemTotal"].split()[0]) - int(fields["MemAvailable"].split()[0])
    return round(kib / 1024**2, 2)


def _seconds(since: float) -> float:
    return round(time.perf_counter() - since, 1)


def _lesson(run: Callable[[Path, dict], None]) -> RunLesson:
    """``run`` fills in one lesson's figures; whatever stops it (a cell's error, a time limit) is its ``error``."""

    def figures(path: Path) -> dict:
        found = {"open_s": None, "seconds": None, "first_output_s": None}
        try:
            run(path, found)
        except Exception as err:  # reported in the lesson's line, and the run ends there
            if _INTERRUPTED:  # Ctrl-C also reaches Playwright's driver, which closes Chromium under the lesson
                raise KeyboardInterrupt from err
            found.setdefault("error", first_line(err))
        return found

    return figures


@contextlib.contextmanager
def in_browser(lessons: Path, memory: dict) -> Iterator[RunLesson]:
    """JupyterLab on a copy of the folder ``lessons`` in a temporary folder, open in Chromium on that copy.

    Each lesson is opened with a double click in the file browser and stays open in its tab,
    with its kernel, while the next ones run; all of it ends when the block does.
    """
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX, ignore_cleanup_errors=True) as folder:
        root = Path(folder) / "lab"
        shutil.copytree(lessons, root / lessons.name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        lab = browser_lab.Lab(root, Path(folder) / "home")
        try:
            lab.require_kernel()
            with browser_lab.chromium() as chromium:
                page = browser_lab.new_page(chromium)
                browser_lab.open_folder(page, lab, lessons.name, workspace="lessons")
                memory["memory_with_lab_gb"] = memory_in_use_gb()

                def run(path: Path, figures: dict):
                    began = time.perf_counter()
                    browser_lab.open_from_file_browser(page, path.name)
                    figures["open_s"] = _seconds(began)
                    done = browser_lab.run_all(page, LESSON_TIMEOUT_S)
                    figures.update(seconds=done.seconds, first_output_s=done.first_output_s)
                    errors = browser_lab.cell_errors(browser_lab.save(page, root / lessons.name / path.name))
                    if errors or not done.complete:
                        figures["error"] = errors[0] if errors else f"cells not run: {done.prompts}"

                yield _lesson(run)
        finally:
            lab.stop()


@contextlib.contextmanager
def in_kernels(keep: bool) -> Iterator[RunLesson]:
    """Each lesson in a new kernel of the workshop's named kernel, in its folder, left open (until the end)."""
    import nbformat
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    class TimedClient(NotebookClient):
        """Notes when the kernel sent the notebook's first output."""

        first_output_at: float | None = None

        def output(self, *args, **kwargs):
            self.first_output_at = self.first_output_at or time.perf_counter()
            return super().output(*args, **kwargs)

    kernels = []

    def run(path: Path, figures: dict):
        nb = nbformat.read(path, as_version=4)
        kernels.append(KernelManager(kernel_name=KERNELSPEC["name"]))  # ours, not the client's: it stays open
        client = TimedClient(nb, km=kernels[-1], timeout=LESSON_TIMEOUT_S,
                             resources={"metadata": {"path": str(path.parent)}})
        began = time.perf_counter()
        try:
            with client.setup_kernel():
                figures["open_s"] = _seconds(began)
                began = time.perf_counter()
                for index, cell in enumerate(nb.cells):
                    client.execute_cell(cell, index)
        finally:
            figures.update(seconds=_seconds(began), first_output_s=(
                round(client.first_output_at - began, 1) if client.first_output_at else None))
            errors = browser_lab.cell_errors(nb)
            if errors:
                figures["error"] = errors[0]  # the cell's own error, not nbclient's wrapper around it

    try:
        yield _lesson(run)
    finally:
        if not keep:
            for kernel in kernels:
                kernel.shutdown_kernel(now=True)


def _interrupt(signum, frame):
    """Ctrl-C and ``kill`` end the run through its clean-up, reported as stopped, not as a lesson's error."""
    _INTERRUPTED.append(signum)
    raise KeyboardInterrupt


def _own_workshop(ray_dir: Path) -> Path | None:
    """Give the lessons the workshop Ray folder ``ray_dir`` and a learner name of their own, in this process's
    environment (which JupyterLab and the kernels inherit); return that learner's outputs folder (None on an
    object store, where the lessons write nothing)."""
    from helpers.runtime.settings import learner_outputs_dir

    learner = f"lessons-bench-{os.getpid()}"
    os.environ.update(WORKSHOP_RAY_DIR=str(ray_dir), WORKSHOP_USER=learner)
    outputs = learner_outputs_dir(learner=learner)
    return outputs if isinstance(outputs, Path) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("notebooks", "solutions"), default="notebooks",
                        help="the student notebooks (default) or the solutions (the instructor's live run)")
    parser.add_argument("--only", action="append", metavar="PREFIX",
                        help="only the lessons whose file name starts so, e.g. --only 00 --only 01 (repeatable)")
    parser.add_argument("--driver", choices=("browser", "kernels"), default="browser",
                        help="JupyterLab in Chromium (default), or Jupyter kernels without server and browser")
    parser.add_argument("--keep", action="store_true",
                        help="leave the shared Ray running (with --driver kernels, the kernels too)")
    args = parser.parse_args(argv)
    lessons = [p for p in sorted((REPO_ROOT / args.set).glob("*.ipynb"))
               if not args.only or p.name.startswith(tuple(args.only))]
    if not lessons:
        parser.error(f"no lesson in {args.set}/ starts with {' or '.join(args.only)}")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    memory = {"memory_before_gb": memory_in_use_gb()}
    load_before = os.getloadavg()
    results = []
    ray_dir, outputs = Path(tempfile.mkdtemp(prefix="rdwb", dir="/tmp")), None  # short: Ray's sockets live under it
    try:
        outputs = _own_workshop(ray_dir)
        driver = in_browser(REPO_ROOT / args.set, memory) if args.driver == "browser" else in_kernels(args.keep)
        with driver as run_lesson:
            for path in lessons:
                figures = {"lesson": f"{args.set}/{path.name}", **run_lesson(path),
                           "memory_in_use_gb": memory_in_use_gb()}
                results.append(figures)
                print(json.dumps(figures), file=sys.stderr, flush=True)
                if "error" in figures:
                    print(f"{PROG}: {figures['lesson']}: {figures['error']}", file=sys.stderr)
                    break
    except browser_lab.LabError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        signum = (_INTERRUPTED or [signal.SIGINT])[0]
        print(f"{PROG}: stopped by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    finally:
        if args.keep:
            print(f"{PROG}: the lessons' Ray runs on; stop it with WORKSHOP_RAY_DIR={ray_dir} "
                  f"{sys.executable} -m helpers.workshop_ray stop", file=sys.stderr)
        else:
            subprocess.run([sys.executable, "-m", "helpers.workshop_ray", "stop"], check=False,
                           stdout=subprocess.DEVNULL)
            shutil.rmtree(ray_dir, ignore_errors=True)
        if outputs is not None:
            shutil.rmtree(outputs, ignore_errors=True)
    before = memory["memory_before_gb"]
    after_all = results[-1]["memory_in_use_gb"] if results else None
    timed = [r for r in results if r["seconds"] is not None]
    line = {
        "set": args.set,
        "driver": args.driver,
        "lessons": results,
        "total_s": round(sum(r["seconds"] for r in timed), 1),
        "open_total_s": round(sum(r["open_s"] or 0 for r in results), 1),
        "slowest": max(timed, key=lambda r: r["seconds"])["lesson"] if timed else None,
        "memory_before_gb": before,
        "memory_with_lab_gb": memory.get("memory_with_lab_gb"),
        "memory_after_last_gb": after_all,
        "memory_added_gb": round(after_all - before, 2) if None not in (before, after_all) else None,
        "failed": [r["lesson"] for r in results if "error" in r],
        "machine": {"cpus": os.cpu_count(), "system": platform.system(), "python": platform.python_version()},
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(line))
    return 1 if line["failed"] else 0
