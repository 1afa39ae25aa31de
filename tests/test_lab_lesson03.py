"""The lab of lesson 03 (:mod:`helpers.labs.lesson03`), tested three ways: starter, solution, wrong answers.

Parquet folders are written with pyarrow in ``tmp_path``, the way a learner's
write would leave them. Only one test uses Ray (the suite's shared session),
for the mistake only Ray makes: PIL images written straight to Parquet.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from helpers.labs.data import animal_prompts
from helpers.labs.framework import CORRECT, INCORRECT, NOT_ATTEMPTED, get_lab

PROMPTS = animal_prompts()


def status(outcome):
    return outcome.status


# --------------------------------------------------------------------------- 03_parquet: writing answers


def tiny_image(i: int) -> Image.Image:
    return Image.fromarray(np.full((4, 4, 3), i % 256, dtype=np.uint8))


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def write_parquet(folder, columns: dict, files: int = 2, prefix: str = "part") -> str:
    """Write ``columns`` as ``files`` Parquet files under ``folder`` (like a Ray write)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table(columns) if not isinstance(columns, pa.Table) else columns
    step = -(-table.num_rows // files)
    for index in range(files):
        pq.write_table(table.slice(index * step, step), folder / f"{prefix}_{index:06d}-0.parquet")
    return str(folder)


def ray_extension_field(name: str, storage: pa.Array, metadata: bytes) -> pa.Field:
    """A column as Ray writes it, read back by pyarrow in a process that never imported Ray."""
    return pa.field(
        "image",
        storage.type,
        metadata={b"ARROW:extension:name": name.encode(), b"ARROW:extension:metadata": metadata},
    )


def with_image_column(field: pa.Field, values: pa.Array, prompts=PROMPTS) -> pa.Table:
    schema = pa.schema([pa.field("prompt", pa.string()), field])
    return pa.table({"prompt": prompts, "image": values}, schema=schema)


def png_answer(folder, prompts=PROMPTS) -> str:
    return write_parquet(folder, {"prompt": prompts, "image": [encoded(tiny_image(i)) for i in range(len(prompts))]})


@pytest.fixture
def parquet_lab():
    return get_lab("03_parquet")


# --------------------------------------------------------------------------- 03_parquet: the three ways


@pytest.mark.parametrize("starter", [..., None, "TODO"])
def test_parquet_starter_is_not_attempted(parquet_lab, starter):
    assert status(parquet_lab.evaluate(parquet_path=starter)) == NOT_ATTEMPTED


def test_parquet_png_bytes_are_correct(parquet_lab, tmp_path):
    outcome = parquet_lab.evaluate(parquet_path=png_answer(tmp_path / "out"))
    assert status(outcome) == CORRECT and "encoded image bytes" in outcome.message


def test_parquet_extra_columns_jpeg_and_a_path_object_are_fine(parquet_lab, tmp_path):
    images = [encoded(tiny_image(i), "JPEG") for i in range(len(PROMPTS))]
    write_parquet(tmp_path / "out", {"id": list(range(len(PROMPTS))), "prompt": PROMPTS, "image": images}, files=3)
    assert status(parquet_lab.evaluate(parquet_path=tmp_path / "out")) == CORRECT


def test_parquet_single_file_is_fine(parquet_lab, tmp_path):
    write_parquet(tmp_path / "out", {"prompt": PROMPTS, "image": [encoded(tiny_image(0))] * len(PROMPTS)}, files=1)
    (single,) = (tmp_path / "out").glob("*.parquet")
    assert status(parquet_lab.evaluate(parquet_path=str(single))) == CORRECT


def test_parquet_single_file_of_another_kind_is_incorrect_and_says_so(parquet_lab, tmp_path):
    (tmp_path / "images.csv").write_text("prompt,image\nfox,1\n")
    outcome = parquet_lab.evaluate(parquet_path=str(tmp_path / "images.csv"))
    assert status(outcome) == INCORRECT and "is not one of the .parquet files `write_parquet` writes" in outcome.message


def test_parquet_ray_tensor_pixels_are_correct(parquet_lab, tmp_path):
    pixels = [np.asarray(tiny_image(i)).ravel().tolist() for i in range(len(PROMPTS))]
    storage = pa.array(pixels, type=pa.large_list(pa.uint8()))
    field = ray_extension_field("ray.data.arrow_tensor_v2", storage, json.dumps([4, 4, 3]).encode())
    folder = write_parquet(tmp_path / "out", with_image_column(field, storage))
    outcome = parquet_lab.evaluate(parquet_path=folder)
    assert status(outcome) == CORRECT and "pixel arrays" in outcome.message


def test_parquet_ray_variable_shaped_pixels_are_correct(parquet_lab, tmp_path):
    data = pa.array(
        [np.asarray(tiny_image(i)).ravel().tolist() for i in range(len(PROMPTS))], pa.large_list(pa.uint8())
    )
    shapes = pa.array([[4, 4, 3]] * len(PROMPTS), pa.list_(pa.int64()))
    storage = pa.StructArray.from_arrays([data, shapes], names=["data", "shape"])
    field = ray_extension_field("ray.data.arrow_variable_shaped_tensor", storage, b"3")
    assert (
        status(parquet_lab.evaluate(parquet_path=write_parquet(tmp_path / "out", with_image_column(field, storage))))
        == CORRECT
    )


def test_parquet_nested_lists_of_pixels_are_correct(parquet_lab, tmp_path):
    nested = [np.asarray(tiny_image(i)).tolist() for i in range(len(PROMPTS))]
    values = pa.array(nested, type=pa.list_(pa.list_(pa.list_(pa.uint8()))))
    folder = write_parquet(tmp_path / "out", {"prompt": PROMPTS, "image": values})
    assert status(parquet_lab.evaluate(parquet_path=folder)) == CORRECT


def test_parquet_missing_folder_is_incorrect(parquet_lab, tmp_path):
    outcome = parquet_lab.evaluate(parquet_path=str(tmp_path / "never_written"))
    assert status(outcome) == INCORRECT and "does not exist" in outcome.message


def test_parquet_folder_without_parquet_files_is_incorrect(parquet_lab, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "image.png").write_bytes(encoded(tiny_image(0)))
    outcome = parquet_lab.evaluate(parquet_path=str(tmp_path / "out"))
    assert status(outcome) == INCORRECT and "no .parquet files" in outcome.message


@pytest.mark.parametrize("kept", ["prompt", "image"])
def test_parquet_missing_column_is_incorrect(parquet_lab, tmp_path, kept):
    columns = {"prompt": PROMPTS, "image": [encoded(tiny_image(0))] * len(PROMPTS)}
    folder = write_parquet(tmp_path / "out", {kept: columns[kept]})
    outcome = parquet_lab.evaluate(parquet_path=folder)
    missing = {"prompt": "image", "image": "prompt"}[kept]
    assert status(outcome) == INCORRECT and f"no `{missing}` column" in outcome.message


def test_parquet_partial_rows_are_incorrect(parquet_lab, tmp_path):
    """``take_batch(3)`` written out, or a ``limit``: a sample, not the dataset."""
    outcome = parquet_lab.evaluate(parquet_path=png_answer(tmp_path / "out", prompts=PROMPTS[:3]))
    assert status(outcome) == INCORRECT and "3 rows" in outcome.message and "120 animals" in outcome.message


def test_parquet_appended_second_write_is_incorrect(parquet_lab, tmp_path):
    """The default write mode adds files: running the cell twice doubles every row."""
    folder = tmp_path / "out"
    png_answer(folder)
    write_parquet(
        folder, {"prompt": PROMPTS, "image": [encoded(tiny_image(i)) for i in range(len(PROMPTS))]}, prefix="second_run"
    )
    outcome = parquet_lab.evaluate(parquet_path=str(folder))
    assert status(outcome) == INCORRECT and "2 times" in outcome.message and "earlier write" in outcome.message
    assert "overwrite" not in outcome.message  # says what is wrong, not the answer


def test_parquet_a_trial_write_left_in_the_folder_is_incorrect_and_says_so(parquet_lab, tmp_path):
    """``limit(3).write_parquet(path)`` to try it, then the whole dataset into the same folder."""
    folder = tmp_path / "out"
    png_answer(folder, prompts=PROMPTS[:3])
    write_parquet(
        folder, {"prompt": PROMPTS, "image": [encoded(tiny_image(i)) for i in range(len(PROMPTS))]}, prefix="second_run"
    )
    outcome = parquet_lab.evaluate(parquet_path=str(folder))
    assert status(outcome) == INCORRECT and f"holds {len(PROMPTS) + 3} rows" in outcome.message
    assert "files of an earlier write (a trial run) may still be there" in outcome.message


def test_parquet_pickles_are_incorrect_without_ray(parquet_lab, tmp_path):
    """Ray's pickled-object column as a Ray-less pyarrow reads it: binary plus extension metadata."""
    import pickle

    storage = pa.array([pickle.dumps(f"not an image {i}") for i in range(len(PROMPTS))], pa.large_binary())
    field = ray_extension_field("ray.data.arrow_pickled_object", storage, b"")
    outcome = parquet_lab.evaluate(parquet_path=write_parquet(tmp_path / "out", with_image_column(field, storage)))
    assert status(outcome) == INCORRECT and "pickled" in outcome.message


def test_parquet_pickles_in_plain_binary_are_incorrect(parquet_lab, tmp_path):
    import pickle

    values = [pickle.dumps(np.asarray(tiny_image(i))) for i in range(len(PROMPTS))]
    outcome = parquet_lab.evaluate(parquet_path=write_parquet(tmp_path / "out", {"prompt": PROMPTS, "image": values}))
    assert status(outcome) == INCORRECT and "pickled" in outcome.message


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (lambda i: b"these are not image bytes", "does not decode as an image"),
        (lambda i: f"image {i}", "holds text"),
        (lambda i: (np.asarray(tiny_image(i)) / 255.0).tolist(), "double values"),
        (lambda i: (np.asarray(tiny_image(i)).astype(np.int64) * 4).tolist(), "0-255"),
    ],
)
def test_parquet_image_column_of_the_wrong_kind_is_incorrect(parquet_lab, tmp_path, image, words):
    values = [image(i) for i in range(len(PROMPTS))]
    outcome = parquet_lab.evaluate(parquet_path=write_parquet(tmp_path / "out", {"prompt": PROMPTS, "image": values}))
    assert status(outcome) == INCORRECT and words in outcome.message


def test_parquet_other_prompts_are_incorrect(parquet_lab, tmp_path):
    prompts = [p + " wearing a hat" for p in PROMPTS]
    outcome = parquet_lab.evaluate(parquet_path=png_answer(tmp_path / "out", prompts=prompts))
    assert status(outcome) == INCORRECT and "do not match animals.csv" in outcome.message


def test_parquet_null_images_are_incorrect(parquet_lab, tmp_path):
    images = [encoded(tiny_image(i)) for i in range(len(PROMPTS))]
    images[5] = None
    outcome = parquet_lab.evaluate(parquet_path=write_parquet(tmp_path / "out", {"prompt": PROMPTS, "image": images}))
    assert status(outcome) == INCORRECT and "1 of the rows have no image" in outcome.message


# --------------------------------------------------------------------------- 03_parquet: the one Ray case


@pytest.fixture
def ray_running(session):
    """The suite's shared Ray session (see conftest), as a learner's kernel would have it."""
    import ray

    return ray


def test_parquet_pil_images_written_straight_by_ray_are_incorrect(parquet_lab, tmp_path, ray_running):
    """The lab's trap: ``write_parquet`` on the ImageGen output pickles the PIL images."""
    items = [{"prompt": prompt, "image": tiny_image(i)} for i, prompt in enumerate(PROMPTS)]
    folder = str(tmp_path / "out")
    ray_running.data.from_items(items, override_num_blocks=2).write_parquet(folder)
    outcome = parquet_lab.evaluate(parquet_path=folder)
    assert status(outcome) == INCORRECT and "pickled Python objects" in outcome.message


def pil_images_dataset(ray):
    """Stands in for ``animal_images``: every prompt with a PIL image, as ImageGen returns them."""
    items = [{"prompt": prompt, "image": tiny_image(i)} for i, prompt in enumerate(PROMPTS)]
    return ray.data.from_items(items, override_num_blocks=3)


@pytest.mark.parametrize("plain", ["jpeg-bytes", "pixel-arrays"])
def test_parquet_written_twice_by_ray_with_overwrite_is_correct(parquet_lab, tmp_path, ray_running, plain):
    """The learner's cell run twice: ``mode="overwrite"`` leaves the same rows, whatever plain form the images take.

    JPEG bytes are encoded by a helper of the learner's own, not the lesson's ``png_bytes``.
    """

    def to_jpeg_bytes(batch):  # defined here: Ray ships it by value, the tests are no package
        import io

        def jpeg(image):
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG")
            return buffer.getvalue()

        batch["image"] = np.array([jpeg(image) for image in batch["image"]], dtype=object)
        return batch

    def to_pixel_arrays(batch):
        batch["image"] = np.stack([np.asarray(image) for image in batch["image"]])
        return batch

    convert = {"jpeg-bytes": to_jpeg_bytes, "pixel-arrays": to_pixel_arrays}[plain]
    folder = str(tmp_path / "out")
    for _ in range(2):
        pil_images_dataset(ray_running).map_batches(convert).write_parquet(folder, mode="overwrite")
    outcome = parquet_lab.evaluate(parquet_path=folder)
    assert status(outcome) == CORRECT, outcome.message


def test_parquet_partitioned_folder_is_correct(parquet_lab, tmp_path):
    """``write_parquet(..., partition_cols=[...])`` writes sub-folders; a Parquet reader puts the rows together."""
    table = pa.table(
        {
            "prompt": PROMPTS,
            "image": [encoded(tiny_image(i)) for i in range(len(PROMPTS))],
            "part": [i % 3 for i in range(len(PROMPTS))],
        }
    )
    pq.write_to_dataset(table, str(tmp_path / "out"), partition_cols=["part"])
    outcome = parquet_lab.evaluate(parquet_path=str(tmp_path / "out"))
    assert status(outcome) == CORRECT, outcome.message


def test_parquet_raw_pixel_bytes_are_incorrect(parquet_lab, tmp_path):
    """``np.asarray(image).tobytes()``: bytes, but no image format a reader could decode."""
    images = [np.asarray(tiny_image(i)).tobytes() for i in range(len(PROMPTS))]
    outcome = parquet_lab.evaluate(parquet_path=write_parquet(tmp_path / "out", {"prompt": PROMPTS, "image": images}))
    assert status(outcome) == INCORRECT and "does not decode as an image" in outcome.message


def test_parquet_first_write_not_overwritten_by_a_different_one_is_incorrect(parquet_lab, tmp_path):
    """A first try wrote text in `image`; the second (right) write appended beside it instead of replacing it."""
    folder = tmp_path / "out"
    write_parquet(folder, {"prompt": PROMPTS, "image": [f"image {i}" for i in range(len(PROMPTS))]}, prefix="first")
    png_answer(folder)
    outcome = parquet_lab.evaluate(parquet_path=str(folder))
    assert status(outcome) == INCORRECT
    assert "cannot be read as one table" in outcome.message and "mix the files of different writes" in outcome.message


def test_parquet_ragged_nested_pixels_are_incorrect_not_a_check_error(parquet_lab, tmp_path):
    values = pa.array([[[1, 2], [3]]] * len(PROMPTS), type=pa.list_(pa.list_(pa.uint8())))
    outcome = parquet_lab.evaluate(parquet_path=write_parquet(tmp_path / "out", {"prompt": PROMPTS, "image": values}))
    assert status(outcome) == INCORRECT and "uneven lengths" in outcome.message


def test_parquet_written_to_an_object_store_is_told_where_the_check_reads(parquet_lab):
    outcome = parquet_lab.evaluate(parquet_path="s3://workshop-bucket/outputs/ada/03_parquet")
    assert status(outcome) == INCORRECT
    assert "is on an object store, and this check reads a folder of this machine's file system" in outcome.message


# --------------------------------------------------------------------------- 03_parquet: files of an earlier run


def written_at(folder, seconds_before_this_process_started: float) -> None:
    """Date every file under ``folder`` back, as if an earlier run (a kernel before this one) wrote it."""
    when = psutil.Process().create_time() - seconds_before_this_process_started
    for file in Path(folder).rglob("*"):
        os.utime(file, (when, when))


def test_parquet_files_all_written_before_this_kernel_started_are_incorrect(parquet_lab, tmp_path):
    folder = png_answer(tmp_path / "out")
    written_at(folder, 3600)  # the solution notebook, run an hour before this kernel
    outcome = parquet_lab.evaluate(parquet_path=folder)
    assert status(outcome) == INCORRECT
    assert f"the 2 .parquet files in {folder} were written at" in outcome.message
    assert "by an earlier run: this kernel started at" in outcome.message
    assert "Run the cell that writes the answer, then check again." in outcome.message


def test_parquet_single_file_written_before_this_kernel_started_is_incorrect(parquet_lab, tmp_path):
    write_parquet(tmp_path / "out", {"prompt": PROMPTS, "image": [encoded(tiny_image(0))] * len(PROMPTS)}, files=1)
    (single,) = (tmp_path / "out").glob("*.parquet")
    written_at(tmp_path / "out", 3600)
    outcome = parquet_lab.evaluate(parquet_path=str(single))
    assert status(outcome) == INCORRECT and f"{single} was written at" in outcome.message


def test_the_kernels_start_is_the_one_read_at_import_so_a_clock_stepped_later_changes_nothing(
        parquet_lab, tmp_path, monkeypatch):
    """A laptop's VM steps its clock forward after a sleep, and psutil's start time moves with it (here a
    stand-in for psutil's reading, two hours later): files written before the sleep are still this kernel's."""
    folder = png_answer(tmp_path / "out")
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: time.time() + 7200)
    assert status(parquet_lab.evaluate(parquet_path=folder)) == CORRECT


def test_parquet_files_a_little_older_than_the_kernel_are_fine_for_storage_clocks_differ(parquet_lab, tmp_path):
    folder = png_answer(tmp_path / "out")
    written_at(folder, 30)
    assert status(parquet_lab.evaluate(parquet_path=folder)) == CORRECT


# --------------------------------------------------------------------------- 03_parquet: a folder of its own


@pytest.fixture
def ada_storage(tmp_path, monkeypatch):
    """A storage root whose learner ``ada`` wrote the lab's answer where the notebook says, among other lessons'."""
    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path))
    monkeypatch.setenv("WORKSHOP_USER", "ada")
    png_answer(tmp_path / "outputs" / "ada" / "03_parquet")
    return tmp_path


@pytest.mark.parametrize(
    ("where", "words"),
    [
        (("outputs", "ada"), "is your whole outputs folder"),
        ((), "is the workshop's storage root"),
    ],
    ids=["the learner's outputs", "the storage root"],
)
def test_parquet_a_folder_holding_all_the_learners_outputs_is_incorrect(parquet_lab, ada_storage, where, words):
    assert status(parquet_lab.evaluate(parquet_path=str(ada_storage / "outputs" / "ada" / "03_parquet"))) == CORRECT
    outcome = parquet_lab.evaluate(parquet_path=str(ada_storage.joinpath(*where)))
    assert status(outcome) == INCORRECT
    assert words in outcome.message
    assert 'write to a folder of its own, such as session.settings.output_path("03_parquet")' in outcome.message
