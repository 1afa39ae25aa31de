"""Lab of lesson 05 (LLM enhancement): fit the seasonal pipeline on a one-GPU machine.

The pipeline's plan, read without running it, is declared: the prompt stage
and the two model stages, two actors each, whose GPU shares add up to no more
than one GPU. The code adds what the declaration cannot say: that the shares
fit in every placement Ray may choose, decided by the resource check's own
packing search (:func:`helpers.runtime.packing.find_stranding`). On one GPU
every actor lands on the same card, so any shares that add up to 1 or less
fit, equal or not: the lesson's rule (an LLM actor and an image actor share
what one image actor had) gives 0.25 each, as the workshop's one-GPU settings do.
"""

from __future__ import annotations

from helpers.labs.framework import Lab, register
from helpers.labs.shapes import Pipeline, Plan
from helpers.runtime.packing import find_stranding
from helpers.runtime.stage_request import NodeCapacity, StageRequest

#: How much GPU the machine of this lab has.
ONE_GPU = 1.0


@register
class OneGpuLab(Lab):
    name = "05_one_gpu"
    title = "Fit the seasonal pipeline on a one-GPU machine"
    hints = (
        (
            "Keep the three stages and two actors per model stage; change only what each actor asks for. "
            "An actor pool reserves `actors x num_gpus` GPUs, and the two model stages together must fit in 1."
        ),
        (
            "On two GPUs the lesson's stages ask for 2 x 0.5 + 2 x 0.5 = 2.0. On one GPU the four shares must add "
            "up to 1.0 at most, equal or not. The lesson's rule gives equal ones: in lesson 04 each of the two "
            "image actors had half the GPU; now an LLM actor and an image actor share that half."
        ),
        "`num_gpus=0.25` for the Enhancer stage and for the ImageGen stage: 2 x 0.25 + 2 x 0.25 = 1.0.",
    )
    correct_message = (
        "Both model stages share one GPU. Ray only counts what each actor declares: "
        "keeping within those shares (GPU memory, threads) is up to the models."
    )
    pipeline = Pipeline(
        model_stages=("Enhancer", "ImageGen"),
        prepare_stage="expand_prompt",
        actors_per_model_stage=2,
        gpu_budget=ONE_GPU,
    )

    def check_answer(self, pipeline: Plan):
        pools = [
            StageRequest(name=stage.label, units=int(stage.max_actors), cpus=0.0, gpus=stage.num_gpus,
                         is_actor_pool=True)
            for stage in pipeline.models
        ]
        stranding = find_stranding(pools, [NodeCapacity(cpus=float("inf"), gpus=ONE_GPU)])
        if stranding is not None:
            self.incorrect(f"{stranding.describe()}; ask for a smaller share per actor.")
