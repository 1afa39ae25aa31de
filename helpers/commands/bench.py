"""Benchmark: the workshop's Ray Data pipeline against the plain loop a user would write.

    python -m helpers.bench --rows 64 [--stages enhance,generate] [--actors K]

Runs the same work three ways, on this machine, with the current profile's
models (the CPU profile's small ones here):

* **naive**: one Python process, a plain loop over batches that calls the same
  model classes in sequence, with torch's default threads (all cores), as a
  script written without Ray would;
* **ray**: the workshop's pipeline (join, expand, Enhancer, ImageGen, PNG) on
  Ray Data actor pools, written to Parquet and PNG files the same way;
* **floor**: each stage's model time per row, measured alone on one unit (one
  core with one torch thread on CPU, one GPU on GPU), times the rows, divided
  by the units the machine has: the time no pipeline can beat.

Model loading counts in both runs; starting Ray does not (``ray_start_seconds``
says what it cost). The last stdout line is one JSON object: ``rows``,
``naive_seconds``, ``ray_seconds``, ``floor_seconds``, ``speedup`` (naive/ray),
``efficiency`` (floor/ray), ``peak_rss_gb`` (this process and every process it
started, Ray's included), ``device`` and the settings that produced them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Self

import numpy as np
import pyarrow as pa

from helpers.runtime.settings import REPO_ROOT, load_settings

STAGES = ("enhance", "generate")
DATA = REPO_ROOT / "data"


# ---------------------------------------------------------------- inputs


def bench_inputs(rows: int) -> tuple[pa.Table, pa.Table]:
    """``rows`` animals and their outfits: the workshop's data, repeated with new ids past 120."""
    from helpers.pipeline.inputs import ANIMALS_COLUMNS, OUTFITS_COLUMNS, read_table

    animals = read_table(DATA / "animals.csv", ANIMALS_COLUMNS, "animals").select(list(ANIMALS_COLUMNS))
    outfits = read_table(DATA / "outfits.csv", OUTFITS_COLUMNS, "outfits").select(list(OUTFITS_COLUMNS))
    animals, outfits = animals.sort_by("id"), outfits.sort_by("id")
    picks = np.arange(rows) % animals.num_rows
    ids = pa.array(np.arange(rows, dtype=np.int64))
    return (
        pa.table({"id": ids, "animal": animals.column("animal").take(picks)}),
        pa.table({"id": ids, "outfit": outfits.column("outfit").take(picks)}),
    )


# ---------------------------------------------------------------- memory


class PeakMemory:
    """Samples the memory of this process and all its descendants (Ray's too).

    Counts each process's proportional set size (PSS): pages shared between
    processes, such as torch's libraries in every Ray worker, are divided among
    them instead of counted once per process, as a sum of RSS would. Where PSS
    is not available (macOS), RSS is used and the figure is an upper bound.
    """

    def __init__(self, interval: float = 0.5):
        import psutil

        self._me = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak_bytes = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = 0
        for proc in [self._me, *self._me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                total += getattr(info, "pss", info.rss)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._sample())
            self._stop.wait(self._interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- the three runs


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Models built inside use ``count`` torch threads (None: torch's default, all cores)."""
    import torch

    saved_env = os.environ.get("WORKSHOP_TORCH_THREADS")
    saved_threads = torch.get_num_threads()
    os.environ["WORKSHOP_TORCH_THREADS"] = str(count or os.cpu_count() or 1)
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop("WORKSHOP_TORCH_THREADS", None)
        else:
            os.environ["WORKSHOP_TORCH_THREADS"] = saved_env
        torch.set_num_threads(saved_threads)


def _stage_objects(stages: tuple[str, ...]):
    from helpers.models.stages import Enhancer, ImageGen

    return (Enhancer() if "enhance" in stages else None), (ImageGen() if "generate" in stages else None)


def naive_run(animals: pa.Table, outfits: pa.Table, stages: tuple[str, ...], folder: Path) -> float:
    """The plain loop: load the models, then batch by batch through each stage, then write."""
    from helpers.pipeline.output import mark_partial
    from helpers.pipeline.stages import encode_png, expand_prompt, skip_enhancement
    from helpers.pipeline.writer import write_part

    settings = load_settings()
    began = time.perf_counter()
    with torch_threads(None):
        enhancer, image_gen = _stage_objects(stages)
        joined = animals.join(outfits, "id").sort_by("id")

        def batches():
            size = settings.llm.batch_size if enhancer else settings.image.batch_size
            for start in range(0, joined.num_rows, size):
                batch = {name: np.array(col.to_pylist(), dtype=object)
                         for name, col in zip(joined.column_names, joined.slice(start, size).columns)}
                batch = expand_prompt(batch)
                batch = enhancer(batch) if enhancer else skip_enhancement(batch)
                if image_gen:
                    batch = encode_png(image_gen(batch))
                yield batch

        mark_partial(folder)
        for batch in batches():  # the writer of the Ray run's image actors, here in the loop
            write_part(batch, folder, images=image_gen is not None)
    return time.perf_counter() - began


def stage_seconds_per_row(stages: tuple[str, ...], repeats: int = 2) -> dict[str, float]:
    """Each stage's model time per row on one unit, at the stage's batch size, after a warm-up."""
    from helpers.pipeline.stages import expand_prompt

    settings = load_settings()
    animals, outfits = bench_inputs(max(settings.llm.batch_size, settings.image.batch_size))
    base = expand_prompt({"animal": np.array(animals.column("animal").to_pylist(), dtype=object),
                          "outfit": np.array(outfits.column("outfit").to_pylist(), dtype=object)})
    with torch_threads(1):
        enhancer, image_gen = _stage_objects(stages)
        per_row = {}
        for name, stage, size in (("enhance", enhancer, settings.llm.batch_size),
                                  ("generate", image_gen, settings.image.batch_size)):
            if stage is None:
                continue
            batch = {"prompt": base["prompt"][:size].copy()}
            stage(dict(batch))  # warm-up: first calls pay one-time costs
            best = min(_timed(stage, dict(batch)) for _ in range(repeats))
            per_row[name] = best / size
    return per_row


def _timed(stage, batch: dict) -> float:
    began = time.perf_counter()
    stage(batch)
    return time.perf_counter() - began


def parallel_units(device: str, gpus: float) -> int:
    """What runs model work side by side: GPUs on a GPU machine, cores on a CPU one."""
    return max(1, int(gpus)) if device != "cpu" else (os.cpu_count() or 1)


def ray_run(animals: pa.Table, outfits: pa.Table, stages: tuple[str, ...], folder: Path,
            rows_per_block: int | None) -> tuple[float, float]:
    """The workshop's pipeline (:func:`helpers.pipeline.stages.build_pipeline`) on Ray Data.

    Returns (Ray start seconds, pipeline seconds). Blocks hold ``rows_per_block``
    rows (default: one batch of the first model stage), so every actor gets
    work from the first seconds and the stages overlap.
    """
    import ray

    import helpers
    from helpers.pipeline.output import mark_partial
    from helpers.pipeline.stages import build_pipeline, shared_gpu_settings
    from helpers.pipeline.writer import collect_parts, part_counts

    began = time.perf_counter()
    session = helpers.start(quiet=True)
    started = time.perf_counter()
    enhance, generate = "enhance" in stages, "generate" in stages
    settings = session.settings
    if enhance and generate:
        settings = shared_gpu_settings(settings)
    if rows_per_block is None:
        rows_per_block = settings.llm.batch_size if enhance else settings.image.batch_size
    ds = build_pipeline(ray.data.from_arrow(animals), ray.data.from_arrow(outfits), settings, enhance=enhance,
                        generate=generate, rows_per_block=rows_per_block, write_to=mark_partial(folder))
    rows = part_counts(collect_parts(ds.iter_batches(batch_format="pyarrow", batch_size=None)))["rows"]
    if rows != animals.num_rows:
        raise RuntimeError(f"the Ray run wrote {rows} rows for {animals.num_rows} inputs")
    return started - began, time.perf_counter() - started


def machine() -> dict:
    """What the figures came from: cores, memory, CPU model."""
    import platform

    import psutil

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1), "cpu": model}


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m helpers.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64, help="rows through the pipeline (default 64)")
    parser.add_argument("--stages", default=",".join(STAGES), help="enhance, generate or both (default)")
    parser.add_argument("--actors", type=int, help="actors per model stage (default: the profile's)")
    parser.add_argument("--rows-per-block", type=int, help="rows per block in the Ray run (default: one model batch)")
    args = parser.parse_args(argv)
    args.stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    unknown = set(args.stages) - set(STAGES)
    if unknown or not args.stages or args.rows < 1 or (args.actors is not None and args.actors < 1):
        parser.error(f"--stages takes {', '.join(STAGES)}; --rows and --actors take whole numbers of 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.actors:
        os.environ["WORKSHOP_IMAGE_ACTORS"] = os.environ["WORKSHOP_LLM_ACTORS"] = str(args.actors)
    settings = load_settings()
    animals, outfits = bench_inputs(args.rows)
    device = device_name()
    load_before = os.getloadavg()  # what else ran on the machine before this run added its own load

    with PeakMemory() as memory, tempfile.TemporaryDirectory(prefix="workshop-bench-") as tmp:
        per_row = stage_seconds_per_row(args.stages)
        naive_seconds = naive_run(animals, outfits, args.stages, Path(tmp) / "naive")
        from helpers.pipeline.command import stdout_to_stderr

        with stdout_to_stderr():  # Ray's own output: stdout keeps the JSON line alone
            ray_start_seconds, ray_seconds = ray_run(animals, outfits, args.stages, Path(tmp) / "ray",
                                                     args.rows_per_block)
            import ray

            gpus = ray.cluster_resources().get("GPU", 0) if device != "cpu" else 0
            from helpers.runtime.cluster import stop

            stop()

    units = parallel_units(device, gpus)
    floor_seconds = args.rows * sum(per_row.values()) / units
    result = {
        "rows": args.rows,
        "stages": list(args.stages),
        "naive_seconds": round(naive_seconds, 2),
        "ray_seconds": round(ray_seconds, 2),
        "floor_seconds": round(floor_seconds, 2),
        "speedup": round(naive_seconds / ray_seconds, 3),
        "efficiency": round(floor_seconds / ray_seconds, 3),
        "ray_start_seconds": round(ray_start_seconds, 2),
        "seconds_per_row_one_unit": {name: round(value, 4) for name, value in per_row.items()},
        "parallel_units": units,
        "peak_rss_gb": round(memory.peak_bytes / 2**30, 2),
        "device": device,
        "profile": settings.profile,
        "actors": {"llm": settings.llm.actors, "image": settings.image.actors},
        "batch_size": {"llm": settings.llm.batch_size, "image": settings.image.batch_size},
        "torch_threads_per_actor": settings.torch_threads,
        "rows_per_block": args.rows_per_block,
        "machine": machine(),
        "load_avg": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "date": date.today().isoformat(),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
