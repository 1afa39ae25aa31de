"""Faults during a pipeline run: a killed worker, Ctrl-C, out of memory, odd prompts.

The pipeline command runs by subprocess and joins one Ray kept up for the module
(as in ``test_pipeline_cli``). Each fault ends in one of two honest ways: the run
completes with every joined row written exactly once (``written == joined``), or
it fails with one line and leaves the previous output as it was.

"Mid-run" is observed, not timed: the test waits (bounded) until the ``ImageGen``
actor's process title shows it is executing a batch (Ray titles a busy actor
``ray::MapWorker(MapBatches(ImageGen)).submit``), then acts. Only the worker
processes of the module's own Ray are searched (those its raylet started, found
by the raylet's ``--gcs-address``), so a signal never reaches another Ray that
runs the same lesson on the machine.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest

from helpers.errors import InputError, StageOutOfMemoryError
from helpers.models import stages as models
from helpers.pipeline import command as pipeline
from helpers.pipeline.inputs import OUTFITS_COLUMNS, read_table
from helpers.runtime.settings import REPO_ROOT
from tests import test_pipeline_cli
from tests.test_pipeline_cli import (
    ONE_IMAGE_ACTOR,
    STORAGE,
    Run,
    cli_env,
    needs_models,
    repo_data,
    run_cli,
    write_csv,
)

#: The module-scoped Ray that the runs join (a fixture, used by name).
shared_ray = test_pipeline_cli.shared_ray

#: The longest wait for anything a run does; a hang fails the test instead of CI.
WAIT_S = 300
#: Small batches and one image actor: one task works through many batches, so a
#: signal sent while the actor is busy lands half-way through the images.
SLOW_IMAGES = {**ONE_IMAGE_ACTOR, "WORKSHOP_IMAGE_BATCH_SIZE": "1"}
ROWS = 30


def start_cli(*args, ray_address: str, log: Path, **extra_env: str) -> subprocess.Popen:
    with log.open("w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "helpers.pipeline", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=cli_env(ray_address, **extra_env),
            cwd=REPO_ROOT,
        )


def raylets(gcs_address: str) -> list[psutil.Process]:
    """The raylets of the Ray whose GCS is at ``gcs_address`` (one per node), and of no other Ray."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "raylet" and f"--gcs-address={gcs_address}" in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


def wait_for_run(run: subprocess.Popen, log: Path, find, what, wait_s: float, every: float = 0.05):
    """What ``find()`` returns once it is not None, polled while the ``run`` is alive, at most ``wait_s``.

    The test fails, with ``what`` it waited for (a text, or a function that says it at that moment)
    and the run's last log lines, when the run ends first or nothing is found in time.
    """
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if run.poll() is not None:
            pytest.fail(f"the run ended (exit {run.returncode}) before {_said(what)}:\n{log.read_text()[-2000:]}")
        found = find()
        if found is not None:
            return found
        time.sleep(every)
    pytest.fail(f"not within {wait_s} s: {_said(what)}:\n{log.read_text()[-2000:]}")


def _said(what) -> str:
    return what() if callable(what) else what


def busy_image_actor(run: subprocess.Popen, log: Path, gcs_address: str, wait_s: float = WAIT_S) -> psutil.Process:
    """The ImageGen actor's process once it is executing a batch (polled, at most ``wait_s``).

    Searched only among the processes that the raylets of the Ray at ``gcs_address`` started.
    """
    nodes: list[psutil.Process] = []

    def find():
        nodes[:] = nodes or raylets(gcs_address)
        for raylet in nodes:
            with contextlib.suppress(psutil.Error):  # a process that exits while we look
                for proc in raylet.children(recursive=True):
                    title = " ".join(proc.cmdline())
                    if "MapBatches(ImageGen)" in title and ".submit" in title:
                        return proc
        return None

    def what() -> str:
        found = f"raylets {[proc.pid for proc in nodes]}" if nodes else "no raylet"
        return f"an ImageGen actor of the Ray at {gcs_address} ({found}) got busy"

    return wait_for_run(run, log, find, what, wait_s)


def first_part_written(run: subprocess.Popen, log: Path, output: Path, wait_s: float = WAIT_S) -> Path:
    """The first Parquet part an image actor wrote into ``output``'s partial folder (polled, at most ``wait_s``).

    Real progress, not a pace: with one image actor and one image per batch, the
    first part means one of the run's rows is drawn and all the others are still to do.
    """
    def find():
        parts = sorted(output.parent.glob(f"{output.name}.partial-*/parquet/part-*.parquet"))
        return parts[0] if parts else None

    return wait_for_run(run, log, find, f"a part was written into a partial folder of {output}", wait_s, every=0.02)


def finished(run: subprocess.Popen, log: Path) -> subprocess.CompletedProcess:
    stdout = run.communicate(timeout=WAIT_S)[0]
    return subprocess.CompletedProcess(run.args, run.returncode, stdout, log.read_text())


def assert_each_row_once(result: Run, joined: int) -> None:
    """written == joined, and no id twice: the Parquet, the PNG files and the counts agree."""
    ids = result.table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == joined
    assert result.png_names == sorted(f"{i}.png" for i in ids)
    summary = result.summary
    assert summary["parquet_rows"] == summary["png_files"] == summary["images"] == summary["joined"] == joined
    assert summary["duplicate_ids"] == 0


def no_partials(output: Path) -> list[str]:
    return sorted(p.name for p in output.parent.glob(f"{output.name}.partial-*"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def killed_run(workdir, shared_ray):
    """A run whose ImageGen actor is killed with SIGKILL while it draws."""
    output, log = workdir / "killed", workdir / "killed.stderr"
    run = start_cli(*repo_data(output, "--no-enhance", "--limit", ROWS), ray_address=shared_ray, log=log, **SLOW_IMAGES)
    try:
        victim = busy_image_actor(run, log, shared_ray)
        victim_pid = victim.pid
        victim.send_signal(signal.SIGKILL)
        proc = finished(run, log)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    return Run(proc, output), victim_pid


@pytest.mark.slow
def test_only_a_worker_of_the_test_ray_can_be_killed(shared_ray, tmp_path):
    """A process of another Ray on the machine (here a decoy with a busy ImageGen title) is never chosen."""
    title = "ray::MapWorker(MapBatches(ImageGen)).submit"
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", title])
    log = tmp_path / "decoy.log"
    log.write_text("")
    try:
        with pytest.raises(pytest.fail.Exception, match="not within 3 s: an ImageGen actor of the Ray at"):
            busy_image_actor(decoy, log, shared_ray, wait_s=3)
        assert decoy.poll() is None
    finally:
        decoy.kill()
        decoy.wait()


@pytest.mark.slow
@needs_models
def test_killed_worker_is_restarted_and_every_row_written_once(killed_run):
    result, victim_pid = killed_run
    # Gone, or not yet reaped: a zombie, or "dead" (Linux's X state, the moment it is being reaped).
    assert not psutil.pid_exists(victim_pid) or psutil.Process(victim_pid).status() in (
        psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    assert_each_row_once(result, ROWS)
    assert sorted(result.table.column("id").to_pylist()) == list(range(1, ROWS + 1))


@pytest.mark.slow
@needs_models
def test_killed_worker_run_reports_the_restart(killed_run):
    result, _ = killed_run
    assert result.summary["actor_restarts"] >= 1
    assert "note: Ray restarted a model actor" in result.proc.stderr
    assert f"all {ROWS} rows were written once" in result.proc.stderr


@pytest.fixture(scope="module")
def interrupted_run(killed_run, workdir, shared_ray):
    """Ctrl-C (SIGINT) half-way through a run into the killed run's folder."""
    previous, _ = killed_run
    log = workdir / "interrupted.stderr"
    args = repo_data(previous.output, "--no-enhance", "--limit", ROWS)
    run = start_cli(*args, ray_address=shared_ray, log=log, **SLOW_IMAGES)
    try:
        first_part_written(run, log, previous.output)  # one of ROWS images is done, the others still to draw
        run.send_signal(signal.SIGINT)
        return finished(run, log)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


@pytest.mark.slow
@needs_models
def test_interrupt_exits_130_and_keeps_the_previous_output(killed_run, interrupted_run):
    previous, _ = killed_run
    assert interrupted_run.returncode == 130, interrupted_run.stderr[-3000:]
    assert interrupted_run.stdout == ""
    assert (
        interrupted_run.stderr.strip().splitlines()[-1] == f"error: interrupted; {previous.output} was left as it was"
    )
    assert json.loads((previous.output / "summary.json").read_text()) == previous.summary
    assert pq.read_table(previous.output / "parquet").equals(previous.table)
    assert sorted(p.name for p in (previous.output / "images").iterdir()) == previous.png_names
    assert no_partials(previous.output) == []


@pytest.mark.slow
@needs_models
def test_rerun_after_interrupt_is_complete(killed_run, interrupted_run, shared_ray):
    previous, _ = killed_run
    proc = run_cli(
        *repo_data(previous.output, "--no-enhance", "--limit", 12), ray_address=shared_ray, **ONE_IMAGE_ACTOR
    )
    rerun = Run(proc, previous.output)
    assert_each_row_once(rerun, 12)
    assert sorted(rerun.table.column("id").to_pylist()) == list(range(1, 13))
    assert rerun.summary["actor_restarts"] == 0
    assert "note: Ray restarted" not in proc.stderr
    assert no_partials(previous.output) == []


# ---------------------------------------------------------------- out of memory


def _unallocatable_image_size() -> int:
    """An image size whose first tensor (latents, 4 float32 per 8x8 pixels) is 4x RAM + swap.

    With Linux's default overcommit heuristic such a request fails at once, before
    a byte is touched; the run never eats the machine's memory.
    """
    budget = psutil.virtual_memory().total + psutil.swap_memory().total
    side = int(np.sqrt(4 * budget * 4)) + 64
    return side - side % 64


OVERCOMMIT = Path("/proc/sys/vm/overcommit_memory")
refuses_huge_allocations = pytest.mark.skipif(
    OVERCOMMIT.exists() and OVERCOMMIT.read_text().strip() == "1",
    reason="vm.overcommit_memory=1 grants any allocation, so an absurd image would really fill the memory",
)


@pytest.mark.slow
@needs_models
@refuses_huge_allocations
def test_image_stage_out_of_memory_names_the_setting(workdir, shared_ray, killed_run):
    previous, _ = killed_run
    before = (previous.output / "summary.json").read_text()
    size = _unallocatable_image_size()
    proc = run_cli(
        *repo_data(previous.output, "--no-enhance", "--limit", 2),
        ray_address=shared_ray,
        WORKSHOP_IMAGE_SIZE=str(size),
        **ONE_IMAGE_ACTOR,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: StageOutOfMemoryError: ImageGen ran out of memory on a batch of 2 prompts")
    assert "WORKSHOP_IMAGE_BATCH_SIZE" in last and f"WORKSHOP_IMAGE_SIZE (now {size} px)" in last
    assert "can't allocate memory" in last
    assert (previous.output / "summary.json").read_text() == before
    assert no_partials(previous.output) == []


OOM_IN_A_SMALL_ADDRESS_SPACE = """
import os, resource, sys
limit = 8 << 30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import numpy as np
from helpers.errors import StageOutOfMemoryError
from helpers.models.stages import ImageGen
stage = ImageGen()
try:
    stage({"prompt": np.array(["a fox", "an owl"], dtype=object)})
except StageOutOfMemoryError as err:
    print(err)
    sys.exit(0)
sys.exit("no StageOutOfMemoryError")
"""


@pytest.mark.slow
@needs_models
def test_image_stage_out_of_memory_within_an_address_space_limit():
    """The same failure without Ray, bounded by RLIMIT_AS, whatever the overcommit setting."""
    env = cli_env(WORKSHOP_IMAGE_SIZE="32768")  # latents of 2 x 16 GiB > the 8 GiB limit
    proc = subprocess.run(
        [sys.executable, "-c", OOM_IN_A_SMALL_ADDRESS_SPACE],
        check=False, capture_output=True, text=True, timeout=WAIT_S, env=env, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    message = proc.stdout.strip()
    assert message.startswith("ImageGen ran out of memory on a batch of 2 prompts; lower WORKSHOP_IMAGE_BATCH_SIZE")
    assert "WORKSHOP_IMAGE_SIZE (now 32768 px)" in message


def test_out_of_memory_errors_are_recognised_and_others_pass_through():
    """Unit test that injects the errors torch raises (a CUDA OOM cannot happen on this machine)."""
    fix = "lower WORKSHOP_LLM_BATCH_SIZE (now 4)"
    injected = [
        MemoryError(),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.77 GiB total capacity)"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried"),
    ]
    for error in injected:
        with pytest.raises(StageOutOfMemoryError) as caught, models.out_of_memory_names("Enhancer", 4, fix):
            raise error
        assert str(caught.value).startswith(f"Enhancer ran out of memory on a batch of 4 prompts; {fix} (torch said:")
    with pytest.raises(RuntimeError, match="shape mismatch"), models.out_of_memory_names("Enhancer", 4, fix):
        raise RuntimeError("shape mismatch")
    assert pipeline._one_line(StageOutOfMemoryError("ImageGen ran out of memory")).startswith(
        "StageOutOfMemoryError: ImageGen"
    )


# ---------------------------------------------------------------- odd prompts through both models


LONG_OUTFIT = "a very long coat " + "with many pockets, " * 260  # about 5,000 characters
ODD_ANIMALS = ["🦊 red fox", "chouette effraie", '"quoted, with a comma" hare', "狐狸 fox"]


@pytest.fixture(scope="module")
def odd_prompts_run(workdir, shared_ray) -> Run:
    animals = write_csv(
        workdir / "odd_animals.csv",
        "id,animal",
        [f'{i},"{a.replace(chr(34), chr(34) * 2)}"' for i, a in enumerate(ODD_ANIMALS, 1)],
    )
    outfits = write_csv(
        workdir / "odd_outfits.csv",
        "id,outfit",
        ["1,🎩 top hat", f'2,"{LONG_OUTFIT.rstrip(", ")}"', "3,scarf", "4,帽子"],
    )
    output = workdir / "odd"
    proc = run_cli(
        "--animals", animals, "--outfits", outfits, "--output", output,
        ray_address=shared_ray, WORKSHOP_LLM_ACTORS="1", WORKSHOP_MAX_NEW_TOKENS="16", **ONE_IMAGE_ACTOR,
    )  # fmt: skip
    return Run(proc, output)


@pytest.mark.slow
@needs_models
def test_long_and_non_ascii_prompts_go_through_the_llm_and_the_images(odd_prompts_run):
    assert_each_row_once(odd_prompts_run, 4)
    rows = {row["id"]: row for row in odd_prompts_run.table.to_pylist()}
    assert rows[1]["original_prompt"] == "🦊 red fox wearing a 🎩 top hat"
    assert rows[3]["original_prompt"] == '"quoted, with a comma" hare wearing a scarf'
    assert rows[4]["original_prompt"] == "狐狸 fox wearing a 帽子"
    assert len(rows[2]["original_prompt"]) > 4900, "the long prompt is kept whole in the output"
    summary = odd_prompts_run.summary
    assert summary["enhanced"] + summary["kept_original"] == 4
    assert all(row["prompt"].strip() for row in rows.values())


@pytest.mark.slow
@needs_models
def test_stages_cut_a_5000_character_prompt_with_a_notice(monkeypatch, caplog):
    """Both model classes in this process (no Ray): a cut, a log line, an image and a reply."""
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    monkeypatch.setenv("WORKSHOP_STORAGE", str(STORAGE))
    monkeypatch.setenv("WORKSHOP_MAX_NEW_TOKENS", "8")
    long_prompt = "A red fox wearing " + "a hat with a feather, " * 230
    assert len(long_prompt) > 5000
    batch = {"prompt": np.array([long_prompt, "🦊 wearing 帽子"], dtype=object)}
    with caplog.at_level("WARNING", logger="helpers.models.stages"):
        enhanced = models.Enhancer()(dict(batch))
        drawn = models.ImageGen()(dict(batch))
    assert enhanced["original_prompt"].tolist() == batch["prompt"].tolist()
    assert all(isinstance(text, str) and text.strip() for text in enhanced["prompt"])
    assert len(drawn["image"]) == 2 and drawn["image"][0].size[0] > 0
    notices = [r.getMessage() for r in caplog.records if "cut to" in r.getMessage()]
    assert any(n.startswith("Enhancer: 1 prompt(s)") for n in notices), notices
    assert any(n.startswith("ImageGen: 1 prompt(s)") for n in notices), notices
    assert f"cut to {models.MAX_PROMPT_CHARS}" in notices[0]


def test_empty_and_whitespace_prompts_are_rejected_by_the_inputs(tmp_path):
    for rows in (["1,hat", "2,"], ["1,hat", '2,"   "'], ["1,hat", "2,\t"]):
        path = write_csv(tmp_path / "outfits.csv", "id,outfit", rows)
        with pytest.raises(InputError, match=r"line 3 \(row 2\) has an empty 'outfit'"):
            read_table(path, OUTFITS_COLUMNS, "outfits")


# ---------------------------------------------------------------- the lessons' writes, run twice


def test_lesson_writes_replace_on_a_rerun(session, tmp_path):
    """Lessons 03 and 04 write with mode="overwrite"; Ray's default (append) would double the files."""
    import ray

    rows = ray.data.range(6, override_num_blocks=3).map_batches(
        lambda b: {"id": b["id"], "image": np.zeros((len(b["id"]), 4, 4, 3), dtype=np.uint8)}
    )
    twice = {}
    for mode in ("overwrite", "append"):
        parquet, pngs = tmp_path / mode / "parquet", tmp_path / mode / "png"
        for _ in range(2):  # the learner runs the cell again
            rows.write_parquet(str(parquet), mode=mode)
            rows.write_images(str(pngs), column="image", file_format="png", mode=mode)
        twice[mode] = (pq.read_table(parquet).num_rows, len(list(pngs.glob("*.png"))))
    assert twice["overwrite"] == (6, 6)
    assert twice["append"] == (12, 12), "the default mode appends, which is why the lessons say overwrite"


def test_lesson_write_cells_say_overwrite():
    """Every Ray write in a solution passes mode="overwrite", so a re-run replaces its output."""
    import ast
    import json as json_module

    writes = []
    for notebook in sorted((REPO_ROOT / "solutions").glob("*.ipynb")):
        for cell in json_module.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            for node in ast.walk(ast.parse("".join(cell["source"]))):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "").startswith("write_"):
                    mode = next((ast.literal_eval(k.value) for k in node.keywords if k.arg == "mode"), None)
                    writes.append((notebook.stem, node.func.attr, mode))
    assert {stem for stem, _, _ in writes} >= {"03_image_generation", "04_join"}
    assert all(mode == "overwrite" for _, _, mode in writes), writes


# ---------------------------------------------------------------- storage that cannot be written


def _unwritable_places(tmp_path: Path) -> dict[str, Path]:
    """Places even root cannot write (CI runs as root, so chmod would not do)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    return {"under /proc": Path("/proc/workshop-storage"), "under a file": a_file / "storage"}


@pytest.mark.parametrize("where", ["under /proc", "under a file"])
def test_unwritable_storage_root_is_one_line_from_setup(tmp_path, where):
    storage = _unwritable_places(tmp_path)[where]
    proc = subprocess.run(
        [sys.executable, "-m", "helpers.commands.setup_workshop"],
        check=False, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
        env=cli_env(WORKSHOP_STORAGE=str(storage)),
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"setup: storage root {storage} is not writable ("), proc.stderr
    assert "Set WORKSHOP_STORAGE to a folder you can write" in lines[0]


@pytest.mark.parametrize("where", ["under /proc", "under a file"])
def test_an_unwritable_models_folder_is_one_line_from_setup_that_names_the_setting(tmp_path, where):
    models = _unwritable_places(tmp_path)[where] / "models"
    proc = subprocess.run(
        [sys.executable, "-m", "helpers.commands.setup_workshop"],
        check=False, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
        env=cli_env(WORKSHOP_STORAGE=str(tmp_path / "storage"), WORKSHOP_MODELS=str(models)),
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("setup: cannot write "), proc.stderr
    assert lines[0].endswith("set WORKSHOP_STORAGE (data and outputs) or WORKSHOP_MODELS (models) to a folder you "
                             "can write"), lines[0]


def test_only_a_folder_setup_writes_is_blamed_on_the_folder(tmp_path, monkeypatch):
    """A model folder the libraries cannot read (transformers raises OSError for a config that is not JSON) is
    said as they say it, not as a folder to make writable."""
    import errno

    from helpers.commands.setup_workshop import _cannot_write
    from helpers.runtime.settings import load_settings

    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path / "storage"))
    settings = load_settings("cpu")
    assert _cannot_write(OSError(errno.EROFS, "Read-only file system", str(tmp_path)), settings)
    assert _cannot_write(OSError(errno.ENOENT, "No such file or directory", str(tmp_path / "storage")), settings)
    assert not _cannot_write(OSError("It looks like the config file at 'x/config.json' is not a valid JSON file."),
                             settings)
    assert not _cannot_write(OSError(errno.ENOENT, "No such file or directory", "/elsewhere/model.gguf"), settings)


@pytest.mark.parametrize("where", ["under /proc", "under a file"])
def test_unwritable_output_folder_is_one_line_from_the_pipeline(tmp_path, where):
    output = _unwritable_places(tmp_path)[where] / "final"
    animals = write_csv(tmp_path / "animals.csv", "id,animal", ["1,fox"])
    outfits = write_csv(tmp_path / "outfits.csv", "id,outfit", ["1,hat"])
    proc = run_cli("--animals", animals, "--outfits", outfits, "--output", output, "--no-enhance", timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --output {output}: cannot write in "), proc.stderr


# ---------------------------------------------------------------- Ctrl-C in a lesson's write, then run again

INTERRUPTED_WRITE = """
import json, pathlib, sys, time
import pyarrow.parquet as pq
import ray
import helpers

helpers.start(quiet=True)
folder = pathlib.Path(sys.argv[1])
go_on = folder.parent / "go-on"  # made by this driver after the interrupt


def written():  # the files of the folder, and of the write beside it (helpers.runtime.overwrite)
    return list(folder.parent.glob(folder.name + "*/*.parquet"))


def slow(batch):
    time.sleep(0.3)  # a model stage's pace
    # Once three files are written, the interrupted run's other tasks wait here (at most 2 min), so
    # the interrupt lands half-way on a loaded machine too; Ray cancels them while they wait.
    deadline = time.monotonic() + 120
    while len(written()) >= 3 and not go_on.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return batch


def write():  # the lesson's cell: a Ray writer with mode="overwrite"
    ray.data.range(60, override_num_blocks=30).map_batches(slow).write_parquet(str(folder), mode="overwrite")


try:
    write()
    sys.exit("the write finished before the interrupt")
except KeyboardInterrupt:  # what Jupyter's "interrupt kernel" raises
    pass
files_before, beside = len(list(folder.glob("*.parquet"))), len(written())
go_on.touch()
write()  # the learner runs the cell again
time.sleep(3)  # a task the interrupted run still had in flight would have written by now
ids = pq.read_table(folder).column("id").to_pylist()
left = sorted(path.name for path in folder.parent.iterdir() if path.name.startswith(folder.name + "."))
print(json.dumps({"files_before": files_before, "beside": beside, "rows": len(ids), "unique": len(set(ids)),
                  "left": left}), flush=True)
helpers.stop()
"""


@pytest.mark.slow
@needs_models
def test_interrupted_lesson_write_then_rerun_is_complete(tmp_path, shared_ray):
    folder = tmp_path / "03_parquet"
    log = tmp_path / "driver.stderr"
    with log.open("w") as stderr:
        driver = subprocess.Popen(
            [sys.executable, "-c", INTERRUPTED_WRITE, str(folder)],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=cli_env(shared_ray), cwd=REPO_ROOT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT_S
        while len(list(tmp_path.glob("03_parquet*/*.parquet"))) < 3:  # written beside the folder
            assert driver.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the write never started"
            time.sleep(0.05)
        driver.send_signal(signal.SIGINT)
        stdout = driver.communicate(timeout=WAIT_S)[0]
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, log.read_text()[-3000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["files_before"] == 0, "the interrupted first write left files where the lesson reads them"
    assert 3 <= result["beside"] < 30, "interrupted half-way"
    assert result["rows"] == result["unique"] == 60
    assert result["left"] == [], "the re-run removes what the interrupted write left beside the folder"
