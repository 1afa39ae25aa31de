"""The two stateful stages of the workshop: ``ImageGen`` and ``Enhancer``.

Both follow the pattern of Ray's documentation: ``__init__`` loads the model
once per actor, ``__call__(batch)`` takes a dict of NumPy arrays and returns
it with a column added or rewritten. Which model, device and dtype they use
comes from :mod:`helpers.runtime.settings`, so the same class runs the tiny local models
on a laptop and ``sdxl-turbo`` / ``Qwen2.5-0.5B-Instruct`` on GPUs.

``ImageGen`` is the class lesson 03 shows, so it stays as short as a learner
would write it: what a real run also needs (loading on any device, long
prompts, out-of-memory errors) lives in :mod:`helpers.models.loading` and
:mod:`helpers.models.safeguards`.
"""

from __future__ import annotations

import io
import random

import numpy as np

from helpers.models.loading import check_local_model, load_image_pipeline, load_text_generator, torch_device_and_dtype
from helpers.models.safeguards import (
    MAX_PROMPT_CHARS,
    cut_long_prompts,
    explain_image_out_of_memory,
    explain_llm_out_of_memory,
    out_of_memory_names,
)
from helpers.runtime.settings import load_settings

__all__ = [
    "MAX_PROMPT_CHARS", "SEASONS", "Enhancer", "ImageGen", "check_local_model", "load_image_pipeline",
    "load_text_generator", "object_column", "out_of_memory_names", "png_bytes", "reply_texts", "seasonal_messages",
    "torch_device_and_dtype",
]

SEASONS = ("winter", "spring", "summer", "fall")


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
    """Draw one image per prompt with a text-to-image model; adds an ``image`` column of PIL images."""

    def __init__(self):
        self.settings = load_settings()  # your profile: the model, the image size, the steps
        self.pipe = load_image_pipeline(self.settings.image.model, self.settings)

    def __call__(self, batch: dict) -> dict:
        prompts = cut_long_prompts(batch["prompt"], "ImageGen")
        size = self.settings.image_size
        with explain_image_out_of_memory(self.settings, len(prompts)):
            images = self.pipe(prompt=prompts, num_inference_steps=self.settings.image_steps,
                               guidance_scale=0.0, height=size, width=size).images
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
        with explain_llm_out_of_memory(self.settings, len(prompts)):
            replies = self.chat(cut_long_prompts(prompts, "Enhancer"))
        enhanced = [bool(r.strip()) for r in replies]
        batch["original_prompt"] = np.array(prompts, dtype=object)
        batch["prompt"] = np.array([r if ok else p for r, ok, p in zip(replies, enhanced, prompts)], dtype=object)
        batch["enhanced"] = np.array(enhanced)
        return batch
