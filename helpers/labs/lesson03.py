"""Lab of lesson 03 (image generation): write every prompt and its image to Parquet.

The folder is a declared :class:`~helpers.labs.shapes.WrittenFiles`; the code
reads it back the way any Parquet reader would, with pyarrow alone, and says
what the ``image`` column holds: encoded image bytes or pixel arrays are
plain data, Ray's pickled PIL images are not.
"""

from __future__ import annotations

import io
import json
from collections import Counter

import numpy as np

from helpers.errors import first_line
from helpers.labs.data import animal_prompts
from helpers.labs.framework import Incorrect, Lab, quote, register
from helpers.labs.shapes import Written, WrittenFiles

PICKLED_OBJECT = "ray.data.arrow_pickled_object"
FIXED_TENSORS = ("ray.data.arrow_tensor", "ray.data.arrow_tensor_v2", "arrow.fixed_shape_tensor")
VARIABLE_TENSOR = "ray.data.arrow_variable_shaped_tensor"
ENCODED_IMAGES = "encoded image bytes"
_PICKLED_MESSAGE = (
    "the `image` column holds pickled Python objects (Ray's fallback for the PIL images), which only Python "
    "with the same libraries can read back. Store plain data: encoded image bytes or pixel arrays."
)


def _extension(field, column):
    """(extension name, shape, storage) of a column, whether or not Ray registered its types here.

    Without ``import ray`` pyarrow reads Ray's columns as their storage type
    and keeps the extension name in the field metadata; with it, as
    extension types. Only the storage is ever inspected: pickles stay unread.
    """
    import pyarrow as pa

    kind = field.type
    if isinstance(kind, pa.BaseExtensionType):
        storage = pa.chunked_array([chunk.storage for chunk in column.chunks], type=kind.storage_type)
        shape = getattr(kind, "shape", None)
        return kind.extension_name, list(shape) if shape is not None else None, storage
    metadata = field.metadata or {}
    name = metadata.get(b"ARROW:extension:name")
    if name is None:
        return None, None, column
    shape = None
    try:
        parsed = json.loads(metadata.get(b"ARROW:extension:metadata", b"") or b"null")
        shape = parsed.get("shape") if isinstance(parsed, dict) else parsed if isinstance(parsed, list) else None
    except ValueError:
        pass
    return name.decode(), shape, column


def _check_pixels(shape, values, where: str) -> str:
    """Incorrect unless ``values`` are 0-255 integers shaped like an image; returns a description."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_integer(values.type):
        raise Incorrect(f"{where} holds {values.type} values; image pixels are uint8 (0-255).")
    if len(values):
        extremes = pc.min_max(values)
        low, high = extremes["min"].as_py(), extremes["max"].as_py()
        if low is not None and (low < 0 or high > 255):
            raise Incorrect(f"{where} holds values from {low} to {high}; image pixels are 0-255.")
    if shape is not None:
        shape = list(shape)
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[-1] not in (1, 3, 4)):
            raise Incorrect(f"{where} holds arrays of shape {tuple(shape)}; an image is (height, width, channels).")
    return "pixel arrays"


def _flatten(storage):
    """All leaf values of a (nested) list column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = storage.combine_chunks() if isinstance(storage, pa.ChunkedArray) else storage
    while (
        pa.types.is_list(values.type) or pa.types.is_large_list(values.type) or pa.types.is_fixed_size_list(values.type)
    ):
        values = pc.list_flatten(values)
    return values


def describe_image_column(field, column) -> str:
    """What the ``image`` column holds when it holds images; ``Incorrect`` otherwise."""
    import pyarrow as pa

    name, shape, storage = _extension(field, column)
    where = "the `image` column"
    if name == PICKLED_OBJECT:
        raise Incorrect(_PICKLED_MESSAGE)
    if name in FIXED_TENSORS:
        return _check_pixels(shape, _flatten(storage), where)
    if name == VARIABLE_TENSOR:
        data = storage.combine_chunks()
        first = next((s for s in data.field("shape").to_pylist() if s), None)
        return _check_pixels(first, _flatten(data.field("data")), where)
    if name is not None:
        raise Incorrect(f"{where} has the type {name!r}; store encoded image bytes or uint8 pixel arrays.")
    kind = storage.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return ENCODED_IMAGES
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        raise Incorrect(f"{where} holds text; store the images themselves: encoded bytes or pixel arrays.")
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        first = next((storage[row].as_py() for row in range(len(storage)) if storage[row].is_valid), None)
        try:
            image_shape = np.asarray(first).shape if first is not None else None
        except ValueError:  # NumPy refuses ragged nesting
            raise Incorrect(f"{where} holds nested lists of uneven lengths; an image is (height, width, channels).")
        return _check_pixels(image_shape, _flatten(storage), where)
    raise Incorrect(f"{where} holds {kind} values; store encoded image bytes or uint8 pixel arrays.")


def undecodable_row(values) -> tuple[int, str] | None:
    """(row, problem) of the first value that is not PNG/JPEG/... bytes, else None."""
    from PIL import Image

    for row, value in enumerate(values):
        try:
            with Image.open(io.BytesIO(value)) as image:
                image.verify()
        except Exception:  # noqa: BLE001 - the learner's bytes: whatever PIL raises, they do not decode
            if value[:1] == b"\x80":
                return row, _PICKLED_MESSAGE
            return row, f"row {row} of the `image` column does not decode as an image (PNG, JPEG, ...)."
    return None


@register
class ParquetLab(Lab):
    name = "03_parquet"
    title = "Write every prompt and its image to Parquet"
    hints = (
        (
            "Ray Data has a `write_*` method for each format it reads. Writers store plain columns "
            "(numbers, text, bytes, arrays), so turn each PIL image into something plain before writing."
        ),
        (
            "A small `map_batches` function can replace the `image` column with PNG bytes "
            "(`from helpers.models import png_bytes`; `png_bytes(image)` encodes one image), "
            "then `write_parquet(parquet_path)` writes the result. Ray's writers add files to the folder "
            "on every run unless you ask them to replace it."
        ),
        (
            '`write_parquet(parquet_path, mode="overwrite")` replaces what an earlier run wrote; '
            "see `lab.solution()` for the whole cell."
        ),
    )
    correct_message = "Every prompt and its image are on shared storage, readable by any Parquet reader."
    parquet_path = WrittenFiles(
        suffix=".parquet",
        files=".parquet files",
        folder_name="03_parquet",
        writer="`write_parquet`",
        if_none="write the dataset with `write_parquet`",
        nested=True,
        a_file_will_do=True,
    )

    def check_answer(self, parquet_path: Written):
        import pyarrow.dataset as pads

        path, files = parquet_path.path, parquet_path.files
        try:
            base = path if path.is_dir() else path.parent
            table = pads.dataset(
                [str(f) for f in files], format="parquet", partitioning="hive", partition_base_dir=str(base)
            ).to_table()
        except Exception as exc:  # noqa: BLE001 - a mixed or broken folder; say so in one line
            self.incorrect(
                f"the {len(files)} files in {path} cannot be read as one table ({first_line(exc)}): "
                "the folder may mix the files of different writes."
            )
        missing = [column for column in ("prompt", "image") if column not in table.column_names]
        if missing:
            self.incorrect(f"the files have no {quote(missing)} column; they have {quote(table.column_names)}.")

        image = table.column("image")
        kind = describe_image_column(table.schema.field("image"), image)
        self._check_rows([str(p) for p in table.column("prompt").to_pylist()])
        if image.null_count:
            self.incorrect(f"{image.null_count} of the rows have no image.")
        if kind == ENCODED_IMAGES:
            bad = undecodable_row(image.to_pylist())
            if bad is not None:
                self.incorrect(bad[1])
        self.correct(
            f"{table.num_rows} prompts and their images ({kind}) in {len(files)} file(s) of {path}. "
            + self.correct_message
        )

    def _check_rows(self, prompts: list[str]) -> None:
        expected = Counter(animal_prompts())
        total = sum(expected.values())
        found = Counter(prompts)
        if found == expected:
            return
        copies = len(prompts) // total
        if len(prompts) % total == 0 and copies > 1 and found == Counter({p: n * copies for p, n in expected.items()}):
            self.incorrect(
                f"the folder holds {len(prompts)} rows, every prompt {copies} times: the files of an earlier write "
                "are still there. Ray's writers add files by default; make the write replace them."
            )
        if len(prompts) < total:
            self.incorrect(
                f"the folder holds {len(prompts)} rows but animals.csv has {total} animals: write the whole dataset, "
                "not a sample of it."
            )
        if len(prompts) > total:
            self.incorrect(
                f"the folder holds {len(prompts)} rows but animals.csv has {total} animals: files of an earlier "
                "write (a trial run) may still be there. Ray's writers add files by default; make the write "
                "replace them."
            )
        stranger = next(p for p in found if p not in expected or found[p] != expected[p])
        self.incorrect(f"the prompts do not match animals.csv (for example {stranger!r}); write the lesson's dataset.")
