"""``python -m helpers.bench pipeline``: the pipeline command's driver memory as the rows grow.

    python -m helpers.bench pipeline [--rows 200,2000] [--image-size 256]

On a cluster with many GPUs the driver must not be the place every picture
passes through: its memory should not grow with the rows. This runs
``python -m helpers.pipeline --no-enhance`` once per row count, on inputs of
that many rows (the workshop's animals and outfits repeated with new ids, as
the benchmark's), each run starting its own local Ray, and reads the driver's
peak resident memory as the kernel counted it (``ru_maxrss`` of the command's
own process when it ends; Ray's other processes are not in it). The last
stdout line is one JSON object: per run the rows, the exit status, the
seconds and ``driver_peak_mb``; then ``growth`` (the largest run's peak over
the smallest's, minus one), the machine and its load average before the runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from helpers.runtime.settings import REPO_ROOT

#: Runs the pipeline command in this process and then writes the process's peak RSS to argv[1].
#: ``ru_maxrss`` is KiB on Linux, bytes on macOS.
DRIVER = """
import json, resource, runpy, sys
peak_file = sys.argv.pop(1)
code = 0
try:
    runpy.run_module("helpers.pipeline", run_name="__main__", alter_sys=True)
except SystemExit as done:
    code = done.code
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(peak_file, "w") as out:
    json.dump({"peak_bytes": maxrss if sys.platform == "darwin" else maxrss * 1024}, out)
sys.exit(code)
"""
RUN_TIMEOUT_S = 1800


def write_inputs(rows: int, folder: Path) -> tuple[Path, Path]:
    """``animals.csv`` and ``outfits.csv`` with ``rows`` ids each (:func:`helpers.commands.bench.bench_inputs`)."""
    from helpers.commands.bench import bench_inputs

    paths = []
    for table, column in zip(bench_inputs(rows), ("animal", "outfit")):
        path = folder / f"{column}s.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", column])
            writer.writerows(zip(table.column("id").to_pylist(), table.column(column).to_pylist()))
        paths.append(path)
    return paths[0], paths[1]


def measure(rows: int, image_size: int, folder: Path) -> dict:
    """One run of the command on ``rows`` rows: exit status, seconds, the driver's peak memory."""
    animals, outfits = write_inputs(rows, folder)
    peak_file = folder / "peak.json"
    env = {**os.environ, "WORKSHOP_IMAGE_SIZE": str(image_size)}
    env.pop("RAY_ADDRESS", None)  # a Ray of the command's own, as on a laptop
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(peak_file), "--animals", str(animals), "--outfits", str(outfits),
         "--output", str(folder / "output"), "--no-enhance"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
    peak = json.loads(peak_file.read_text())["peak_bytes"] if peak_file.is_file() else None
    return {"rows": rows, "exit": done.returncode, "seconds": round(seconds, 1),
            "driver_peak_mb": round(peak / 2**20, 1) if peak else None}


def main(argv: list[str] | None = None) -> int:
    from helpers.commands.bench import machine

    parser = argparse.ArgumentParser(prog="python -m helpers.bench pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="200,2000", help="row counts, comma-separated (default 200,2000)")
    parser.add_argument("--image-size", type=int, default=256, help="WORKSHOP_IMAGE_SIZE for the runs (default 256)")
    args = parser.parse_args(argv)
    try:
        counts = [int(text) for text in args.rows.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1 or args.image_size < 8:
        parser.error("--rows takes whole numbers of 1 or more, comma-separated; --image-size 8 or more")

    load_before = os.getloadavg()
    runs = []
    for rows in counts:
        with tempfile.TemporaryDirectory(prefix="workshop-pipeline-bench-") as tmp:
            runs.append(measure(rows, args.image_size, Path(tmp)))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    peaks = [run["driver_peak_mb"] for run in runs]
    growth = round(peaks[-1] / peaks[0] - 1, 3) if None not in peaks else None
    print(json.dumps({
        "command": "python -m helpers.pipeline --no-enhance",
        "image_size": args.image_size,
        "runs": runs,
        "growth": growth,
        "machine": machine(),
        "load_avg": [round(x, 2) for x in load_before],
        "date": date.today().isoformat(),
    }), flush=True)
    return 0 if all(run["exit"] == 0 for run in runs) else 1
