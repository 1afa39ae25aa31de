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
