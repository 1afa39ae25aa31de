"""Ray's log lines about what the lessons do on purpose stay out of the notebook."""

from __future__ import annotations

import io
import os

import pytest

from helpers.runtime.progress import KNOWN_NOISE, hide_known_noise, without_noise
from tests.kernels import workshop_kernel

NOISE = (
    "[2026-11-24 12:01:13,084 E 19877 19877] core_worker.cc:2465: Actor with class name: 'MapWorker(MapBatches(P))'"
    f" and ID: 'a7e9' {KNOWN_NOISE[0]}. If the arguments in the object store go out of scope ...\n"
)


def test_only_the_noise_lines_are_dropped():
    assert without_noise("before\n" + NOISE + "after\n") == "before\nafter\n"
    assert without_noise("a warning the learner needs\n") == "a warning the learner needs\n"
    assert without_noise(NOISE) == ""


def test_a_stream_keeps_everything_but_the_noise_and_is_wrapped_once():
    stream = io.StringIO()
    hide_known_noise(stream)
    hide_known_noise(stream)  # helpers.start() may run again in the same kernel
    stream.write("Ray Data: ReadCSV -> MapBatches(ImageGen)\n")
    stream.write(NOISE)
    stream.write("UserWarning: something to read\n" + NOISE)
    assert stream.getvalue() == "Ray Data: ReadCSV -> MapBatches(ImageGen)\nUserWarning: something to read\n"


# ---------------------------------------------------------------- Ray Data's pickled-objects warning

PICKLED_WARNING = "falling back to serialize as pickled python objects"

DRAW = '''
import sys

import ray
from PIL import Image

import helpers
from helpers.models.stages import object_column

session = helpers.start(quiet=True)


class Draw:
    """An image stage in small: PIL images in the batch, as ImageGen returns them."""

    def __init__(self, run):
        self.run, self.calls = run, 0

    def __call__(self, batch):
        self.calls += 1
        print(f"{self.run} batch {self.calls}", file=sys.stderr, flush=True)
        batch["image"] = object_column([Image.new("RGB", (4, 4)) for _ in batch["id"]])
        return batch


def draw(run):
    """Two batches through one actor: its second batch starts after Ray converted its first one."""
    pool = ray.data.ActorPoolStrategy(size=1)
    ray.data.range(4, override_num_blocks=2).map_batches(
        Draw, fn_constructor_kwargs={"run": run}, batch_size=2, num_gpus=0, compute=pool
    ).materialize()
'''


def _stderr_until(client, marker: str) -> str:
    """The kernel's output streams up to the line ``marker`` (Ray forwards a worker's lines in order)."""
    text = ""
    while marker not in text:
        message = client.get_iopub_msg(timeout=120)
        if message["msg_type"] == "stream":
            text += message["content"]["text"]
    return text


@pytest.mark.notebooks
def test_the_pickled_objects_warning_is_not_repeated_in_the_lessons(tmp_path):
    """Lesson 03 explains Ray's pickles; a lesson's stage of PIL images shows no warning about them.

    The same stage with Ray's own default (the setting unset) shows it, in the
    same kernel, before its actor's second batch: so its absence is no accident of timing.
    """
    env = {**os.environ, "WORKSHOP_RAY": "process", "WORKSHOP_PROFILE": "cpu", "WORKSHOP_RAY_DIR": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    with workshop_kernel(env) as (_, client):
        def run(code):
            reply = client.execute(code, reply=True, timeout=300)["content"]
            assert reply["status"] == "ok", reply

        run(DRAW)
        run('draw("lesson")')
        assert PICKLED_WARNING not in _stderr_until(client, "lesson batch 2")
        run('ray.data.DataContext.get_current().enable_fallback_to_arrow_object_ext_type = None\ndraw("default")')
        assert PICKLED_WARNING in _stderr_until(client, "default batch 2")
