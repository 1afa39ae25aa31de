"""The workshop data as the labs read it (:mod:`helpers.labs.data`), without Ray."""

from __future__ import annotations

from helpers.labs.data import animal_prompts, csv_rows, joined_row_count


def test_the_join_of_the_workshop_data_has_120_rows():
    assert joined_row_count() == 120


def test_csv_rows_and_prompts_come_from_the_files():
    rows = csv_rows("animals.csv")
    assert list(rows[0]) == ["id", "animal"]
    assert animal_prompts() == [row["animal"] for row in rows] and len(rows) == 120
