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


@pytest.mark.parametrize("llm_gpus, image_gpus", [(0.3, 0.2), (0.25, 0.25), (0.1, 0.1)])
def test_one_gpu_every_fitting_share_is_correct(gpu_lab, joined, llm_gpus, image_gpus):
    assert status(gpu_lab.evaluate(pipeline=model_stages(joined, llm_gpus, image_gpus))) == CORRECT


def test_one_gpu_lesson_shares_are_incorrect(gpu_lab, joined):
    outcome = gpu_lab.evaluate(pipeline=model_stages(joined, 0.6, 0.4))
    assert status(outcome) == INCORRECT and "= 2 GPUs" in outcome.message


def test_one_gpu_stage_without_gpu_is_incorrect(gpu_lab, joined):
    import ray

    pipeline = joined.map_batches(Enhancer, batch_size=4, num_gpus=0.5, compute=ray.data.ActorPoolStrategy(size=2))
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
