"""Helpers for the Ray Data AI pipelines workshop.

The notebooks import this package for what is not the lesson itself: settings
for this machine, starting Ray, the model classes, displays and lab checks.

Names are imported on first use, so that tools such as
``python -m helpers.notebooks build --check`` start without numpy or Ray.

A Python without the workshop's packages (another Jupyter kernel, the
system's ``python3``) is told in one line which Python and kernel to use:
at ``import helpers`` when Ray is missing, and when a name here is first
used for any other missing package; Python's own ``No module named 'ray'``
does not say where the packages are.
"""

import importlib
import importlib.util
import sys
from pathlib import Path

from helpers.errors import WorkshopPythonError

#: The workshop's own Python, which ./setup.sh creates next to this package.
WORKSHOP_PYTHON = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"


def wrong_python(missing: str) -> WorkshopPythonError:
    """The one-line error for a Python that has no module ``missing``, naming the Python and kernel to use."""
    from helpers.kernel import KERNEL_DISPLAY_NAME

    here, clone = Path(sys.executable), WORKSHOP_PYTHON.parents[2]
    if here.parent == WORKSHOP_PYTHON.parent:
        fix = f"its packages are incomplete: run ./setup.sh in {clone} again"
    else:
        fix = (
            f"use the workshop's, {WORKSHOP_PYTHON}: in JupyterLab the kernel \"{KERNEL_DISPLAY_NAME}\" "
            "(Kernel > Change Kernel), in a terminal that Python itself"
        )
        if not WORKSHOP_PYTHON.exists():
            fix += f" (it is not there yet: run ./setup.sh in {clone})"
    return WorkshopPythonError(f"{here} has no module named {missing!r}, which the workshop needs; {fix}")


if importlib.util.find_spec("ray") is None:
    raise wrong_python("ray")


def _process_started() -> float | None:
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - no psutil, or a system it cannot read: the labs ask again later
        return None


#: When this process (a notebook's kernel) started, read as it imports ``helpers``. Read later, the
#: figure moves with the clock: a laptop's virtual machine steps its clock forward after a sleep.
PROCESS_STARTED = _process_started()

_EXPORTS = {
    "start": "helpers.runtime.cluster",
    "stop": "helpers.runtime.cluster",
    "stop_workshop_ray": "helpers.runtime.cluster",
    "Session": "helpers.runtime.cluster",
    "Settings": "helpers.runtime.settings",
    "load_settings": "helpers.runtime.settings",
    "ImageGen": "helpers.models.stages",
    "Enhancer": "helpers.models.stages",
    "show_images": "helpers.show.images",
    "show_source": "helpers.show.images",
    "show_pipeline": "helpers.show.plan",
    "show_benchmark": "helpers.show.benchmark",
    "show_run": "helpers.show.progress",
    "get_lab": "helpers.labs.framework",
}

__all__ = ["Enhancer", "ImageGen", "Session", "Settings", "get_lab", "load_settings", "show_benchmark",
           "show_images", "show_pipeline", "show_run", "show_source", "start", "stop",
           "stop_workshop_ray"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'helpers' has no attribute {name!r}")
    try:
        module = importlib.import_module(_EXPORTS[name])
    except ModuleNotFoundError as err:
        if (err.name or "helpers").partition(".")[0] == "helpers":
            raise
        raise wrong_python(err.name.partition(".")[0]) from None
    return getattr(module, name)
