"""The lab of lesson 05 (:mod:`helpers.labs.lesson05`), tested three ways: starter, solution, wrong answers.

The lab reads a Dataset's plan, so these tests build plans on the test run's
shared Ray session (nothing is executed) with stand-in classes that load no model.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from helpers.labs.framework import CORRECT, INCORRECT, NOT_ATTEMPTED, get_lab
from helpers.labs.solutions import solution_cells
from helpers.runtime.packing import find_stranding
from helpers.runtime.settings import image_gpus_beside_llm, load_settings
from helpers.runtime.stage_request import NodeCapacity, StageRequest
from tests import lab_pipelines
from tests.lab_pipelines import Enhancer, ImageGen, expand_prompt, model_stages

#: The stand-in for ``animals_outfits`` (a fixture, used by name).
joined = lab_pipelines.joined

PLACEHOLDERS = [..., None, "TODO"]


def status(outcome):
    return outcome.status


# --------------------------------------------------------------------------- 05_one_gpu


@pytest.fixture
def gpu_lab():
    return get_lab("05_one_gpu")


@pytest.mark.parametrize("starter", PLACEHOLDERS)
def test_one_gpu_starter_is_not_attempted(gpu_lab, starter):
    assert status(gpu_lab.evaluate(pipeline=starter)) == NOT_ATTEMPTED


def test_one_gpu_solution_is_correct(gpu_lab, joined):
    """The code ``lab.solution()`` shows, run against the stand-in stages."""
    import ray

    helpers_stub = SimpleNamespace(ImageGen=ImageGen)
    namespace = {"ray": ray, "helpers": helpers_stub, "animals_outfits": joined,
                 "expand_prompt": expand_prompt, "Enhancer": Enhancer}
    for code in solution_cells(gpu_lab.name):
        exec(code, namespace)  # noqa: S102 - the code lab.solution() shows
    outcome = gpu_lab.evaluate(pipeline=namespace["one_gpu_images"])
    assert status(outcome) == CORRECT, outcome.message


@pytest.mark.parametrize(
    "llm_gpus, image_gpus", [(0.25, 0.25), (0.3, 0.2), (0.2, 0.3), (0.1, 0.4), (0.35, 0.15), (0.2, 0.1)]
)
def test_one_gpu_every_fitting_share_is_correct(gpu_lab, joined, llm_gpus, image_gpus):
    """Any shares that fit on one GPU, equal or not, either model's the larger; filling the GPU is not required."""
    outcome = gpu_lab.evaluate(pipeline=model_stages(joined, llm_gpus, image_gpus))
    assert status(outcome) == CORRECT, outcome.message


def test_one_gpu_the_workshops_one_gpu_settings_are_correct(gpu_lab, joined):
    """What lesson 05's cell prints on a one-GPU machine, copied into the lab, passes it."""
    settings = load_settings(profile="gpu", cluster_gpus=1)
    image_gpus = image_gpus_beside_llm(settings)
    assert (settings.llm.num_gpus, image_gpus) == (0.25, 0.25)
    outcome = gpu_lab.evaluate(pipeline=model_stages(joined, settings.llm.num_gpus, image_gpus))
    assert status(outcome) == CORRECT, outcome.message


@pytest.mark.parametrize("llm_gpus, image_gpus", [(0.26, 0.25), (0.5, 0.25), (0.3, 0.3)])
def test_one_gpu_shares_over_one_gpu_are_incorrect(gpu_lab, joined, llm_gpus, image_gpus):
    outcome = gpu_lab.evaluate(pipeline=model_stages(joined, llm_gpus, image_gpus))
    assert status(outcome) == INCORRECT
    assert f"2 x {llm_gpus:g} + 2 x {image_gpus:g}" in outcome.message and "the machine has 1" in outcome.message


@pytest.mark.parametrize("llm_gpus, image_gpus", [(0.25, 0.25), (0.3, 0.2), (0.1, 0.4), (0.6, 0.4)])
def test_one_gpu_lab_and_resource_check_agree(gpu_lab, joined, llm_gpus, image_gpus):
    """The lab accepts exactly the shares the resource check would let run on a one-GPU machine."""
    pools = [StageRequest(name=name, units=2, cpus=1.0, gpus=gpus, is_actor_pool=True)
             for name, gpus in (("Enhancer", llm_gpus), ("ImageGen", image_gpus))]
    fits = find_stranding(pools, [NodeCapacity(cpus=16.0, gpus=1.0)]) is None
    outcome = gpu_lab.evaluate(pipeline=model_stages(joined, llm_gpus, image_gpus))
    assert (status(outcome) == CORRECT) == fits, outcome.message


def test_one_gpu_pools_spelled_other_ways_are_correct(gpu_lab, joined):
    """``concurrency=2``, a pool of exactly two with min and max, a repartition first as in the lesson's pipeline."""
    import ray

    pipeline = (
        joined.repartition(target_num_rows_per_block=4)
        .map_batches(expand_prompt)
        .map_batches(Enhancer, batch_size=4, num_gpus=0.3, concurrency=2)
        .map_batches(ImageGen, batch_size=8, num_gpus=0.2, compute=ray.data.ActorPoolStrategy(min_size=2, max_size=2))
    )
    outcome = gpu_lab.evaluate(pipeline=pipeline)
    assert status(outcome) == CORRECT, outcome.message


def test_one_gpu_without_the_prompt_stage_is_incorrect(gpu_lab, joined):
    """Only the two model stages: the Enhancer would find no `prompt` column."""
    outcome = gpu_lab.evaluate(pipeline=model_stages(joined, prepare=False))
    assert status(outcome) == INCORRECT
    assert "nothing runs before the `Enhancer` stage" in outcome.message and "`expand_prompt`" in outcome.message


def test_one_gpu_a_third_model_stage_is_incorrect(gpu_lab, joined):
    import ray

    pipeline = model_stages(joined).map_batches(
        Enhancer, batch_size=4, num_gpus=0.1, compute=ray.data.ActorPoolStrategy(size=2)
    )
    outcome = gpu_lab.evaluate(pipeline=pipeline)
    assert status(outcome) == INCORRECT and "3 model stages" in outcome.message and "once each" in outcome.message


def test_one_gpu_image_stage_before_the_llm_is_incorrect(gpu_lab, joined):
    import ray

    pool = ray.data.ActorPoolStrategy(size=2)
    pipeline = (
        joined.map_batches(expand_prompt)
        .map_batches(ImageGen, batch_size=8, num_gpus=0.2, compute=pool)
        .map_batches(Enhancer, batch_size=4, num_gpus=0.3, compute=pool)
    )
    outcome = gpu_lab.evaluate(pipeline=pipeline)
    assert status(outcome) == INCORRECT and "in the order ImageGen and Enhancer" in outcome.message


def test_one_gpu_lesson_shares_are_incorrect(gpu_lab, joined):
    outcome = gpu_lab.evaluate(pipeline=model_stages(joined, 0.6, 0.4))
    assert status(outcome) == INCORRECT and "= 2 GPUs" in outcome.message


def test_one_gpu_stage_without_gpu_is_incorrect(gpu_lab, joined):
    import ray

    pipeline = joined.map_batches(expand_prompt).map_batches(
        Enhancer, batch_size=4, num_gpus=0.5, compute=ray.data.ActorPoolStrategy(size=2)
    )
    pipeline = pipeline.map_batches(ImageGen, batch_size=8, compute=ray.data.ActorPoolStrategy(size=2))
    outcome = gpu_lab.evaluate(pipeline=pipeline)
    assert status(outcome) == INCORRECT and "`ImageGen` stage asks for no GPU" in outcome.message


def test_one_gpu_unbounded_pool_is_incorrect(gpu_lab, joined):
    import ray

    outcome = gpu_lab.evaluate(pipeline=model_stages(joined, llm_pool=ray.data.ActorPoolStrategy(min_size=1)))
    assert status(outcome) == INCORRECT and "no upper bound" in outcome.message


def test_one_gpu_fewer_actors_is_incorrect(gpu_lab, joined):
    import ray

    outcome = gpu_lab.evaluate(
        pipeline=model_stages(joined, 0.6, 0.4, llm_pool=ray.data.ActorPoolStrategy(size=1),
                              image_pool=ray.data.ActorPoolStrategy(size=1))
    )
    assert status(outcome) == INCORRECT and "keep two per stage" in outcome.message


def test_one_gpu_missing_model_stage_is_incorrect(gpu_lab, joined):
    import ray

    pipeline = joined.map_batches(expand_prompt).map_batches(
        ImageGen, batch_size=8, num_gpus=0.5, compute=ray.data.ActorPoolStrategy(size=2)
    )
    outcome = gpu_lab.evaluate(pipeline=pipeline)
    assert status(outcome) == INCORRECT and "1 model stage(s)" in outcome.message


def test_one_gpu_batch_instead_of_dataset_is_incorrect(gpu_lab):
    outcome = gpu_lab.evaluate(pipeline={"prompt": np.array(["a fox"])})
    assert status(outcome) == INCORRECT and "is a batch" in outcome.message
