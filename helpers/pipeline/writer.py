"""The pipeline's files: every row in one Parquet file, every image as ``images/<id>.png``.

The pipeline command and the benchmark (:mod:`helpers.commands.bench`) both
write through :func:`write_output`, batch by batch as the batches come out of
Ray (or out of the benchmark's plain loop), so the benchmark times the same
writes as a run. Where the folder comes from and how it replaces an earlier
output is :mod:`helpers.pipeline.output`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from helpers.pipeline.output import IMAGES_DIR, PARQUET_DIR

#: Columns of the Parquet output, in this order and with these plain Arrow types.
OUTPUT_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("animal", pa.string()),
        ("outfit", pa.string()),
        ("prompt", pa.string()),
        ("original_prompt", pa.string()),
        ("enhanced", pa.bool_()),
        ("image", pa.binary()),
    ]
)
PARQUET_FILE = "part-00000.parquet"


def write_output(batches: Iterable[pa.Table], folder: Path, images: bool = True) -> dict:
    """Write ``batches`` to ``folder/parquet/`` and their images to ``folder/images/``; return the counts.

    Batches are cast to :data:`OUTPUT_SCHEMA`, so a column of the wrong type
    (say, pickled images) fails here instead of landing in the file.
    ``images=False`` is for batches without the ``image`` column (the
    benchmark's LLM-only run). The counts are ``rows``, ``enhanced``,
    ``images`` and ``duplicate_ids`` (a batch delivered twice after a retry).
    """
    schema = OUTPUT_SCHEMA if images else OUTPUT_SCHEMA.remove(OUTPUT_SCHEMA.get_field_index("image"))
    (folder / PARQUET_DIR).mkdir(parents=True, exist_ok=True)
    (folder / IMAGES_DIR).mkdir(exist_ok=True)
    counts = {"rows": 0, "enhanced": 0, "images": 0, "duplicate_ids": 0}
    seen: set[int] = set()
    with pq.ParquetWriter(folder / PARQUET_DIR / PARQUET_FILE, schema) as writer:
        for batch in batches:
            table = batch.select(schema.names).cast(schema)
            writer.write_table(table)
            ids = table.column("id").to_pylist()
            for row_id in ids:
                counts["duplicate_ids"] += row_id in seen
                seen.add(row_id)
            if images:
                for row_id, image in zip(ids, table.column("image").to_pylist()):
                    if image:
                        (folder / IMAGES_DIR / f"{row_id}.png").write_bytes(image)
                        counts["images"] += 1
            counts["rows"] += table.num_rows
            counts["enhanced"] += sum(table.column("enhanced").to_pylist())
    return counts
