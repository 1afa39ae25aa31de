"""What the workshop writes is plain data: other tools read it with no Ray and no workshop code.

Two real outputs are produced once per module, on the suite's Ray session:

* the pipeline command's folder (``python -m helpers.pipeline --limit 6 --no-enhance``,
  joining this session's Ray instead of starting its own);
* the Parquet folder written by lesson 03's lab: the solution notebook's own lab
  cell, executed on six rows of the lesson's ImageGen output.

Each folder is then read by a separate ``python -I`` process, from a folder
outside the clone, that imports only pandas, pyarrow, DuckDB and Pillow. It
proves it never imported Ray or ``helpers`` and reports what it read as JSON.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys

import nbformat
import pytest

from helpers.runtime.settings import REPO_ROOT
from tests.test_pipeline_cli import DATA, ONE_IMAGE_ACTOR, needs_models, repo_data, run_cli, summary_of

ROWS = 6

#: Run with ``python -I``: no clone on sys.path, no PYTHON* variables. Only the ecosystem.
READER = r"""
import glob, io, json, os, sys

import duckdb
import pandas
import pyarrow.parquet as pq
from PIL import Image

folder, png_folder = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(os.path.join(folder, "**", "*.parquet"), recursive=True))
frame = pandas.read_parquet(folder)
table = pq.read_table(folder)
con = duckdb.connect()
duck_rows, duck_png = con.execute(
    "SELECT count(*), count_if(starts_with(hex(image), '89504E47')) FROM read_parquet(?)",
    [os.path.join(folder, "*.parquet")],
).fetchone()
decoded = []
for value in frame["image"]:
    with Image.open(io.BytesIO(value)) as image:
        image.load()
        decoded.append([image.format, image.size[0], image.size[1], image.mode])
png_files = {}
if png_folder != "-":
    for name in sorted(os.listdir(png_folder)):
        with Image.open(os.path.join(png_folder, name)) as image:
            image.load()
        with open(os.path.join(png_folder, name), "rb") as handle:
            png_files[name] = handle.read()
by_id = {}
if "id" in frame.columns and png_files:
    by_id = {str(i): png_files.get(f"{i}.png") == image for i, image in zip(frame["id"], frame["image"])}
print(json.dumps({
    "files": len(files),
    "pandas_rows": len(frame),
    "pandas_columns": list(frame.columns),
    "pandas_image_type": type(frame["image"].iloc[0]).__name__,
    "arrow_schema": {f.name: str(f.type) for f in table.schema},
    "arrow_metadata": sorted(k.decode() for k in (table.schema.metadata or {})),
    "duckdb_rows": duck_rows,
    "duckdb_png_rows": duck_png,
    "decoded": decoded,
    "png_names": sorted(png_files),
    "png_file_matches_row": by_id,
    "prompts": [str(p) for p in frame["prompt"]],
    "imported_ray": any(m == "ray" or m.startswith("ray.") for m in sys.modules),
    "imported_helpers": any(m == "helpers" or m.startswith("helpers.") for m in sys.modules),
}))
"""


def read_without_ray(parquet_folder, png_folder, cwd) -> dict:
    """What a plain Python process, with no Ray and no workshop code, reads from the folders."""
    proc = subprocess.run(
        [sys.executable, "-I", "-c", READER, str(parquet_folder), str(png_folder or "-")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert proc.returncode == 0, f"a plain reader failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def lab_cell_source(notebook: str, lab_name: str) -> str:
    """The code cell of a solution notebook that answers ``lab_name``'s lab (the one before its check)."""
    cells = nbformat.read(REPO_ROOT / "solutions" / notebook, as_version=4).cells
    code = [cell.source for cell in cells if cell.cell_type == "code"]
    for before, cell in itertools.pairwise(code):
        if f'get_lab("{lab_name}")' in cell:
            assert "# BEGIN SOLUTION" in before, f"the cell before {lab_name}'s check is not its answer"
            return before
    raise AssertionError(f"{notebook} has no get_lab({lab_name!r}) cell")


@pytest.fixture(scope="module")
def pipeline_folder(session, tmp_path_factory):
    output = tmp_path_factory.mktemp("ecosystem") / "pipeline"
    proc = run_cli(*repo_data(output, "--limit", ROWS, "--no-enhance"), ray_address=session.address, **ONE_IMAGE_ACTOR)
    summary = summary_of(proc)
    assert summary["parquet_rows"] == summary["png_files"] == ROWS
    return output


@pytest.fixture(scope="module")
def lab03_folder(session, tmp_path_factory) -> str:
    """Lesson 03's lab answer, run as the solution notebook runs it, writing under a temporary storage root."""
    import ray

    import helpers

    storage = tmp_path_factory.mktemp("lab03_storage")
    lesson = dataclasses.replace(session, settings=dataclasses.replace(session.settings, storage=storage))
    animal_images = (
        ray.data.read_csv(str(DATA / "animals.csv"))
        .limit(ROWS)
        .repartition(2)
        .rename_columns({"animal": "prompt"})
        .map_batches(
            helpers.ImageGen,
            batch_size=session.image.batch_size,
            num_gpus=session.image.num_gpus,
            compute=ray.data.ActorPoolStrategy(size=1),
        )
        .materialize()
    )
    import numpy as np

    # What the lesson's cells above the answer define: its first cell imports numpy as np.
    namespace = {"session": lesson, "animal_images": animal_images, "np": np}
    answer = compile(lab_cell_source("03_image_generation.ipynb", "03_parquet"), "lesson 03 lab", "exec")
    exec(answer, namespace)  # noqa: S102 - the committed solution notebook's own cell
    parquet_path = namespace["parquet_path"]
    assert parquet_path.startswith(str(storage)), parquet_path
    return parquet_path


def assert_plain_png_parquet(read: dict, rows: int):
    assert read["imported_ray"] is False and read["imported_helpers"] is False
    assert read["files"] >= 1
    assert read["pandas_rows"] == read["duckdb_rows"] == rows
    assert read["duckdb_png_rows"] == rows, "DuckDB sees PNG bytes in every row's image"
    assert read["pandas_image_type"] == "bytes"
    assert read["arrow_schema"]["image"] in ("binary", "large_binary")
    assert not any("ray" in key.lower() for key in read["arrow_metadata"]), read["arrow_metadata"]
    assert [entry[0] for entry in read["decoded"]] == ["PNG"] * rows
    assert all(width > 0 and height > 0 for _, width, height, _ in read["decoded"])


@pytest.mark.slow
@needs_models
def test_pipeline_output_is_read_by_pandas_pyarrow_duckdb_and_pillow(pipeline_folder, tmp_path):
    read = read_without_ray(pipeline_folder / "parquet", pipeline_folder / "images", cwd=tmp_path)
    assert_plain_png_parquet(read, ROWS)
    assert read["arrow_schema"]["id"].startswith("int")
    assert sorted(read["pandas_columns"]) == sorted(
        ["id", "animal", "outfit", "prompt", "original_prompt", "enhanced", "image"]
    )


@pytest.mark.slow
@needs_models
def test_pipeline_png_files_are_named_by_id_and_equal_the_parquet_images(pipeline_folder, tmp_path):
    read = read_without_ray(pipeline_folder / "parquet", pipeline_folder / "images", cwd=tmp_path)
    assert read["png_names"] == sorted(f"{i}.png" for i in range(1, ROWS + 1))
    assert read["png_file_matches_row"] == {str(i): True for i in range(1, ROWS + 1)}


@pytest.mark.slow
@needs_models
def test_lesson_03_lab_parquet_is_read_by_pandas_pyarrow_duckdb_and_pillow(lab03_folder, tmp_path):
    read = read_without_ray(lab03_folder, None, cwd=tmp_path)
    assert_plain_png_parquet(read, ROWS)
    animals = (DATA / "animals.csv").read_text(encoding="utf-8").splitlines()[1 : ROWS + 1]
    assert sorted(read["prompts"]) == sorted(line.split(",", 1)[1] for line in animals)


def test_lab_cell_lookup_finds_the_answer_not_the_check():
    source = lab_cell_source("03_image_generation.ipynb", "03_parquet")
    assert "write_parquet" in source and "lab.check" not in source
