"""What the notebooks show: image grids with their prompts, and code to read.

Sized for a projector: large captions, wrapped prompts, a few images per row.
On the CPU profile every grid says that the pictures come from an untrained
model, so nobody mistakes noise for a bug.
"""

from __future__ import annotations

import inspect
import io
import textwrap
from collections.abc import Mapping

import numpy as np

from helpers.errors import HelperCallError

CPU_NOTE = (
    "CPU profile: these pictures come from a tiny untrained model, so they are noise. "
    "On GPUs the same code runs sdxl-turbo."
)


def as_pil(value):
    """A PIL image from a PIL image, a uint8 array or PNG/JPEG bytes."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, (bytes, bytearray)):
        return Image.open(io.BytesIO(value))
    array = np.asarray(value)
    if array.dtype != np.uint8:
        raise TypeError(f"expected a PIL image, PNG bytes or a uint8 array, got an array of {array.dtype}")
    return Image.fromarray(array)


def image_grid(images, captions, columns: int = 4, caption_width: int = 28):
    """A matplotlib figure with one image per cell and its caption underneath."""
    import matplotlib.pyplot as plt

    count = len(images)
    columns = max(1, min(columns, count))
    rows = (count + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(as_pil(image))
        ax.set_title(textwrap.fill(str(caption), caption_width), fontsize=11, y=-0.02, va="top")
    fig.tight_layout()
    return fig


def _not_a_batch(value) -> str:
    """What to pass instead of ``value``: show_images takes one batch, a dict of columns."""
    from helpers.labs.shapes import is_dataset

    if isinstance(value, list):
        return (f"show_images takes one batch (a dict of columns), not a list of {len(value)} rows "
                "(what take() gives): pass ds.take_batch(8)")
    if is_dataset(value):
        return "show_images takes one batch (a dict of columns), not a Dataset: pass ds.take_batch(8)"
    return f"show_images takes one batch (a dict of columns, from ds.take_batch(8)), not a {type(value).__name__}"


def show_images(batch: dict, prompt_column: str = "prompt", image_column: str = "image", max_images: int = 8,
                columns: int = 4, note: bool | None = None) -> None:
    """Show the images of a batch (from ``take_batch``) as a captioned grid.

    Returns nothing: as a cell's last line, a returned figure would be drawn a
    second time by Jupyter. Use :func:`image_grid` to get the figure itself.
    """
    import matplotlib.pyplot as plt

    from helpers.labs.shapes import batch_columns
    from helpers.runtime.settings import load_settings

    batch = batch_columns(batch)  # a pandas or pyarrow batch (batch_format=) as a dict of columns
    if not isinstance(batch, Mapping):
        raise HelperCallError(_not_a_batch(batch))
    if image_column not in batch:
        raise HelperCallError(f"the batch has no {image_column!r} column; its columns are {sorted(batch)}")
    images = list(batch[image_column])[:max_images]
    captions = list(batch.get(prompt_column, [""] * len(images)))[:max_images]
    if not images:
        print("no images in this batch")
        return
    fig = image_grid(images, captions, columns=columns)
    if note is None:
        note = load_settings().uses_small_models
    if note:
        fig.suptitle(CPU_NOTE, fontsize=12, color="dimgray")
        fig.tight_layout()
    plt.show()


def show_source(obj) -> None:
    """Show the source code of a class or function, highlighted, to read in the lesson."""
    source = textwrap.dedent(inspect.getsource(obj))
    try:
        from IPython.display import Markdown, display

        display(Markdown(f"```python\n{source}\n```"))
    except ImportError:
        print(source)
