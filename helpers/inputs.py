"""Read and check the pipeline's CSV inputs before any model runs.

A bad input file should stop the pipeline in a fraction of a second with one
line that says which file, which column or row, and what to change, not after
a minute of model loading with a 40-frame traceback. :func:`read_table` does
every check the pipeline relies on:

* the path is an existing, readable, non-empty file (not a folder);
* the header has every required column (a misspelling is pointed out with the
  closest name found); extra columns are kept in the table and ignored by the
  pipeline;
* there is at least one data row;
* ``id`` holds whole numbers, none empty, none repeated: a repeated id would
  multiply the rows of the join;
* every other required column (the prompt text) is non-empty after stripping.

Everything is read as text first, so ids are checked here rather than guessed
by a type inference. Non-ASCII text, emoji and quoted fields with commas are
fine (the file must be UTF-8).

Positions are given as ``line N (row M)``: *line* counts the header as line 1,
as an editor or a spreadsheet shows it; *row* counts data rows from 1.
"""

from __future__ import annotations

import csv
import difflib
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from helpers.errors import ActionableError

#: The join key of both inputs.
KEY = "id"
ANIMALS_COLUMNS = (KEY, "animal")
OUTFITS_COLUMNS = (KEY, "outfit")

_INTEGER = re.compile(r"[+-]?\d+")
_INT64_MAX = 2**63 - 1
#: How many offending ids or rows a message lists before it says "and N more".
_LISTED = 5


class InputError(ActionableError, ValueError):
    """An input file cannot be used; the one-line message names the file, the place and the fix."""


def _where(index: int) -> str:
    """Position of the 0-based data row ``index`` as a learner finds it in the file."""
    return f"line {index + 2} (row {index + 1})"


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def _check_path(path: Path, name: str, kind: str, example: str) -> None:
    if path.is_dir():
        raise InputError(f"{name} is a folder, not a file; pass the {kind} CSV file itself, e.g. {example}")
    if not path.exists():
        raise InputError(f"{name} does not exist ({path.resolve()}); check the path of the {kind} file, e.g. {example}")
    if not os.access(path, os.R_OK):
        raise InputError(f"{name} cannot be read (permission denied); make it readable, e.g. chmod a+r {name}")
    if path.stat().st_size == 0:
        raise InputError(
            f"{name} is empty (0 bytes); it needs a header line {example_header(kind)} and one row per line"
        )


def example_header(kind: str) -> str:
    columns = {"animals": ANIMALS_COLUMNS, "outfits": OUTFITS_COLUMNS}.get(kind)
    return ",".join(columns) if columns else "id,..."


def _header(path: Path, name: str) -> list[str]:
    """The column names of the first line, parsed like pyarrow does (quotes, BOM)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    except UnicodeDecodeError:
        raise InputError(f"{name} is not UTF-8 text; save it as UTF-8 (CSV UTF-8 in a spreadsheet)") from None


def _missing_column_message(column: str, found: list[str], name: str, required: tuple[str, ...]) -> str:
    by_case = [f for f in found if f.strip().lower() == column.lower()]
    close = by_case or difflib.get_close_matches(column, found, n=1, cutoff=0.6)
    if close:
        return (
            f"column '{column}' is missing from {name} (found '{close[0]}', did you mean it?); "
            f"rename that header to '{column}'"
        )
    shown = ", ".join(f"'{f}'" for f in found) or "none"
    return (
        f"column '{column}' is missing from {name} (found columns: {shown}); "
        f"the first line must be a header with {','.join(required)}"
    )


def _parse(path: Path, name: str, header: list[str]) -> pa.Table:
    as_text = {column: pa.string() for column in header}
    try:
        return pa_csv.read_csv(
            path,
            convert_options=pa_csv.ConvertOptions(column_types=as_text, strings_can_be_null=False),
        )
    except pa.ArrowInvalid as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "UTF8" in detail or "utf8" in detail.lower():
            raise InputError(f"{name} is not UTF-8 text; save it as UTF-8 (CSV UTF-8 in a spreadsheet)") from None
        raise InputError(
            f"{name} is not a well-formed CSV file ({detail}); every line needs as many fields as the header, "
            "and a text with commas must be in double quotes"
        ) from None


def _ids(table: pa.Table, name: str) -> pa.Array:
    """The ``id`` column as int64, or an :class:`InputError` about the first bad value."""
    values = [str(v).strip() for v in table.column(KEY).to_pylist()]
    for index, value in enumerate(values):
        if value == "":
            raise InputError(f"{name}: {_where(index)} has an empty '{KEY}'; give every row a whole-number id")
        if not _INTEGER.fullmatch(value) or abs(int(value)) > _INT64_MAX:
            raise InputError(
                f"{name}: {_where(index)} has '{KEY}' {value!r}, which is not a whole number; "
                "ids must be integers such as 1, 2, 3"
            )
    ids = [int(v) for v in values]
    seen: dict[int, int] = {}
    repeated: dict[int, list[int]] = {}
    for index, value in enumerate(ids):
        if value in seen:
            repeated.setdefault(value, [seen[value]]).append(index)
        else:
            seen[value] = index
    if repeated:
        described = [
            f"{value} (lines {', '.join(str(i + 2) for i in rows)})" for value, rows in sorted(repeated.items())
        ]
        raise InputError(
            f"{name}: '{KEY}' must be unique but {_listed(described)} appear more than once; "
            "a repeated id multiplies the rows of the join, so give each row its own id"
        )
    return pa.array(ids, type=pa.int64())


def _text(table: pa.Table, column: str, name: str) -> pa.Array:
    stripped = pc.utf8_trim_whitespace(table.column(column).combine_chunks())
    empty = [i for i, value in enumerate(stripped.to_pylist()) if not value]
    if empty:
        more = f" ({len(empty)} rows in all)" if len(empty) > 1 else ""
        raise InputError(
            f"{name}: {_where(empty[0])} has an empty '{column}'{more}; write the text of every row, "
            "or delete rows you do not want"
        )
    return stripped


def read_table(path, required_columns: tuple[str, ...], kind: str) -> pa.Table:
    """Read one input CSV and check it; raise :class:`InputError` with the fix if it is unusable.

    ``required_columns`` must all be in the header; ``id`` among them is the
    join key and becomes int64, the others are prompt text (stripped, never
    empty). Extra columns are kept as text, unchanged. ``kind`` names the file
    in messages (``"animals"``, ``"outfits"``).
    """
    path = Path(path)
    name = str(path)
    example = f"data/{kind}.csv"
    _check_path(path, name, kind, example)
    header = _header(path, name)
    if not any(column.strip() for column in header):
        raise InputError(f"{name} has no header line; the first line must be {','.join(required_columns)}")
    for column in required_columns:
        if column not in header:
            raise InputError(_missing_column_message(column, header, name, required_columns))
        if header.count(column) > 1:
            raise InputError(f"{name}: column '{column}' appears {header.count(column)} times in the header; keep one")

    table = _parse(path, name, header)
    if table.num_rows == 0:
        raise InputError(f"{name} has a header but no rows; add one line per {kind[:-1] or kind} under the header")

    for column in required_columns:
        fixed = _ids(table, name) if column == KEY else _text(table, column, name)
        table = table.set_column(table.schema.get_field_index(column), column, fixed)
    return table


def read_animals(path) -> pa.Table:
    return read_table(path, ANIMALS_COLUMNS, "animals")


def read_outfits(path) -> pa.Table:
    return read_table(path, OUTFITS_COLUMNS, "outfits")


def match_report(animals: pa.Table, outfits: pa.Table) -> dict:
    """How the two inputs join on ``id``: rows on each side, joined, and left without a partner."""
    left = set(animals.column(KEY).to_pylist())
    right = set(outfits.column(KEY).to_pylist())
    return {
        "animals": animals.num_rows,
        "outfits": outfits.num_rows,
        "joined": len(left & right),
        "unmatched_animals": len(left - right),
        "unmatched_outfits": len(right - left),
    }
