"""The pipeline's files, written where the pictures are drawn: a Parquet part per batch, a PNG per row.

Each process that draws images writes its batches itself into the run's
partial output (a folder every node sees, or an ``s3://`` upload prefix):
``parquet/part-<id>.parquet`` with the columns of :data:`OUTPUT_SCHEMA` and
``images/<id>.png`` (:func:`write_part`). The driver gets back one small row
per part (:data:`PART_SCHEMA`: its name, its counts, the node that wrote it),
so its memory does not grow with the rows or the pictures, and the pictures
do not all cross the network to one process.

Ray redoes a batch whose worker died. The redo writes a part of its own name
(a random 128-bit id per attempt), so nothing is overwritten, and the attempt
that died may have left a part whose row never reached the driver. Before a
run publishes, the driver removes the parts that no row names
(:func:`discard_unlisted_parts`) and reads the ids of the others from their
files (:func:`check_written`): every joined id once, each with its PNG.

The benchmark's plain loop (:mod:`helpers.commands.bench`) writes through
:func:`write_part` too, so it times the same writes as a run. Where the
partial output comes from and how it replaces an earlier output is
:mod:`helpers.pipeline.output`'s (a folder) and :mod:`helpers.pipeline.s3_publish`'s
(``s3://``).
"""

from __future__ import annotations

import contextlib
import re
import socket
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

from helpers.errors import OutputUnreachableError
from helpers.pipeline.output import IMAGES_DIR, PARQUET_DIR, PARTIAL_MARKER
from helpers.runtime.storage import filesystem, is_uri

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
#: What a writer sends back to the driver: one row per Parquet part it wrote.
PART_SCHEMA = pa.schema(
    [
        ("part", pa.string()),
        ("rows", pa.int64()),
        ("enhanced", pa.int64()),
        ("images", pa.int64()),
        ("image_prompts_cut", pa.int64()),
        ("node_id", pa.string()),
        ("host", pa.string()),
    ]
)
_PNG_NAME = re.compile(r"(-?\d+)\.png")


def _filesystem(folder: Path | str) -> tuple[fs.FileSystem, str]:
    """(pyarrow file system, path in it) of a local folder or an ``s3://`` prefix."""
    if is_uri(folder):
        return filesystem(folder)
    return fs.LocalFileSystem(), str(folder)


def _this_process() -> tuple[str, str]:
    """(Ray node id, host name) of this process; the node id is empty outside Ray."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return node, socket.gethostname()


def _is_marked(target_fs: fs.FileSystem, base: str) -> bool:
    return target_fs.get_file_info(f"{base}/{PARTIAL_MARKER}").type == fs.FileType.File


def check_reachable(folder: Path | str) -> None:
    """Fail in one line unless this process sees the partial output that the driver made.

    Called where the images are drawn, before the model loads: a folder that
    only the driver's machine has, or a bucket this node may not read, is
    then one line naming the node, not a worker's traceback after a minute.
    """
    target_fs, base = _filesystem(folder)
    try:
        reason = None if _is_marked(target_fs, base) else "it is not there"
    except OSError as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    if reason is None:
        return
    node, host = _this_process()
    raise OutputUnreachableError(
        f"the process drawing images on {host} (node {node[:6] or 'outside Ray'}) cannot reach the run's partial "
        f"output {folder} ({reason}); every node that draws images writes its files there itself, so give --output "
        "on storage that every node mounts, or an s3:// prefix that every node may write with its own access "
        "(an instance role, or AWS variables set where ray start ran: the driver's credentials are not sent)"
    )


def _as_table(batch, schema: pa.Schema) -> pa.Table:
    """A batch (a dict of arrays, as Ray Data passes it, or an Arrow table) as ``schema``'s columns and types."""
    if isinstance(batch, pa.Table):
        return batch.select(schema.names).cast(schema)
    return pa.table({name: pa.array(list(batch[name])) for name in schema.names}).cast(schema)


def _write(target_fs: fs.FileSystem, path: str, data: bytes) -> None:
    with target_fs.open_output_stream(path) as stream:
        stream.write(data)


def write_file(folder: Path | str, name: str, data: bytes) -> None:
    """Write one more file into a partial output, a folder or an ``s3://`` prefix (the run's ``summary.json``)."""
    target_fs, base = _filesystem(folder)
    _write(target_fs, f"{base}/{name}", data)


def _take_back(target_fs: fs.FileSystem, base: str, paths: list[str], whole: bool) -> None:
    """Delete ``paths`` that a batch wrote after its run stopped (``whole``: the upload prefix too).

    On an object store, pyarrow leaves an empty ``folder/`` object where it
    deletes a folder's last file; the driver is removing the whole upload
    anyway, so there the writer removes it too, with those empty objects.
    """
    for path in paths:
        with contextlib.suppress(OSError):
            target_fs.delete_file(path)
    if whole:
        with contextlib.suppress(OSError):
            target_fs.delete_dir(base)


def write_part(batch, folder: Path | str, images: bool = True, image_prompts_cut: int = 0) -> pa.Table:
    """Write ``batch`` as a new Parquet part of ``folder``, its images as PNG files; return its :data:`PART_SCHEMA` row.

    The batch is cast to :data:`OUTPUT_SCHEMA`, so a column of the wrong type
    (say, pickled images) fails here instead of landing in the file.
    ``images=False`` is for batches without the ``image`` column (the
    benchmark's LLM-only run). ``image_prompts_cut`` is passed on to the row:
    the image stage's count of prompts its model read only in part. The PNG files are written before the part, so
    a part in the folder means its pictures are there too. If the partial
    output's marker is gone afterwards, the run stopped meanwhile and is
    removing the folder: the files just written are taken back, so that a
    stopped run leaves nothing behind, and the batch fails.
    """
    schema = OUTPUT_SCHEMA if images else OUTPUT_SCHEMA.remove(OUTPUT_SCHEMA.get_field_index("image"))
    table = _as_table(batch, schema)
    if table.num_rows == 0:
        return PART_SCHEMA.empty_table()
    target_fs, base = _filesystem(folder)
    name = f"part-{uuid.uuid4().hex}.parquet"
    written = []
    if images:
        for row_id, image in zip(table.column("id").to_pylist(), table.column("image").to_pylist()):
            if image:
                written.append(f"{base}/{IMAGES_DIR}/{row_id}.png")
                _write(target_fs, written[-1], image)
    written.append(f"{base}/{PARQUET_DIR}/{name}")
    pq.write_table(table, written[-1], filesystem=target_fs)
    if not _is_marked(target_fs, base):
        _take_back(target_fs, base, written, whole=is_uri(folder))
        raise OutputUnreachableError(f"the run stopped while this batch was written; {folder} is being removed")
    node, host = _this_process()
    return pa.table(
        {"part": [name], "rows": [table.num_rows], "enhanced": [sum(table.column("enhanced").to_pylist())],
         "images": [len(written) - 1], "image_prompts_cut": [image_prompts_cut], "node_id": [node],
         "host": [host]},
        schema=PART_SCHEMA,
    )


def collect_parts(batches: Iterable[pa.Table]) -> pa.Table:
    """The writers' rows (:data:`PART_SCHEMA`) in one small table, from ``ds.iter_batches(batch_format="pyarrow")``."""
    tables = [batch.cast(PART_SCHEMA) for batch in batches]
    return pa.concat_tables(tables) if tables else PART_SCHEMA.empty_table()


def part_counts(parts: pa.Table) -> dict:
    """What the writers' rows say, summed, and ``written_on`` (rows per Ray node id)."""
    written_on: dict[str, int] = {}
    for node, rows in zip(parts.column("node_id").to_pylist(), parts.column("rows").to_pylist()):
        written_on[node] = written_on.get(node, 0) + rows
    totals = {key: sum(parts.column(key).to_pylist()) for key in ("rows", "enhanced", "images", "image_prompts_cut")}
    return {**totals, "written_on": written_on}


def _files(target_fs: fs.FileSystem, folder: str, suffix: str) -> list[str]:
    """Paths of the files directly in ``folder`` whose names end with ``suffix``, sorted."""
    infos = target_fs.get_file_info(fs.FileSelector(folder, allow_not_found=True))
    return sorted(info.path for info in infos if info.type == fs.FileType.File and info.base_name.endswith(suffix))


def discard_unlisted_parts(folder: Path | str, parts: Iterable[str]) -> int:
    """Delete the Parquet parts of ``folder`` that are not in ``parts`` (the writers' rows); return how many.

    Such a part was written by an attempt whose worker died before its row
    reached the driver; Ray redid the batch, and the redo's part holds the same ids.
    """
    target_fs, base = _filesystem(folder)
    listed = set(parts)
    unlisted = [path for path in _files(target_fs, f"{base}/{PARQUET_DIR}", ".parquet")
                if path.rsplit("/", 1)[-1] not in listed]
    for path in unlisted:
        target_fs.delete_file(path)
    return len(unlisted)


def _parts(target_fs: fs.FileSystem, folder: str) -> Iterator[pq.ParquetFile]:
    """The Parquet files of ``folder``, opened: their footers are read, their columns only when asked for."""
    for path in _files(target_fs, folder, ".parquet"):
        with target_fs.open_input_file(path) as handle:
            yield pq.ParquetFile(handle)


def parquet_rows(folder: Path | str) -> int:
    """Rows in the Parquet files of ``folder``, from their footers: no image is read back."""
    target_fs, base = _filesystem(folder)
    return sum(part.metadata.num_rows for part in _parts(target_fs, base))


@dataclass(frozen=True)
class Written:
    """What the files of a partial output hold, and what is wrong with them (empty when every id is there once)."""

    parquet_rows: int
    png_files: int
    duplicate_ids: int
    problems: tuple[str, ...]


def check_written(folder: Path | str, joined_ids: np.ndarray) -> Written:
    """Read the ids of ``folder``'s Parquet parts and the names of its PNG files, and compare them with the join.

    Rows are counted from the footers; duplicates, joined ids without a row,
    rows of ids the join does not have and PNG files that are not one per
    row are each a problem, said in words.
    """
    target_fs, base = _filesystem(folder)
    rows, id_columns = 0, [np.empty(0, dtype=np.int64)]
    for part in _parts(target_fs, f"{base}/{PARQUET_DIR}"):
        rows += part.metadata.num_rows
        id_columns.append(part.read(columns=["id"]).column("id").to_numpy())  # the images stay where they are
    ids = np.concatenate(id_columns)
    unique = np.unique(ids)
    png_names = [path.rsplit("/", 1)[-1] for path in _files(target_fs, f"{base}/{IMAGES_DIR}", "")]
    png_ids = np.array([int(m.group(1)) for m in map(_PNG_NAME.fullmatch, png_names) if m], dtype=np.int64)
    joined = np.unique(np.asarray(joined_ids, dtype=np.int64))
    wrong = {
        "joined ids without a row": np.setdiff1d(joined, unique),
        "rows of ids the join does not have": np.setdiff1d(unique, joined),
        "PNG files without their row, or rows without their PNG file": np.setxor1d(png_ids, unique),
    }
    problems = [f"{found.size} {what} (e.g. id {found[0]})" for what, found in wrong.items() if found.size]
    odd_names = len(png_names) - png_ids.size
    if odd_names:
        problems.append(f"{odd_names} files in {IMAGES_DIR}/ not named <id>.png")
    return Written(rows, len(png_names), int(ids.size - unique.size), tuple(problems))
