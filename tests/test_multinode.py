"""A real multi-node Ray cluster on this machine, shaped like the lessons' cluster.

A head node with no GPU and two worker nodes with one (logical) GPU each,
started with Ray's own ``ray start`` (:mod:`tests.local_cluster`), token
authentication on, in a temp dir of their own. The pipeline command and a
solution notebook join it through ``RAY_ADDRESS`` unchanged, and every GPU
stage must run on the worker nodes. Every wait is bounded (subprocess and
notebook timeouts), so a stage that hangs fails the test instead of stalling it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from helpers.runtime.settings import REPO_ROOT
from tests.conftest import NOTEBOOK_SECONDS
from tests.local_cluster import free_port, local_cluster

pytestmark = pytest.mark.cluster

GPU_STAGES = ("Enhancer", "ImageGen")
ROWS = 8


@pytest.fixture(scope="module")
def cluster():
    import os

    env = {**os.environ, "WORKSHOP_PROFILE": "cpu"}
    # Drivers must ship helpers and WORKSHOP_* as a learner's would (helpers.runtime.cluster.join_runtime_env).
    env.pop("WORKSHOP_CLUSTER_HAS_HELPERS", None)
    # Nodes on one machine share its fixed default ports; the dashboard agent's (52365) would clash.
    workers = [["--num-cpus=2", "--num-gpus=1", f"--dashboard-agent-listen-port={free_port()}"] for _ in range(2)]
    with local_cluster(["--num-cpus=2", "--num-gpus=0"], workers, env=env) as c:
        yield c


def _driver(code: str, env: dict, timeout: int) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _actor_gpus(env: dict) -> dict[str, set[float]]:
    """For each actor class that ran on the cluster: the GPUs of the nodes its actors ran on."""
    out = _driver(
        "import json, ray\n"
        "ray.init(log_to_driver=False)\n"
        "gpus = {n['NodeID']: n['Resources'].get('GPU', 0) for n in ray.nodes()}\n"
        "rows = [(a['ActorClassName'], gpus.get(a['Address']['NodeID'], -1))\n"
        "        for a in ray._private.state.actors().values()]\n"
        "print(json.dumps(rows))\n",
        env,
        timeout=120,
    )
    classes: dict[str, set[float]] = {}
    for class_name, gpus in json.loads(out.strip().splitlines()[-1]):
        classes.setdefault(class_name, set()).add(gpus)
    return classes


def test_pipeline_command_on_a_multi_node_cluster(cluster, tmp_path):
    output = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "helpers.pipeline", "--animals", "data/animals.csv", "--outfits", "data/outfits.csv",
         "--output", str(output), "--limit", str(ROWS)],
        cwd=REPO_ROOT, env=cluster.env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["joined"], summary["parquet_rows"], summary["png_files"]) == (ROWS, ROWS, ROWS)
    assert pq.read_table(output / "parquet").num_rows == ROWS

    classes = _actor_gpus(cluster.env)
    for stage in GPU_STAGES:
        ran_on = {gpus for name, gpu_set in classes.items() if stage in name for gpus in gpu_set}
        assert ran_on, f"no actors of {stage} found among {sorted(classes)}"
        assert ran_on == {1.0}, f"{stage} ran on nodes with GPUs {ran_on}; expected only the GPU workers"


def test_a_solution_notebook_joins_the_cluster_unchanged(cluster, monkeypatch):
    from helpers.commands.notebooks import run_notebooks

    for name, value in cluster.env.items():
        if name.startswith(("RAY_", "WORKSHOP_")):
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("WORKSHOP_CLUSTER_HAS_HELPERS", raising=False)
    path = REPO_ROOT / "solutions" / "03_image_generation.ipynb"
    [result] = run_notebooks([path], REPO_ROOT / "build" / "executed-cluster", html=False, timeout=300)
    NOTEBOOK_SECONDS[f"cluster: solutions/{path.name}"] = result.seconds
    assert result.ok, result.error
    executed = json.loads(result.executed.read_text())
    printed = "".join(
        "".join(output.get("text", "")) for cell in executed["cells"] for output in cell.get("outputs", [])
    )
    assert cluster.address in printed, "the notebook did not report joining the test cluster"
