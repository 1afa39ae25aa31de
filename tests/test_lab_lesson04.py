"""The lab of lesson 04 (:mod:`helpers.labs.lesson04`), tested three ways: starter, solution, wrong answers.

No Ray: the answers are folders of PNG files written with PIL in ``tmp_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from helpers.labs.data import joined_row_count
from helpers.labs.framework import CORRECT, INCORRECT, NOT_ATTEMPTED, get_lab

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


@pytest.mark.parametrize("starter", PLACEHOLDERS)
def test_png_starter_is_not_attempted(png_lab, starter):
    assert status(png_lab.evaluate(folder=starter)) == NOT_ATTEMPTED


def test_png_solution_is_correct(png_lab, rows, tmp_path):
    folder = write_pngs(tmp_path / "04_png", rows)
    outcome = png_lab.evaluate(folder=str(folder))
    assert status(outcome) == CORRECT, outcome.message
    assert f"{rows} PNG files" in outcome.message


def test_png_in_the_learners_own_output_folder_is_correct(png_lab, rows, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path))
    monkeypatch.setenv("WORKSHOP_USER", "ada")
    folder = write_pngs(tmp_path / "outputs" / "ada" / "04_png", rows)
    outcome = png_lab.evaluate(folder=str(folder))
    assert status(outcome) == CORRECT, outcome.message
    assert str(folder) in outcome.message


@pytest.mark.parametrize("where", [("grace", "04_png"), ("04_png",)], ids=["another learner's", "all learners'"])
def test_png_outside_the_learners_own_output_folder_is_incorrect(png_lab, rows, tmp_path, monkeypatch, where):
    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path))
    monkeypatch.setenv("WORKSHOP_USER", "ada")
    folder = write_pngs(tmp_path.joinpath("outputs", *where), rows)
    outcome = png_lab.evaluate(folder=str(folder))
    assert status(outcome) == INCORRECT
    assert f"outside your own output folder {tmp_path / 'outputs' / 'ada'}" in outcome.message
    assert 'session.settings.output_path("04_png")' in outcome.message


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
    assert "files of the same name replace each other" in outcome.message  # the whole dataset, under repeated names


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


# --------------------------------------------------------------------------- 04_png: other answers, written with Ray


@pytest.fixture
def pil_dataset(session, rows):
    """Stands in for ``dressed_animals``: one PIL image per joined row, as ImageGen returns them."""
    import ray

    items = [{"id": i, "image": Image.fromarray(np.full((8, 8, 3), i % 256, dtype=np.uint8))} for i in range(rows)]
    return ray.data.from_items(items, override_num_blocks=3)


def test_png_written_twice_by_ray_with_overwrite_is_correct(png_lab, pil_dataset, tmp_path):
    """The learner's cell run twice, with a conversion of its own (``np.asarray`` in a comprehension)."""

    def to_arrays(batch):  # defined here: Ray ships it by value, the tests are no package
        return {"image": np.stack([np.asarray(image) for image in batch["image"]])}

    folder = str(tmp_path / "04_png")
    for _ in range(2):
        pil_dataset.map_batches(to_arrays).write_images(folder, column="image", file_format="png", mode="overwrite")
    outcome = png_lab.evaluate(folder=folder)
    assert status(outcome) == CORRECT, outcome.message


def test_png_saved_one_by_one_with_pil_is_correct(png_lab, pil_dataset, rows, tmp_path):
    """Another way to the same files: iterate over the rows and save each image, here in grey and as `.PNG`."""
    folder = tmp_path / "04_png"
    folder.mkdir()
    for row in pil_dataset.iter_rows():
        row["image"].convert("L").save(folder / f"animal_{row['id']:03d}.PNG")
    outcome = png_lab.evaluate(folder=str(folder))
    assert status(outcome) == CORRECT, outcome.message
    assert f"{rows} PNG files" in outcome.message


def test_png_the_dataset_instead_of_its_folder_is_incorrect(png_lab, pil_dataset):
    outcome = png_lab.evaluate(folder=pil_dataset)
    assert status(outcome) == INCORRECT and "is a Dataset; pass the path of the folder" in outcome.message


def test_png_parquet_instead_of_images_is_incorrect(png_lab, pil_dataset, tmp_path):
    """``write_parquet`` of PNG bytes into the folder: the images are in there, but no PNG file is."""

    def to_png_bytes(batch):
        import io

        def png(image):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            return buffer.getvalue()

        return {"image": np.array([png(image) for image in batch["image"]], dtype=object)}

    folder = str(tmp_path / "04_png")
    pil_dataset.map_batches(to_png_bytes).write_parquet(folder)
    outcome = png_lab.evaluate(folder=folder)
    assert status(outcome) == INCORRECT and "no PNG files" in outcome.message and ".parquet" in outcome.message


def test_png_files_all_written_before_this_kernel_started_are_incorrect(png_lab, rows, tmp_path):
    folder = write_pngs(tmp_path / "04_png", rows)
    earlier = psutil.Process().create_time() - 24 * 3600  # the solution notebook, run yesterday
    for file in folder.iterdir():
        os.utime(file, (earlier, earlier))
    outcome = png_lab.evaluate(folder=str(folder))
    assert status(outcome) == INCORRECT
    assert f"the {rows} PNG files in {folder} were written at" in outcome.message
    assert "by an earlier run: this kernel started at" in outcome.message
    assert "Run the cell that writes the answer, then check again." in outcome.message


def test_png_the_learners_whole_outputs_folder_is_incorrect(png_lab, rows, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path))
    monkeypatch.setenv("WORKSHOP_USER", "ada")
    write_pngs(tmp_path / "outputs" / "ada", rows)  # written straight into the outputs folder
    outcome = png_lab.evaluate(folder=str(tmp_path / "outputs" / "ada"))
    assert status(outcome) == INCORRECT
    assert "is your whole outputs folder" in outcome.message
    assert 'write to a folder of its own, such as session.settings.output_path("04_png")' in outcome.message
