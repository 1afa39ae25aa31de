"""Helpers for the Ray Data AI pipelines workshop.

The notebooks import this package for what is not the lesson itself: settings
for this machine, starting Ray, the model classes, displays and lab checks.

Names are imported on first use, so that tools such as
``python -m helpers.notebooks build --check`` start without numpy or Ray.
"""

import importlib

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
    "get_lab": "helpers.labs.framework",
}

__all__ = ["Enhancer", "ImageGen", "Session", "Settings", "get_lab", "load_settings", "show_benchmark",
           "show_images", "show_pipeline", "show_source", "start", "stop",
           "stop_workshop_ray"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'helpers' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
