"""Lab of lesson 06 (parameterization): the Enhancer takes its model and its prompt column.

The class and the pipeline are declared shapes; the code reads which values
the pipeline passes to the class (the prompt column, a model, and whatever
further arguments the learner's class takes), then builds the class itself
with those values, as Ray would, except for two: once with a column name the
lesson never uses, on a two-row batch of that column, and once with an empty
model folder, to see that both parameters are honoured. Last, it reads the
class's methods for the notebook's ``session``: a class that still reaches for
it (lesson 05's reads ``session.settings.max_new_tokens``) is not yet
configured by its pipeline alone.
"""

from __future__ import annotations

import dis
import inspect
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from helpers.labs.framework import Incorrect, Lab, learners_code, quote, register
from helpers.labs.plans import MapStage
from helpers.labs.shapes import ActorClass, Pipeline, Plan
from helpers.runtime.settings import SMALL_LLM_MODEL, resolve_models_dir, resolve_storage

#: The column lessons 04-06 feed to the models (``expand_prompt`` writes it).
PROMPT_COLUMN = "prompt"

#: A column name the lessons never use: a class that honours its column parameter reads it.
PROBE_COLUMN = "scene"
PROBE_PROMPTS = (
    "A watercolor painting of a sea otter wearing a yellow raincoat",
    "A studio photo of a corgi wearing a tuxedo",
)


#: The notebook's handle on its settings; the parameterized class reads nothing through it.
NOTEBOOK_SESSION = "session"

#: A Hugging Face hub id: ``"Qwen/Qwen2.5-0.5B-Instruct"``.
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def _names_a_model(value: str) -> bool:
    """A model folder (here, or absolute: it may be on the workers' storage) or a hub id."""
    if not value.strip():
        return False
    path = Path(value).expanduser()
    return path.is_dir() or path.is_absolute() or bool(HUB_ID.fullmatch(value))


def _small_llm() -> str | None:
    """The small local LLM, cheap to load anywhere, when set-up has built it."""
    folder = resolve_models_dir(resolve_storage()) / SMALL_LLM_MODEL  # WORKSHOP_MODELS, or set-up's folder
    return str(folder) if (folder / "config.json").exists() else None


def _reads_global(code, name: str) -> bool:
    """Whether ``code``, or code nested in it (a comprehension, a local function), reads the global ``name``."""
    if any(op.opname in ("LOAD_GLOBAL", "LOAD_NAME") and op.argval == name for op in dis.get_instructions(code)):
        return True
    return any(_reads_global(const, name) for const in code.co_consts if inspect.iscode(const))


def _methods_reading(cls: type, name: str) -> list[str]:
    """The methods ``cls`` runs (its own and inherited ones, not ``object``'s) whose code reads the global ``name``.

    A method a subclass overrides is not run, so only the lowest definition of each name counts.
    """
    found, seen = [], set()
    for klass in cls.__mro__[:-1]:
        for attr, value in vars(klass).items():
            if attr in seen:
                continue
            seen.add(attr)
            function = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            code = getattr(inspect.unwrap(function), "__code__", None) if callable(function) else None
            if code is not None and _reads_global(code, name):
                found.append(attr)
    return found


def _texts(column) -> list | None:
    """A column's values as a list, or None when it is not a column (one string, a number, nothing)."""
    if isinstance(column, (str, bytes)) or not hasattr(column, "__len__") or not hasattr(column, "__iter__"):
        return None
    return list(column)


def _other_texts(column, prompts: list) -> bool:
    """True for a column of one text per prompt, not the prompts themselves: new prompts written elsewhere."""
    texts = _texts(column)
    return texts is not None and len(texts) == len(prompts) and all(isinstance(t, str) for t in texts) and (
        texts != prompts
    )


class Construction:
    """How a stage builds its class: the constructor's signature bound to the values the stage passes.

    ``named`` lists every value by the name it is passed under, ``**kwargs``
    entries by their keys, so that a check can swap some of them (``with_``)
    and build the class as Ray would, with all the others unchanged.
    """

    def __init__(self, bound: inspect.BoundArguments):
        self.bound = bound
        self.named: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = bound.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                self.named.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                self.named.update({f"{name}[{i}]": item for i, item in enumerate(value)})
            else:
                self.named[name] = value

    def with_(self, changes: dict[str, Any]) -> tuple[tuple, dict]:
        """(args, kwargs) for the constructor, with ``changes`` made by name."""
        arguments = {}
        for name, value in self.bound.arguments.items():
            kind = self.bound.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                arguments[name] = {key: changes.get(key, item) for key, item in value.items()}
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                arguments[name] = tuple(changes.get(f"{name}[{i}]", item) for i, item in enumerate(value))
            else:
                arguments[name] = changes.get(name, value)
        changed = inspect.BoundArguments(self.bound.signature, arguments)
        return changed.args, changed.kwargs


@register
class ParameterizedEnhancerLab(Lab):
    name = "06_parameterized_enhancer"
    title = "Parameterize the Enhancer with its model and its prompt column"
    hints = (
        (
            "Give `__init__` two parameters, one for the model name and one for the column, and keep them on "
            "`self`. Everywhere the class used `session.llm.model` or `\"prompt\"`, use those instead; "
            "a third, `max_new_tokens=120`, replaces `session.settings.max_new_tokens`."
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
        stage = self._enhancer_stage(enhancer_class, pipeline)
        construction = self._construction(enhancer_class, stage)
        model_param, column_params = self._passed_parameters(enhancer_class, construction)
        self._check_column_is_honoured(enhancer_class, construction, model_param, column_params)
        self._check_model_is_honoured(enhancer_class, construction, model_param, column_params)
        self._check_reads_nothing_from_the_notebook(enhancer_class)
        self.correct(
            f"`{enhancer_class.__name__}({model_param}=..., {column_params[0]}=...)` reads the column and loads the "
            f"model it is given. {self.correct_message}"
        )

    # -- the plan

    def _enhancer_stage(self, cls, pipeline: Plan) -> MapStage:
        """The stage that uses ``cls``, with a stateless stage before it and a model stage after it."""
        stages = pipeline.stages
        index = next((i for i, stage in enumerate(stages) if stage.fn is cls), None)
        if index is None:
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
        stage = stages[index]
        if not any(not s.is_class for s in stages[:index]):
            self.incorrect(
                f"nothing runs before the `{stage.label}` stage; keep `expand_prompt` before it, as in lesson 05: "
                "it writes the prompts the class rewrites."
            )
        if not any(s.is_class for s in stages[index + 1 :]):
            self.incorrect(
                f"`pipeline` ends with the `{stage.label}` stage; add the `ImageGen` stage after it, as in lesson 05."
            )
        return stage

    def _construction(self, cls, stage: MapStage) -> Construction:
        if not stage.constructor_args and not stage.constructor_kwargs:
            self.incorrect(
                f"the `{cls.__name__}` stage passes nothing to the class, so every actor gets the defaults; "
                "give `map_batches` `fn_constructor_kwargs={...}` with the model and the column."
            )
        signature = inspect.signature(cls)
        try:
            bound = signature.bind(*stage.constructor_args, **stage.constructor_kwargs)
        except TypeError as exc:
            try:
                partial = signature.bind_partial(*stage.constructor_args, **stage.constructor_kwargs)
            except TypeError:
                self.incorrect(
                    f"the pipeline passes {quote(stage.constructor_kwargs) or 'positional arguments'} to "
                    f"`{cls.__name__}`, which does not accept them ({exc})."
                )
            missing = [
                p.name for p in signature.parameters.values()
                if p.name not in partial.arguments and p.default is p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            ]
            self.incorrect(
                f"`{cls.__name__}.__init__` requires {quote(missing)}, which the pipeline does not pass; "
                "pass it through `fn_constructor_kwargs` too, or give the parameter a default."
            )
        return Construction(bound)

    def _passed_parameters(self, cls, construction: Construction) -> tuple[str, list[str]]:
        """(the model parameter, the column parameters), named as the pipeline passes them."""
        texts = {name: value for name, value in construction.named.items() if isinstance(value, str)}
        columns = [name for name, value in texts.items() if value == PROMPT_COLUMN]
        if not columns:
            self.incorrect(
                f"none of the values passed to `{cls.__name__}` ({quote(texts.values()) or 'none'}) is the "
                f'column name `"{PROMPT_COLUMN}"`; pass `prompt_column` through `fn_constructor_kwargs`.'
            )
        others = {name: value for name, value in texts.items() if name not in columns}
        models = [name for name, value in others.items() if _names_a_model(value)]
        if not models:
            passed = f" ({quote(others.values())} names no model folder or hub id)" if others else ""
            self.incorrect(
                f"the pipeline passes no model name to `{cls.__name__}`{passed}; pass the variable "
                "`enhancer_model` through `fn_constructor_kwargs` too."
            )
        models.sort(key=lambda name: "model" not in name.lower())  # a parameter named for the model first
        return models[0], columns

    # -- the class at work

    def _check_column_is_honoured(self, cls, construction: Construction, model_param: str, columns: list[str]):
        model = _small_llm() or construction.named[model_param]
        args, kwargs = construction.with_({model_param: model, **dict.fromkeys(columns, PROBE_COLUMN)})
        batch = {"id": np.array([1, 2]), PROBE_COLUMN: np.array(PROBE_PROMPTS, dtype=object)}
        call = f"`{cls.__name__}({columns[0]}={PROBE_COLUMN!r})` on a batch with a `{PROBE_COLUMN}` column"
        try:
            with learners_code(call):
                result = cls(*args, **kwargs)({name: values.copy() for name, values in batch.items()})
        except Incorrect as signal:
            if isinstance(signal.exception, KeyError):
                self.incorrect(
                    f"{call} raised KeyError {signal.exception}: the class still reads a fixed column. "
                    f"Use `self.{columns[0]}` wherever it reads or writes the prompts."
                )
            raise
        if not isinstance(result, dict):
            self.incorrect(f"{call} returned a {type(result).__name__}; `__call__` must return the batch dict.")
        if PROMPT_COLUMN in result:
            self.incorrect(
                f"{call} added a `{PROMPT_COLUMN}` column; write the new prompts back to the column it was given."
            )
        values = _texts(result.get(PROBE_COLUMN))
        if values is None or len(values) != len(PROBE_PROMPTS):
            self.incorrect(f"{call} returned no `{PROBE_COLUMN}` column with one prompt per row.")
        if not all(isinstance(v, str) and v.strip() for v in values):
            self.incorrect(f"{call} left empty or non-text values in `{PROBE_COLUMN}`.")
        if values == list(PROBE_PROMPTS):
            elsewhere = [name for name, column in result.items() if name not in batch and _other_texts(column, values)]
            if elsewhere:
                self.incorrect(
                    f"{call} left `{PROBE_COLUMN}` as it was and wrote new prompts to {quote(elsewhere)}; "
                    "write them back to the column it was given, where the image stage reads them."
                )

    def _check_model_is_honoured(self, cls, construction: Construction, model_param: str, columns: list[str]):
        batch = {"id": np.array([1]), PROBE_COLUMN: np.array(PROBE_PROMPTS[:1], dtype=object)}
        with tempfile.TemporaryDirectory(prefix="no-model-") as missing:
            args, kwargs = construction.with_({model_param: missing, **dict.fromkeys(columns, PROBE_COLUMN)})
            try:
                cls(*args, **kwargs)(batch)
            except Exception:  # noqa: BLE001 - the learner's class, expected to fail: there is no model there
                return
        self.incorrect(
            f"`{cls.__name__}({model_param}=<an empty folder>)` still worked: the class loads a fixed model. "
            f"Load the model named by `{model_param}`."
        )

    def _check_reads_nothing_from_the_notebook(self, cls):
        methods = _methods_reading(cls, NOTEBOOK_SESSION)
        if methods:
            where = quote(f"{cls.__name__}.{method}" for method in methods)
            self.incorrect(
                f"{where} still reads `{NOTEBOOK_SESSION}` from the notebook, so the class works only beside it. "
                "Make what it takes from there a parameter too (`max_new_tokens=120`, with a default) and pass the "
                "notebook's value through `fn_constructor_kwargs`."
            )
