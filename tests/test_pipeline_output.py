"""The pipeline command's output folder never costs a user a file (:mod:`helpers.pipeline.output`).

Most tests call the folder functions directly on folders laid out as a user
would have them. The ones that go through ``helpers.pipeline.command.main`` replace
the Ray run with a stub that writes a small, valid output (said where it is
done): they test what the command does around the run (locks, publishing,
messages), which needs no model. The real runs are in ``test_pipeline_cli``.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers.errors import InputError, PublishError
from helpers.pipeline import command as pipeline
from helpers.pipeline import output as out
from helpers.pipeline import writer
from helpers.runtime.settings import REPO_ROOT

DATA = REPO_ROOT / "data"


def earlier_output(folder: Path, label: str = "old", *, legacy: bool = False) -> Path:
    """A complete output as the pipeline leaves it (``legacy``: a summary from before ``written_by``)."""
    (folder / "parquet").mkdir(parents=True)
    (folder / "images").mkdir()
    pq.write_table(pa.table({"id": [1], "label": [label]}), folder / "parquet" / "part-00000.parquet")
    (folder / "images" / "1.png").write_bytes(label.encode())
    summary = {"joined": 1, "parquet_rows": 1, "png_files": 1, "llm": False, "output": str(folder), "label": label}
    if not legacy:
        summary["written_by"] = out.WRITTEN_BY
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def label_of(folder: Path) -> str:
    return json.loads((folder / "summary.json").read_text())["label"]


def finished_partial(partial: Path, label: str) -> Path:
    """Fill a partial folder as a finished run does."""
    pq.write_table(pa.table({"id": [1], "label": [label]}), partial / "parquet" / "part-00000.parquet")
    (partial / "images" / "1.png").write_bytes(label.encode())
    (partial / "summary.json").write_text(json.dumps({"written_by": out.WRITTEN_BY, "label": label}))
    return partial


def replace(output: Path, label: str) -> None:
    lock, partial = out.claim_output(output)
    try:
        out.publish(finished_partial(partial, label), output)
    finally:
        lock.release()


def names(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir())


# ---------------------------------------------------------------- what may be replaced


def test_an_earlier_output_is_replaced_and_nothing_is_left_beside_it(tmp_path):
    output = earlier_output(tmp_path / "out")
    replace(output, "new")
    assert label_of(output) == "new"
    assert (output / "images" / "1.png").read_bytes() == b"new"
    assert names(tmp_path) == ["out"], "no partial folder, no lock file"


def test_an_output_from_before_the_written_by_field_is_still_recognised(tmp_path):
    output = earlier_output(tmp_path / "out", legacy=True)
    replace(output, "new")
    assert label_of(output) == "new"


def test_a_users_file_inside_an_earlier_output_is_never_deleted(tmp_path):
    output = earlier_output(tmp_path / "X")
    (output / "images" / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(InputError, match=r"did not write \(images/holiday.jpg\)"):
        out.claim_output(output)
    assert (output / "images" / "holiday.jpg").read_bytes() == b"precious"
    assert names(tmp_path) == ["X"]


def test_what_a_file_browser_leaves_in_an_earlier_output_does_not_make_it_someone_elses(tmp_path):
    """Finder writes ``.DS_Store`` (and ``._*`` files on some disks) into a folder someone looked at, Explorer
    ``Thumbs.db``: the next run replaces the output with them. A user's own file beside them is still refused."""
    output = earlier_output(tmp_path / "out")
    for litter in (".DS_Store", "images/.DS_Store", "images/._1.png", "images/Thumbs.db", "desktop.ini"):
        (output / litter).write_bytes(b"")
    replace(output, "new")
    assert label_of(output) == "new" and not (output / ".DS_Store").exists()
    assert out.foreign_entries([".DS_Store", "images/DS_Store.png", "notes", "notes/._x", "._"]) == [
        "._", "images/DS_Store.png", "notes", "notes/._x"], "a ._ file describes its namesake, or it is the user's"


def test_a_folder_that_holds_only_what_a_file_browser_left_may_be_used(tmp_path):
    """A new folder someone opened in Finder before the first run: nothing in it is anyone's."""
    output = tmp_path / "out"
    output.mkdir()
    (output / ".DS_Store").write_bytes(b"")
    replace(output, "new")
    assert label_of(output) == "new" and names(tmp_path) == ["out"]


def test_a_folder_of_the_pipelines_shape_without_its_summary_is_refused(tmp_path):
    """A user's own numbered pictures in ``images/`` look like ours; without our summary they are not."""
    output = tmp_path / "X"
    (output / "images").mkdir(parents=True)
    (output / "images" / "1.png").write_bytes(b"a user's picture")
    with pytest.raises(InputError, match="not an earlier output of this pipeline"):
        out.claim_output(output)
    assert (output / "images" / "1.png").exists()


def test_a_summary_from_another_program_is_not_ours(tmp_path):
    output = tmp_path / "X"
    output.mkdir()
    (output / "summary.json").write_text(json.dumps({"title": "my report"}))
    with pytest.raises(InputError, match="not an earlier output"):
        out.claim_output(output)
    assert (output / "summary.json").exists()


def test_an_empty_folder_may_be_used(tmp_path):
    output = tmp_path / "X"
    output.mkdir()
    replace(output, "new")
    assert label_of(output) == "new"


# ---------------------------------------------------------------- partial folders


def test_only_marked_partial_folders_are_cleaned_up(tmp_path):
    output = earlier_output(tmp_path / "results")
    stale = tmp_path / "results.partial-abc123"
    stale.mkdir()
    (stale / out.PARTIAL_MARKER).write_text("1234\n")
    (stale / "junk").write_text("left by a killed run")
    users = tmp_path / "results.partial-keep"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    replace(output, "new")
    assert names(tmp_path) == ["results", "results.partial-keep"]
    assert (users / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["res*", "out[1]", "a?"])
def test_glob_characters_in_the_output_name_match_only_that_name(tmp_path, name):
    """``res*.partial-*`` as a pattern would match ``results.partial-x``: names are compared as text."""
    others = {"res*": "results.partial-x", "out[1]": "out1.partial-x", "a?": "ab.partial-x"}
    neighbour = tmp_path / others[name]
    neighbour.mkdir()
    (neighbour / out.PARTIAL_MARKER).write_text("another run's\n")
    replace(tmp_path / name, "new")
    assert neighbour.is_dir(), "a partial folder of another output was deleted"
    assert label_of(tmp_path / name) == "new"


def test_a_users_copy_of_an_earlier_output_beside_it_is_never_deleted(tmp_path):
    """``X.partial-keep``: a user's backup of an earlier run, named like a partial folder but without a marker."""
    output = earlier_output(tmp_path / "results", "old")
    backup = earlier_output(tmp_path / "results.partial-keep", "backup")
    set_aside_shape = earlier_output(tmp_path / "results.partial-abcd1234-old", "also mine")
    replace(output, "new")
    assert label_of(output) == "new"
    assert label_of(backup) == "backup"
    assert label_of(set_aside_shape) == "also mine"
    assert names(tmp_path) == ["results", "results.partial-abcd1234-old", "results.partial-keep"]


def test_a_crash_between_the_two_renames_gets_the_previous_output_back(tmp_path, capsys):
    """Power loss after ``X -> X.partial-id-old`` and before ``X.partial-id -> X``: the next run restores X."""
    output = tmp_path / "X"
    aside = earlier_output(tmp_path / "X.partial-abc-old", "old")
    (aside / out.SET_ASIDE_MARKER).write_text("1234\n")  # as the fallback publish marks what it sets aside
    finished_partial(out.mark_partial(tmp_path / "X.partial-abc"), "unpublished")
    lock, partial = out.claim_output(output)
    lock.release()
    assert label_of(output) == "old"
    assert not (output / out.SET_ASIDE_MARKER).exists()
    assert "restored the previous output" in capsys.readouterr().err
    assert names(tmp_path) == sorted(["X", partial.name])


def test_an_earlier_output_set_aside_is_removed_once_a_newer_output_is_in_place(tmp_path):
    output = earlier_output(tmp_path / "X", "newer")
    aside = earlier_output(tmp_path / "X.partial-abc-old", "older")
    (aside / out.SET_ASIDE_MARKER).write_text("1234\n")
    replace(output, "new")
    assert names(tmp_path) == ["X"]


def test_a_crash_right_after_the_exchange_leaves_the_previous_output_marked_for_removal(tmp_path, monkeypatch):
    """Simulated crash: the removal of the previous output, just after the swap, never runs."""
    output = earlier_output(tmp_path / "X", "older")
    monkeypatch.setattr(out.shutil, "rmtree", lambda *args, **kwargs: None)
    replace(output, "new")
    assert label_of(output) == "new" and not (output / out.SET_ASIDE_MARKER).exists()
    [left] = [entry for entry in tmp_path.iterdir() if entry.name != "X"]
    assert (left / out.SET_ASIDE_MARKER).is_file() and label_of(left) == "older"
    monkeypatch.undo()
    assert out.clean_stale_partials(output) == []
    assert names(tmp_path) == ["X"] and label_of(output) == "new"


def test_a_mount_point_as_output_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    """A docker volume as ``--output``: the partial folder beside it would be on another file system.

    Simulated: this unit test makes ``os.path.ismount`` say so for the output folder.
    """
    output = earlier_output(tmp_path / "volume")
    monkeypatch.setattr(out.os.path, "ismount", lambda path: Path(path) == output)
    with pytest.raises(InputError, match=r"is a mount point .* give a folder inside it, e\.g\. .*volume/pipeline"):
        out.claim_output(output)
    assert names(tmp_path) == ["volume"], "no partial folder, no lock file"


def test_an_output_on_another_device_than_its_parent_is_refused(tmp_path, monkeypatch):
    """A bind mount that ``ismount`` misses still shows as another device. Simulated: ``Path.stat`` is wrapped
    in this unit test so that the output folder reports a different ``st_dev`` than its parent."""
    output = earlier_output(tmp_path / "volume")
    real_stat = Path.stat

    def stat(self, **kwargs):
        result = real_stat(self, **kwargs)
        if self == output:
            return os.stat_result((*result[:2], result.st_dev + 1, *result[3:]))
        return result

    monkeypatch.setattr(Path, "stat", stat)
    with pytest.raises(InputError, match="is a mount point"):
        out.claim_output(output)


# ---------------------------------------------------------------- one run at a time


def test_a_second_run_into_the_same_output_is_refused_in_one_line(tmp_path):
    """The user's road: a second ``python -m helpers.pipeline`` while the first holds the output."""
    output = earlier_output(tmp_path / "out")
    lock, partial = out.claim_output(output)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "helpers.pipeline", "--animals", DATA / "animals.csv",
             "--outfits", DATA / "outfits.csv", "--output", output],
            capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=False,
            env={**os.environ, "WORKSHOP_PROFILE": "cpu"},
        )  # fmt: skip
    finally:
        lock.release()
    assert proc.returncode == 2, proc.stderr
    expected = (
        f"error: another run is writing --output {output} (process {os.getpid()}); "
        "wait for it to finish, or choose another --output"
    )
    assert proc.stderr.splitlines() == [expected]
    assert label_of(output) == "old"
    assert partial.is_dir(), "the second run must not clean the first run's partial folder"


def test_a_killed_runs_lock_does_not_block_the_next_run(tmp_path):
    output = earlier_output(tmp_path / "out")
    code = (
        "import sys; from pathlib import Path; from helpers.pipeline.output import claim_output\n"
        f"claim_output(Path({str(output)!r})); print('locked', flush=True); sys.stdin.read()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match="another run is writing"):
            out.claim_output(output)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    replace(output, "new")  # its marked partial folder is cleaned up, its lock is gone with it
    assert names(tmp_path) == ["out"]


# ---------------------------------------------------------------- publishing without renameat2


def _exchange_fails_with(monkeypatch, code: int) -> None:
    monkeypatch.setattr(out, "_renameat2_exchange", lambda a, b: code)


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP])
def test_without_an_atomic_exchange_the_output_is_replaced_by_two_renames(tmp_path, monkeypatch, code):
    """NFS answers EINVAL; macOS has no renameat2 (ENOSYS); FUSE mounts EOPNOTSUPP."""
    _exchange_fails_with(monkeypatch, code)
    output = earlier_output(tmp_path / "out")
    replace(output, "new")
    assert label_of(output) == "new"
    assert names(tmp_path) == ["out"]


def test_another_exchange_error_is_raised_and_the_output_stays(tmp_path, monkeypatch):
    """Permission denied is not "unsupported": the fallback's renames would not be safer."""
    _exchange_fails_with(monkeypatch, errno.EACCES)
    output = earlier_output(tmp_path / "out")
    lock, partial = out.claim_output(output)
    try:
        with pytest.raises(PermissionError):
            out.publish(finished_partial(partial, "new"), output)
    finally:
        lock.release()
    assert label_of(output) == "old"


def test_ctrl_c_between_the_fallbacks_renames_is_held_until_both_are_done(tmp_path, monkeypatch):
    _exchange_fails_with(monkeypatch, errno.EINVAL)
    output = earlier_output(tmp_path / "out")
    real_rename = Path.rename

    def rename_then_interrupt(self, target):
        moved = real_rename(self, target)
        os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C right here
        return moved

    lock, partial = out.claim_output(output)
    monkeypatch.setattr(Path, "rename", rename_then_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            out.publish(finished_partial(partial, "new"), output)
    finally:
        monkeypatch.setattr(Path, "rename", real_rename)
        lock.release()
    assert label_of(output) == "new", "the interrupt arrived after both renames"


def _second_rename_fails(monkeypatch) -> None:
    """Make ``os.rename`` fail with an I/O error on its second call (the new output into place)."""
    real_rename, calls = os.rename, []

    def second_fails(source, target):
        calls.append(source)
        if len(calls) == 2:
            raise OSError(errno.EIO, "input/output error")
        return real_rename(source, target)

    monkeypatch.setattr(os, "rename", second_fails)


def test_a_failed_second_rename_puts_the_previous_output_back(tmp_path, monkeypatch):
    """Simulated in this unit test: ``os.rename`` fails on its second call (the new output into place)."""
    _exchange_fails_with(monkeypatch, errno.EINVAL)
    output = earlier_output(tmp_path / "out")
    lock, partial = out.claim_output(output)
    finished_partial(partial, "new")
    _second_rename_fails(monkeypatch)
    try:
        with pytest.raises(OSError, match="input/output error"):
            out.publish(partial, output)
    finally:
        monkeypatch.undo()
        lock.release()
    assert label_of(output) == "old", "the previous output must be back in place"
    assert names(output) == ["images", "parquet", "summary.json"]
    assert label_of(partial) == "new" and (partial / out.PARTIAL_MARKER).is_file(), "a marked partial, as before"


def test_files_added_to_the_output_during_the_run_stop_the_publish(tmp_path):
    """The user saves a file into the output folder while the run writes; publishing must not delete it."""
    output = earlier_output(tmp_path / "out")
    lock, partial = out.claim_output(output)
    try:
        finished_partial(partial, "new")
        (output / "notes.txt").write_text("written during the run")
        with pytest.raises(PublishError) as raised:
            out.publish(partial, output)
    finally:
        lock.release()
    assert (output / "notes.txt").read_text() == "written during the run"
    assert label_of(output) == "old"
    assert label_of(partial) == "new", "the new output is kept"
    message = str(raised.value)
    assert f"{output} was not replaced" in message and "notes.txt" in message and str(partial) in message


def test_the_real_exchange_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "which").write_text("a")
    if not out.exchange(a, b):
        pytest.skip("this file system has no renameat2(RENAME_EXCHANGE); the fallback is tested above")
    assert (b / "which").read_text() == "a" and not (a / "which").exists()


# ---------------------------------------------------------------- through the command, Ray run stubbed


def stub_run(label: str, rows: int = 2):
    """Stands in for ``pipeline.run`` (the Ray part): writes ``rows`` rows into the partial folder, as one part."""

    def run(animals, outfits, partial, enhance):
        ids = list(range(1, rows + 1))
        table = pa.table({
            "id": pa.array(ids, pa.int64()), "animal": ["a"] * rows, "outfit": ["o"] * rows,
            "prompt": [label] * rows, "original_prompt": [label] * rows, "enhanced": [False] * rows,
            "image": [b"png"] * rows,
        })  # fmt: skip
        writer.write_part(table, partial)
        return {"enhanced": 0, "images": rows, "actor_restarts": 0, "kept_original": rows}

    return run


def without_ray(monkeypatch) -> None:
    """Run the command in this process with the Ray part stubbed.

    The command stops Ray when its run ends; here no Ray was started for it, and
    stopping would end the Ray session that other tests of this process share.
    """
    from helpers.runtime import cluster

    monkeypatch.setattr(pipeline, "run", stub_run("new"))
    monkeypatch.setattr(cluster, "stop", lambda: None)


def two_row_inputs(folder: Path) -> list[str]:
    (folder / "a.csv").write_text("id,animal\n1,fox\n2,owl\n")
    (folder / "o.csv").write_text("id,outfit\n1,hat\n2,scarf\n")
    return ["--animals", str(folder / "a.csv"), "--outfits", str(folder / "o.csv"), "--no-enhance"]


def test_the_command_writes_its_summary_with_written_by_and_metadata_counts(tmp_path, monkeypatch, capsys):
    without_ray(monkeypatch)
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    output = tmp_path / "out"
    assert pipeline.main([*two_row_inputs(tmp_path), "--output", str(output)]) == 0
    summary = json.loads((output / "summary.json").read_text())
    assert summary["written_by"] == out.WRITTEN_BY
    assert summary["parquet_rows"] == summary["png_files"] == summary["joined"] == 2
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == summary
    assert names(tmp_path) == ["a.csv", "o.csv", "out"]


@pytest.mark.parametrize(
    ("rows", "wrong"),
    [(1, "wrote 1 parquet rows, 1 PNG files, 1 images, 1 joined ids without a row (e.g. id 2)"),
     (3, "wrote 3 parquet rows, 3 PNG files, 3 images, 1 rows of ids the join does not have (e.g. id 3)")],
    ids=["a row missing", "a row the join does not have"],
)  # fmt: skip
def test_a_run_that_wrote_other_rows_than_the_join_fails_and_publishes_nothing(rows, wrong, tmp_path, monkeypatch,
                                                                               capsys):
    """Unit test with the Ray part stubbed (``stub_run``) to write one row too few, or one too many."""
    without_ray(monkeypatch)
    monkeypatch.setattr(pipeline, "run", stub_run("new", rows=rows))
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    output = earlier_output(tmp_path / "out")
    assert pipeline.main([*two_row_inputs(tmp_path), "--output", str(output)]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1] == (
        f"error: {wrong} but the join has 2 rows; {output} was left as it was (run again with --debug to investigate)"
    )
    assert captured.out == ""
    assert label_of(output) == "old"
    assert names(tmp_path) == ["a.csv", "o.csv", "out"], "the partial folder is gone"


def test_an_interrupt_during_the_fallback_publish_says_the_new_output_is_in_place(tmp_path, monkeypatch, capsys):
    without_ray(monkeypatch)
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    _exchange_fails_with(monkeypatch, errno.EINVAL)
    output = earlier_output(tmp_path / "out")
    real_rename = Path.rename

    def rename_then_interrupt(self, target):
        moved = real_rename(self, target)
        os.kill(os.getpid(), signal.SIGTERM)  # `kill` between the renames
        return moved

    monkeypatch.setattr(Path, "rename", rename_then_interrupt)
    code = pipeline.main([*two_row_inputs(tmp_path), "--output", str(output)])
    monkeypatch.setattr(Path, "rename", real_rename)
    assert code == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: interrupted; the new output was already complete in {output}"
    )
    assert json.loads((output / "summary.json").read_text())["written_by"] == out.WRITTEN_BY
    assert pq.read_table(output / "parquet").column("prompt").to_pylist() == ["new", "new"]
    assert names(tmp_path) == ["a.csv", "o.csv", "out"], "the previous output, set aside, is removed too"


def test_an_interrupt_during_the_read_back_keeps_the_previous_output(tmp_path, monkeypatch, capsys):
    """Ctrl-C after the Ray run, while the driver reads the ids back from the written parts."""
    without_ray(monkeypatch)
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    output = earlier_output(tmp_path / "out")
    real_check = pipeline.check_written

    def check_then_interrupt(partial, ids):
        real_check(partial, ids)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the driver checks what the workers wrote
        time.sleep(1)  # Python delivers the KeyboardInterrupt here, as it would inside the read
        raise AssertionError("the interrupt was not delivered")

    monkeypatch.setattr(pipeline, "check_written", check_then_interrupt)
    assert pipeline.main([*two_row_inputs(tmp_path), "--output", str(output)]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == f"error: interrupted; {output} was left as it was"
    assert label_of(output) == "old"
    assert names(tmp_path) == ["a.csv", "o.csv", "out"], "the partial folder is gone"


def test_a_failed_publish_says_the_previous_output_was_left(tmp_path, monkeypatch, capsys):
    without_ray(monkeypatch)
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    _exchange_fails_with(monkeypatch, errno.EIO)
    output = earlier_output(tmp_path / "out")
    assert pipeline.main([*two_row_inputs(tmp_path), "--output", str(output)]) == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("error: OSError: ") and f"{output} was left as it was" in last
    assert label_of(output) == "old"
    assert names(tmp_path) == ["a.csv", "o.csv", "out"]


def test_a_failed_second_rename_through_the_command_says_the_output_is_as_it_was(tmp_path, monkeypatch, capsys):
    """Simulated in this unit test: ``os.rename`` fails on its second call; the Ray run is stubbed."""
    without_ray(monkeypatch)
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    _exchange_fails_with(monkeypatch, errno.EINVAL)
    output = earlier_output(tmp_path / "out")
    _second_rename_fails(monkeypatch)
    code = pipeline.main([*two_row_inputs(tmp_path), "--output", str(output)])
    monkeypatch.undo()
    assert code == 1
    assert f"{output} was left as it was" in capsys.readouterr().err.splitlines()[-1]
    assert label_of(output) == "old"


def test_files_added_during_the_run_keep_both_outputs_through_the_command(tmp_path, monkeypatch, capsys):
    """The stubbed run saves a user's file into the output folder, as a user might meanwhile."""
    output = earlier_output(tmp_path / "out")
    writes = stub_run("new")

    def run_while_the_user_saves_a_file(animals, outfits, partial, enhance):
        (output / "images" / "holiday.jpg").write_bytes(b"precious")
        return writes(animals, outfits, partial, enhance)

    without_ray(monkeypatch)
    monkeypatch.setattr(pipeline, "run", run_while_the_user_saves_a_file)
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    assert pipeline.main([*two_row_inputs(tmp_path), "--output", str(output)]) == 1
    assert (output / "images" / "holiday.jpg").read_bytes() == b"precious"
    [partial] = [entry for entry in tmp_path.iterdir() if entry.name.startswith("out.partial-")]
    assert str(partial) in capsys.readouterr().err.splitlines()[-1]
    assert pq.read_table(partial / "parquet").num_rows == 2


def test_parquet_rows_come_from_the_footers(tmp_path, monkeypatch):
    pq.write_table(pa.table({"id": [1, 2, 3], "image": [b"x" * 1000] * 3}), tmp_path / "part-00000.parquet")

    def no_data_reads(*args, **kwargs):
        raise AssertionError("counting rows must not read the images back")

    monkeypatch.setattr(pq, "read_table", no_data_reads)
    assert writer.parquet_rows(tmp_path) == 3
