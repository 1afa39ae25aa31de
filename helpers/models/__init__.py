"""The two model stages, ``ImageGen`` and ``Enhancer``, their loaders, and the model folders.

:mod:`.stages` is what a lesson uses (and what every model actor runs), kept
short enough to read in a lesson; :mod:`.loading` loads a model on the
machine's device, :mod:`.safeguards` cuts long prompts and turns an
out-of-memory error into one that names the settings to lower;
:mod:`.build` makes the CPU profile's models offline and checks model folders
(``python -m helpers.models.build``). Names are imported on first use, so that
importing the model-folder checks does not load NumPy or torch.
"""

import importlib

_FROM_STAGES = (
    "ImageGen", "Enhancer", "SEASONS", "load_image_pipeline", "load_text_generator", "seasonal_messages",
    "reply_texts", "png_bytes", "object_column", "check_local_model",
)

__all__ = list(_FROM_STAGES)


def __getattr__(name: str):
    if name in _FROM_STAGES:
        return getattr(importlib.import_module("helpers.models.stages"), name)
    raise AttributeError(f"module 'helpers.models' has no attribute {name!r}")
