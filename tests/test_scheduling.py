"""The suite's two workers: each module whole on one worker, the notebooks last and with nothing beside them.

A small suite of its own, in a folder of this test, is run with ``pytest -n 2`` and the scheduler
and the wait of ``tests/scheduling.py``, hooked in as ``tests/conftest.py`` hooks them; every test
logs when it starts and ends, and which worker ran it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCHEDULING = Path(__file__).with_name("scheduling.py")

CONFTEST = f"""
import importlib.util
import sys

import pytest

spec = importlib.util.spec_from_file_location("workshop_scheduling", {str(SCHEDULING)!r})
scheduling = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = scheduling
spec.loader.exec_module(scheduling)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    return scheduling.ModulesWithNotebooksAlone(config, log)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    scheduling.mark_this_worker_finished(session.config)


@pytest.fixture(autouse=True)
def logged(request):
    import os, time
    def write(what):
        with open({{log!r}}, "a") as log:
            log.write(f"{{what}} {{request.node.nodeid}} {{os.environ.get('PYTEST_XDIST_WORKER')}} {{time.time()}}\\n")
    write("start")
    yield
    write("end")
"""

MODULE = """
import time
import pytest

@pytest.mark.parametrize("n", range({count}))
def test_works(n):
    time.sleep({seconds})
"""

NOTEBOOKS = MODULE + """

@pytest.fixture(scope="module", autouse=True)
def alone(request):
    import sys
    running = sys.modules["workshop_scheduling"].wait_for_the_other_workers(request.config, timeout_s=60)
    assert not running
"""


def test_the_notebooks_run_last_alone_and_each_module_on_one_worker(tmp_path):
    suite = tmp_path / "tests"
    suite.mkdir()
    log = tmp_path / "log"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (suite / "conftest.py").write_text(CONFTEST.replace("{log!r}", repr(str(log))))
    (suite / "test_notebooks.py").write_text(NOTEBOOKS.format(count=3, seconds=0.2))
    (suite / "test_long.py").write_text(MODULE.format(count=3, seconds=1.5))  # the other worker is busy longest
    (suite / "test_short.py").write_text(MODULE.format(count=4, seconds=0.1))

    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}  # not this run's
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-q", "tests"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = [line.split() for line in log.read_text().splitlines()]
    module_of = {nodeid: nodeid.split("::")[0] for _, nodeid, _, _ in events}
    workers = {}
    for _, nodeid, worker, _ in events:
        workers.setdefault(module_of[nodeid], set()).add(worker)
    assert all(len(used) == 1 for used in workers.values()), workers
    assert workers["tests/test_long.py"] != workers["tests/test_short.py"]

    notebooks_start = min(float(t) for what, nodeid, _, t in events
                          if what == "start" and module_of[nodeid] == "tests/test_notebooks.py")
    others_end = max(float(t) for what, nodeid, _, t in events
                     if what == "end" and module_of[nodeid] != "tests/test_notebooks.py")
    assert notebooks_start > others_end, "a notebook test started while another module's tests still ran"
