"""The workshop's labs, one class each, registered by name for ``get_lab``.

Each check inspects what the learner actually produced (files on storage, a
dataset, a class) and accepts every correct answer, not only the solution's.
Labs of lessons 01-03 live here; lessons 04-06 in :mod:`helpers.labs.lessons_late`.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np

from helpers.labs.framework import Incorrect, Lab, register
from helpers.runtime.settings import REPO_ROOT, resolve_storage

# Labs of lessons 01-03 go below.


# --------------------------------------------------------------------------- the data the labs expect


def data_file(name: str) -> Path:
    """``<storage>/data/<name>`` as lesson 01 stages it, else the clone's own copy."""
    staged = resolve_storage() / "data" / name
    return staged if staged.exists() else REPO_ROOT / "data" / name


def csv_rows(name: str) -> list[dict[str, str]]:
    """The rows of one of the workshop's CSV files, read without Ray."""
    with data_file(name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def animal_prompts() -> list[str]:
    """Every prompt of ``animals.csv``, in file order (some repeat)."""
    return [row["animal"] for row in csv_rows("animals.csv")]


def _type_name(value) -> str:
    return type(value).__name__


def _quote(values) -> str:
    return ", ".join(f"`{v}`" for v in values)


# --------------------------------------------------------------------------- lesson 01


@register
class TakeBatchLab(Lab):
    name = "01_batch"
    title = "Read outfits.csv and take a batch of 5"
    hints = (
        (
            "`outfits.csv` sits next to `animals.csv` in `session.settings.data_dir`; "
            "read it the same way you read the animals."
        ),
        (
            "`ray.data.read_csv(path)` gives a Dataset; a Dataset method gives you the first rows "
            "as one batch of columns."
        ),
        "`outfits_batch = outfits.take_batch(5)`",
    )
    solution_text = """
        outfits = ray.data.read_csv(str(session.settings.data_dir / "outfits.csv"))
        outfits_batch = outfits.take_batch(5)
    """
    correct_message = "A batch is a dict: one NumPy array per column, one entry per row."
    rows = 5

    def check_answer(self, outfits_batch):
        batch = self._as_columns(outfits_batch)
        expected = set(csv_rows("outfits.csv")[0])
        columns = set(batch)
        if columns != expected:
            hint = " That looks like the animals file." if "animal" in columns else ""
            self.incorrect(f"the batch has the columns {_quote(sorted(columns))}; outfits.csv has others.{hint}")
        lengths = {name: len(values) for name, values in batch.items()}
        if len(set(lengths.values())) != 1:
            self.incorrect(f"the columns have different lengths ({lengths}); keep the batch as Ray returns it.")
        count = next(iter(lengths.values()))
        if count != self.rows:
            self.incorrect(f"the batch holds {count} rows; ask for {self.rows}.")
        known = {row["outfit"] for row in csv_rows("outfits.csv")}
        strangers = [str(v) for v in batch["outfit"] if str(v) not in known]
        if strangers:
            self.incorrect(f"{strangers[0]!r} is not an outfit from outfits.csv; read the file itself.")

    def _as_columns(self, batch) -> dict:
        """The batch as a dict of columns; pandas and Arrow batches are accepted too."""
        if hasattr(batch, "count") and hasattr(batch, "take_batch"):
            self.incorrect("`outfits_batch` is a Dataset, a plan to read the data; take a batch from it.")
        if isinstance(batch, list):
            what = "rows, one dict per row" if batch and isinstance(batch[0], dict) else "items"
            self.incorrect(
                f"`outfits_batch` is a list of {len(batch)} {what}: that is what `take()` returns. "
                "Look for the method that returns the rows as one batch of columns."
            )
        if hasattr(batch, "to_pydict"):  # a pyarrow.Table (batch_format="pyarrow")
            return batch.to_pydict()
        if hasattr(batch, "to_dict") and hasattr(batch, "columns"):  # a pandas DataFrame
            return {name: batch[name].to_numpy() for name in batch.columns}
        if not isinstance(batch, dict):
            self.incorrect(f"`outfits_batch` is a {_type_name(batch)}; a batch is a dict of columns.")
        return batch


@register
class CountLab(Lab):
    name = "01_inspect"
    title = "Count the outfits and list their columns"
    hints = (
        "Both answers come from Dataset methods; the last cells before this lab used them on `animals`.",
        "`count()` gives the number of rows; `schema()` describes the columns and has a `.names` attribute.",
        "`num_outfits = outfits.count()` and `outfit_columns = outfits.schema().names`",
    )
    solution_text = """
        num_outfits = outfits.count()
        outfit_columns = outfits.schema().names
    """
    correct_message = "count() and schema() are the first two questions to ask any dataset."

    def check_answer(self, num_outfits, outfit_columns):
        expected_rows = csv_rows("outfits.csv")
        if hasattr(num_outfits, "count") and hasattr(num_outfits, "schema"):
            self.incorrect("`num_outfits` is a Dataset; ask the Dataset for its number of rows.")
        if isinstance(num_outfits, bool) or not isinstance(num_outfits, (int, np.integer)):
            self.incorrect(f"`num_outfits` should be a whole number, not a {_type_name(num_outfits)}.")
        if num_outfits == len(expected_rows) + 1:
            self.incorrect(f"`num_outfits` is {num_outfits}: that counts the header line, which is not a row.")
        if num_outfits != len(expected_rows):
            self.incorrect(f"`num_outfits` is {num_outfits}, which is not the number of rows in outfits.csv.")
        names = getattr(outfit_columns, "names", outfit_columns)
        if isinstance(names, str) or not isinstance(names, (list, tuple, np.ndarray)):
            self.incorrect(f"`outfit_columns` should be a list of column names, not a {_type_name(outfit_columns)}.")
        names = [str(name) for name in names]
        if sorted(names) != sorted(expected_rows[0]):
            self.incorrect(f"`outfit_columns` is {names}; those are not the columns of outfits.csv.")


# --------------------------------------------------------------------------- lesson 02


def _sample_batch(rows: int) -> dict:
    """A batch as Ray Data hands it to ``map_batches`` after the rename to ``prompt``."""
    records = csv_rows("animals.csv")[:rows]
    return {
        "id": np.array([int(r["id"]) for r in records], dtype=np.int64),
        "prompt": np.array([r["animal"] for r in records], dtype=object),
    }


@register
class PromptLengthLab(Lab):
    name = "02_prompt_length"
    title = "A stateless function that adds a prompt_length column"
    hints = (
        (
            "The function gets a dict of NumPy arrays and returns it. Add a new key, `prompt_length`, "
            "holding one number per row."
        ),
        (
            "`batch['prompt']` is an array of strings. `len(...)` of one string is its number of characters; "
            "build one per prompt (a list comprehension works)."
        ),
        "`batch['prompt_length'] = np.array([len(p) for p in batch['prompt']])`, then `return batch`.",
    )
    solution_text = """
        def add_prompt_length(batch):
            batch["prompt_length"] = np.array([len(p) for p in batch["prompt"]])
            return batch
    """
    correct_message = "A plain function on a dict of arrays: Ray runs it as tasks, batch by batch, on any node."

    def check_answer(self, add_prompt_length):
        if not callable(add_prompt_length):
            self.incorrect(f"`add_prompt_length` should be a function, not a {_type_name(add_prompt_length)}.")
        for rows in (8, 3):
            self._check_one_batch(add_prompt_length, rows)

    def _check_one_batch(self, fn, rows: int) -> None:
        batch = _sample_batch(rows)
        prompts = list(batch["prompt"])
        result = fn({name: values.copy() for name, values in batch.items()})
        if result is None:
            self.incorrect("`add_prompt_length` returned None; `map_batches` needs the batch back (`return batch`).")
        if not isinstance(result, dict):
            self.incorrect(f"`add_prompt_length` returned a {_type_name(result)}; return the batch dict.")
        if set(result) == set(batch):
            self.not_attempted("`add_prompt_length` returns the batch without a `prompt_length` column yet.")
        if "prompt_length" not in result:
            self.incorrect(f"the returned batch has no `prompt_length` column; it has {_quote(sorted(result))}.")
        missing = [name for name in batch if name not in result]
        if missing:
            self.incorrect(f"the returned batch lost {_quote(missing)}; keep the columns it came with.")
        if [str(p) for p in result["prompt"]] != prompts:
            self.incorrect("the `prompt` column changed; only add a new column.")
        lengths = np.asarray(result["prompt_length"])
        if lengths.shape != (rows,):
            self.incorrect(
                f"`prompt_length` has shape {lengths.shape} for a batch of {rows} rows; give one number per row."
            )
        if lengths.dtype.kind not in "iuf" or (lengths.dtype.kind == "f" and not np.all(lengths == np.round(lengths))):
            self.incorrect(f"`prompt_length` holds {lengths.dtype} values; it should hold whole numbers.")
        expected = [len(p) for p in prompts]
        if lengths.tolist() == expected:
            return
        if rows > 1 and set(lengths.tolist()) == {rows}:
            self.incorrect(
                f"every row got {rows}: that is the number of rows in the batch, not the length of each prompt."
            )
        wrong = next(i for i, (got, want) in enumerate(zip(lengths.tolist(), expected)) if got != want)
        self.incorrect(
            f"`prompt_length` is {lengths[wrong]} for {prompts[wrong]!r}; it should count the characters of each "
            "prompt, spaces included."
        )


# --------------------------------------------------------------------------- lesson 03

PICKLED_OBJECT = "ray.data.arrow_pickled_object"
FIXED_TENSORS = ("ray.data.arrow_tensor", "ray.data.arrow_tensor_v2", "arrow.fixed_shape_tensor")
VARIABLE_TENSOR = "ray.data.arrow_variable_shaped_tensor"
ENCODED_IMAGES = "encoded image bytes"
_PICKLED_MESSAGE = (
    "the `image` column holds pickled Python objects (Ray's fallback for the PIL images), which only Python "
    "with the same libraries can read back. Store plain data: encoded image bytes or pixel arrays."
)


def parquet_files(path: Path) -> list[Path]:
    """The Parquet files of a written folder (or the file itself), hidden files left out."""
    if path.is_file():
        return [path]
    return sorted(
        file
        for file in path.rglob("*.parquet")
        if not any(part.startswith((".", "_")) for part in file.relative_to(path).parts)
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
        image_shape = np.asarray(first).shape if first is not None else None
        return _check_pixels(image_shape, _flatten(storage), where)
    raise Incorrect(f"{where} holds {kind} values; store encoded image bytes or uint8 pixel arrays.")


def undecodable_row(values) -> tuple[int, str] | None:
    """(row, problem) of the first value that is not PNG/JPEG/... bytes, else None."""
    from PIL import Image, UnidentifiedImageError

    for row, value in enumerate(values):
        try:
            with Image.open(io.BytesIO(value)) as image:
                image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
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
            "(`helpers.models.stages.png_bytes(image)` encodes one image), then `write_parquet(parquet_path)` writes "
            "the result. Ray's writers add files to the folder on every run unless you ask them to replace it."
        ),
        (
            '`write_parquet(parquet_path, mode="overwrite")` replaces what an earlier run wrote; '
            "see `lab.solution()` for the whole cell."
        ),
    )
    solution_text = """
        from helpers.models.stages import png_bytes

        parquet_path = session.settings.output_path("03_parquet")

        def encode_png(batch):
            batch["image"] = np.array([png_bytes(image) for image in batch["image"]], dtype=object)
            return batch

        animal_images.map_batches(encode_png).write_parquet(parquet_path, mode="overwrite")
    """
    correct_message = "Every prompt and its image are on shared storage, readable by any Parquet reader."

    def check_answer(self, parquet_path):
        import pyarrow.dataset as pads

        path = Path(str(parquet_path)).expanduser()
        if "://" in str(parquet_path):
            self.incorrect(f"{parquet_path} is a URL; this check reads a folder on the file system.")
        if not path.exists():
            self.incorrect(f"{path} does not exist: nothing has been written there yet.")
        files = parquet_files(path)
        if not files:
            self.incorrect(f"{path} holds no .parquet files.")
        try:
            base = path if path.is_dir() else path.parent
            table = pads.dataset(
                [str(f) for f in files], format="parquet", partitioning="hive", partition_base_dir=str(base)
            ).to_table()
        except Exception as exc:  # noqa: BLE001 - a mixed or broken folder; say so in one line
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.incorrect(
                f"the {len(files)} files in {path} cannot be read as one table ({first}): "
                "the folder may mix the files of different writes."
            )
        missing = [column for column in ("prompt", "image") if column not in table.column_names]
        if missing:
            self.incorrect(f"the files have no {_quote(missing)} column; they have {_quote(table.column_names)}.")

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
            f"{table.num_rows} prompts and their images ({kind}) in {len(files)} file(s). " + self.correct_message
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
            self.incorrect(f"the folder holds {len(prompts)} rows but animals.csv has {total} animals.")
        stranger = next(p for p in found if p not in expected or found[p] != expected[p])
        self.incorrect(f"the prompts do not match animals.csv (for example {stranger!r}); write the lesson's dataset.")


# Imported last so that its labs register too when ``get_lab`` loads this module.
from helpers.labs import lessons_late  # noqa: F401
