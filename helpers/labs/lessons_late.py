"""Labs of lessons 04-06: PNG files, a one-GPU plan, the parameterized Enhancer.

Each check inspects what the learner produced (a folder of files, a Dataset's
plan, a class) and accepts every correct answer, not only the solution's:

* ``04_png`` reads the folder with PIL alone, as any program that gets the
  files would;
* ``05_one_gpu`` reads the resources a pipeline *declares*, without running it;
* ``06_parameterized_enhancer`` reads the class's signature and the pipeline's
  plan, then runs the class itself on a two-row batch with a column name the
  lesson never uses, and once with a model folder that does not exist, to see
  that both parameters are honoured.
"""

from __future__ import annotations

import csv
import inspect
import math
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helpers.errors import first_line
from helpers.labs.framework import Lab, register
from helpers.runtime.settings import REPO_ROOT, SMALL_LLM_MODEL, resolve_storage

#: The column lessons 04-06 feed to the models (``expand_prompt`` writes it).
PROMPT_COLUMN = "prompt"


def _quote(values) -> str:
    return ", ".join(f"`{v}`" for v in values)


# --------------------------------------------------------------------------- the data


def _data_file(name: str) -> Path:
    """``<storage>/data/<name>`` as set-up stages it, else the clone's own copy."""
    staged = resolve_storage() / "data" / name
    return staged if staged.exists() else REPO_ROOT / "data" / name


def _ids(name: str) -> Counter:
    with _data_file(name).open(newline="", encoding="utf-8") as handle:
        return Counter(row["id"] for row in csv.DictReader(handle))


def joined_row_count() -> int:
    """Rows of ``animals`` inner-joined with ``outfits`` on ``id``, computed from the CSV files."""
    animals, outfits = _ids("animals.csv"), _ids("outfits.csv")
    return sum(count * outfits[key] for key, count in animals.items())


# --------------------------------------------------------------------------- reading a pipeline's plan


@dataclass(frozen=True)
class MapStage:
    """One ``map_batches`` call of a pipeline, as declared (nothing has run)."""

    fn: object
    batch_size: object
    num_gpus: float
    min_actors: float | None  # None for a stateless (task) stage
    max_actors: float | None  # math.inf for a pool without an upper bound
    constructor_args: tuple = ()
    constructor_kwargs: dict = field(default_factory=dict)

    @property
    def is_class(self) -> bool:
        return inspect.isclass(self.fn)

    @property
    def label(self) -> str:
        return getattr(self.fn, "__name__", type(self.fn).__name__)


def _is_dataset(value) -> bool:
    try:
        import ray.data
    except ImportError:  # pragma: no cover - the workshop always has Ray
        return False
    return isinstance(value, ray.data.Dataset)


def map_stages(dataset) -> list[MapStage]:
    """The ``map_batches`` stages of a Dataset, from source to sink, read from its logical plan.

    The plan is what Ray Data optimizes and runs; reading it tells what each
    stage asks for (GPUs, actors, constructor arguments) without running anything.
    """
    from ray.data._internal.compute import ActorPoolStrategy
    from ray.data._internal.logical.operators.map_operator import MapBatches

    stages = []
    for op in dataset._logical_plan.dag.post_order_iter():
        if not isinstance(op, MapBatches):
            continue
        pool = op.compute if isinstance(op.compute, ActorPoolStrategy) else None
        stages.append(
            MapStage(
                fn=op.fn,
                batch_size=op.batch_size,
                num_gpus=float((op.ray_remote_args or {}).get("num_gpus") or 0),
                min_actors=pool.min_size if pool else None,
                max_actors=pool.max_size if pool else None,
                constructor_args=tuple(op.fn_constructor_args or ()),
                constructor_kwargs=dict(op.fn_constructor_kwargs or {}),
            )
        )
    return stages


def _require_dataset(lab: Lab, value, name: str) -> None:
    if _is_dataset(value):
        return
    if isinstance(value, dict):
        lab.incorrect(f"`{name}` is a batch (a dict of columns); pass the Dataset itself, before taking anything.")
    lab.incorrect(f"`{name}` is a {type(value).__name__}; it should be a Ray Dataset built with `map_batches`.")


# --------------------------------------------------------------------------- lesson 04


def _local_folder(folder) -> Path:
    text = str(folder)
    for scheme in ("local://", "file://"):
        text = text.removeprefix(scheme)
    return Path(text).expanduser()


@register
class PngFilesLab(Lab):
    name = "04_png"
    title = "Write the dressed animals as PNG files"
    hints = (
        (
            "A Dataset has a writer for images: `write_images(path, column=..., file_format=...)` writes one "
            "file per row. Call it on the pipeline that generates the images, `dressed_animals`."
        ),
        (
            "`write_images` wants each image as a NumPy array of `uint8` (height x width x 3), but `ImageGen` "
            "returns PIL images. Add a small function with `map_batches` that converts them: "
            "`np.array(pil_image)` converts one."
        ),
        (
            "Writers add files next to those of an earlier run. Pass `mode=\"overwrite\"` so that running the "
            "cell again replaces the folder's contents; see `lab.solution()` for the whole cell."
        ),
    )
    solution_text = """
        png_folder = session.settings.output_path("04_png")

        def to_uint8_arrays(batch):
            batch["image"] = np.stack([np.array(image) for image in batch["image"]])
            return batch

        dressed_animals.map_batches(to_uint8_arrays).write_images(
            png_folder, column="image", file_format="png", mode="overwrite"
        )
    """
    correct_message = "One PNG per joined row, readable by any image viewer, and a re-run replaces them."

    def check_answer(self, folder):
        if _is_dataset(folder):
            self.incorrect("`folder` is a Dataset; pass the path of the folder you wrote the images to.")
        if not isinstance(folder, (str, Path)):
            self.incorrect(f"`folder` is a {type(folder).__name__}; pass the folder's path as a string.")
        path = _local_folder(folder)
        if not path.exists():
            self.incorrect(f"{path} does not exist: nothing has been written there yet.")
        if not path.is_dir():
            self.incorrect(f"{path} is a file; `write_images` writes a folder of files, pass the folder.")
        files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
        pngs = [f for f in files if f.suffix.lower() == ".png"]
        others = [f for f in files if f.suffix.lower() != ".png"]
        if not pngs:
            if others:
                kinds = sorted({f.suffix or f.name for f in others})
                self.incorrect(
                    f"{path} holds {len(others)} files ({_quote(kinds)}) but no PNG files; "
                    'write them with `file_format="png"`.'
                )
            self.incorrect(f"{path} is empty.")
        if others:
            self.incorrect(
                f"besides {len(pngs)} PNG files, {path} holds {len(others)} other files (e.g. `{others[0].name}`): "
                "write into a folder of its own, or with `mode=\"overwrite\"` so it holds only this run's images."
            )
        expected = joined_row_count()
        if len(pngs) > expected:
            self.incorrect(
                f"{path} holds {len(pngs)} PNG files for {expected} joined rows: files of an earlier run are still "
                'there. Write with `mode="overwrite"` so that a re-run replaces them.'
            )
        if len(pngs) < expected:
            self.incorrect(
                f"{path} holds {len(pngs)} PNG files, but the join gives {expected} rows; write the whole "
                "dataset, not a batch taken from it."
            )
        self._check_decodes(pngs)
        self.correct(f"{len(pngs)} PNG files in {path}. {self.correct_message}")

    def _check_decodes(self, pngs: list[Path]) -> None:
        from PIL import Image, UnidentifiedImageError

        for png in pngs:
            try:
                with Image.open(png) as image:
                    image.load()
                    kind = image.format
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                self.incorrect(f"`{png.name}` does not decode as an image ({type(exc).__name__}).")
            if kind != "PNG":
                self.incorrect(f'`{png.name}` holds {kind} data, not PNG; write with `file_format="png"`.')


# --------------------------------------------------------------------------- lesson 05

#: How much GPU the machine of lab 05 has.
ONE_GPU = 1.0
_EPS = 1e-6


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
            "On two GPUs the stages ask for 2 x 0.6 + 2 x 0.4 = 2.0. Scale both shares so the total is 1.0 "
            "(the LLM keeps the larger share)."
        ),
        "`num_gpus=0.3` for the Enhancer stage and `num_gpus=0.2` for the ImageGen stage: 2 x 0.3 + 2 x 0.2 = 1.0.",
    )
    solution_text = """
        one_gpu_images = (
            animals_outfits.map_batches(expand_prompt)
            .map_batches(Enhancer, batch_size=4, num_gpus=0.3, compute=ray.data.ActorPoolStrategy(size=2))
            .map_batches(helpers.ImageGen, batch_size=8, num_gpus=0.2, compute=ray.data.ActorPoolStrategy(size=2))
        )
    """
    correct_message = (
        "Both model stages share one GPU. Ray only counts what each actor declares: "
        "keeping within those shares (GPU memory, threads) is up to the models."
    )

    def check_answer(self, pipeline):
        _require_dataset(self, pipeline, "pipeline")
        stages = map_stages(pipeline)
        models = [s for s in stages if s.is_class]
        if len(models) < 2:
            found = _quote(s.label for s in stages) or "none"
            self.incorrect(
                f"the pipeline has {len(models)} model stage(s) (callable classes); it needs the Enhancer and "
                f"ImageGen stages. Its map_batches stages: {found}."
            )
        for stage in models:
            if stage.num_gpus <= 0:
                self.incorrect(
                    f"the `{stage.label}` stage asks for no GPU, so its model would run on CPU; "
                    "give its actors a share with `num_gpus=`."
                )
            if stage.max_actors is None or math.isinf(stage.max_actors):
                self.incorrect(
                    f"the `{stage.label}` stage has no upper bound on its actors, so its GPU total is unknown; "
                    "fix the pool size with `compute=ray.data.ActorPoolStrategy(size=2)`."
                )
            if stage.max_actors != 2:
                self.incorrect(
                    f"the `{stage.label}` stage has up to {stage.max_actors:g} actors; keep two per stage "
                    "and change their GPU share instead."
                )
        shares = " + ".join(f"{s.max_actors:g} x {s.num_gpus:g}" for s in models)
        total = sum(s.max_actors * s.num_gpus for s in models)
        if total > ONE_GPU + _EPS:
            self.incorrect(
                f"the model stages reserve {shares} = {total:g} GPUs, and the machine has {ONE_GPU:g}; "
                "ask for a smaller share per actor."
            )
        self.correct(f"{shares} = {total:g} of {ONE_GPU:g} GPU. {self.correct_message}")


# --------------------------------------------------------------------------- lesson 06

#: A column name the lessons never use: a class that honours its column parameter reads it.
PROBE_COLUMN = "scene"
PROBE_PROMPTS = (
    "A watercolor painting of a sea otter wearing a yellow raincoat",
    "A studio photo of a corgi wearing a tuxedo",
)


def _init_parameters(cls) -> list[inspect.Parameter]:
    """The parameters of ``cls.__init__`` after ``self``, leaving out ``*args`` and ``**kwargs``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


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
            "`batch[self.prompt_column]`; see `lab.solution()` for both cells."
        ),
    )
    solution_text = """
        class ParamEnhancer:
            def __init__(self, model_name, prompt_column):
                self.prompt_column = prompt_column
                self.pipe = load_text_generator(model_name)  # once per actor

            def __call__(self, batch):
                prompts = [str(p) for p in batch[self.prompt_column]]
                chats = [seasonal_messages(p, random.choice(SEASONS)) for p in prompts]
                outputs = self.pipe(chats, max_new_tokens=session.settings.max_new_tokens,
                                    do_sample=False, batch_size=len(chats))
                replies = reply_texts(outputs)
                batch["original_prompt"] = np.array(prompts, dtype=object)
                batch[self.prompt_column] = np.array([r or p for r, p in zip(replies, prompts)], dtype=object)
                batch["enhanced"] = np.array([bool(r) for r in replies])
                return batch

        seasonal_images = (
            animals_outfits.repartition(target_num_rows_per_block=session.llm.batch_size)
            .map_batches(expand_prompt)
            .map_batches(
                ParamEnhancer,
                fn_constructor_kwargs={"model_name": enhancer_model, "prompt_column": prompt_column},
                batch_size=session.llm.batch_size,
                num_gpus=session.llm.num_gpus,
                compute=ray.data.ActorPoolStrategy(size=session.llm.actors),
            )
            .map_batches(
                helpers.ImageGen,
                batch_size=session.image.batch_size,
                num_gpus=image_gpus,
                compute=ray.data.ActorPoolStrategy(size=session.image.actors),
            )
        )
    """
    correct_message = (
        "The class says *what* it does; the pipeline says *with which model, on which column, "
        "on how many actors*. The same class now serves any dataset and any model."
    )

    def check_answer(self, enhancer_class, pipeline):
        self._check_class(enhancer_class)
        _require_dataset(self, pipeline, "pipeline")
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

    # -- the class and the plan

    def _check_class(self, cls) -> None:
        if not inspect.isclass(cls):
            if callable(cls) and not inspect.isroutine(cls):
                self.incorrect(
                    f"`enhancer_class` is an instance of `{type(cls).__name__}`; pass the class itself, "
                    "Ray creates the instances."
                )
            self.incorrect(f"`enhancer_class` is a {type(cls).__name__}; pass the class you wrote.")
        params = _init_parameters(cls)
        if len(params) < 2:
            shown = ", ".join(p.name for p in params) or "nothing"
            self.incorrect(
                f"`{cls.__name__}.__init__` takes {shown} besides `self`; it needs two parameters: "
                "the model name and the prompt column."
            )

    def _enhancer_stage(self, cls, pipeline) -> tuple[MapStage, list[MapStage]]:
        stages = map_stages(pipeline)
        for index, stage in enumerate(stages):
            if stage.fn is cls:
                return stage, [s for s in stages[index + 1 :] if s.is_class]
        same_name = [s for s in stages if s.label == cls.__name__]
        if same_name:
            self.incorrect(
                f"`pipeline` was built with an earlier definition of `{cls.__name__}`; "
                "run the cell that builds the pipeline again after changing the class."
            )
        found = _quote(s.label for s in stages) or "none"
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
                f"the pipeline passes {_quote(stage.constructor_kwargs) or 'positional arguments'} to "
                f"`{cls.__name__}`, which does not accept them ({exc})."
            )
        passed = {name: value for name, value in bound.arguments.items() if isinstance(value, str)}
        columns = [name for name, value in passed.items() if value == PROMPT_COLUMN]
        if not columns:
            self.incorrect(
                f"none of the values passed to `{cls.__name__}` ({_quote(passed.values()) or 'none'}) is the "
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
