"""Read and check the pipeline's CSV inputs before any model runs.

A bad input file should stop the pipeline in a fraction of a second with one
line that says which file, which column or row, and what to change, not after
a minute of model loading with a 40-frame traceback. :func:`read_table` does
every check the pipeline relies on:

* the path is an existing, readable, non-empty file (not a folder, nor a pipe
  such as ``<(zcat ...)``, whose bytes could be read only once), and
  text rather than a compressed file or a spreadsheet workbook (its first
  bytes are a gzip or zip signature: an ``.xlsx`` is a zip);
* the header has every required column (a misspelling is pointed out with the
  closest name found, a header separated by ``;`` or tabs is told to use
  commas, also when its names are quoted); names are compared without the
  spaces and invisible characters around them, so ``id ,animal`` reads, and
  a name that is then repeated is refused; extra columns are kept in the
  table and ignored by the pipeline;
* the file is well-formed CSV: every row has as many fields as the header,
  every quote (``"``) that opens a field closes it, right before a comma or
  the line's end (a quote inside quoted text is written ``""``);
* no field (header names included) is longer than 1 MiB (1,048,576
  characters): a prompt is a short text, and a longer field is almost always
  a quote that is never closed and swallows the rest of the file. Anything
  below the limit reads whole, however it falls in the file;
* there is at least one data row;
* ``id`` holds whole numbers written with the ASCII digits 0-9 and an
  optional sign, that fit in 64 bits (-2**63 to 2**63-1), none empty, none
  repeated: a repeated id would multiply the rows of the join. A value is
  checked by its length before it is converted, so thousands of digits cost
  nothing;
* every other required column (the prompt text) is non-empty after stripping.

The file is read once, as text, by Python's :mod:`csv` reader, so ids are
checked here rather than guessed by a type inference. Non-ASCII text, emoji,
quoted fields with commas and quoted line breaks are fine (the file must be
UTF-8). Blank lines, and lines of only spaces and commas, hold no data and are
skipped, as a spreadsheet's trailing empty rows are; :func:`read_input` says
how many, so that the pipeline's summary accounts for every line of the file.

Positions are given as ``line N (row M)``: *line* is the line a row starts on,
counting the header as line 1, as an editor shows it (blank lines and quoted
line breaks included); *row* counts data rows from 1, as the table has them.
"""

from __future__ import annotations

import csv
import difflib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from helpers.errors import InputError

#: The join key of both inputs.
KEY = "id"
ANIMALS_COLUMNS = (KEY, "animal")
OUTFITS_COLUMNS = (KEY, "outfit")

#: An id as typed: ASCII digits only (``\d`` and ``int()`` also take other scripts' digits).
_INTEGER = re.compile(r"[+-]?[0-9]+")
_INT64_DIGITS = 19  # 2**63 has 19 digits: a longer id, leading zeros aside, is out of range unconverted
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: The longest field read, in characters; see the module docstring.
FIELD_LIMIT = 1 << 20
#: How many offending ids or rows a message lists before it says "and N more".
_LISTED = 5
#: How much of a long value a message shows.
_SHOWN = 40
#: Leading bytes of files that are not CSV text, and what to do with each. An ``.xlsx`` (or ``.ods``) workbook
#: is a zip archive; an ``.xls`` is an OLE2 compound file.
_NOT_TEXT = (
    (b"\x1f\x8b", "a gzip-compressed file", "decompress it (gunzip) and pass the .csv inside"),
    (b"PK\x03\x04", "a zip archive (an .xlsx workbook is one)",
     "export it as CSV (comma-separated, UTF-8) from the spreadsheet, or unzip it and pass the .csv inside"),
    (b"PK\x05\x06", "an empty zip archive", "export it as CSV (comma-separated, UTF-8)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an .xls workbook",
     "export it as CSV (comma-separated, UTF-8) from the spreadsheet"),
)
#: Separators a spreadsheet may export instead of the comma, as a message names them.
_OTHER_SEPARATORS = {";": "semicolons", "\t": "tabs"}
#: Characters that show as nothing, which a header name may carry from a spreadsheet or a web page: a second
#: byte-order mark, zero-width spaces and joiners. Stripped from around header names, with the spaces.
_INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060"


@dataclass(frozen=True)
class InputFile:
    """One checked input: its table, and how many lines held no data and were skipped."""

    table: pa.Table
    skipped_blank_lines: int


def _where(index: int, lines: list[int]) -> str:
    """Position of the 0-based data row ``index`` as a learner finds it in the file.

    ``lines`` holds the line each row starts on: blank lines and quoted line
    breaks above a row push it further down than ``index + 2``.
    """
    return f"line {lines[index]} (row {index + 1})"


def _shown(value: str) -> str:
    """``value`` quoted for a message, shortened so that the message stays one readable line."""
    if len(value) <= _SHOWN:
        return repr(value)
    return f"{value[: _SHOWN // 2]!r}... ({len(value)} characters)"


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def _check_path(path: Path, name: str, kind: str, example: str) -> None:
    try:
        path.stat()
    except PermissionError:  # a folder on the way that this user may not enter: the file may well exist
        raise InputError(
            f"{name} cannot be reached (permission denied on a folder of its path); make the folders readable "
            f"(chmod a+rx), or copy the {kind} file to a folder you can read"
        ) from None
    except OSError:
        pass  # missing, or a broken link: said below
    if path.is_dir():
        raise InputError(f"{name} is a folder, not a file; pass the {kind} CSV file itself, e.g. {example}")
    if not path.exists():
        raise InputError(f"{name} does not exist ({path.resolve()}); check the path of the {kind} file, e.g. {example}")
    if not os.access(path, os.R_OK):
        raise InputError(f"{name} cannot be read (permission denied); make it readable, e.g. chmod a+r {name}")
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise InputError(
            f"{name} is not a file but a pipe or a device (as <(...) gives); the pipeline reads each input more "
            f"than once: save it to a file first, e.g. zcat {kind}.csv.gz > {kind}.csv"
        )
    if info.st_size == 0:
        raise InputError(
            f"{name} is empty (0 bytes); it needs a header line {example_header(kind)} and one row per line"
        )
    _check_is_text(path, name)


def _check_is_text(path: Path, name: str) -> None:
    """Refuse a compressed file or a workbook by its first bytes.

    Read as text, both fail as "not UTF-8", which sends the user to re-save the
    encoding of a file whose problem is that it is not text at all.
    """
    with path.open("rb") as handle:
        start = handle.read(8)
    for magic, what, fix in _NOT_TEXT:
        if start.startswith(magic):
            raise InputError(f"{name} is {what}, not CSV text; {fix}")


def example_header(kind: str) -> str:
    columns = {"animals": ANIMALS_COLUMNS, "outfits": OUTFITS_COLUMNS}.get(kind)
    return ",".join(columns) if columns else "id,..."


def _missing_column_message(column: str, found: list[str], name: str, required: tuple[str, ...]) -> str:
    separator = _other_separator(found)
    if separator:
        return (f"column '{column}' is missing from {name} (found one column: {found[0]!r}); "
                + _separator_fix(separator, required))
    by_case = [f for f in found if f.strip().lower() == column.lower()]
    close = by_case or difflib.get_close_matches(column, found, n=1, cutoff=0.6)
    if close:
        return (
            f"column '{column}' is missing from {name} (found {close[0]!r}, did you mean it?); "
            f"rename that header to '{column}'"
        )
    shown = ", ".join(repr(f) for f in found) or "none"
    return (
        f"column '{column}' is missing from {name} (found columns: {shown}); "
        f"the first line must be a header with {','.join(required)}"
    )


def _separator_fix(separator: str, required: tuple[str, ...]) -> str:
    return (
        f"its columns are separated by {separator}: separate them with commas (in a spreadsheet, export as CSV, "
        f"comma-separated), e.g. {','.join(required)}"
    )


def _other_separator(found: list[str]) -> str | None:
    """The separator a one-column header was written with, when it is not the comma (``id;animal``)."""
    if len(found) != 1:
        return None
    return next((words for char, words in _OTHER_SEPARATORS.items() if char in found[0]), None)


def _read(path: Path, name: str, required: tuple[str, ...]) -> tuple[list[str], list[list[str]], list[int], int]:
    """The header, the data rows, the line each row starts on and how many lines were skipped, in one pass.

    A skipped line is one with no data (blank, or only spaces and commas).
    ``strict`` makes a quote that never closes an error instead of a field
    that silently swallows the rest of the file. The field limit is the
    reader's global setting, raised for this read only.
    """
    header: list[str] = []
    rows: list[list[str]] = []
    lines: list[int] = []
    skipped = 0
    start = 1  # the line the record being read starts on
    previous_limit = csv.field_size_limit(FIELD_LIMIT)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True, skipinitialspace=True)  # `1, "fox, red"` is two fields
            for fields in reader:
                if start == 1:
                    header = fields
                elif any(field.strip() for field in fields):
                    rows.append(fields)
                    lines.append(start)
                else:
                    skipped += 1
                start = reader.line_num + 1
    except UnicodeDecodeError:
        raise InputError(f"{name} is not UTF-8 text; save it as UTF-8 (CSV UTF-8 in a spreadsheet)") from None
    except csv.Error as err:
        separator = _quoted_separator(path) if start == 1 else None
        if separator:  # `"id";"animal"`: the quotes trip the reader before the header's one column is seen
            raise InputError(f"{name}: " + _separator_fix(separator, required)) from None
        raise InputError(_csv_message(name, start, str(err))) from None
    finally:
        csv.field_size_limit(previous_limit)
    return header, rows, lines, skipped


def _quoted_separator(path: Path) -> str | None:
    """The separator of a first line of quoted names that has no comma (``"id";"animal"``), as a message names it."""
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        first = handle.readline()
    if "," in first:
        return None
    return next((words for char, words in _OTHER_SEPARATORS.items() if f'"{char}"' in first), None)


def _csv_message(name: str, line: int, detail: str) -> str:
    """One line for what Python's csv reader refused in the row that starts on ``line``."""
    if "field limit" in detail:
        return (
            f"{name}: line {line} has a field longer than the limit of 1 MiB ({FIELD_LIMIT} characters); "
            'shorten that text, or close the quote (") that runs on past its end'
        )
    if "end of data" in detail:
        return (
            f'{name}: line {line} opens a quote (") that is never closed; close the quote at the end of its text, '
            'and write a quote inside quoted text as two ("")'
        )
    if "expected after" in detail:
        return (
            f'{name}: the row starting on line {line} has text after a closing quote ("); '
            "quote the whole field, close the quote right before the next comma, "
            'and write a quote inside quoted text as two ("")'
        )
    return f"{name} is not a well-formed CSV file at line {line} ({detail}); save it again as CSV"


def _check_fields(rows: list[list[str]], lines: list[int], header: list[str], name: str) -> None:
    for index, fields in enumerate(rows):
        if len(fields) != len(header):
            raise InputError(
                f"{name} is not a well-formed CSV file: {_where(index, lines)} has {len(fields)} fields "
                f"but the header has {len(header)}; every line needs as many fields as the header, "
                "and a text with commas must be in double quotes"
            )


def _id(value: str, where: str, name: str) -> int:
    """``value`` (stripped) as an int64, or an :class:`InputError` that says what is wrong with it."""
    if value == "":
        raise InputError(f"{name}: {where} has an empty '{KEY}'; give every row a whole-number id")
    if not _INTEGER.fullmatch(value):
        ascii_hint = " written with the ASCII digits 0-9" if any(c.isdigit() for c in value if not c.isascii()) else ""
        raise InputError(
            f"{name}: {where} has '{KEY}' {_shown(value)}, which is not a whole number{ascii_hint}; "
            "ids must be integers such as 1, 2, 3"
        )
    digits = value.lstrip("+-").lstrip("0")
    number = int(value) if len(digits) <= _INT64_DIGITS else None
    if number is None or not _INT64_MIN <= number <= _INT64_MAX:
        raise InputError(
            f"{name}: {where} has '{KEY}' {_shown(value)}, which does not fit in 64 bits; "
            f"ids must be between {_INT64_MIN} and {_INT64_MAX}, such as 1, 2, 3"
        )
    return number


def _ids(values: list[str], lines: list[int], name: str) -> pa.Array:
    """The ``id`` column as int64, or an :class:`InputError` about the first bad or repeated value."""
    ids = [_id(value.strip(), _where(index, lines), name) for index, value in enumerate(values)]
    seen: dict[int, int] = {}
    repeated: dict[int, list[int]] = {}
    for index, value in enumerate(ids):
        if value in seen:
            repeated.setdefault(value, [seen[value]]).append(index)
        else:
            seen[value] = index
    if repeated:
        described = [
            f"{value} (lines {', '.join(str(lines[i]) for i in rows)})" for value, rows in sorted(repeated.items())
        ]
        raise InputError(
            f"{name}: '{KEY}' must be unique but {_listed(described)} appear more than once; "
            "a repeated id multiplies the rows of the join, so give each row its own id"
        )
    return pa.array(ids, type=pa.int64())


def _text(values: list[str], lines: list[int], column: str, name: str) -> pa.Array:
    stripped = [value.strip() for value in values]
    empty = [i for i, value in enumerate(stripped) if not value]
    if empty:
        more = f" ({len(empty)} rows in all)" if len(empty) > 1 else ""
        raise InputError(
            f"{name}: {_where(empty[0], lines)} has an empty '{column}'{more}; write the text of every row, "
            "or delete rows you do not want"
        )
    return pa.array(stripped, type=pa.string())


def read_table(path, required_columns: tuple[str, ...], kind: str, shown_as: str | None = None) -> pa.Table:
    """Read one input CSV and check it; raise :class:`InputError` with the fix if it is unusable.

    ``required_columns`` must all be in the header; ``id`` among them is the
    join key and becomes int64, the others are prompt text (stripped, never
    empty). Extra columns are kept as text, unchanged. ``kind`` names the file
    in messages (``"animals"``, ``"outfits"``); ``shown_as`` is the name the user
    gave, when ``path`` is a local copy of it (an ``s3://`` input).
    """
    return read_input(path, required_columns, kind, shown_as).table


def read_input(path, required_columns: tuple[str, ...], kind: str, shown_as: str | None = None) -> InputFile:
    """:func:`read_table`, and how many lines of the file held no data and were skipped.

    The pipeline's summary reports the skipped lines, so that every line of
    an input is either a row or counted as skipped.
    """
    path = Path(path)
    name = shown_as or str(path)
    example = f"data/{kind}.csv"
    _check_path(path, name, kind, example)
    raw_header, rows, lines, skipped = _read(path, name, required_columns)
    header = [_header_name(column) for column in raw_header]  # as the values are: `id ,animal` names `id`
    if not any(header):
        raise InputError(f"{name} has no header line; the first line must be {','.join(required_columns)}")
    _check_header(header, raw_header, name, required_columns)

    if not rows:
        raise InputError(f"{name} has a header but no rows; add one line per {kind[:-1] or kind} under the header")
    _check_fields(rows, lines, header, name)

    columns = [list(values) for values in zip(*rows)]
    arrays = [pa.array(values, type=pa.string()) for values in columns]
    for column in required_columns:
        at = header.index(column)
        values = columns[at]
        arrays[at] = _ids(values, lines, name) if column == KEY else _text(values, lines, column, name)
    return InputFile(pa.Table.from_arrays(arrays, names=header), skipped)


def _header_name(raw: str) -> str:
    """A header name without the spaces and the invisible characters (:data:`_INVISIBLE`) around it."""
    return raw.strip().strip(_INVISIBLE).strip()


def _check_header(header: list[str], raw_header: list[str], name: str, required: tuple[str, ...]) -> None:
    """Every required column once in the (stripped) header, or an :class:`InputError` saying what to change."""
    for column in required:
        if column not in header:
            raise InputError(_missing_column_message(column, header, name, required))
        if header.count(column) > 1:
            spelled = [raw for raw, stripped in zip(raw_header, header) if stripped == column]
            shown = ", ".join(map(repr, spelled))
            how = f" ({shown}: spaces around a name do not count)" if len(set(spelled)) > 1 else ""
            raise InputError(
                f"{name}: column '{column}' appears {header.count(column)} times in the header{how}; keep one"
            )


def match_report(animals: pa.Table, outfits: pa.Table, used_animals: pa.Table | None = None) -> dict:
    """How the two inputs join on ``id``: rows read on each side, pairs joined, and ids left out or without a partner.

    ``used_animals`` is the part of ``animals`` the run draws (``--limit``);
    the pairs it leaves out are ``left_out_by_limit``, not unmatched: an
    unmatched id has no partner in the other file at all. So every row read
    is counted once: ``animals == joined + left_out_by_limit + unmatched_animals``,
    and the same for ``outfits``.
    """
    left = set(animals.column(KEY).to_pylist())
    right = set(outfits.column(KEY).to_pylist())
    used = left if used_animals is None else set(used_animals.column(KEY).to_pylist())
    pairs = left & right
    joined = len(used & right)
    return {
        "animals": animals.num_rows,
        "outfits": outfits.num_rows,
        "joined": joined,
        "left_out_by_limit": len(pairs) - joined,
        "unmatched_animals": len(left - right),
        "unmatched_outfits": len(right - left),
    }
