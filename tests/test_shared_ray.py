"""The Ray the lessons share: one per learner, joined by every lesson, stopped when asked or when idle.

The drivers here are Python processes with ``WORKSHOP_RAY=shared``, which is
what a notebook kernel gets by default (the notebook and browser tests take
that road with real kernels). Each test gives the shared Ray a folder of its
own (``WORKSHOP_RAY_DIR``), a set-up a learner would not have, so that a
workshop Ray a developer has open is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from helpers.errors import SettingsError
from helpers.runtime import cluster, shared_ray
from tests.conftest import deadline

pytestmark = pytest.mark.cluster

#: A lesson's kernel, reduced: start, run one task, stay open until its stdin closes.
LESSON = """
import sys, helpers, ray
session = helpers.start()
print("SHARED", session.shared, session.address, flush=True)
env = ray.get(ray.remote(lambda: dict(__import__("os").environ)).remote())
print("POLARS", env.get("POLARS_MAX_THREADS"), flush=True)
print("PRESTART", env.get("RAY_prestart_worker_first_driver"), flush=True)
print("MARKER", env.get("WORKSHOP_TEST_MARKER"), flush=True)
print("ANSWER", ray.get(ray.remote(lambda: 41 + 1).remote(), timeout=300), flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def ray_dir(monkeypatch):
    folder = Path(tempfile.mkdtemp(prefix="rdwt", dir="/tmp"))  # short: Ray's socket paths live under it
    monkeypatch.setenv("WORKSHOP_RAY_DIR", str(folder))
    yield folder
    shared_ray.stop(folder)
    shutil.rmtree(folder, ignore_errors=True)


def lesson_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    return {**env, "WORKSHOP_RAY": "shared", **extra}


def open_lesson(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LESSON], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_until_answer(lesson: subprocess.Popen) -> dict[str, str]:
    """The lesson's SHARED, POLARS, PRESTART, MARKER and ANSWER lines (and all it printed, for the failure message).

    Plain blocking reads: the caller's ``deadline`` ends a lesson that hangs.
    """
    seen, lines = {}, []
    while "ANSWER" not in seen:
        line = lesson.stdout.readline()
        assert line, "the lesson ended early:\n" + "".join(lines[-30:])
        lines.append(line)
        word, _, rest = line.partition(" ")
        if word in ("SHARED", "POLARS", "PRESTART", "MARKER", "ANSWER"):
            seen[word] = rest.strip()
    return seen


def close(lesson: subprocess.Popen) -> None:
    lesson.stdin.close()
    lesson.wait(timeout=120)


def wait_until(condition, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, what
        time.sleep(0.5)


def test_lessons_share_one_ray_which_survives_nothing_it_should_not_and_stops_when_idle(ray_dir, session):
    """Two lessons opened together share one Ray; a crashed one is started again by the next lesson,
    and with no lesson left it stops itself, leaving the other Ray on the machine (this process's) alone."""
    import ray

    env = lesson_env(WORKSHOP_RAY_IDLE_MINUTES="0.02")  # 15 by default
    with deadline(600, "shared Ray: two lessons, a crash, a restart and an idle stop"):
        # Each lesson's own setting reaches its workers, whichever of the two started the shared Ray.
        first = open_lesson({**env, "WORKSHOP_TEST_MARKER": "first"})
        second = open_lesson({**env, "WORKSHOP_TEST_MARKER": "second"})
        try:
            answers = [read_until_answer(first), read_until_answer(second)]
            assert [a["MARKER"] for a in answers] == ["first", "second"], answers
            hows = sorted(a["SHARED"].split()[0] for a in answers)
            assert hows == ["joined", "started"], answers
            assert len({a["SHARED"].split()[1] for a in answers}) == 1, f"two Rays: {answers}"
            assert all(a["ANSWER"] == "42" for a in answers)
            assert all(a["POLARS"] == "1" for a in answers), "its workers do not have one polars thread each"
            # Its raylet (whose environment workers inherit) starts no workers ahead for the first kernel.
            assert all(a["PRESTART"] == "0" for a in answers), answers
            status = subprocess.run([sys.executable, "-m", "helpers.workshop_ray", "status"], env=env,
                                    capture_output=True, text=True, timeout=60, check=True).stdout
            assert str(first.pid) in status and str(second.pid) in status, status
            crashed = shared_ray.running(ray_dir)
            assert shared_ray.is_workshop_group(crashed.pgid, ray_dir), "stop would leave the real one running"
            os.killpg(crashed.pgid, signal.SIGKILL)  # the whole group at once, as an out-of-memory kill might
            wait_until(lambda: not shared_ray.group_alive(crashed.pgid), 60, "the killed group lingers")
        finally:
            close(first)
            close(second)
        lesson = open_lesson(env)
        try:
            after = read_until_answer(lesson)
        finally:
            close(lesson)
        assert after["SHARED"].startswith("started"), after
        restarted = shared_ray.running(ray_dir)
        assert restarted is not None and restarted.pgid != crashed.pgid
        assert restarted.idle_minutes == 0.02, "the start table would show another kernel's idle time"
        wait_until(lambda: shared_ray.running(ray_dir) is None, 120, "the idle shared Ray did not stop")
        wait_until(lambda: not shared_ray.group_alive(restarted.pgid), 60, "the idle Ray left processes")
    assert "no kernel has used the workshop's Ray" in (ray_dir / "supervisor.log").read_text()
    # Another Ray on the machine (this test process's own) was not touched: no `ray stop`.
    assert ray.get(ray.remote(lambda: "still here").remote(), timeout=120) == "still here"


def test_a_size_set_after_the_shared_ray_started_says_how_to_start_it_again(ray_dir):
    """A learner told to set WORKSHOP_NUM_GPUS restarts a lesson's kernel: the shared Ray, sized by the
    first lesson, keeps its GPUs, so the lesson says so instead of joining it and failing its check again."""
    env = {k: v for k, v in lesson_env().items() if k not in ("WORKSHOP_NUM_GPUS", "WORKSHOP_NUM_CPUS")}
    with deadline(300, "a lesson with another size beside the shared Ray"):
        first = open_lesson(env)
        try:
            read_until_answer(first)
            gpus = subprocess.run(
                [sys.executable, "-c", ("import helpers, ray; helpers.start(quiet=True); "
                                        "print(int(ray.cluster_resources()['GPU']))")],
                env=env, capture_output=True, text=True, timeout=180, check=True).stdout.split()[-1]
            more = subprocess.run([sys.executable, "-c", "import helpers; helpers.start()"],
                                  env={**env, "WORKSHOP_NUM_GPUS": str(int(gpus) + 2)},
                                  capture_output=True, text=True, timeout=180, check=False)
        finally:
            close(first)
    assert more.returncode != 0
    said = more.stderr.strip().splitlines()[-1]
    assert f"WORKSHOP_NUM_GPUS={int(gpus) + 2}, but it has {gpus} GPUs" in said, more.stderr[-2000:]
    assert "helpers.stop_workshop_ray()" in said and "python -m helpers.workshop_ray stop" in said


def test_a_lesson_whose_shared_ray_was_stopped_says_to_restart_its_kernel(ray_dir):
    """Another lesson (or a terminal) stops the shared Ray while this one is open: any call into Ray would
    wait until Ray ends the process (60 s, measured on Ray 2.60), so start() says so at once, also once
    a lesson has started a new shared Ray."""
    code = (
        "import subprocess, sys, helpers\n"
        "from helpers.errors import SettingsError\n"
        "helpers.start(quiet=True)\n"
        "subprocess.run([sys.executable, '-m', 'helpers.workshop_ray', 'stop'], check=True, capture_output=True)\n"
        "for after in ('stopped', 'another lesson started a new one'):\n"
        "    try:\n"
        "        helpers.start()\n"
        "    except SettingsError as err:\n"
        "        print(after, 'refused:', err, flush=True)\n"
        "    subprocess.run([sys.executable, '-c', 'import helpers; helpers.start(quiet=True)'], check=True,\n"
        "                   capture_output=True)\n"
    )
    with deadline(240, "a lesson after its shared Ray was stopped"):
        done = subprocess.run([sys.executable, "-c", code], env=lesson_env(), capture_output=True, text=True,
                              timeout=200, check=False)
    for after in ("stopped", "another lesson started a new one"):
        assert f"{after} refused: The workshop's Ray that this lesson joined was stopped" in done.stdout, \
            done.stdout[-2000:] + done.stderr[-2000:]
    assert "restart it now (Kernel > Restart Kernel)" in done.stdout


def a_group_like_the_workshops() -> subprocess.Popen:
    """A process group that ``stop`` takes for a workshop Ray: its command is the supervisor's."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "helpers.runtime.shared_ray",
                             "serve"], start_new_session=True)


def test_a_recorded_group_that_is_not_a_workshop_ray_is_never_signalled(ray_dir):
    """After a reboot the recorded number may name another group of this user's, a kernel with a Ray of its own
    too: stop forgets it and kills nothing."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "raylet gcs_server ray::IDLE",
                              "--temp-dir=/tmp/ray"], start_new_session=True)
    try:
        (ray_dir / "state.json").write_text(json.dumps({"pgid": other.pid, "address": "127.0.0.1:1"}))
        assert shared_ray.is_workshop_group(other.pid, ray_dir) is False
        assert shared_ray.stop(ray_dir) is False
        assert other.poll() is None, "an unrelated process group was signalled"
        assert not (ray_dir / "state.json").exists()
    finally:
        other.kill()
        other.wait()


def test_a_recorded_ray_that_no_longer_answers_is_not_run_beside(ray_dir):
    """A network change leaves the workshop's Ray running at an address nothing reaches: start says to stop it."""
    old = a_group_like_the_workshops()
    try:
        (ray_dir / "state.json").write_text(json.dumps({"pgid": old.pid, "address": "127.0.0.1:1"}))
        with pytest.raises(RuntimeError, match=r"still runs but does not answer at 127\.0\.0\.1:1.*"
                                               r"helpers\.workshop_ray stop"):
            shared_ray.ensure_running(["--num-cpus=1"], {}, 1.0)
        assert old.poll() is None and json.loads((ray_dir / "state.json").read_text())["pgid"] == old.pid
        assert shared_ray.stop(ray_dir) is True
        assert old.wait(timeout=60) != 0
    finally:
        old.kill()
        old.wait()


def test_stop_says_so_when_no_shared_ray_runs(ray_dir):
    """Stopping a running one is what the notebook tests' learners_ray fixture does at its end."""
    done = subprocess.run([sys.executable, "-m", "helpers.workshop_ray", "stop"], env=lesson_env(),
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "The workshop's Ray was not running."


def test_a_stop_keeps_the_record_of_a_ray_started_while_it_waited(ray_dir, monkeypatch):
    """``stop`` waits for the old group to end; a lesson may start a new workshop Ray meanwhile.

    The old "Ray" here is a ``sleep`` in a session of its own; the new one's record is written
    while ``stop`` waits (its wait replaced, a set-up no learner has), so only timing is simulated.
    """

    old = a_group_like_the_workshops()
    state = ray_dir / "state.json"
    state.write_text(json.dumps({"pgid": old.pid}))
    newer = {"pgid": old.pid + 100000, "address": "127.0.0.1:1"}

    def while_waiting(pgid):
        os.killpg(pgid, signal.SIGKILL)
        old.wait()
        state.write_text(json.dumps(newer))  # a lesson's helpers.start() recorded its new Ray

    monkeypatch.setattr(shared_ray, "kill_once_idle", while_waiting)
    assert shared_ray.stop(ray_dir) is True
    assert json.loads(state.read_text()) == newer, "the new Ray's record was deleted with the old one's"


def test_a_lesson_with_other_settings_sends_only_the_difference():
    from helpers.runtime.settings import forwarded_env

    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith("WORKSHOP_"):
                env.delenv(name)
        env.setenv("WORKSHOP_USER", "ada")
        env.setenv("WORKSHOP_PROFILE", "cpu")
        env.setenv("WORKSHOP_IMAGE_ACTORS", "2")
        recorded = shared_ray.SharedRay(address="127.0.0.1:1", pgid=1, token_path="t", dashboard_url=None,
                                        env=forwarded_env(), started=0)
        assert cluster._shared_runtime_env(recorded) is None  # the workers already have these
        env.setenv("WORKSHOP_IMAGE_ACTORS", "5")
        env.delenv("WORKSHOP_PROFILE")
        sent = cluster._shared_runtime_env(recorded)
    assert sent == {"env_vars": {"WORKSHOP_PROFILE": "", "WORKSHOP_IMAGE_ACTORS": "5", "WORKSHOP_USER": "ada"}}


def test_the_ray_mode_setting(monkeypatch):
    monkeypatch.setenv("WORKSHOP_RAY", "process")
    assert cluster.ray_mode() == "process"
    monkeypatch.setenv("WORKSHOP_RAY", " Shared ")
    assert cluster.ray_mode() == "shared"
    monkeypatch.delenv("WORKSHOP_RAY")
    assert cluster.ray_mode() == "process", "a script (not a notebook kernel) gets a Ray of its own by default"
    monkeypatch.setenv("WORKSHOP_RAY", "always")
    with pytest.raises(SettingsError, match="WORKSHOP_RAY='always': use one of auto, shared, process"):
        cluster.ray_mode()


def test_a_ray_start_cluster_headed_here_is_joined_before_any_shared_ray(tmp_path, monkeypatch):
    """A JupyterLab on a cluster's head (Anyscale's too) has no RAY_ADDRESS: the head's record names the cluster."""
    import socket

    record = tmp_path / "ray_current_cluster"
    monkeypatch.setattr(cluster, "RAY_CURRENT_CLUSTER", record)
    assert cluster._running_local_cluster() is None  # no record
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        record.write_text(address + "\n")
        assert cluster._running_local_cluster() == address
    assert cluster._running_local_cluster() is None, "a record of a stopped cluster was taken for a running one"


def test_a_ray_start_cluster_is_left_alone_when_workshop_ray_names_the_workshops_own(tmp_path, monkeypatch):
    """A learner who ran ``ray start`` for something else keeps the lessons off it with WORKSHOP_RAY."""
    import socket

    record = tmp_path / "ray_current_cluster"
    monkeypatch.setattr(cluster, "RAY_CURRENT_CLUSTER", record)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        record.write_text(address + "\n")
        monkeypatch.delenv("WORKSHOP_RAY", raising=False)
        assert cluster.address_to_join() == ("auto", address)
        for chosen in ("shared", "process"):
            monkeypatch.setenv("WORKSHOP_RAY", chosen)
            assert cluster.address_to_join() == (None, None), chosen
        monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
        assert cluster.address_to_join() == ("10.0.0.1:6379", None), "RAY_ADDRESS comes first, whatever the mode"
    note = cluster._joined_ray_start_note(address)
    assert f"({address}, named in {record})" in note and "WORKSHOP_RAY=shared" in note and "ray stop" in note


#: The first lesson's ``helpers.start()``, interrupted (Kernel > Interrupt) while the workshop's Ray starts: the
#: interrupt comes once the supervisor runs (a process whose working folder is the Ray's folder).
INTERRUPTED_START = """
import _thread, os, sys, threading, time
from pathlib import Path
folder = Path(os.environ["WORKSHOP_RAY_DIR"]).resolve()

def supervisor_runs():
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.name) != os.getpid() and Path(os.readlink(proc / "cwd")) == folder:
                return True
        except OSError:
            pass
    return False

def interrupt_once_it_runs():
    while not supervisor_runs():
        time.sleep(0.05)
    _thread.interrupt_main()

threading.Thread(target=interrupt_once_it_runs, daemon=True).start()
import helpers
try:
    helpers.start()
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
"""


def _processes_of(folder: Path) -> list[int]:
    """The processes that work in ``folder`` or name it on their command line: the supervisor and its Ray."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            in_folder = Path(os.readlink(proc / "cwd")) == folder.resolve()
            named = str(folder) in (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if in_folder or named:
            found.append(int(proc.name))
    return found


def test_an_interrupted_first_start_leaves_no_ray_behind(ray_dir):
    """Interrupted while its Ray starts, the lesson's start stops that Ray too: left running, it would record itself
    after the next start had begun a second Ray beside it, and only one of the two could be stopped."""
    with deadline(180, "the interrupted start"):
        done = subprocess.run([sys.executable, "-c", INTERRUPTED_START], env=lesson_env(), capture_output=True,
                              text=True, check=False, timeout=170)
    assert "INTERRUPTED" in done.stdout, done.stdout + done.stderr[-3000:]
    time.sleep(2)  # what a supervisor left running would do meanwhile: go on starting its Ray
    left = {pid: _described(pid) for pid in _processes_of(ray_dir)}
    for pid in left:  # the test's own clean-up, so that a failure leaves nothing running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    assert left == {}, "processes of the interrupted start still run"


def _described(pid: int) -> str:
    """A process's group and command, for a failure message."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return f"group {os.getpgid(pid)}: {command[:200]}"
    except OSError:
        return "ended"


def test_a_workshop_ray_started_under_the_folders_real_path_is_still_ours(tmp_path):
    """On macOS ``/tmp`` is a link to ``/private/tmp``, and the supervisor, which runs in the folder, names Ray's
    temporary folder by the real path: the folder as the learner names it still finds its Ray."""
    real = tmp_path / "real"
    (real / "ray").mkdir(parents=True)
    linked = tmp_path / "linked"
    linked.symlink_to(real)
    ray_like = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "ray start --head",
                                 f"--temp-dir={real / 'ray'}", "--port=0"], start_new_session=True)
    try:
        wait_until(lambda: shared_ray.group_alive(ray_like.pid), 30, "the stand-in group did not start")
        assert shared_ray.is_workshop_group(ray_like.pid, linked)
        assert not shared_ray.is_workshop_group(ray_like.pid, tmp_path / "elsewhere")
    finally:
        ray_like.kill()
        ray_like.wait()


def test_a_ray_folder_too_long_for_rays_sockets_is_refused_before_anything_starts(tmp_path, monkeypatch):
    """Ray puts its sockets under the folder and refuses a path past the AF_UNIX limit, but only in the
    supervisor's log once it has started; the start says so first, naming the setting."""
    long_folder = tmp_path / ("x" * 60)
    monkeypatch.setenv("WORKSHOP_RAY_DIR", str(long_folder))
    with pytest.raises(RuntimeError, match=rf"^WORKSHOP_RAY_DIR={long_folder} is too long: Ray's socket paths under "
                                           r"it would take \d+ bytes, and at most 10[37] fit; choose a shorter folder"):
        shared_ray.ensure_running(["--num-cpus=1"], {}, idle_minutes=1)
    assert not long_folder.exists(), "nothing was made"


def test_the_last_kill_spares_a_group_that_took_the_number_of_the_one_that_ended(monkeypatch):
    """Process ids stop at 32768 on many Linux machines, so a group's number comes back soon after the group
    ends; a stop's last kill must not reach the group that took it. Stand-in for that timing (no test can make
    the system reuse an id): the group's member when the wait began is a process that has ended since, and the
    number now names another group of this user's."""
    import psutil

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    member = psutil.Process(ended.pid)
    ended.wait()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        real = shared_ray._group_processes
        first = [[member]]
        monkeypatch.setattr(shared_ray, "_group_processes", lambda pgid: first.pop() if first else real(pgid))
        shared_ray.kill_once_idle(other.pid)
        time.sleep(0.5)
        assert other.poll() is None, "the group that took the number was killed"
    finally:
        other.kill()
        other.wait()
