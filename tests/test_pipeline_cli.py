"""``python -m helpers.pipeline`` end to end, on the real CPU models, by subprocess.

The Ray runs are module-scoped fixtures, each run once and inspected by several
tests: a run with the LLM on the first 12 animals (Ray's deprecation warnings
raised as errors), a run of all 120 rows without the LLM, a re-run into the
first run's folder, and a run on inputs whose ids only partly match (with blank
lines and a prompt longer than the models read). Bad inputs
must fail before Ray starts: exit status 2, one ``error:`` line on stderr, in a
second or two.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers.models.folders import missing_model_files
from helpers.pipeline.output import PARTIAL_MARKER
from helpers.runtime.settings import (
    REPO_ROOT,
    SMALL_LLM_MODEL,
    TINY_IMAGE_MODEL,
    resolve_models_dir,
    resolve_storage,
)

DATA = REPO_ROOT / "data"


def setup_storage() -> Path:
    """Where ``./setup.sh`` put the data and models: as the workshop resolves it (``WORKSHOP_STORAGE``, else
    ``/mnt/cluster_storage`` when writable, else ``storage/`` in the clone); ``storage/`` for an ``s3://`` root."""
    storage = resolve_storage()
    return storage if isinstance(storage, Path) else REPO_ROOT / "storage"


STORAGE = setup_storage()
MODELS = resolve_models_dir(STORAGE)
COLUMNS = ["id", "animal", "outfit", "prompt", "original_prompt", "enhanced", "image"]
#: Generous: on a shared 2-core machine a Ray run has taken two minutes.
RUN_TIMEOUT_S = 420


def missing_models() -> list[str]:
    """The CPU models' missing files, where the pipeline command will look for them."""
    return missing_model_files(MODELS / TINY_IMAGE_MODEL, "image") + missing_model_files(
        MODELS / SMALL_LLM_MODEL, "llm"
    )


#: Tests that run the CPU models: they fail, naming the fix, when ./setup.sh has not built them
#: (``built_models`` in conftest.py), rather than skip: a green run always ran them.
needs_models = pytest.mark.usefixtures("built_models")


def cli_env(ray_address: str | None = None, **extra: str) -> dict:
    env = dict(os.environ, **extra)
    env["WORKSHOP_PROFILE"] = "cpu"
    env.pop("RAY_ADDRESS", None)
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
        # Ray 2.60 turns token authentication on for a cluster that ray.init() starts, but
        # a driver given an explicit address only sends the token when told to.
        env.setdefault("RAY_AUTH_MODE", "token")
    return env


#: What ray.init says when the machine is too busy for its raylet to come up in time
#: (another job on a 2-core box): not the pipeline's fault, so such a start is tried once more.
RAY_START_TIMEOUT = "timed out during startup"


#: Runs without the LLM test the join and the files, not the actor pool: one image actor
#: (one torch import instead of two) is enough there. The LLM run keeps the defaults.
ONE_IMAGE_ACTOR = {"WORKSHOP_IMAGE_ACTORS": "1"}


#: ``python -c`` code that runs the pipeline command with Ray's deprecation warnings raised
#: as errors. ``-W`` or ``PYTHONWARNINGS`` cannot name Ray's category: Python reads them
#: before Ray can be imported, and drops the option ("Invalid -W option ignored").
STRICT_DEPRECATIONS = """
import runpy, warnings
from ray.util.annotations import RayDeprecationWarning
warnings.simplefilter("error", RayDeprecationWarning)
runpy.run_module("helpers.pipeline", run_name="__main__", alter_sys=True)
"""


def run_cli(
    *args, timeout: float = RUN_TIMEOUT_S, ray_address: str | None = None, python: tuple = ("-m", "helpers.pipeline"),
    **extra_env: str,
) -> subprocess.CompletedProcess:
    """``python -m helpers.pipeline ARGS`` (``python``: what comes before the arguments)."""
    for attempt in (1, 2):
        proc = subprocess.run(
            [sys.executable, *python, *map(str, args)],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=cli_env(ray_address, **extra_env),
            cwd=REPO_ROOT,
        )
        if proc.returncode == 0 or RAY_START_TIMEOUT not in proc.stderr or attempt == 2:
            return proc
        print(f"Ray did not start in time (busy machine?), trying again:\n{proc.stderr[-1000:]}", file=sys.stderr)


def summary_of(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, f"exit {proc.returncode}; stderr ends:\n{proc.stderr[-3000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no stdout; stderr ends:\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])


def repo_data(output: Path, *options) -> list:
    """Arguments for a run on the workshop's data into ``output``."""
    return ["--animals", DATA / "animals.csv", "--outfits", DATA / "outfits.csv", "--output", output, *options]


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


class Run:
    """One finished CLI run: its summary, the output folder and a snapshot of what it held."""

    def __init__(self, proc: subprocess.CompletedProcess, output: Path):
        self.proc = proc
        self.summary = summary_of(proc)
        self.output = output
        self.table = pq.read_table(output / "parquet")
        self.png_names = sorted(p.name for p in (output / "images").iterdir())


# ---------------------------------------------------------------- Ray runs (module-scoped)


@pytest.fixture(scope="module")
def shared_ray(session) -> str:
    """The address of the test process's Ray (conftest's ``session``), which the module's runs join,
    as a notebook joins the Ray the lessons share: no Ray start of its own (one was
    10-40 s on 2 busy cores). Each run is its own Ray job with its own workers.

    Set-up a user would not have: a user's command starts a Ray of its own
    (``unmatched_run`` below takes that road).
    """
    return session.address


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="module")
def limited_run(workdir, shared_ray) -> Run:
    """Both model stages on 12 rows, with Ray's deprecation warnings raised as errors
    (``STRICT_DEPRECATIONS``): the one run that reaches every ``map_batches`` call of the pipeline."""
    output = workdir / "limited"
    proc = run_cli(*repo_data(output, "--limit", 12), ray_address=shared_ray, python=("-c", STRICT_DEPRECATIONS))
    return Run(proc, output)


@pytest.fixture(scope="module")
def plain_run(workdir, shared_ray) -> Run:
    output = workdir / "plain"
    return Run(run_cli(*repo_data(output, "--no-enhance"), ray_address=shared_ray, **ONE_IMAGE_ACTOR), output)


@pytest.fixture(scope="module")
def rerun(limited_run, workdir, shared_ray) -> Run:
    """The limited run's folder again, without the LLM this time, next to stale partial folders.

    One was left by a killed run of the pipeline (it carries the marker), one is a
    user's folder that merely has a similar name.
    """
    stale = workdir / "limited.partial-stale"
    stale.mkdir()
    (stale / PARTIAL_MARKER).write_text("12345\n")
    (stale / "junk.txt").write_text("left by an interrupted run")
    users = workdir / "limited.partial-keep"
    users.mkdir()
    (users / "notes.txt").write_text("a user's notes")
    proc = run_cli(
        *repo_data(limited_run.output, "--limit", 12, "--no-enhance"), ray_address=shared_ray, **ONE_IMAGE_ACTOR
    )
    return Run(proc, limited_run.output)


#: Longer than the models read (MAX_PROMPT_CHARS, 1000): the summary counts the prompts cut.
LONG_ANIMAL = "animal 9 " + "x" * 1000


@pytest.fixture(scope="module")
def unmatched_run(workdir) -> Run:
    """A run that starts (and stops) a local Ray of its own, as on a learner's laptop.

    Its animals file has two lines with no data, and row 9's prompt is longer than the models read.
    Set-up a user would not have: the ``cpu`` profile is set and one image actor is asked for
    (``cli_env``, ``ONE_IMAGE_ACTOR``); ``test_the_readme_command_as_a_user_types_it`` takes the defaults.
    """
    animal_rows = [f"{i},{LONG_ANIMAL if i == 9 else f'animal {i}'}" for i in range(1, 11)]
    animals = write_csv(workdir / "animals_1_10.csv", "id,animal", [*animal_rows[:3], "", ",", *animal_rows[3:]])
    outfits = write_csv(workdir / "outfits_5_14.csv", "id,outfit", [f"{i},outfit {i}" for i in range(5, 15)])
    output = workdir / "unmatched"
    proc = run_cli("--animals", animals, "--outfits", outfits, "--output", output, "--no-enhance", **ONE_IMAGE_ACTOR)
    return Run(proc, output)


@pytest.mark.slow
@needs_models
def test_the_readme_command_as_a_user_types_it(tmp_path):
    """The README's command, from the clone, with no WORKSHOP_* setting but the learner's name: the default
    profile, a Ray of its own, both model stages with their default pools, the default storage root."""
    from helpers.runtime.settings import cuda_usable

    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKSHOP_", "RAY_"))}
    env["WORKSHOP_USER"] = f"readme-test-{tmp_path.name}"  # the README's ${WORKSHOP_USER:-$USER}; not a real learner's
    if cuda_usable():  # the default profile would be the GPU one, whose models this test does not stage
        env["WORKSHOP_PROFILE"] = "cpu"
    learner = STORAGE / "outputs" / env["WORKSHOP_USER"]
    output = f"storage/outputs/{env['WORKSHOP_USER']}/pipeline"
    try:
        proc = subprocess.run(
            [".venv/bin/python", "-m", "helpers.pipeline", "--animals", "data/animals.csv", "--outfits",
             "data/outfits.csv", "--output", output, "--limit", "6"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
        )  # fmt: skip
        summary = summary_of(proc)
        assert summary["output"] == str(REPO_ROOT / output)
        assert (summary["joined"], summary["left_out_by_limit"], summary["llm"]) == (6, 114, True)
        assert summary["images"] == summary["parquet_rows"] == summary["png_files"] == 6
        assert summary["enhanced"] + summary["kept_original"] == 6
        assert sorted(p.name for p in (REPO_ROOT / output / "images").iterdir()) == [f"{i}.png" for i in range(1, 7)]
    finally:
        shutil.rmtree(REPO_ROOT / "storage" / "outputs" / env["WORKSHOP_USER"], ignore_errors=True)
        shutil.rmtree(learner, ignore_errors=True)


@pytest.mark.slow
@needs_models
def test_unmatched_ids_are_dropped_by_the_join(unmatched_run):
    summary = unmatched_run.summary
    assert {k: summary[k] for k in ("animals", "outfits", "joined", "unmatched_animals", "unmatched_outfits")} == {
        "animals": 10,
        "outfits": 10,
        "joined": 6,
        "unmatched_animals": 4,
        "unmatched_outfits": 4,
    }
    assert summary["left_out_by_limit"] == 0
    assert summary["parquet_rows"] == summary["png_files"] == summary["images"] == 6
    assert sorted(unmatched_run.table.column("id").to_pylist()) == list(range(5, 11))
    rows = {row["id"]: row for row in unmatched_run.table.to_pylist()}
    assert rows[7]["prompt"] == "animal 7 wearing a outfit 7"
    assert rows[9]["original_prompt"] == f"{LONG_ANIMAL} wearing a outfit 9", "the Parquet keeps a long prompt whole"
    assert unmatched_run.png_names == sorted(f"{i}.png" for i in range(5, 11))


@pytest.mark.slow
@needs_models
def test_skipped_lines_and_cut_prompts_are_counted_and_said(unmatched_run):
    summary = unmatched_run.summary
    assert summary["skipped_blank_lines"] == {"animals": 2, "outfits": 0}
    assert summary["prompts_cut"] == 1
    notes = [line for line in unmatched_run.proc.stderr.splitlines() if line.startswith("note: ")]
    assert any("skipped 2 line(s) with no data" in line and "animals_1_10.csv" in line for line in notes), notes
    assert any("1 prompt(s) longer than 1000 characters were cut" in line for line in notes), notes
    assert any(line.startswith("note: 4 row(s) of") and "animals_1_10.csv" in line and "were not drawn" in line
               for line in notes), notes
    assert summary["image_prompts_cut"] == 1, "the long prompt is also past the image model's 77 tokens"
    assert any("1 prompt(s) were longer than the image model reads (77 tokens" in line for line in notes), notes


@pytest.mark.slow
@needs_models
def test_limited_run_counts(limited_run):
    summary = limited_run.summary
    counted = ("animals", "outfits", "joined", "left_out_by_limit", "unmatched_animals", "unmatched_outfits")
    assert {k: summary[k] for k in counted} == {
        "animals": 120,
        "outfits": 120,
        "joined": 12,
        "left_out_by_limit": 108,
        "unmatched_animals": 0,
        "unmatched_outfits": 0,
    }, "rows read, and the pairs --limit left out, which are not unmatched"
    assert summary["images"] == summary["parquet_rows"] == summary["png_files"] == 12
    assert summary["enhanced"] + summary["kept_original"] == 12
    assert summary["llm"] is True and summary["limit"] == 12
    assert summary["output"] == str(limited_run.output)
    assert summary["seconds"] > 0


@pytest.mark.slow
@needs_models
def test_stdout_is_only_the_json_line(limited_run):
    assert limited_run.proc.stdout.strip().splitlines() == [json.dumps(limited_run.summary)]


@pytest.mark.slow
@needs_models
def test_limited_run_parquet_is_plain_data(limited_run):
    table = limited_run.table
    assert table.column_names == COLUMNS
    assert table.num_rows == 12
    assert sorted(table.column("id").to_pylist()) == list(range(1, 13))
    for field in table.schema:
        assert not isinstance(field.type, pa.ExtensionType), f"{field.name} is {field.type}"
    assert table.schema.field("image").type == pa.binary()
    assert table.schema.field("enhanced").type == pa.bool_()
    assert b"ray" not in (table.schema.metadata or {}).get(b"ARROW:extension:name", b"")


@pytest.mark.slow
@needs_models
def test_images_are_png_bytes_named_by_id(limited_run):
    from PIL import Image

    rows = limited_run.table.to_pylist()
    for row in rows:
        assert row["image"].startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(row["image"])) as image:
            assert image.format == "PNG" and image.size[0] > 0
        assert (limited_run.output / "images" / f"{row['id']}.png").read_bytes() == row["image"]
    assert limited_run.png_names == sorted(f"{row['id']}.png" for row in rows)


@pytest.mark.slow
@needs_models
def test_prompts_are_animal_wearing_outfit(limited_run):
    for row in limited_run.table.to_pylist():
        assert row["original_prompt"] == f"{row['animal']} wearing a {row['outfit']}"
        if not row["enhanced"]:
            assert row["prompt"] == row["original_prompt"]
        assert row["prompt"].strip()


@pytest.mark.slow
@needs_models
def test_parquet_reads_with_pandas_without_ray(limited_run):
    code = (
        "import sys, pandas; df = pandas.read_parquet(sys.argv[1]); "
        "assert isinstance(df['image'][0], bytes), type(df['image'][0]); "
        "assert 'ray' not in sys.modules; print(len(df))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(limited_run.output / "parquet")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "12"


@pytest.mark.slow
@needs_models
def test_full_run_without_llm(plain_run):
    summary = plain_run.summary
    assert {k: summary[k] for k in ("animals", "outfits", "joined", "unmatched_animals", "unmatched_outfits")} == {
        "animals": 120,
        "outfits": 120,
        "joined": 120,
        "unmatched_animals": 0,
        "unmatched_outfits": 0,
    }
    assert summary["enhanced"] == 0 and summary["kept_original"] == 120, "without the LLM every prompt is kept"
    assert summary["enhanced"] + summary["kept_original"] == summary["joined"]
    assert summary["images"] == summary["parquet_rows"] == summary["png_files"] == 120
    assert summary["llm"] is False and summary["limit"] is None
    table = plain_run.table
    assert table.column_names == COLUMNS
    assert sorted(table.column("id").to_pylist()) == list(range(1, 121))
    assert table.column("prompt").to_pylist() == table.column("original_prompt").to_pylist()
    assert not any(table.column("enhanced").to_pylist())
    assert len(plain_run.png_names) == 120
    # Written by the image actors, one part per batch; the driver got one small row per part.
    assert sum(summary["written_on"].values()) == 120 and summary["discarded_parts"] == 0
    assert len(list((plain_run.output / "parquet").glob("part-*.parquet"))) >= 120 // 8


@pytest.mark.slow
@needs_models
def test_rerun_replaces_instead_of_appending(limited_run, rerun):
    assert rerun.summary["parquet_rows"] == rerun.table.num_rows == limited_run.table.num_rows == 12
    assert sorted(rerun.table.column("id").to_pylist()) == list(range(1, 13))
    assert not any(rerun.table.column("enhanced").to_pylist()), "the second run's rows replaced the first's"
    assert len(rerun.png_names) == 12
    assert json.loads((rerun.output / "summary.json").read_text())["llm"] is False
    leftovers = sorted(p.name for p in rerun.output.parent.iterdir() if p.name.startswith("limited."))
    assert leftovers == ["limited.partial-keep"], "the pipeline's partial folders are cleaned up, nobody else's"
    assert (rerun.output.parent / "limited.partial-keep" / "notes.txt").read_text() == "a user's notes"


@pytest.mark.slow
@needs_models
def test_the_pipeline_uses_no_deprecated_ray_api(limited_run):
    """Ray 2.60 warns on every run that ``map_batches(**ray_remote_args)`` goes in Ray 2.64; here that fails.

    The limited run raised Ray's deprecation warnings as errors (its fixture) and finished; its log names none.
    """
    assert limited_run.summary["parquet_rows"] == 12 and limited_run.summary["llm"] is True
    assert "RayDeprecationWarning" not in limited_run.proc.stderr, limited_run.proc.stderr[-3000:]


@pytest.mark.slow
@needs_models
def test_failed_run_exits_1_and_keeps_the_previous_output(unmatched_run, shared_ray):
    """LLM actors as large as the image stage's share would leave the images no GPU: the settings check stops the run.

    The run fails after it claimed the output folder (the check runs when Ray starts), so what is checked is the
    failure path: the previous output stays as it was and the partial folder goes.
    """
    before = (unmatched_run.output / "summary.json").read_text()
    proc = run_cli(
        "--animals", unmatched_run.output.parent / "animals_1_10.csv",
        "--outfits", unmatched_run.output.parent / "outfits_5_14.csv",
        "--output", unmatched_run.output,
        ray_address=shared_ray,
        WORKSHOP_IMAGE_GPUS="1",
        WORKSHOP_LLM_GPUS="1",
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: SettingsError: WORKSHOP_LLM_GPUS=1 equals WORKSHOP_IMAGE_GPUS=1")
    assert "--debug" in last
    assert "Traceback" not in proc.stderr and "open an issue" not in proc.stderr
    assert (unmatched_run.output / "summary.json").read_text() == before
    assert pq.read_table(unmatched_run.output / "parquet").num_rows == 6
    assert not list(unmatched_run.output.parent.glob("unmatched.partial-*"))


# ---------------------------------------------------------------- bad input: exit 2 before Ray


def poison_ray_and_torch(folder: Path) -> Path:
    """Packages named ``ray`` and ``torch`` that fail on import: put first on ``PYTHONPATH`` by
    :func:`before_ray`, they turn "fails before Ray starts" into an exit of 1 with their message."""
    for name in ("ray", "torch"):
        (folder / name).mkdir(parents=True)
        failing = f"raise ImportError('{name} was imported before the check failed')\n"
        (folder / name / "__init__.py").write_text(failing)
    return folder


def before_ray(inputs: Path) -> dict:
    """Environment for a run that must stop before importing Ray or torch (:func:`poison_ray_and_torch`)."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(inputs / "poisoned"), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    poison_ray_and_torch(folder / "poisoned")
    write_csv(folder / "animals.csv", "id,animal", ["1,fox", "2,owl"])
    write_csv(folder / "outfits.csv", "id,outfit", ["1,hat", "2,scarf"])
    (folder / "empty.csv").write_text("")
    write_csv(folder / "header_only.csv", "id,animal", [])
    write_csv(folder / "misspelled.csv", "id,animals", ["1,fox"])
    write_csv(folder / "no_id.csv", "key,animal", ["1,fox"])
    write_csv(folder / "no_outfit.csv", "id,clothes", ["1,hat"])
    write_csv(folder / "text_id.csv", "id,animal", ["1,fox", "two,owl"])
    write_csv(folder / "null_id.csv", "id,animal", ["1,fox", ",owl"])
    write_csv(folder / "dup_id.csv", "id,animal", ["1,fox", "1,owl"])
    write_csv(folder / "empty_prompt.csv", "id,outfit", ["1,hat", "2,  "])
    write_csv(folder / "other_ids.csv", "id,outfit", ["8,hat", "9,scarf"])
    write_csv(folder / "later_ids.csv", "id,outfit", ["2,scarf"])
    (folder / "animals.csv.gz").write_bytes(gzip.compress(b"id,animal\n1,fox\n"))
    write_csv(folder / "semicolons.csv", "id;animal", ["1;fox"])
    (folder / "a_file").write_text("not a folder")
    (folder / "someones_folder").mkdir()
    (folder / "someones_folder" / "thesis.tex").write_text("precious")
    return folder


# (case, animals, outfits, output, words the single stderr line must contain)
BAD_INPUTS = [
    ("missing file", "nope.csv", "outfits.csv", "out", ["nope.csv", "does not exist"]),
    ("directory", ".", "outfits.csv", "out", ["is a folder, not a file"]),
    ("empty file", "empty.csv", "outfits.csv", "out", ["empty.csv", "empty (0 bytes)"]),
    ("header only", "header_only.csv", "outfits.csv", "out", ["header_only.csv", "no rows"]),
    ("misspelled column", "misspelled.csv", "outfits.csv", "out", ["misspelled.csv", "'animal'", "did you mean"]),
    ("missing id column", "no_id.csv", "outfits.csv", "out", ["no_id.csv", "column 'id' is missing"]),
    ("missing outfit column", "animals.csv", "no_outfit.csv", "out", ["no_outfit.csv", "column 'outfit'"]),
    ("non-integer id", "text_id.csv", "outfits.csv", "out", ["text_id.csv", "line 3", "'two'"]),
    ("null id", "null_id.csv", "outfits.csv", "out", ["null_id.csv", "line 3", "empty 'id'"]),
    ("duplicate id", "dup_id.csv", "outfits.csv", "out", ["dup_id.csv", "unique", "1 (lines 2, 3)"]),
    ("empty prompt", "animals.csv", "empty_prompt.csv", "out", ["empty_prompt.csv", "line 3", "empty 'outfit'"]),
    ("nothing joins", "animals.csv", "other_ids.csv", "out", ["other_ids.csv", "join is empty"]),
    ("gzip file", "animals.csv.gz", "outfits.csv", "out", ["animals.csv.gz", "gzip", "decompress it"]),
    ("semicolons", "semicolons.csv", "outfits.csv", "out", ["semicolons.csv", "separate them with commas"]),
    ("output is a file", "animals.csv", "outfits.csv", "a_file", ["a_file", "is a file"]),
    ("output under a file", "animals.csv", "outfits.csv", "a_file/out", ["a_file", "cannot write"]),
    ("output not ours", "animals.csv", "outfits.csv", "someones_folder", ["someones_folder", "thesis.tex"]),
]


@pytest.mark.parametrize(
    ("animals", "outfits", "output", "words"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS]
)
def test_bad_input_exits_2_with_one_line(inputs, animals, outfits, output, words):
    proc = run_cli(
        "--animals", inputs / animals, "--outfits", inputs / outfits, "--output", inputs / output, timeout=60,
        **before_ray(inputs),
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]
    assert proc.stdout == ""
    assert (inputs / "someones_folder" / "thesis.tex").exists()
    assert not list(inputs.glob("*.partial-*"))


def test_missing_model_folder_exits_2_before_ray(inputs, tmp_path):
    missing = tmp_path / "no-such-model"
    base = ["--animals", inputs / "animals.csv", "--outfits", inputs / "outfits.csv", "--output", inputs / "out"]
    proc = run_cli(*base, timeout=60, WORKSHOP_LLM_MODEL=str(missing), **before_ray(inputs))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        (f"error: model folder {missing} does not exist; `./setup.sh` builds the workshop's models "
         "(or point WORKSHOP_LLM_MODEL at a model folder)")
    ]


@pytest.mark.parametrize(
    "args",
    [["--limit", "0"], ["--limit", "many"], [], ["--bogus"]],
    ids=["limit zero", "limit text", "no arguments", "unknown option"],
)
def test_bad_arguments_exit_2_with_one_line(inputs, args):
    base = ["--animals", inputs / "animals.csv", "--outfits", inputs / "outfits.csv", "--output", inputs / "out"]
    proc = run_cli(*(base if args != [] else []), *args, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: "), proc.stderr


def test_a_limit_that_leaves_nothing_to_join_says_so(inputs):
    """Only id 2 has an outfit; ``--limit 1`` keeps id 1 alone, while without it the join has a row."""
    base = ["--animals", inputs / "animals.csv", "--outfits", inputs / "later_ids.csv", "--output", inputs / "out"]
    proc = run_cli(*base, "--limit", "1", timeout=60)
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert "no id of the first 1 ids (--limit)" in line and "use a larger --limit, or none" in line


def test_a_limit_beyond_the_rows_keeps_every_row(inputs):
    """Any whole number is a valid ``--limit``, also one beyond what a table can slice."""
    import argparse

    from helpers.pipeline.command import load_inputs

    args = argparse.Namespace(animals=inputs / "animals.csv", outfits=inputs / "outfits.csv", limit=2**63)
    animals, _, report = load_inputs(args)
    assert animals.num_rows == 2 and report["joined"] == 2


def test_bad_input_never_imports_ray_or_torch(inputs):
    code = (
        "import sys; from helpers.pipeline.command import main; "
        f"rc = main(['--animals', {str(inputs / 'dup_id.csv')!r}, '--outfits', {str(inputs / 'outfits.csv')!r}, "
        f"'--output', {str(inputs / 'out')!r}]); "
        "print(rc, 'ray' in sys.modules, 'torch' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60, env=cli_env()
    )
    assert proc.stdout.split() == ["2", "False", "False"], proc.stderr
