"""Lab of lesson 04 (join): write the dressed animals as PNG files, one per joined row.

All declared: the folder must hold as many PNG files as the join of the CSV
files has rows, nothing else, and each must open as a PNG with PIL alone, as
any program that gets the files would open it.
"""

from __future__ import annotations

from pathlib import Path

from helpers.labs.data import joined_row_count
from helpers.labs.framework import Lab, register
from helpers.labs.shapes import WrittenFiles


def _png_problem(file: Path) -> str | None:
    """Why ``file`` is not a PNG image, or None when it is one."""
    from PIL import Image

    try:
        with Image.open(file) as image:
            image.load()
            kind = image.format
    except Exception as exc:  # noqa: BLE001 - the learner's file: whatever PIL raises, it does not decode
        return f"`{file.name}` does not decode as an image ({type(exc).__name__})."
    if kind != "PNG":
        return f'`{file.name}` holds {kind} data, not PNG; write with `file_format="png"`.'
    return None


@register
class PngFilesLab(Lab):
    name = "04_png"
    title = "Write the dressed animals as PNG files"
    hints = (
        (
            "A Dataset has a writer for images: `write_images(path, column=..., file_format=...)` writes one "
            "file per row. Call it on the pipeline that generates the images, `dressed_animals`."
        ),
        (
            "`write_images` wants each image as a NumPy array of `uint8` (height x width x 3), but `ImageGen` "
            "returns PIL images. Add a small function with `map_batches` that converts them: "
            "`np.array(pil_image)` converts one."
        ),
        (
            "Writers add files next to those of an earlier run. Pass `mode=\"overwrite\"` so that running the "
            "cell again replaces the folder's contents; see `lab.solution()` for the whole cell."
        ),
    )
    correct_message = "One PNG per joined row, readable by any image viewer, and a re-run replaces them."
    folder = WrittenFiles(
        suffix=".png",
        files="PNG files",
        folder_name="04_png",
        writer="`write_images`",
        if_dataset="`{name}` is a Dataset; pass the path of the folder you wrote the images to.",
        if_none='write them with `file_format="png"`',
        others=(
            "besides {found} PNG files, {path} holds {count} other files (e.g. `{example}`): write into a folder "
            'of its own, or with `mode="overwrite"` so it holds only this run\'s images.'
        ),
        count=joined_row_count,
        too_many=(
            "{path} holds {found} PNG files for {expected} joined rows: files of an earlier run are still there. "
            'Write with `mode="overwrite"` so that a re-run replaces them.'
        ),
        too_few=(
            "{path} holds {found} PNG files, but the join gives {expected} rows; write the whole dataset, "
            "not a batch taken from it, and give each row a file name of its own (files of the same name "
            "replace each other)."
        ),
        unreadable=_png_problem,
    )
