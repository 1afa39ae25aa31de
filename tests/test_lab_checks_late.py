"""The labs of lessons 04-06, each tested three ways: starter, solution, plausible wrong answers.

04 needs no Ray: its answers are folders of PNG files written with PIL in
``tmp_path``. 05 and 06 check a Dataset's plan, so those tests build plans on
the test run's shared Ray session (nothing is executed) with stand-in classes
that load no model. One test runs the lab's own solution text for 06 with the small local
LLM, to prove the solution learners are shown passes the check.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from helpers.labs.framework import CORRECT, INCORRECT, NOT_ATTEMPTED, get_lab
from helpers.labs.lessons_late import PROBE_COLUMN, joined_row_count, map_stages
from helpers.runtime.settings import load_settings

PLACEHOLDERS = [..., None, "TODO"]


def status(outcome):
    return outcome.status


# --------------------------------------------------------------------------- 04_png


def write_pngs(folder: Path, count: int, start: int = 0, suffix: str = ".png", fmt: str = "PNG") -> Path:
    """``count`` small images as ``write_images`` would leave them (any names will do)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        pixels = np.full((8, 8, 3), i % 256, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"image_{i:04d}{suffix}", format=fmt)
    return folder


@pytest.fixture
def png_lab():
    return get_lab("04_png")


@pytest.fixture
def rows():
    return joined_row_count()


def test_the_join_of_the_workshop_data_has_120_rows(rows):
    assert rows == 120


@pytest.mark.parametrize("starter", PLACEHOLDERS)
def test_png_starter_is_not_attempted(png_lab, starter):
    assert status(png_lab.evaluate(folder=starter)) == NOT_ATTEMPTED


def test_png_solution_is_correct(png_lab, rows, tmp_path):
    folder = write_pngs(tmp_path / "04_png", rows)
    outcome = png_lab.evaluate(folder=str(folder))
    assert status(outcome) == CORRECT, outcome.message
    assert f"{rows} PNG files" in outcome.message


def test_png_folder_as_path_or_local_url_is_accepted(png_lab, rows, tmp_path):
    folder = write_pngs(tmp_path / "04_png", rows)
    assert status(png_lab.evaluate(folder=folder)) == CORRECT
    assert status(png_lab.evaluate(folder=f"local://{folder}")) == CORRECT


def test_png_hidden_files_are_ignored(png_lab, rows, tmp_path):
    folder = write_pngs(tmp_path / "04_png", rows)
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / ".DS_Store").write_text("")
    assert status(png_lab.evaluate(folder=str(folder))) == CORRECT


def test_png_missing_folder_is_incorrect(png_lab, tmp_path):
    outcome = png_lab.evaluate(folder=str(tmp_path / "never_written"))
    assert status(outcome) == INCORRECT and "does not exist" in outcome.message


def test_png_file_instead_of_folder_is_incorrect(png_lab, tmp_path):
    folder = write_pngs(tmp_path / "04_png", 1)
    outcome = png_lab.evaluate(folder=str(folder / "image_0000.png"))
    assert status(outcome) == INCORRECT and "is a file" in outcome.message


def test_png_empty_folder_is_incorrect(png_lab, tmp_path):
    (tmp_path / "04_png").mkdir()
    outcome = png_lab.evaluate(folder=str(tmp_path / "04_png"))
    assert status(outcome) == INCORRECT and "empty" in outcome.message


def test_png_too_few_files_is_incorrect(png_lab, rows, tmp_path):
    """What writing ``take_batch(4)``'s images by hand would leave."""
    outcome = png_lab.evaluate(folder=str(write_pngs(tmp_path / "04_png", 4)))
    assert status(outcome) == INCORRECT and f"holds 4 PNG files, but the join gives {rows}" in outcome.message


def test_png_leftovers_of_an_earlier_run_are_incorrect(png_lab, rows, tmp_path):
    """Two runs in the default append mode: twice the files, under new names."""
    folder = write_pngs(tmp_path / "04_png", rows)
    write_pngs(folder, rows, start=rows)
    outcome = png_lab.evaluate(folder=str(folder))
    assert status(outcome) == INCORRECT and "earlier run" in outcome.message and "overwrite" in outcome.message


def test_png_folder_of_other_files_is_incorrect(png_lab, rows, tmp_path):
    folder = write_pngs(tmp_path / "04_png", rows, suffix=".jpeg", fmt="JPEG")
    outcome = png_lab.evaluate(folder=str(folder))
    assert status(outcome) == INCORRECT and "no PNG files" in outcome.message and ".jpeg" in outcome.message


def test_png_stray_non_image_files_are_incorrect(png_lab, rows, tmp_path):
    folder = write_pngs(tmp_path / "04_png", rows)
    (folder / "prompts.txt").write_text("a red fox wearing a hat\n")
    outcome = png_lab.evaluate(folder=str(folder))
    assert status(outcome) == INCORRECT and "prompts.txt" in outcome.message


def test_png_files_that_do_not_decode_are_incorrect(png_lab, rows, tmp_path):
    folder = write_pngs(tmp_path / "04_png", rows - 1)
    (folder / "broken.png").write_bytes(b"\x80\x04 not an image, a pickle")
    outcome = png_lab.evaluate(folder=str(folder))
    assert status(outcome) == INCORRECT and "broken.png" in outcome.message and "does not decode" in outcome.message


def test_png_jpeg_data_under_png_names_is_incorrect(png_lab, rows, tmp_path):
    folder = write_pngs(tmp_path / "04_png", rows, fmt="JPEG")
    outcome = png_lab.evaluate(folder=str(folder))
    assert status(outcome) == INCORRECT and "JPEG data" in outcome.message


def test_png_not_a_path_is_incorrect(png_lab):
    outcome = png_lab.evaluate(folder=42)
    assert status(outcome) == INCORRECT and "path" in outcome.message


# --------------------------------------------------------------------------- plans for 05 and 06


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


def model_stages(ds, llm_gpus=0.3, image_gpus=0.2, llm_pool=None, image_pool=None):
    import ray

    return (
        ds.map_batches(expand_prompt)
        .map_batches(Enhancer, batch_size=4, num_gpus=llm_gpus,
                     compute=llm_pool or ray.data.ActorPoolStrategy(size=2))
        .map_batches(ImageGen, batch_size=8, num_gpus=image_gpus,
                     compute=image_pool or ray.data.ActorPoolStrategy(size=2))
    )


def test_map_stages_reads_what_each_stage_declares(joined):
    stages = map_stages(model_stages(joined, llm_gpus=0.6, image_gpus=0.4))
    assert [s.label for s in stages] == ["expand_prompt", "Enhancer", "ImageGen"]
    assert [s.is_class for s in stages] == [False, True, True]
    assert [s.num_gpus for s in stages] == [0.0, 0.6, 0.4]
    assert [s.max_actors for s in stages] == [None, 2, 2]
    assert [s.batch_size for s in stages[1:]] == [4, 8]


# --------------------------------------------------------------------------- 05_one_gpu


@pytest.fixture
def gpu_lab():
    return get_lab("05_one_gpu")


@pytest.mark.parametrize("starter", PLACEHOLDERS)
def test_one_gpu_starter_is_not_attempted(gpu_lab, starter):
    assert status(gpu_lab.evaluate(pipeline=starter)) == NOT_ATTEMPTED


def test_one_gpu_solution_text_is_correct(gpu_lab, joined):
    """The code ``lab.solution()`` shows, run against the stand-in stages."""
    import ray

    helpers_stub = SimpleNamespace(ImageGen=ImageGen)
    namespace = {"ray": ray, "helpers": helpers_stub, "animals_outfits": joined,
                 "expand_prompt": expand_prompt, "Enhancer": Enhancer}
    exec(textwrap.dedent(gpu_lab.solution_text), namespace)  # noqa: S102 - the code lab.solution() shows
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


# --------------------------------------------------------------------------- 06_parameterized_enhancer


@pytest.fixture
def param_lab():
    return get_lab("06_parameterized_enhancer")


@pytest.fixture
def model_folder(tmp_path):
    """A folder that passes for a model where the small LLM is not built (the check prefers that)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return str(folder)


def _load(model_name):
    """What loading a model means for the stand-ins: the folder must hold one."""
    if not (Path(model_name) / "config.json").exists():
        raise OSError(f"no model in {model_name}")


class GoodEnhancer:
    """Honours both parameters, like the solution, without loading an LLM."""

    def __init__(self, model_name, prompt_column="prompt"):
        _load(model_name)
        self.prompt_column = prompt_column

    def __call__(self, batch):
        prompts = batch[self.prompt_column]
        batch["original_prompt"] = prompts.copy()
        batch[self.prompt_column] = np.array([f"{p}, in falling snow" for p in prompts], dtype=object)
        return batch


class NoParameters:
    def __init__(self):
        pass

    def __call__(self, batch):
        return batch


class IgnoresColumn(GoodEnhancer):
    def __call__(self, batch):
        batch["prompt"] = np.array([f"{p}, in spring" for p in batch["prompt"]], dtype=object)
        return batch


class WritesPromptColumn(GoodEnhancer):
    def __call__(self, batch):
        batch["prompt"] = np.array([f"{p}, in spring" for p in batch[self.prompt_column]], dtype=object)
        return batch


class IgnoresModel(GoodEnhancer):
    def __init__(self, model_name, prompt_column):
        self.prompt_column = prompt_column  # and always loads the same model, whatever it is given


def seasonal(ds, cls, model, image_stage=True, **kwargs):
    import ray

    if not kwargs:
        kwargs = {"fn_constructor_kwargs": {"model_name": model, "prompt_column": "prompt"}}
    pipeline = ds.map_batches(expand_prompt).map_batches(
        cls, batch_size=4, num_gpus=0.6, compute=ray.data.ActorPoolStrategy(size=2), **kwargs
    )
    if image_stage:
        pipeline = pipeline.map_batches(ImageGen, batch_size=8, num_gpus=0.4, compute=ray.data.ActorPoolStrategy(size=2))
    return pipeline


@pytest.mark.parametrize("starter", PLACEHOLDERS)
def test_param_starter_is_not_attempted(param_lab, starter):
    assert status(param_lab.evaluate(enhancer_class=starter, pipeline=starter)) == NOT_ATTEMPTED


def test_param_class_done_pipeline_not_yet_is_not_attempted(param_lab):
    assert status(param_lab.evaluate(enhancer_class=GoodEnhancer, pipeline=...)) == NOT_ATTEMPTED


def test_param_correct_class_and_pipeline_are_correct(param_lab, joined, model_folder):
    outcome = param_lab.evaluate(enhancer_class=GoodEnhancer, pipeline=seasonal(joined, GoodEnhancer, model_folder))
    assert status(outcome) == CORRECT, outcome.message


def test_param_positional_constructor_args_are_accepted(param_lab, joined, model_folder):
    pipeline = seasonal(joined, GoodEnhancer, model_folder, fn_constructor_args=[model_folder, "prompt"])
    assert status(param_lab.evaluate(enhancer_class=GoodEnhancer, pipeline=pipeline)) == CORRECT


def test_param_class_without_parameters_is_incorrect(param_lab, joined, model_folder):
    outcome = param_lab.evaluate(enhancer_class=NoParameters, pipeline=seasonal(joined, GoodEnhancer, model_folder))
    assert status(outcome) == INCORRECT and "needs two parameters" in outcome.message


def test_param_class_that_ignores_the_column_is_incorrect(param_lab, joined, model_folder):
    outcome = param_lab.evaluate(enhancer_class=IgnoresColumn, pipeline=seasonal(joined, IgnoresColumn, model_folder))
    assert status(outcome) == INCORRECT
    assert "KeyError" in outcome.message and PROBE_COLUMN in outcome.message


def test_param_class_that_writes_a_prompt_column_is_incorrect(param_lab, joined, model_folder):
    pipeline = seasonal(joined, WritesPromptColumn, model_folder)
    outcome = param_lab.evaluate(enhancer_class=WritesPromptColumn, pipeline=pipeline)
    assert status(outcome) == INCORRECT and "added a `prompt` column" in outcome.message


def test_param_class_that_ignores_the_model_is_incorrect(param_lab, joined, model_folder):
    outcome = param_lab.evaluate(enhancer_class=IgnoresModel, pipeline=seasonal(joined, IgnoresModel, model_folder))
    assert status(outcome) == INCORRECT and "loads a fixed model" in outcome.message


def test_param_pipeline_without_constructor_kwargs_is_incorrect(param_lab, joined, model_folder):
    class Defaults(GoodEnhancer):
        def __init__(self, model_name=model_folder, prompt_column="prompt"):
            super().__init__(model_name, prompt_column)

    pipeline = joined.map_batches(Defaults, batch_size=4, num_gpus=0.6)
    outcome = param_lab.evaluate(enhancer_class=Defaults, pipeline=pipeline)
    assert status(outcome) == INCORRECT and "fn_constructor_kwargs" in outcome.message


def test_param_pipeline_passing_only_the_model_is_incorrect(param_lab, joined, model_folder):
    pipeline = seasonal(joined, GoodEnhancer, model_folder, fn_constructor_kwargs={"model_name": model_folder})
    outcome = param_lab.evaluate(enhancer_class=GoodEnhancer, pipeline=pipeline)
    assert status(outcome) == INCORRECT and "prompt_column" in outcome.message


def test_param_pipeline_with_unknown_kwargs_is_incorrect(param_lab, joined, model_folder):
    pipeline = seasonal(joined, GoodEnhancer, model_folder, fn_constructor_kwargs={"model": model_folder})
    outcome = param_lab.evaluate(enhancer_class=GoodEnhancer, pipeline=pipeline)
    assert status(outcome) == INCORRECT and "does not accept them" in outcome.message


def test_param_pipeline_with_another_class_is_incorrect(param_lab, joined, model_folder):
    outcome = param_lab.evaluate(enhancer_class=GoodEnhancer, pipeline=model_stages(joined))
    assert status(outcome) == INCORRECT and "no `map_batches` stage that uses `GoodEnhancer`" in outcome.message


def test_param_pipeline_built_with_an_older_class_is_incorrect(param_lab, joined, model_folder):
    """The notebook trap: the class cell was run again, the pipeline cell was not."""
    pipeline = seasonal(joined, GoodEnhancer, model_folder)
    redefined = type("GoodEnhancer", (GoodEnhancer,), {})
    outcome = param_lab.evaluate(enhancer_class=redefined, pipeline=pipeline)
    assert status(outcome) == INCORRECT and "earlier definition" in outcome.message


def test_param_pipeline_without_image_stage_is_incorrect(param_lab, joined, model_folder):
    pipeline = seasonal(joined, GoodEnhancer, model_folder, image_stage=False)
    outcome = param_lab.evaluate(enhancer_class=GoodEnhancer, pipeline=pipeline)
    assert status(outcome) == INCORRECT and "ImageGen" in outcome.message


def test_param_instance_instead_of_class_is_incorrect(param_lab, joined, model_folder):
    outcome = param_lab.evaluate(enhancer_class=GoodEnhancer(model_folder), pipeline=model_stages(joined))
    assert status(outcome) == INCORRECT and "pass the class itself" in outcome.message


def test_param_solution_text_with_the_small_llm_is_correct(param_lab, joined):
    """The code ``lab.solution()`` shows, with the real building blocks and the small local LLM."""
    import random

    import ray

    from helpers.models.stages import SEASONS, load_text_generator, reply_texts, seasonal_messages

    settings = load_settings(profile="cpu")
    model = settings.llm.model
    if not (Path(model) / "config.json").exists():
        pytest.skip(f"the small LLM is not built in {model}; run ./setup.sh")
    session = SimpleNamespace(settings=settings, llm=settings.llm, image=settings.image)
    namespace = {
        "np": np, "random": random, "ray": ray, "helpers": SimpleNamespace(ImageGen=ImageGen),
        "SEASONS": SEASONS, "load_text_generator": load_text_generator, "reply_texts": reply_texts,
        "seasonal_messages": seasonal_messages, "session": session, "animals_outfits": joined,
        "expand_prompt": expand_prompt, "enhancer_model": model, "prompt_column": "prompt", "image_gpus": 0.4,
    }
    exec(textwrap.dedent(param_lab.solution_text), namespace)  # noqa: S102 - the code lab.solution() shows
    outcome = param_lab.evaluate(enhancer_class=namespace["ParamEnhancer"], pipeline=namespace["seasonal_images"])
    assert status(outcome) == CORRECT, outcome.message
