"""The pipeline's stages (:mod:`helpers.pipeline.stages`), without Ray."""

from __future__ import annotations

import numpy as np

from helpers.pipeline import stages


def test_stages_without_ray():
    from PIL import Image

    batch = {"animal": np.array(["A fox"], dtype=object), "outfit": np.array(["red hat"], dtype=object)}
    batch = stages.skip_enhancement(stages.expand_prompt(batch))
    assert batch["prompt"].tolist() == ["A fox wearing a red hat"] == batch["original_prompt"].tolist()
    assert batch["enhanced"].tolist() == [False]
    batch["image"] = np.empty(1, dtype=object)
    batch["image"][0] = Image.new("RGB", (4, 4))
    encoded = stages.encode_png(batch)["image"]
    assert encoded.dtype == object and encoded[0].startswith(b"\x89PNG")
