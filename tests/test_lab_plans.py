"""Reading a pipeline's plan (:mod:`helpers.labs.plans`): what each ``map_batches`` stage declares, nothing run."""

from __future__ import annotations

import math

from helpers.labs.plans import map_stages
from tests import lab_pipelines
from tests.lab_pipelines import Enhancer, model_stages

#: The stand-in for ``animals_outfits`` (a fixture, used by name).
joined = lab_pipelines.joined


def test_map_stages_reads_what_each_stage_declares(joined):
    stages = map_stages(model_stages(joined, llm_gpus=0.6, image_gpus=0.4))
    assert [s.label for s in stages] == ["expand_prompt", "Enhancer", "ImageGen"]
    assert [s.is_class for s in stages] == [False, True, True]
    assert [s.num_gpus for s in stages] == [0.0, 0.6, 0.4]
    assert [s.max_actors for s in stages] == [None, 2, 2]


def test_map_stages_reads_constructor_arguments_and_unbounded_pools(joined):
    import ray

    pipeline = joined.map_batches(
        Enhancer,
        fn_constructor_args=["a model"],
        fn_constructor_kwargs={"prompt_column": "prompt"},
        compute=ray.data.ActorPoolStrategy(min_size=1),
    )
    (stage,) = map_stages(pipeline)
    assert stage.fn is Enhancer
    assert stage.constructor_args == ("a model",) and stage.constructor_kwargs == {"prompt_column": "prompt"}
    assert math.isinf(stage.max_actors)
