"""Shared fixtures: one Ray session per test process, and a guard against hangs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal

import pytest

# Forwarded to workers by helpers.start(); tests check that they arrive.
os.environ.setdefault("WORKSHOP_TEST_MARKER", "forwarded")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Two workers, each test module whole on one, the notebooks last and alone (see tests/scheduling.py)."""
    from tests.scheduling import ModulesWithNotebooksAlone

    return ModulesWithNotebooksAlone(config, log)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    """A pytest-xdist worker says it is done once its session fixtures (its Ray) are torn down."""
    from tests.scheduling import mark_this_worker_finished

    mark_this_worker_finished(session.config)


def pytest_configure(config):
    """Ctrl-C does in this run and in the processes it starts what it does in a terminal.

    A shell that starts the suite in the background (``pytest ... &``, some CI
    runners) leaves SIGINT ignored; every process started from here would
    inherit that, and the tests that press Ctrl-C on a pipeline run or a
    lesson's driver would see nothing happen. A handler, unlike an ignored
    signal, is not inherited: the children start with SIGINT's default.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def built_models():
    """Fail, naming the fix, when the CPU models that ``./setup.sh`` builds are not where the command looks.

    Session-scoped so that it runs before the module fixtures that start pipeline runs.
    """
    from tests.test_pipeline_cli import MODELS, missing_models

    missing = missing_models()
    if missing:
        pytest.fail(f"the CPU models are not built under {MODELS} (missing: {', '.join(missing[:3])}); run ./setup.sh")


@contextlib.contextmanager
def deadline(seconds: int, what: str):
    """Fail (instead of hanging CI) when the body runs longer than ``seconds``."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"{what} did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def web_server():
    """An HTTP/1 server on a free loopback port, as the Ray dashboard's 8265 is: yields its ``host:port``."""
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def learners_ray():
    """The learner's path to Ray: nothing prepared. Notebook kernels started under this fixture
    run ``helpers.start()`` as a learner's do: the first starts the Ray the lessons share, the next
    ones join it. At the end it is stopped the way the README tells a learner to, and nothing of it
    may be left running.

    Set-up a learner would not have: ``WORKSHOP_RAY_DIR`` names a folder of this test run, so a
    workshop Ray that a developer has open from this clone is neither joined nor stopped by the tests.
    """
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from helpers.runtime import shared_ray

    folder = Path(tempfile.mkdtemp(prefix="rdwt", dir="/tmp"))  # short: Ray's socket paths live under it
    with pytest.MonkeyPatch.context() as env:
        for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "WORKSHOP_RAY",
                     "WORKSHOP_CLUSTER_HAS_HELPERS"):
            env.delenv(name, raising=False)
        env.setenv("WORKSHOP_RAY_DIR", str(folder))
        yield folder
        recorded = shared_ray.running(folder)
        done = subprocess.run([sys.executable, "-m", "helpers.workshop_ray", "stop"], capture_output=True,
                              text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    if recorded is not None:
        assert "Stopped" in done.stdout, done.stdout
        assert not shared_ray.group_alive(recorded.pgid), "the workshop's Ray left processes running"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def session():
    """This test process's Ray, started by ``helpers.start()`` as a script's is: a local Ray of the process.

    Set-up a lesson would not have: a notebook kernel joins the workshop's Ray that the lessons share
    (with ``WORKSHOP_*`` and ``RAY_ADDRESS`` as the test process has them). That road is taken by
    ``tests/test_shared_ray.py`` and by the notebook tests (``learners_ray``).
    """
    import helpers

    with deadline(120, "helpers.start()"):
        workshop = helpers.start()
    yield workshop
    helpers.stop()


#: The property (``record_property``) under which a test reports a notebook's name and seconds:
#: reports, unlike module globals, reach the summary from pytest-xdist's workers.
NOTEBOOK_TIME = "notebook_seconds"
_notebook_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if report.when == "call":
        _notebook_seconds.update(value for name, value in report.user_properties if name == NOTEBOOK_TIME)


def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    terminalreporter.section("notebook run times (CPU profile)")
    width = max(len(name) for name in _notebook_seconds)
    for name, seconds in sorted(_notebook_seconds.items()):
        terminalreporter.write_line(f"{name:<{width}}  {seconds:6.1f} s")
    for folder, label in (("solutions", "solutions 00-06 total"), ("notebooks", "student notebooks 00-06 total")):
        # The workshop's lessons, whose time budget this is; 07 is optional and listed above on its own.
        lessons = [s for n, s in _notebook_seconds.items() if n.startswith(f"{folder}/") and n[len(folder) + 1:] < "07"]
        if lessons:
            terminalreporter.write_line(f"{label:<{width}}  {sum(lessons):6.1f} s ({len(lessons)} notebooks)")
