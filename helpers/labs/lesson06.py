"""Lab of lesson 06 (parameterization): the Enhancer takes its model and its prompt column.

The class and the pipeline are declared shapes; the code reads which values
the pipeline passes to the class, then runs the class itself on a two-row
batch with a column name the lesson never uses, and once with a model folder
that does not exist, to see that both parameters are honoured.
"""

from __future__ import annotations

import inspect
import tempfile

import numpy as np

from helpers.errors import first_line
from helpers.labs.framework import Lab, quote, register
from helpers.labs.plans import MapStage
from helpers.labs.shapes import ActorClass, Pipeline, Plan
from helpers.runtime.settings import SMALL_LLM_MODEL, resolve_storage

#: The column lessons 04-06 feed to the models (``expand_prompt`` writes it).
PROMPT_COLUMN = "prompt"

#: A column name the lessons never use: a class that honours its column parameter reads it.
PROBE_COLUMN = "scene"
PROBE_PROMPTS = (
    "A watercolor painting of a sea otter wearing a yellow raincoat",
    "A studio photo of a corgi wearing a tuxedo",
)


def _small_llm() -> str | None:
    """The small local LLM, cheap to load anywhere, when set-up has built it."""
    folder = resolve_storage() / "models" / SMALL_LLM_MODEL
    return str(folder) if (folder / "config.json").exists() else None


@register
class ParameterizedEnhancerLab(Lab):
    name = "06_parameterized_enhancer"
    title = "Parameterize the Enhancer with its model and its prompt column"
    hints = (
        (
            "Give `__init__` two parameters, one for the model name and one for the column, and keep them on "
            "`self`. Everywhere the class used `session.llm.model` or `\"prompt\"`, use those instead."
        ),
        (
            "Ray creates the actors, so you never call the class yourself: `map_batches(ParamEnhancer, "
            "fn_constructor_kwargs={...}, ...)` passes the values to each actor's `__init__`. "
            "Build `seasonal_images` as in lesson 05, with the new class in place of `Enhancer`."
        ),
        (
            "`__call__` reads `batch[self.prompt_column]` and writes the new prompts back to "
            "`batch[self.prompt_column]`; see `lab.solution()` for the cells."
        ),
    )
    correct_message = (
        "The class says *what* it does; the pipeline says *with which model, on which column, "
        "on how many actors*. The same class now serves any dataset and any model."
    )

    enhancer_class = ActorClass(parameters=("the model name", "the prompt column"))
    pipeline = Pipeline()

    def check_answer(self, enhancer_class, pipeline: Plan):
        stage, later = self._enhancer_stage(enhancer_class, pipeline)
        model_param, column_param, model = self._passed_parameters(enhancer_class, stage)
        if not later:
            self.incorrect(
                f"`pipeline` ends with the `{stage.label}` stage; add the `ImageGen` stage after it, as in lesson 05."
            )
        self._check_column_is_honoured(enhancer_class, model_param, column_param, model)
        self._check_model_is_honoured(enhancer_class, model_param, column_param)
        self.correct(
            f"`{enhancer_class.__name__}({model_param}=..., {column_param}=...)` reads the column and loads the model "
            f"it is given. {self.correct_message}"
        )

    # -- the plan

    def _enhancer_stage(self, cls, pipeline: Plan) -> tuple[MapStage, list[MapStage]]:
        stages = pipeline.stages
        for index, stage in enumerate(stages):
            if stage.fn is cls:
                return stage, [s for s in stages[index + 1 :] if s.is_class]
        same_name = [s for s in stages if s.label == cls.__name__]
        if same_name:
            self.incorrect(
                f"`pipeline` was built with an earlier definition of `{cls.__name__}`; "
                "run the cell that builds the pipeline again after changing the class."
            )
        found = quote(s.label for s in stages) or "none"
        self.incorrect(
            f"`pipeline` has no `map_batches` stage that uses `{cls.__name__}` (its stages: {found}); "
            "rebuild `seasonal_images` with your class."
        )

    def _passed_parameters(self, cls, stage: MapStage) -> tuple[str, str, str]:
        """(model parameter, column parameter, model value) as the pipeline passes them."""
        if not stage.constructor_args and not stage.constructor_kwargs:
            self.incorrect(
                f"the `{cls.__name__}` stage passes nothing to the class, so every actor gets the defaults; "
                "give `map_batches` `fn_constructor_kwargs={...}` with the model and the column."
            )
        try:
            bound = inspect.signature(cls).bind(*stage.constructor_args, **stage.constructor_kwargs)
        except TypeError as exc:
            self.incorrect(
                f"the pipeline passes {quote(stage.constructor_kwargs) or 'positional arguments'} to "
                f"`{cls.__name__}`, which does not accept them ({exc})."
            )
        passed = {name: value for name, value in bound.arguments.items() if isinstance(value, str)}
        columns = [name for name, value in passed.items() if value == PROMPT_COLUMN]
        if not columns:
            self.incorrect(
                f"none of the values passed to `{cls.__name__}` ({quote(passed.values()) or 'none'}) is the "
                f'column name `"{PROMPT_COLUMN}"`; pass `prompt_column` through `fn_constructor_kwargs`.'
            )
        models = [name for name, value in passed.items() if value != PROMPT_COLUMN and value.strip()]
        if not models:
            self.incorrect(
                f"the pipeline passes no model name to `{cls.__name__}`; pass `enhancer_model` through "
                "`fn_constructor_kwargs` too."
            )
        return models[0], columns[0], passed[models[0]]

    # -- the class at work

    def _run(self, cls, kwargs: dict, batch: dict) -> dict:
        instance = cls(**kwargs)
        return instance(batch)

    def _check_column_is_honoured(self, cls, model_param: str, column_param: str, model: str) -> None:
        kwargs = {model_param: _small_llm() or model, column_param: PROBE_COLUMN}
        batch = {"id": np.array([1, 2]), PROBE_COLUMN: np.array(PROBE_PROMPTS, dtype=object)}
        call = f"`{cls.__name__}({column_param}={PROBE_COLUMN!r})` on a batch with a `{PROBE_COLUMN}` column"
        try:
            result = self._run(cls, kwargs, batch)
        except KeyError as exc:
            self.incorrect(
                f"{call} raised KeyError {exc}: the class still reads a fixed column. "
                f"Use `self.{column_param}` wherever it reads or writes the prompts."
            )
        except Exception as exc:  # noqa: BLE001 - the learner's class; one line is enough to act on
            self.incorrect(f"{call} raised {first_line(exc)}.")
        if not isinstance(result, dict):
            self.incorrect(f"{call} returned a {type(result).__name__}; `__call__` must return the batch dict.")
        if PROMPT_COLUMN in result:
            self.incorrect(
                f"{call} added a `{PROMPT_COLUMN}` column; write the new prompts back to the column it was given."
            )
        values = result.get(PROBE_COLUMN)
        if values is None or len(values) != len(PROBE_PROMPTS):
            self.incorrect(f"{call} returned no `{PROBE_COLUMN}` column with one prompt per row.")
        if not all(isinstance(v, str) and v.strip() for v in values):
            self.incorrect(f"{call} left empty or non-text values in `{PROBE_COLUMN}`.")

    def _check_model_is_honoured(self, cls, model_param: str, column_param: str) -> None:
        batch = {"id": np.array([1]), PROBE_COLUMN: np.array(PROBE_PROMPTS[:1], dtype=object)}
        with tempfile.TemporaryDirectory(prefix="no-model-") as missing:
            try:
                self._run(cls, {model_param: missing, column_param: PROBE_COLUMN}, batch)
            except Exception:  # noqa: BLE001 - expected: there is no model in an empty folder
                return
        self.incorrect(
            f"`{cls.__name__}({model_param}=<an empty folder>)` still worked: the class loads a fixed model. "
            f"Load the model named by `{model_param}`."
        )
