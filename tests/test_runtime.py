"""Ray start, the fail-fast guard and both model stages, for real on this machine."""

from __future__ import annotations

import numpy as np
import pytest
import ray
from PIL import Image

import helpers
from helpers.runtime.resources import ResourceMismatchError
from tests.conftest import deadline


def _passthrough_class():
    """A stateful stage with no model: what matters here is scheduling.

    Defined in a function so Ray pickles it by value; workers cannot import
    this test module.
    """

    class Passthrough:
        def __call__(self, batch):
            return batch

    return Passthrough


Passthrough = _passthrough_class()


def test_start_declares_lesson_resources_and_can_be_called_again(session):
    assert session.resources["GPU"] == 2  # logical GPUs on this CPU machine
    assert session.resources["CPU"] >= 8
    assert helpers.start(quiet=True) is session


def test_workers_get_the_workshop_environment(session):
    @ray.remote
    def read_marker():
        import os

        return os.environ.get("WORKSHOP_TEST_MARKER")

    assert ray.get(read_marker.remote(), timeout=60) == "forwarded"


def test_gpu_actors_do_not_starve_reads_on_two_cores(session, tmp_path):
    # The measured deadlock: read_csv -> two actors with num_gpus=0.4 on 2 cores.
    csv = tmp_path / "rows.csv"
    csv.write_text("id,animal\n" + "".join(f"{i},cat {i}\n" for i in range(20)))
    ds = ray.data.read_csv(str(csv)).map_batches(
        Passthrough, num_gpus=0.4, compute=ray.data.ActorPoolStrategy(size=2), batch_size=2
    )
    with deadline(120, "read_csv -> GPU actor pool"):
        batch = ds.take_batch(3)
    assert list(batch["id"]) == [0, 1, 2]


def test_unsatisfiable_gpu_request_fails_fast_with_the_fix(session):
    ds = ray.data.range(10).map_batches(
        Passthrough, num_gpus=1, compute=ray.data.ActorPoolStrategy(size=3), batch_size=2
    )
    with deadline(60, "the resource check"), pytest.raises(ResourceMismatchError) as err:
        ds.take_batch(2)
    message = str(err.value)
    assert "3 GPUs" in message and "2 GPUs" in message and "Fix:" in message
    # The actors that did fit were released: a valid run still gets its GPUs.
    with deadline(120, "a valid run after a rejected one"):
        ok = ray.data.range(4).map_batches(
            Passthrough, num_gpus=1, compute=ray.data.ActorPoolStrategy(size=2), batch_size=2
        )
        assert ok.count() == 4


@pytest.mark.slow
def test_image_and_llm_stages_through_map_batches(session):
    prompts = ["A photo of a red fox wearing a yellow raincoat", "A watercolor painting of a koala wearing a scarf"]
    ds = ray.data.from_items([{"id": i, "prompt": p} for i, p in enumerate(prompts)])
    enhanced = ds.map_batches(
        helpers.Enhancer,
        batch_size=2,
        num_gpus=session.llm.num_gpus,
        compute=ray.data.ActorPoolStrategy(size=1),
    )
    images = enhanced.map_batches(
        helpers.ImageGen,
        batch_size=2,
        num_gpus=0.4,
        compute=ray.data.ActorPoolStrategy(size=1),
    )
    with deadline(240, "Enhancer -> ImageGen"):
        batch = images.take_batch(2)
    assert set(batch) >= {"id", "prompt", "original_prompt", "enhanced", "image"}
    assert list(batch["original_prompt"]) == prompts
    for text, before in zip(batch["prompt"], prompts):
        assert isinstance(text, str) and text.strip()
        assert text != before
    assert len(batch["image"]) == len(prompts)
    size = session.settings.image_size
    for image in batch["image"]:
        assert isinstance(image, Image.Image)
        assert image.size == (size, size)
        assert np.asarray(image).dtype == np.uint8
