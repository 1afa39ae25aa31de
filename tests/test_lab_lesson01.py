"""The labs of lesson 01 (:mod:`helpers.labs.lesson01`), each tested three ways: starter, solution, wrong answers.

Batches are built the way ``take_batch`` returns them, as dicts of NumPy arrays, without Ray.
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


# --------------------------------------------------------------------------- 01_inspect


@pytest.fixture
def inspect_lab():
    return get_lab("01_inspect")


def test_inspect_starter_is_not_attempted(inspect_lab):
    assert status(inspect_lab.evaluate(num_outfits=..., outfit_columns=...)) == NOT_ATTEMPTED


def test_inspect_solution_is_correct(inspect_lab):
    rows = len(csv_rows("outfits.csv"))
    assert status(inspect_lab.evaluate(num_outfits=rows, outfit_columns=["id", "outfit"])) == CORRECT
    # a Schema-like object (what schema() returns) and another column order are fine too
    schema = pa.schema([("outfit", pa.string()), ("id", pa.int64())])
    assert status(inspect_lab.evaluate(num_outfits=np.int64(rows), outfit_columns=schema)) == CORRECT


def test_inspect_counting_the_header_is_incorrect(inspect_lab):
    lines = len(csv_rows("outfits.csv")) + 1  # len(open(path).readlines())
    outcome = inspect_lab.evaluate(num_outfits=lines, outfit_columns=["id", "outfit"])
    assert status(outcome) == INCORRECT and "header" in outcome.message


def test_inspect_wrong_columns_are_incorrect(inspect_lab):
    rows = len(csv_rows("outfits.csv"))
    outcome = inspect_lab.evaluate(num_outfits=rows, outfit_columns=["id", "animal"])
    assert status(outcome) == INCORRECT and "outfit_columns" in outcome.message
