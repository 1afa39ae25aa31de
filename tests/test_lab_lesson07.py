"""The lab of lesson 07 (:mod:`helpers.labs.lesson07`), tested three ways: starter, solution, wrong answers.

The datasets are made with Ray itself, on the test run's shared session, the ways a learner may
make them from the instructions; the check reads their blocks back from the object store.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers.labs.data import csv_rows, data_file
from helpers.labs.framework import CORRECT, INCORRECT, NOT_ATTEMPTED, get_lab
from helpers.labs.lesson07 import rows_per_block

ANIMALS = len(csv_rows("animals.csv"))


@pytest.fixture
def lab():
    return get_lab("07_blocks")


@pytest.fixture(scope="module")
def ray_data(session):
    import ray

    return ray


@pytest.fixture(scope="module")
def animals(ray_data):
    return ray_data.data.read_csv(str(data_file("animals.csv")))


@pytest.fixture(scope="module")
def four_blocks(animals):
    """The solution's dataset: ``animals.repartition(4).materialize()``."""
    return animals.repartition(4).materialize()


def refs_rows(ray, dataset) -> list[int]:
    """The solution's row counts: each block fetched through its ref."""
    return [ray.get(e.ref).num_rows for bundle in dataset.iter_internal_ref_bundles() for e in bundle.blocks]


@pytest.mark.parametrize("starter", [..., None, "TODO"])
def test_starter_is_not_attempted(lab, starter):
    assert lab.evaluate(four_blocks=starter, block_rows=starter).status == NOT_ATTEMPTED


def test_solution_is_correct(lab, ray_data, four_blocks):
    block_rows = refs_rows(ray_data, four_blocks)
    assert sorted(block_rows) == [ANIMALS // 4] * 4  # repartition splits the rows evenly
    outcome = lab.evaluate(four_blocks=four_blocks, block_rows=block_rows)
    assert outcome.status == CORRECT, outcome.message


def test_blocks_read_with_four_blocks_and_counted_with_map_batches_are_correct(lab, ray_data):
    """``read_csv(..., override_num_blocks=4)``, rows counted by a whole-block ``map_batches``."""
    dataset = ray_data.data.read_csv(str(data_file("animals.csv")), override_num_blocks=4).materialize()
    counted = dataset.map_batches(lambda block: {"rows": [len(block["id"])]}, batch_size=None).take_all()
    block_rows = np.array([row["rows"] for row in counted])
    outcome = lab.evaluate(four_blocks=dataset, block_rows=block_rows)
    assert outcome.status == CORRECT, outcome.message


def test_shuffled_blocks_counted_with_whole_block_batches_are_correct(lab, animals):
    """``repartition(4, shuffle=True)``; ``iter_batches(batch_size=None)`` hands over whole blocks."""
    dataset = animals.repartition(4, shuffle=True).materialize()
    block_rows = tuple(len(batch["id"]) for batch in dataset.iter_batches(batch_size=None))
    outcome = lab.evaluate(four_blocks=dataset, block_rows=block_rows)
    assert outcome.status == CORRECT, outcome.message


def test_rows_per_block_reads_the_blocks(ray_data, four_blocks, animals):
    assert rows_per_block(four_blocks) == refs_rows(ray_data, four_blocks)
    assert sum(rows_per_block(animals.materialize())) == ANIMALS


def test_counts_of_another_split_are_incorrect(lab, ray_data, four_blocks):
    """The right total and length, but not the blocks of this dataset."""
    outcome = lab.evaluate(four_blocks=four_blocks, block_rows=[60, 20, 20, 20])
    assert outcome.status == INCORRECT
    assert "not the row counts of the blocks" in outcome.message and "30" not in outcome.message


def test_a_lazy_dataset_is_incorrect_and_says_materialize(lab, ray_data, animals, four_blocks):
    """``animals.repartition(4)`` without ``materialize()``: it has no blocks yet."""
    outcome = lab.evaluate(four_blocks=animals.repartition(4), block_rows=refs_rows(ray_data, four_blocks))
    assert outcome.status == INCORRECT and "lazy Dataset" in outcome.message and "Materialize" in outcome.message


def test_default_batches_are_incorrect_and_say_batches_are_not_blocks(lab, four_blocks):
    """``[len(b["id"]) for b in four_blocks.iter_batches()]``: one batch of every row."""
    block_rows = [len(batch["id"]) for batch in four_blocks.iter_batches()]
    assert block_rows == [ANIMALS]
    outcome = lab.evaluate(four_blocks=four_blocks, block_rows=block_rows)
    assert outcome.status == INCORRECT
    assert "1 entries" in outcome.message and "Batches are not blocks" in outcome.message


def test_the_number_of_blocks_is_incorrect(lab, four_blocks):
    """``block_rows = four_blocks.num_blocks()``: how many blocks, not their rows."""
    outcome = lab.evaluate(four_blocks=four_blocks, block_rows=four_blocks.num_blocks())
    assert outcome.status == INCORRECT and "one number, 4" in outcome.message


def test_the_blocks_themselves_are_incorrect_and_say_what_they_hold(lab, ray_data, four_blocks):
    """``ray.get(entry.ref)`` without ``.num_rows``: the blocks (pyarrow Tables), not their row counts."""
    tables = [ray_data.get(e.ref) for bundle in four_blocks.iter_internal_ref_bundles() for e in bundle.blocks]
    outcome = lab.evaluate(four_blocks=four_blocks, block_rows=tables)
    assert outcome.status == INCORRECT
    assert "`block_rows` is a list of Table values; make it a list of whole numbers" in outcome.message


def test_bytes_per_block_are_incorrect(lab, four_blocks):
    """``entry.metadata.size_bytes`` instead of the rows."""
    sizes = [e.metadata.size_bytes for bundle in four_blocks.iter_internal_ref_bundles() for e in bundle.blocks]
    outcome = lab.evaluate(four_blocks=four_blocks, block_rows=sizes)
    assert outcome.status == INCORRECT and "count rows, not bytes" in outcome.message


def test_the_default_blocks_of_the_read_are_incorrect(lab, ray_data, animals):
    """The animals as read, materialized without asking for four blocks."""
    dataset = animals.materialize()
    outcome = lab.evaluate(four_blocks=dataset, block_rows=refs_rows(ray_data, dataset))
    assert outcome.status == INCORRECT
    assert f"has {dataset.num_blocks()} blocks; ask for four" in outcome.message


def test_another_dataset_is_incorrect(lab, ray_data):
    dataset = ray_data.data.range(ANIMALS, override_num_blocks=4).materialize()
    outcome = lab.evaluate(four_blocks=dataset, block_rows=refs_rows(ray_data, dataset))
    assert outcome.status == INCORRECT and "the animals have" in outcome.message


def test_an_empty_dataset_is_incorrect_and_says_so_not_a_check_error(lab, ray_data):
    """``filter`` that keeps nothing, then materialize: Ray gives no schema, which the check must not trip on."""
    empty = ray_data.data.range(4).filter(lambda row: False).materialize()
    outcome = lab.evaluate(four_blocks=empty, block_rows=[])
    assert outcome.status == INCORRECT and "`four_blocks` holds no rows; keep every one of the" in outcome.message


def test_a_dataset_whose_blocks_are_gone_is_incorrect_and_says_to_run_its_cell_again(lab, ray_data):
    """A Dataset made before Ray was stopped: its blocks are gone. Here their owner, an actor, is killed (the
    suite's Ray must live on), so reading them raises Ray's own error, as after a stop."""
    import time

    @ray_data.remote(num_cpus=0)
    class Owner:
        def blocks(self):
            import pyarrow as pa

            return [ray_data.put(pa.table({"id": list(range(i * 30, i * 30 + 30)), "animal": ["a fox"] * 30}))
                    for i in range(4)]

    owner = Owner.remote()
    stale = ray_data.data.from_arrow_refs(ray_data.get(owner.blocks.remote(), timeout=120))
    ray_data.kill(owner)
    time.sleep(2)  # the owner's death reaches this driver
    outcome = lab.evaluate(four_blocks=stale, block_rows=[30, 30, 30, 30])
    assert outcome.status == INCORRECT, outcome
    assert "a Dataset made before Ray stopped is gone with it. Run the cells above again" in outcome.message


def test_a_list_of_rows_is_incorrect(lab):
    outcome = lab.evaluate(four_blocks=[{"id": 1, "animal": "a fox"}], block_rows=[1])
    assert outcome.status == INCORRECT and "a Ray Dataset" in outcome.message
