"""Labs of lesson 01 (ingest): take a batch of the outfits, then count them and name their columns."""

from __future__ import annotations

from helpers.labs.data import csv_rows
from helpers.labs.framework import Incorrect, Lab, quote, register, type_name
from helpers.labs.shapes import WHOLE_NUMBER, Equals, Kind, Mistake, batch_columns, is_dataset


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
    correct_message = "A batch is a dict: one NumPy array per column, one entry per row."
    rows = 5

    def check_answer(self, outfits_batch):
        batch = self._as_columns(outfits_batch)
        rows = csv_rows("outfits.csv")
        columns = set(batch)
        if columns != set(rows[0]):
            hint = " That looks like the animals file." if "animal" in columns else ""
            self.incorrect(f"the batch has the columns {quote(sorted(columns))}; outfits.csv has others.{hint}")
        scalars = [name for name, values in batch.items() if isinstance(values, (str, bytes)) or not _sized(values)]
        if scalars:
            self.incorrect(
                f"`outfits_batch` holds one value per column ({quote(scalars)}): that is a single row. "
                f"A batch holds one array per column, with an entry for each of its {self.rows} rows."
            )
        lengths = {name: len(values) for name, values in batch.items()}
        if len(set(lengths.values())) != 1:
            self.incorrect(f"the columns have different lengths ({lengths}); keep the batch as Ray returns it.")
        count = next(iter(lengths.values()))
        if count != self.rows:
            self.incorrect(f"the batch holds {count} rows; ask for {self.rows}.")
        found = [(str(i), str(o)) for i, o in zip(batch["id"], batch["outfit"])]
        known = {(row["id"], row["outfit"]) for row in rows}
        strangers = [outfit for outfit in found if outfit not in known]
        if strangers:
            stranger_id, stranger = strangers[0]
            self.incorrect(f"{stranger!r} (id {stranger_id}) is not a row of outfits.csv; read the file itself.")
        first = [(row["id"], row["outfit"]) for row in rows[: self.rows]]
        later = [outfit for outfit in found if outfit not in first]
        if later:
            self.incorrect(
                f"the batch holds rows from further down outfits.csv (for example id {later[0][0]}); "
                f"take the first {self.rows} rows of the file."
            )
        if sorted(found) != sorted(first):
            self.incorrect(f"the batch repeats some rows; take the first {self.rows} rows of the file, each once.")

    def _as_columns(self, batch) -> dict:
        """The batch as a dict of columns; pandas and Arrow batches are accepted too."""
        if is_dataset(batch):
            self.incorrect("`outfits_batch` is a Dataset, a plan to read the data; take a batch from it.")
        if isinstance(batch, list):
            what = "rows, one dict per row" if batch and isinstance(batch[0], dict) else "items"
            self.incorrect(
                f"`outfits_batch` is a list of {len(batch)} {what}: that is what `take()` returns. "
                "Look for the method that returns the rows as one batch of columns."
            )
        batch = batch_columns(batch)
        if not isinstance(batch, dict):
            self.incorrect(f"`outfits_batch` is a {type_name(batch)}; a batch is a dict of columns.")
        return batch


def _sized(values) -> bool:
    """True for a column: a list or array of values, not one value."""
    try:
        len(values)
    except TypeError:
        return False
    return getattr(values, "ndim", 1) != 0


def _not_a_schema(value):
    """A schema describes the columns (names and types); the lab asks for the list of names."""
    if hasattr(value, "names") and hasattr(value, "types"):  # ray.data's Schema, pyarrow's Schema
        raise Incorrect(
            f"`outfit_columns` is the dataset's {type_name(value)}, which describes each column with its type; "
            "set it to the list of the column names, which the schema holds as one of its attributes."
        )
    return value


def _is_list_of_names(value) -> bool:
    """A list or tuple, or a one-dimensional array (NumPy's, a pandas Index): what a list of names can be."""
    if isinstance(value, (list, tuple)):
        return True
    return hasattr(value, "tolist") and getattr(value, "ndim", None) == 1


@register
class CountLab(Lab):
    name = "01_inspect"
    title = "Count the outfits and list their columns"
    hints = (
        "Both answers come from Dataset methods; the last cells before this lab used them on `animals`.",
        "`count()` gives the number of rows; `schema()` describes the columns and has a `.names` attribute.",
        "`num_outfits = outfits.count()` and `outfit_columns = outfits.schema().names`",
    )
    correct_message = "count() and schema() are the first two questions to ask any dataset."
    num_outfits = Equals(
        expected=lambda: len(csv_rows("outfits.csv")),
        kind=WHOLE_NUMBER,
        if_dataset="`{name}` is a Dataset; ask the Dataset for its number of rows.",
        mistakes=(
            Mistake(
                when=lambda found, rows: found == rows + 1,
                message="`{name}` is {value}: that counts the header line, which is not a row.",
            ),
        ),
        wrong="`{name}` is {value}, which is not the number of rows in outfits.csv.",
    )
    outfit_columns = Equals(
        expected=lambda: list(csv_rows("outfits.csv")[0]),
        read=_not_a_schema,
        kind=Kind(description="a list of column names", accepts=_is_list_of_names),
        key=lambda names: sorted(str(name) for name in names),
        wrong="`{name}` is {value}; those are not the columns of outfits.csv.",
    )
