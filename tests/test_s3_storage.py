"""The pipeline command with its storage on S3: a moto server on 127.0.0.1, read back through pyarrow.

Only loopback traffic, with fake credentials. The inputs are uploaded with
boto3 (as a learner's cloud console would), the command is run with
``WORKSHOP_STORAGE`` and ``--animals``/``--outfits``/``--output`` on ``s3://``,
and what it wrote is read back through pyarrow's S3 file system
(:func:`helpers.runtime.storage.filesystem`), the same way the pipeline writes it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from helpers.pipeline.output import SUCCESS_MARKER, WRITTEN_BY
from helpers.runtime.ports import free_port
from helpers.runtime.settings import REPO_ROOT
from helpers.runtime.storage import StorageURI, filesystem

pytestmark = pytest.mark.s3

ROWS = 6
BUCKET = "workshop"
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on loopback with a bucket holding the workshop's two CSV files."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {**os.environ, **FAKE_AWS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    env.pop("RAY_ADDRESS", None)
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        for name in ("animals.csv", "outfits.csv"):
            client.upload_file(str(REPO_ROOT / "data" / name), BUCKET, f"storage/data/{name}")
        yield {"env": env, "client": client}
    finally:
        server.stop()


def _run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "helpers.pipeline", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_pipeline_reads_and_writes_s3(s3, monkeypatch):
    root = f"s3://{BUCKET}/storage"
    env = {**s3["env"], "WORKSHOP_STORAGE": root, "WORKSHOP_PROFILE": "cpu"}
    output = f"{root}/outputs/final"
    # An earlier output's objects must not survive: the output prefix is replaced, not appended to.
    s3["client"].put_object(Bucket=BUCKET, Key="storage/outputs/final/images/9999.png", Body=b"old")
    s3["client"].put_object(Bucket=BUCKET, Key="storage/outputs/final/summary.json",
                            Body=json.dumps({"written_by": WRITTEN_BY}).encode())
    done = _run(env, "--animals", f"{root}/data/animals.csv", "--outfits", f"{root}/data/outfits.csv",
                "--output", output, "--limit", str(ROWS), "--no-enhance")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["joined"], summary["parquet_rows"], summary["png_files"]) == (ROWS, ROWS, ROWS)

    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3["env"]["AWS_ENDPOINT_URL"])
    fs, prefix = filesystem(output)
    table = pq.read_table(f"{prefix}/parquet", filesystem=fs)
    assert sorted(table.column("id").to_pylist()) == sorted(set(table.column("id").to_pylist()))
    assert table.num_rows == ROWS and all(table.column("image").to_pylist())
    keys = [obj["Key"] for obj in s3["client"].list_objects_v2(Bucket=BUCKET, Prefix="storage/outputs/")["Contents"]]
    # pyarrow writes empty "folder/" marker objects too; count the pictures.
    images = [key for key in keys if key.startswith("storage/outputs/final/images/") and key.endswith(".png")]
    assert sorted(images) == sorted(f"storage/outputs/final/images/{i}.png" for i in table.column("id").to_pylist())
    assert "storage/outputs/final/images/9999.png" not in keys
    assert f"storage/outputs/final/{SUCCESS_MARKER}" in keys
    assert not [key for key in keys if ".partial-" in key], "the upload prefix was left behind"


def test_a_missing_s3_input_fails_before_ray(s3):
    root = f"s3://{BUCKET}/storage"
    env = {**s3["env"], "WORKSHOP_STORAGE": root, "WORKSHOP_PROFILE": "cpu"}
    done = _run(env, "--animals", f"{root}/data/nope.csv", "--outfits", f"{root}/data/outfits.csv",
                "--output", f"{root}/outputs/x")
    assert done.returncode == 2, done.stderr
    assert "nope.csv" in done.stderr and "upload it first" in done.stderr


def test_storage_uri_joins_like_a_path():
    root = StorageURI("s3://bucket/prefix")
    assert root / "data" / "animals.csv" == "s3://bucket/prefix/data/animals.csv"
    assert root.joinpath("outputs", "final").name == "final"
