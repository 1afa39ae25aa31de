"""The two stateful stages of the workshop: ``ImageGen`` and ``Enhancer``.

Both follow the pattern of Ray's documentation: ``__init__`` loads the model
once per actor, ``__call__(batch)`` takes a dict of NumPy arrays and returns
it with a column added or rewritten. Which model, device and dtype they use
comes from :mod:`helpers.runtime.settings`, so the same class runs the tiny local models
on a laptop and ``sdxl-turbo`` / ``Qwen2.5-0.5B-Instruct`` on GPUs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import warnings
from pathlib import Path

import numpy as np

from helpers.errors import StageOutOfMemoryError
from helpers.runtime.settings import Settings, load_settings

SEASONS = ("winter", "spring", "summer", "fall")

#: Longest prompt (characters) handed to the LLM; longer ones are cut with a notice.
MAX_PROMPT_CHARS = 1000
#: How torch words a failed allocation: CUDA ("CUDA out of memory") and the CPU allocator.
_OUT_OF_MEMORY_WORDS = ("out of memory", "can't allocate memory")

log = logging.getLogger("helpers.models.stages")


def is_out_of_memory(error: BaseException) -> bool:
    """True for MemoryError and torch's out-of-memory errors (a RuntimeError subclass on CUDA)."""
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, RuntimeError) and any(w in str(error).lower() for w in _OUT_OF_MEMORY_WORDS)


@contextlib.contextmanager
def out_of_memory_names(stage: str, rows: int, fix: str):
    """Turn an out-of-memory error inside a stage into one that says what to lower."""
    try:
        yield
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err) or isinstance(err, StageOutOfMemoryError):
            raise
        detail = " ".join(str(err).split())[:160] or type(err).__name__
        raise StageOutOfMemoryError(
            f"{stage} ran out of memory on a batch of {rows} prompts; {fix} (torch said: {detail})"
        ) from None


def _truncated(prompts: list[str], limit: int, stage: str) -> list[str]:
    """Cut prompts longer than ``limit`` characters, with a notice in the worker log."""
    long = [len(p) for p in prompts if len(p) > limit]
    if long:
        log.warning("%s: %d prompt(s) of up to %d characters cut to %d", stage, len(long), max(long), limit)
    return [p[:limit] for p in prompts]


def torch_device_and_dtype():
    """fp16 on CUDA; float32 on CPU, where fp16 is slow and diffusers refuses it."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.float16
    return "cpu", torch.float32


def _quiet_libraries() -> None:
    """Keep worker logs to what a learner needs: no per-step progress bars or notices."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _prepare_process(settings: Settings) -> None:
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(settings.torch_threads)
    _quiet_libraries()


def check_local_model(source: str, kind: str) -> None:
    """A model given as a folder must be complete; a hub id is left to the hub."""
    if source.startswith(("/", ".", "~")) or Path(source).exists():
        from helpers.models.build import ensure_model_folder

        ensure_model_folder(Path(source).expanduser(), kind)


def _weights_variant(source: str, device: str) -> str | None:
    """sdxl-turbo ships fp16 weight files; a staged copy may hold only those."""
    if device != "cuda":
        return None
    path = Path(source).expanduser()
    if not path.exists():
        return "fp16"
    from helpers.models.build import image_weights_variant

    return image_weights_variant(path)


def load_image_pipeline(source: str, settings: Settings | None = None):
    """Load a text-to-image pipeline (sdxl-turbo or the tiny local one) once."""
    from diffusers import AutoPipelineForText2Image

    settings = settings or load_settings()
    _prepare_process(settings)
    check_local_model(source, "image")
    device, dtype = torch_device_and_dtype()
    variant = _weights_variant(source, device)
    pipe = AutoPipelineForText2Image.from_pretrained(source, dtype=dtype, variant=variant)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_text_generator(source: str, settings: Settings | None = None):
    """Load a transformers text-generation pipeline (Qwen or the small local LLM) once."""
    from transformers import pipeline

    settings = settings or load_settings()
    _prepare_process(settings)
    check_local_model(source, "llm")
    device, dtype = torch_device_and_dtype()
    generator = pipeline("text-generation", model=source, dtype=dtype, device=device)
    # Batched generation pads on the left so every reply starts right after its prompt.
    generator.tokenizer.padding_side = "left"
    return generator


def seasonal_messages(prompt: str, season: str) -> list[dict]:
    """The chat that asks the LLM to add two short touches of ``season``."""
    return [
        {
            "role": "system",
            "content": (
                "You are a helpful assistant. Enhance the image description with two short "
                f"elements of the {season} season. Keep the animal wearing its clothing and keep "
                "the image medium (like photo or painting). Return the new description only, "
                "with no introduction."
            ),
        },
        {"role": "user", "content": prompt[:MAX_PROMPT_CHARS]},  # Enhancer logs the cut
    ]


def reply_texts(outputs) -> list[str]:
    """The assistant's reply for each chat (a list of chats returns a list of lists)."""
    return [out[0]["generated_text"][-1]["content"].strip() for out in outputs]


def png_bytes(image) -> bytes:
    """Encode a PIL image as PNG: plain data that any reader opens without Ray."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def object_column(values) -> np.ndarray:
    """A 1-D object array holding ``values`` as they are.

    ``np.array(list_of_pil_images)`` would turn the images into one big pixel
    array; filling an object array item by item keeps one image per row.
    """
    column = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        column[i] = value
    return column


class ImageGen:
    """Generate one image per prompt with a text-to-image diffusion model.

    Adds an ``image`` column of PIL images, as the diffusers pipeline returns
    them. Ray Data can carry them between stages (it pickles them), but
    writers need plain data: PNG bytes for Parquet, ``uint8`` arrays for
    ``write_images`` (see :func:`png_bytes` and the labs).
    """

    def __init__(self):
        self.settings = load_settings()
        self.pipe = load_image_pipeline(self.settings.image.model, self.settings)

    def __call__(self, batch: dict) -> dict:
        size = self.settings.image_size
        # The text encoders read 77 tokens; the tokenizer cuts the rest. Cutting the
        # characters first keeps a 5,000-character prompt from being tokenized whole.
        prompts = _truncated([str(p) for p in batch["prompt"]], MAX_PROMPT_CHARS, "ImageGen")
        fix = (
            f"lower WORKSHOP_IMAGE_BATCH_SIZE (now {self.settings.image.batch_size}) or the map_batches "
            f"batch_size, or WORKSHOP_IMAGE_SIZE (now {size} px)"
        )
        with out_of_memory_names("ImageGen", len(prompts), fix):
            images = self.pipe(
                prompt=prompts,
                num_inference_steps=self.settings.image_steps,
                guidance_scale=0.0,
                height=size,
                width=size,
            ).images
        batch["image"] = object_column(images)
        return batch


class Enhancer:
    """Rewrite each prompt with an LLM, adding touches of a random season.

    Keeps the original in ``original_prompt``. A reply that is empty keeps the
    original prompt, and ``enhanced`` says which prompts were rewritten, so a
    run can count them.
    """

    def __init__(self):
        self.settings = load_settings()
        self.pipe = load_text_generator(self.settings.llm.model, self.settings)
        self.random = random.Random()

    def chat(self, prompts: list[str]) -> list[str]:
        chats = [seasonal_messages(p, self.random.choice(SEASONS)) for p in prompts]
        outputs = self.pipe(
            chats,
            max_new_tokens=self.settings.max_new_tokens,
            do_sample=False,
            batch_size=len(chats),
        )
        return reply_texts(outputs)

    def __call__(self, batch: dict) -> dict:
        prompts = [str(p) for p in batch["prompt"]]
        fix = (
            f"lower WORKSHOP_LLM_BATCH_SIZE (now {self.settings.llm.batch_size}) or the map_batches "
            f"batch_size, or WORKSHOP_MAX_NEW_TOKENS (now {self.settings.max_new_tokens})"
        )
        with out_of_memory_names("Enhancer", len(prompts), fix):
            replies = self.chat(_truncated(prompts, MAX_PROMPT_CHARS, "Enhancer"))
        enhanced = [bool(r.strip()) for r in replies]
        batch["original_prompt"] = np.array(prompts, dtype=object)
        batch["prompt"] = np.array([r if ok else p for r, ok, p in zip(replies, enhanced, prompts)], dtype=object)
        batch["enhanced"] = np.array(enhanced)
        return batch
