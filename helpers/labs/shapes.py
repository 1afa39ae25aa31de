"""The shapes a lab declares for its variables, so that each common check is written once.

A lab's ``expect`` maps each variable to one of these; the framework checks
them in order and hands ``check_answer`` what they read:

* :class:`Equals`: the value must equal one computed when checked (from the
  workshop's data), with messages for the plausible wrong values;
* :class:`WrittenFiles`: a folder a Ray writer filled: files of one type,
  each readable, as many as expected (``check_answer`` gets a :class:`Written`);
* :class:`Pipeline`: a Ray Dataset whose plan requests model stages, actors
  and GPUs within a budget (``check_answer`` gets its :class:`Plan`);
* :class:`ActorClass`: a class for ``map_batches`` whose ``__init__`` takes
  the parameters the stage passes.

Messages are templates filled with ``str.format``: ``{name}`` is the variable,
the other fields are listed with each shape.
"""

from __future__ import annotations

import builtins
import inspect
import math
import numbers
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from helpers.labs.framework import Expect, Incorrect, quote, type_name
from helpers.labs.plans import MapStage, map_stages
from helpers.runtime.node_constraints import EPS
from helpers.runtime.settings import learner_outputs_dir, resolve_storage

_COUNT_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def is_dataset(value: Any) -> bool:
    """True for a Ray Dataset. Never imports Ray: nothing is a Dataset before ``ray.data`` is loaded."""
    data = sys.modules.get("ray.data")
    return data is not None and isinstance(value, data.Dataset)


def batch_columns(batch: Any) -> Any:
    """A pandas DataFrame or a pyarrow Table as a dict of columns (Ray Data takes either as a batch); else ``batch``."""
    if hasattr(batch, "to_pydict"):  # a pyarrow.Table (batch_format="pyarrow")
        return batch.to_pydict()
    if hasattr(batch, "to_dict") and hasattr(batch, "columns"):  # a pandas DataFrame
        return {name: batch[name].to_numpy() for name in batch.columns}
    return batch


def count_word(n: int) -> str:
    """``2`` -> ``"two"``: small counts read better as words in a sentence."""
    return _COUNT_WORDS[n] if 0 <= n < len(_COUNT_WORDS) else str(n)


def _and(names: tuple[str, ...]) -> str:
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def _same(value: Any) -> Any:
    return value


# --------------------------------------------------------------------------- a value


@dataclass(frozen=True, kw_only=True)
class Kind:
    """A type a value must have, named as a message says it (``"a whole number"``)."""

    description: str
    accepts: Callable[[Any], bool]


WHOLE_NUMBER = Kind(
    description="a whole number",
    accepts=lambda value: isinstance(value, numbers.Integral) and not isinstance(value, bool),
)


@dataclass(frozen=True, kw_only=True)
class Mistake:
    """A plausible wrong value, recognised by how it relates to the expected one, and what to say about it."""

    when: Callable[[Any, Any], bool]  # (the value found, the value expected) -> True for this mistake
    message: str  # fields: {name}, {value}


@dataclass(frozen=True, kw_only=True)
class Equals(Expect):
    """The variable must equal a value computed when it is checked.

    ``expected`` is a function, so the value comes from the data staged at
    check time, never from a copy. ``read`` takes what is compared out of
    what the learner passed (a Schema's names); ``key`` says what counts as
    equal (``sorted``: the order does not matter). Messages: ``wrong`` when it
    differs, each of ``mistakes`` when it matches that mistake first, and
    ``if_dataset`` when a Dataset was passed instead of a value computed from it.
    """

    expected: Callable[[], Any]
    wrong: str  # fields: {name}, {value}
    kind: Kind | None = None
    read: Callable[[Any], Any] = _same
    key: Callable[[Any], Any] = _same
    mistakes: tuple[Mistake, ...] = ()
    if_dataset: str = ""  # fields: {name}

    def check(self, name: str, value: Any) -> Any:
        if self.if_dataset and is_dataset(value):
            raise Incorrect(self.if_dataset.format(name=name))
        found = self.read(value)
        if self.kind is not None and not self.kind.accepts(found):
            raise Incorrect(f"`{name}` should be {self.kind.description}, not a {type_name(found)}.")
        expected = self.expected()
        for mistake in self.mistakes:
            if mistake.when(found, expected):
                raise Incorrect(mistake.message.format(name=name, value=found))
        if self.key(found) != self.key(expected):
            raise Incorrect(self.wrong.format(name=name, value=found))
        return value


# --------------------------------------------------------------------------- a folder of written files


@dataclass(frozen=True)
class Written:
    """A folder as :class:`WrittenFiles` read it: where it is and its files of the expected type."""

    path: Path
    files: list[Path]


def _local_path(value) -> Path:
    text = os.fspath(value)
    for scheme in ("local://", "file://"):
        text = text.removeprefix(scheme)
    if "://" in text:
        raise Incorrect(
            f"{value} is on an object store, and this check reads a folder of this machine's file system: write "
            "this lab's answer to a local or mounted folder (with WORKSHOP_STORAGE set to one, "
            "session.settings.output_path(...) names one)."
        )
    return Path(text).expanduser()


def _in_another_learners_folder(path: Path) -> str | None:
    """Why ``path`` is no place for this learner's answer, or None.

    Every learner on a storage root writes under ``<storage>/outputs/<learner>``;
    an answer elsewhere under ``<storage>/outputs`` is in another learner's
    folder (or where all of them would write), so a check would read, and a
    re-run would replace, someone else's files.
    """
    storage = resolve_storage()
    if not isinstance(storage, Path):
        return None
    own = learner_outputs_dir(storage)
    found = path.resolve()
    if found.is_relative_to(own.parent.resolve()) and not found.is_relative_to(own.resolve()):
        return (
            f"{path} is outside your own output folder {own}, where other learners write; "
            f'write into yours, e.g. session.settings.output_path("{path.name}").'
        )
    return None


def _holds_all_your_outputs(path: Path, folder_name: str) -> str | None:
    """Why ``path`` is too wide a folder for one lab's answer (the learner's outputs, or a folder above them), or None.

    A check that reads nested folders would read every lesson's files there,
    and a writer told to replace the folder would delete them.
    """
    storage = resolve_storage()
    if not isinstance(storage, Path):
        return None
    own = learner_outputs_dir(storage).resolve()
    found = path.resolve()
    if not own.is_relative_to(found):
        return None
    if found == own:
        what = "your whole outputs folder, where every lesson writes"
    elif found == storage.resolve():
        what = "the workshop's storage root, which holds the data, the models and every learner's outputs"
    else:
        what = f"a folder above your outputs folder {own}"
    return (
        f"{path} is {what}; write to a folder of its own, "
        f'such as session.settings.output_path("{folder_name}").'
    )


#: Seconds a file may seem written before this kernel started and still count as written by it:
#: the clocks of shared storage and of this machine can differ by that much.
CLOCK_MARGIN_S = 60.0


def kernel_started() -> float:
    """When this process (the notebook's kernel) started, in seconds since the epoch, as read at ``import helpers``."""
    from helpers import PROCESS_STARTED

    if PROCESS_STARTED is not None:
        return PROCESS_STARTED
    import psutil

    return psutil.Process().create_time()


def _written_before_this_kernel(files: list[Path], subject: str) -> str | None:
    """Why ``files`` cannot be this kernel's answer (all were written before it started), or None.

    ``subject`` starts the message and names them with its verb: ``"the 8 PNG files in /x were"``.

    A folder an earlier run filled (the solution notebook's, yesterday's) holds
    the right files whether or not the learner's write ran; only files at least
    as new as the kernel show that it did.
    """
    newest = max(file.stat().st_mtime for file in files)
    started = kernel_started()
    if newest >= started - CLOCK_MARGIN_S:
        return None
    written = datetime.fromtimestamp(newest).strftime("%Y-%m-%d %H:%M")
    began = datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M")
    latest = " at the latest" if len(files) > 1 else ""
    return (
        f"{subject} written at {written}{latest}, by an earlier run: this kernel started at {began}. "
        "Run the cell that writes the answer, then check again."
    )


def _visible_files(folder: Path, nested: bool) -> list[Path]:
    """The folder's files, leaving out hidden and bookkeeping ones (``.x``, ``_SUCCESS``), as Arrow's readers do."""
    found = folder.rglob("*") if nested else folder.iterdir()
    return sorted(
        file
        for file in found
        if file.is_file() and not any(part.startswith((".", "_")) for part in file.relative_to(folder).parts)
    )


@dataclass(frozen=True, kw_only=True)
class WrittenFiles(Expect):
    """A folder a Ray writer filled: its path (a ``local://`` URL will do), holding files of one type.

    Checked in this order: a path, neither the learner's whole outputs
    folder (nor one above it) nor in another learner's folder of outputs,
    that exists, a folder (or a single file of the type when
    ``a_file_will_do``), files of the type there, not all of them written
    before this kernel started, no others when ``others``
    says why they are wrong, ``count()`` of them when given,
    and each one readable when ``unreadable`` is given.
    """

    suffix: str  # ".png"
    files: str  # how messages call them: "PNG files"
    folder_name: str  # the lab's folder under the learner's outputs, for messages: "04_png"
    writer: str  # the writing call, for messages: "`write_images`"
    if_none: str  # what to do when the folder holds only other files, e.g. 'write them with `file_format="png"`'
    nested: bool = False  # partitioned writes put files in sub-folders
    a_file_will_do: bool = False  # the path of one written file is an answer too
    others: str = ""  # other files beside them are wrong, and why; fields: {found}, {path}, {count}, {example}
    count: Callable[[], int] | None = None  # how many files there must be
    too_many: str = ""  # fields: {path}, {found}, {expected}
    too_few: str = ""  # fields: {path}, {found}, {expected}
    unreadable: Callable[[Path], str | None] | None = None  # the problem with one file, or None
    if_dataset: str = ""  # fields: {name}

    def __post_init__(self) -> None:
        if self.count is not None and not (self.too_many and self.too_few):
            raise ValueError("a WrittenFiles with a `count` needs `too_many` and `too_few` messages")

    def check(self, name: str, value: Any) -> Written:
        if self.if_dataset and is_dataset(value):
            raise Incorrect(self.if_dataset.format(name=name))
        if not isinstance(value, (str, os.PathLike)):
            raise Incorrect(f"`{name}` is a {type_name(value)}; pass the folder's path as a string.")
        path = _local_path(value)
        too_wide = _holds_all_your_outputs(path, self.folder_name)
        if too_wide:
            raise Incorrect(too_wide)
        elsewhere = _in_another_learners_folder(path)
        if elsewhere:
            raise Incorrect(elsewhere)
        if not path.exists():
            raise Incorrect(f"{path} does not exist: nothing has been written there yet.")
        if path.is_file():
            if self.a_file_will_do and path.suffix.lower() == self.suffix:
                stale = _written_before_this_kernel([path], f"{path} was")
                if stale:
                    raise Incorrect(stale)
                return Written(path, [path])
            if self.a_file_will_do:
                raise Incorrect(f"{path} is not one of the {self.files} {self.writer} writes; pass its folder.")
            raise Incorrect(f"{path} is a file; {self.writer} writes a folder of files, pass the folder.")
        visible = _visible_files(path, self.nested)
        files = [file for file in visible if file.suffix.lower() == self.suffix]
        others = [file for file in visible if file.suffix.lower() != self.suffix]
        if not files:
            if others:
                kinds = sorted({file.suffix or file.name for file in others})
                raise Incorrect(
                    f"{path} holds {len(others)} files ({quote(kinds)}) but no {self.files}; {self.if_none}."
                )
            raise Incorrect(f"{path} is empty.")
        stale = _written_before_this_kernel(files, f"the {len(files)} {self.files} in {path} were")
        if stale:
            raise Incorrect(stale)
        if others and self.others:
            example = others[0].relative_to(path)
            raise Incorrect(self.others.format(found=len(files), path=path, count=len(others), example=example))
        if self.count is not None:
            expected = self.count()
            fields = {"path": path, "found": len(files), "expected": expected}
            if len(files) > expected:
                raise Incorrect(self.too_many.format(**fields))
            if len(files) < expected:
                raise Incorrect(self.too_few.format(**fields))
        if self.unreadable is not None:
            for file in files:
                problem = self.unreadable(file)
                if problem:
                    raise Incorrect(problem)
        return Written(path, files)

    def summary(self, value: Written) -> str:
        return f"{len(value.files)} {self.files} in {value.path}."


# --------------------------------------------------------------------------- a pipeline's plan


@dataclass(frozen=True)
class Plan:
    """A pipeline as :class:`Pipeline` read it: its ``map_batches`` stages, source first."""

    stages: list[MapStage]

    @property
    def models(self) -> list[MapStage]:
        """The stages run by a callable class: one model per actor."""
        return [stage for stage in self.stages if stage.is_class]

    def gpu_shares(self) -> tuple[str, float]:
        """(``"2 x 0.3 + 2 x 0.2"``, their total): what the model stages' actors reserve."""
        shares = " + ".join(f"{stage.max_actors:g} x {stage.num_gpus:g}" for stage in self.models)
        return shares, sum(stage.max_actors * stage.num_gpus for stage in self.models)


@dataclass(frozen=True, kw_only=True)
class Pipeline(Expect):
    """A Ray Dataset built with ``map_batches``, read from its plan without running it.

    With ``model_stages`` it must hold that many callable-class stages, no
    more and no fewer (named for messages; counted, not matched, so that any
    class will do, but in that order when the classes carry those names).
    With ``prepare_stage`` a stateless stage (a function) must come before
    them. With ``actors_per_model_stage`` each has a pool of that size. With
    ``gpu_budget`` each asks for a GPU share on a bounded pool, and together
    they reserve no more than the budget.
    """

    model_stages: tuple[str, ...] = ()
    prepare_stage: str = ""  # the function stage before the models, named for messages: "expand_prompt"
    actors_per_model_stage: int | None = None
    gpu_budget: float | None = None

    def check(self, name: str, value: Any) -> Plan:
        if not is_dataset(value):
            if isinstance(value, dict):
                raise Incorrect(
                    f"`{name}` is a batch (a dict of columns); pass the Dataset itself, before taking anything."
                )
            raise Incorrect(f"`{name}` is a {type_name(value)}; it should be a Ray Dataset built with `map_batches`.")
        plan = Plan(map_stages(value))
        if self.model_stages:
            self._check_model_stages(plan)
        for stage in plan.models:
            self._check_stage(stage)
        if self.gpu_budget is not None:
            shares, total = plan.gpu_shares()
            if total > self.gpu_budget + EPS:
                raise Incorrect(
                    f"the model stages reserve {shares} = {total:g} GPUs, and the machine has {self.gpu_budget:g}; "
                    "ask for a smaller share per actor."
                )
        return plan

    def _check_model_stages(self, plan: Plan) -> None:
        found = quote(stage.label for stage in plan.stages) or "none"
        needed = _and(self.model_stages)
        if len(plan.models) < len(self.model_stages):
            raise Incorrect(
                f"the pipeline has {len(plan.models)} model stage(s) (callable classes); it needs the "
                f"{needed} stages. Its map_batches stages: {found}."
            )
        if len(plan.models) > len(self.model_stages):
            raise Incorrect(
                f"the pipeline has {len(plan.models)} model stages (callable classes): "
                f"{quote(stage.label for stage in plan.models)}; it needs the {needed} stages, once each."
            )
        labels = tuple(stage.label for stage in plan.models)
        if sorted(labels) == sorted(self.model_stages) and labels != self.model_stages:
            raise Incorrect(
                f"the model stages run in the order {_and(labels)}; the lesson's pipeline runs {needed}, "
                "in that order."
            )
        if self.prepare_stage:
            first = next(i for i, stage in enumerate(plan.stages) if stage is plan.models[0])
            if not any(not stage.is_class for stage in plan.stages[:first]):
                raise Incorrect(
                    f"nothing runs before the `{plan.models[0].label}` stage (the pipeline's map_batches stages: "
                    f"{found}); keep the `{self.prepare_stage}` stage first: it writes the column the models read."
                )

    def _check_stage(self, stage: MapStage) -> None:
        actors = self.actors_per_model_stage
        if self.gpu_budget is not None:
            if stage.num_gpus <= 0:
                raise Incorrect(
                    f"the `{stage.label}` stage asks for no GPU, so its model would run on CPU; "
                    "give its actors a share with `num_gpus=`."
                )
            if stage.max_actors is None or math.isinf(stage.max_actors):
                raise Incorrect(
                    f"the `{stage.label}` stage has no upper bound on its actors, so its GPU total is unknown; "
                    f"fix the pool size with `compute=ray.data.ActorPoolStrategy(size={actors or 'N'})`."
                )
        if actors is not None and stage.max_actors != actors:
            raise Incorrect(
                f"the `{stage.label}` stage has up to {stage.max_actors:g} actors; keep {count_word(actors)} per "
                "stage and change their GPU share instead."
            )

    def summary(self, value: Plan) -> str:
        if self.gpu_budget is None:
            return ""
        shares, total = value.gpu_shares()
        return f"{shares} = {total:g} of {self.gpu_budget:g} GPU."


# --------------------------------------------------------------------------- a class for map_batches


def init_parameters(cls: type) -> list[inspect.Parameter]:
    """The parameters of the class's constructor (``self`` left out), ``*args`` and ``**kwargs`` included."""
    return list(inspect.signature(cls).parameters.values())


def is_ray_actor_class(value: Any) -> bool:
    """True for a class decorated with ``@ray.remote``. Never imports Ray: none exists before ``ray.actor`` loads."""
    actor = sys.modules.get("ray.actor")
    return actor is not None and isinstance(value, actor.ActorClass)


def _actor_class_name(value: Any) -> str:
    """The name the learner gave the class that ``@ray.remote`` wrapped."""
    metadata = getattr(value, "__ray_metadata__", None)
    return getattr(metadata, "class_name", None) or type_name(value)


def takes_any_arguments(params: list[inspect.Parameter]) -> bool:
    """True when ``*args`` or ``**kwargs`` take whatever a stage passes."""
    return any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


@dataclass(frozen=True, kw_only=True)
class ActorClass(Expect):
    """A callable class for ``map_batches``, passed as the class (Ray creates the instances).

    ``parameters`` names what the constructor must take, as a message says it;
    further parameters are the learner's choice, and ``*args`` or ``**kwargs``
    may take them all.
    """

    parameters: tuple[str, ...]

    def check(self, name: str, value: Any) -> type:
        if is_ray_actor_class(value):
            raise Incorrect(
                f"`{name}` is `{_actor_class_name(value)}` decorated with `@ray.remote`, which makes an actor class; "
                "remove `@ray.remote` and run its cell again: `map_batches` takes the plain class and makes "
                "the actors itself."
            )
        if not inspect.isclass(value):
            if callable(value) and not inspect.isroutine(value):
                raise Incorrect(
                    f"`{name}` is an instance of `{type_name(value)}`; pass the class itself, "
                    "Ray creates the instances."
                )
            raise Incorrect(f"`{name}` is a {type_name(value)}; pass the class you wrote.")
        if getattr(builtins, value.__name__, None) is value:
            raise Incorrect(f"`{name}` is the built-in type `{value.__name__}`; pass the class you wrote.")
        try:
            params = init_parameters(value)
        except (ValueError, TypeError):  # a class from compiled code: no signature to read
            raise Incorrect(
                f"`{name}` is `{value.__qualname__}`, whose constructor's parameters cannot be read; "
                "pass the class you wrote."
            ) from None
        if len(params) < len(self.parameters) and not takes_any_arguments(params):
            shown = ", ".join(p.name for p in params) or "nothing"
            raise Incorrect(
                f"`{value.__name__}.__init__` takes {shown} besides `self`; it needs "
                f"{count_word(len(self.parameters))} parameters: {_and(self.parameters)}."
            )
        return value
