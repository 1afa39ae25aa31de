"""Every lesson's actor pools, with the profile's settings, on a cluster too small for them.

The pipelines are read from the solution notebooks themselves (their
``map_batches(..., compute=ActorPoolStrategy(...))`` chains, evaluated with the
CPU profile's settings for the lessons' two-GPU cluster), so a lesson that
changes its requests is checked as it is now. A separate driver process starts
its own local Ray with one logical GPU (the suite's shared Ray has two) and runs
each chain with a model-free stage class: the resource check must stop each one
with ``ResourceMismatchError`` and the numbers, within 60 s (the driver's own
deadline). The same driver checks a ``memory=`` request larger than the node,
and, as a control, that a pipeline sized for one GPU (lab 05's answer) runs.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from helpers.runtime.settings import REPO_ROOT, load_settings
from tests.test_pipeline_cli import cli_env

SOLUTIONS = REPO_ROOT / "solutions"
#: Each rejection must come within this; a hang is what the check exists to prevent.
REJECT_WITHIN_S = 60


def code_cells(notebook) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


def lesson_namespace(cells: list[str]) -> dict:
    """What the lessons' resource expressions refer to: the session and derived numbers."""
    import ray

    settings = load_settings("cpu", cluster_gpus=2)
    session = SimpleNamespace(settings=settings, image=settings.image, llm=settings.llm, resources={"GPU": 2, "CPU": 8})
    namespace = {"session": session, "ray": ray}
    for cell in cells:  # e.g. image_gpus = round(session.image.num_gpus - session.llm.num_gpus, 3)
        for node in ast.parse(cell).body:
            if isinstance(node, ast.Assign) and node.targets[0].__class__ is ast.Name and "gpus" in node.targets[0].id:
                namespace[node.targets[0].id] = eval(compile(ast.Expression(node.value), "<lesson>", "eval"), namespace)
    return namespace


def _stage(call: ast.Call, namespace: dict) -> dict | None:
    """One actor-pool ``map_batches`` call as plain numbers, or None for a task stage."""
    keywords = {k.arg: k.value for k in call.keywords}
    compute = keywords.get("compute")
    if not isinstance(compute, ast.Call):
        return None
    size = next(k.value for k in compute.keywords if k.arg == "size")

    def value(node, default=None):
        return default if node is None else eval(compile(ast.Expression(node), "<lesson>", "eval"), namespace)

    return {
        "name": ast.unparse(call.args[0]),
        "batch_size": value(keywords.get("batch_size"), 1),
        "num_gpus": value(keywords.get("num_gpus"), 0),
        "actors": value(size),
    }


def _chain(call: ast.Call) -> list[ast.Call]:
    """The map_batches calls of one method chain, first to last."""
    calls = []
    node = call
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "map_batches":
            calls.append(node)
        node = node.func.value
    return calls[::-1]


def lesson_pipelines() -> list[tuple[str, list[dict]]]:
    """(lesson/cell, actor-pool stages) for every chain with an actor pool in the solutions."""
    found = []
    for notebook in sorted(SOLUTIONS.glob("*.ipynb")):
        cells = code_cells(notebook)
        namespace = None
        for index, cell in enumerate(cells):
            if "ActorPoolStrategy" not in cell:
                continue
            namespace = namespace or lesson_namespace(cells)
            outermost = [
                node
                for node in ast.walk(ast.parse(cell))
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "map_batches"
            ]
            inner = {id(c) for node in outermost for c in _chain(node)[:-1]}
            for node in outermost:
                if id(node) in inner:
                    continue
                stages = [s for s in (_stage(c, namespace) for c in _chain(node)) if s]
                if stages:
                    found.append((f"{notebook.stem} code cell {index}", stages))
    return found


PIPELINES = lesson_pipelines()

DRIVER = """
import json, sys, time
import ray
from helpers.runtime.cluster import configure_data_context
from helpers.runtime.resources import ResourceMismatchError
from tests.conftest import deadline

pipelines, within = json.loads(sys.argv[1]), int(sys.argv[2])
ray.init(num_cpus=8, num_gpus=1, include_dashboard=False)
configure_data_context()  # installs the resource check, as helpers.start() does


class Passthrough:  # no model: the check is about scheduling
    def __call__(self, batch):
        return batch


def attempt(stages):
    ds = ray.data.range(8)
    for stage in stages:
        extra = {"memory": stage["memory"]} if "memory" in stage else {}
        ds = ds.map_batches(
            Passthrough, batch_size=stage["batch_size"], num_gpus=stage["num_gpus"],
            compute=ray.data.ActorPoolStrategy(size=stage["actors"]), **extra,
        )
    try:
        with deadline(within, "the resource check"):
            return {"rows": ds.count()}
    except (ResourceMismatchError, TimeoutError) as err:
        return {"error": type(err).__name__, "message": str(err)}


for label, stages in pipelines:
    print(json.dumps({"label": label, **attempt(stages)}), flush=True)
ray.shutdown()
"""

NODE_MEMORY_TIMES = 1000  # a memory= request this many times the machine's RAM fits no node
ONE_GPU_CONTROL = [
    {"name": "Enhancer", "batch_size": 4, "num_gpus": 0.3, "actors": 2},
    {"name": "helpers.ImageGen", "batch_size": 8, "num_gpus": 0.2, "actors": 2},
]


@pytest.fixture(scope="module")
def verdicts() -> dict:
    import psutil

    huge = psutil.virtual_memory().total * NODE_MEMORY_TIMES
    cases = [
        *PIPELINES,
        ("memory", [{"name": "ImageGen", "batch_size": 8, "num_gpus": 0, "actors": 1, "memory": huge}]),
    ]
    cases.append(("one-GPU control", ONE_GPU_CONTROL))
    env = cli_env()
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(cases), str(REJECT_WITHIN_S)],
        check=False, capture_output=True, text=True, timeout=600, env=env, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {result.pop("label"): result for result in results}


def test_every_lesson_with_an_actor_pool_is_found():
    lessons = {label.split()[0] for label, _ in PIPELINES}
    assert {"03_image_generation", "04_join", "05_llm_enhancement", "06_parameterization"} <= lessons
    stages = {(s["name"], s["num_gpus"], s["actors"]) for _, chain in PIPELINES for s in chain}
    assert ("helpers.ImageGen", 1.0, 2) in stages  # lessons 03 and 04 as taught
    assert ("Enhancer", 0.5, 2) in stages and ("helpers.ImageGen", 0.5, 2) in stages  # lesson 05


@pytest.mark.slow
@pytest.mark.parametrize(("label", "stages"), PIPELINES, ids=[label for label, _ in PIPELINES])
def test_lesson_pool_on_one_gpu_fails_fast_with_the_numbers(verdicts, label, stages):
    verdict = verdicts[label]
    gpus_asked = sum(s["num_gpus"] * s["actors"] for s in stages)
    if gpus_asked <= 1:
        assert verdict == {"rows": 8}, "a lesson pool that fits one GPU runs"
        return
    assert verdict.get("error") == "ResourceMismatchError", verdict
    message = verdict["message"]
    assert "1 GPUs" in message and "Fix:" in message
    assert f"ask for {gpus_asked:g} GPUs in all" in message, message
    for stage in stages:
        assert f"{stage['actors']} x {stage['num_gpus']:g}" in message, message


@pytest.mark.slow
def test_memory_beyond_the_node_fails_fast(verdicts):
    verdict = verdicts["memory"]
    assert verdict.get("error") == "ResourceMismatchError", verdict
    assert "memory=" in verdict["message"] and "GiB" in verdict["message"] and "Fix:" in verdict["message"]


@pytest.mark.slow
def test_a_pipeline_sized_for_one_gpu_runs_there(verdicts):
    assert verdicts["one-GPU control"] == {"rows": 8}


def test_memory_arithmetic_per_actor_and_per_pool():
    """No Ray: one actor larger than any node, and a pool whose actors fit alone but not together."""
    from helpers.runtime.resources import ResourceMismatchError, check_fits
    from helpers.runtime.stage_request import NodeCapacity, StageRequest

    gib = 2**30
    node = [NodeCapacity(cpus=8, gpus=2, memory=20 * gib)]
    read = StageRequest("ReadCSV", 1, cpus=1, gpus=0, is_actor_pool=False)

    def pool(actors, memory):
        return StageRequest("MapBatches(ImageGen)", actors, cpus=1, gpus=0, is_actor_pool=True, memory=memory)

    check_fits([read, pool(2, 8 * gib)], node)
    with pytest.raises(ResourceMismatchError, match=r"memory=30\.0 GiB per actor.* 20\.0 GiB"):
        check_fits([read, pool(1, 30 * gib)], node)
    with pytest.raises(
        ResourceMismatchError, match=r"memory=30\.0 GiB in all \(MapBatches\(ImageGen\): 2 x 15\.0 GiB\)"
    ):
        check_fits([read, pool(2, 15 * gib)], node)
