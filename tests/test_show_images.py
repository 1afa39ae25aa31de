"""``helpers.show_images`` given what a learner may pass instead of a batch: one line that says what to pass."""

from __future__ import annotations

import pytest

from helpers.errors import HelperCallError
from helpers.show.images import show_images


@pytest.mark.parametrize(("value", "said"), [
    ([{"prompt": "a fox"}] * 3, "not a list of 3 rows (what take() gives): pass ds.take_batch(8)"),
    ("a fox", "show_images takes one batch (a dict of columns, from ds.take_batch(8)), not a str"),
    ({"prompt": ["a fox"]}, "the batch has no 'image' column; its columns are ['prompt']"),
])
def test_what_is_not_a_batch_of_images_is_named_with_what_to_pass(value, said):
    with pytest.raises(HelperCallError) as raised:
        show_images(value)
    assert said in str(raised.value)
    assert len(raised.value._render_traceback_()) == 1, "one line in a notebook, not a traceback"


def test_a_pandas_batch_is_shown_as_a_dict_batch_is(monkeypatch):
    """``take_batch(batch_format="pandas")`` gives a DataFrame: its columns are read as a dict's."""
    import pandas as pd
    from PIL import Image

    from helpers.show import images

    drawn = []
    monkeypatch.setattr(images, "image_grid", lambda pictures, captions, columns: drawn.append(captions) or _Figure())
    show_images(pd.DataFrame({"prompt": ["a fox"], "image": [Image.new("RGB", (4, 4))]}), note=False)
    assert drawn == [["a fox"]]


class _Figure:
    """Stands in for the figure in the test above: nothing is drawn in a test."""

    def suptitle(self, *args, **kwargs):
        pass
