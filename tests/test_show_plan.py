"""The pipeline drawing reads the Dataset's plan (nothing runs) and says what each operator asks for."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from helpers.runtime.settings import REPO_ROOT
from helpers.show.plan import PlanStep, pipeline_svg, pipeline_text, plan_steps

DATA = REPO_ROOT / "data"


class Model:
    """A stand-in callable class: the plan records the class, nothing constructs it."""

    def __call__(self, batch):
        return batch


def expand(batch):
    return batch


@pytest.fixture(scope="module")
def lesson_05_plan(session):
    import ray

    animals = ray.data.read_csv(str(DATA / "animals.csv"))
    outfits = ray.data.read_csv(str(DATA / "outfits.csv"))
    dataset = (
        animals.join(outfits, join_type="inner", num_partitions=4, on=("id",))
        .repartition(target_num_rows_per_block=4)
        .map_batches(expand)
        .map_batches(Model, batch_size=4, num_gpus=0.6, compute=ray.data.ActorPoolStrategy(size=2))
        .map_batches(
            Model, batch_size=8, num_gpus=0.4, num_cpus=2, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=3)
        )
    )
    return plan_steps(dataset)


def test_ray_internals_the_drawing_reads_are_still_there(session):
    """Fails loudly when a Ray upgrade moves what plan_steps reads (see its docstring)."""
    import ray

    dataset = ray.data.range(8).map_batches(Model, batch_size=2, num_gpus=1, compute=ray.data.ActorPoolStrategy(size=2))
    op = dataset._logical_plan.dag
    assert [dep.name for dep in op.input_dependencies] == ["ReadRange"]
    assert op.batch_size == 2
    assert op.ray_remote_args["num_gpus"] == 1
    assert (op.compute.min_size, op.compute.max_size) == (2, 2)


def test_every_operator_in_order_with_where_its_blocks_come_from(lesson_05_plan):
    names = [step.name for step in lesson_05_plan]
    assert names == [
        "ReadCSV", "ReadCSV", "Join", "StreamingRepartition", "MapBatches(expand)", "MapBatches(Model)",
        "MapBatches(Model)",
    ]  # fmt: skip
    assert [step.inputs for step in lesson_05_plan] == [(), (), (0, 1), (2,), (3,), (4,), (5,)]


def test_tasks_actors_resources_and_batch_sizes(lesson_05_plan):
    read, _, join, repartition, expand_step, llm, image = lesson_05_plan
    assert (read.kind, read.actors) == ("read", None)
    assert join.kind == "shuffle" and "inner join on id, 4 partitions" in join.detail
    assert repartition.detail == "4 rows per block"
    assert (expand_step.kind, expand_step.runs_as, expand_step.batch_size) == ("tasks", "tasks", None)
    assert (llm.kind, llm.actors, llm.num_gpus, llm.batch_size) == ("actors", "2", 0.6, 4)
    assert llm.summary() == "actor pool of 2 · 0.6 GPU + 1 CPU each · batch_size=4"
    assert (image.actors, image.num_gpus, image.num_cpus) == ("1-3", 0.4, 2.0)
    assert "0.4 GPU + 2 CPU each" in image.summary()


def test_text_numbers_the_steps_and_names_both_join_inputs(lesson_05_plan):
    text = pipeline_text(lesson_05_plan)
    lines = text.splitlines()
    assert lines[0].startswith("Pipeline: 7 operators")
    assert lines[3].lstrip().startswith("3. Join") and lines[3].endswith("<- 1, 2")
    assert "actor pool of 2" in lines[6] and "batch_size=4" in lines[6]


def test_svg_has_a_box_per_operator_and_an_arrow_per_flow(lesson_05_plan):
    svg = ET.fromstring(pipeline_svg(lesson_05_plan))
    ns = {"svg": "http://www.w3.org/2000/svg"}
    assert len(svg.findall("svg:rect", ns)) == 7
    assert len(svg.findall("svg:line", ns)) == 6  # two into the join, one into each of the four after it
    texts = [t.text for t in svg.findall("svg:text", ns)]
    assert "MapBatches(Model)" in texts and any("actor pool of 2" in (t or "") for t in texts)


def test_the_two_sources_share_the_top_row():
    steps = [
        PlanStep(0, "ReadCSV", "read", ()),
        PlanStep(1, "ReadCSV", "read", ()),
        PlanStep(2, "Join", "shuffle", (0, 1)),
    ]
    svg = ET.fromstring(pipeline_svg(steps))
    tops = [float(r.get("y")) for r in svg.findall("{http://www.w3.org/2000/svg}rect")]
    assert tops[0] == tops[1] < tops[2]


def test_names_are_escaped_in_the_svg():
    steps = [PlanStep(0, "MapBatches(<lambda>)", "tasks", ())]
    svg = pipeline_svg(steps)
    ET.fromstring(svg)
    assert "&lt;lambda&gt;" in svg
