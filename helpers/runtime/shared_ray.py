"""One Ray for all of a learner's lessons: the first lesson starts it in the background, the next ones join it.

Why: JupyterLab keeps every opened lesson's kernel running. When each kernel
starts a Ray of its own (``ray.init()``), seven open lessons keep seven Rays,
about 1.4 GB and eight processes each, and the idle ones compete for the cores.
Here the first lesson starts one Ray with ``ray start --head`` under a small
supervisor process, and later lessons join it in about a second.

What stays running, and how it stops:

* ``python -m helpers.workshop_ray stop`` (or ``helpers.stop_workshop_ray()``
  in a cell) stops it at once; ``python -m helpers.workshop_ray status`` says
  whether it runs and which kernels use it;
* by itself, ``WORKSHOP_RAY_IDLE_MINUTES`` (default 15) after the last kernel
  that used it has ended (JupyterLab's "Shut Down Kernel", or quitting JupyterLab).

It never runs ``ray stop``, which would stop every Ray on the machine: the
supervisor, ``ray start`` and every Ray process it starts share one process
group, and only that group is signalled. One such Ray exists per user and
clone; its files (state, token, logs, Ray's session folder) live in
``/tmp/rdw-<uid>-<clone hash>`` (or ``WORKSHOP_RAY_DIR``), a short path because Ray's Unix socket paths
must stay under 108 bytes (104 on macOS). The token (Ray 2.60's ``ray start`` turns token
authentication on) is readable by this user only.

This module imports only the standard library at the top: the supervisor runs
it as ``python -m helpers.runtime.shared_ray serve`` and must stay small.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from helpers.runtime.ports import answers, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))

#: How long a first lesson waits for the background Ray to answer (Ray takes 5-15 s on 2 cores).
START_TIMEOUT_S = 120
#: How long ``stop`` waits for Ray's processes to exit before it kills them.
STOP_TIMEOUT_S = 30
#: How often the supervisor looks for kernels that still use the Ray.
POLL_S = 5.0
DEFAULT_IDLE_MINUTES = 15.0
#: What every worker of a Ray the workshop starts inherits, unless the environment already says otherwise:
#: one polars thread per task, as Ray Data asks for its join tasks in a runtime_env of their own
#: (``ray_internals.share_shuffle_workers`` runs them in the job's workers instead).
WORKER_ENV = {"POLARS_MAX_THREADS": "1"}
#: What the shared Ray alone runs with, unless the environment already says otherwise. A worker
#: serves one job, and Ray starts one per logical CPU for the first driver that connects: here the
#: first lesson's kernel, which needs two or three, while eight starting workers fill two cores.
#: Lesson 00 took 19.0 s twice without them against 22.6 and 25.9 s with them (2 shared cores).
SHARED_RAY_ENV = {**WORKER_ENV, "RAY_prestart_worker_first_driver": "0"}


def state_dir() -> Path:
    """This user's and this clone's folder for the shared Ray (short: Ray puts sockets under it).

    ``WORKSHOP_RAY_DIR`` names another (for a machine whose ``/tmp`` is not
    writable, or a second shared Ray for the same clone).
    """
    chosen = os.environ.get("WORKSHOP_RAY_DIR")
    if chosen:
        return Path(chosen)
    clone = hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:8]
    return Path(f"/tmp/rdw-{os.getuid()}-{clone}")


@dataclass(frozen=True)
class SharedRay:
    """A running shared Ray, as its supervisor recorded it."""

    address: str
    pgid: int
    token_path: str
    dashboard_url: str | None
    env: dict  # the WORKSHOP_* environment its workers inherit from the kernel that started it
    started: float
    idle_minutes: float = DEFAULT_IDLE_MINUTES  # it stops itself after this long without a kernel


def _state_file(folder: Path) -> Path:
    return folder / "state.json"


def _record(folder: Path) -> dict:
    """What ``state.json`` records of the workshop's Ray (its address, process group, ...); {} when it is unreadable."""
    try:
        recorded = json.loads(_state_file(folder).read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _forget(folder: Path, pgid: int) -> None:
    """Remove the state file if it still records the Ray of group ``pgid``.

    A stop waits up to a minute; meanwhile a lesson's ``helpers.start()`` may have
    started a new workshop Ray, whose record must survive the old one's stop.
    """
    if _record(folder).get("pgid") == pgid:
        _state_file(folder).unlink(missing_ok=True)


def _group_processes(pgid: int) -> list:
    """This user's running processes in group ``pgid`` (zombies do not count), as psutil finds them.

    psutil reads /proc on Linux and asks the kernel on macOS, so both tell a
    workshop Ray from whatever took its number. Another user's processes never
    count: after a reboot, the recorded number may name a group of theirs.
    """
    import psutil

    found = []
    for process in psutil.process_iter(["uids", "status"]):
        try:
            uids, status = process.info["uids"], process.info["status"]
            if uids is not None and uids.real == os.getuid() and status != psutil.STATUS_ZOMBIE \
                    and os.getpgid(process.pid) == pgid:
                found.append(process)
        except (OSError, psutil.Error):
            continue
    return found


def _command(process) -> str:
    """A process's command line, each argument followed by a space (empty when it cannot be read)."""
    import psutil

    try:
        return "".join(f"{argument} " for argument in process.cmdline())
    except psutil.Error:
        return ""


#: The command of a workshop Ray's supervisor (its process group's leader).
_SUPERVISOR_COMMAND = "helpers.runtime.shared_ray serve"


def is_workshop_group(pgid: int, folder: Path) -> bool:
    """Whether group ``pgid`` runs the workshop Ray of ``folder``, not something else that took the number.

    After a reboot the recorded number may name any group of this user's, a
    kernel with a Ray of its own included: only the supervisor's command, or
    Ray's processes started with this folder's ``--temp-dir``, say it is ours.
    """
    folders = dict.fromkeys((folder, folder.resolve()))  # the supervisor runs in the resolved one (/private/tmp)
    marks = (_SUPERVISOR_COMMAND, *(f"--temp-dir={each / 'ray'} " for each in folders),
             *(f"{each / 'ray'}/session_" for each in folders))
    commands = (_command(process) for process in _group_processes(pgid))  # each read once
    return any(mark in command for command in commands for mark in marks)


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies waiting to be reaped do not count)."""
    return bool(_group_processes(pgid))


def running(folder: Path | None = None) -> SharedRay | None:
    """The shared Ray of this user and clone, when its processes live and its address answers."""
    raw = _record(folder or state_dir())
    try:
        shared = SharedRay(**{name: raw[name] for name in SharedRay.__dataclass_fields__ if name in raw})
    except TypeError:  # a field missing: a record of another version, or none
        return None
    if group_alive(shared.pgid) and answers(shared.address):
        return shared
    return None


def register_driver() -> None:
    """Record this process as a user of the shared Ray, so the supervisor keeps it up while it lives."""
    kernels = state_dir() / "kernels"
    kernels.mkdir(exist_ok=True)
    (kernels / str(os.getpid())).touch()


def live_drivers(folder: Path) -> list[int]:
    """Registered processes that are still alive; the entries of ended ones are removed."""
    alive = []
    for entry in sorted((folder / "kernels").glob("*")):
        try:
            pid = int(entry.name)
            os.kill(pid, 0)
            alive.append(pid)
        except (ValueError, ProcessLookupError, PermissionError):  # ended, or the number is another user's now
            entry.unlink(missing_ok=True)
    return alive


@contextlib.contextmanager
def _launch_lock(folder: Path):
    """One launcher at a time: two lessons opened together must not start two Rays."""
    with open(folder / "launch.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: The longest socket path Ray makes under the folder (a session named with a 7-digit process id), and the most
#: bytes Ray takes in one (an AF_UNIX path: 107 on Linux, 103 on macOS).
_LONGEST_SOCKET = Path("ray") / "session_2026-11-27_06-08-48_429429_1234567" / "sockets" / "plasma_store"
_SOCKET_LIMIT = 103 if sys.platform == "darwin" else 107


def _private_folder() -> Path:
    folder = state_dir()
    longest = len(str(folder.resolve() / _LONGEST_SOCKET).encode())  # the supervisor runs in the real path
    if longest > _SOCKET_LIMIT:  # Ray would refuse it only once started, in its own log
        raise RuntimeError(
            f"WORKSHOP_RAY_DIR={folder} is too long: Ray's socket paths under it would take {longest} bytes, and "
            f"at most {_SOCKET_LIMIT} fit; choose a shorter folder, such as /tmp/rdw"
        )
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_uid != os.getuid():
        raise PermissionError(f"{folder} belongs to another user; remove it or run as its owner")
    folder.chmod(0o700)
    return folder


def start_args(num_cpus: float, num_gpus: float | None, dashboard: bool, node_ip: str) -> list[str]:
    """``ray start`` arguments for the lessons' shape (the same sizing as a local ``ray.init``)."""
    args = [f"--num-cpus={num_cpus:g}", f"--node-ip-address={node_ip}"]
    if num_gpus is not None:
        args.append(f"--num-gpus={num_gpus:g}")
    if dashboard:
        args += ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={free_port()}"]
    else:
        args.append("--include-dashboard=false")
    return args


def ensure_running(args: list[str], env: dict[str, str], idle_minutes: float) -> tuple[SharedRay, bool]:
    """The shared Ray, started in the background if none runs. Returns it and whether it was started now.

    ``env`` is the WORKSHOP_* environment its workers will inherit. Raises
    ``RuntimeError`` with the last lines of Ray's output when it does not come up.
    """
    folder = _private_folder()
    with _launch_lock(folder):
        shared = running(folder)
        if shared is not None:
            return shared, False
        _refuse_unreachable(folder)
        _state_file(folder).unlink(missing_ok=True)
        token = folder / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        log = folder / "supervisor.log"
        command = [sys.executable, "-m", "helpers.runtime.shared_ray", "serve", "--idle-minutes",
                   f"{idle_minutes:g}", "--env", json.dumps(env), "--", *args]
        child_env = {**SHARED_RAY_ENV, **os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        child_env.pop("RAY_ADDRESS", None)
        with open(log, "wb") as out:
            supervisor = subprocess.Popen(command, env=child_env, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True, cwd=folder)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                shared = running(folder)
                if shared is not None:
                    return shared, True
                if supervisor.poll() is not None:
                    break
                time.sleep(0.2)
        except BaseException:  # an interrupted start (Kernel > Interrupt) must not leave a Ray nobody knows of
            _kill_starting(supervisor)
            raise
        _kill_starting(supervisor)
        raise RuntimeError(f"the workshop's Ray did not start: {_tail(log) or 'see ' + str(log)}")


def _kill_starting(supervisor: subprocess.Popen) -> None:
    """Stop a supervisor whose Ray has not come up, with every process it started (its own session).

    Left running, it would record its Ray after the next start had begun another
    beside it, and ``status`` and ``stop`` would only see one of the two.
    """
    deadline = time.monotonic() + STOP_TIMEOUT_S
    # The leader stays unreaped until the end: while it is a zombie no other process can take its id, so
    # every kill below reaches this group and no group that took the number.
    while True:  # again while its group lives: a child being forked as the first signal went out escapes it
        with contextlib.suppress(ProcessLookupError, PermissionError):  # macOS: a group of zombies only
            os.killpg(supervisor.pid, signal.SIGKILL)
        if not group_alive(supervisor.pid) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    supervisor.wait()


def _refuse_unreachable(folder: Path) -> None:
    """Refuse to start a second Ray beside a recorded one that runs but no longer answers at its address.

    It listens on the address this machine had when it started; after a change
    of network (another Wi-Fi, a VPN) nothing reaches it, and a new Ray beside
    it would leave it running where ``status`` and ``stop`` no longer see it.
    """
    recorded = _record(folder)
    try:
        pgid, address = int(recorded["pgid"]), recorded["address"]
    except (KeyError, TypeError, ValueError):
        return
    if is_workshop_group(pgid, folder):
        raise RuntimeError(
            f"the workshop's Ray (process group {pgid}) still runs but does not answer at {address}: if it is "
            "stopping, run helpers.start() again in a minute; if this machine's network address changed since it "
            "started, stop it with python -m helpers.workshop_ray stop (or helpers.stop_workshop_ray()), then run "
            "helpers.start() again"
        )


def _still_working(pgid: int) -> bool:
    """Whether group ``pgid`` still has a raylet or a worker, which stop their own work on SIGTERM.

    What is left then (Ray's GCS server, ``ray start --block``, its log monitor)
    holds nothing of a learner's and, in Ray 2.60, takes 30 s to leave after
    SIGTERM: it is killed at once instead of waited for.
    """
    return any(_is_raylet_or_worker(process) for process in _group_processes(pgid))


def _is_raylet_or_worker(process) -> bool:
    """The raylet, or a worker (``ray::...``: its name on Linux, its command line wherever it sets its title)."""
    import psutil

    try:
        name = process.name()
    except psutil.Error:
        return False
    return name == "raylet" or name.startswith("ray::") or _command(process).startswith("ray::")


def kill_once_idle(pgid: int) -> None:
    """After a SIGTERM: wait (at most ``STOP_TIMEOUT_S``) for the raylet and workers of ``pgid``, then kill the rest.

    A group's number is its leader's process id, which the system hands out
    again once the group has ended (soon, where ids stop at 32768): the last
    kill goes to the group only while a process that was in it when the wait
    began still runs, never to a group that took the number meanwhile.
    """
    members = _group_processes(pgid)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _still_working(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if any(_still_runs(member) for member in members):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _still_runs(process) -> bool:
    """Whether ``process`` (a psutil process) has not ended: the same process, not another that took its id."""
    import psutil

    try:
        return process.is_running()
    except psutil.Error:
        return False


def stop(folder: Path | None = None) -> bool:
    """Stop the shared Ray of this user and clone. Returns False when none was running."""
    folder = folder or state_dir()
    pgid = _record(folder).get("pgid")
    if not isinstance(pgid, int):
        return False
    if not is_workshop_group(pgid, folder):  # ended, or the number names another group: nothing of ours to stop
        _forget(folder, pgid)
        return False
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    except PermissionError:  # only on macOS, where the group's owner is not read: not this user's group
        _forget(folder, pgid)
        return False
    kill_once_idle(pgid)
    deadline = time.monotonic() + 10
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    _forget(folder, pgid)
    return True


def stopped_message(stopped: bool) -> str:
    """What ``stop`` says, from the command line and from a notebook alike."""
    return "Stopped the workshop's Ray." if stopped else "The workshop's Ray was not running."


def describe(folder: Path | None = None) -> str:
    """One paragraph for ``status``: whether the shared Ray runs, where, and for whom."""
    folder = folder or state_dir()
    shared = running(folder)
    if shared is None:
        return "The workshop's Ray is not running (the next lesson's helpers.start() starts it)."
    drivers = live_drivers(folder)
    minutes = (time.time() - shared.started) / 60
    users = ", ".join(map(str, drivers)) or "none"
    return (f"The workshop's Ray runs at {shared.address} (up {minutes:.0f} min, process group {shared.pgid}); "
            f"kernels using it: {users}. Stop it with: python -m helpers.workshop_ray stop")


# -- the supervisor ------------------------------------------------------------------------------------------


#: What ``ray start`` prints once its head node is up (GCS, raylet and all); the port answers sooner.
RAY_STARTED = "Ray runtime started."
#: What it says when its processes missed Ray's start-up deadline on a busy machine: worth one more try.
RAY_SLOW_START = "timed out during startup"
#: What a start that tries once more says (a lesson's own Ray and the workshop's alike).
TRYING_AGAIN = "Ray was slow to start on this busy machine; trying once more ..."


def _start_head(folder: Path, args: list[str]) -> tuple[subprocess.Popen, str] | None:
    """Start ``ray start --head --block`` and wait until it says the node is up; None when it ended instead.

    Its output is copied into this supervisor's log, then and for as long as it runs.
    """
    port = free_port()
    node_ip = next((a.split("=", 1)[1] for a in args if a.startswith("--node-ip-address=")), "127.0.0.1")
    ray_start = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--disable-usage-stats", f"--port={port}",
         f"--temp-dir={folder / 'ray'}", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    for line in ray_start.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if RAY_STARTED in line:
            sys.stdout.flush()
            threading.Thread(target=shutil.copyfileobj, args=(ray_start.stdout, sys.stdout), daemon=True).start()
            return ray_start, f"{node_ip}:{port}"
    ray_start.wait()
    return None


def serve(args: list[str], env: dict, idle_minutes: float) -> int:
    """Run ``ray start --head --block`` until asked to stop or idle; record it in ``state.json``."""
    folder = Path.cwd()
    stopping = False

    def on_term(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    started = _start_head(folder, args)
    if started is None and RAY_SLOW_START in _tail(folder / "supervisor.log"):
        print(TRYING_AGAIN, flush=True)
        started = _start_head(folder, args)
    if started is None or stopping:
        return 1
    ray_start, address = started
    dashboard_port = next((a.split("=", 1)[1] for a in args if a.startswith("--dashboard-port=")), None)
    state = {"address": address, "pgid": os.getpgrp(), "token_path": str(folder / "auth_token"),
             "dashboard_url": f"http://127.0.0.1:{dashboard_port}" if dashboard_port else None,
             "env": env, "started": time.time(), "idle_minutes": idle_minutes}
    partial = folder / "state.json.partial"
    partial.write_text(json.dumps(state))
    partial.replace(_state_file(folder))
    print(f"the workshop's Ray runs at {address}", flush=True)
    idle_since, next_look = None, time.monotonic()
    while not stopping and ray_start.poll() is None:
        time.sleep(0.5)  # short sleeps: a stop request is seen at once
        if time.monotonic() < next_look:
            continue
        next_look = time.monotonic() + POLL_S
        if live_drivers(folder):
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > idle_minutes * 60:
            print(f"no kernel has used the workshop's Ray for {idle_minutes:g} min: stopping it", flush=True)
            break
    _forget(folder, os.getpgrp())
    if ray_start.poll() is None:
        ray_start.send_signal(signal.SIGTERM)  # ray start --block stops the processes it started
        # As stop() does; the group's kill ends this supervisor too, which has nothing left to do.
        print("the workshop's Ray is stopping", flush=True)
        kill_once_idle(os.getpgrp())
    return 0


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.workshop_ray",
                                     description="The Ray that the workshop's lessons share on this machine.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="say whether it runs, where, and which kernels use it")
    commands.add_parser("stop", help="stop it now (the lessons' next helpers.start() starts a new one)")
    serve_parser = commands.add_parser("serve", help=argparse.SUPPRESS)
    serve_parser.add_argument("--idle-minutes", type=float, default=DEFAULT_IDLE_MINUTES)
    serve_parser.add_argument("--env", default="{}")
    serve_parser.add_argument("ray_args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    if options.command == "status":
        print(describe())
    elif options.command == "stop":
        print(stopped_message(stop()))
    else:
        ray_args = [a for a in options.ray_args if a != "--"]
        return serve(ray_args, json.loads(options.env), options.idle_minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
