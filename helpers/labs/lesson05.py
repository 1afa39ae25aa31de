"""Lab of lesson 05 (LLM enhancement): fit the seasonal pipeline on a one-GPU machine.

The pipeline's plan, read without running it, is declared: the prompt stage
and the two model stages, two actors each, whose GPU shares add up to no more
than one GPU. The code adds what only this lab asks: the LLM, the first model
stage, keeps the larger share.
"""

from __future__ import annotations

from helpers.labs.framework import Lab, register
from helpers.labs.shapes import Pipeline, Plan

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
            "up to 1.0 at most (the LLM keeps the larger share)."
        ),
        "`num_gpus=0.3` for the Enhancer stage and `num_gpus=0.2` for the ImageGen stage: 2 x 0.3 + 2 x 0.2 = 1.0.",
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
        llm, image = pipeline.models
        if llm.num_gpus <= image.num_gpus:
            self.incorrect(
                f"the `{llm.label}` stage (the LLM) asks for {llm.num_gpus:g} GPU per actor and the "
                f"`{image.label}` stage {image.num_gpus:g}; the LLM should keep the larger share."
            )
