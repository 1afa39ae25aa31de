"""The pipeline's stages (:mod:`helpers.pipeline.stages`): the plain ones without Ray, the restart limit on Ray."""

from __future__ import annotations

import os

import numpy as np
import pytest

from helpers.pipeline import stages


def test_stages_without_ray():
    from PIL import Image

    batch = {"animal": np.array(["A fox"], dtype=object), "outfit": np.array(["red hat"], dtype=object)}
    batch = stages.skip_enhancement(stages.expand_prompt(batch))
    assert batch["prompt"].tolist() == ["A fox wearing a red hat"] == batch["original_prompt"].tolist()
    assert batch["enhanced"].tolist() == [False]
    batch["image"] = np.empty(1, dtype=object)
    batch["image"][0] = Image.new("RGB", (4, 4))
    encoded = stages.encode_png(batch)["image"]
    assert encoded.dtype == object and encoded[0].startswith(b"\x89PNG")


def test_a_restart_limited_stage_keeps_its_name_and_works_outside_ray():
    """Ray Data names the operator after the class (``MapBatches(ImageGen)``); outside an actor nothing is counted."""

    class Doubler:
        """Doubles ``x``."""

        def __init__(self, factor=2):
            self.factor = factor

        def __call__(self, batch):
            return {"x": batch["x"] * self.factor}

    import ray

    ray_before = ray.is_initialized()
    limited = stages.restart_limited(Doubler)
    assert limited.__name__ == "Doubler" and limited.__doc__ == Doubler.__doc__
    assert limited(factor=3)({"x": np.array([1, 2])})["x"].tolist() == [3, 6]
    assert ray.is_initialized() == ray_before  # building it outside Ray starts no Ray


@pytest.mark.slow
def test_a_worker_that_dies_on_every_batch_fails_the_run_after_the_restart_limit(session):
    import ray

    class DiesOnEveryBatch:
        """A stage whose process dies on every batch, as one that the out-of-memory killer stops would."""

        def __call__(self, batch):
            os._exit(1)

    ds = ray.data.range(1).map_batches(
        stages.restart_limited(DiesOnEveryBatch, limit=1), batch_size=1, compute=ray.data.ActorPoolStrategy(size=1)
    )
    with pytest.raises(Exception, match=r"DiesOnEveryBatch's worker process died 2 times in this run"):
        ds.materialize()
