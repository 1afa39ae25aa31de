"""The workshop's own errors, each shown in a notebook as the one line that says the fix.

Each of them (a setting, an input file, a model folder, a cluster node unlike
the driver, a stage out of memory or restarted too often, a publish that
stopped half-way, an output a worker cannot write) carries its whole
explanation in the message. The frames above it are Ray's or this package's
internals, which help nobody in a lesson: IPython shows an exception's
``_render_traceback_()`` instead of the traceback when it has one. Outside
IPython (scripts, the pipeline command, pytest) nothing changes.

They are all defined here, so that a module that only raises or catches one
imports nothing else for it. One lives elsewhere: ``ResourceMismatchError``
(:mod:`helpers.runtime.resources`) is also Ray's ``UserCodeException``, and
this module must not import Ray: the pipeline command rejects a bad input
before Ray or torch is imported.
"""

from __future__ import annotations

_RED = "\x1b[31m"
_RESET = "\x1b[0m"


class ActionableError(Exception):
    """Mixin for errors whose message is the whole story: name, what is wrong, what to change."""

    def _render_traceback_(self) -> list[str]:
        return [f"{_RED}{type(self).__name__}{_RESET}: {self}"]


class SettingsError(ActionableError, ValueError):
    """A setting has a value the workshop cannot use (:mod:`helpers.runtime.settings`); the message says the fix."""


class NotReadyError(ActionableError, FileNotFoundError):
    """A lesson's data or models are not on the storage root yet; the message says what to run."""


class WorkshopPythonError(ActionableError, ImportError):
    """The package runs in a Python that lacks the workshop's packages; the message names the one to use."""


class HelperCallError(ActionableError, TypeError):
    """A notebook helper (``show_images``) was given something it cannot use; the message says what to pass."""


class UnknownLabError(ActionableError, KeyError):
    """``get_lab`` was asked for a lab that does not exist; the message lists those that do."""

    def __str__(self) -> str:  # KeyError's own would put the message in quotes
        return str(self.args[0]) if self.args else ""


class InputError(ActionableError, ValueError):
    """An input file or ``--output`` of the pipeline cannot be used; one line names the file, the place and the fix."""


class ModelFolderError(ActionableError, FileNotFoundError):
    """A model folder is missing or incomplete; the message says what to run."""


class BuildLockTimeout(ActionableError, TimeoutError):
    """Another build of the same models folder did not finish in time."""


class StageOutOfMemoryError(ActionableError, RuntimeError):
    """A model stage ran out of memory on one batch; the message names the settings to lower.

    torch's own message ("DefaultCPUAllocator: can't allocate memory ..." or
    "CUDA out of memory ...") says how many bytes were missing, not which of
    the workshop's knobs caused it.
    """


class StageRestartLimitError(ActionableError, RuntimeError):
    """A model actor's process died more often than the pipeline restarts it; the message says what to check."""


class ClusterMismatchError(ActionableError, RuntimeError):
    """A node that will run a model stage differs from the driver (versions, storage, model folders, GPU memory).

    One line per node and difference, each with its fix: found in seconds when
    joining, instead of as a worker's traceback minutes into a lesson.
    """


class PublishError(ActionableError, RuntimeError):
    """Publishing to an object store stopped half-way; the message says where the complete output is."""


class OutputUnreachableError(ActionableError, OSError):
    """A process that draws images cannot write the run's partial output where the driver made it.

    The workers write the pipeline's files themselves; a folder only the
    driver's machine has, or a bucket the worker's node has no access to,
    is found by the first worker, in one line that names its node.
    """


def first_line(error: BaseException, name: str | None = None) -> str:
    """``"ValueError: first line of the message"``: enough to act on, short enough to read.

    ``name`` replaces the type's name, for errors that stand for another
    (a notebook cell's error carries the original type as ``ename``).
    """
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    name = name or type(error).__name__
    return f"{name}: {text}" if text else name
