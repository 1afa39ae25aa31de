"""Labs of lesson 01 (ingest): take a batch of the outfits, then count them and name their columns."""

from __future__ import annotations

import numpy as np

from helpers.labs.data import csv_rows
from helpers.labs.framework import Lab, quote, register, type_name
from helpers.labs.shapes import WHOLE_NUMBER, Equals, Kind, Mistake, is_dataset


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
        expected = set(csv_rows("outfits.csv")[0])
        columns = set(batch)
        if columns != expected:
            hint = " That looks like the animals file." if "animal" in columns else ""
            self.incorrect(f"the batch has the columns {quote(sorted(columns))}; outfits.csv has others.{hint}")
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
        if is_dataset(batch):
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
            self.incorrect(f"`outfits_batch` is a {type_name(batch)}; a batch is a dict of columns.")
        return batch


def _column_names(value):
    """What ``schema()`` returns gives its names; a list of names is itself."""
    return getattr(value, "names", value)


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
        read=_column_names,
        kind=Kind(
            description="a list of column names",
            accepts=lambda names: isinstance(names, (list, tuple, np.ndarray)),
        ),
        key=lambda names: sorted(str(name) for name in names),
        wrong="`{name}` is {value}; those are not the columns of outfits.csv.",
    )
