"""Credentials stay in the driver: no AWS variable reaches a shared cluster's jobs or logs.

On a shared workshop cluster every user sees every job's ``runtime_env`` (the
dashboard, ``ray list jobs --detail``). Nothing of AWS travels to the workers:
the ones that write the pipeline's output to ``s3://`` use their own node's
access (:mod:`helpers.runtime.storage`).

The cluster test starts a cluster a learner would not have: a ``ray start``
head node with the dashboard, standing in for the instructor's cluster. It is
started without the credentials; a driver then joins it through
``helpers.start()`` with canary credentials in its environment, runs a Ray Data
job with an actor pool, and the test looks for the canaries where other users
would: in every job's runtime environment and in every file of the cluster's
temp dir (session logs, runtime-env agent logs, unpacked packages).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.runtime import cluster
from helpers.runtime import settings as config
from helpers.runtime.settings import REPO_ROOT
from tests.local_cluster import free_port, local_cluster

pytestmark = pytest.mark.cluster

AWS_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

DRIVER = """
import json, os
import ray
import helpers

helpers.start(quiet=True)


class WorkerSees:
    def __call__(self, batch):
        batch["aws"] = [sorted(k for k in os.environ if k.startswith("AWS_"))] * len(batch["id"])
        return batch


rows = ray.data.range(4).map_batches(
    WorkerSees, batch_size=2, compute=ray.data.ActorPoolStrategy(size=1)
).take_all()
print(json.dumps({"job_id": ray.get_runtime_context().get_job_id(),
                  "aws_in_workers": sorted({name for row in rows for name in row["aws"]})}))
"""

LIST_JOBS = """
import json, sys
from ray.util.state import list_jobs

jobs = list_jobs(address=sys.argv[1], detail=True)
print(json.dumps([{"job_id": job.job_id, "runtime_env": job.runtime_env} for job in jobs]))
"""


def test_forwarded_env_has_no_aws_variables(monkeypatch):
    for name in (*AWS_NAMES, "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.setenv(name, "canary")
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    monkeypatch.delenv("WORKSHOP_CLUSTER_HAS_HELPERS", raising=False)
    assert not [name for name in config.forwarded_env() if name.startswith("AWS_")]
    env_vars = cluster.join_runtime_env()["env_vars"]
    assert env_vars["WORKSHOP_PROFILE"] == "cpu"
    assert not [name for name in env_vars if name.startswith("AWS_")]


def _files_containing(root: Path, needles: dict[str, bytes]) -> list[str]:
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if not path.is_file() or path.is_symlink():
                continue  # sockets, and session_latest's links to what the walk reads anyway
            data = path.read_bytes()
            found.extend(f"{path.relative_to(root)}: {var}" for var, needle in needles.items() if needle in data)
    return found


def test_aws_credentials_reach_no_job_and_no_log_of_a_shared_cluster(tmp_path):
    canaries = {name: f"canary-{secrets.token_hex(16)}" for name in AWS_NAMES}
    dashboard_port = free_port()
    # Shaped as the lessons need (helpers.start() refuses a cluster their actor pools cannot fit):
    # two logical GPUs and logical CPUs for four model actors and the reads, as a local Ray declares.
    head = ["--num-cpus=8", "--num-gpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}"]  # fmt: skip
    cluster_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with local_cluster(head, env=cluster_env) as shared:
        storage = tmp_path / "storage"
        models = config.resolve_models_dir(config.resolve_storage())  # what setup.sh built, for the pre-flight check
        driver_env = {**shared.env, **canaries, "WORKSHOP_STORAGE": str(storage), "WORKSHOP_MODELS": str(models),
                      "WORKSHOP_PROFILE": "cpu"}
        driver_env.pop("WORKSHOP_CLUSTER_HAS_HELPERS", None)  # ship helpers and settings, as a learner's driver does
        driver = subprocess.run([sys.executable, "-c", DRIVER], env=driver_env, cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert driver.returncode == 0, driver.stderr[-3000:]
        ran = json.loads(driver.stdout.strip().splitlines()[-1])

        listed = subprocess.run(
            [sys.executable, "-c", LIST_JOBS, f"http://127.0.0.1:{dashboard_port}"],
            env=shared.env, capture_output=True, text=True, timeout=120, check=False,
        )
        assert listed.returncode == 0, listed.stderr[-3000:]
        jobs = {job["job_id"]: job["runtime_env"] for job in json.loads(listed.stdout)}
        # What was read is really the driver's runtime environment: its settings are there.
        assert jobs[ran["job_id"]]["env_vars"]["WORKSHOP_STORAGE"] == str(storage)
        shown = json.dumps(jobs)
        assert not [name for name, value in canaries.items() if value in shown], jobs[ran["job_id"]]

        temp_dir = Path(shared.env["RAY_AUTH_TOKEN_PATH"]).parent
        assert list(temp_dir.glob("session_*/logs/*.log")), f"no session logs under {temp_dir}"
        assert _files_containing(temp_dir, {name: value.encode() for name, value in canaries.items()}) == []
    assert ran["aws_in_workers"] == [], "the workers' environment"
