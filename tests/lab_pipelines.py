"""Stand-ins for the pipelines of lessons 05 and 06, for the tests of the labs that read their plans.

The classes are never instantiated: building a plan runs nothing, so no model is loaded.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def joined(session):
    """Stands in for ``animals_outfits``: a two-row dataset with the joined columns (on the shared session)."""
    import ray

    rows = [{"id": 1, "animal": "A red fox", "outfit": "straw hat"}, {"id": 2, "animal": "An owl", "outfit": "scarf"}]
    return ray.data.from_items(rows)


def expand_prompt(batch):
    batch["prompt"] = batch["animal"] + " wearing a " + batch["outfit"]
    return batch


class Enhancer:
    """A stand-in for the lesson's LLM stage (plans only: never instantiated)."""

    def __call__(self, batch):
        return batch


class ImageGen:
    """A stand-in for ``helpers.ImageGen`` (plans only: never instantiated)."""

    def __call__(self, batch):
        return batch


def model_stages(ds, llm_gpus=0.3, image_gpus=0.2, llm_pool=None, image_pool=None, prepare=True):
    """Lesson 05's pipeline with the given GPU shares and actor pools (two actors each by default).

    ``prepare=False`` leaves out the ``expand_prompt`` stage.
    """
    import ray

    if prepare:
        ds = ds.map_batches(expand_prompt)
    return (
        ds.map_batches(Enhancer, batch_size=4, num_gpus=llm_gpus,
                       compute=llm_pool or ray.data.ActorPoolStrategy(size=2))
        .map_batches(ImageGen, batch_size=8, num_gpus=image_gpus,
                     compute=image_pool or ray.data.ActorPoolStrategy(size=2))
    )
