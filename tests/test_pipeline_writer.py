"""The one writer of the pipeline and the benchmark (:mod:`helpers.pipeline.writer`), on batches made here.

The image actors call :func:`write_part` on their batches; here it is called
directly, on local folders prepared as the command prepares them
(:func:`helpers.pipeline.output.mark_partial`), with no Ray.
"""

from __future__ import annotations

import socket

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers.errors import OutputUnreachableError
from helpers.pipeline.output import PARTIAL_MARKER, discard_partial, foreign_entries, mark_partial
from helpers.pipeline.writer import (
    OUTPUT_SCHEMA,
    PART_SCHEMA,
    check_reachable,
    check_written,
    discard_unlisted_parts,
    part_counts,
    write_part,
)


def batch(ids: list[int], images: bool = True, **columns) -> dict:
    """A batch as Ray Data hands it over: NumPy arrays, the output columns in another order, plus one not kept."""
    n = len(ids)
    data = {
        "enhanced": [i % 2 == 0 for i in ids], "prompt": [f"p{i}" for i in ids], "id": ids,
        "animal": ["fox"] * n, "outfit": ["hat"] * n, "original_prompt": [f"o{i}" for i in ids], "extra": [1] * n,
    }  # fmt: skip
    if images:
        data["image"] = [f"png {i}".encode() for i in ids]
    data.update(columns)
    return {name: np.array(values, dtype=object if name in ("image", "id") else None) for name, values in data.items()}


def files(folder) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def test_a_batch_becomes_one_part_with_the_output_schema_and_one_png_per_row(tmp_path):
    folder = mark_partial(tmp_path / "partial")
    row = write_part(batch([1, 2, 3]), folder)
    assert row.schema.equals(PART_SCHEMA) and row.num_rows == 1
    [part] = row.column("part").to_pylist()
    table = pq.read_table(folder / "parquet" / part)
    assert table.schema.equals(OUTPUT_SCHEMA)
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert sorted(p.name for p in (folder / "images").iterdir()) == ["1.png", "2.png", "3.png"]
    assert (folder / "images" / "3.png").read_bytes() == b"png 3"
    counts = part_counts(row)
    assert {k: counts[k] for k in ("rows", "enhanced", "images")} == {"rows": 3, "enhanced": 1, "images": 3}
    assert row.column("host").to_pylist() == [socket.gethostname()]
    assert PARTIAL_MARKER in files(folder)
    assert foreign_entries(files(folder) + ["summary.json"]) == [], "a later run may replace it (marker included)"


def test_a_redone_batch_writes_a_part_of_its_own_and_the_unlisted_one_is_discarded(tmp_path):
    """An attempt whose worker died left a part; the redo's row is the one that reached the driver."""
    folder = mark_partial(tmp_path / "partial")
    lost = write_part(batch([1, 2]), folder).column("part")[0].as_py()
    redo = write_part(batch([1, 2]), folder).column("part")[0].as_py()
    other = write_part(batch([3]), folder).column("part")[0].as_py()
    assert lost != redo and len(list((folder / "parquet").iterdir())) == 3, "nothing was overwritten"
    assert check_written(folder, np.array([1, 2, 3])).duplicate_ids == 2
    assert discard_unlisted_parts(folder, [redo, other]) == 1
    written = check_written(folder, np.array([1, 2, 3]))
    assert (written.parquet_rows, written.png_files, written.duplicate_ids, written.problems) == (3, 3, 0, ())


def test_the_check_names_missing_stray_and_unmatched_ids(tmp_path):
    folder = mark_partial(tmp_path / "partial")
    write_part(batch([1, 2, 9]), folder)
    (folder / "images" / "7.png").write_bytes(b"left over")
    (folder / "images" / "notes.txt").write_text("?")
    written = check_written(folder, np.array([1, 2, 3]))
    assert written.problems == (
        "1 joined ids without a row (e.g. id 3)",
        "1 rows of ids the join does not have (e.g. id 9)",
        "1 PNG files without their row, or rows without their PNG file (e.g. id 7)",
        "1 files in images/ not named <id>.png",
    )


def test_without_images_the_part_has_no_image_column(tmp_path):
    folder = mark_partial(tmp_path / "partial")
    row = write_part(batch([1, 2], images=False), folder, images=False)
    assert part_counts(row)["images"] == 0
    assert "image" not in pq.read_table(folder / "parquet" / row.column("part")[0].as_py()).column_names
    assert list((folder / "images").iterdir()) == []


def test_an_empty_batch_writes_nothing(tmp_path):
    folder = mark_partial(tmp_path / "partial")
    assert write_part(batch([]), folder).num_rows == 0
    assert files(folder) == [PARTIAL_MARKER]


def test_a_column_of_the_wrong_type_fails_before_anything_is_written(tmp_path):
    folder = mark_partial(tmp_path / "partial")
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        write_part(batch([1, 2], id=["one", "two"]), folder)
    assert files(folder) == [PARTIAL_MARKER]


def test_a_folder_this_process_does_not_see_is_one_line_with_the_fix(tmp_path):
    check_reachable(mark_partial(tmp_path / "shared"))
    with pytest.raises(OutputUnreachableError) as raised:
        check_reachable(tmp_path / "only-on-the-driver")
    message = str(raised.value)
    assert "\n" not in message and "cannot reach the run's partial output" in message
    assert "storage that every node mounts" in message and socket.gethostname() in message


def test_a_part_finished_after_the_run_stopped_is_taken_back(tmp_path):
    """The driver removed the marker (it is deleting the folder); the writer removes what it just wrote."""
    folder = mark_partial(tmp_path / "partial")
    (folder / PARTIAL_MARKER).unlink()
    with pytest.raises(OutputUnreachableError, match="the run stopped"):
        write_part(batch([1, 2]), folder)
    assert files(folder) == []


def test_a_write_after_the_partial_folder_was_discarded_fails_and_leaves_nothing(tmp_path):
    folder = mark_partial(tmp_path / "out.partial-abc")
    write_part(batch([1]), folder)
    discard_partial(folder)
    with pytest.raises(FileNotFoundError):
        write_part(batch([2]), folder)
    assert list(tmp_path.iterdir()) == [], "the writer creates no folder, and the discarded one is gone"
