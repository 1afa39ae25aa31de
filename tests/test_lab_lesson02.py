"""The lab of lesson 02 (:mod:`helpers.labs.lesson02`), tested three ways: starter, solutions, wrong answers."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest

from helpers.labs.framework import CORRECT, INCORRECT, NOT_ATTEMPTED, get_lab

REPO_ROOT = Path(__file__).resolve().parents[1]


def status(outcome):
    return outcome.status


# --------------------------------------------------------------------------- 02_prompt_length


def starter_prompt_length(batch):
    # TODO: your code here
    return batch


def solution_prompt_length(batch):
    batch["prompt_length"] = np.array([len(p) for p in batch["prompt"]])
    return batch


def other_correct_prompt_length(batch):
    batch["prompt_length"] = [float(len(str(p))) for p in batch["prompt"]]
    return batch


def new_dict_prompt_length(batch):
    """Returns a new dict instead of changing the one it got."""
    return {**batch, "prompt_length": np.array([len(prompt) for prompt in batch["prompt"]])}


def characters(text):
    return len(text)


def helper_with_option_prompt_length(batch, column="prompt"):
    """A helper function per prompt, and an optional parameter with a default."""
    batch["prompt_length"] = np.vectorize(characters)(batch[column])
    return batch


def pandas_prompt_length(batch):
    import pandas as pd

    batch["prompt_length"] = pd.Series(batch["prompt"]).str.len().to_numpy()
    return batch


def returns_a_dataframe(batch):
    """``map_batches`` takes a pandas DataFrame back as a batch, whatever the batch format it handed out."""
    import pandas as pd

    frame = pd.DataFrame(batch)
    frame["prompt_length"] = frame["prompt"].str.len()
    return frame


def returns_a_pyarrow_table(batch):
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.table(batch)
    return table.append_column("prompt_length", pc.utf8_length(table["prompt"]))


def batch_size_prompt_length(batch):
    batch["prompt_length"] = np.full(len(batch["prompt"]), len(batch["prompt"]))
    return batch


def word_count_prompt_length(batch):
    batch["prompt_length"] = np.array([len(p.split()) for p in batch["prompt"]])
    return batch


def forgets_return(batch):
    batch["prompt_length"] = np.array([len(p) for p in batch["prompt"]])


def without_spaces_prompt_length(batch):
    batch["prompt_length"] = np.array([len(p.replace(" ", "")) for p in batch["prompt"]])
    return batch


def only_the_new_column(batch):
    return {"prompt_length": np.array([len(p) for p in batch["prompt"]])}


def replaces_the_prompts(batch):
    batch["prompt"] = np.array([len(p) for p in batch["prompt"]])
    return batch


def another_column_name(batch):
    batch["length"] = np.array([len(p) for p in batch["prompt"]])
    return batch


def one_number_for_the_batch(batch):
    batch["prompt_length"] = len(batch["prompt"])
    return batch


def characters_of_each_word(batch):
    batch["prompt_length"] = [[len(word) for word in p.split()] for p in batch["prompt"]]
    return batch


def crashes_on_the_batch(batch):
    batch["prompt_length"] = batch["prompt"].str.len()  # pandas' spelling, on a NumPy array
    return batch


@pytest.fixture
def length_lab():
    return get_lab("02_prompt_length")


@pytest.mark.parametrize("starter", [..., starter_prompt_length])
def test_prompt_length_starter_is_not_attempted(length_lab, starter):
    assert status(length_lab.evaluate(add_prompt_length=starter)) == NOT_ATTEMPTED


@pytest.mark.parametrize(
    "answer",
    [
        solution_prompt_length,
        other_correct_prompt_length,
        new_dict_prompt_length,
        helper_with_option_prompt_length,
        pandas_prompt_length,
        returns_a_dataframe,
        returns_a_pyarrow_table,
    ],
)
def test_prompt_length_solutions_are_correct(length_lab, answer):
    assert status(length_lab.evaluate(add_prompt_length=answer)) == CORRECT


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (batch_size_prompt_length, "number of rows in the batch"),
        (word_count_prompt_length, "characters"),
        (forgets_return, "return batch"),
        (without_spaces_prompt_length, "spaces included"),
        (only_the_new_column, "lost `id`, `prompt`"),
        (replaces_the_prompts, "no `prompt_length` column"),
        (another_column_name, "no `prompt_length` column; it has `id`, `length`, `prompt`"),
        (one_number_for_the_batch, "shape () for a batch of 8 rows"),
        (characters_of_each_word, "not one array of numbers"),
        (crashes_on_the_batch, "`add_prompt_length` on a batch of 8 rows raised AttributeError"),
    ],
)
def test_prompt_length_wrong_answers_are_incorrect(length_lab, answer, words):
    outcome = length_lab.evaluate(add_prompt_length=answer)
    assert status(outcome) == INCORRECT and words in outcome.message


def test_prompt_length_before_numpy_is_imported_says_to_run_the_import_cell(length_lab):
    def uses_np_before_its_import_ran(batch):
        batch["prompt_length"] = numpy_not_imported.array([len(p) for p in batch["prompt"]])  # noqa: F821
        return batch

    outcome = length_lab.evaluate(add_prompt_length=uses_np_before_its_import_ran)
    assert status(outcome) == INCORRECT
    assert "raised NameError: name 'numpy_not_imported' is not defined" in outcome.message
    assert "Run the cell that defines or imports `numpy_not_imported` (Run > Run All Above)" in outcome.message


def test_the_first_code_cell_of_lesson_02_imports_what_the_lab_answer_uses():
    """A learner who restarts, runs the first cell and then the lab cells must not meet a NameError."""
    for folder in ("solutions", "notebooks"):
        notebook = nbformat.read(REPO_ROOT / folder / "02_transform.ipynb", as_version=4)
        first = next(cell for cell in notebook.cells if cell.cell_type == "code")
        assert "import numpy as np" in first.source.splitlines(), folder
