"""Publishing to ``s3://`` never loses the only complete copy, and never deletes what is not ours.

Against the moto server of ``test_s3_storage`` (loopback, fake credentials).
Failures are injected by wrapping the real pyarrow S3 file system: the named
operation of one publish step raises, as a dropped connection, an expired
token or Ctrl-C would, after the step has done part of its work.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from helpers.errors import InputError, OutputUnreachableError, PublishError
from helpers.pipeline import s3_publish
from helpers.pipeline.output import PARTIAL_MARKER, PUBLISH_CLAIM, SUCCESS_MARKER, WRITTEN_BY
from helpers.pipeline.s3_publish import (
    STOPPED,
    check_output_prefix,
    discard_upload,
    publish_upload,
    remove_uploads,
    start_upload,
)
from helpers.pipeline.writer import check_written, write_file, write_part
from tests import test_s3_storage
from tests.test_s3_storage import BUCKET, FAKE_AWS, _run

pytestmark = pytest.mark.s3

#: The moto server with the workshop's inputs (a fixture, used by name).
s3 = test_s3_storage.s3


def publish_dir(local: Path, uri: str) -> None:
    """Replace the prefix ``uri`` with the files of the local folder ``local``, as the pipeline publishes its upload.

    The pipeline's workers write their upload themselves; the tests write theirs from a folder made here.
    """
    partial = None
    try:  # 1. upload
        partial = start_upload(uri)
        partial_fs, path = s3_publish.filesystem(partial)
        for rel in sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()):
            s3_publish._write_object(partial_fs, f"{path}/{rel}", (local / rel).read_bytes())
    except BaseException as err:
        if partial is not None:
            discard_upload(partial)
        raise PublishError(
            f"uploading the new output failed ({s3_publish._reason(err)}); {uri} was left as it was"
        ) from err
    publish_upload(partial, uri)
    remove_uploads(partial, uri)

OLD = {
    "parquet/part-00000.parquet": b"old parquet",
    "images/1.png": b"old 1",
    "images/2.png": b"old 2",
    "summary.json": json.dumps({"written_by": WRITTEN_BY, "label": "old"}).encode(),
    SUCCESS_MARKER: b"",
}
NEW = {
    "parquet/part-00000.parquet": b"new parquet",
    "images/1.png": b"new 1",
    "images/3.png": b"new 3",
    "summary.json": json.dumps({"written_by": WRITTEN_BY, "label": "new"}).encode(),
}


@pytest.fixture
def aws(s3, monkeypatch):
    """This process talks to the moto server too (the publish runs in the driver)."""
    for name, value in {**FAKE_AWS, "AWS_ENDPOINT_URL": s3["env"]["AWS_ENDPOINT_URL"]}.items():
        monkeypatch.setenv(name, value)
    return s3["client"]


def put(client, prefix: str, objects: dict[str, bytes]) -> None:
    for rel, body in objects.items():
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{rel}", Body=body)


def objects(client, prefix: str) -> dict[str, bytes]:
    """The objects under ``prefix/`` (folder placeholders left out), by path relative to it."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/"):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith("/"):
                body = client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
                found[obj["Key"][len(prefix) + 1:]] = body
    return found


def partial_prefixes(client, prefix: str) -> list[str]:
    keys = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}.partial-").get("Contents", [])
    return sorted({key["Key"].split("/")[len(prefix.split("/")) - 1] for key in keys})


def local_output(folder: Path) -> Path:
    for rel, body in NEW.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(body)
    return folder


class FailingFileSystem:
    """The real S3 file system, except that ``method`` raises ``error`` once ``fails(path)`` has said so."""

    def __init__(self, real, method: str, fails, error: BaseException):
        self.real, self.method, self.fails, self.error = real, method, fails, error

    def __getattr__(self, name):
        attribute = getattr(self.real, name)
        if name != self.method:
            return attribute

        def failing(path, *args, **kwargs):
            if self.fails(path):
                raise self.error
            return attribute(path, *args, **kwargs)

        return failing


REAL_FILESYSTEM = s3_publish.filesystem


def inject(monkeypatch, method: str, fails, error: BaseException) -> None:
    def failing_filesystem(uri):
        real_fs, path = REAL_FILESYSTEM(uri)
        return FailingFileSystem(real_fs, method, fails, error), path

    monkeypatch.setattr(s3_publish, "filesystem", failing_filesystem)


def after(count: int, condition=lambda path: True):
    """A predicate that lets ``count`` matching calls through, then fails."""
    seen = []

    def fails(path) -> bool:
        if not condition(str(path)):
            return False
        seen.append(path)
        return len(seen) > count

    return fails


def test_publish_replaces_an_earlier_output_and_nothing_else(aws, tmp_path):
    prefix = "proj/out"
    put(aws, prefix, OLD)
    put(aws, "proj/out2", {"keep.txt": b"a neighbour"})
    put(aws, "proj/out.partial-keep", {"keep.txt": b"a user's prefix with a similar name"})
    put(aws, "proj/out.partial-dead", {PARTIAL_MARKER: STOPPED, "images/1.png": b"from a failed publish"})
    publish_dir(local_output(tmp_path), f"s3://{BUCKET}/{prefix}")
    assert objects(aws, prefix) == {**NEW, SUCCESS_MARKER: b""}
    assert objects(aws, "proj/out2") == {"keep.txt": b"a neighbour"}
    assert partial_prefixes(aws, prefix) == ["out.partial-keep"], "our leftover upload is removed, theirs is not"


# (step, the operation that fails, a predicate factory saying which of its calls fail)
STEPS = [
    ("upload", "open_output_stream", lambda: after(2, lambda path: ".partial-" in path)),
    ("delete", "delete_file", lambda: after(1)),
    ("copy", "copy_file", lambda: after(2)),
    ("marker", "open_output_stream", lambda: after(0, lambda path: path.endswith(f"out/{SUCCESS_MARKER}"))),
]


@pytest.mark.parametrize("error", [OSError("connection reset"), KeyboardInterrupt()], ids=["network", "ctrl-c"])
@pytest.mark.parametrize(("step", "method", "fails"), STEPS, ids=[step[0] for step in STEPS])
def test_a_failure_at_any_step_keeps_a_complete_copy_and_says_where(aws, tmp_path, monkeypatch, step, method, fails,
                                                                    error):
    prefix = f"fail-{step}-{type(error).__name__}/out"
    uri = f"s3://{BUCKET}/{prefix}"
    put(aws, prefix, OLD)
    inject(monkeypatch, method, fails(), error)
    with pytest.raises(PublishError) as raised:
        publish_dir(local_output(tmp_path), uri)
    message = str(raised.value)
    assert isinstance(raised.value.__cause__, type(error))
    if step == "upload":
        assert message.endswith(f"{uri} was left as it was")
        assert objects(aws, prefix) == OLD
        assert partial_prefixes(aws, prefix) == [], "the failed upload is removed"
        return
    assert f"stopped at the {step} step" in message
    [upload] = partial_prefixes(aws, prefix)
    assert f"the complete new output is in s3://{BUCKET}/{prefix.rsplit('/', 1)[0]}/{upload}" in message
    kept = objects(aws, f"{prefix.rsplit('/', 1)[0]}/{upload}")
    assert kept == {**NEW, PARTIAL_MARKER: STOPPED, PUBLISH_CLAIM: b""}, "its claim is voided by the marker"
    left = objects(aws, prefix)
    assert SUCCESS_MARKER not in left, "a reader must not trust a half-replaced prefix"
    assert "summary.json" in left, "the prefix stays recognisable as ours"

    monkeypatch.setattr(s3_publish, "filesystem", REAL_FILESYSTEM)  # the network is back
    assert check_output_prefix(uri) is True, "the next run may replace it"
    publish_dir(local_output(tmp_path), uri)
    assert objects(aws, prefix) == {**NEW, SUCCESS_MARKER: b""}
    assert partial_prefixes(aws, prefix) == [], "the next publish removes the earlier upload"


def test_the_advice_of_a_stopped_publish_works(aws, tmp_path, monkeypatch):
    """Follow the message: copy the kept upload, marker and all, to the output; the next run still takes it."""
    prefix, uri = "advice/out", f"s3://{BUCKET}/advice/out"
    put(aws, prefix, OLD)
    inject(monkeypatch, "copy_file", after(1), OSError("connection reset"))
    with pytest.raises(PublishError, match=r"or copy that prefix to .* and add an empty .*/_SUCCESS"):
        publish_dir(local_output(tmp_path), uri)
    monkeypatch.setattr(s3_publish, "filesystem", REAL_FILESYSTEM)
    [upload] = partial_prefixes(aws, prefix)
    put(aws, prefix, {**objects(aws, f"advice/{upload}"), SUCCESS_MARKER: b""})
    assert check_output_prefix(uri) is True, "the copied marker must not make the output look foreign"
    publish_dir(local_output(tmp_path), uri)
    assert objects(aws, prefix) == {**NEW, SUCCESS_MARKER: b""}


def test_objects_added_to_the_output_during_the_run_stop_the_publish(aws):
    """Someone uploads a file into the output prefix while the run writes: nothing is deleted, the upload is kept."""
    prefix, uri = "added/out", f"s3://{BUCKET}/added/out"
    put(aws, prefix, OLD)
    assert check_output_prefix(uri) is True  # the run's check, before it starts
    upload = start_upload(uri)
    put(aws, upload.split("/", 3)[3], NEW)
    put(aws, prefix, {"report.pdf": b"a colleague's"})
    with pytest.raises(PublishError) as raised:
        publish_upload(upload, uri)
    assert objects(aws, prefix) == {**OLD, "report.pdf": b"a colleague's"}
    assert f"{uri} was not replaced" in str(raised.value) and upload in str(raised.value)
    assert objects(aws, upload.split("/", 3)[3]) == {**NEW, PARTIAL_MARKER: STOPPED, PUBLISH_CLAIM: b""}


def test_another_runs_live_upload_is_not_removed(aws, tmp_path):
    """Two runs into the same prefix: the one that publishes first must not delete the other's upload."""
    prefix, uri = "two/out", f"s3://{BUCKET}/two/out"
    other = start_upload(uri)
    write_part(two_rows([1]), other)
    publish_dir(local_output(tmp_path), uri)
    assert partial_prefixes(aws, prefix) == [other.rsplit("/", 1)[1]]
    assert objects(aws, prefix) == {**NEW, SUCCESS_MARKER: b""}


def test_an_upload_older_than_any_run_is_removed(aws, tmp_path, monkeypatch):
    """A killed run (``kill -9``) never marks its upload stopped; once stale it goes.

    Unit test: the age limit is set to below zero here, so the upload written a moment ago counts as stale.
    """
    prefix, uri = "stale/out", f"s3://{BUCKET}/stale/out"
    start_upload(uri)
    monkeypatch.setattr(s3_publish, "STALE_UPLOAD_S", -1)
    publish_dir(local_output(tmp_path), uri)
    assert partial_prefixes(aws, prefix) == []


def test_an_output_prefix_holding_the_inputs_is_refused_before_ray(s3):
    """``--output`` = the storage root itself: today's inputs live under it, so nothing may be deleted."""
    root = f"s3://{BUCKET}/storage"
    before = sorted(obj["Key"] for obj in s3["client"].list_objects_v2(Bucket=BUCKET, Prefix="storage/")["Contents"])
    done = _run({**s3["env"], "WORKSHOP_PROFILE": "cpu"}, "--animals", f"{root}/data/animals.csv",
                "--outfits", f"{root}/data/outfits.csv", "--output", root)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: --output {root} already holds files this pipeline did not write")
    assert "data/animals.csv" in line
    after_run = sorted(obj["Key"] for obj in s3["client"].list_objects_v2(Bucket=BUCKET, Prefix="storage/")["Contents"])
    assert after_run == before


def test_a_whole_bucket_as_output_is_refused(aws):
    with pytest.raises(InputError, match="is a whole bucket"):
        check_output_prefix(f"s3://{BUCKET}")


def test_a_prefix_of_the_pipelines_shape_without_its_summary_is_refused(aws):
    put(aws, "lookalike/out", {"images/1.png": b"someone's picture"})
    with pytest.raises(InputError, match="not an earlier output of this pipeline"):
        check_output_prefix(f"s3://{BUCKET}/lookalike/out")
    assert objects(aws, "lookalike/out") == {"images/1.png": b"someone's picture"}


# ---------------------------------------------------------------- the workers' upload


def two_rows(ids: list[int]) -> pa.Table:
    return pa.table({"id": ids, "animal": ["fox"] * len(ids), "outfit": ["hat"] * len(ids),
                     "prompt": ["p"] * len(ids), "original_prompt": ["p"] * len(ids),
                     "enhanced": [False] * len(ids), "image": [b"png %d" % i for i in ids]})


def an_upload(uri: str, label: str, ids: list[int]) -> str:
    """A run's finished upload: one part of ``ids`` and their PNG files, and a summary saying ``label``."""
    upload = start_upload(uri)
    write_part(two_rows(ids), upload)
    write_file(upload, "summary.json", json.dumps({"written_by": WRITTEN_BY, "label": label}).encode())
    return upload


def test_a_run_that_claims_the_output_second_gives_way_and_keeps_its_upload(aws):
    """Two runs publish into one output at the same moment: the later claim deletes nothing and is kept."""
    prefix, uri = "claims/out", f"s3://{BUCKET}/claims/out"
    put(aws, prefix, OLD)
    first, second = an_upload(uri, "first", [1, 2]), an_upload(uri, "second", [3])
    first_fs, first_path = s3_publish.filesystem(first)
    assert s3_publish._earlier_publishes(first_fs, prefix_path(uri), first_path)[0] == [], "the first claim wins"
    time.sleep(1.1)  # the store's clock counts whole seconds: the second claim comes in a later one
    with pytest.raises(PublishError) as raised:
        publish_upload(second, uri)  # while the first run is replacing the output
    message = str(raised.value)
    assert f"{uri} was not replaced: another run is replacing it at this moment (its upload {first})" in message
    assert f"this run's complete output is in {second}" in message
    assert objects(aws, prefix) == OLD, "the run that gave way deleted nothing"
    publish_upload(first, uri)
    remove_uploads(first, uri)
    assert json.loads(objects(aws, prefix)["summary.json"])["label"] == "first"
    published = objects(aws, prefix)
    assert sorted(k for k in published if not k.startswith("parquet/")) == sorted(
        ["images/1.png", "images/2.png", "summary.json", SUCCESS_MARKER])
    assert len([k for k in published if k.startswith("parquet/")]) == 1
    kept = objects(aws, second.split("/", 3)[3])
    assert kept[PARTIAL_MARKER] == s3_publish.YIELDED and "images/3.png" in kept, "the yielded upload is kept"


def test_a_claim_of_a_run_that_died_mid_publish_stops_counting(aws, monkeypatch):
    """Unit test: a claim lasts 1 s here (5 minutes in use), so a claim 2 s old counts as a dead run's."""
    prefix, uri = "dead-claim/out", f"s3://{BUCKET}/dead-claim/out"
    monkeypatch.setattr(s3_publish, "CLAIM_ALIVE_S", 1)
    dead, live = an_upload(uri, "dead", [1]), an_upload(uri, "live", [2])
    dead_fs, dead_path = s3_publish.filesystem(dead)
    s3_publish._earlier_publishes(dead_fs, prefix_path(uri), dead_path)  # claimed, then the run was killed
    time.sleep(2.1)
    publish_upload(live, uri)
    assert json.loads(objects(aws, prefix)["summary.json"])["label"] == "live"


def test_a_publish_that_paused_longer_than_its_claim_does_not_mark_the_output_complete(aws, monkeypatch):
    """Unit test: a claim lasts 1 s here, and one copy takes 2 s (a laptop asleep mid-publish): another run may
    have taken the output over meanwhile, so the run leaves it without _SUCCESS and keeps its upload."""
    prefix, uri = "paused/out", f"s3://{BUCKET}/paused/out"
    monkeypatch.setattr(s3_publish, "CLAIM_ALIVE_S", 1)
    upload = an_upload(uri, "paused", [1, 2])
    real_filesystem, slept = s3_publish.filesystem, []

    class SleepyCopies:
        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def copy_file(self, source, destination):
            if not slept:
                slept.append(time.sleep(2.1))
            return self.real.copy_file(source, destination)

    def sleepy_filesystem(uri):
        real_fs, path = real_filesystem(uri)
        return SleepyCopies(real_fs), path

    monkeypatch.setattr(s3_publish, "filesystem", sleepy_filesystem)
    with pytest.raises(PublishError, match=r"stopped at the marker step \(this run paused for longer than its claim"):
        publish_upload(upload, uri)
    assert SUCCESS_MARKER not in objects(aws, prefix)
    assert objects(aws, upload.split("/", 3)[3])[PARTIAL_MARKER] == STOPPED, "the complete upload is kept"


def test_runs_publishing_at_once_never_mix_their_files(aws):
    """Real threads, each publishing its own finished upload into one output: whatever the timing, the output
    is one run's files exactly, and a run that gave way says so."""
    import threading

    def publish(start, upload, uri, label, errors, delay):
        start.wait()
        time.sleep(delay)
        try:
            publish_upload(upload, uri)
        except PublishError as err:
            errors[label] = str(err)

    for round_, b_delay in enumerate((0, 0.02, 0.5, 1.1)):  # b starts with a, just after, or a clock second later
        uri = f"s3://{BUCKET}/race-{round_}/out"
        uploads = {label: an_upload(uri, label, ids) for label, ids in (("a", [1, 2, 3, 4]), ("b", [5, 6, 7]))}
        start, errors = threading.Barrier(2), {}
        threads = [threading.Thread(target=publish, args=(start, upload, uri, label, errors, delay))
                   for (label, upload), delay in zip(uploads.items(), (0, b_delay))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        published = objects(aws, f"race-{round_}/out")
        if not published:  # both claimed within one second of the store's clock: both gave way, both kept
            assert sorted(errors) == ["a", "b"], errors
            continue
        label = json.loads(published["summary.json"])["label"]
        pngs = sorted(k for k in published if k.startswith("images/"))
        assert pngs == [f"images/{i}.png" for i in ({"a": [1, 2, 3, 4], "b": [5, 6, 7]}[label])], published.keys()
        assert len([k for k in published if k.startswith("parquet/")]) == 1
        assert SUCCESS_MARKER in published
        assert all("another run is replacing it" in message for message in errors.values()), errors
        assert label not in errors


def prefix_path(uri: str) -> str:
    return s3_publish.filesystem(uri)[1]


def test_the_workers_upload_is_published_and_then_removed(aws):
    """The image actors write parts and PNG files into the upload prefix; the driver only publishes it."""
    prefix, uri = "workers/out", f"s3://{BUCKET}/workers/out"
    put(aws, prefix, OLD)
    upload = start_upload(uri)
    [part] = write_part(two_rows([1, 3]), upload).column("part").to_pylist()
    assert check_written(upload, np.array([1, 3])).problems == ()
    write_file(upload, "summary.json", NEW["summary.json"])
    publish_upload(upload, uri)
    published = objects(aws, prefix)
    assert sorted(published) == sorted([f"parquet/{part}", "images/1.png", "images/3.png", "summary.json",
                                        SUCCESS_MARKER])
    assert published["images/3.png"] == b"png 3"
    assert len(partial_prefixes(aws, prefix)) == 1, "the upload stays until remove_uploads"
    remove_uploads(upload, uri)
    assert partial_prefixes(aws, prefix) == []


def test_an_interrupt_while_the_command_tidies_up_says_the_new_output_is_complete(aws, tmp_path, monkeypatch, capsys):
    """Ctrl-C after the publish, while the pipeline command removes its upload (step 5): the output is the new one,
    and the command says so instead of "left as it was". The command runs in this process, its Ray part stubbed."""
    from helpers.pipeline import command as pipeline
    from tests.test_pipeline_output import two_row_inputs, without_ray

    without_ray(monkeypatch)
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    prefix, uri = "tidy/out", f"s3://{BUCKET}/tidy/out"
    put(aws, prefix, OLD)
    interrupted = []

    def first_upload_removal(path) -> bool:  # one Ctrl-C, at the first delete of an upload prefix
        if ".partial-" in str(path) and not interrupted:
            interrupted.append(path)
            return True
        return False

    inject(monkeypatch, "delete_dir", first_upload_removal, KeyboardInterrupt())
    assert pipeline.main([*two_row_inputs(tmp_path), "--output", uri]) == 130
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == f"error: interrupted; the new output was already complete in {uri}"
    assert interrupted, "the interrupt came while the upload was removed"
    published = objects(aws, prefix)
    assert SUCCESS_MARKER in published and json.loads(published["summary.json"])["parquet_rows"] == 2


def test_a_discarded_upload_leaves_nothing_even_for_a_writer_still_at_work(aws):
    """Ctrl-C: the driver discards the upload while an actor finishes a batch; that actor takes its files back."""
    prefix, uri = "stopped/out", f"s3://{BUCKET}/stopped/out"
    upload = start_upload(uri)
    write_part(two_rows([1]), upload)
    discard_upload(upload)
    with pytest.raises(OutputUnreachableError, match="the run stopped"):
        write_part(two_rows([2]), upload)
    assert partial_prefixes(aws, prefix) == []


def test_a_heartbeat_that_fails_once_is_not_taken_for_a_pause(monkeypatch):
    """Unit test with a stand-in file system (the store's clock set by hand): one marker write that fails must not
    let the older time of the marker, written when the run began, look like a five-minute gap."""
    import contextlib
    import datetime

    class Store:
        def __init__(self):
            self.clock, self.written, self.fail_next = 1000.0, {"u/.workshop-partial": 0.0}, False

        @contextlib.contextmanager
        def open_output_stream(self, path):
            if self.fail_next:
                self.fail_next = False
                raise OSError("connection reset")
            self.written[path] = self.clock
            yield type("Stream", (), {"write": lambda self, data: None})()

        def get_file_info(self, path):
            mtime = datetime.datetime.fromtimestamp(self.written[path], tz=datetime.UTC)
            return type("Info", (), {"mtime": mtime})()

    store = Store()
    beat = s3_publish._Heartbeat(store, "u", claimed_at=1000.0)
    store.clock, store.fail_next = 1030.0, True
    beat(now=True)
    store.clock = 1060.0
    beat(now=True)
    assert not beat.lapsed and beat.last_stamp == 1060.0
    store.clock = 1060.0 + s3_publish.CLAIM_ALIVE_S + 1  # a real pause between two beats
    beat(now=True)
    assert beat.lapsed
