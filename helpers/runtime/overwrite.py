"""``mode="overwrite"`` that keeps the earlier output until the new one is complete.

Ray 2.60's file writers (``write_parquet``, ``write_images``, ``write_csv``, ...:
every ``_FileDatasink``) handle ``mode="overwrite"`` in ``Dataset.write_datasink``
on the driver: ``on_write_start()`` empties the folder before the execution is
even planned. Everything that can still go wrong comes after that: the resource
check (:mod:`helpers.runtime.resources`, an execution callback, runs once the operators
are built), a stage that fails half-way, Ctrl-C. Each of them used to leave the
learner's earlier, checked output deleted and the lab saying *incorrect*.

:func:`replace_only_when_complete` changes that one case and leaves the lessons'
cells exactly as Ray's documentation writes them: an overwrite goes into a
sibling ``<folder>.writing-<id>``, which takes the folder's place (or becomes
the folder, on a first write to a local or mounted file system) once every
write task has finished (``on_write_complete``).
A failed write removes its sibling (``on_write_failed``, also when a write task
that Ray was cancelling finishes a file after that) and leaves the folder as it
was. Ctrl-C reaches neither hook (``KeyboardInterrupt`` is no ``Exception``), so
the next overwrite of the folder removes what it left; an interrupted first
write therefore leaves no half-written folder that a later cell or a lab check
would read as the output. Every other mode is Ray's own, and so are an
overwrite of a path that is a file (Ray says what is wrong) and a first write
to an object store (a sibling there would double its requests).

An overwrite of a folder that holds more than one output is refused before
anything is deleted (:func:`refuse_overwriting_shared_folders`): the learner's
outputs folder itself (``output_path()`` without a lesson's name), the storage,
the clone, the home folder, or any folder above them.

Replacing the folder: on a local or mounted file system, two renames (an
interrupt between them puts the earlier folder back); on an object store, which
has no rename, delete then copy, so a reader there can see a half-replaced
prefix while the copy runs, but a failed write still deletes nothing. Once the
delete has begun, the sibling is the only complete copy: it first gets a
marker (:data:`KEEP_MARKER`), and a failure from then on keeps it and raises
:class:`ReplaceStoppedError`, which names it. Neither ``on_write_failed`` nor
the next overwrite's tidy-up removes a marked sibling; the next overwrite that
completes does, since its output replaces that copy.

Ray internals used, checked against Ray 2.60 and reached through
:mod:`helpers.runtime.ray_internals`: the file writers' base class
(``_FileDatasink``) and its ``path``, ``filesystem``, ``mode`` and
``_write_started`` attributes, and the order in ``write_datasink``
(``on_write_start`` before planning), which is why the write tasks receive the
datasink with the sibling as its ``path``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import posixpath
import re
import secrets
import shutil
import time
from pathlib import Path

from helpers.errors import ActionableError, SettingsError
from helpers.runtime.ray_internals import file_datasink_class, write_started

log = logging.getLogger(__name__)

#: Between a folder's name and a random id: the sibling an overwrite writes into.
WRITING = ".writing-"
#: The earlier output, for the moment between the two renames that replace it.
SET_ASIDE = "-old"
#: Where a staged write goes once complete (an attribute of the datasink, None when not staged).
_TARGET = "_workshop_overwrite_target"
_INSTALLED = "_workshop_replaces_only_when_complete"
#: After a failed write, how long its sibling must stay gone (and the most the driver watches it).
SETTLE_S = 1.0
SETTLE_LIMIT_S = 10.0
#: In a sibling whose copy into the folder has begun (object stores): "the only complete copy, keep it".
KEEP_MARKER = "_workshop_only_complete_copy"
#: In a sibling while its write runs, removed just before it replaces the folder: gone earlier, another write
#: into the same folder has tidied the sibling away (and a task still writing may have made it again, in part).
WRITING_MARKER = "_workshop_writing"


class ReplaceStoppedError(ActionableError, RuntimeError):
    """Replacing a folder on an object store stopped after its old files were deleted; the message names the copy."""


class OverwriteRefusedError(ActionableError, ValueError):
    """``mode="overwrite"`` of a folder that holds the workshop's data, models, clone or every lesson's outputs."""


class WriteRemovedError(ActionableError, RuntimeError):
    """The files a write put beside its folder were removed before it finished: another write into the same
    folder, running at the same time, tidied them up. The folder is left as it was."""


def replace_only_when_complete() -> None:
    """Make every Ray file writer's ``mode="overwrite"`` keep the earlier output until it has finished."""
    file_datasink = file_datasink_class()
    if getattr(file_datasink, _INSTALLED, False):
        return
    start = file_datasink.on_write_start
    complete = file_datasink.on_write_complete
    failed = file_datasink.on_write_failed

    @functools.wraps(start)
    def on_write_start(self, schema=None):
        if not write_started(self) and _overwrites(self):
            refuse_overwriting_shared_folders(self.path, self.filesystem)
        if not write_started(self) and _stages(self):
            # Ray keeps a trailing slash ("out/"): without it the sibling is "out.writing-...", not "out/.writing-..."
            # inside the folder it is to replace (a rename into itself; on an object store, deleted with the rest).
            target = self.path.rstrip("/") or self.path
            _remove_leftovers(self.filesystem, target)
            setattr(self, _TARGET, target)
            self.path = f"{target}{WRITING}{secrets.token_hex(4)}"
            result = start(self, schema)
            if _local(self.filesystem):  # an object store makes the prefix with the object
                self.filesystem.create_dir(self.path, recursive=True)
            with self.filesystem.open_output_stream(f"{self.path}/{WRITING_MARKER}") as stream:
                stream.write(b"")
            return result
        return start(self, schema)

    @functools.wraps(complete)
    def on_write_complete(self, write_result):
        target = getattr(self, _TARGET, None)
        if target is None:
            result = complete(self, write_result)
            if _overwrites(self):  # an object store's emptied prefix (a replace stopped half-way): Ray's own path
                try:
                    _remove_leftovers(self.filesystem, self.path.rstrip("/") or self.path, complete=True)
                except OSError as err:  # e.g. rights to the prefix alone: the write itself is complete
                    log.warning("could not look for leftovers beside %s: %s", self.path, err)
            return result
        if getattr(write_result, "num_rows", None) == 0 and not _exists(self.filesystem, target):
            # A first write of no rows leaves no folder, as Ray's own does (it removes the folder it made).
            _delete_dir(self.filesystem, self.path)
            setattr(self, _TARGET, None)
            self.path = target
            return None
        try:  # one step, so that another write's tidy-up cannot come between a look and the delete
            self.filesystem.delete_file(f"{self.path}/{WRITING_MARKER}")
        except FileNotFoundError:  # replacing the folder now would leave it empty, or with a part of this write
            raise WriteRemovedError(_removed(target)) from None
        try:
            _replace(self.filesystem, self.path, target, getattr(write_result, "num_rows", None))
        except ReplaceStoppedError:
            # Ray calls on_write_failed next: with the target cleared, it leaves the only complete copy alone.
            setattr(self, _TARGET, None)
            raise
        setattr(self, _TARGET, None)
        self.path = target
        _remove_leftovers(self.filesystem, target, complete=True)

    @functools.wraps(failed)
    def on_write_failed(self, error):
        target = getattr(self, _TARGET, None)
        if target is not None:
            if not _is_kept(self.filesystem, self.path):  # a marked copy may be the only complete one
                delete_once_settled(self.filesystem, self.path)
            setattr(self, _TARGET, None)
            self.path = target
        return failed(self, error)

    file_datasink.on_write_start = on_write_start
    file_datasink.on_write_complete = on_write_complete
    file_datasink.on_write_failed = on_write_failed
    setattr(file_datasink, _INSTALLED, True)


def _kept_folders() -> list[tuple[str, str]]:
    """(path, what it is) for each folder that no overwrite may delete, most specific first.

    Paths as the file writers see them: absolute local paths, or ``bucket/prefix``
    on an object store.
    """
    from helpers.runtime.settings import REPO_ROOT, learner_outputs_dir, resolve_models_dir, resolve_storage

    storage = resolve_storage()
    folders = [
        (learner_outputs_dir(storage), "holds your outputs of every lesson"),
        (storage / "outputs", "holds every learner's outputs"),
        (storage / "data", "holds the workshop's data"),
        (resolve_models_dir(storage), "holds the workshop's models"),
        (storage, "is the workshop's storage (its data, models and every learner's outputs)"),
        (REPO_ROOT, "is this clone of the workshop"),
    ]
    with contextlib.suppress(RuntimeError, KeyError):  # no HOME and no entry in the user database (containers)
        folders.append((Path.home(), "is your home folder"))
    return [(_writer_path(folder), what) for folder, what in folders]


def _writer_path(folder) -> str:
    text = str(folder)
    if "://" in text:
        return text.split("://", 1)[1].rstrip("/")
    return os.path.realpath(text)


def refuse_overwriting_shared_folders(path: str, filesystem) -> None:
    """Refuse ``mode="overwrite"`` of a folder that holds more than one output.

    An overwrite deletes the whole folder first: given the outputs folder instead
    of one lesson's folder in it (``output_path()`` without a name), it would take
    every other lesson's outputs with it.
    """
    target = path.rstrip("/") or path
    if _local(filesystem):
        target = os.path.realpath(target)
    try:
        kept = _kept_folders()
    except SettingsError:  # settings the session already refused; nothing here to compare with
        return
    inside = target.rstrip("/") + "/"
    found = [f"{path} {what}" for folder, what in kept if folder == target]
    found += [f"{path} holds {folder}, which {what}" for folder, what in kept if folder.startswith(inside)]
    if found:
        raise OverwriteRefusedError(
            f"mode=\"overwrite\" deletes everything in a folder before it writes, and {found[0]}; write to a "
            "folder of its own, such as session.settings.output_path(\"my_run\")"
        )


def _overwrites(datasink) -> bool:
    from ray.data import SaveMode

    return datasink.mode == SaveMode.OVERWRITE


def _stages(datasink) -> bool:
    """Whether the write goes into a sibling first: an overwrite of a folder that holds files, and on a local or
    mounted file system also of one not there yet (a first write).

    A file in the way is Ray's to report. On an object store a first write is
    Ray's own: a sibling there would double its requests, and a policy that
    grants the prefix alone would refuse it.
    """
    from pyarrow.fs import FileSelector, FileType

    if not _overwrites(datasink):
        return False
    target = datasink.path.rstrip("/") or datasink.path  # relative paths keep a trailing slash, which hides a file
    kind = datasink.filesystem.get_file_info(target).type
    if kind == FileType.File:
        return False
    if kind == FileType.Directory and datasink.filesystem.get_file_info(FileSelector(target)):
        return True
    return _local(datasink.filesystem)


def _remove_leftovers(filesystem, target: str, complete: bool = False) -> None:
    """Delete the siblings that interrupted overwrites of ``target`` left behind.

    A sibling with :data:`KEEP_MARKER` may be the only complete copy (its
    replace stopped half-way), so it is left alone until ``complete``: once a
    new write has made ``target`` complete, every sibling goes, kept ones and
    those that a task of an interrupted write, still finishing its file when
    Ray cancelled it, made again after this write had started.
    """
    from pyarrow.fs import FileSelector, FileType

    parent, name = posixpath.split(target.rstrip("/"))
    ours = re.compile(re.escape(name + WRITING) + r"[0-9a-f]{8}(?:" + re.escape(SET_ASIDE) + ")?")
    for entry in filesystem.get_file_info(FileSelector(parent, allow_not_found=True)):  # a first write
        if entry.type != FileType.Directory or not ours.fullmatch(entry.base_name):
            continue
        if not complete and _is_kept(filesystem, entry.path):
            log.warning("keeping %s: the only complete copy of an overwrite of %s that stopped half-way",
                        entry.path, target)
            continue
        log.info("removing %s, left by an interrupted write", entry.path)
        _delete_dir(filesystem, entry.path)


def _exists(filesystem, path: str) -> bool:
    from pyarrow.fs import FileType

    return filesystem.get_file_info(path).type != FileType.NotFound


def _is_kept(filesystem, folder: str) -> bool:
    from pyarrow.fs import FileType

    return filesystem.get_file_info(f"{folder}/{KEEP_MARKER}").type == FileType.File


def _local(filesystem) -> bool:
    from pyarrow.fs import LocalFileSystem

    inner = filesystem.unwrap() if hasattr(filesystem, "unwrap") else filesystem  # Ray's retrying wrapper
    return isinstance(inner, LocalFileSystem)


def _removed(target: str) -> str:
    return (
        f"the files this write put beside {target} were removed before it finished, by another write into "
        f"the same folder at the same time (another notebook, or the same cell run twice at once); {target} "
        "is as it was: run this cell again once the other write has finished"
    )


def _replace(filesystem, finished: str, target: str, rows: int | None = None) -> None:
    """Put the ``finished`` folder in place of ``target``; on failure ``target`` is as it was.

    ``finished`` always exists on a local file system (the write made it, with its marker): gone, another
    write took it away, and the second rename fails, which puts ``target`` back. On an object store a
    prefix with no objects is a write of no ``rows``, or one another write took away.
    """
    from pyarrow import fs

    if _local(filesystem):
        if not os.path.lexists(target):  # a first write
            os.rename(finished, target)
            return
        earlier = finished + SET_ASIDE
        os.rename(target, earlier)
        try:
            os.rename(finished, target)
        except BaseException:
            os.rename(earlier, target)
            raise
        shutil.rmtree(earlier, ignore_errors=True)
        return
    if filesystem.get_file_info(finished).type == fs.FileType.NotFound:
        if rows:
            raise WriteRemovedError(_removed(target))
        filesystem.delete_dir_contents(target, missing_dir_ok=True)  # a write of zero rows
        return
    _copy_over(filesystem, finished, target)
    _delete_dir(filesystem, finished)


def _copy_over(filesystem, finished: str, target: str) -> None:
    """Delete ``target``'s files, then copy ``finished``'s in, on a file system without rename.

    From the first delete on, ``finished`` is the only complete copy: it is
    marked first, and kept and named when anything fails.
    """
    from pyarrow import fs

    with filesystem.open_output_stream(f"{finished}/{KEEP_MARKER}") as stream:
        stream.write(b"")
    try:
        filesystem.delete_dir_contents(target, missing_dir_ok=True)
        fs.copy_files(finished, target, source_filesystem=filesystem, destination_filesystem=filesystem)
        filesystem.delete_file(f"{target}/{KEEP_MARKER}")
    except Exception as err:
        raise ReplaceStoppedError(_stopped(finished, target, err)) from err
    except BaseException as err:  # Ctrl-C stays Ctrl-C; the marker keeps the copy from the next tidy-up
        log.error("%s", _stopped(finished, target, err))
        raise


def _stopped(finished: str, target: str, err: BaseException) -> str:
    """What a replace that stopped after its first delete left, and how to recover."""
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return (
        f"replacing {target} stopped half-way ({reason}): its earlier files are deleted and the complete new "
        f"output is in {finished}; run the write again (that folder is removed once a write completes), or copy "
        f"its files except {KEEP_MARKER} to {target}"
    )


def delete_once_settled(filesystem, path: str, quiet_s: float = SETTLE_S, limit_s: float = SETTLE_LIMIT_S) -> None:
    """Delete ``path``, then again each time it comes back, until it stays gone for ``quiet_s`` seconds.

    When one write task fails, Ray cancels the others, but one that was
    writing a file may finish it after the driver's first delete and so
    recreate the folder. Watching for ``limit_s`` seconds at most.
    """
    from pyarrow.fs import FileType

    _delete_dir(filesystem, path)
    began = quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_s and time.monotonic() - began < limit_s:
        time.sleep(0.1)
        if filesystem.get_file_info(path).type != FileType.NotFound:
            _delete_dir(filesystem, path)
            quiet_since = time.monotonic()


def _delete_dir(filesystem, path: str) -> None:
    try:
        filesystem.delete_dir(path)
    except FileNotFoundError:
        pass
    except OSError as err:  # a leftover is cleaned by the next overwrite; the write's own error matters more
        log.warning("could not remove %s: %s", path, err)
