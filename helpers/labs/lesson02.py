"""Lab of lesson 02 (transform): a stateless function that adds a ``prompt_length`` column.

The check runs the learner's function on two batches shaped as Ray Data hands
them to ``map_batches``, so no declared shape fits: it is code.
"""

from __future__ import annotations

import numpy as np

from helpers.labs.data import csv_rows
from helpers.labs.framework import Lab, learners_code, quote, register, type_name
from helpers.labs.shapes import batch_columns


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
    correct_message = "A plain function on a dict of arrays: Ray runs it as tasks, batch by batch, on any node."

    def check_answer(self, add_prompt_length):
        if not callable(add_prompt_length):
            self.incorrect(f"`add_prompt_length` should be a function, not a {type_name(add_prompt_length)}.")
        for rows in (8, 3):
            self._check_one_batch(add_prompt_length, rows)

    def _check_one_batch(self, fn, rows: int) -> None:
        batch = _sample_batch(rows)
        prompts = list(batch["prompt"])
        with learners_code(f"`add_prompt_length` on a batch of {rows} rows"):
            result = fn({name: values.copy() for name, values in batch.items()})
        if result is None:
            self.incorrect("`add_prompt_length` returned None; `map_batches` needs the batch back (`return batch`).")
        result = batch_columns(result)  # map_batches takes a DataFrame or a pyarrow Table back as well
        if not isinstance(result, dict):
            self.incorrect(f"`add_prompt_length` returned a {type_name(result)}; return the batch dict.")
        missing = [name for name in batch if name not in result]
        if "prompt_length" not in result:
            if set(result) == set(batch) and all(_column(result[name]) == _column(batch[name]) for name in batch):
                self.not_attempted("`add_prompt_length` returns the batch without a `prompt_length` column yet.")
            self.incorrect(f"the returned batch has no `prompt_length` column; it has {quote(sorted(result))}.")
        if missing:
            self.incorrect(f"the returned batch lost {quote(missing)}; keep the columns it came with.")
        changed = [name for name in batch if _column(result[name]) != _column(batch[name])]
        if changed:
            self.incorrect(f"the {quote(changed)} column changed; keep the other columns as they are and only add one.")
        lengths = _numbers(result["prompt_length"])
        if lengths is None:
            self.incorrect("`prompt_length` is not one array of numbers; give one number per row.")
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
            f"`prompt_length` is {lengths[wrong]:g} for {prompts[wrong]!r}; it should count the characters of each "
            "prompt, spaces included."
        )


def _column(values) -> list[str] | None:
    """A column's values as text, to see whether it changed; None when it is not a column."""
    try:
        return [str(value) for value in values]
    except TypeError:
        return None


def _numbers(values) -> np.ndarray | None:
    """The values as a NumPy array (object arrays of numbers re-typed), or None when they are not one array."""
    try:
        array = np.asarray(values)
        if array.dtype == object and array.ndim == 1:
            array = np.asarray(array.tolist())
    except (TypeError, ValueError):  # ragged or not array-like
        return None
    return array
