"""The one writer of the pipeline and the benchmark (:mod:`helpers.pipeline.writer`), on batches made here."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers.pipeline.writer import OUTPUT_SCHEMA, PARQUET_FILE, write_output


def batch(ids: list[int], images: bool = True, **columns) -> pa.Table:
    """A batch as Ray Data hands it over: the output columns in another order, plus one the file does not keep."""
    n = len(ids)
    data = {
        "enhanced": [i % 2 == 0 for i in ids], "prompt": [f"p{i}" for i in ids], "id": ids,
        "animal": ["fox"] * n, "outfit": ["hat"] * n, "original_prompt": [f"o{i}" for i in ids], "extra": [1] * n,
    }  # fmt: skip
    if images:
        data["image"] = [f"png {i}".encode() for i in ids]
    data.update(columns)
    return pa.table(data)


def test_rows_and_images_are_written_with_the_output_schema_and_counted(tmp_path):
    counts = write_output([batch([1, 2]), batch([3])], tmp_path)
    assert counts == {"rows": 3, "enhanced": 1, "images": 3, "duplicate_ids": 0}
    table = pq.read_table(tmp_path / "parquet" / PARQUET_FILE)
    assert table.schema.equals(OUTPUT_SCHEMA)
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["1.png", "2.png", "3.png"]
    assert (tmp_path / "images" / "3.png").read_bytes() == b"png 3"


def test_a_batch_delivered_twice_is_counted(tmp_path):
    assert write_output([batch([1, 2]), batch([2])], tmp_path)["duplicate_ids"] == 1


def test_without_images_the_file_has_no_image_column(tmp_path):
    counts = write_output([batch([1, 2], images=False)], tmp_path, images=False)
    assert counts["images"] == 0 and counts["rows"] == 2
    assert "image" not in pq.read_table(tmp_path / "parquet" / PARQUET_FILE).column_names
    assert list((tmp_path / "images").iterdir()) == []


def test_a_column_of_the_wrong_type_fails_instead_of_landing_in_the_file(tmp_path):
    with pytest.raises(pa.ArrowInvalid):
        write_output([batch([1, 2], id=["one", "two"])], tmp_path)
