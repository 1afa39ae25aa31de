"""A lesson's ``write_*(..., mode="overwrite")`` that fails keeps the learner's earlier output.

Ray 2.60's file writers empty the folder for ``mode="overwrite"`` in the driver,
before the execution (and so the resource check) starts. Each test here writes a
correct lab answer with a real Ray write, runs the same write again the way a
learner would, with a mistake that makes it fail (an actor pool larger than the
cluster, a stage that raises half-way, Ctrl-C), and checks that the folder holds
exactly the earlier files and the lab still says *correct*. The writes run on
the suite's shared session (the ``session`` fixture); nothing loads a model.
"""

from __future__ import annotations

import functools
import io
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.labs.data import animal_prompts, joined_row_count
from helpers.labs.framework import CORRECT, get_lab
from helpers.runtime.overwrite import WRITING, OverwriteRefusedError, refuse_overwriting_shared_folders
from helpers.runtime.resources import ResourceMismatchError

#: Writes of the lessons, as their cells call them: (lab, its argument, the write).
WRITERS = {
    "parquet": ("03_parquet", "parquet_path", lambda ds, path: ds.write_parquet(path, mode="overwrite")),
    "png": (
        "04_png",
        "folder",
        lambda ds, path: ds.write_images(path, column="image", file_format="png", mode="overwrite"),
    ),
}


def write(writer: str, ds, folder: Path) -> None:
    WRITERS[writer][2](ds, str(folder))


def lab_says(writer: str, folder: Path):
    lab, argument, _ = WRITERS[writer]
    return get_lab(lab).evaluate(**{argument: str(folder)})


def png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), seed % 256, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def answer(writer: str):
    """The rows a correct lab answer writes: lab 03's prompts with PNG bytes, lab 04's joined rows as pixels."""
    import ray

    if writer == "parquet":
        items = [{"id": i, "prompt": prompt, "image": png_bytes(i)} for i, prompt in enumerate(animal_prompts())]
    else:
        items = [{"id": i, "image": np.full((4, 4, 3), i % 256, dtype=np.uint8)} for i in range(joined_row_count())]
    return ray.data.from_items(items, override_num_blocks=4)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def siblings(folder: Path) -> list[str]:
    """What a write left next to the folder (a staging folder must not outlive its write)."""
    return sorted(path.name for path in folder.parent.iterdir() if path != folder)


def written_correctly(tmp_path: Path, writer: str) -> tuple[Path, dict[str, bytes]]:
    folder = tmp_path / WRITERS[writer][0]
    write(writer, answer(writer), folder)
    assert lab_says(writer, folder).status == CORRECT
    return folder, snapshot(folder)


def assert_kept(folder: Path, before: dict[str, bytes], writer: str) -> None:
    assert snapshot(folder) == before, "the failed re-run changed the earlier output"
    outcome = lab_says(writer, folder)
    assert outcome.status == CORRECT, outcome.message


@pytest.mark.parametrize("writer", WRITERS)
def test_rerun_stopped_by_the_resource_check_keeps_the_earlier_output(session, tmp_path, writer):
    import ray

    class NeedsAGpu:  # no model: the resource check rejects the pool before any actor runs
        def __call__(self, batch):
            return batch

    folder, before = written_correctly(tmp_path, writer)
    too_many = int(ray.cluster_resources().get("GPU", 0)) + 1  # e.g. WORKSHOP_IMAGE_ACTORS=5 on fewer GPUs
    pool = ray.data.ActorPoolStrategy(size=too_many)
    rerun = answer(writer).map_batches(NeedsAGpu, batch_size=8, num_gpus=1, compute=pool)
    with pytest.raises(ResourceMismatchError):
        write(writer, rerun, folder)
    assert_kept(folder, before, writer)
    assert siblings(folder) == []


@pytest.mark.parametrize("writer", WRITERS)
def test_rerun_failing_half_way_keeps_the_earlier_output(session, tmp_path, writer):
    def fail_after_the_others(batch):  # defined here: Ray ships it by value, the tests are no package
        if 0 in batch["id"]:
            time.sleep(1)  # the other blocks are written first: the failure comes half-way
            raise ValueError("a model stage failed half-way")
        return batch

    folder, before = written_correctly(tmp_path, writer)
    with pytest.raises(Exception, match="failed half-way"):
        write(writer, answer(writer).map_batches(fail_after_the_others), folder)
    assert_kept(folder, before, writer)
    assert siblings(folder) == []


def interrupted_write(folder: Path, before: dict[str, bytes], go_on: Path) -> None:
    """Write lab 03's answer into ``folder`` and press Ctrl-C (Jupyter's "interrupt kernel") once it has written files.

    ``before`` is what the folder held. ``go_on`` (not beside the folder) is made once the interrupt has landed.
    """

    def new_files() -> bool:  # in the folder or beside it
        return not {p.name for p in folder.parent.glob("**/*.parquet")} <= set(before)

    def slow(batch):
        time.sleep(0.5)  # a model stage's pace
        # Once the write has written a file, its other tasks wait here (at most 2 min), so the
        # interrupt lands half-way on a loaded machine too; Ray cancels them while they wait.
        deadline = time.monotonic() + 120
        while not go_on.exists() and time.monotonic() < deadline and new_files():
            time.sleep(0.05)
        return batch

    driver = threading.get_ident()

    def interrupt_when_new_files_appear():
        deadline = time.monotonic() + 120
        while not new_files():
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        signal.pthread_kill(driver, signal.SIGALRM)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    watcher = threading.Thread(target=interrupt_when_new_files_appear, daemon=True)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            write("parquet", answer("parquet").repartition(20).map_batches(slow), folder)
    finally:
        go_on.touch()
        watcher.join()
        signal.signal(signal.SIGALRM, previous)


def test_interrupted_rerun_keeps_the_earlier_output_and_the_next_run_replaces_it(session, tmp_path, tmp_path_factory):
    """Ctrl-C in the driver once the re-run has written files, then a re-run."""
    folder, before = written_correctly(tmp_path, "parquet")
    interrupted_write(folder, before, tmp_path_factory.mktemp("flags") / "go-on")
    assert_kept(folder, before, "parquet")
    assert [name.split(WRITING)[0] for name in siblings(folder)] == [folder.name], "the interrupted run's files"

    write("parquet", answer("parquet").repartition(2), folder)
    assert len(list(folder.glob("*.parquet"))) == 2
    assert lab_says("parquet", folder).status == CORRECT
    assert siblings(folder) == [], "the next run removes what the interrupted one left"


@pytest.mark.parametrize("writer", WRITERS)
def test_a_first_write_makes_the_folders_on_its_path(session, tmp_path, writer):
    """A learner's first write: ``output_path()`` names a folder inside an outputs folder not made yet."""
    folder = tmp_path / "outputs" / "ada" / WRITERS[writer][0]
    write(writer, answer(writer), folder)
    assert lab_says(writer, folder).status == CORRECT
    assert siblings(folder) == []


@pytest.mark.parametrize("writer", WRITERS)
def test_an_overwrite_of_the_outputs_folder_is_refused_and_every_lesson_keeps_its_files(session, tmp_path,
                                                                                      monkeypatch, writer):
    """``output_path()`` without a lesson's name: an overwrite there would delete every other lesson's output."""
    storage = tmp_path / "storage"
    monkeypatch.setenv("WORKSHOP_STORAGE", str(storage))
    monkeypatch.setenv("WORKSHOP_USER", "ada")
    outputs = storage / "outputs" / "ada"
    earlier = outputs / "04_png" / "0.png"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(png_bytes(1))
    for folder, holds in ((outputs, "your outputs of every lesson"), (storage / "outputs", "every learner's outputs"),
                          (storage, "the workshop's storage"), (tmp_path, "your outputs of every lesson")):
        with pytest.raises(OverwriteRefusedError, match=f"before it writes, and .*{holds}"):
            write(writer, answer(writer), folder)
    assert earlier.read_bytes() == png_bytes(1)
    assert sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*")) == [
        "storage", "storage/outputs", "storage/outputs/ada", "storage/outputs/ada/04_png",
        "storage/outputs/ada/04_png/0.png"]
    write(writer, answer(writer), outputs / WRITERS[writer][0])  # a lesson's own folder: written as always
    assert lab_says(writer, outputs / WRITERS[writer][0]).status == CORRECT


def test_no_overwrite_of_the_clone_home_or_an_object_store_root(monkeypatch, tmp_path):
    """The same refusal for the folders a learner's storage is not in, and on an object store."""
    from pyarrow.fs import LocalFileSystem

    from helpers.runtime.settings import REPO_ROOT

    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path / "storage"))
    local = LocalFileSystem()
    for folder, holds in ((REPO_ROOT, "this clone"), (Path.home(), "your home folder"), (Path("/"), "")):
        with pytest.raises(OverwriteRefusedError, match=holds):
            refuse_overwriting_shared_folders(str(folder), local)
    refuse_overwriting_shared_folders(str(tmp_path / "storage" / "outputs" / "ada" / "03_parquet"), local)
    refuse_overwriting_shared_folders(str(tmp_path / "elsewhere"), local)

    monkeypatch.setenv("WORKSHOP_STORAGE", "s3://bucket/workshop")
    monkeypatch.setenv("WORKSHOP_USER", "ada")
    s3 = object()  # not a local file system: paths are compared as bucket/prefix
    for path in ("bucket/workshop/outputs/ada", "bucket/workshop/", "bucket"):
        with pytest.raises(OverwriteRefusedError):
            refuse_overwriting_shared_folders(path, s3)
    refuse_overwriting_shared_folders("bucket/workshop/outputs/ada/03_parquet", s3)
    refuse_overwriting_shared_folders("bucket/workshop-old", s3)


def test_the_refusal_needs_no_home_folder(monkeypatch, tmp_path):
    """A container without HOME and without an entry in the user database: the other folders are still kept."""
    from pyarrow.fs import LocalFileSystem

    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path / "storage"))

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    with pytest.raises(OverwriteRefusedError, match="the workshop's storage"):
        refuse_overwriting_shared_folders(str(tmp_path / "storage"), LocalFileSystem())
    refuse_overwriting_shared_folders(str(tmp_path / "storage" / "outputs" / "ada" / "03_parquet"), LocalFileSystem())


def test_a_first_write_of_no_rows_leaves_no_folder_as_rays_own_does(session, tmp_path):
    """A filter that keeps nothing: Ray removes the folder it made; so does a write that went beside it."""
    folder = tmp_path / WRITERS["parquet"][0]
    write("parquet", answer("parquet").filter(lambda row: False), folder)
    assert not folder.exists() and siblings(folder) == []
    assert "does not exist: nothing has been written there yet" in lab_says("parquet", folder).message


def test_an_overwrite_of_a_file_named_relatively_with_a_trailing_slash_leaves_the_file(tmp_path, monkeypatch):
    """``write_parquet("out.csv/", mode="overwrite")`` beside the learner's own ``out.csv``: Ray refuses it, and the
    file stays (pyarrow keeps the slash of a relative path, and a file does not answer to ``out.csv/``).

    Unit test that calls the write's first hook as Ray's write calls it.
    """
    from pyarrow import fs
    from ray.data import SaveMode

    from helpers.runtime.overwrite import replace_only_when_complete
    from helpers.runtime.ray_internals import file_datasink_class

    replace_only_when_complete()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out.csv").write_text("mine")
    sink = file_datasink_class()("out.csv/", filesystem=fs.LocalFileSystem(), mode=SaveMode.OVERWRITE)
    with pytest.raises(FileExistsError):
        sink.on_write_start()
    assert [path.name for path in tmp_path.iterdir()] == ["out.csv"]
    assert (tmp_path / "out.csv").read_text() == "mine"


def test_an_interrupted_first_write_leaves_no_folder_for_the_lab_to_read(session, tmp_path, tmp_path_factory):
    """Ctrl-C in the learner's first write: the lab finds nothing written, not part of an answer it would call a
    sample of the data; the next run writes the folder whole."""
    folder = tmp_path / WRITERS["parquet"][0]
    interrupted_write(folder, {}, tmp_path_factory.mktemp("flags") / "go-on")
    assert not folder.exists(), "the interrupted first write left a half-written folder"
    assert "does not exist: nothing has been written there yet" in lab_says("parquet", folder).message

    write("parquet", answer("parquet").repartition(2), folder)
    assert lab_says("parquet", folder).status == CORRECT
    assert siblings(folder) == [], "the next run removes what the interrupted one left"


@pytest.mark.parametrize("writer", WRITERS)
def test_successful_rerun_replaces_the_output_and_leaves_nothing_beside_it(session, tmp_path, writer):
    folder, before = written_correctly(tmp_path, writer)
    write(writer, answer(writer).repartition(1), folder)
    after = snapshot(folder)
    assert after and not set(after) & set(before), "every earlier file was replaced"
    assert lab_says(writer, folder).status == CORRECT
    assert siblings(folder) == []


@pytest.mark.parametrize("writer", WRITERS)
def test_a_rerun_into_the_folder_named_with_a_trailing_slash_replaces_it(session, tmp_path, writer):
    """``write_parquet("out/", mode="overwrite")``: Ray keeps the slash, and the new files must still
    be staged beside the folder, not inside the folder they replace."""
    folder, before = written_correctly(tmp_path, writer)
    WRITERS[writer][2](answer(writer).repartition(1), f"{folder}/")
    after = snapshot(folder)
    assert after and not set(after) & set(before), "every earlier file was replaced"
    assert lab_says(writer, folder).status == CORRECT
    assert siblings(folder) == []


# ---------------------------------------------------------------- replacing, without Ray


def mock_filesystem(files: dict[str, bytes]):
    """pyarrow's in-memory file system: a file system without rename, like an object store."""
    from datetime import datetime

    from pyarrow import fs

    memory = fs._MockFileSystem(datetime.now())
    for path, data in files.items():
        memory.create_dir(path.rsplit("/", 1)[0])
        with memory.open_output_stream(path) as out:
            out.write(data)
    return memory


def listing(filesystem, root: str) -> list[str]:
    from pyarrow import fs

    return sorted(info.path for info in filesystem.get_file_info(fs.FileSelector(root, recursive=True)))


def test_on_an_object_store_the_finished_files_replace_the_earlier_ones():
    from helpers.runtime.overwrite import _replace

    memory = mock_filesystem({"out/a/old.parquet": b"old", f"out/a{WRITING}0123abcd/new.parquet": b"new"})
    _replace(memory, f"out/a{WRITING}0123abcd", "out/a")
    assert listing(memory, "out") == ["out/a", "out/a/new.parquet"]


def test_on_an_object_store_an_overwrite_of_a_prefix_with_a_trailing_slash_keeps_the_new_files():
    """The datasink's own hooks, as Ray's write calls them, on a file system without rename."""
    from ray.data import SaveMode

    from helpers.runtime.overwrite import replace_only_when_complete
    from helpers.runtime.ray_internals import file_datasink_class

    replace_only_when_complete()
    memory = mock_filesystem({"bucket/out/old.parquet": b"old"})
    sink = file_datasink_class()("bucket/out/", filesystem=memory, mode=SaveMode.OVERWRITE)
    sink.on_write_start()
    assert sink.path.startswith(f"bucket/out{WRITING}"), sink.path
    memory.create_dir(sink.path)
    with memory.open_output_stream(f"{sink.path}/new.parquet") as out:
        out.write(b"new")
    sink.on_write_complete(None)
    assert listing(memory, "bucket") == ["bucket/out", "bucket/out/new.parquet"]


def test_only_the_leftovers_of_the_same_folder_are_removed():
    from helpers.runtime.overwrite import SET_ASIDE, _remove_leftovers

    names = [f"a{WRITING}0123abcd", f"a{WRITING}89abcdef{SET_ASIDE}", f"a{WRITING}keep", f"ab{WRITING}0123abcd", "a"]
    memory = mock_filesystem({f"out/{name}/x.parquet": b"" for name in names})
    _remove_leftovers(memory, "out/a")
    assert [path for path in listing(memory, "out") if path.count("/") == 1] == [
        "out/a",
        f"out/a{WRITING}keep",
        f"out/ab{WRITING}0123abcd",
    ]


def test_once_the_folder_is_complete_every_leftover_goes_kept_or_made_again_late():
    """A task of an interrupted write, cancelled while finishing its file, can make its sibling folder again after
    the next write's start removed it; that write, once complete, removes it with the kept copies."""
    from helpers.runtime.overwrite import KEEP_MARKER, _remove_leftovers

    memory = mock_filesystem({f"out/a{WRITING}0123abcd/x.parquet": b"", f"out/a{WRITING}89abcdef/{KEEP_MARKER}": b"",
                              "out/a/new.parquet": b""})
    _remove_leftovers(memory, "out/a")
    assert [p for p in listing(memory, "out") if p.count("/") == 1] == ["out/a", f"out/a{WRITING}89abcdef"], (
        "before the folder is complete, the kept copy stays")
    memory.create_dir(f"out/a{WRITING}0123abcd")  # the late task's folder and file
    with memory.open_output_stream(f"out/a{WRITING}0123abcd/x.parquet") as late:
        late.write(b"")
    _remove_leftovers(memory, "out/a", complete=True)
    assert [p for p in listing(memory, "out") if p.count("/") == 1] == ["out/a"]


def test_a_local_replace_that_fails_half_way_puts_the_earlier_folder_back(tmp_path, monkeypatch):
    import os

    from pyarrow import fs

    from helpers.runtime.overwrite import _replace

    target, finished = tmp_path / "a", tmp_path / f"a{WRITING}0123abcd"
    for folder, name in ((target, "old.parquet"), (finished, "new.parquet")):
        folder.mkdir()
        (folder / name).write_bytes(b"")
    rename = os.rename

    def second_rename_interrupted(source, destination):
        if str(source) == str(finished):
            raise KeyboardInterrupt
        rename(source, destination)

    monkeypatch.setattr(os, "rename", second_rename_interrupted)
    with pytest.raises(KeyboardInterrupt):
        _replace(fs.LocalFileSystem(), str(finished), str(target))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", finished.name]
    assert [p.name for p in target.iterdir()] == ["old.parquet"]
    assert [p.name for p in finished.iterdir()] == ["new.parquet"]


def test_a_failed_write_removes_its_folder_also_when_a_cancelled_task_writes_a_file_after_that(tmp_path):
    """When one write task fails, Ray cancels the others; one that was mid-file can still finish it afterwards.

    A thread plays that task: it writes into the sibling folder 0.3 s after the driver first deleted it.
    """
    from pyarrow import fs

    from helpers.runtime.overwrite import delete_once_settled

    sibling = tmp_path / f"a{WRITING}0123abcd"
    sibling.mkdir()
    (sibling / "0.parquet").write_bytes(b"")

    def late_write():
        time.sleep(0.3)
        sibling.mkdir(exist_ok=True)
        (sibling / "1.parquet").write_bytes(b"")

    task = threading.Thread(target=late_write)
    task.start()
    delete_once_settled(fs.LocalFileSystem(), str(sibling), quiet_s=0.6, limit_s=5)
    task.join()
    assert not sibling.exists()


def _overwrite_two_files(memory):
    """A lesson's ``mode="overwrite"`` of two files into ``bucket/out``, the hooks called as Ray's write calls them."""
    from ray.data import SaveMode

    from helpers.runtime.ray_internals import file_datasink_class

    sink = file_datasink_class()("bucket/out", filesystem=memory, mode=SaveMode.OVERWRITE)
    sink.on_write_start()
    for name in ("a.parquet", "b.parquet"):
        with memory.open_output_stream(f"{sink.path}/{name}") as out:
            out.write(b"new")
    return sink


def test_an_object_store_replace_that_stops_half_way_keeps_the_only_complete_copy(monkeypatch):
    """The copy into the emptied prefix fails (a dropped connection); the hooks are called as Ray's write calls them.

    Unit test with a simulated failure: pyarrow's ``copy_files`` is replaced by one that copies a file, then raises.
    """
    from pyarrow import fs

    from helpers.runtime.overwrite import KEEP_MARKER, ReplaceStoppedError, replace_only_when_complete

    def copy_one_then_fail(source, destination, source_filesystem, destination_filesystem):
        first = min(info.path for info in source_filesystem.get_file_info(fs.FileSelector(source))
                    if info.base_name != KEEP_MARKER)
        source_filesystem.copy_file(first, f"{destination}/{first.rsplit('/', 1)[1]}")
        raise OSError("connection reset")

    replace_only_when_complete()
    memory = mock_filesystem({"bucket/out/old.parquet": b"old"})
    overwrite = functools.partial(_overwrite_two_files, memory)
    sink = overwrite()
    sibling = sink.path
    monkeypatch.setattr(fs, "copy_files", copy_one_then_fail)
    with pytest.raises(ReplaceStoppedError) as raised:
        sink.on_write_complete(None)
    sink.on_write_failed(raised.value)  # what Ray's write_datasink does with the error
    assert f"the complete new output is in {sibling}" in str(raised.value)
    assert {f"{sibling}/a.parquet", f"{sibling}/b.parquet"} <= set(listing(memory, sibling)), "the copy was deleted"

    monkeypatch.undo()  # the network is back: the next overwrite keeps the copy until it has replaced the folder
    retry = overwrite()
    assert sibling in listing(memory, "bucket"), "the next write's tidy-up deleted the only complete copy"
    retry.on_write_complete(None)
    assert listing(memory, "bucket") == ["bucket/out", "bucket/out/a.parquet", "bucket/out/b.parquet"]


def test_a_kept_copy_goes_once_an_overwrite_into_the_emptied_prefix_completes(monkeypatch):
    """The copy fails before its first file: the prefix is left empty, so the next overwrite has nothing earlier
    to keep and takes Ray's own path; once it completes, the copy kept aside is no longer needed.

    Unit test with a simulated failure: pyarrow's ``copy_files`` raises at once.
    """
    from types import SimpleNamespace

    from pyarrow import fs

    from helpers.runtime.overwrite import ReplaceStoppedError, replace_only_when_complete

    def fail_at_once(*args, **kwargs):
        raise OSError("connection reset")

    replace_only_when_complete()
    memory = mock_filesystem({"bucket/out/old.parquet": b"old"})
    sink = _overwrite_two_files(memory)
    monkeypatch.setattr(fs, "copy_files", fail_at_once)
    with pytest.raises(ReplaceStoppedError):
        sink.on_write_complete(None)
    monkeypatch.undo()
    assert not [path for path in listing(memory, "bucket") if path.startswith("bucket/out/")]
    retry = _overwrite_two_files(memory)
    assert retry.path.rstrip("/") == "bucket/out", "with nothing to keep on an object store, Ray writes in place"
    retry.on_write_complete(SimpleNamespace(num_rows=2))
    assert listing(memory, "bucket") == ["bucket/out", "bucket/out/a.parquet", "bucket/out/b.parquet"]


def test_a_first_write_to_an_object_store_completes_where_its_parent_cannot_be_listed(monkeypatch, caplog):
    """A policy that grants the output prefix alone refuses to list its parent, where leftovers would be: the
    first write, Ray's own on an object store, is complete all the same.

    Unit test with a simulated refusal: the look for leftovers raises as pyarrow does on a denied listing.
    """
    from types import SimpleNamespace

    from helpers.runtime import overwrite

    def refused(*args, **kwargs):
        raise OSError("When listing objects under key '' in bucket 'bucket': AWS Error ACCESS_DENIED")

    overwrite.replace_only_when_complete()
    memory = mock_filesystem({})
    memory.create_dir("bucket")
    sink = _overwrite_two_files(memory)
    assert sink.path.rstrip("/") == "bucket/out", "a first write to an object store is Ray's own"
    monkeypatch.setattr(overwrite, "_remove_leftovers", refused)
    sink.on_write_complete(SimpleNamespace(num_rows=2))
    assert listing(memory, "bucket") == ["bucket/out", "bucket/out/a.parquet", "bucket/out/b.parquet"]
    assert "could not look for leftovers beside bucket/out" in caplog.text


@pytest.mark.parametrize("late_task", [False, True])
def test_a_write_whose_files_another_write_removed_leaves_the_folder_as_it_was(tmp_path, late_task):
    """Two notebooks of one learner write the same folder at once: the one that finishes first tidies up the
    other's sibling. The other must not then put an empty folder in place of the complete one.

    Unit test that calls the hooks as Ray's write calls them, the other write's tidy-up played by a delete.
    """
    import shutil
    from types import SimpleNamespace

    from pyarrow import fs
    from ray.data import SaveMode

    from helpers.runtime.overwrite import WriteRemovedError, replace_only_when_complete
    from helpers.runtime.ray_internals import file_datasink_class

    replace_only_when_complete()
    folder = tmp_path / "03_parquet"
    folder.mkdir()
    (folder / "complete.parquet").write_bytes(b"the other notebook's whole answer")
    sink = file_datasink_class()(str(folder), filesystem=fs.LocalFileSystem(), mode=SaveMode.OVERWRITE)
    sink.on_write_start()
    (Path(sink.path) / "mine.parquet").write_bytes(b"part")
    shutil.rmtree(sink.path)  # the other write, complete, removed every sibling
    if late_task:  # a task of this write still writing its file then makes the sibling again, with a part
        Path(sink.path).mkdir()
        (Path(sink.path) / "late.parquet").write_bytes(b"part")
    with pytest.raises(WriteRemovedError, match="run this cell again once the other write has finished") as raised:
        sink.on_write_complete(SimpleNamespace(num_rows=60))
    sink.on_write_failed(raised.value)  # what Ray's write_datasink does with the error
    assert [path.name for path in folder.iterdir()] == ["complete.parquet"]
    assert siblings(folder) == []


def test_a_sibling_taken_away_right_before_the_replace_leaves_the_folder_as_it_was(tmp_path):
    """The other write's tidy-up lands between this write's marker delete and its replace: on a local file system
    the second rename fails and the folder is put back; on an object store a write of rows whose prefix is empty
    is refused, not taken for a write of none.

    Unit test that calls the replace step itself with a sibling that is gone.
    """
    from pyarrow import fs

    from helpers.runtime.overwrite import WriteRemovedError, _replace

    folder = tmp_path / "03_parquet"
    folder.mkdir()
    (folder / "complete.parquet").write_bytes(b"whole")
    with pytest.raises(FileNotFoundError):
        _replace(fs.LocalFileSystem(), str(tmp_path / f"03_parquet{WRITING}0123abcd"), str(folder), rows=60)
    assert [path.name for path in tmp_path.iterdir()] == ["03_parquet"]
    assert (folder / "complete.parquet").read_bytes() == b"whole"

    memory = mock_filesystem({"bucket/out/complete.parquet": b"whole"})
    with pytest.raises(WriteRemovedError):
        _replace(memory, f"bucket/out{WRITING}0123abcd", "bucket/out", rows=60)
    assert listing(memory, "bucket") == ["bucket/out", "bucket/out/complete.parquet"]
