"""Replace an output prefix on an object store (``s3://bucket/prefix``) without losing its only complete copy.

An output prefix is replaced only when it is empty or an earlier output of
the pipeline (:func:`check_output_prefix`, the rule of :mod:`helpers.pipeline.output`).
An object store has no atomic rename, so a new output replaces it in steps,
in an order that never loses the only complete copy:

1. *upload* the new files to ``<output>.partial-<id>/``, marked as the
   pipeline's own (:func:`start_upload`; the pipeline's workers write
   there); a failure here removes the
   upload (:func:`discard_upload`) and leaves the previous output whole;
2. (:func:`publish_upload` does steps 2-4) *delete* ``<output>/_SUCCESS``,
   then the old objects the new output does not overwrite (``summary.json``,
   which marks the prefix as ours, stays);
3. *copy* the new objects in, ``summary.json`` last;
4. write the *marker* ``<output>/_SUCCESS``;
5. remove the upload and the uploads that earlier failed publishes left
   (:func:`remove_uploads`, called once the new output counts as published,
   so that an interrupt here is not taken for a failed publish).

Just before step 2 the run claims the output (:data:`PUBLISH_CLAIM` in its
upload): of two runs that publish into one output at the same moment, the
later claim gives way before it deletes anything, and its upload is kept
(marked ``yielded``), so the two never mix their files. Then the output
prefix is checked again: objects someone put there during the run stop the
publish before anything is deleted, and the upload is kept.
A failure or an interrupt during steps 2-4 keeps the upload and says where
it is (:class:`PublishError`): ``<output>`` then has no ``_SUCCESS``, and a
reader that waits for ``_SUCCESS`` never reads a half-written output. A kept
upload's marker says ``stopped``; step 5 removes only such uploads, and
unmarked-as-stopped ones older than :data:`STALE_UPLOAD_S` (a killed run's):
a younger one may be another run's, still being written.
"""

from __future__ import annotations

import secrets
import time

from helpers.errors import InputError, PublishError
from helpers.pipeline.output import PARTIAL_MARKER, PUBLISH_CLAIM, SUCCESS_MARKER, SUMMARY, ownership_problem
from helpers.runtime.storage import StorageURI, filesystem

#: The marker's text in an upload whose publish stopped: no run writes it any more.
STOPPED = b"stopped\n"
#: After this long, an upload not marked stopped is taken for a killed run's, not a live one's (2 days).
STALE_UPLOAD_S = 2 * 24 * 3600
#: The marker's text in an upload that gave way to another run's publish: kept, as a stopped one is not.
#: (Such a run wrote PUBLISH_CLAIM into its upload, once, before giving way: its time, by the store's
#: clock, orders two runs that publish into one output at the same moment.)
YIELDED = b"yielded\n"
#: A publish rewrites its marker this often; a claim whose marker is older than CLAIM_ALIVE_S is a dead run's.
HEARTBEAT_S = 30
CLAIM_ALIVE_S = 300


def _reason(err: BaseException) -> str:
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _files_under(target_fs, prefix: str) -> list[str]:
    """Paths of the objects under ``prefix``, relative to it (folder placeholders left out)."""
    from pyarrow import fs

    if target_fs.get_file_info(prefix).type == fs.FileType.NotFound:
        return []
    infos = target_fs.get_file_info(fs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return sorted(info.path[len(prefix) + 1:] for info in infos if info.type == fs.FileType.File)


def check_output_prefix(uri: str) -> bool:
    """Refuse an output prefix that holds objects this pipeline did not write; True when it holds any.

    Called before Ray starts: ``--output s3://bucket/project`` must never empty
    a prefix with the inputs or anyone's files in it.
    """
    from pyarrow import fs

    target_fs, target = filesystem(uri)
    if "/" not in target.strip("/"):
        raise InputError(f"--output {uri} is a whole bucket; give a prefix inside it, e.g. {uri}/outputs/pipeline")
    try:
        if target_fs.get_file_info(target).type == fs.FileType.File:
            raise InputError(f"--output {uri} is an object, not a prefix; give a prefix, e.g. {uri}-output")
        files, summary = _contents(target_fs, target)
    except OSError as err:
        raise InputError(f"--output {uri} cannot be listed ({_reason(err)}); check the location and credentials") \
            from None
    problem = ownership_problem(uri, files, summary)
    if problem:
        raise InputError(problem)
    return bool(files)


def _contents(target_fs, target: str) -> tuple[list[str], str | None]:
    """The objects under ``target`` and the text of its ``summary.json``: what the ownership rule reads."""
    files = _files_under(target_fs, target)
    if SUMMARY not in files:
        return files, None
    with target_fs.open_input_stream(f"{target}/{SUMMARY}") as stream:
        return files, stream.read().decode("utf-8", errors="replace")


def _write_object(target_fs, path: str, data: bytes) -> None:
    with target_fs.open_output_stream(path) as stream:
        stream.write(data)


def _delete_prefix(target_fs, prefix: str) -> None:
    """Delete everything under ``prefix`` (best effort: leftovers are removed by the next publish)."""
    try:
        target_fs.delete_dir(prefix)
    except OSError:
        pass


def _leftover_uploads(target_fs, target: str) -> list[str]:
    """Upload prefixes ``<target>.partial-*`` that no run writes any more: marked stopped, or stale.

    Another run into the same output may be writing its own upload right
    now (on an object store there is no lock): its marker is young and not
    ``stopped``, so it stays.
    """

    try:
        return [upload for upload in _uploads_of(target_fs, target)
                if _is_left_over(target_fs, f"{upload}/{PARTIAL_MARKER}")]
    except OSError:
        return []


def _uploads_of(target_fs, target: str) -> list[str]:
    """The upload prefixes ``<target>.partial-*`` beside the output ``target``, of every run."""
    from pyarrow import fs

    parent, name = target.rsplit("/", 1)
    siblings = target_fs.get_file_info(fs.FileSelector(parent, allow_not_found=True))
    return [info.path for info in siblings
            if info.type == fs.FileType.Directory and info.base_name.startswith(f"{name}.partial-")]


def _is_left_over(target_fs, marker: str) -> bool:
    """Whether the upload with this marker was stopped, or is older than any run (a killed run's)."""
    from pyarrow import fs

    info = target_fs.get_file_info(marker)
    if info.type != fs.FileType.File:
        return False  # unmarked: not the pipeline's
    if info.mtime is not None and time.time() - info.mtime.timestamp() > STALE_UPLOAD_S:
        return True
    with target_fs.open_input_stream(marker) as stream:
        return stream.read() == STOPPED


def _mark_stopped(target_fs, partial: str, text: bytes = STOPPED) -> None:
    """Say in an upload's marker that no run writes it any more (best effort: else it goes once stale).

    The marker also voids the upload's claim on the output, if it made one
    (:func:`_claim_key`); a copy of the claim in the output counts as ours.
    """
    try:
        _write_object(target_fs, f"{partial}/{PARTIAL_MARKER}", text)
    except OSError:
        pass


def _stamp(target_fs, path: str) -> float | None:
    """When the object at ``path`` was last written, by the store's clock (None when it cannot say)."""
    try:
        mtime = target_fs.get_file_info(path).mtime
    except OSError:
        return None
    return mtime.timestamp() if mtime is not None else None


class _Heartbeat:
    """Called between the steps of a publish: every :data:`HEARTBEAT_S` it rewrites the marker, so that the
    claim keeps counting (:func:`_claim_key`) however long the publish takes.

    ``lapsed`` turns True when two beats were further apart, by the store's
    clock, than a claim lasts: the process was stopped or the machine slept,
    and meanwhile another run may have taken the output over.
    """

    def __init__(self, target_fs, partial: str, claimed_at: float):
        self.target_fs, self.marker = target_fs, f"{partial}/{PARTIAL_MARKER}"
        self.last_stamp, self.last_beat, self.lapsed = claimed_at, time.monotonic(), False

    def __call__(self, now: bool = False) -> None:
        if not now and time.monotonic() - self.last_beat < HEARTBEAT_S:
            return
        try:
            _write_object(self.target_fs, self.marker, b"")
        except OSError:
            return  # the next beat tries again; a stamp read now would be an older write's
        stamp = _stamp(self.target_fs, self.marker)
        if stamp is not None and stamp >= self.last_stamp:
            self.lapsed = self.lapsed or stamp - self.last_stamp > CLAIM_ALIVE_S
            self.last_stamp = stamp
        self.last_beat = time.monotonic()


def _claim_key(target_fs, upload: str, now: float) -> tuple[float, str] | None:
    """``(when the upload's claim was written, the upload)`` while its run is replacing the output, else None.

    A claim counts while the upload's marker is neither stopped nor yielded
    and was rewritten within :data:`CLAIM_ALIVE_S` of ``now`` (a publish
    rewrites it every :data:`HEARTBEAT_S`): a run that died mid-publish
    blocks others that long. ``now`` and the objects' times are the store's
    clock, whatever this machine's says. An upload removed meanwhile (a
    publish that just finished) has no claim.
    """
    from pyarrow import fs

    try:
        claim, marker = target_fs.get_file_info([f"{upload}/{PUBLISH_CLAIM}", f"{upload}/{PARTIAL_MARKER}"])
        if claim.type != fs.FileType.File or marker.type != fs.FileType.File or None in (claim.mtime, marker.mtime):
            return None
        if now - max(claim.mtime, marker.mtime).timestamp() > CLAIM_ALIVE_S:
            return None
        with target_fs.open_input_stream(f"{upload}/{PARTIAL_MARKER}") as stream:
            if stream.read() in (STOPPED, YIELDED):
                return None
    except OSError:
        return None
    return claim.mtime.timestamp(), upload


def _earlier_publishes(target_fs, target: str, partial: str) -> tuple[list[str], float]:
    """Claim the output for the upload ``partial``: the uploads of other runs that claimed it first, and when
    this claim was written (the store's clock).

    An object store has no lock. Each run writes its claim, then reads every
    claim of the output's uploads, and gives way to any written no later than
    its own (by the store's clock): a run that saw no other claim may already
    be deleting. S3 reads what was just written, so of two runs that claim at
    once at most one goes on; within the same second of the clock both give
    way, and both keep their uploads.
    """

    _write_object(target_fs, f"{partial}/{PUBLISH_CLAIM}", b"")
    mine = _stamp(target_fs, f"{partial}/{PUBLISH_CLAIM}")
    mine = time.time() if mine is None else mine
    others = [_claim_key(target_fs, upload, now=mine) for upload in _uploads_of(target_fs, target) if upload != partial]
    return [key[1] for key in sorted(filter(None, others)) if key[0] <= mine], mine


def start_upload(uri: str) -> StorageURI:
    """A new upload prefix ``<uri>.partial-<id>`` next to the output ``uri``, marked as the pipeline's own."""
    target_fs, target = filesystem(uri)
    partial = f"{target}.partial-{secrets.token_hex(4)}"
    _write_object(target_fs, f"{partial}/{PARTIAL_MARKER}", b"")
    return StorageURI(f"{str(uri).split('://', 1)[0]}://{partial}")


def discard_upload(partial: str) -> None:
    """Remove an upload that will not be published; its marker first.

    A worker that was drawing when the run stopped may still be writing:
    the writers look for the marker after each part and take their files
    back when it is gone (:func:`helpers.pipeline.writer.write_part`).
    """
    partial_fs, path = filesystem(partial)
    try:
        partial_fs.delete_file(f"{path}/{PARTIAL_MARKER}")
    except OSError:
        pass
    _delete_prefix(partial_fs, path)


def publish_upload(partial: str, uri: str) -> None:
    """Replace the prefix ``uri`` with the complete upload ``partial`` (steps 2-4 of the module docstring).

    When this returns, ``uri`` is the new output, marked complete; the upload is
    left for :func:`remove_uploads`.
    """
    target_fs, target = filesystem(uri)
    scheme, partial = str(partial).split("://", 1)
    try:  # summary.json last: it marks the prefix as this pipeline's, so it is never missing mid-way.
        earlier, claimed_at = _earlier_publishes(target_fs, target, partial)
        if not earlier:  # read only now: a publish that finished a moment ago is in this listing
            ours = (rel for rel in _files_under(target_fs, partial) if rel not in (PARTIAL_MARKER, PUBLISH_CLAIM))
            files = sorted(ours, key=lambda rel: (rel == SUMMARY, rel))
            old, summary = _contents(target_fs, target)
    except BaseException as err:
        _mark_stopped(target_fs, partial)
        raise PublishError(f"listing the new output in {scheme}://{partial} failed ({_reason(err)}); {uri} was "
                           "left as it was: run the pipeline again") from err
    if earlier:
        _mark_stopped(target_fs, partial, YIELDED)
        raise PublishError(
            f"{uri} was not replaced: another run is replacing it at this moment (its upload {scheme}://"
            f"{earlier[0]}), and the two would mix their files. {uri} is left to that run, and this run's complete "
            f"output is in {scheme}://{partial}: run the pipeline again once the other has finished (a run that "
            f"stopped while replacing it counts for {CLAIM_ALIVE_S // 60} minutes)"
        )
    problem = ownership_problem(uri, old, summary)  # again: someone may have added objects during the run
    if problem:
        _mark_stopped(target_fs, partial)
        raise PublishError(f"{uri} was not replaced, it changed during the run: {problem}. {uri} is as it was, "
                           f"and the new output is in {scheme}://{partial}")

    step = "delete"
    try:
        old = set(old)
        beat = _Heartbeat(target_fs, partial, claimed_at)
        if SUCCESS_MARKER in old:  # 2. delete: readers stop trusting the prefix first
            target_fs.delete_file(f"{target}/{SUCCESS_MARKER}")
        for rel in sorted(old - set(files) - {SUCCESS_MARKER, SUMMARY}):
            target_fs.delete_file(f"{target}/{rel}")
            beat()
        step = "copy"
        for rel in files:  # 3. copy
            target_fs.copy_file(f"{partial}/{rel}", f"{target}/{rel}")
            beat()
        step = "marker"
        beat(now=True)
        if beat.lapsed:
            raise RuntimeError(f"this run paused for longer than its claim on {uri} lasts ({CLAIM_ALIVE_S // 60} "
                               "minutes: the machine slept, or the process was stopped), so another run may have "
                               "replaced it meanwhile")
        _write_object(target_fs, f"{target}/{SUCCESS_MARKER}", b"")  # 4. marker
        _mark_stopped(target_fs, partial)  # published: the claim ends here, not when the upload is removed
    except BaseException as err:
        _mark_stopped(target_fs, partial)
        raise PublishError(
            f"replacing {uri} stopped at the {step} step ({_reason(err)}); {uri} is incomplete and has no "
            f"{SUCCESS_MARKER}, and the complete new output is in {scheme}://{partial}: run the pipeline again, "
            f"or copy that prefix to {uri} and add an empty {uri}/{SUCCESS_MARKER}"
        ) from err


def remove_uploads(partial: str, uri: str) -> None:
    """Step 5: delete the published upload ``partial``, and the uploads of ``uri`` that no run writes any more."""
    target_fs, target = filesystem(uri)
    # The published upload still carries its marker, so the listing finds it too: each prefix is deleted once.
    for leftover in {str(partial).split("://", 1)[1], *_leftover_uploads(target_fs, target)}:
        _delete_prefix(target_fs, leftover)
