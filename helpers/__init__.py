"""Helpers for the Ray Data AI pipelines workshop.

The notebooks import this package for what is not the lesson itself: settings
for this machine, starting Ray, the model classes, displays and lab checks.

Names are imported on first use, so that tools such as
``python -m helpers.notebooks build --check`` start without numpy or Ray.
"""

import importlib

_EXPORTS = {
    "start": "helpers.cluster",
    "stop": "helpers.cluster",
    "Session": "helpers.cluster",
    "Settings": "helpers.config",
    "load_settings": "helpers.config",
    "ImageGen": "helpers.models",
    "Enhancer": "helpers.models",
    "show_images": "helpers.display",
    "show_source": "helpers.display",
    "show_pipeline": "helpers.plan_view",
    "show_benchmark": "helpers.bench_plot",
    "get_lab": "helpers.labs",
}

__all__ = ["Enhancer", "ImageGen", "Session", "Settings", "get_lab", "load_settings", "show_benchmark",
           "show_images", "show_pipeline", "show_source", "start", "stop"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'helpers' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
