"""``helpers.ImageGen``: short enough to read in lesson 03, and as careful as before.

The class body is what a learner sees (``helpers.show_source``); the prompt
cut, the out-of-memory message and the loading live in
:mod:`helpers.models.safeguards` and :mod:`helpers.models.loading`, and these
tests check that the class still goes through them.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import numpy as np
import pytest

import helpers
from helpers.errors import StageOutOfMemoryError
from helpers.models import safeguards
from helpers.models.stages import ImageGen
from helpers.runtime.settings import TINY_IMAGE_MODEL, load_settings
from tests.test_pipeline_cli import MODELS, STORAGE, needs_models

#: Code lines (no docstring, comment or blank line) a learner reads in lesson 03.
MAX_CLASS_LINES = 15


def code_lines(obj) -> list[str]:
    """The source lines of ``obj`` that are code: docstrings, comments and blank lines left out."""
    source = textwrap.dedent(inspect.getsource(obj))
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node) is not None:
            docstrings.update(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    lines = source.splitlines()
    return [
        line for number, line in enumerate(lines, 1)
        if number not in docstrings and line.strip() and not line.strip().startswith("#")
    ]  # fmt: skip


def test_the_class_lesson_03_shows_stays_short():
    lines = code_lines(helpers.ImageGen)
    assert len(lines) <= MAX_CLASS_LINES, "\n".join(lines)
    methods = [name for name, value in vars(helpers.ImageGen).items() if inspect.isfunction(value)]
    assert methods == ["__init__", "__call__"]
    assert not any(word in line for line in lines for word in ("try:", "except", "import "))


def test_the_line_counter_counts_code_only():
    def sample():
        """Two lines
        of docstring."""
        # a comment
        x = 1

        return x

    assert [line.strip() for line in code_lines(sample)] == ["def sample():", "x = 1", "return x"]


class RecordingPipe:
    """A stand-in for the diffusers pipeline (unit test, no model): records the prompts, or raises ``error``."""

    def __init__(self, error: BaseException | None = None):
        self.error = error
        self.calls = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        from PIL import Image

        images = [Image.new("RGB", (kwargs["width"], kwargs["height"])) for _ in kwargs["prompt"]]
        return type("Output", (), {"images": images})()


def stage_with(pipe, monkeypatch) -> ImageGen:
    """An ``ImageGen`` whose model is ``pipe``: ``__init__`` (which loads the real model) is skipped."""
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    monkeypatch.setenv("WORKSHOP_IMAGE_SIZE", "96")
    monkeypatch.setenv("WORKSHOP_IMAGE_BATCH_SIZE", "6")
    stage = ImageGen.__new__(ImageGen)
    stage.settings = load_settings()
    stage.pipe = pipe
    return stage


def test_long_prompts_are_cut_with_a_notice(monkeypatch, caplog):
    """Unit test with a stand-in pipeline: what reaches the model, and the log line."""
    pipe = RecordingPipe()
    stage = stage_with(pipe, monkeypatch)
    long_prompt = "a fox wearing " + "a hat with a feather, " * 230
    batch = {"prompt": np.array([long_prompt, "🦊 wearing 帽子"], dtype=object)}
    with caplog.at_level("WARNING", logger=safeguards.log.name):
        out = stage(batch)
    call = pipe.calls[0]
    assert call["prompt"] == [long_prompt[: safeguards.MAX_PROMPT_CHARS], "🦊 wearing 帽子"]
    assert (call["num_inference_steps"], call["guidance_scale"], call["height"], call["width"]) == (1, 0.0, 96, 96)
    notices = [r.getMessage() for r in caplog.records if r.name == safeguards.log.name]
    assert notices == [f"ImageGen: 1 prompt(s) of up to {len(long_prompt)} characters cut to 1000"]
    assert out["image"].dtype == object and [image.size for image in out["image"]] == [(96, 96), (96, 96)]
    assert out["prompt"][0] == long_prompt, "the batch keeps the whole prompt"


def test_out_of_memory_names_what_to_lower(monkeypatch):
    """Unit test that injects torch's CPU allocator error through a stand-in pipeline."""
    error = RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried")
    stage = stage_with(RecordingPipe(error), monkeypatch)
    with pytest.raises(StageOutOfMemoryError) as caught:
        stage({"prompt": np.array(["a fox", "an owl"], dtype=object)})
    message = str(caught.value)
    assert message.startswith(
        "ImageGen ran out of memory on a batch of 2 prompts; lower WORKSHOP_IMAGE_BATCH_SIZE (now 6) or the "
        "map_batches batch_size, or WORKSHOP_IMAGE_SIZE (now 96 px) (torch said: [enforce fail"
    ), message


def test_other_errors_pass_through_unchanged(monkeypatch):
    """Unit test with a stand-in pipeline that fails for a reason other than memory."""
    stage = stage_with(RecordingPipe(RuntimeError("shape mismatch")), monkeypatch)
    with pytest.raises(RuntimeError, match="^shape mismatch$"):
        stage({"prompt": np.array(["a fox"], dtype=object)})


@pytest.fixture
def cpu_settings(monkeypatch):
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    monkeypatch.setenv("WORKSHOP_STORAGE", str(STORAGE))
    monkeypatch.setenv("WORKSHOP_IMAGE_SIZE", "64")
    monkeypatch.setenv("WORKSHOP_TORCH_THREADS", "1")


@pytest.mark.slow
@needs_models
def test_the_tiny_model_loads_as_sdxl_on_the_cpu_and_draws(cpu_settings):
    import torch

    stage = ImageGen()
    assert type(stage.pipe).__name__ == "StableDiffusionXLPipeline"
    assert (stage.pipe.device.type, stage.pipe.unet.dtype) == ("cpu", torch.float32)
    batch = {"id": np.array([1, 2]), "prompt": np.array(["a fox wearing a hat", "an owl"], dtype=object)}
    out = stage(batch)
    assert sorted(out) == ["id", "image", "prompt"]
    assert out["image"].shape == (2,) and all(image.size == (64, 64) for image in out["image"])


@pytest.mark.slow
@needs_models
def test_the_pipeline_writer_draws_and_writes_with_the_same_class(cpu_settings, tmp_path):
    """What the pipeline command's image actors run, here in this process: draw, encode, write."""
    import pyarrow.parquet as pq

    from helpers.pipeline.output import mark_partial
    from helpers.pipeline.stages import writes_where_it_draws

    folder = mark_partial(tmp_path / "partial")
    writer = writes_where_it_draws(ImageGen)
    assert writer.__name__ == "ImageGen" and issubclass(writer, ImageGen)
    prompts = np.array(["a fox wearing a hat", LONGER_THAN_CLIP_READS], dtype=object)
    batch = {
        "id": np.array([7, 8]), "animal": np.array(["fox", "owl"], dtype=object),
        "outfit": np.array(["hat", "scarf"], dtype=object), "prompt": prompts, "original_prompt": prompts.copy(),
        "enhanced": np.array([False, False]),
    }  # fmt: skip
    row = writer(folder=folder)(batch)
    pngs = sorted(p.name for p in folder.rglob("*.png"))
    parts = list(folder.rglob("*.parquet"))
    assert pngs == ["7.png", "8.png"] and len(parts) == 1
    assert pq.read_table(parts[0]).column("image").to_pylist()[0].startswith(b"\x89PNG")
    assert row.column("image_prompts_cut").to_pylist() == [1], "the long prompt is counted as read in part"


#: Under MAX_PROMPT_CHARS, but longer than the 77 tokens the image model's text encoders read.
LONGER_THAN_CLIP_READS = "a fox wearing " + "a hat with a feather, " * 20


@needs_models
def test_prompts_past_the_text_encoders_length_are_counted():
    """With the tiny model's own tokenizer (as sdxl-turbo's, 77 tokens): what the pipeline would cut."""
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(MODELS / TINY_IMAGE_MODEL / "tokenizer")
    pipe = type("Pipe", (), {"tokenizer": tokenizer})()
    assert tokenizer.model_max_length == 77 and len(LONGER_THAN_CLIP_READS) < safeguards.MAX_PROMPT_CHARS
    prompts = np.array(["a fox wearing a hat", LONGER_THAN_CLIP_READS, "x" * 5000], dtype=object)
    assert safeguards.count_token_cuts(pipe, prompts) == 2
    assert safeguards.count_token_cuts(pipe, prompts[:1]) == 0
    assert safeguards.count_token_cuts(None, prompts) == 0, "a model without a tokenizer counts nothing"


@pytest.mark.parametrize("on_gpu", [True, False])
def test_a_model_that_does_not_fit_as_it_loads_names_the_actor_counts(cpu_settings, monkeypatch, on_gpu):
    """Unit test that injects the error torch raises when sdxl-turbo's weights meet a memory already holding others
    (CUDA's answered as a GPU would: no GPU here): the learner reads which settings put that many actors there,
    not a loader traceback."""
    import torch
    from diffusers import DiffusionPipeline

    from helpers.models.loading import load_image_pipeline

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 11.76 GiB total capacity)"
                           if on_gpu else "DefaultCPUAllocator: can't allocate memory: you tried to allocate 2 GB")

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", out_of_memory)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: on_gpu)
    monkeypatch.setenv("WORKSHOP_IMAGE_ACTORS", "3")
    source = str(MODELS / TINY_IMAGE_MODEL)
    with pytest.raises(StageOutOfMemoryError) as caught:
        load_image_pipeline(source, load_settings())
    actors = "lower WORKSHOP_IMAGE_ACTORS (now 3) or WORKSHOP_LLM_ACTORS (now 2)"
    fix = (f"Ray puts actors on one GPU while their num_gpus shares add up to 1 or less, and their weights must fit "
           f"in its memory too: {actors}, or use a GPU with more memory") if on_gpu else (
           f"every model actor holds its own copy of the weights in this machine's memory: {actors}")
    assert str(caught.value).startswith(f"the image model ran out of memory while loading {source}; {fix} "), \
        caught.value


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bfloat16"), (False, "float16")])
def test_the_llm_loads_in_bfloat16_where_the_gpu_has_it(monkeypatch, bf16, expected):
    """Unit test with torch's CUDA queries answered as a GPU would answer them (no GPU here): Qwen2.5, trained in
    bfloat16, gets it where the GPU has it; the image model keeps float16 everywhere on CUDA."""
    import torch

    from helpers.models.loading import torch_device_and_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert torch_device_and_dtype(bf16_where_supported=True) == ("cuda", getattr(torch, expected))
    assert torch_device_and_dtype() == ("cuda", torch.float16)
