"""The lab of lesson 02 (:mod:`helpers.labs.lesson02`), tested three ways: starter, solutions, wrong answers."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.labs.framework import CORRECT, INCORRECT, NOT_ATTEMPTED, get_lab


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


def batch_size_prompt_length(batch):
    batch["prompt_length"] = np.full(len(batch["prompt"]), len(batch["prompt"]))
    return batch


def word_count_prompt_length(batch):
    batch["prompt_length"] = np.array([len(p.split()) for p in batch["prompt"]])
    return batch


def forgets_return(batch):
    batch["prompt_length"] = np.array([len(p) for p in batch["prompt"]])


@pytest.fixture
def length_lab():
    return get_lab("02_prompt_length")


@pytest.mark.parametrize("starter", [..., starter_prompt_length])
def test_prompt_length_starter_is_not_attempted(length_lab, starter):
    assert status(length_lab.evaluate(add_prompt_length=starter)) == NOT_ATTEMPTED


@pytest.mark.parametrize("answer", [solution_prompt_length, other_correct_prompt_length])
def test_prompt_length_solutions_are_correct(length_lab, answer):
    assert status(length_lab.evaluate(add_prompt_length=answer)) == CORRECT


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (batch_size_prompt_length, "number of rows in the batch"),
        (word_count_prompt_length, "characters"),
        (forgets_return, "return batch"),
    ],
)
def test_prompt_length_wrong_answers_are_incorrect(length_lab, answer, words):
    outcome = length_lab.evaluate(add_prompt_length=answer)
    assert status(outcome) == INCORRECT and words in outcome.message
