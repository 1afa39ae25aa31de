"""A real multi-node Ray cluster on this machine, shaped like the lessons' cluster.

A head node with no GPU and two worker nodes with one (logical) GPU each,
started with Ray's own ``ray start`` (:mod:`tests.local_cluster`), token
authentication on, in a temp dir of their own. The pipeline command and a
solution notebook join it through ``RAY_ADDRESS`` unchanged, every GPU
stage must run on the worker nodes, and the pipeline's files must be written
there, by the image actors, not by the driver on the head. Every wait is
bounded (subprocess and notebook timeouts), so a stage that hangs fails the
test instead of stalling it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from helpers.runtime.settings import REPO_ROOT
from tests.conftest import NOTEBOOK_TIME
from tests.local_cluster import free_port, local_cluster, node_ip

pytestmark = pytest.mark.cluster

GPU_STAGES = ("Enhancer", "ImageGen")
ROWS = 8


@pytest.fixture(scope="module")
def cluster():
    # The nodes get no WORKSHOP_*: what they report about themselves is theirs, and drivers
    # ship helpers and WORKSHOP_* as a learner's would (helpers.runtime.cluster.join_runtime_env).
    env = {name: value for name, value in os.environ.items() if not name.startswith("WORKSHOP_")}
    # Nodes on one machine share its fixed default ports; the dashboard agent's (52365) would clash.
    workers = [["--num-cpus=2", "--num-gpus=1", f"--dashboard-agent-listen-port={free_port()}"] for _ in range(2)]
    with local_cluster(["--num-cpus=2", "--num-gpus=0"], workers, env=env) as c:
        driver_env = {**c.env, **{k: v for k, v in os.environ.items() if k.startswith("WORKSHOP_")}}
        driver_env.pop("WORKSHOP_CLUSTER_HAS_HELPERS", None)
        yield dataclasses.replace(c, env={**driver_env, "WORKSHOP_PROFILE": "cpu"})


def _driver(code: str, env: dict, timeout: int) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _actor_gpus(env: dict) -> tuple[dict[str, set[float]], set[str]]:
    """For each actor class that ran on the cluster: the GPUs of the nodes its actors ran on; and the worker nodes."""
    out = _driver(
        "import json, ray\n"
        "ray.init(log_to_driver=False)\n"
        "gpus = {n['NodeID']: n['Resources'].get('GPU', 0) for n in ray.nodes()}\n"
        "rows = [(a['ActorClassName'], gpus.get(a['Address']['NodeID'], -1))\n"
        "        for a in ray._private.state.actors().values()]\n"
        "workers = [n['NodeID'] for n in ray.nodes() if 'node:__internal_head__' not in n['Resources']]\n"
        "print(json.dumps([rows, workers]))\n",
        env,
        timeout=120,
    )
    rows, workers = json.loads(out.strip().splitlines()[-1])
    classes: dict[str, set[float]] = {}
    for class_name, gpus in rows:
        classes.setdefault(class_name, set()).add(gpus)
    return classes, set(workers)


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

    classes, workers = _actor_gpus(cluster.env)
    for stage in GPU_STAGES:
        ran_on = {gpus for name, gpu_set in classes.items() if stage in name for gpus in gpu_set}
        assert ran_on, f"no actors of {stage} found among {sorted(classes)}"
        assert ran_on == {1.0}, f"{stage} ran on nodes with GPUs {ran_on}; expected only the GPU workers"
    # Each writer reports the Ray node of its own process: the files come from the workers, not the head's driver.
    written_on = summary["written_on"]
    assert len(workers) == 2 and sum(written_on.values()) == ROWS
    assert set(written_on) <= workers, f"files written on nodes {sorted(written_on)}; the workers are {sorted(workers)}"


def test_a_solution_notebook_joins_the_cluster_unchanged(cluster, monkeypatch, record_property):
    from helpers.commands.notebooks import run_notebooks

    for name, value in cluster.env.items():
        if name.startswith(("RAY_", "WORKSHOP_")):
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("WORKSHOP_CLUSTER_HAS_HELPERS", raising=False)
    path = REPO_ROOT / "solutions" / "03_image_generation.ipynb"
    [result] = run_notebooks([path], REPO_ROOT / "build" / "executed-cluster", html=False, timeout=300)
    record_property(NOTEBOOK_TIME, (f"cluster: solutions/{path.name}", result.seconds))
    assert result.ok, result.error
    executed = json.loads(result.executed.read_text())
    printed = "".join(
        "".join(output.get("text", "")) for cell in executed["cells"] for output in cell.get("outputs", [])
    )
    assert cluster.address in printed, "the notebook did not report joining the test cluster"


#: A learner's first cell on the instructor's cluster, and then what the probe says about a storage
#: root that no worker has: the nodes of this cluster share one file system, so "a root a worker
#: cannot read" is one that does not exist there, asked of the workers by the real probe.
AUTO_DRIVER = """
import dataclasses, json, pathlib, ray, helpers
from helpers.errors import ClusterMismatchError
from helpers.runtime.preflight import check_nodes
from helpers.runtime.probe import ProfileDecision, ask_gpu_nodes

session = helpers.start()
head = [n["NodeID"] for n in ray.nodes() if "node:__internal_head__" in n["Resources"]]
unmounted = "/mnt/not-mounted-on-the-workers"
reports, silent = ask_gpu_nodes(unmounted, [])
settings = dataclasses.replace(session.settings, storage=pathlib.Path(unmounted))
try:
    check_nodes(ProfileDecision("cpu", "test", tuple(reports)), settings)
    unreadable = None
except ClusterMismatchError as err:
    unreadable = str(err)
print(json.dumps({"profile": session.settings.profile, "head": head,
                  "probed": [[r.node_id, r.cuda] for r in session.decision.reports], "unreadable": unreadable}))
"""


@pytest.fixture(scope="module")
def auto_start(cluster):
    """helpers.start() with WORKSHOP_PROFILE=auto and nothing else set, joining the cluster: (printed, facts)."""
    env = {name: value for name, value in cluster.env.items() if not name.startswith("WORKSHOP_")}
    out = _driver(AUTO_DRIVER, {**env, "WORKSHOP_PROFILE": "auto"}, timeout=300)
    printed, _, facts = out.strip().rpartition("\n")
    return printed, json.loads(facts)


def test_auto_asks_the_gpu_workers_and_picks_cpu_for_logical_gpus(auto_start):
    printed, facts = auto_start
    probed = {node: cuda for node, cuda in facts["probed"]}
    assert len(probed) == 2 and not set(probed) & set(facts["head"]), "the probe must run on the two GPU workers"
    assert probed == dict.fromkeys(probed, False), "logical GPUs report no CUDA"
    assert facts["profile"] == "cpu"
    assert "Profile: cpu - auto: the cluster's GPUs have no CUDA (logical GPUs)" in printed
    for node in probed:
        assert f"worker {node_ip()} (node {node[:6]}): logical GPU, no CUDA" in printed


def test_a_storage_root_the_workers_cannot_read_is_one_line_per_worker(auto_start):
    _, facts = auto_start
    lines = facts["unreadable"].splitlines()
    assert lines[0] == "2 problem(s) on the nodes that run the models:"
    for node, _ in facts["probed"]:
        assert (f"worker {node_ip()} (node {node[:6]}) cannot read the storage root /mnt/not-mounted-on-the-workers "
                "(No such file or directory): mount the same shared storage on every node") in facts["unreadable"]


@pytest.mark.parametrize("auth", [{}, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-cluster-token"}],
                         ids=["no token", "wrong token"])
def test_joining_without_the_token_says_so_in_one_line(cluster, auth):
    env = {name: value for name, value in cluster.env.items() if not name.startswith("RAY_AUTH")}
    code = "import helpers\ntry:\n    helpers.start()\nexcept Exception as err:\n    print(type(err).__name__, err)\n"
    done = subprocess.run([sys.executable, "-c", code], env={**env, **auth}, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=90, check=False)  # Ray alone retries for 20 s, then a traceback
    [line] = done.stdout.splitlines()
    assert line.startswith(f"SettingsError RAY_ADDRESS={cluster.address}: the cluster uses token authentication"), \
        done.stderr[-2000:]
    assert ("refused the token this process sends" if auth else "this process sends no token") in line
    assert "RAY_AUTH_MODE=token" in line
    for place in ("RAY_AUTH_TOKEN variable", "RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token", "ray get-auth-token"):
        assert place in line


#: A learner's lesson on a cluster that grows: start() asks the GPU workers there are, then a run starts
#: once a third node has joined (as an autoscaler adds one while the lessons run).
LATE_NODE_DRIVER = """
import time, ray, helpers
session = helpers.start(quiet=True)
print("STARTED", sorted(r.node_id for r in session.decision.reports), flush=True)
end = time.monotonic() + 180
while sum(n["Alive"] for n in ray.nodes()) < 3:
    assert time.monotonic() < end, "the late node did not join"
    time.sleep(0.5)
for attempt in range(2):  # a learner runs the cell again
    try:
        ray.data.range(4).map_batches(lambda batch: batch).materialize()
        print("RAN")
    except Exception as err:
        print("REFUSED", type(err).__name__, err)
"""


def test_a_gpu_node_that_joins_after_start_is_checked_before_the_next_run(tmp_path):
    """The late node's Python finds another transformers first (``PYTHONPATH``): a difference the pre-flight
    check names. Without a check of late nodes, the run would put actors there unasked.

    Set-up a learner would not have: a cluster of this test's own (head without GPU, one GPU worker at
    first), and the metadata of a transformers 0.0.1 on the late node's path.
    """
    from tests.local_cluster import _start_node, _stop

    other = tmp_path / "other-packages"
    (other / "transformers-0.0.1.dist-info").mkdir(parents=True)
    (other / "transformers-0.0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: transformers\nVersion: 0.0.1\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("WORKSHOP_")}
    first = [["--num-cpus=4", "--num-gpus=1", f"--dashboard-agent-listen-port={free_port()}"]]
    with local_cluster(["--num-cpus=2", "--num-gpus=0"], first, env=env) as c:
        driver_env = {**c.env, **{k: v for k, v in os.environ.items() if k.startswith("WORKSHOP_")},
                      "WORKSHOP_PROFILE": "cpu"}
        driver_env.pop("WORKSHOP_CLUSTER_HAS_HELPERS", None)
        driver = subprocess.Popen([sys.executable, "-c", LATE_NODE_DRIVER], env=driver_env, cwd=REPO_ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        late = None
        try:
            started = driver.stdout.readline()
            assert started.startswith("STARTED"), started + driver.stderr.read()[-3000:]
            node_env = {k: v for k, v in c.env.items() if k != "RAY_ADDRESS"}
            late = _start_node([f"--address={c.address}", "--num-cpus=2", "--num-gpus=1",
                                f"--dashboard-agent-listen-port={free_port()}"],
                               {**node_env, "PYTHONPATH": f"{other}:{REPO_ROOT}"})
            out, err = driver.communicate(timeout=300)
        finally:
            driver.kill()
            if late is not None:
                _stop([late])
    runs = [line for line in out.splitlines() if line.startswith(("RAN", "REFUSED"))]
    assert len(runs) == 2, out + err[-3000:]
    for line in runs:  # the second run too: a node refused stays refused until it is fixed
        assert line.startswith("REFUSED NodeJoinedMismatchError 1 problem(s) on the nodes that run the models"), \
            out + err[-3000:]
    assert f"worker {node_ip()} (node " in out and "has transformers 0.0.1, the driver" in out
