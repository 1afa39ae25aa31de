"""Start or join Ray the same way on a laptop, a GPU box and a cluster.

``helpers.start()`` is the first code cell of every lesson. It:

* joins the cluster that ``RAY_ADDRESS`` names; else, in a notebook, starts
  (or joins) the one Ray that all lessons share on this machine
  (:mod:`helpers.runtime.shared_ray`), so open lessons do not each keep a Ray;
  else (a script, the pipeline command) starts a Ray that ends with the process;
* on a CPU-only machine declares two *logical* GPUs, so the lessons'
  ``num_gpus=1`` and ``num_gpus=0.5`` requests schedule exactly as on
  the two-GPU cluster the lessons describe, while the models run on CPU;
* declares enough logical CPUs that GPU actors never starve the read and map
  tasks (on 2 cores, default sizing hangs forever);
* in a notebook, checks before Ray starts that the lesson's data and models
  are on the storage root (:mod:`helpers.runtime.readiness`), and once Ray is
  up, that the ``WORKSHOP_*`` pool sizes fit the cluster, so that each mistake
  is one line naming what to run or which variable to change;
* installs the fail-fast resource check (:mod:`helpers.runtime.resources`);
* lets a join's shuffle tasks run in the job's workers instead of starting
  about ten of their own (``ray_internals.share_shuffle_workers``);
* forwards the workshop's environment to workers, and ships this package to
  them when joining a cluster whose other nodes may not have it.

Calling it again in the same kernel returns the same session.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers.errors import ActionableError, SettingsError
from helpers.runtime import ray_internals, shared_ray
from helpers.runtime.node_constraints import EPS
from helpers.runtime.ports import answers, connection_error, is_host_port
from helpers.runtime.preflight import check_nodes, check_token
from helpers.runtime.probe import ProfileDecision, decide
from helpers.runtime.readiness import LessonCheck, Need, needs
from helpers.runtime.settings import (
    LESSON_GPUS,
    Settings,
    _env,
    check_storage_writable,
    env_flag,
    forwarded_env,
    load_settings,
    requested_profile,
)

PACKAGE_DIR = Path(__file__).resolve().parents[1]
RAY_MODES = ("auto", "shared", "process")


def _ray_address_file() -> Path:
    """Where ``ray start --head`` records its address, by Ray's own rule: ``RAY_TMPDIR``, then on Linux
    ``TMPDIR``, else ``/tmp``, and ``ray/ray_current_cluster`` under it (a cluster head, e.g. Anyscale's, has one)."""
    base = os.environ.get("RAY_TMPDIR") or (os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None)
    return Path(base or "/tmp") / "ray" / "ray_current_cluster"


RAY_CURRENT_CLUSTER = _ray_address_file()

#: Lesson 05 runs two stages of two actors at once; each actor takes one
#: logical CPU, and Ray Data needs CPUs left for reading and small map tasks.
LOGICAL_CPUS_FOR_LESSONS = 8


@dataclass
class Session:
    """What a lesson needs after ``start()``: the settings and the cluster's shape."""

    settings: Settings
    address: str
    started_here: bool
    resources: dict
    dashboard_url: str | None
    seconds: float
    #: "started" or "joined" when this kernel uses the Ray that the lessons share, else None.
    shared: str | None = None
    #: After how long without a kernel the shared Ray stops itself (as the kernel that started it said).
    shared_idle_minutes: float = shared_ray.DEFAULT_IDLE_MINUTES
    #: The profile, why, and what the cluster's GPU nodes reported (helpers.runtime.probe).
    decision: ProfileDecision | None = None
    #: What the pre-flight check found worth saying that is no error (models to download).
    notes: list[str] = field(default_factory=list)

    @property
    def joined_a_cluster(self) -> bool:
        """True for a cluster the workshop did not start (``RAY_ADDRESS``, or a ``ray start`` head here)."""
        return self.shared is None and not self.started_here

    @property
    def image(self):
        return self.settings.image

    @property
    def llm(self):
        return self.settings.llm

    def readiness(self) -> list[Need]:
        """What the lessons read from the storage root (data, model folders), each with what is wrong, if anything."""
        return needs(self.settings, None)

    def describe(self) -> str:
        cpus = self.resources.get("CPU", 0)
        gpus = self.resources.get("GPU", 0)
        if self.shared == "started":
            how = "started the workshop's Ray in the background"
        elif self.shared == "joined":
            how = "joined the workshop's Ray (an earlier lesson started it)"
        elif self.started_here:
            how = "started a local Ray"
        else:
            how = f"joined the cluster at {self.address}"
        # On the CPU profile the GPUs Ray counts are declared, not devices: say so there only.
        logical = " (logical on a CPU machine)" if gpus and self.settings.profile == "cpu" else ""
        nodes = len(_alive_nodes())
        lines = [f"Ray: {how} in {self.seconds:.1f} s - {cpus:g} CPUs, {gpus:g} GPUs{logical}, {nodes} node(s)"]
        if self.shared:
            lines.append(
                "It stays up for your next lessons and stops by itself "
                f"{self.shared_idle_minutes:g} min after the last lesson's kernel ends; "
                "stop it now with helpers.stop_workshop_ray() or: python -m helpers.workshop_ray stop"
            )
        if self.dashboard_url:
            lines.append(f"Dashboard: {self.dashboard_url}{_dashboard_login()}")
        lines.append(self.settings.table())
        if self.decision is not None:
            lines += self.decision.lines()
        lines += [f"Note: {note}" for note in self.notes]
        if self.settings.uses_small_models:
            lines.append(
                "CPU profile: small local models; the pictures come from an untrained "
                "model and look like noise. The pipeline is the lesson, not the art."
            )
        return "\n".join(lines)


def _dashboard_login() -> str:
    """What the dashboard asks for first: with token authentication (the shared Ray's), the token this kernel sends."""
    if os.environ.get("RAY_AUTH_MODE") != "token":
        return ""
    where = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return f" (it asks for a token: paste the contents of {where})" if where else " (it asks for Ray's token)"


_session: Session | None = None
#: The GPU nodes of the joined cluster that the probe has asked (at start, or before a later run).
_asked_gpu_nodes: frozenset[str] = frozenset()


def _alive_nodes() -> list[dict]:
    import ray

    return [node for node in ray.nodes() if node.get("Alive")]


def _running_local_cluster() -> str | None:
    """The address of a ``ray start`` cluster whose head is this machine, if one answers.

    A JupyterLab on a cluster's head node (Anyscale's workspaces included) finds
    its cluster this way, without ``RAY_ADDRESS``. Clusters started with their
    own ``--temp-dir`` (the shared workshop Ray, the tests' clusters) record
    their address elsewhere and are not found here.
    """
    try:
        address = RAY_CURRENT_CLUSTER.read_text().strip()
    except OSError:
        return None
    return address if answers(address) else None


def address_to_join() -> tuple[str | None, str | None]:
    """The cluster ``helpers.start()`` joins (None: a Ray of the workshop's), and the ``ray start`` one it found here.

    ``RAY_ADDRESS`` first. Else a cluster from ``ray start`` on this machine is
    joined as ``auto``, so that Ray itself finds it and its token (Ray 2.60
    turns token authentication on), unless ``WORKSHOP_RAY`` names the
    workshop's own Ray (``shared`` or ``process``): a learner who ran
    ``ray start`` for something else can keep the lessons off it.
    """
    if _env("RAY_ADDRESS"):
        return _env("RAY_ADDRESS"), None
    if _ray_mode_setting() != "auto":
        return None, None
    found_here = _running_local_cluster()
    return ("auto", found_here) if found_here else (None, None)


def _joined_ray_start_note(address: str) -> str:
    """What to do when the lessons joined a ``ray start`` cluster of this machine that cannot run them."""
    return (
        f"This lesson joined the Ray that `ray start` runs on this machine ({address}, named in "
        f"{RAY_CURRENT_CLUSTER}), not the workshop's own Ray. To use the workshop's own Ray instead, start "
        "JupyterLab with WORKSHOP_RAY=shared (WORKSHOP_RAY=shared .venv/bin/jupyter lab), or run "
        "os.environ['WORKSHOP_RAY'] = 'shared' in this notebook and helpers.start() again; or, if that Ray "
        "is yours and nothing else uses it, stop it with `ray stop`."
    )


def _idle_minutes() -> float:
    from helpers.runtime.settings import env_number

    return env_number("WORKSHOP_RAY_IDLE_MINUTES", shared_ray.DEFAULT_IDLE_MINUTES, kind=float, minimum=0)


def _ray_mode_setting() -> str:
    """``WORKSHOP_RAY`` as set (``auto`` when unset), refused when it names no mode."""
    mode = (_env("WORKSHOP_RAY", "auto") or "auto").strip().lower()
    if mode not in RAY_MODES:
        raise SettingsError(f"WORKSHOP_RAY={mode!r}: use one of {', '.join(RAY_MODES)}")
    return mode


def ray_mode() -> str:
    """``shared`` (use the Ray the lessons share) or ``process`` (a Ray that ends with this process).

    ``WORKSHOP_RAY`` picks; ``auto`` (the default) means shared in a notebook
    kernel, where JupyterLab keeps lessons open side by side, and a Ray of its
    own for a script or a command, which ends with it.
    """
    from helpers.show.ipython import in_notebook

    mode = _ray_mode_setting()
    if mode == "auto":
        return "shared" if in_notebook() else "process"
    return mode


def _shared_runtime_env(shared: shared_ray.SharedRay) -> dict | None:
    """Nothing when this kernel's WORKSHOP_* settings are those the shared Ray's workers inherited.

    Otherwise this kernel's settings travel with its jobs (a runtime_env costs
    each worker seconds, so only then), and variables it no longer sets go as
    empty, which the settings read as unset.
    """
    current = forwarded_env()
    if current == shared.env:
        return None
    return {"env_vars": {**{name: "" for name in shared.env if name not in current}, **current}}


def _join_shared_ray(settings: Settings) -> tuple[shared_ray.SharedRay, bool]:
    """Start the shared Ray when none runs (sized as a local Ray would be), and prepare to join it."""
    from ray.util import get_node_ip_address

    kwargs = local_init_kwargs(settings)
    args = shared_ray.start_args(kwargs["num_cpus"], kwargs.get("num_gpus"), kwargs["include_dashboard"],
                                 get_node_ip_address())
    try:
        shared, launched = shared_ray.ensure_running(args, forwarded_env(), _idle_minutes())
    except (RuntimeError, PermissionError) as err:
        raise SettingsError(f"{err}; or set WORKSHOP_RAY=process to start a Ray in this kernel only") from None
    ray_internals.use_token_auth(shared.token_path)
    shared_ray.register_driver()
    return shared, launched


#: The address of the shared Ray this process joined, as its record names it.
_joined_shared: str | None = None


def _same_shared_ray() -> bool:
    """Whether the shared Ray this process joined still runs (not stopped, nor replaced by a new one)."""
    current = shared_ray.running()
    return current is not None and current.address == _joined_shared


def check_shared_size(settings: Settings, resources: dict) -> None:
    """Refuse a ``WORKSHOP_NUM_CPUS`` / ``WORKSHOP_NUM_GPUS`` that the shared Ray, already running, does not have.

    The lessons share one Ray, sized by the first lesson that started it; a
    size set later, for this lesson's kernel, cannot change it, and every
    message that advises the variable would be given again and again.
    """
    asked = {"WORKSHOP_NUM_CPUS": (settings.num_cpus, "CPU"), "WORKSHOP_NUM_GPUS": (settings.num_gpus, "GPU")}
    differ = [f"{name}={value:g}, but it has {resources.get(key, 0):g} {key}s"
              for name, (value, key) in asked.items()
              if value is not None and abs(resources.get(key, 0) - value) > EPS]
    if differ:
        raise SettingsError(
            f"The workshop's Ray that the lessons share was already running, started by another lesson: "
            f"{'; '.join(differ)}. A size applies when that Ray starts: stop it with "
            "helpers.stop_workshop_ray() (the open lessons lose it; their next helpers.start() starts it again) "
            "or python -m helpers.workshop_ray stop, then run helpers.start() again."
        )


#: How long a cluster's address may take to accept a connection before it counts as down.
ADDRESS_PROBE_S = 3.0


def check_cluster_answers(address: str) -> None:
    """Fail in seconds when ``RAY_ADDRESS`` names a ``host:port`` where nothing listens.

    ``ray.init`` would wait minutes for a GCS that is not there (a cluster
    that was stopped, a typo, an address from yesterday's session). Addresses
    Ray resolves itself (``auto``, ``local``, ``ray://`` clients) are left to Ray.
    """
    if not is_host_port(address):
        return
    err = connection_error(address, ADDRESS_PROBE_S)
    if err is not None:
        raise SettingsError(
            f"RAY_ADDRESS={address}: no Ray cluster answers there ({err.strerror or err}); start the cluster "
            "(ray start --head) or fix the address, or unset RAY_ADDRESS to start a local Ray in this process"
        ) from None


def local_init_kwargs(settings: Settings) -> dict:
    """The ``ray.init`` arguments of a local Ray for ``settings``.

    At least the lessons' logical CPUs, so that a 2-core laptop runs their actor
    pools beside the read tasks, and, on the CPU profile, the lessons' two logical
    GPUs. ``setup.sh`` calls it too, so a bad setting fails there first.
    """
    physical = os.cpu_count() or 1
    kwargs = {
        "num_cpus": settings.num_cpus or max(physical, LOGICAL_CPUS_FOR_LESSONS),
        "include_dashboard": env_flag("WORKSHOP_DASHBOARD"),
        "dashboard_host": "127.0.0.1",
    }
    if settings.num_gpus is not None:
        kwargs["num_gpus"] = settings.num_gpus
    elif settings.profile == "cpu":
        kwargs["num_gpus"] = LESSON_GPUS
    return kwargs


@contextlib.contextmanager
def _worker_environment():
    """While Ray starts here, its processes inherit ``shared_ray.WORKER_ENV``; this process's stays as it was."""
    added = {name: value for name, value in shared_ray.WORKER_ENV.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _init_local(**kwargs):
    """Start a local Ray, trying once more if its processes were too slow to come up.

    On a busy 2-core machine the raylet can miss Ray's fixed start-up deadline
    ("timed out during startup"); a second try nearly always succeeds. Returns
    the ``RayContext`` that ``ray.init`` returns.
    """
    import ray

    with _worker_environment():
        try:
            return ray.init(**kwargs)
        except Exception as err:
            if shared_ray.RAY_SLOW_START not in str(err) and "Failed to connect" not in str(err):
                raise
            ray.shutdown()
            print(shared_ray.TRYING_AGAIN)
            return ray.init(**kwargs)


def join_runtime_env() -> dict | None:
    """What a driver ships to the cluster it joins: this package and the WORKSHOP_* settings.

    A cluster's other nodes may have neither, so by default both travel with
    every job. ``WORKSHOP_CLUSTER_HAS_HELPERS=1`` says that the cluster was
    started from this clone with this environment (as the test suite's shared
    cluster is): then nothing is shipped, and workers start seconds sooner,
    because Ray must prepare every worker of a job with a runtime environment.
    """
    if env_flag("WORKSHOP_CLUSTER_HAS_HELPERS"):
        return None
    from helpers.runtime.settings import resolve_models_dir, resolve_storage

    # The shipped copy of helpers lives in Ray's runtime_resources folder, where its own
    # defaults (storage/ next to the package) would point: send the driver's resolved roots.
    storage = resolve_storage()
    roots = {"WORKSHOP_STORAGE": str(storage), "WORKSHOP_MODELS": str(resolve_models_dir(storage))}
    return {"env_vars": {**roots, **forwarded_env()}, "py_modules": [str(PACKAGE_DIR)]}


def configure_data_context(workshop_ray: bool = True) -> None:
    """Ray Data settings for lessons: fail fast, and show progress without noise.

    ``workshop_ray`` says that the workshop started this Ray (the shared one, or
    one in this process), whose workers all have the one polars thread that a
    join's tasks ask for; on another cluster Ray Data's own arrangement stays.
    """
    import ray

    from helpers.runtime.overwrite import replace_only_when_complete
    from helpers.runtime.progress import configure_progress
    from helpers.runtime.resources import ResourceGuard

    ctx = ray.data.DataContext.get_current()
    if ResourceGuard not in ctx.custom_execution_callback_classes:
        ctx.custom_execution_callback_classes.append(ResourceGuard)
    # The guard runs after operators start; actor pools must start
    # asynchronously (Ray's default) for it to run before anything waits.
    ctx.wait_for_min_actors_s = -1
    # The images are PIL objects, which Arrow cannot hold: Ray Data pickles them, and unless told
    # that this is expected it warns about it once per worker process, in lessons 03 to 06.
    # Lesson 03 explains the pickles, which its lab is about; the warning would repeat it as noise.
    ctx.enable_fallback_to_arrow_object_ext_type = True
    if workshop_ray:
        # A join's shuffle tasks take the job's workers instead of starting about ten of their own.
        ray_internals.share_shuffle_workers()
    # Ray's mode="overwrite" empties the folder before the guard runs: keep the
    # earlier output until the new one is complete.
    replace_only_when_complete()
    # A notebook's stdout is not a terminal, so Ray Data would log a progress
    # table every few seconds into the cell: show one updating line instead.
    configure_progress()


def loaded_on_gpu_nodes(settings: Settings, decision: ProfileDecision) -> frozenset[str]:
    """The model folders that load on the GPU nodes only, and that every GPU node reported complete.

    A stage that asks for no GPU (``WORKSHOP_IMAGE_GPUS=0``) may run on any
    node, the head included, so its folder is not among them.
    """
    ready = decision.ready_model_folders() or frozenset()
    return frozenset(stage.model for stage in (settings.image, settings.llm)
                     if stage.num_gpus > 0 and stage.model in ready)


def check_gpu_nodes_joined_since_start() -> None:
    """Ask the GPU nodes that joined the cluster after ``helpers.start()`` what ``start()`` asked the others.

    An autoscaler adds GPU workers while the lessons run, or one joined late;
    Ray places actors on them as on the others, and a difference there (other
    packages, a storage of its own, missing model folders, a small GPU) would
    show as a worker's traceback minutes into a run. Raises
    :class:`helpers.errors.ClusterMismatchError` that names the node and the fix.
    """
    global _asked_gpu_nodes
    from helpers.runtime.preflight import check_nodes
    from helpers.runtime.probe import PROBE_TIMEOUT_S, ask_new_gpu_nodes

    session = _session
    if session is None or not session.joined_a_cluster or session.decision is None:
        return
    new = ask_new_gpu_nodes(_asked_gpu_nodes, session.settings.storage, session.settings.profile)
    if new.reports:
        check_nodes(new, session.settings)  # a node refused is asked again before the next run, and refused again
    for name in new.silent:  # said, not refused, as helpers.start() says it of a node that does not answer
        print(f"Note: GPU {name} joined the cluster after helpers.start() and did not answer within "
              f"{PROBE_TIMEOUT_S:g} s: its packages, storage and models were not checked", file=sys.stderr)
    _asked_gpu_nodes |= new.asked


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def settings_where_models_run(profile: str | None, joined: str | None, storage,
                              cluster_gpus: float | None) -> tuple[Settings, ProfileDecision, list[str]]:
    """The session's settings, with ``auto`` decided where the models run; after a join, the pre-flight check.

    ``joined`` is the address of the cluster this process joined (None for a
    Ray on this machine). Returns the settings, the decision and the check's notes.
    """
    import ray

    decision = decide(profile, joined=bool(joined), storage=storage, cluster_gpus=cluster_gpus)
    if joined and requested_profile(profile) == "auto":
        # What this process resolves later (the pictures' note, the commands) must agree with the decision ...
        os.environ["WORKSHOP_PROFILE"] = decision.profile
        if decision.nodes_resolve_differently:
            # ... and so must the workers, which resolve `auto` on their own node: join again to ship it.
            ray.shutdown()
            ray.init(address=joined, runtime_env=join_runtime_env(), log_to_driver=True)
    settings = load_settings(decision.profile, cluster_gpus=cluster_gpus,
                             ready_model_folders=decision.ready_model_folders())
    notes = check_nodes(decision, settings) if joined else []
    return settings, decision, notes


def start(profile: str | None = None, *, quiet: bool = False) -> Session:
    """Connect to Ray (or start it) and return the workshop :class:`Session`."""
    global _session, _asked_gpu_nodes
    import ray

    if _session is not None and ray.is_initialized():
        if _session.shared and not _same_shared_ray():
            # Every call into Ray would now wait for it, until Ray ends this process (60 s, measured).
            raise SettingsError(
                "The workshop's Ray that this lesson joined was stopped (helpers.stop_workshop_ray() or python -m "
                "helpers.workshop_ray stop, in another lesson or a terminal), and Ray ends this kernel within about "
                "a minute: restart it now (Kernel > Restart Kernel) and run the notebook from the top; the first "
                "lesson to start again starts a new one."
            )
        configure_data_context(workshop_ray=not _session.joined_a_cluster)
        if not quiet:
            print(_session.describe())
        return _session

    began = time.perf_counter()
    # Settings before Ray: the cluster's GPUs, which scale per-actor requests, are not known yet.
    before_ray = load_settings(profile)
    # A storage root the lessons cannot write is a setting to fix, not a Ray error later.
    check_storage_writable(before_ray.storage)
    address, found_here = address_to_join()
    # A lesson's data and models, before Ray starts; on a cluster once its GPU nodes decided the profile.
    lesson = LessonCheck()
    if not address:
        lesson.check(before_ray)
    shared, launched = None, False
    if not address and not ray.is_initialized() and ray_mode() == "shared":
        shared, launched = _join_shared_ray(before_ray)
    ray_context = None  # what ray.init returns when it starts Ray here: it knows the dashboard's address
    connected_here = not ray.is_initialized()
    if connected_here:
        ray_context = _connect(shared, address, before_ray)
    started_here = not address and shared is None
    resources = ray.cluster_resources()
    profile_before = os.environ.get("WORKSHOP_PROFILE")  # `auto` decided on a cluster is set for this process
    try:
        if shared is not None and not launched:
            check_shared_size(before_ray, resources)
        settings, decision, notes = settings_where_models_run(profile, address, before_ray.storage,
                                                              resources.get("GPU"))
        lesson.check(settings, loaded_on_gpu_nodes(settings, decision))
        _check_fit(settings, resources, found_here=found_here, connected_here=connected_here,
                   started_here=started_here, shared=shared is not None)
    except BaseException as err:
        # The next start(), with the fix, decides `auto` again rather than reading this decision as the learner's.
        _set_env("WORKSHOP_PROFILE", profile_before)
        if connected_here and isinstance(err, ActionableError):
            ray.shutdown()  # the next start(), with the fix, starts or joins Ray afresh
        raise
    context = ray.get_runtime_context()
    if started_here and ray_context is None:
        # Ray was started in this process before start(): ask it again, it returns the same context.
        ray_context = ray.init(ignore_reinit_error=True)
    dashboard = ray_context.dashboard_url if started_here else None
    if shared is not None:
        dashboard = (shared.dashboard_url or "").removeprefix("http://") or None
    _asked_gpu_nodes = decision.asked
    _session = Session(
        settings=settings,
        address=context.gcs_address,
        started_here=started_here,
        resources=resources,
        dashboard_url=f"http://{dashboard}" if dashboard else None,
        seconds=time.perf_counter() - began,
        shared=("started" if launched else "joined") if shared is not None else None,
        shared_idle_minutes=shared.idle_minutes if shared is not None else shared_ray.DEFAULT_IDLE_MINUTES,
        decision=decision,
        notes=notes,
    )
    configure_data_context(workshop_ray=not _session.joined_a_cluster)
    if not quiet:
        print(_session.describe())
    return _session


def _connect(shared, address: str | None, before_ray: Settings):
    """Join the workshop's Ray, or the cluster at ``address``, or start a Ray here; ``ray.init``'s context for
    a Ray started here (it knows the dashboard's address), else None."""
    global _joined_shared
    import ray

    if shared is not None:
        ray.init(address=shared.address, runtime_env=_shared_runtime_env(shared), log_to_driver=True)
        _joined_shared = shared.address
        return None
    if address:
        check_cluster_answers(address)
        check_token(address)
        ray.init(address=address, runtime_env=join_runtime_env(), log_to_driver=True)
        return None
    # A local Ray's processes are children of this one and inherit its
    # environment, WORKSHOP_* included. A runtime_env here would only cost
    # time: every worker of it must be set up by Ray's runtime-env agent
    # (measured on 2 cores: 9 s instead of 4.4 s to start the first actor pool).
    # address="local": a new Ray even where `ray start` runs, whose record Ray would otherwise join.
    return _init_local(address="local", **local_init_kwargs(before_ray))


def _check_fit(settings: Settings, resources: dict, *, found_here: str | None, connected_here: bool,
               started_here: bool, shared: bool) -> None:
    """The lessons' pools fit this Ray, or a :class:`SettingsError` that says which Ray and what to change."""
    from helpers.runtime.resources import cluster_nodes
    from helpers.runtime.settings_fit import check_settings_fit

    try:
        check_settings_fit(settings, cluster_nodes(), sized_here=started_here or shared)
    except SettingsError as err:
        if found_here and not resources.get("GPU"):  # a `ray start` without GPUs, as on a laptop
            raise SettingsError(f"{err} {_joined_ray_start_note(found_here)}") from None
        if connected_here or not started_here:
            raise
        # A Ray this process started before start() is used as it is, and start() leaves it running:
        # the sizes the message names cannot apply to it.
        raise SettingsError(
            f"{err} Ray was already running in this kernel before helpers.start() (a ray.init() or a "
            "ray.data call ran first), so it keeps the size it was started with: restart the kernel "
            "(Kernel > Restart Kernel) and run helpers.start() before anything else."
        ) from None


def stop() -> None:
    """Shut Ray down (only when this process started it) and forget the session."""
    global _session
    import ray

    if ray.is_initialized():
        ray.shutdown()
    _session = None


def stop_workshop_ray() -> None:
    """Stop the Ray that the lessons share (every open lesson loses it; their next start() starts a new one)."""
    global _session
    import ray

    if _session is not None and _session.shared and ray.is_initialized():
        ray.shutdown()
        _session = None
    print(shared_ray.stopped_message(shared_ray.stop()))
