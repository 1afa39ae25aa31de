"""The final pipeline as the lessons build it: animals x outfits -> prompts -> LLM -> images -> PNG.

What the pipeline command and the benchmark reuse::

    ds = build_pipeline(animals_ds, outfits_ds, settings)   # a lazy ray.data.Dataset

The functions are plain ``map_batches`` stages (a dict of NumPy arrays in,
the same dict with a column added out); the model stages are
:mod:`helpers.models.stages`' ``Enhancer`` and ``ImageGen``, each on an actor
pool sized by :mod:`helpers.runtime.settings`. Nothing here imports Ray or
torch until a pipeline is built, so the command checks its inputs without them.
"""

from __future__ import annotations

import os

import numpy as np

from helpers.pipeline.inputs import KEY
from helpers.runtime.settings import Settings, gpu_scale, with_stage

#: GPU per image actor when it shares the GPUs with the LLM (lesson value for two GPUs).
SHARED_IMAGE_GPUS = 0.4
JOIN_PARTITIONS = 2
#: Restarts of a model actor whose process dies (killed, or the out-of-memory killer)
#: and retries of the batch it was working on. Ray Data 2.60's default is unlimited
#: for both (``ActorPoolMapOperator._apply_default_remote_args``): a batch that kills
#: its actor every time would restart it forever and the run would never end. Three
#: survive a lost worker or node; a fourth death fails the run with Ray's error.
ACTOR_FAULT_TOLERANCE = {"max_restarts": 3, "max_task_retries": 3}


def expand_prompt(batch: dict) -> dict:
    """Add ``prompt``: the animal wearing the outfit, e.g. "A red fox wearing a straw hat"."""
    batch["prompt"] = np.array(
        [f"{animal} wearing a {outfit}" for animal, outfit in zip(batch["animal"], batch["outfit"])],
        dtype=object,
    )
    return batch


def skip_enhancement(batch: dict) -> dict:
    """The columns ``Enhancer`` adds, for a run without the LLM: the prompt is kept as it is."""
    batch["original_prompt"] = np.array(batch["prompt"], dtype=object)
    batch["enhanced"] = np.zeros(len(batch["prompt"]), dtype=bool)
    return batch


def encode_png(batch: dict) -> dict:
    """Replace the ``image`` column of PIL images with PNG bytes.

    Ray Data would store PIL images as pickled Python objects, which only
    Python with the same libraries can read back; PNG bytes are plain binary.
    """
    from helpers.models.stages import object_column, png_bytes

    batch["image"] = object_column([png_bytes(image) for image in batch["image"]])
    return batch


def shared_gpu_settings(settings: Settings, cluster_gpus: float | None) -> Settings:
    """Settings for the LLM and image actors running at the same time.

    Each stage's default asks for what it needs alone (image: a whole GPU).
    Together, an image actor takes 0.4 GPU next to an LLM actor's 0.6, as in
    the lessons, scaled to the cluster. An explicit ``WORKSHOP_IMAGE_GPUS`` wins.
    """
    if os.environ.get("WORKSHOP_IMAGE_GPUS"):
        return settings
    shared = round(SHARED_IMAGE_GPUS * gpu_scale(cluster_gpus), 3)
    return with_stage(settings, "image", num_gpus=min(settings.image.num_gpus, shared))


def build_pipeline(
    animals_ds, outfits_ds, settings: Settings, enhance: bool = True, num_partitions: int = JOIN_PARTITIONS,
    *, generate: bool = True, rows_per_block: int | None = None,
):
    """The lazy Dataset: join on ``id``, write prompts, enhance them, draw images, encode PNG.

    Rows of ids that are in only one input are dropped by the inner join.
    ``enhance=False`` skips the LLM and marks every prompt as not enhanced;
    ``generate=False`` stops before the images (the benchmark times stages alone).
    ``rows_per_block`` cuts the join's output into blocks of that many rows, so
    that the model stages get work as soon as one block is ready and the first
    images are drawn while the LLM works on the next prompts (the join's
    ``num_partitions`` blocks would otherwise each hold half the rows).
    """
    from helpers.models.stages import Enhancer, ImageGen

    ds = animals_ds.join(outfits_ds, join_type="inner", num_partitions=num_partitions, on=(KEY,))
    if rows_per_block:
        ds = ds.repartition(target_num_rows_per_block=rows_per_block)
    ds = ds.map_batches(expand_prompt)
    if enhance:
        ds = ds.map_batches(Enhancer, **settings.llm.map_batches_kwargs(), **ACTOR_FAULT_TOLERANCE)
    else:
        ds = ds.map_batches(skip_enhancement)
    if not generate:
        return ds
    ds = ds.map_batches(ImageGen, **settings.image.map_batches_kwargs(), **ACTOR_FAULT_TOLERANCE)
    return ds.map_batches(encode_png)
