"""Loading the two models once per actor, with everything a plain ``from_pretrained`` leaves out.

``load_image_pipeline`` is ``DiffusionPipeline.from_pretrained(model).to(device)``
and ``load_text_generator`` is transformers' ``pipeline("text-generation")``;
around each call: torch threads on CPU, quiet library logs, a check that a
model folder is complete, and the device and dtype of the machine.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

from helpers.models.safeguards import explain_load_out_of_memory
from helpers.runtime.settings import Settings, load_settings


def torch_device_and_dtype(bf16_where_supported: bool = False):
    """fp16 on CUDA; float32 on CPU, where fp16 is slow and diffusers refuses it.

    ``bf16_where_supported`` asks for bfloat16 on a GPU that has it: Qwen2.5 was
    trained in it, and in fp16 its activations may overflow into empty or "!!!"
    replies (what transformers' own ``dtype="auto"`` avoids by loading it in bf16).
    """
    import torch

    if torch.cuda.is_available():
        if bf16_where_supported and torch.cuda.is_bf16_supported(including_emulation=False):  # T4, V100: no
            return "cuda", torch.bfloat16
        return "cuda", torch.float16
    return "cpu", torch.float32


def quiet_library(name: str) -> None:
    """Keep worker logs to what a learner needs: no per-step progress bars or notices from ``name``.

    Only the library being loaded is imported: an LLM actor that also imported
    diffusers to quiet it paid about 0.5 s of CPU for nothing (2 shared cores).
    """
    library = importlib.import_module(name)
    library.utils.logging.set_verbosity_error()
    library.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def prepare_process(settings: Settings, *libraries: str) -> None:
    """On CPU, use the settings' torch threads (actors share the cores); then quiet ``libraries``."""
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(settings.torch_threads)
    for name in libraries:
        quiet_library(name)


def check_local_model(source: str, kind: str) -> None:
    """A model given as a folder must be complete; a hub id is left to the hub."""
    if source.startswith(("/", ".", "~")) or Path(source).exists():
        from helpers.models.folders import ensure_model_folder

        ensure_model_folder(Path(source).expanduser(), kind)


def hub_revision(source: str) -> str | None:
    """The pinned commit of a real model loaded by its hub id, as ``--download`` stages it; None for a folder.

    Without it each node would fetch whatever the hub's main branch holds that
    day, and nodes could load different weights than the staged copies.
    """
    from helpers.models.build import HUB_IMAGE_REVISION, HUB_LLM_REVISION
    from helpers.runtime.settings import HUB_IMAGE_MODEL, HUB_LLM_MODEL

    if Path(source).expanduser().exists():
        return None
    return {HUB_IMAGE_MODEL: HUB_IMAGE_REVISION, HUB_LLM_MODEL: HUB_LLM_REVISION}.get(source)


def weights_variant(source: str, device: str) -> str | None:
    """sdxl-turbo ships fp16 weight files; a staged copy may hold only those."""
    if device != "cuda":
        return None
    path = Path(source).expanduser()
    if not path.exists():
        return "fp16"
    from helpers.models.folders import image_weights_variant

    return image_weights_variant(path)


def load_image_pipeline(source: str, settings: Settings | None = None):
    """Load a text-to-image pipeline (sdxl-turbo or the tiny local one) once.

    ``DiffusionPipeline`` builds the class that the folder's ``model_index.json``
    names (``StableDiffusionXLPipeline`` for sdxl-turbo and for the tiny CPU
    model), as ``AutoPipelineForText2Image`` would, with the same weights and
    the same pictures, and without importing every pipeline family the auto
    class maps to: import and load of the tiny model took 4.7-5.7 s against
    5.1-6.3 s with the auto class (3 runs each, 2 shared cores).
    """
    from diffusers import DiffusionPipeline

    settings = settings or load_settings()
    prepare_process(settings, "diffusers", "transformers")  # the text encoders are transformers models
    check_local_model(source, "image")
    device, dtype = torch_device_and_dtype()
    with explain_load_out_of_memory(settings, "the image model", source, on_gpu=device == "cuda"):
        pipe = DiffusionPipeline.from_pretrained(source, dtype=dtype, variant=weights_variant(source, device),
                                                 revision=hub_revision(source))
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)


def load_text_generator(source: str, settings: Settings | None = None):
    """Load a transformers text-generation pipeline (Qwen or the small local LLM) once."""
    from transformers import pipeline

    settings = settings or load_settings()
    prepare_process(settings, "transformers")
    check_local_model(source, "llm")
    device, dtype = torch_device_and_dtype(bf16_where_supported=True)
    with explain_load_out_of_memory(settings, "the LLM", source, on_gpu=device == "cuda"):
        generator = pipeline("text-generation", model=source, dtype=dtype, device=device,
                             revision=hub_revision(source))
    # Batched generation pads on the left so every reply starts right after its prompt.
    generator.tokenizer.padding_side = "left"
    return generator
