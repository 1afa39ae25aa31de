"""The final pipeline as the lessons build it: animals x outfits -> prompts -> LLM -> images -> PNG.

What the pipeline command and the benchmark reuse::

    ds = build_pipeline(animals_ds, outfits_ds, settings, write_to=partial)   # a lazy ray.data.Dataset

The functions are plain ``map_batches`` stages (a dict of NumPy arrays in,
the same dict with a column added out); the model stages are
:mod:`helpers.models.stages`' ``Enhancer`` and ``ImageGen``, each on an actor
pool sized by :mod:`helpers.runtime.settings`. Nothing here imports Ray or
torch until a pipeline is built, so the command checks its inputs without them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers.errors import StageRestartLimitError
from helpers.models.safeguards import MAX_PROMPT_CHARS
from helpers.pipeline.inputs import KEY
from helpers.runtime.settings import Settings, image_gpus_beside_llm, with_stage

JOIN_PARTITIONS = 2
#: Restarts of a model actor whose process died (killed, or the out-of-memory killer).
#: Ray Data 2.60 restarts such an actor, and retries the batch it was working on,
#: without limit, so a batch that kills its actor every time would never end the run.
#: Three restarts survive a lost worker or node; at the fourth the run fails
#: (:func:`restart_limited`). Ray's own ``max_restarts`` reaches ``map_batches`` only
#: as a loose keyword (``**ray_remote_args``), which Ray 2.60 deprecates for removal
#: in Ray 2.64 and has no named parameter for.
MAX_ACTOR_RESTARTS = 3


def prompt_text(animal: str, outfit: str) -> str:
    """The prompt of one row, e.g. "A red fox wearing a straw hat": one place, for the stage and the driver's counts."""
    return f"{animal} wearing a {outfit}"


def expand_prompt(batch: dict) -> dict:
    """Add ``prompt``: the animal wearing the outfit (:func:`prompt_text`)."""
    batch["prompt"] = np.array(
        [prompt_text(animal, outfit) for animal, outfit in zip(batch["animal"], batch["outfit"])],
        dtype=object,
    )
    return batch


def count_long_prompts(animals, outfits, limit: int = MAX_PROMPT_CHARS) -> int:
    """How many prompts of the joined rows are longer than ``limit`` (the models' ``MAX_PROMPT_CHARS``).

    The model stages cut such a prompt and say so only in a worker's log; the
    driver counts them here, from the two checked input tables (``pyarrow``)
    before Ray starts, so that the run's summary says how many were cut. It
    counts the prompts built from the inputs; the LLM's replies are bounded by
    ``WORKSHOP_MAX_NEW_TOKENS`` instead.
    """
    outfit_of = dict(zip(outfits.column(KEY).to_pylist(), outfits.column("outfit").to_pylist()))
    pairs = zip(animals.column(KEY).to_pylist(), animals.column("animal").to_pylist())
    return sum(len(prompt_text(animal, outfit_of[key])) > limit for key, animal in pairs if key in outfit_of)


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


def shared_gpu_settings(settings: Settings) -> Settings:
    """Settings for the LLM and image actors running at the same time, as lesson 05 sizes them.

    Each stage's default asks for what it needs alone (image: a whole GPU on
    the lessons' two GPUs); beside the LLM an image actor gets that minus an LLM
    actor's share (:func:`helpers.runtime.settings.image_gpus_beside_llm`).
    """
    return with_stage(settings, "image", num_gpus=image_gpus_beside_llm(settings))


def count_restart(stage: str, limit: int = MAX_ACTOR_RESTARTS) -> None:
    """In a model actor's constructor: count a restart of this actor, and refuse one past ``limit``.

    Ray runs the constructor again, in a new process and under the same actor id,
    when it restarts the actor. The first run writes 0 to a file named after the
    actor in Ray's temporary folder of the node, and each later run adds one (an
    actor restarted on another node counts from zero there). Ray 2.60's
    ``was_current_actor_reconstructed`` would also tell a restart, but it reads
    Ray's own deprecated ``actor_id`` and logs a deprecation warning in every actor.
    Raising here fails the actor's creation, which Ray does not retry, and Ray
    Data then fails the run with this error.
    """
    import ray

    if not ray.is_initialized():  # outside Ray: asking for the runtime context would start a local Ray
        return
    context = ray.get_runtime_context()
    actor_id = context.get_actor_id()
    if actor_id is None:
        return
    counter = Path(context.get_temp_dir()) / "workshop-actor-restarts" / actor_id
    counter.parent.mkdir(parents=True, exist_ok=True)
    restarts = int(counter.read_text()) + 1 if counter.is_file() else 0
    counter.write_text(str(restarts))
    if restarts > limit:
        raise StageRestartLimitError(
            f"{stage}'s worker process died {restarts} times in this run (killed, or out of memory), "
            f"and the pipeline restarts it at most {limit} times; if memory is short, lower that stage's "
            "batch size (WORKSHOP_IMAGE_BATCH_SIZE, WORKSHOP_LLM_BATCH_SIZE) or its actors"
        )


def restart_limited(stage_class: type, limit: int = MAX_ACTOR_RESTARTS) -> type:
    """``stage_class``, under the same name, with at most ``limit`` restarts of each actor (:func:`count_restart`)."""

    def __init__(self, *args, **kwargs):
        count_restart(stage_class.__name__, limit)
        stage_class.__init__(self, *args, **kwargs)

    return type(stage_class.__name__, (stage_class,), {"__init__": __init__, "__doc__": stage_class.__doc__})


def writes_where_it_draws(stage_class: type) -> type:
    """``stage_class``, under the same name, that encodes its images as PNG and writes them itself.

    Its actors take the partial output as ``folder``, check that they reach
    it before the model loads (:func:`helpers.pipeline.writer.check_reachable`),
    and return one small row per batch (:func:`helpers.pipeline.writer.write_part`), which
    also counts the prompts longer than the image model reads (``image_prompts_cut``).
    Writing in the image actor, not in a stage after it, keeps each picture
    on the GPU node that drew it until it goes to the shared storage: Ray Data
    runs a task stage after an actor stage as tasks of its own, which it may
    place on any node, the head included, and it would move every picture there.
    """
    from helpers.models.safeguards import count_token_cuts
    from helpers.pipeline.writer import check_reachable, write_part

    def __init__(self, folder, *args, **kwargs):
        check_reachable(folder)
        self.folder = folder
        stage_class.__init__(self, *args, **kwargs)

    def __call__(self, batch):
        token_cuts = count_token_cuts(getattr(self, "pipe", None), batch["prompt"])
        return write_part(encode_png(stage_class.__call__(self, batch)), self.folder, image_prompts_cut=token_cuts)

    members = {"__init__": __init__, "__call__": __call__, "__doc__": stage_class.__doc__}
    return type(stage_class.__name__, (stage_class,), members)


def build_pipeline(
    animals_ds, outfits_ds, settings: Settings, enhance: bool = True, num_partitions: int = JOIN_PARTITIONS,
    *, write_to, generate: bool = True, rows_per_block: int | None = None,
):
    """The lazy Dataset: join on ``id``, write prompts, enhance them, draw images, write them to ``write_to``.

    Rows of ids that are in only one input are dropped by the inner join.
    ``enhance=False`` skips the LLM and marks every prompt as not enhanced;
    ``generate=False`` writes the rows without drawing images (the benchmark
    times stages alone).
    ``rows_per_block`` cuts the join's output into blocks of that many rows, so
    that the model stages get work as soon as one block is ready and the first
    images are drawn while the LLM works on the next prompts (the join's
    ``num_partitions`` blocks would otherwise each hold half the rows).
    ``write_to`` is a partial output (a folder every node sees, or an ``s3://``
    prefix): the rows are written there as they are done, by the image actors
    (:func:`writes_where_it_draws`), and the Dataset yields one small row per
    written part (:mod:`helpers.pipeline.writer`), not the rows.
    """
    from helpers.models.stages import Enhancer, ImageGen
    from helpers.pipeline.writer import write_part

    ds = animals_ds.join(outfits_ds, join_type="inner", num_partitions=num_partitions, on=(KEY,))
    if rows_per_block:
        ds = ds.repartition(target_num_rows_per_block=rows_per_block)
    ds = ds.map_batches(expand_prompt)
    if enhance:
        ds = ds.map_batches(restart_limited(Enhancer), **settings.llm.map_batches_kwargs())
    else:
        ds = ds.map_batches(skip_enhancement)
    if not generate:
        return ds.map_batches(write_part, fn_kwargs={"folder": write_to, "images": False})
    writer = restart_limited(writes_where_it_draws(ImageGen))
    return ds.map_batches(writer, fn_constructor_kwargs={"folder": write_to}, **settings.image.map_batches_kwargs())
