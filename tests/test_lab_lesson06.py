"""The lab of lesson 06 (:mod:`helpers.labs.lesson06`), tested three ways: starter, solution, wrong answers.

The pipelines are plans built on the test run's shared Ray session (nothing is
executed), with stand-in classes that load no model. One test runs the code
``lab.solution()`` shows with the small local LLM, to prove that it passes.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from helpers.labs.framework import CORRECT, INCORRECT, NOT_ATTEMPTED, get_lab
from helpers.labs.lesson06 import PROBE_COLUMN
from helpers.labs.solutions import solution_cells
from helpers.runtime.settings import load_settings
from tests import lab_pipelines
from tests.lab_pipelines import ImageGen, expand_prompt, model_stages

#: The stand-in for ``animals_outfits`` (a fixture, used by name).
joined = lab_pipelines.joined

PLACEHOLDERS = [..., None, "TODO"]


def status(outcome):
    return outcome.status


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


class WithSeasonAndBudget(GoodEnhancer):
    """A further required argument of each kind, one of them text, before the model (the missed answer)."""

    def __init__(self, season, model_name, prompt_column, max_new_tokens):
        super().__init__(model_name, prompt_column)
        self.season, self.max_new_tokens = season, max_new_tokens


class WithOptionalBudget(GoodEnhancer):
    """A further parameter with a default, which the pipeline leaves out."""

    def __init__(self, model_name, prompt_column, max_new_tokens=64):
        super().__init__(model_name, prompt_column)
        self.max_new_tokens = max_new_tokens


class OtherNames(GoodEnhancer):
    """Its own names, the column first."""

    def __init__(self, column, model):
        super().__init__(model, column)


class KeywordOptions(GoodEnhancer):
    """Everything through ``**options``."""

    def __init__(self, **options):
        super().__init__(options["model"], options["column"])


class WritesElsewhere(GoodEnhancer):
    """Reads the column it is given but leaves it as it was, the new prompts in a column of its own."""

    def __call__(self, batch):
        batch["enhanced_prompt"] = np.array([f"{p}, in autumn" for p in batch[self.prompt_column]], dtype=object)
        return batch


#: A notebook's cell, run where ``session`` is a global: its class reads the reply length from it.
READS_SESSION = '''
class ReadsSession(GoodEnhancer):
    """Honours its model and its column, but takes the reply length from the notebook, like lesson 05's."""

    def __call__(self, batch):
        batch = super().__call__(batch)
        batch["tokens"] = np.array([session.settings.max_new_tokens for _ in batch["id"]])
        return batch
'''


def notebook_class(source, name):
    """The class a notebook cell defines, with the notebook's ``session`` among its globals."""
    namespace = {"np": np, "GoodEnhancer": GoodEnhancer,
                 "session": SimpleNamespace(settings=SimpleNamespace(max_new_tokens=40))}
    exec(source, namespace)  # noqa: S102 - a notebook cell of the tests' own
    return namespace[name]


def evaluate_notebook_class(lab, joined, model_folder, source, name):
    """The lab's verdict on the class a notebook cell defines, in the lesson's pipeline."""
    cls = notebook_class(source, name)
    return lab.evaluate(enhancer_class=cls, pipeline=seasonal(joined, cls, model_folder))


def seasonal(ds, cls, model, image_stage=True, prepare=True, **kwargs):
    import ray

    if not kwargs:
        kwargs = {"fn_constructor_kwargs": {"model_name": model, "prompt_column": "prompt"}}
    if prepare:
        ds = ds.map_batches(expand_prompt)
    pipeline = ds.map_batches(
        cls, batch_size=4, num_gpus=0.6, compute=ray.data.ActorPoolStrategy(size=2), **kwargs
    )
    if image_stage:
        pool = ray.data.ActorPoolStrategy(size=2)
        pipeline = pipeline.map_batches(ImageGen, batch_size=8, num_gpus=0.4, compute=pool)
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

    pipeline = seasonal(joined, Defaults, model_folder, fn_constructor_kwargs={})
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


@pytest.mark.parametrize("builtin", [int, str, dict, Exception])
def test_param_a_built_in_type_is_incorrect_not_a_check_error(param_lab, joined, builtin):
    outcome = param_lab.evaluate(enhancer_class=builtin, pipeline=model_stages(joined))
    assert status(outcome) == INCORRECT
    assert outcome.message == f"`enhancer_class` is the built-in type `{builtin.__name__}`; pass the class you wrote."


def test_param_a_compiled_class_without_a_signature_is_incorrect_not_a_check_error(param_lab, joined):
    outcome = param_lab.evaluate(enhancer_class=datetime, pipeline=model_stages(joined))
    assert status(outcome) == INCORRECT and "pass the class you wrote" in outcome.message


def test_param_a_class_decorated_with_ray_remote_says_to_remove_the_decorator(param_lab, joined, model_folder):
    import ray

    remote = ray.remote(GoodEnhancer)
    outcome = param_lab.evaluate(enhancer_class=remote, pipeline=seasonal(joined, GoodEnhancer, model_folder))
    assert status(outcome) == INCORRECT
    assert "`enhancer_class` is `GoodEnhancer` decorated with `@ray.remote`" in outcome.message
    assert "remove `@ray.remote`" in outcome.message
    assert "`map_batches` takes the plain class and makes the actors itself" in outcome.message
    assert "instance" not in outcome.message


@pytest.mark.parametrize(
    ("cls", "constructor"),
    [
        (WithSeasonAndBudget, lambda model: {"fn_constructor_kwargs": {
            "season": "winter", "model_name": model, "prompt_column": "prompt", "max_new_tokens": 32}}),
        (WithOptionalBudget, lambda model: {"fn_constructor_kwargs": {"model_name": model, "prompt_column": "prompt"}}),
        (OtherNames, lambda model: {"fn_constructor_kwargs": {"column": "prompt", "model": model}}),
        (OtherNames, lambda model: {"fn_constructor_args": ["prompt", model]}),
        (KeywordOptions, lambda model: {"fn_constructor_kwargs": {"model": model, "column": "prompt"}}),
    ],
    ids=["further-required-arguments", "further-optional-argument", "other-names", "positional", "keyword-options"],
)
def test_param_other_correct_classes_are_correct(param_lab, joined, model_folder, cls, constructor):
    """Any class that takes the model and the column, whatever else it takes, built the way Ray builds it."""
    pipeline = seasonal(joined, cls, model_folder, **constructor(model_folder))
    outcome = param_lab.evaluate(enhancer_class=cls, pipeline=pipeline)
    assert status(outcome) == CORRECT, outcome.message


def test_param_class_that_reads_the_notebooks_session_is_incorrect(param_lab, joined, model_folder):
    """Lesson 05's class read ``session.settings.max_new_tokens``; the parameterized one takes it as a parameter."""
    cls = notebook_class(READS_SESSION, "ReadsSession")
    assert cls(model_folder)({"id": np.array([1]), "prompt": np.array(["a fox"], dtype=object)})["tokens"][0] == 40
    outcome = param_lab.evaluate(enhancer_class=cls, pipeline=seasonal(joined, cls, model_folder))
    assert status(outcome) == INCORRECT
    assert "`ReadsSession.__call__` still reads `session` from the notebook" in outcome.message
    assert "fn_constructor_kwargs" in outcome.message


def test_param_session_in_a_comprehension_or_an_inherited_method_is_found(param_lab, joined, model_folder):
    source = READS_SESSION.replace(
        "[session.settings.max_new_tokens for _ in batch[\"id\"]]",
        "[n for n in [session.settings.max_new_tokens] for _ in batch[\"id\"]]",
    ) + "\n\nclass Child(ReadsSession):\n    pass\n"
    outcome = evaluate_notebook_class(param_lab, joined, model_folder, source, "Child")
    assert status(outcome) == INCORRECT and "`Child.__call__` still reads `session`" in outcome.message


def test_param_a_subclass_that_overrides_the_method_reading_session_is_correct(param_lab, joined, model_folder):
    """The parent's ``__call__`` reads ``session``, but the subclass's own runs instead."""
    source = READS_SESSION + (
        "\n\nclass Overrides(ReadsSession):\n"
        "    def __call__(self, batch):\n"
        "        return GoodEnhancer.__call__(self, batch)\n"
    )
    outcome = evaluate_notebook_class(param_lab, joined, model_folder, source, "Overrides")
    assert status(outcome) == CORRECT, outcome.message


def test_param_session_as_a_default_value_is_correct(param_lab, joined, model_folder):
    """A default read when the class is defined travels as a value: the methods read nothing from the notebook."""
    source = (
        "class Defaulted(GoodEnhancer):\n"
        "    def __init__(self, model_name, prompt_column, max_new_tokens=session.settings.max_new_tokens):\n"
        "        super().__init__(model_name, prompt_column)\n"
        "        self.max_new_tokens = max_new_tokens\n"
    )
    outcome = evaluate_notebook_class(param_lab, joined, model_folder, source, "Defaulted")
    assert status(outcome) == CORRECT, outcome.message


def test_param_further_required_argument_not_passed_is_incorrect(param_lab, joined, model_folder):
    pipeline = seasonal(joined, WithSeasonAndBudget, model_folder)  # passes the model and the column only
    outcome = param_lab.evaluate(enhancer_class=WithSeasonAndBudget, pipeline=pipeline)
    assert status(outcome) == INCORRECT
    assert "requires `season`, `max_new_tokens`, which the pipeline does not pass" in outcome.message


def test_param_variable_names_in_quotes_are_incorrect(param_lab, joined, model_folder):
    """``{"model_name": "enhancer_model", ...}``: the variable's name, not its value."""
    kwargs = {"fn_constructor_kwargs": {"model_name": "enhancer_model", "prompt_column": "prompt"}}
    outcome = param_lab.evaluate(enhancer_class=GoodEnhancer, pipeline=seasonal(joined, GoodEnhancer, "", **kwargs))
    assert status(outcome) == INCORRECT
    assert "passes no model name" in outcome.message and "`enhancer_model` names no model folder" in outcome.message


def test_param_pipeline_without_the_prompt_stage_is_incorrect(param_lab, joined, model_folder):
    pipeline = seasonal(joined, GoodEnhancer, model_folder, prepare=False)
    outcome = param_lab.evaluate(enhancer_class=GoodEnhancer, pipeline=pipeline)
    assert status(outcome) == INCORRECT
    assert "nothing runs before the `GoodEnhancer` stage" in outcome.message and "expand_prompt" in outcome.message


def test_param_class_that_writes_its_prompts_elsewhere_is_incorrect(param_lab, joined, model_folder):
    pipeline = seasonal(joined, WritesElsewhere, model_folder)
    outcome = param_lab.evaluate(enhancer_class=WritesElsewhere, pipeline=pipeline)
    assert status(outcome) == INCORRECT
    assert "wrote new prompts to `enhanced_prompt`" in outcome.message and "back to the column" in outcome.message


def test_param_solution_with_the_small_llm_is_correct(param_lab, joined):
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
        "max_new_tokens": settings.max_new_tokens,
    }
    for code in solution_cells(param_lab.name):  # the last cell runs the pipeline: it is left out
        if "ParamEnhancer" in namespace and "seasonal_images" in namespace:
            break
        exec(code, namespace)  # noqa: S102 - the code lab.solution() shows
    outcome = param_lab.evaluate(enhancer_class=namespace["ParamEnhancer"], pipeline=namespace["seasonal_images"])
    assert status(outcome) == CORRECT, outcome.message
