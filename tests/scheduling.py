"""How the suite shares this machine's cores between two pytest-xdist workers.

Why: on CI's 2-core machine a serial run leaves about 38 % of the CPU idle
(tests wait on Ray's start, on kernels, on subprocesses), so two workers
finish the suite sooner. Two rules keep what the tests measure and share:

* a test module runs whole on one worker, so its module-scoped Ray, cluster
  or pipeline run is started once, as in a serial run;
* the modules in ``ALONE`` run last, and alone: the notebooks' table of times
  is the learner's number, which tests running beside them would inflate.
  Once only they are left, the worker that asks for work gets them and the
  other workers are shut down; the module's first fixture then waits
  (``wait_for_the_other_workers``) until each of those has finished its last
  test and stopped its Ray.

``pytest -n 0`` runs everything in one process, in file order.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from xdist.scheduler import LoadScopeScheduling

#: Modules that run after all others, with no other test running beside them.
ALONE = ("tests/test_notebooks.py",)


class ModulesWithNotebooksAlone(LoadScopeScheduling):
    """``--dist loadfile``, with the modules in ``ALONE`` held back until nothing else is left."""

    def _split_scope(self, nodeid: str) -> str:
        return nodeid.split("::", 1)[0]

    def _assign_work_unit(self, node) -> None:
        module = next((name for name in self.workqueue if name not in ALONE), None)
        if module is None:
            module = next(iter(self.workqueue))
            for other in self.nodes:
                if other is not node:
                    other.shutdown()  # it finishes what it has, then ends its session
        work_unit = self.workqueue.pop(module)
        self.assigned_work.setdefault(node, {})[module] = work_unit
        collection = self.registered_collections[node]
        node.send_runtest_some([collection.index(nodeid) for nodeid, done in work_unit.items() if not done])


def _run_of(config) -> tuple[Path, str, list[str]] | None:
    """This worker's run: the folder its workers share (a file per worker that has finished), its name, every
    worker's name; None outside a pytest-xdist worker."""
    worker = getattr(config, "workerinput", None)
    if worker is None:
        return None
    folder = Path(tempfile.gettempdir()) / f"rdw-pytest-{worker['testrunuid']}"
    return folder, worker["workerid"], [f"gw{n}" for n in range(worker["workercount"])]


def mark_this_worker_finished(config) -> None:
    """Called by a worker once its session's fixtures (its Ray among them) are torn down; the last one tidies up."""
    run = _run_of(config)
    if run is None:
        return
    folder, me, workers = run
    folder.mkdir(exist_ok=True)
    (folder / me).touch()
    if all((folder / name).exists() for name in workers):
        shutil.rmtree(folder, ignore_errors=True)


def wait_for_the_other_workers(config, timeout_s: float) -> list[str]:
    """Wait until every other worker of this run has finished; return those that had not within ``timeout_s``."""
    run = _run_of(config)
    if run is None:
        return []
    folder, me, workers = run
    deadline = time.monotonic() + timeout_s
    while True:
        running = [name for name in workers if name != me and not (folder / name).exists()]
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.5)
