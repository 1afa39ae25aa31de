"""The workshop data the labs compare answers with, read without Ray.

The expected answers (rows, columns, prompts, the size of a join) are computed
from the CSV files themselves, so a check never holds a copy of the data that
could drift from it.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from helpers.runtime.settings import REPO_ROOT, resolve_storage


def data_file(name: str) -> Path:
    """``<storage>/data/<name>`` as lesson 01 stages it, else the clone's own copy (also for an ``s3://`` root,
    which the checks do not read: the staged files are copies of the clone's)."""
    storage = resolve_storage()
    staged = storage / "data" / name if isinstance(storage, Path) else None
    return staged if staged is not None and staged.exists() else REPO_ROOT / "data" / name


def csv_rows(name: str) -> list[dict[str, str]]:
    """The rows of one of the workshop's CSV files."""
    with data_file(name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def animal_prompts() -> list[str]:
    """Every prompt of ``animals.csv``, in file order (some repeat)."""
    return [row["animal"] for row in csv_rows("animals.csv")]


def joined_row_count() -> int:
    """Rows of ``animals`` inner-joined with ``outfits`` on ``id``."""
    animals = Counter(row["id"] for row in csv_rows("animals.csv"))
    outfits = Counter(row["id"] for row in csv_rows("outfits.csv"))
    return sum(count * outfits[key] for key, count in animals.items())
