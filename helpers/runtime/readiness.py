"""What each lesson needs on the storage root, checked by ``helpers.start()`` before anything runs.

``./setup.sh`` puts the data (``<storage>/data/*.csv``) and the CPU profile's
models (``<storage>/models``) on the storage root; ``./setup.sh --download``
adds the real ones. A lesson opened on a root that lacks them would fail
later, deep inside Ray: a ``FileNotFoundError`` from a read task, or, a minute
into an image stage, an ``ActorDiedError`` about a model folder. Here the
lesson says, in one line before Ray starts, what is missing and the one command
that puts it there, the same command in every lesson.

Which lesson runs is read from the notebook's file name, which Jupyter gives
its kernel (``JPY_SESSION_NAME``; VS Code: ``__vsc_ipynb_file__``). A notebook
whose name says no lesson is checked for everything the lessons need; a script
or a command, which reads its own inputs, is not checked here.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from helpers.errors import NotReadyError
from helpers.runtime.settings import (
    REPO_ROOT,
    SMALL_LLM_MODEL,
    STAGED_IMAGE_MODEL,
    STAGED_LLM_MODEL,
    TINY_IMAGE_MODEL,
    Settings,
)

ANIMALS, OUTFITS, IMAGE_MODEL, LLM_MODEL = "animals.csv", "outfits.csv", "image", "llm"
EVERYTHING = (ANIMALS, OUTFITS, IMAGE_MODEL, LLM_MODEL)

#: What each lesson reads: lesson 01 copies the data itself; 00 checks that all is there.
LESSON_NEEDS: dict[str, tuple[str, ...]] = {
    "00": EVERYTHING,
    "01": (),
    "02": (ANIMALS,),
    "03": (ANIMALS, IMAGE_MODEL),
    "04": (ANIMALS, OUTFITS, IMAGE_MODEL),
    "05": EVERYTHING,
    "06": EVERYTHING,
    "07": (ANIMALS,),
}

#: The model folders ``./setup.sh`` builds (no option) or downloads (``--download``).
BUILT_BY_SETUP = {TINY_IMAGE_MODEL: "", SMALL_LLM_MODEL: "", STAGED_IMAGE_MODEL: " --download",
                  STAGED_LLM_MODEL: " --download"}
_LESSON_FILE = re.compile(r"(?P<lesson>\d\d)_\w+\.ipynb$")


def notebook_file() -> str | None:
    """The file name of the notebook this kernel runs, when the front end says it."""
    name = os.environ.get("JPY_SESSION_NAME")
    if name:
        return name
    from helpers.show.ipython import ipython_shell

    shell = ipython_shell()
    return shell.user_ns.get("__vsc_ipynb_file__") if shell is not None else None


def current_lesson() -> str | None:
    """``"03"`` in ``03_image_generation.ipynb``; None when the notebook's name says no lesson."""
    found = _LESSON_FILE.search(notebook_file() or "")
    return found["lesson"] if found and found["lesson"] in LESSON_NEEDS else None


@dataclass(frozen=True)
class Need:
    """One thing a lesson reads from storage, and what is wrong with it ("" when it is ready)."""

    what: str
    path: Path
    kind: str  # ANIMALS, OUTFITS, IMAGE_MODEL or LLM_MODEL
    problem: str = ""

    @property
    def ready(self) -> bool:
        return not self.problem

    def __str__(self) -> str:
        return f"{self.what} ({self.problem})" if self.problem else self.what


def _data_need(settings: Settings, name: str) -> Need:
    path = settings.data_dir / name
    return Need(str(path), path, name, "" if path.is_file() else "not there")


def _model_need(label: str, source: str, kind: str) -> Need | None:
    path = Path(source).expanduser()
    if not path.is_absolute():
        return None  # a hub id: downloaded where the model loads, on first use
    if not path.is_dir():
        return Need(f"{label} {path}", path, kind, "not there")
    from helpers.models.folders import missing_model_files

    missing = missing_model_files(path, kind)
    return Need(f"{label} {path}", path, kind, f"missing {', '.join(missing)}" if missing else "")


def needs(settings: Settings, lesson: str | None) -> list[Need]:
    """What ``lesson`` (None: every lesson) reads from ``settings``' storage, each with what is wrong."""
    if not isinstance(settings.storage, Path):
        return []  # an object store (s3://): the pipeline command's inputs, checked by it
    found = []
    for item in LESSON_NEEDS.get(lesson, EVERYTHING):
        if item in (ANIMALS, OUTFITS):
            found.append(_data_need(settings, item))
            continue
        stage, label = (settings.image, "image model") if item == IMAGE_MODEL else (settings.llm, "LLM")
        need = _model_need(label, stage.model, item)
        if need is not None:
            found.append(need)
    return found


def setup_command(settings: Settings, missing: list[Need]) -> str:
    """The one command that puts ``missing`` on this storage root, with the settings that name the root."""
    download = any(BUILT_BY_SETUP.get(need.path.name) for need in missing if need.path.parent == settings.models_dir)
    roots = " ".join(f"{name}={shlex.quote(os.environ[name])}" for name in ("WORKSHOP_STORAGE", "WORKSHOP_MODELS")
                     if os.environ.get(name))
    return f"{roots + ' ' if roots else ''}./setup.sh{' --download' if download else ''}"


def _not_from_setup(settings: Settings, need: Need) -> str | None:
    """The variable that names a model folder ``./setup.sh`` does not make, if ``need`` is one."""
    built = need.path.parent == settings.models_dir and need.path.name in BUILT_BY_SETUP
    if need.kind in (ANIMALS, OUTFITS) or built:
        return None
    return "WORKSHOP_IMAGE_MODEL" if need.kind == IMAGE_MODEL else "WORKSHOP_LLM_MODEL"


def check_ready(settings: Settings, lesson: str | None, loaded_elsewhere: frozenset[str] = frozenset()) -> None:
    """Raise :class:`NotReadyError` naming what ``lesson`` lacks on storage and the one command to run.

    ``loaded_elsewhere``: model folders that every GPU node of the cluster this
    process joined reported complete. The models load there, not here, so such
    a folder need not be on this machine's disk.
    """
    missing = [need for need in needs(settings, lesson) if not need.ready and str(need.path) not in loaded_elsewhere]
    if not missing:
        return
    who = f"Lesson {lesson}" if lesson else "This notebook"
    listed = "; ".join(map(str, missing))
    own = [(need, variable) for need in missing if (variable := _not_from_setup(settings, need))]
    if own:
        need, variable = own[0]
        raise NotReadyError(
            f"{who} needs {listed}. {variable}={need.path} is not a complete model folder: point {variable} at "
            "one, or unset it to use the workshop's, then run this cell again."
        )
    raise NotReadyError(
        f"{who} needs what ./setup.sh puts on the storage root, and it is not there yet: {listed}. "
        f"Run `{setup_command(settings, missing)}` in {REPO_ROOT} (in JupyterLab: File > New > Terminal), "
        "then run this cell again."
    )


class LessonCheck:
    """The check of one ``helpers.start()``: in a notebook only, and once (before Ray, or after a join)."""

    def __init__(self):
        from helpers.show.ipython import in_notebook

        self.pending = in_notebook()
        self.lesson = current_lesson() if self.pending else None

    def check(self, settings: Settings, loaded_elsewhere: frozenset[str] = frozenset()) -> None:
        if self.pending:
            self.pending = False
            check_ready(settings, self.lesson, loaded_elsewhere)
