"""The pipeline command's output folder: what it may replace, and how it replaces it.

``--output X`` names a folder that a run *replaces*. Replacing means deleting,
so the command only ever deletes what it wrote itself:

* **Ownership.** A folder (or ``s3://`` prefix) may be replaced when it is
  empty or missing, or when it is an earlier output of this pipeline: nothing
  in it but the pipeline's own layout (:func:`foreign_entries`) and a
  ``summary.json`` with the pipeline's fields (:func:`is_pipeline_summary`).
  Anything else (``X/images/holiday.jpg``, a thesis, the inputs) is refused
  with one line before Ray starts, and nothing is touched.
* **Partial folders.** A run writes into a sibling ``X.partial-<random>`` that
  holds a marker file (:data:`PARTIAL_MARKER`); stale partial folders of
  interrupted runs are removed only when they carry that marker, or are a
  complete earlier output that an interrupted publish set aside and marked
  (:data:`SET_ASIDE_MARKER`). A user's ``X.partial-keep`` without a marker is
  left alone, even when it holds a copy of an earlier output. Names are
  compared as text, never as glob patterns.
* **One run at a time.** A lock file next to the output (:class:`OutputLock`)
  makes a second run into the same ``X`` stop with one line instead of
  interleaving with the first.
* **Publishing.** :func:`publish` swaps the finished partial folder in with
  Linux's ``renameat2(RENAME_EXCHANGE)``, one atomic step. File systems
  without it (NFS, EFS, FUSE mounts, macOS; the cluster's ``/mnt/cluster_storage``
  is usually NFS) take the fallback of two renames, with Ctrl-C and ``kill``
  deferred in between, so an interrupt finds either the old output in place
  or the new one, never neither. A crash between the two renames (power
  loss, ``kill -9``) leaves the old output in ``X.partial-<id>-old``; the next
  run puts it back before anything else. A second rename that fails puts the
  old output back at once.
* **Checked again before replacing.** Files a user puts into ``X`` while the
  run writes are found just before the swap: the run then replaces nothing,
  and keeps its new output in the partial folder, which it names.
* **One file system.** ``X`` itself may not be a mount point (a docker volume,
  a network share): the partial folder beside it would be on another file
  system, which no rename can cross; a folder inside the mount works.

The ``s3://`` side of the same rules is in :mod:`helpers.pipeline.s3_publish`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from helpers.errors import InputError, PublishError

#: What the pipeline writes: Parquet parts named ``part-<32 hex digits>.parquet``, one per batch
#: and attempt (:mod:`helpers.pipeline.writer`), or ``part-00000.parquet`` in outputs of earlier versions.
SUMMARY = "summary.json"
SUCCESS_MARKER = "_SUCCESS"
PARQUET_DIR, IMAGES_DIR = "parquet", "images"
#: The field of ``summary.json`` that says which program wrote the folder.
WRITTEN_BY = "helpers.pipeline.command"
#: A file inside a partial folder: "this half-written folder is the pipeline's, delete it freely".
PARTIAL_MARKER = ".workshop-partial"
#: A file inside an earlier output while the fallback publish sets it aside: "put me back, or delete me".
SET_ASIDE_MARKER = ".workshop-set-aside"
#: A file inside an upload to an object store while its run replaces the output (helpers.pipeline.s3_publish).
PUBLISH_CLAIM = "_PUBLISHING"
#: Fields every summary of this pipeline has had (outputs written before ``written_by`` existed).
_SUMMARY_FIELDS = {"joined", "parquet_rows", "png_files", "llm", "output"}
#: The markers count as ours too: a copy of a kept upload, or an output a crash left marked, is still ours.
_OUR_PATHS = re.compile(
    rf"(?:{SUMMARY}|{SUCCESS_MARKER}|{PARQUET_DIR}|{IMAGES_DIR}|{re.escape(PARTIAL_MARKER)}|{re.escape(SET_ASIDE_MARKER)}"
    rf"|{PUBLISH_CLAIM}"
    rf"|{PARQUET_DIR}/part-(?:\d+|[0-9a-f]{{32}})\.parquet|{IMAGES_DIR}/-?\d+\.png)"
)
#: What a desktop's file browser leaves in a folder someone looked at (macOS Finder, Windows Explorer): not a
#: user's files, and made again whenever the folder is opened, so they never make an output someone else's.
#: Finder's ``._NAME`` (the metadata of NAME on some disks) counts only beside the NAME it describes.
_BROWSER_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
#: errno values of renameat2 that mean "this system or file system cannot exchange": fall back.
_EXCHANGE_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}


# ---------------------------------------------------------------- what is ours


def foreign_entries(relative_paths) -> list[str]:
    """The paths (relative to the output, ``/``-separated) that this pipeline never writes.

    What a file browser leaves behind (:data:`_BROWSER_LITTER`, e.g. Finder's ``.DS_Store`` in ``images/``)
    is not counted: it goes with the folder it was written in.
    """
    return _not_ours(_without_litter(relative_paths))


def _not_ours(paths: list[str]) -> list[str]:
    return sorted(path for path in paths if not _OUR_PATHS.fullmatch(path))


def _without_litter(relative_paths) -> list[str]:
    """The paths (``/``-separated, stripped) but what a file browser left (:data:`_BROWSER_LITTER`)."""
    paths = [path.strip("/") for path in relative_paths]
    listed = set(paths)

    def litter(path: str) -> bool:
        folder, _, name = path.rpartition("/")
        described = name[2:] if name.startswith("._") else None
        return name in _BROWSER_LITTER or bool(described) and f"{folder}/{described}".lstrip("/") in listed

    return [path for path in paths if not litter(path)]


def is_pipeline_summary(text: str | None) -> bool:
    """Whether ``text`` is a ``summary.json`` written by this pipeline."""
    try:
        summary = json.loads(text) if text is not None else None
    except ValueError:
        return False
    if not isinstance(summary, dict):
        return False
    return summary.get("written_by") == WRITTEN_BY or _SUMMARY_FIELDS <= summary.keys()


def ownership_problem(location: str, relative_paths: list[str], summary_text: str | None) -> str | None:
    """Why ``location`` must not be replaced, or None when it is empty or an earlier output of ours.

    A folder that holds nothing but what a file browser left counts as empty.
    """
    kept = _without_litter(relative_paths)
    if not kept:
        return None
    foreign = _not_ours(kept)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        return (
            f"--output {location} already holds files this pipeline did not write ({shown}), and a run replaces "
            "the whole folder; choose a new folder, or move those files out"
        )
    if not is_pipeline_summary(summary_text):
        return (
            f"--output {location} is not an earlier output of this pipeline (it has no {SUMMARY} written by it), "
            "and a run replaces the whole folder; choose a new folder"
        )
    return None


def _relative_paths(folder: Path) -> list[str]:
    return [path.relative_to(folder).as_posix() for path in folder.rglob("*")]


def _read_summary(folder: Path) -> str | None:
    try:
        return (folder / SUMMARY).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


# ---------------------------------------------------------------- one run at a time


class OutputLock:
    """An exclusive lock on ``--output``, held by one run from its checks to its publish.

    The lock is a ``flock`` on ``.<name>.lock`` next to the output, removed
    when released. The kernel drops the lock when the process dies, so a
    killed run never blocks the next one.
    """

    def __init__(self, output: Path):
        self.output = output
        self.path = output.parent / f".{output.name}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise InputError(
                    f"another run is writing --output {self.output} (process {holder}); "
                    "wait for it to finish, or choose another --output"
                ) from None
            # The previous holder may have removed the file between our open and our lock:
            # then we hold a lock on a deleted file, and must take the new one.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # while still locked, so nobody locks a file about to vanish
        os.close(self._fd)
        self._fd = None


# ---------------------------------------------------------------- partial folders


def _siblings(output: Path, suffix_start: str) -> list[Path]:
    """Entries next to ``output`` whose name starts with ``<name><suffix_start>``, compared as text."""
    prefix = output.name + suffix_start
    return sorted(entry for entry in output.parent.iterdir() if entry.name.startswith(prefix))


def clean_stale_partials(output: Path) -> list[str]:
    """Tidy up after interrupted runs; return notes on what was restored.

    A marked partial folder is deleted. An earlier output that the fallback
    publish marked and set aside is put back when ``X`` is missing (a crash
    between its two renames), and deleted otherwise. Unmarked folders are
    someone else's and stay, whatever they hold: only a marker says "ours".
    """
    notes = []
    for entry in _siblings(output, ".partial-"):
        if not entry.is_dir() or entry.is_symlink():
            continue
        if (entry / PARTIAL_MARKER).is_file():
            shutil.rmtree(entry)
        elif (entry / SET_ASIDE_MARKER).is_file():
            if output.exists():
                shutil.rmtree(entry)
            else:
                _put_back(entry, output)
                notes.append(
                    f"restored the previous output from {entry.name} (an earlier run stopped while publishing)"
                )
    return notes


def _put_back(aside: Path, output: Path) -> None:
    """Rename a set-aside earlier output back to ``output`` and drop its marker."""
    aside.rename(output)
    with contextlib.suppress(FileNotFoundError):
        (output / SET_ASIDE_MARKER).unlink()


def claim_output(output: Path) -> tuple[OutputLock, Path]:
    """Lock ``output``, check that it may be (re)placed, tidy stale partials; return the lock and a new partial.

    Raises :class:`InputError` with one line (and holds no lock) when the
    output is a file, cannot be written, is someone else's, or is being
    written by another run. Release the lock after :func:`publish`, or after
    giving up.
    """
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output} is a file; give a folder path (it is created if missing)")
    if _own_file_system(output):
        raise InputError(
            f"--output {output} is a mount point (a file system of its own), and a run writes its new output beside "
            f"it, then renames it into place, which cannot cross file systems; give a folder inside it, e.g. "
            f"{output / 'pipeline'}"
        )
    lock = OutputLock(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as err:
        raise InputError(_unwritable(output, err)) from None
    try:
        return lock, _prepare(output)
    except BaseException:
        lock.release()
        raise


def _own_file_system(output: Path) -> bool:
    """Whether ``output`` is an existing folder on another file system than its parent (a mount point)."""
    if not output.is_dir():
        return False
    try:
        return os.path.ismount(output) or output.stat().st_dev != output.parent.stat().st_dev
    except OSError:
        return False  # unreadable: claiming it reports that in one line


def _unwritable(output: Path, err: OSError) -> str:
    return f"--output {output}: cannot write in {err.filename or output.parent} ({err.strerror}); " \
        "choose a folder you can write"


def _prepare(output: Path) -> Path:
    try:
        for note in clean_stale_partials(output):
            print(f"note: {note}", file=sys.stderr)
    except OSError as err:
        raise InputError(_unwritable(output, err)) from None
    if output.is_dir():
        problem = ownership_problem(str(output), _relative_paths(output), _read_summary(output))
        if problem:
            raise InputError(problem)
    try:
        return mark_partial(Path(tempfile.mkdtemp(prefix=f"{output.name}.partial-", dir=output.parent)))
    except OSError as err:
        raise InputError(_unwritable(output, err)) from None


def mark_partial(folder: Path) -> Path:
    """Make ``folder`` ready for the writers: its two subfolders, and the marker that says a run writes it.

    The writers never create folders: a worker on a node that does not
    share this file system then fails to write instead of filling a
    folder of the same name on its own disk.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PARTIAL_MARKER).write_text(f"{os.getpid()}\n")
    (folder / PARQUET_DIR).mkdir(exist_ok=True)
    (folder / IMAGES_DIR).mkdir(exist_ok=True)
    return folder


def discard_partial(partial: Path) -> None:
    """Remove a partial folder that will not be published, even while a worker still writes into it.

    A worker that was drawing when the run stopped may write its last part a
    moment later. Renaming the folder first makes its path vanish at once, so
    such a write fails (the writers create no folders) instead of adding a
    file while the folder is deleted, which would leave it behind. The
    renamed folder keeps the marker: if it cannot be removed now, the next
    run removes it.
    """
    doomed = partial.with_name(f"{partial.name}-discarded")
    try:
        partial.rename(doomed)
    except FileNotFoundError:
        return
    except OSError:
        doomed = partial
    shutil.rmtree(doomed, ignore_errors=True)


# ---------------------------------------------------------------- publishing


def _renameat2_exchange(a: Path, b: Path) -> int:
    """Call ``renameat2(a, b, RENAME_EXCHANGE)``; 0 on success, else the errno (ENOSYS where absent)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux/glibc: macOS, musl without it
        return errno.ENOSYS
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return 0
    return ctypes.get_errno()


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step; False where the system or file system cannot.

    Any other failure (permissions, a path gone, an I/O error) is raised: it
    would fail the fallback's renames too, and must not be mistaken for
    "unsupported".
    """
    code = _renameat2_exchange(a, b)
    if code == 0:
        return True
    if code in _EXCHANGE_UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


@contextlib.contextmanager
def signals_deferred(signums=(signal.SIGINT, signal.SIGTERM)):
    """Hold Ctrl-C and ``kill`` until the block is done, then deliver them.

    Only the main thread can set handlers; elsewhere the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum)) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            signal.raise_signal(received[0])


def publish(partial: Path, output: Path) -> None:
    """Put the finished ``partial`` folder in place of ``output``: a reader sees old or new, never half.

    When this returns, ``output`` is the new output; an interrupt raised from
    here (delivered after the renames) also means the new output is in place.
    When it raises, ``output`` is as it was, and ``partial`` holds the new
    output, marked again (a :class:`PublishError` says where each is).
    """
    check_still_ours(partial, output)
    old = None  # the previous output, once the new one is in place
    try:
        with signals_deferred():  # an interrupt held here is raised as the block ends: the finally still runs
            (partial / PARTIAL_MARKER).unlink()
            try:
                old = _swap_in(partial, output)
            except BaseException:
                if partial.is_dir():  # not published: a folder the next run may remove, as before
                    (partial / PARTIAL_MARKER).write_text(f"{os.getpid()}\n")
                raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def check_still_ours(partial: Path, output: Path) -> None:
    """Refuse to publish when ``output`` gained files that are not ours since :func:`claim_output` checked it.

    The run takes minutes; a user may save a file into the folder meanwhile,
    and a publish would delete it with the previous output.
    """
    if not output.is_dir():
        return
    problem = ownership_problem(str(output), _relative_paths(output), _read_summary(output))
    if problem:
        raise PublishError(
            f"{output} was not replaced, it changed during the run: {problem}. {output} is as it was, and the new "
            f"output is in {partial} (the next run into {output} removes it: move it elsewhere to keep it)"
        )


def _swap_in(partial: Path, output: Path) -> Path | None:
    """Rename ``partial`` to ``output``; return the folder now holding the previous output, if there was one."""
    if not output.exists():
        partial.rename(output)
        return None
    # Marked before it moves: whatever a crash interrupts, the next run finds the previous output
    # marked beside ``output`` and puts it back (``output`` missing) or removes it.
    (output / SET_ASIDE_MARKER).write_text(f"{os.getpid()}\n")
    aside = partial.with_name(partial.name + "-old")
    try:
        if exchange(partial, output):
            return partial  # now holds the previous output
        output.rename(aside)
    except BaseException:
        (output / SET_ASIDE_MARKER).unlink()
        raise
    try:
        partial.rename(output)
    except BaseException as err:
        _undo_set_aside(aside, partial, output, err)
        raise
    return aside


def _undo_set_aside(aside: Path, partial: Path, output: Path, err: BaseException) -> None:
    """After a failed second rename, put the previous output back; if even that fails, say where both are."""
    try:
        _put_back(aside, output)
    except OSError as again:
        raise PublishError(
            f"publishing into {output} failed ({err}), and so did putting the previous output back ({again}): the "
            f"previous output is in {aside} and the new one in {partial}; the next run puts the previous one back "
            f"and removes the new one, so move {partial} elsewhere first to keep it"
        ) from err
