"""The input checks: every bad file gets one actionable line; good files, odd text included, pass.

Fast: small CSVs in ``tmp_path``, no Ray, no models.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from helpers.errors import InputError
from helpers.models.safeguards import MAX_PROMPT_CHARS
from helpers.pipeline.command import closing_notes, load_inputs
from helpers.pipeline.inputs import ANIMALS_COLUMNS, OUTFITS_COLUMNS, match_report, read_input, read_table
from helpers.pipeline.stages import count_long_prompts, expand_prompt

REPO_DATA = Path(__file__).resolve().parent.parent / "data"


def write(tmp_path: Path, text: str, name: str = "animals.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def read_animals(path: Path) -> pa.Table:
    return read_table(path, ANIMALS_COLUMNS, "animals")


def error_of(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        read_animals(path)
    message = str(caught.value)
    assert "\n" not in message, "an input error is one line"
    return message


# ---------------------------------------------------------------- good files


def test_repo_data_reads_with_typed_columns():
    animals = read_animals(REPO_DATA / "animals.csv")
    outfits = read_table(REPO_DATA / "outfits.csv", OUTFITS_COLUMNS, "outfits")
    assert animals.schema == pa.schema([("id", pa.int64()), ("animal", pa.string())])
    assert outfits.schema == pa.schema([("id", pa.int64()), ("outfit", pa.string())])
    assert match_report(animals, outfits) == {
        "animals": 120,
        "outfits": 120,
        "joined": 120,
        "left_out_by_limit": 0,
        "unmatched_animals": 0,
        "unmatched_outfits": 0,
    }


def test_non_ascii_emoji_and_quoted_commas_pass(tmp_path):
    path = write(tmp_path, 'id,animal\n1,"A fox, small and red"\n2,Ein Bär im Schnee 🐻\n3,"a ""quoted"" owl"\n')
    table = read_animals(path)
    assert table.column("animal").to_pylist() == ["A fox, small and red", "Ein Bär im Schnee 🐻", 'a "quoted" owl']
    assert table.column("id").to_pylist() == [1, 2, 3]


def test_extra_columns_are_kept_as_text(tmp_path):
    path = write(tmp_path, "id,animal,notes,rank\n1,fox,shy,07\n2,owl,,1\n")
    table = read_animals(path)
    assert table.column_names == ["id", "animal", "notes", "rank"]
    assert table.column("rank").to_pylist() == ["07", "1"]  # not guessed as numbers
    assert table.column("notes").to_pylist() == ["shy", ""]


def test_text_is_stripped_and_ids_may_have_spaces_and_signs(tmp_path):
    table = read_animals(write(tmp_path, "id,animal\n 7 ,  a cat  \n-2,dog\n+3,owl\n"))
    assert table.column("id").to_pylist() == [7, -2, 3]
    assert table.column("animal").to_pylist() == ["a cat", "dog", "owl"]


def test_windows_line_endings_are_accepted(tmp_path):
    path = tmp_path / "animals.csv"
    path.write_bytes(b"id,animal\r\n1,fox\r\n2,owl\r\n")
    assert read_animals(path).column("animal").to_pylist() == ["fox", "owl"]


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "animals.csv"
    path.write_bytes("id,animal\n1,fox\n".encode("utf-8-sig"))
    assert read_animals(path).column("id").to_pylist() == [1]


def _animals_1_to_10_outfits_5_to_14(tmp_path):
    """Two inputs that overlap on ids 5-10."""
    animals = read_animals(write(tmp_path, "id,animal\n" + "".join(f"{i},a{i}\n" for i in range(1, 11))))
    outfits = read_table(
        write(tmp_path, "id,outfit\n" + "".join(f"{i},o{i}\n" for i in range(5, 15)), "outfits.csv"),
        OUTFITS_COLUMNS,
        "outfits",
    )
    return animals, outfits


def test_match_report_counts_both_sides(tmp_path):
    animals, outfits = _animals_1_to_10_outfits_5_to_14(tmp_path)
    assert match_report(animals, outfits) == {
        "animals": 10,
        "outfits": 10,
        "joined": 6,
        "left_out_by_limit": 0,
        "unmatched_animals": 4,
        "unmatched_outfits": 4,
    }


def test_pairs_a_limit_leaves_out_are_not_unmatched(tmp_path):
    """Animals 1-10, outfits 5-14, the first 7 animals used: 3 pairs drawn (5-7), 3 left out (8-10)."""
    animals, outfits = _animals_1_to_10_outfits_5_to_14(tmp_path)
    report = match_report(animals, outfits, used_animals=animals.slice(0, 7))
    assert report == {
        "animals": 10,
        "outfits": 10,
        "joined": 3,
        "left_out_by_limit": 3,
        "unmatched_animals": 4,
        "unmatched_outfits": 4,
    }
    for side in ("animals", "outfits"):
        assert report[side] == report["joined"] + report["left_out_by_limit"] + report[f"unmatched_{side}"]


def limited(limit: int | None, animals: Path = REPO_DATA / "animals.csv", outfits: Path = REPO_DATA / "outfits.csv"):
    """What the pipeline command reads before Ray: ``load_inputs`` on two files, with ``--limit``."""
    return load_inputs(argparse.Namespace(animals=animals, outfits=outfits, limit=limit))


def test_limit_counts_what_was_read_and_what_it_left_out():
    animals, _, report = limited(12)
    assert animals.num_rows == 12
    assert {k: report[k] for k in ("animals", "outfits", "joined", "left_out_by_limit")} == {
        "animals": 120, "outfits": 120, "joined": 12, "left_out_by_limit": 108,
    }  # fmt: skip
    assert report["unmatched_animals"] == report["unmatched_outfits"] == 0, "their partners exist; --limit left them"


# ---------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    message = error_of(tmp_path / "nope.csv")
    assert "nope.csv" in message and "does not exist" in message and "data/animals.csv" in message


def test_directory_instead_of_file(tmp_path):
    message = error_of(tmp_path)
    assert str(tmp_path) in message and "folder, not a file" in message


def test_unreadable_file(tmp_path, monkeypatch):
    """Unit test: the denial is simulated (``os.access``), since the suite may run as root, who reads any file."""
    path = write(tmp_path, "id,animal\n1,fox\n")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == path else real_access(p, mode))
    message = error_of(path)
    assert message == f"{path} cannot be read (permission denied); make it readable, e.g. chmod a+r {path}"


def test_file_in_a_folder_this_user_may_not_enter(tmp_path, monkeypatch):
    """Unit test: the denial is simulated (``Path.stat``), since the suite may run as root, who enters any folder."""
    path = write(tmp_path, "id,animal\n1,fox\n")
    real_stat = Path.stat

    def stat(self, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    message = error_of(path)
    assert message.startswith(f"{path} cannot be reached (permission denied on a folder of its path)"), message


def test_empty_file(tmp_path):
    message = error_of(write(tmp_path, ""))
    assert "animals.csv" in message and "empty (0 bytes)" in message and "id,animal" in message


def test_header_only(tmp_path):
    message = error_of(write(tmp_path, "id,animal\n"))
    assert "animals.csv" in message and "no rows" in message


def test_blank_first_line_is_no_header(tmp_path):
    message = error_of(write(tmp_path, "\n\n"))
    assert "no header" in message


def test_misspelled_column_suggests_closest(tmp_path):
    message = error_of(write(tmp_path, "id,animals\n1,fox\n"))
    assert "column 'animal' is missing from" in message and "animals.csv" in message
    assert "found 'animals', did you mean it?" in message


def test_column_in_other_case_is_suggested(tmp_path):
    message = error_of(write(tmp_path, "ID,animal\n1,fox\n"))
    assert "column 'id' is missing" in message and "found 'ID'" in message


def test_missing_column_without_close_name_lists_header(tmp_path):
    message = error_of(write(tmp_path, "id,colour\n1,red\n"))
    assert "column 'animal' is missing" in message and "'colour'" in message and "id,animal" in message


def test_missing_id_column(tmp_path):
    message = error_of(write(tmp_path, "animal\nfox\n"))
    assert "column 'id' is missing" in message


def test_duplicate_header_column(tmp_path):
    message = error_of(write(tmp_path, "id,animal,animal\n1,fox,owl\n"))
    assert "'animal' appears 2 times" in message


@pytest.mark.parametrize("bad", ["abc", "1.5", "2e3", "0x10", "1 2"])
def test_non_integer_id_reports_line_and_value(tmp_path, bad):
    message = error_of(write(tmp_path, f"id,animal\n1,fox\n{bad},owl\n"))
    assert "line 3 (row 2)" in message and repr(bad) in message and "not a whole number" in message


def test_empty_id_reports_line(tmp_path):
    message = error_of(write(tmp_path, "id,animal\n1,fox\n,owl\n"))
    assert "line 3 (row 2)" in message and "empty 'id'" in message


def test_duplicate_ids_are_listed(tmp_path):
    message = error_of(write(tmp_path, "id,animal\n1,fox\n2,owl\n1,cat\n3,dog\n2,hen\n2,ant\n"))
    assert "1 (lines 2, 4)" in message and "2 (lines 3, 6, 7)" in message
    assert "multiplies the rows of the join" in message


def test_empty_prompt_text_reports_first_row(tmp_path):
    message = error_of(write(tmp_path, 'id,animal\n1,fox\n2,"   "\n3,\n'))
    assert "line 3 (row 2)" in message and "empty 'animal'" in message and "2 rows in all" in message


def test_ragged_row_is_a_csv_error(tmp_path):
    message = error_of(write(tmp_path, "id,animal\n1,fox,extra\n"))
    assert "not a well-formed CSV" in message and "double quotes" in message


def test_ragged_row_names_its_line_and_field_count(tmp_path):
    message = error_of(write(tmp_path, "id,animal\n1,fox\n\n2,owl,extra\n"))
    assert "line 4 (row 2) has 3 fields" in message and "header has 2" in message


def test_not_utf8(tmp_path):
    path = tmp_path / "animals.csv"
    path.write_bytes("id,animal\n1,B\xe4r\n".encode("latin-1"))
    assert "not UTF-8" in error_of(path)


def test_gzip_file_is_told_to_decompress(tmp_path):
    path = tmp_path / "animals.csv.gz"
    path.write_bytes(gzip.compress(b"id,animal\n1,fox\n"))
    message = error_of(path)
    assert "animals.csv.gz is a gzip-compressed file" in message and "decompress it" in message
    assert "UTF-8 text" not in message


def zipped(name: str, text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, text)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["animals.xlsx", "animals.zip"])
def test_workbook_or_zip_is_told_to_export_csv(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(zipped("xl/worksheets/sheet1.xml", "<worksheet/>"))
    message = error_of(path)
    assert "zip archive" in message and "export it as CSV (comma-separated, UTF-8)" in message
    assert "save it as UTF-8" not in message


def test_old_xls_workbook_is_told_to_export_csv(tmp_path):
    path = tmp_path / "animals.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))  # an OLE2 compound file's header
    message = error_of(path)
    assert "an .xls workbook" in message and "export it as CSV (comma-separated, UTF-8)" in message


@pytest.mark.parametrize(("separator", "words"), [(";", "semicolons"), ("\t", "tabs")])
def test_header_with_another_separator_is_told_to_use_commas(tmp_path, separator, words):
    message = error_of(write(tmp_path, f"id{separator}animal\n1{separator}fox\n"))
    assert f"separated by {words}" in message and "separate them with commas" in message
    assert "id,animal" in message


def test_header_names_are_stripped_as_values_are(tmp_path):
    table = read_animals(write(tmp_path, "id ,animal \n1,fox\n2 , owl\n"))
    assert table.column_names == ["id", "animal"]
    assert table.column("id").to_pylist() == [1, 2] and table.column("animal").to_pylist() == ["fox", "owl"]


def test_header_name_repeated_once_stripped_is_refused(tmp_path):
    message = error_of(write(tmp_path, "id,animal,animal \n1,fox,owl\n"))
    assert "'animal' appears 2 times" in message and "spaces around a name do not count" in message
    assert "'animal '" in message and "keep one" in message


def test_a_space_after_the_comma_is_not_part_of_the_field(tmp_path):
    """A hand-written CSV: ``id, animal`` and ``1, "fox, red"`` (a quoted field after a space)."""
    table = read_animals(write(tmp_path, 'id, animal\n1, "fox, red"\n2, owl\n'))
    assert table.column("animal").to_pylist() == ["fox, red", "owl"]
    assert table.column("id").to_pylist() == [1, 2]


def test_a_local_copy_is_named_as_the_user_gave_it(tmp_path):
    """An ``s3://`` input is checked in a local copy; the message names the input, not the copy."""
    with pytest.raises(InputError) as caught:
        read_table(write(tmp_path, "id,animal\n1,fox\n1,owl\n"), ANIMALS_COLUMNS, "animals",
                   shown_as="s3://bucket/in/animals.csv")
    assert str(caught.value).startswith("s3://bucket/in/animals.csv") and str(tmp_path) not in str(caught.value)


# ---------------------------------------------------------------- hard ids


@pytest.mark.parametrize("bad", ["9" * 5000, "-" + "1" * 5000, "x" * 5000])
def test_id_of_thousands_of_characters_is_rejected_in_one_short_line(tmp_path, bad):
    message = error_of(write(tmp_path, f"id,animal\n1,fox\n{bad},owl\n"))
    assert "line 3 (row 2)" in message and f"({len(bad)} characters)" in message
    assert len(message) < 400, "the value is shortened, not printed whole"


@pytest.mark.parametrize("bad", ["9223372036854775808", "-9223372036854775809", "0" * 30 + "9" * 20])
def test_id_beyond_int64_says_64_bits(tmp_path, bad):
    message = error_of(write(tmp_path, f"id,animal\n1,fox\n{bad},owl\n"))
    assert "line 3 (row 2)" in message and "64 bits" in message and "-9223372036854775808" in message


def test_int64_limits_and_leading_zeros_are_accepted(tmp_path):
    text = "id,animal\n9223372036854775807,fox\n-9223372036854775808,owl\n" + "0" * 30 + "7,cat\n"
    assert read_animals(write(tmp_path, text)).column("id").to_pylist() == [2**63 - 1, -(2**63), 7]


@pytest.mark.parametrize("bad", ["\u0661\u0662", "\uff11\uff12", "1\u00b2", "\u00b9"])
def test_non_ascii_digits_are_rejected(tmp_path, bad):
    message = error_of(write(tmp_path, f"id,animal\n1,fox\n{bad},owl\n"))
    assert "line 3 (row 2)" in message and repr(bad) in message and "ASCII digits 0-9" in message


# ---------------------------------------------------------------- hard CSV


def test_header_and_fields_over_128_kib_read_fine(tmp_path):
    long_name, long_text = "n" * 200_000, "a fox " * 170_000  # 200 KB and 1,020,000 characters
    table = read_animals(write(tmp_path, f"id,animal,{long_name}\n1,{long_text},x\n2,owl,y\n"))
    assert table.column_names == ["id", "animal", long_name]
    assert table.column("animal").to_pylist() == [long_text.strip(), "owl"]


def test_field_over_the_limit_names_line_and_limit(tmp_path):
    message = error_of(write(tmp_path, f"id,animal\n1,fox\n\n2,{'x' * (2 << 20)}\n"))
    assert "line 4" in message and "1 MiB" in message and "shorten" in message
    assert len(message) < 400


def test_header_over_the_limit_names_line_1(tmp_path):
    message = error_of(write(tmp_path, f"id,animal,{'n' * (2 << 20)}\n1,fox,x\n"))
    assert "line 1" in message and "1 MiB" in message


def test_unclosed_quote_names_the_line_it_opens_on(tmp_path):
    message = error_of(write(tmp_path, 'id,animal\n1,fox\n2,"owl\n3,cat\n4,hen\n'))
    assert "line 3" in message and "never closed" in message and "close the quote" in message


def test_text_after_a_closing_quote_names_the_line(tmp_path):
    message = error_of(write(tmp_path, 'id,animal\n1,fox\n\n2,"owl" hat\n'))
    assert "line 4" in message and "closing quote" in message


def test_quoted_newline_is_kept_and_later_lines_are_real(tmp_path):
    table = read_animals(write(tmp_path, 'id,animal\n1,fox\n3,"A red\nfox"\n4,owl\n'))
    assert table.column("animal").to_pylist() == ["fox", "A red\nfox", "owl"]
    message = error_of(write(tmp_path, 'id,animal\n1,fox\n3,"A red\nfox"\nfour,owl\n'))
    assert "line 5 (row 3)" in message


def test_blank_lines_are_skipped_and_lines_stay_real(tmp_path):
    message = error_of(write(tmp_path, "id,animal\n1,fox\n\n2,owl\n\n\nx,cat\n\n"))
    assert "line 7 (row 3)" in message
    message = error_of(write(tmp_path, "id,animal\n\n1,fox\n2,\n"))
    assert "line 4 (row 2)" in message and "empty 'animal'" in message


def test_lines_of_only_spaces_or_commas_are_skipped(tmp_path):
    table = read_animals(write(tmp_path, "id,animal\n1,fox\n   \n,\n \t, \n2,owl\n\n\n"))
    assert table.column("id").to_pylist() == [1, 2]


def test_skipped_lines_are_counted(tmp_path):
    """Every line of the file is a row, the header, or counted as skipped: 1 + 2 + 5 = 8 lines."""
    read = read_input(write(tmp_path, "id,animal\n1,fox\n   \n,\n \t, \n2,owl\n\n\n"), ANIMALS_COLUMNS, "animals")
    assert read.table.num_rows == 2 and read.skipped_blank_lines == 5
    assert read_input(REPO_DATA / "animals.csv", ANIMALS_COLUMNS, "animals").skipped_blank_lines == 0


def test_skipped_lines_reach_the_summary_and_the_closing_lines(tmp_path):
    animals = write(tmp_path, "id,animal\n1,fox\n\n,,\n2,owl\n")
    outfits = write(tmp_path, "id,outfit\n1,hat\n2,scarf\n", "outfits.csv")
    args = argparse.Namespace(animals=animals, outfits=outfits, limit=None)
    _, _, report = load_inputs(args)
    assert report["skipped_blank_lines"] == {"animals": 2, "outfits": 0}
    notes = closing_notes(report, args)
    assert notes == [f"note: skipped 2 line(s) with no data (blank, or only commas) in {animals}"]


def test_header_with_only_blank_rows_has_no_rows(tmp_path):
    assert "no rows" in error_of(write(tmp_path, "id,animal\n\n,\n\n"))


def test_repeated_ids_name_real_lines(tmp_path):
    message = error_of(write(tmp_path, 'id,animal\n1,fox\n\n2,"red\nowl"\n1,cat\n'))
    assert "1 (lines 2, 6)" in message


# ---------------------------------------------------------------- prompts the models cut


def test_long_prompts_of_joined_rows_are_counted_before_ray(tmp_path):
    """Row 2's prompt is one character too long, row 3's fits exactly, row 4 has no outfit and is not drawn."""
    suffix = len(" wearing a hat")
    animals = write(
        tmp_path,
        f"id,animal\n1,fox\n2,{'x' * (MAX_PROMPT_CHARS - suffix + 1)}\n3,{'y' * (MAX_PROMPT_CHARS - suffix)}\n"
        f"4,{'z' * 5000}\n",
    )
    outfits = write(tmp_path, "id,outfit\n1,hat\n2,hat\n3,hat\n", "outfits.csv")
    args = argparse.Namespace(animals=animals, outfits=outfits, limit=None)
    animals_table, outfits_table, report = load_inputs(args)
    assert report["prompts_cut"] == 1
    assert "note: 1 prompt(s) longer than 1000 characters were cut" in " ".join(closing_notes(report, args))
    batch = expand_prompt({"animal": np.array(["x" * (MAX_PROMPT_CHARS - suffix + 1)]), "outfit": np.array(["hat"])})
    assert len(batch["prompt"][0]) == MAX_PROMPT_CHARS + 1, "the count and the stage build the same prompt"
    assert count_long_prompts(animals_table.slice(0, 1), outfits_table) == 0, "only the rows the run draws count"


def test_an_ordinary_run_has_no_closing_notes():
    args = argparse.Namespace(animals=REPO_DATA / "animals.csv", outfits=REPO_DATA / "outfits.csv", limit=None)
    _, _, report = load_inputs(args)
    assert report["prompts_cut"] == 0 and report["skipped_blank_lines"] == {"animals": 0, "outfits": 0}
    assert closing_notes(report, args) == []


def test_rows_the_join_leaves_out_are_said_on_each_side(tmp_path):
    """Only an empty join is an error; rows without a partner are counted in the JSON and said in words."""
    animals = write(tmp_path, "id,animal\n1,fox\n2,owl\n3,cat\n")
    outfits = write(tmp_path, "id,outfit\n2,hat\n3,scarf\n4,boots\n5,cape\n", "outfits.csv")
    args = argparse.Namespace(animals=animals, outfits=outfits, limit=None)
    _, _, report = load_inputs(args)
    assert report["unmatched_animals"] == 1 and report["unmatched_outfits"] == 2
    said = "have an id that {} does not have, and were not drawn (rows are paired by equal ids)"
    assert closing_notes(report, args) == [
        f"note: 1 row(s) of {animals} " + said.format(outfits),
        f"note: 2 row(s) of {outfits} " + said.format(animals),
    ]


@pytest.mark.parametrize(("separator", "words"), [(";", "semicolons"), ("\t", "tabs")])
def test_a_quoted_header_with_another_separator_is_told_to_use_commas(tmp_path, separator, words):
    """R's write.csv2 and "quote all text cells" quote the names: the reader trips on the quotes first."""
    message = error_of(write(tmp_path, f'"id"{separator}"animal"\n1{separator}"fox"\n'))
    assert f"separated by {words}: separate them with commas" in message and "id,animal" in message
    assert "closing quote" not in message


@pytest.mark.parametrize("invisible", ["\ufeff", "\u200b"])
def test_invisible_characters_around_a_header_name_do_not_count(tmp_path, invisible):
    """A second byte-order mark (a file saved twice with one) or a zero-width space pasted from a web page."""
    table = read_animals(write(tmp_path, f"\ufeff{invisible}id,animal{invisible}\n1,fox\n"))
    assert table.column_names == ["id", "animal"]


def test_a_misspelt_header_name_is_shown_with_what_cannot_be_seen(tmp_path):
    message = error_of(write(tmp_path, "i\u200bd,animal\n1,fox\n"))
    assert "(found 'i\\u200bd', did you mean it?)" in message


def test_a_pipe_is_told_to_save_to_a_file(tmp_path):
    """``--animals <(zcat animals.csv.gz)``: a pipe has no size, and its bytes can be read only once."""
    pipe = tmp_path / "animals.csv"
    os.mkfifo(pipe)
    message = error_of(pipe)
    assert "is not a file but a pipe or a device" in message and "zcat animals.csv.gz > animals.csv" in message
