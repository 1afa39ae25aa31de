"""The workshop data as the labs read it (:mod:`helpers.labs.data`), without Ray."""

from __future__ import annotations

from helpers.labs.data import animal_prompts, csv_rows, joined_row_count


def test_the_join_of_the_workshop_data_has_120_rows():
    assert joined_row_count() == 120


def test_csv_rows_and_prompts_come_from_the_files():
    rows = csv_rows("animals.csv")
    assert list(rows[0]) == ["id", "animal"]
    assert animal_prompts() == [row["animal"] for row in rows] and len(rows) == 120


def test_the_checks_read_the_clones_data_when_the_storage_is_an_object_store(monkeypatch):
    """With ``WORKSHOP_STORAGE=s3://...`` the checks compare against the clone's copies of the data (the staged
    files are copies of them), instead of failing as a check error on an object-store path."""
    from helpers.labs.data import data_file
    from helpers.runtime.settings import REPO_ROOT

    monkeypatch.setenv("WORKSHOP_STORAGE", "s3://workshop-bucket/prefix")
    assert data_file("animals.csv") == REPO_ROOT / "data" / "animals.csv"
