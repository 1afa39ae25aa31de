"""``python -m helpers.pipeline``: the workshop's final pipeline, run on two CSV files.

The pipeline itself is :func:`helpers.pipeline.stages.build_pipeline`; this
module is the command around it::

    python -m helpers.pipeline --animals data/animals.csv --outfits data/outfits.csv \\
        --output storage/outputs/<learner>/final [--limit N] [--no-enhance] [--debug]

It checks both inputs before starting Ray (:mod:`helpers.pipeline.inputs`), so a bad
file fails in well under a second with exit status 2 and one ``error:`` line.
It writes ``DIR/parquet/`` (columns ``id, animal, outfit, prompt,
original_prompt, enhanced, image`` with ``image`` as PNG bytes that pandas or
pyarrow read without Ray, one part per batch), ``DIR/images/<id>.png`` and
``DIR/summary.json``. The image actors write the Parquet and PNG files
themselves, on the nodes that draw them (:mod:`helpers.pipeline.writer`); the
driver receives one small row per part, and before publishing reads the ids
back from the files: every joined id exactly once, each with its PNG.
A run *replaces* ``DIR``, so it only replaces a folder that is empty or an
earlier output of this pipeline, writes into a marked sibling
``DIR.partial-<random>`` first, swaps it in at the end, and holds a lock so
that a second run into the same ``DIR`` stops at once (:mod:`helpers.pipeline.output`).
A failed or interrupted run leaves the previous output as it was.
``--animals``, ``--outfits`` and ``--output`` may also be ``s3://`` locations
(:mod:`helpers.runtime.storage`, :mod:`helpers.pipeline.s3_publish`): inputs are
fetched through pyarrow, the workers write into a marked ``DIR.partial-<random>`` prefix, and the output
prefix is replaced under the same ownership rule, with ``_SUCCESS`` written last.

The last line on stdout is one JSON object with the counts of the run (rows
read on each side, joined, left out by ``--limit``, unmatched on each side,
blank lines skipped in each file, prompts cut to the models' length, enhanced
and kept unchanged, images, Parquet rows and PNG files written, repeated ids,
actor restarts, parts of redone batches removed, rows written per Ray node).
The counts add up: ``animals == joined + left_out_by_limit + unmatched_animals``
(the same for ``outfits``), and ``enhanced + kept_original == joined``, with
or without the LLM. Skipped lines and cut prompts are also said on stderr
when there are any. Ray's own output is sent to stderr while the pipeline
runs. A model worker that dies is restarted and its batch retried, a few
times at most (:data:`helpers.pipeline.stages.MAX_ACTOR_RESTARTS`); the run
says so on stderr, and it fails rather than publish unless every joined row
was written exactly once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import pyarrow as pa

from helpers.errors import InputError, ModelFolderError, PublishError, SettingsError
from helpers.models.safeguards import MAX_PROMPT_CHARS
from helpers.pipeline.inputs import ANIMALS_COLUMNS, KEY, OUTFITS_COLUMNS, match_report, read_input
from helpers.pipeline.output import SUMMARY, WRITTEN_BY, claim_output, discard_partial, publish
from helpers.pipeline.s3_publish import (
    check_output_prefix,
    discard_upload,
    publish_upload,
    remove_uploads,
    start_upload,
)
from helpers.pipeline.stages import build_pipeline, count_long_prompts, shared_gpu_settings
from helpers.pipeline.writer import (
    Written,
    check_written,
    collect_parts,
    discard_unlisted_parts,
    part_counts,
    write_file,
)
from helpers.runtime.settings import Settings, load_settings
from helpers.runtime.storage import StorageURI, check_scheme, fetch, is_uri


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"error: {message} (see python -m helpers.pipeline --help)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def _location(text: str) -> Path | StorageURI:
    """A local path, or an ``s3://`` location."""
    if is_uri(text):
        try:
            check_scheme(text, "location")
        except SettingsError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return StorageURI(text.rstrip("/"))
    return Path(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="python -m helpers.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--animals", required=True, type=_location, help="CSV with columns id,animal (path or s3://)")
    parser.add_argument("--outfits", required=True, type=_location, help="CSV with columns id,outfit (path or s3://)")
    parser.add_argument("--output", required=True, type=_location,
                        help="output folder or s3:// prefix (replaced on every run)")
    parser.add_argument("--limit", type=_positive, help="use only the first N animals by id")
    parser.add_argument("--no-enhance", action="store_true", help="skip the LLM: draw the plain prompts")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    return parser.parse_args(argv)


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything written to stdout (Python or Ray's C++ side) to stderr meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


#: A traceback's last line, e.g. ``helpers.models.stages.StageOutOfMemoryError: ImageGen ran out ...``.
_RAISED_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?(\w*(?:Error|Exception|Interrupt)): (.+)$")


def _one_line(error: BaseException) -> str:
    """A one-line description of ``error``.

    A worker's error reaches the driver as a Ray error whose text holds the
    worker's traceback, then Ray's advice on retries; the line that names the
    original exception (the last one not raised by Ray itself) is the one to show.
    """
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    raised = [m for m in map(_RAISED_LINE.match, lines) if m and not m.group(0).startswith("ray.")]
    if raised:
        name, text = raised[-1].groups()
        return f"{name}: {text}"
    text = lines[-1] if len(lines) > 1 else lines[0]
    return text if ":" in text.split(" ", 1)[0] else f"{type(error).__name__}: {text}"


def load_inputs(args: argparse.Namespace) -> tuple[pa.Table, pa.Table, dict]:
    """Both inputs, checked, with ``--limit`` applied, and the counts of how they join.

    The counts are taken on the whole files, so that ``--limit`` shows as the
    pairs it left out, never as unmatched rows; ``prompts_cut`` counts the
    prompts of the rows the run draws that the models will cut.
    """
    with tempfile.TemporaryDirectory(prefix="workshop-inputs-") as scratch:
        # Inputs on S3 are fetched first: the checks (and their messages) read local files.
        animals_file = read_input(_local(args.animals, Path(scratch, "animals")), ANIMALS_COLUMNS, "animals",
                                  shown_as=str(args.animals))
        outfits_file = read_input(_local(args.outfits, Path(scratch, "outfits")), OUTFITS_COLUMNS, "outfits",
                                  shown_as=str(args.outfits))
    all_animals, outfits = animals_file.table, outfits_file.table
    animals = all_animals
    if args.limit is not None:
        animals = animals.sort_by(KEY).slice(0, min(args.limit, animals.num_rows))
    report = match_report(all_animals, outfits, used_animals=animals)
    if report["joined"] == 0 and args.limit is not None:
        raise InputError(
            f"no id of the first {args.limit} ids (--limit) of {args.animals} appears in {args.outfits}, so the join "
            "is empty; rows are paired by equal ids; use a larger --limit, or none"
        )
    if report["joined"] == 0:
        raise InputError(
            f"no id of {args.animals} appears in {args.outfits}, so the join is empty; rows are paired by equal ids"
        )
    report["skipped_blank_lines"] = {
        "animals": animals_file.skipped_blank_lines,
        "outfits": outfits_file.skipped_blank_lines,
    }
    report["prompts_cut"] = count_long_prompts(animals, outfits)
    # The pipeline uses only the required columns; extra ones would collide in the join.
    return animals.select(list(ANIMALS_COLUMNS)), outfits.select(list(OUTFITS_COLUMNS)), report


def _local(location, folder: Path) -> Path:
    if not is_uri(location):
        return location
    folder.mkdir()
    return fetch(location, folder)


def run(animals: pa.Table, outfits: pa.Table, partial: Path | StorageURI, enhance: bool) -> dict:
    """Start Ray, run the pipeline into ``partial`` and return the counts of what was written.

    The image actors write the files; what comes back here is one small row
    per Parquet part. A part that no row names was left by an attempt that
    died and was redone, and is removed (``discarded_parts``).
    """
    import ray

    import helpers

    session = helpers.start(quiet=True)
    settings = shared_gpu_settings(session.settings) if enhance else session.settings
    ds = build_pipeline(ray.data.from_arrow(animals), ray.data.from_arrow(outfits), settings, enhance=enhance,
                        write_to=partial)
    parts = collect_parts(ds.iter_batches(batch_format="pyarrow", batch_size=None))
    counts = part_counts(parts)
    counts["discarded_parts"] = discard_unlisted_parts(partial, parts.column("part").to_pylist())
    counts["actor_restarts"] = actor_restarts(ray.get_runtime_context().get_job_id())
    rows = counts.pop("rows")
    # Every prompt the LLM did not rewrite is drawn as it was: an empty reply keeps the
    # original (helpers.models.stages.Enhancer), and without the LLM every prompt is kept.
    counts["kept_original"] = rows - counts["enhanced"]
    return counts


def actor_restarts(job_id: str) -> int | None:
    """How many times Ray restarted an actor of this job (a model worker that died).

    Read from Ray's actor table in the GCS, which needs no dashboard. The run
    reports it so that a retry is visible; the rows are still counted and
    checked for duplicates separately. None when the table cannot be read: a
    finished run is not failed for the sake of this number.
    """
    from helpers.runtime.ray_internals import job_actor_restarts

    try:
        return job_actor_restarts(job_id)  # ray.util.state would need the dashboard, which is off here
    except Exception as err:  # noqa: BLE001 - a private API; the output is complete without it
        print(f"note: could not read Ray's actor table to count restarts ({err})", file=sys.stderr)
        return None


def check_models(settings: Settings, enhance: bool) -> None:
    """Fail before Ray when a local model folder is missing or incomplete.

    The actors would find out too, but only after a minute of starting up, and
    with a worker traceback. Hub ids (the GPU profile without staged models)
    are left to the actors.
    """
    from helpers.models.stages import check_local_model

    stages = [("image", settings.image.model)] + ([("llm", settings.llm.model)] if enhance else [])
    for kind, source in stages:
        check_local_model(source, kind)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def joined_ids(animals: pa.Table, outfits: pa.Table) -> np.ndarray:
    """The ids the inner join keeps: each must be written exactly once."""
    return np.intersect1d(animals.column(KEY).to_numpy(), outfits.column(KEY).to_numpy())


def _summary(args, output, report: dict, counts: dict, written: Written, began: float) -> dict:
    return {
        "written_by": WRITTEN_BY,
        **report,
        **counts,
        "parquet_rows": written.parquet_rows,
        "png_files": written.png_files,
        "duplicate_ids": written.duplicate_ids,
        "limit": args.limit,
        "llm": not args.no_enhance,
        "seconds": round(time.perf_counter() - began, 1),
        "output": str(output),
    }


def _miscounts(summary: dict, problems: tuple[str, ...] = ()) -> str | None:
    """What was written in a number other than the joined rows, or with other ids; None when all agree."""
    written = {"parquet rows": summary["parquet_rows"], "PNG files": summary["png_files"], "images": summary["images"]}
    wrong = [f"{n} {what}" for what, n in written.items() if n != summary["joined"]]
    if summary["duplicate_ids"]:
        wrong.append(f"{summary['duplicate_ids']} repeated ids")
    return ", ".join([*wrong, *problems]) or None


def closing_notes(summary: dict, args: argparse.Namespace) -> list[str]:
    """Lines for stderr about what the run changed or left out of the inputs without failing.

    The JSON line has the numbers; these say them in words, so that skipped
    lines and cut prompts are seen by someone who does not read the JSON.
    """
    notes = []
    if summary.get("actor_restarts"):
        notes.append(
            f"note: Ray restarted a model actor {summary['actor_restarts']} time(s) and retried its batch; "
            f"all {summary['joined']} rows were written once"
        )
    inputs = {"animals": args.animals, "outfits": args.outfits}
    for kind, skipped in summary["skipped_blank_lines"].items():
        if skipped:
            notes.append(f"note: skipped {skipped} line(s) with no data (blank, or only commas) in {inputs[kind]}")
    for kind, other in (("animals", "outfits"), ("outfits", "animals")):
        if summary.get(f"unmatched_{kind}"):
            notes.append(
                f"note: {summary[f'unmatched_{kind}']} row(s) of {inputs[kind]} have an id that {inputs[other]} "
                "does not have, and were not drawn (rows are paired by equal ids)"
            )
    if summary["prompts_cut"]:
        notes.append(
            f"note: {summary['prompts_cut']} prompt(s) longer than {MAX_PROMPT_CHARS} characters were cut to that "
            "length for the models; original_prompt in the Parquet keeps them whole"
        )
    if summary.get("image_prompts_cut"):
        notes.append(
            f"note: {summary['image_prompts_cut']} prompt(s) were longer than the image model reads (77 tokens for "
            "sdxl-turbo's text encoders); their images show only the prompt's beginning, and the Parquet keeps "
            "the prompt whole"
        )
    return notes


def _untouched(output, existed: bool) -> str:
    """How the output stands after a run that did not publish."""
    return f"{output} was left as it was" if existed else f"nothing was written to {output}"


def main(argv: list[str] | None = None) -> int:
    began = time.perf_counter()
    args = parse_args(argv)
    remote = is_uri(args.output)
    output = args.output if remote else args.output.expanduser().resolve()
    lock = None
    try:  # everything that can be wrong with the input, before Ray starts
        animals, outfits, report = load_inputs(args)
        check_models(load_settings(), enhance=not args.no_enhance)
        if remote:
            existed = check_output_prefix(output)
            partial = start_upload(output)
        else:
            existed = output.is_dir()
            lock, partial = claim_output(output)
    except (InputError, SettingsError, ModelFolderError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    published, kept, summary_text = False, False, None
    previous_sigterm = None
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        # `kill` cleans up like Ctrl-C: the previous output stays, the partial folder goes.
        previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with stdout_to_stderr():
            try:
                counts = run(animals, outfits, partial, enhance=not args.no_enhance)
            finally:
                from helpers.runtime.cluster import stop

                stop()
        written = check_written(partial, joined_ids(animals, outfits))
        summary = _summary(args, output, report, counts, written, began)
        wrong = _miscounts(summary, written.problems)
        if wrong:
            print(
                f"error: wrote {wrong} but the join has {report['joined']} rows; "
                f"{_untouched(output, existed)} (run again with --debug to investigate)",
                file=sys.stderr,
            )
            return 1
        summary_text = json.dumps(summary, indent=2) + "\n"
        write_file(partial, SUMMARY, summary_text.encode())
        if remote:
            publish_upload(partial, output)
        else:
            publish(partial, output)
        published = True
        if remote:  # after publishing: an interrupt while tidying up must not read as a failed publish
            remove_uploads(partial, output)
        for note in closing_notes(summary, args):
            print(note, file=sys.stderr)
    except KeyboardInterrupt:
        # publish() delivers an interrupt that came during its renames only once they are done.
        in_place = published or (not remote and _holds_summary(output, summary_text))
        where = f"the new output was already complete in {output}" if in_place else _untouched(output, existed)
        print(f"error: interrupted; {where}", file=sys.stderr)
        return 130
    except PublishError as err:  # an object store half-way through: the message says where the complete copy is
        kept = True
        print(f"error: {err}", file=sys.stderr)
        return 130 if isinstance(err.__cause__, KeyboardInterrupt) else 1
    except Exception as err:  # noqa: BLE001 - the command's contract: one line, traceback on request
        if args.debug:
            traceback.print_exc()
        print(f"error: {_one_line(err)}; {_untouched(output, existed)} (run again with --debug for the traceback)",
              file=sys.stderr)
        return 1
    finally:
        # Not yet published: the new files; interrupted after an exchange: the previous output.
        if not (published or kept):
            (discard_upload if remote else discard_partial)(partial)
        if lock is not None:
            lock.release()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)

    print(json.dumps(summary))
    return 0


def _holds_summary(output: Path, summary_text: str | None) -> bool:
    """Whether ``output`` already holds this run's summary, i.e. :func:`publish` had put the new output in place."""
    if summary_text is None:
        return False
    try:
        return (output / SUMMARY).read_text() == summary_text
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
