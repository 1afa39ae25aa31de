"""Lab of lesson 07 (under the hood): give the animals four blocks and count the rows in each.

The dataset's blocks are read back from Ray's object store through
``Dataset.iter_internal_ref_bundles`` (a developer API of Ray Data, used as its
own documentation shows), so the row counts the learner reports are compared
with the blocks the learner's dataset really holds, whichever way they were made.
"""

from __future__ import annotations

import numbers

from helpers.errors import first_line
from helpers.labs.data import csv_rows
from helpers.labs.framework import Lab, register, type_name
from helpers.labs.shapes import count_word, is_dataset

#: How many blocks the lab asks for.
BLOCKS = 4


def rows_per_block(dataset) -> list[int]:
    """The number of rows of each block of a materialized ``dataset``, in the order Ray keeps them."""
    import ray

    return [len(ray.get(entry.ref)) for bundle in dataset.iter_internal_ref_bundles() for entry in bundle.blocks]


def _is_materialized(dataset) -> bool:
    from ray.data.dataset import MaterializedDataset

    return isinstance(dataset, MaterializedDataset)


def _whole_numbers(value) -> list[int] | None:
    """``value`` as a list of whole numbers (a list, tuple or 1-D array of them), or None."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__") or getattr(value, "ndim", 1) != 1:
        return None
    items = list(value)
    if not all(isinstance(item, numbers.Integral) and not isinstance(item, bool) for item in items):
        return None
    return [int(item) for item in items]


@register
class BlocksLab(Lab):
    name = "07_blocks"
    title = "Give the animals four blocks and count the rows in each"
    hints = (
        (
            "One Dataset method sets how many blocks a dataset has; `read_csv` can also be asked for a number. "
            "Only a materialized dataset knows its blocks, so end with `materialize()`."
        ),
        (
            "`four_blocks = animals.repartition(4).materialize()`. For the rows, walk "
            "`four_blocks.iter_internal_ref_bundles()` as the cell that looked at one block did: each "
            "`entry` of `bundle.blocks` holds a `ref` to one block."
        ),
        (
            "`block_rows = [ray.get(entry.ref).num_rows for bundle in four_blocks.iter_internal_ref_bundles() "
            "for entry in bundle.blocks]`"
        ),
    )
    correct_message = (
        "Blocks are the unit Ray moves, stores and hands to tasks: four blocks means at most four tasks at once "
        "for the next step."
    )

    def check_answer(self, four_blocks, block_rows):
        animals = csv_rows("animals.csv")
        self._check_dataset(four_blocks, columns=set(animals[0]), rows=len(animals))
        actual = self._read(rows_per_block, four_blocks)
        counts = self._row_counts(block_rows, len(actual), len(animals))
        if sorted(counts) != sorted(actual):
            self.incorrect(
                f"`block_rows` is {counts}, which are not the row counts of the blocks of `four_blocks`; "
                "read them from `four_blocks` itself."
            )
        self.correct(f"`four_blocks` holds {BLOCKS} blocks of {counts} rows. {self.correct_message}")

    def _read(self, read, dataset):
        """``read(dataset)``; a Dataset whose blocks went with a Ray that has stopped is the learner's to run again."""
        from ray.exceptions import RayError

        try:
            return read(dataset)
        except RayError as err:
            self.incorrect(
                f"`four_blocks` cannot be read ({first_line(err)}): a Dataset made before Ray stopped is gone with it. "
                "Run the cells above again (Run > Run All Above Selected Cell)."
            )

    def _check_dataset(self, dataset, columns: set[str], rows: int) -> None:
        if not is_dataset(dataset):
            self.incorrect(f"`four_blocks` is a {type_name(dataset)}; it should be the animals as a Ray Dataset.")
        if not _is_materialized(dataset):
            self.incorrect(
                "`four_blocks` is a lazy Dataset: its blocks do not exist until it runs, so nobody can count them. "
                "Materialize it."
            )
        schema, count = self._read(lambda ds: (ds.schema(), ds.count()), dataset)
        if schema is None or count == 0:
            self.incorrect(f"`four_blocks` holds no rows; keep every one of the {rows} animals.")
        found = set(schema.names)
        if found != columns:
            self.incorrect(f"`four_blocks` has the columns {sorted(found)}; the animals have {sorted(columns)}.")
        if count != rows:
            self.incorrect(f"`four_blocks` holds {count} rows; keep every one of the {rows} animals.")
        blocks = dataset.num_blocks()
        if blocks != BLOCKS:
            self.incorrect(f"`four_blocks` has {blocks} blocks; ask for {count_word(BLOCKS)}.")

    def _row_counts(self, value, blocks: int, rows: int) -> list[int]:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            self.incorrect(
                f"`block_rows` is one number, {value}; make it a list with the number of rows of each block."
            )
        counts = _whole_numbers(value)
        if counts is None:
            items = sorted({type_name(item) for item in value}) if isinstance(value, (list, tuple)) else []
            holds = f" of {', '.join(items)} values" if items else ""
            self.incorrect(
                f"`block_rows` is a {type_name(value)}{holds}; make it a list of whole numbers, one per block."
            )
        if len(counts) != blocks:
            batches = " Batches are not blocks: `iter_batches` cuts rows to the batch size it is given." if (
                sum(counts) == rows
            ) else ""
            self.incorrect(
                f"`block_rows` has {len(counts)} entries, but `four_blocks` has {blocks} blocks; "
                f"give one row count per block.{batches}"
            )
        if sum(counts) != rows:
            self.incorrect(
                f"`block_rows` adds up to {sum(counts)}, but `four_blocks` holds {rows} rows; count rows, not bytes."
            )
        return counts
