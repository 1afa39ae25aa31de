"""``python -m helpers.bench lessons``: the lessons in order, as a learner runs them, timed and weighed.

A learner opens lesson after lesson in JupyterLab and runs each one top to
bottom; JupyterLab keeps every kernel running until it is shut down. This
command does the same with Jupyter's own kernel machinery (the kernels that
JupyterLab would start: the workshop's named kernel, in the notebook's
folder), leaves each kernel open while the next lesson runs, and prints one
JSON line: per lesson the Run All seconds, the seconds until its first cell
with output had finished (a kernel start and ``helpers.start()`` included), and
the memory in use on the machine after it; then the totals. Per-lesson lines go
to stderr as each lesson ends.

Nothing is prepared: the first lesson's ``helpers.start()`` starts the Ray the
lessons share, as on a learner's laptop. At the end the kernels are shut down
and that Ray is stopped the way the README says, unless ``--keep`` is given.
Memory in use is ``MemTotal - MemAvailable`` from ``/proc/meminfo`` (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from helpers.commands.notebooks import KERNELSPEC
from helpers.errors import first_line
from helpers.runtime.settings import REPO_ROOT

LESSON_TIMEOUT_S = 600


def memory_in_use_gb() -> float | None:
    """Memory in use on this machine, in GB (None where /proc/meminfo does not exist)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    except OSError:
        return None
    kib = int(fields["MemTotal"].split()[0]) - int(fields["MemAvailable"].split()[0])
    return round(kib / 1024**2, 2)


def run_lesson(path: Path) -> tuple[dict, object]:
    """Run one notebook top to bottom in a new kernel that stays open; its figures and the kernel."""
    import nbformat
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    kernel = KernelManager(kernel_name=KERNELSPEC["name"])  # ours, not the client's: it stays open
    client = NotebookClient(nb, km=kernel, timeout=LESSON_TIMEOUT_S,
                            resources={"metadata": {"path": str(path.parent)}})
    began = time.perf_counter()
    first_output, error = None, None
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
                if first_output is None and cell.get("outputs"):
                    first_output = time.perf_counter() - began
    except Exception as err:  # noqa: BLE001 - a failing lesson is reported in the line, the run goes on
        error = first_line(err)
    figures = {"lesson": f"{path.parent.name}/{path.name}", "seconds": round(time.perf_counter() - began, 1),
               "first_output_s": round(first_output, 1) if first_output is not None else None,
               "memory_in_use_gb": memory_in_use_gb()}
    if error:
        figures["error"] = error
    return figures, kernel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.bench lessons", description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("notebooks", "solutions"), default="notebooks",
                        help="the student notebooks (default) or the solutions (the instructor's live run)")
    parser.add_argument("--only", action="append", metavar="PREFIX",
                        help="only the lessons whose file name starts so, e.g. --only 00 --only 01 (repeatable)")
    parser.add_argument("--keep", action="store_true", help="leave the kernels and the shared Ray running")
    args = parser.parse_args(argv)
    lessons = [p for p in sorted((REPO_ROOT / args.set).glob("*.ipynb"))
               if not args.only or p.name.startswith(tuple(args.only))]
    if not lessons:
        parser.error(f"no lesson in {args.set}/ starts with {' or '.join(args.only)}")
    before = memory_in_use_gb()
    load_before = os.getloadavg()
    results, kernels = [], []
    try:
        for path in lessons:
            figures, kernel = run_lesson(path)
            results.append(figures)
            kernels.append(kernel)
            print(json.dumps(figures), file=sys.stderr, flush=True)
    finally:
        after_all = memory_in_use_gb()
        if not args.keep:
            for kernel in kernels:
                kernel.shutdown_kernel(now=True)
            subprocess.run([sys.executable, "-m", "helpers.workshop_ray", "stop"], check=False,
                           stdout=subprocess.DEVNULL)
    line = {
        "set": args.set,
        "lessons": results,
        "total_s": round(sum(r["seconds"] for r in results), 1),
        "slowest": max(results, key=lambda r: r["seconds"])["lesson"] if results else None,
        "memory_before_gb": before,
        "memory_after_last_gb": after_all,
        "memory_added_gb": round(after_all - before, 2) if None not in (before, after_all) else None,
        "failed": [r["lesson"] for r in results if "error" in r],
        "machine": {"cpus": os.cpu_count(), "system": platform.system(), "python": platform.python_version()},
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(line))
    return 1 if line["failed"] else 0
