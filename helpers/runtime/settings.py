"""Where everything comes from: one place that resolves the workshop's settings.

The notebooks are the same on a laptop, a one-GPU box and a GPU cluster. What
differs between those machines lives here, resolved from environment variables
with defaults that work out of the box:

* ``WORKSHOP_STORAGE``: the shared storage root (data, models, outputs). Every
  node of a cluster must see it, so the default is Anyscale's
  ``/mnt/cluster_storage`` when it exists and is writable, else ``storage/`` inside the clone.
* ``WORKSHOP_USER``: the learner, whose outputs go to ``<storage>/outputs/<learner>``
  so that learners sharing one storage root never write into each other's
  folders; the login name when unset.
* ``WORKSHOP_PROFILE``: ``cpu`` (small local models), ``gpu`` (the real models)
  or ``auto`` (``gpu`` only when CUDA is usable where the models run: this
  machine for a local Ray, the GPU nodes of a cluster that ``helpers.start()`` joins).
* per-stage settings (``WORKSHOP_IMAGE_*``, ``WORKSHOP_LLM_*``): model source,
  image size, steps, tokens, batch sizes, actors and GPUs per actor.

Nothing here imports torch or Ray, so resolving settings is instant and safe to
do in every worker process.
"""

from __future__ import annotations

import dataclasses
import getpass
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from helpers.errors import SettingsError
from helpers.runtime.storage import StorageURI, check_scheme

REPO_ROOT = Path(__file__).resolve().parents[2]
ANYSCALE_STORAGE = Path("/mnt/cluster_storage")

HUB_IMAGE_MODEL = "stabilityai/sdxl-turbo"
HUB_LLM_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
#: Folder names under ``<storage>/models``. The real models are used from there
#: when pre-staged (``setup.sh --download``), which keeps a cluster off the hub.
STAGED_IMAGE_MODEL = "sdxl-turbo"
STAGED_LLM_MODEL = "Qwen2.5-0.5B-Instruct"
TINY_IMAGE_MODEL = "tiny-sdxl-turbo"
SMALL_LLM_MODEL = "SmolLM2-135M-Instruct"

PROFILES = ("auto", "cpu", "gpu")

#: The cluster the lessons describe: two GPUs. Per-actor GPU requests in the
#: lessons are written for it and scaled down when fewer GPUs exist.
LESSON_GPUS = 2


@dataclass(frozen=True)
class StageSettings:
    """Resources and batching for one model stage (``map_batches`` arguments)."""

    model: str
    batch_size: int
    actors: int
    num_gpus: float
    num_cpus: float

    def map_batches_kwargs(self) -> dict:
        """The ``map_batches`` arguments for this stage, as the lessons write them."""
        import ray

        kwargs = {
            "batch_size": self.batch_size,
            "num_gpus": self.num_gpus,
            "compute": ray.data.ActorPoolStrategy(size=self.actors),
        }
        # Ray Data gives each actor one CPU by default; say so only when it differs
        # (it warns that num_cpus next to num_gpus is experimental).
        if self.num_cpus != 1:
            kwargs["num_cpus"] = self.num_cpus
        return kwargs


@dataclass(frozen=True)
class Settings:
    """Everything the workshop needs to know about this machine."""

    profile: str
    storage: Path  # or a helpers.runtime.storage.StorageURI (s3://...)
    learner: str  # names the learner's own folder of outputs
    image: StageSettings
    llm: StageSettings
    image_size: int
    image_steps: int
    max_new_tokens: int
    torch_threads: int
    num_cpus: int | None
    num_gpus: float | None

    @property
    def data_dir(self) -> Path:
        return self.storage / "data"

    @property
    def models_dir(self) -> Path:
        return resolve_models_dir(self.storage)

    @property
    def outputs_dir(self) -> Path:
        """This learner's folder of outputs: ``<storage>/outputs/<learner>``."""
        return learner_outputs_dir(self.storage, self.learner)

    @property
    def uses_small_models(self) -> bool:
        """True on the CPU profile, whose pictures come from an untrained model."""
        return self.profile == "cpu"

    def output_path(self, *parts: str) -> str:
        """A path under this learner's outputs folder, as a string Ray's writers accept."""
        return str(self.outputs_dir.joinpath(*parts))

    def rows(self) -> list[tuple[str, str]]:
        """The settings as (name, value) rows for the summary table."""
        return [
            ("profile", self.profile),
            ("storage", str(self.storage)),
            ("your outputs", str(self.outputs_dir)),
            ("image model", self.image.model),
            ("image size / steps", f"{self.image_size}px / {self.image_steps}"),
            ("image stage", _stage_text(self.image)),
            ("LLM", self.llm.model),
            ("LLM max_new_tokens", str(self.max_new_tokens)),
            ("LLM stage", _stage_text(self.llm)),
            ("torch threads per actor", str(self.torch_threads)),
        ]

    def table(self) -> str:
        width = max(len(name) for name, _ in self.rows())
        return "\n".join(f"{name:<{width}}  {value}" for name, value in self.rows())


def _stage_text(stage: StageSettings) -> str:
    return (
        f"{stage.actors} actors x {stage.num_gpus:g} GPU, "
        f"batch_size={stage.batch_size}"
    )


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_number(name: str, default, kind: type = int, minimum: float = 1):
    """The variable ``name`` as an ``int`` (or ``float``) of at least ``minimum``; ``default`` when unset."""
    raw = _env(name)
    if raw is None:
        return default
    example = f"{name}={default if default is not None else 1}"
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(f"{name}={raw!r} is not {what}; unset it or use e.g. {example}") from None
    if not value >= minimum:  # NaN included
        raise SettingsError(f"{name}={raw.strip()} is below {minimum:g}; use e.g. {example}")
    if value == float("inf"):  # "inf" and "1e400" parse as floats; no count or share is infinite
        raise SettingsError(f"{name}={raw.strip()} is not a finite number; use e.g. {example}")
    return value


#: How an on/off setting may be written; anything else is refused rather than taken for "off".
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def env_flag(name: str) -> bool:
    """The on/off variable ``name`` (unset: off), or a :class:`SettingsError` naming the values it takes."""
    raw = (_env(name) or "").strip().lower() or "0"
    if raw not in _ON + _OFF:
        raise SettingsError(f"{name}={os.environ[name]!r}: use 1 (on) or 0 (off)")
    return raw in _ON


def _image_size(default: int) -> int:
    """``WORKSHOP_IMAGE_SIZE``: the image models draw sides that are multiples of 8, and refuse others only once
    the first image actor has loaded, in a message that does not name the variable."""
    size = env_number("WORKSHOP_IMAGE_SIZE", default, minimum=8)
    if size % 8:
        raise SettingsError(f"WORKSHOP_IMAGE_SIZE={size} is not a multiple of 8, which the image models need; "
                            f"use e.g. {size - size % 8} or {size - size % 8 + 8}")
    return size


def ray_takes_gpus(value: float) -> bool:
    """Whether Ray accepts ``num_gpus=value`` per actor: a share of one GPU (up to 1), or whole GPUs.

    Ray refuses ``num_gpus=1.5`` only when the first actor is created, deep in
    a lesson, with a message that does not name the variable.
    """
    return value <= 1 or value == int(value)


def _gpu_share(name: str, value: float) -> float:
    """``value`` of the variable ``name``, refused with the fix when Ray would not take it."""
    if not ray_takes_gpus(value):
        raise SettingsError(f"{name}={value:g}: Ray takes a share of one GPU (up to 1) or whole GPUs per actor; "
                            f"use e.g. {name}={math.floor(value):g} or {name}={math.ceil(value):g}")
    return value


def default_storage() -> Path:
    """``/mnt/cluster_storage`` when it is there and writable, else ``storage/`` in the clone."""
    if ANYSCALE_STORAGE.is_dir() and os.access(ANYSCALE_STORAGE, os.W_OK):
        return ANYSCALE_STORAGE
    return REPO_ROOT / "storage"


def check_storage_writable(storage) -> None:
    """Fail with the fix when the storage root cannot be written.

    The lessons write their outputs under it; without this check the first
    write fails deep inside a Ray task. Object-store roots (``s3://``) are
    checked by their first write instead. The probe file has a name of its own
    (``.workshop-write-test-<random>``): learners who share the root start at
    the same time, and a fixed name would let one delete another's probe.
    """
    if not isinstance(storage, Path):
        return
    try:
        storage.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".workshop-write-test-", dir=storage)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise SettingsError(
            f"storage root {storage} is not writable ({err.strerror}). "
            "Set WORKSHOP_STORAGE to a folder you can write (on a cluster: one every node mounts)."
        ) from None


def resolve_storage() -> Path:
    raw = _env("WORKSHOP_STORAGE")
    if raw is None:
        return default_storage()
    if "://" in raw:
        # An object store (s3://bucket/prefix): data and outputs through pyarrow, models stay local.
        check_scheme(raw, "WORKSHOP_STORAGE")
        return StorageURI(raw.rstrip("/"))
    return Path(raw).expanduser().resolve()


#: A learner's name becomes one folder name: letters, digits, ``_``, then also ``.``, ``@`` and ``-``
#: (so no ``/``, no ``..``, no hidden folder, nothing a shell or an S3 key reads specially).
LEARNER_NAME = re.compile(r"\w[\w.@-]{0,63}")


def login_name() -> str:
    """The login name; ``uid<number>`` where the system has no name for this user.

    ``getpass.getuser`` fails in containers that run as a user id without a
    passwd entry and without ``USER``/``LOGNAME`` in the environment.
    """
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):
        return f"uid{os.getuid()}"


def resolve_learner() -> str:
    """The learner's name, which names their folder of outputs: ``WORKSHOP_USER``, else the login name.

    A name that cannot be one safe folder name is refused rather than cleaned
    up: cleaning would give two learners (``a b`` and ``a_b``) one folder.
    """
    raw = _env("WORKSHOP_USER")
    name = raw if raw is not None else login_name()
    if LEARNER_NAME.fullmatch(name):
        return name
    source = f"WORKSHOP_USER={raw!r}" if raw is not None else f"the login name {name!r}"
    raise SettingsError(
        f"{source} cannot name your output folder: set WORKSHOP_USER to a name of letters, digits, "
        "'.', '_', '@' or '-' (at most 64, not starting with '.', '@' or '-'), e.g. WORKSHOP_USER=ada"
    )


def learner_outputs_dir(storage=None, learner: str | None = None) -> Path:
    """``<storage>/outputs/<learner>``, from the environment for what is not given."""
    storage = resolve_storage() if storage is None else storage
    return storage / "outputs" / (learner or resolve_learner())


def resolve_models_dir(storage) -> Path:
    """Where the model folders are: ``WORKSHOP_MODELS``, else ``<storage>/models``.

    Models load from local folders only, so with an object-store root the
    default is ``storage/models`` in the clone (where ``setup.sh`` puts them).
    """
    raw = _env("WORKSHOP_MODELS")
    if raw is not None:
        return Path(raw).expanduser().resolve()
    return storage / "models" if isinstance(storage, Path) else REPO_ROOT / "storage" / "models"


def cuda_usable(devices: Path = Path("/dev")) -> bool:
    """Whether torch can use a CUDA GPU in this process.

    Checks for the NVIDIA device files first so that CPU-only machines answer
    without importing torch (which takes seconds). A GPU node without torch
    answers False: the pre-flight check's package versions then say what is missing.
    """
    if not any(devices.glob("nvidia[0-9]*")):
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def requested_profile(raw: str | None = None) -> str:
    """``auto``, ``cpu`` or ``gpu``: the profile asked for (``raw``, else ``WORKSHOP_PROFILE``), checked."""
    profile = (raw or _env("WORKSHOP_PROFILE", "auto")).strip().lower()
    if profile not in PROFILES:
        given = f"helpers.start(profile={raw!r})" if raw else f"WORKSHOP_PROFILE={profile!r}"
        raise SettingsError(f"{given}: use one of {', '.join(PROFILES)}")
    return profile


def resolve_profile(raw: str | None = None) -> str:
    """``cpu`` or ``gpu``: ``auto`` means ``gpu`` only when CUDA is usable in this process.

    That is the right answer on the machine that runs the models (a worker, a
    local Ray). A driver that joins a cluster asks the cluster's GPU nodes
    instead (:mod:`helpers.runtime.probe`) and passes the answer in.
    """
    profile = requested_profile(raw)
    if profile == "auto":
        return "gpu" if cuda_usable() else "cpu"
    return profile


def _model_source(env_name: str, models_dir: Path, staged: str, hub_id: str, small: str, profile: str,
                  ready_folders: frozenset[str] | None) -> str:
    explicit = _env(env_name)
    if explicit is not None:
        # A folder (not a hub id) as the nodes' reports name it: absolute, without a trailing "/".
        return os.path.abspath(os.path.expanduser(explicit)) if explicit.startswith(("/", ".", "~")) else explicit
    if profile == "cpu":
        return str(models_dir / small)
    staged_path = models_dir / staged
    if ready_folders is not None:
        return str(staged_path) if str(staged_path) in ready_folders else hub_id
    return str(staged_path) if _staged_complete(staged_path, staged) else hub_id


def _staged_complete(path: Path, name: str) -> bool:
    """Whether a staged real-model folder holds every file loading needs (file names only: milliseconds).

    The same check as the cluster's GPU nodes report (``ready_model_folders``),
    so a worker that resolves its settings without that report picks what the
    driver picked: a download cut short is not a staged model, the hub id is used.
    """
    from helpers.models.folders import missing_model_files

    kind = "image" if name == STAGED_IMAGE_MODEL else "llm"
    return not missing_model_files(path, kind)


def gpu_scale(cluster_gpus: float | None) -> float:
    """How much of the lessons' per-actor GPU request fits this cluster.

    The lessons are written for two GPUs. With one GPU the same pipeline runs
    with halved per-actor requests; with more GPUs the requests stay as taught.
    """
    if not cluster_gpus:
        return 1.0
    return min(1.0, cluster_gpus / LESSON_GPUS)


def load_settings(profile: str | None = None, cluster_gpus: float | None = None,
                  ready_model_folders: frozenset[str] | None = None) -> Settings:
    """Resolve every setting from the environment.

    ``cluster_gpus`` (known once Ray is up) scales the per-actor GPU requests so
    that two actors per stage always fit. ``ready_model_folders``, the staged
    model folders complete on the nodes that load the models (what the cluster's
    GPU nodes reported), decides staged folder or hub id there instead of here,
    so that the lessons' own stage classes load what ``helpers.Enhancer`` loads.
    """
    profile = resolve_profile(profile)
    storage = resolve_storage()
    models_dir = resolve_models_dir(storage)
    cpu = profile == "cpu"
    scale = gpu_scale(cluster_gpus)

    def gpus(name: str, lesson_value: float) -> float:
        return _gpu_share(name, env_number(name, round(lesson_value * scale, 3), float, minimum=0))

    image = StageSettings(
        model=_model_source(
            "WORKSHOP_IMAGE_MODEL", models_dir, STAGED_IMAGE_MODEL, HUB_IMAGE_MODEL, TINY_IMAGE_MODEL, profile,
            ready_model_folders,
        ),
        batch_size=env_number("WORKSHOP_IMAGE_BATCH_SIZE", 8),
        actors=env_number("WORKSHOP_IMAGE_ACTORS", 2),
        num_gpus=gpus("WORKSHOP_IMAGE_GPUS", 1.0),
        num_cpus=env_number("WORKSHOP_ACTOR_CPUS", 1.0, float, minimum=0),
    )
    llm = StageSettings(
        model=_model_source(
            "WORKSHOP_LLM_MODEL", models_dir, STAGED_LLM_MODEL, HUB_LLM_MODEL, SMALL_LLM_MODEL, profile,
            ready_model_folders,
        ),
        batch_size=env_number("WORKSHOP_LLM_BATCH_SIZE", 4),
        actors=env_number("WORKSHOP_LLM_ACTORS", 2),
        # 0.5, and 1 - 0.5 for each image actor beside it: four equal shares fit two GPUs whatever GPU Ray
        # picks for each actor; 0.6 and 0.4 fit only when the LLM actors are placed first (packing.find_stranding).
        num_gpus=gpus("WORKSHOP_LLM_GPUS", 0.5),
        num_cpus=env_number("WORKSHOP_ACTOR_CPUS", 1.0, float, minimum=0),
    )
    return Settings(
        profile=profile,
        storage=storage,
        learner=resolve_learner(),
        image=image,
        llm=llm,
        # Small pictures on CPU keep a lesson's run to seconds; 512 is sdxl-turbo's size.
        image_size=_image_size(128 if cpu else 512),
        image_steps=env_number("WORKSHOP_IMAGE_STEPS", 1),
        max_new_tokens=env_number("WORKSHOP_MAX_NEW_TOKENS", 40 if cpu else 120),
        # One thread per CPU actor: on a 2-core laptop two actors with two
        # threads each fight over the cores and both slow down.
        torch_threads=env_number("WORKSHOP_TORCH_THREADS", 1),
        num_cpus=env_number("WORKSHOP_NUM_CPUS", 0, minimum=0) or None,
        num_gpus=env_number("WORKSHOP_NUM_GPUS", None, int, minimum=0),  # Ray declares whole GPUs only
    )


def image_gpus_beside_llm(settings: Settings) -> float:
    """GPU per image actor while the LLM actors run beside it: what it had alone minus an LLM actor's share.

    On the lessons' two GPUs that is 1 - 0.5 = 0.5: four equal shares, which fit
    two GPUs whatever GPU Ray picks for each actor. Lesson 05 teaches this rule;
    the resource check, the pipeline command and the benchmark use it too.
    """
    return round(settings.image.num_gpus - settings.llm.num_gpus, 3)


def with_stage(settings: Settings, stage: str, **changes) -> Settings:
    """A copy of ``settings`` with one stage's fields changed (for tests and labs)."""
    return dataclasses.replace(settings, **{stage: dataclasses.replace(getattr(settings, stage), **changes)})


#: Variables forwarded to every Ray worker so that workers resolve the same settings
#: (``WORKSHOP_USER`` always: a cluster's workers run under the login of whoever started them).
#: No AWS_* variable is among them: on a cluster they would travel in the job's
#: runtime_env, which the dashboard and ``ray list jobs --detail`` show to every
#: user of the cluster. The workers that write the pipeline's output to ``s3://``
#: use their own node's access (:mod:`helpers.runtime.storage`).
FORWARDED_ENV_PREFIXES = ("WORKSHOP_",)
FORWARDED_ENV_NAMES = ("HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE")


def forwarded_env() -> dict[str, str]:
    """The part of this process's environment that workers must share, and the learner's name."""
    shared = {
        name: value
        for name, value in os.environ.items()
        if name.startswith(FORWARDED_ENV_PREFIXES) or name in FORWARDED_ENV_NAMES
    }
    return {**shared, "WORKSHOP_USER": resolve_learner()}
