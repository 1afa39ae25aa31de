"""The labs of lesson 01 (:mod:`helpers.labs.lesson01`), each tested three ways: starter, solution, wrong answers.

Batches are built the way ``take_batch`` returns them, as dicts of NumPy arrays, without Ray; the
other ways a learner may take them (other batch formats, ``limit``, ``iter_batches``) are taken with
Ray itself, on the test run's shared session.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from helpers.labs.data import animal_prompts, csv_rows
from helpers.labs.framework import CORRECT, INCORRECT, NOT_ATTEMPTED, get_lab

PROMPTS = animal_prompts()


def status(outcome):
    return outcome.status


# --------------------------------------------------------------------------- 01_batch


def outfit_batch(rows: int = 5) -> dict:
    """What ``outfits.take_batch(rows)`` returns."""
    records = csv_rows("outfits.csv")[:rows]
    return {
        "id": np.array([int(r["id"]) for r in records]),
        "outfit": np.array([r["outfit"] for r in records], dtype=object),
    }


@pytest.fixture
def batch_lab():
    return get_lab("01_batch")


@pytest.mark.parametrize("starter", [..., None, "TODO"])
def test_batch_starter_is_not_attempted(batch_lab, starter):
    assert status(batch_lab.evaluate(outfits_batch=starter)) == NOT_ATTEMPTED


def test_batch_solution_is_correct(batch_lab):
    assert status(batch_lab.evaluate(outfits_batch=outfit_batch())) == CORRECT


def test_batch_as_pandas_is_accepted_too(batch_lab):
    pandas = pytest.importorskip("pandas")
    assert status(batch_lab.evaluate(outfits_batch=pandas.DataFrame(outfit_batch()))) == CORRECT


def test_batch_from_take_is_incorrect_and_names_take(batch_lab):
    rows = [{"id": i, "outfit": o} for i, o in zip(*outfit_batch().values())]
    outcome = batch_lab.evaluate(outfits_batch=rows)
    assert status(outcome) == INCORRECT and "take()" in outcome.message


def test_batch_of_the_wrong_size_is_incorrect(batch_lab):
    outcome = batch_lab.evaluate(outfits_batch=outfit_batch(3))
    assert status(outcome) == INCORRECT and "holds 3 rows" in outcome.message


def test_batch_of_animals_is_incorrect(batch_lab):
    animals = {"id": np.arange(5), "animal": np.array(PROMPTS[:5], dtype=object)}
    outcome = batch_lab.evaluate(outfits_batch=animals)
    assert status(outcome) == INCORRECT and "animals file" in outcome.message


@pytest.fixture
def outfits(session):
    """``ray.data.read_csv`` of outfits.csv, as the learner reads it."""
    import ray

    from helpers.labs.data import data_file

    return ray.data.read_csv(str(data_file("outfits.csv")))


@pytest.mark.parametrize(
    "take",
    [
        lambda ds: ds.take_batch(5),
        lambda ds: ds.take_batch(5, batch_format="pandas"),
        lambda ds: ds.take_batch(5, batch_format="pyarrow"),
        lambda ds: ds.limit(5).take_batch(),
        lambda ds: next(iter(ds.iter_batches(batch_size=5))),
    ],
    ids=["take_batch", "pandas", "pyarrow", "limit", "iter_batches"],
)
def test_batch_taken_any_way_ray_offers_is_correct(batch_lab, outfits, take):
    outcome = batch_lab.evaluate(outfits_batch=take(outfits))
    assert status(outcome) == CORRECT, outcome.message


def test_batch_of_shuffled_rows_is_incorrect(batch_lab):
    """``random_shuffle().take_batch(5)`` or a batch from the middle: not the first 5 rows."""
    records = csv_rows("outfits.csv")[20:25]
    batch = {"id": np.array([int(r["id"]) for r in records]), "outfit": np.array([r["outfit"] for r in records])}
    outcome = batch_lab.evaluate(outfits_batch=batch)
    assert status(outcome) == INCORRECT
    assert "further down outfits.csv" in outcome.message and "first 5 rows" in outcome.message


def test_batch_of_the_default_size_is_incorrect(batch_lab):
    """``take_batch()`` without a size gives Ray's default of 20 rows."""
    outcome = batch_lab.evaluate(outfits_batch=outfit_batch(20))
    assert status(outcome) == INCORRECT and "holds 20 rows; ask for 5" in outcome.message


def test_a_single_row_is_incorrect(batch_lab):
    """``outfits.take(1)[0]``: one row as a dict of values, not a batch of columns."""
    row = {"id": 103, "outfit": csv_rows("outfits.csv")[0]["outfit"]}
    outcome = batch_lab.evaluate(outfits_batch=row)
    assert status(outcome) == INCORRECT and "single row" in outcome.message


def test_an_iterator_of_batches_is_incorrect(batch_lab):
    """``outfits.iter_batches(batch_size=5)`` without taking one from it."""
    outcome = batch_lab.evaluate(outfits_batch=(batch for batch in [outfit_batch()]))
    assert status(outcome) == INCORRECT and "is a generator; a batch is a dict of columns" in outcome.message


# --------------------------------------------------------------------------- 01_inspect


@pytest.fixture
def inspect_lab():
    return get_lab("01_inspect")


def test_inspect_starter_is_not_attempted(inspect_lab):
    assert status(inspect_lab.evaluate(num_outfits=..., outfit_columns=...)) == NOT_ATTEMPTED


def test_inspect_solution_is_correct(inspect_lab):
    rows = len(csv_rows("outfits.csv"))
    assert status(inspect_lab.evaluate(num_outfits=rows, outfit_columns=["id", "outfit"])) == CORRECT


@pytest.mark.parametrize(
    "columns",
    [("outfit", "id"), np.array(["id", "outfit"]), "pandas"],
    ids=["tuple-other-order", "numpy", "pandas-columns"],
)
def test_inspect_other_lists_of_names_are_correct(inspect_lab, columns):
    """``tuple(...)``, ``np.array(outfits.columns())``, ``outfits.to_pandas().columns``: lists of names too."""
    if isinstance(columns, str):
        pandas = pytest.importorskip("pandas")
        columns = pandas.DataFrame({"id": [1], "outfit": ["hat"]}).columns
    rows = np.int64(len(csv_rows("outfits.csv")))  # count() of a pandas frame or NumPy gives NumPy integers
    outcome = inspect_lab.evaluate(num_outfits=rows, outfit_columns=columns)
    assert status(outcome) == CORRECT, outcome.message


def test_inspect_the_schema_itself_is_incorrect(inspect_lab):
    """``outfit_columns = outfits.schema()``: the instructions ask for the list of names, not the schema."""
    rows = len(csv_rows("outfits.csv"))
    schema = pa.schema([("id", pa.int64()), ("outfit", pa.string())])
    outcome = inspect_lab.evaluate(num_outfits=rows, outfit_columns=schema)
    assert status(outcome) == INCORRECT
    assert "`outfit_columns` is the dataset's Schema" in outcome.message
    assert "list of the column names" in outcome.message


def test_inspect_the_count_method_not_called_is_incorrect(inspect_lab):
    """``num_outfits = outfits.count`` (no parentheses)."""

    class Dataset:
        def count(self):
            return 0

    outcome = inspect_lab.evaluate(num_outfits=Dataset().count, outfit_columns=["id", "outfit"])
    assert status(outcome) == INCORRECT and "`num_outfits` should be a whole number, not a method" in outcome.message


def test_inspect_names_in_one_string_are_incorrect(inspect_lab):
    rows = len(csv_rows("outfits.csv"))
    outcome = inspect_lab.evaluate(num_outfits=rows, outfit_columns="id, outfit")
    assert status(outcome) == INCORRECT and "should be a list of column names, not a str" in outcome.message


def test_inspect_counting_the_header_is_incorrect(inspect_lab):
    lines = len(csv_rows("outfits.csv")) + 1  # len(open(path).readlines())
    outcome = inspect_lab.evaluate(num_outfits=lines, outfit_columns=["id", "outfit"])
    assert status(outcome) == INCORRECT and "header" in outcome.message


def test_inspect_wrong_columns_are_incorrect(inspect_lab):
    rows = len(csv_rows("outfits.csv"))
    outcome = inspect_lab.evaluate(num_outfits=rows, outfit_columns=["id", "animal"])
    assert status(outcome) == INCORRECT and "outfit_columns" in outcome.message
