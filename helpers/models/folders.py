"""Check a model folder before anything loads it: what is missing, and how its weights are stored.

Loading a half-copied or half-built folder fails deep inside diffusers or
transformers, after seconds of imports, with a message about a file the learner
never heard of. These checks read only file names, so they run in milliseconds
wherever a model is about to load: in the lessons' actors, the readiness check
of ``helpers.start()``, and the probe on a cluster's GPU nodes. Building the
folders is :mod:`helpers.models.build`'s.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

from helpers.errors import ModelFolderError
from helpers.runtime.settings import STAGED_IMAGE_MODEL, STAGED_LLM_MODEL

MARKER_FILE = "WORKSHOP_MODEL.json"
REBUILD_HINT = "rebuild with `python -m helpers.models.build --force`"
#: The real models' staged folders: downloaded (``./setup.sh --download``), not built.
DOWNLOADED_FOLDERS = (STAGED_IMAGE_MODEL, STAGED_LLM_MODEL)
DOWNLOAD_HINT = "run `./setup.sh --download` again (it resumes the download)"


def _fix_hint(path: Path) -> str:
    """How to make ``path`` complete: download the real models again, or rebuild the CPU ones."""
    if path.name in DOWNLOADED_FOLDERS:
        return DOWNLOAD_HINT
    return f"{REBUILD_HINT} (or `./setup.sh --download` for the real models)"


def _weights_missing(folder: Path, stem: str) -> list[str]:
    """Missing weight files of one component, single file or sharded.

    Accepts the variants real downloads use (``model.fp16.safetensors``) as well
    as what ``save_pretrained`` writes, and follows a shard index to its shards.
    """
    indexes = sorted(folder.glob(f"{stem}*.safetensors.index.json"))
    if indexes:
        try:
            shards = set(json.loads(indexes[0].read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError):
            return [f"{indexes[0].name} (unreadable)"]
        return sorted(shard for shard in shards if not (folder / shard).is_file())
    if any(folder.glob(f"{stem}*.safetensors")) or any(folder.glob(f"{stem}*.bin")):
        return []
    return [f"{stem}.safetensors"]


def _tokenizer_missing(folder: Path) -> list[str]:
    """Missing tokenizer files: ``tokenizer.json`` or the older vocab + merges pair."""
    missing = [] if (folder / "tokenizer_config.json").is_file() else ["tokenizer_config.json"]
    has_fast = (folder / "tokenizer.json").is_file()
    has_bpe_files = (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    if not (has_fast or has_bpe_files):
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    return missing


#: The weighted components of an SDXL pipeline folder, and the stem of each one's weights file.
IMAGE_WEIGHTS = {
    "unet": "diffusion_pytorch_model",
    "vae": "diffusion_pytorch_model",
    "text_encoder": "model",
    "text_encoder_2": "model",
}


def _weighted_missing(folder: Path, weights: str) -> list[str]:
    return _config_missing(folder) + _weights_missing(folder, weights)


def _image_missing(path: Path) -> list[str]:
    missing = [] if (path / "model_index.json").is_file() else ["model_index.json"]
    components: dict[str, Callable[[Path], list[str]]] = {
        **{name: functools.partial(_weighted_missing, weights=weights) for name, weights in IMAGE_WEIGHTS.items()},
        "tokenizer": _tokenizer_missing,
        "tokenizer_2": _tokenizer_missing,
        "scheduler": lambda d: [] if (d / "scheduler_config.json").is_file() else ["scheduler_config.json"],
    }
    for name, check in components.items():
        folder = path / name
        if not folder.is_dir():
            missing.append(f"{name}/")
        else:
            missing.extend(f"{name}/{item}" for item in check(folder))
    return missing


def _config_missing(folder: Path) -> list[str]:
    return [] if (folder / "config.json").is_file() else ["config.json"]


def _llm_missing(path: Path) -> list[str]:
    return _config_missing(path) + _weights_missing(path, "model") + _tokenizer_missing(path)


def missing_model_files(path: Path, kind: str) -> list[str]:
    """Required files or subfolders absent from a model folder, relative to it.

    ``kind`` is ``"image"`` (a diffusers SDXL folder) or ``"llm"`` (a transformers
    causal LM folder). An empty list means the folder looks complete; it does not
    prove the weights are good, only that loading will not stop at a missing file.
    """
    checks = {"image": _image_missing, "llm": _llm_missing}
    if kind not in checks:
        raise ValueError(f"kind must be one of {sorted(checks)}, got {kind!r}")
    path = Path(path)
    if not path.is_dir():
        return [f"{path.name}/ (the folder itself)"]
    return checks[kind](path)


def ensure_model_folder(path: Path, kind: str) -> Path:
    """Return ``path`` if it holds a complete model of ``kind``, else raise ``ModelFolderError``."""
    path = Path(path)
    if not path.is_dir():
        setup = "`./setup.sh --download` downloads" if path.name in DOWNLOADED_FOLDERS else "`./setup.sh` builds"
        raise ModelFolderError(
            f"model folder {path} does not exist; {setup} the workshop's models "
            f"(or point WORKSHOP_{kind.upper()}_MODEL at a model folder)"
        )
    missing = missing_model_files(path, kind)
    if missing:
        raise ModelFolderError(f"model folder {path} is incomplete: missing {', '.join(missing)}; {_fix_hint(path)}")
    return path


def image_weights_variant(path: Path) -> str | None:
    """``"fp16"`` when an image folder holds only fp16 variant weights, as ``--download`` fetches.

    diffusers needs ``variant="fp16"`` to load such a folder and refuses it without.
    """
    unet = Path(path) / "unet"
    if (unet / "diffusion_pytorch_model.safetensors").is_file():
        return None
    return "fp16" if (unet / "diffusion_pytorch_model.fp16.safetensors").is_file() else None


def read_marker(path: Path) -> dict | None:
    """The ``WORKSHOP_MODEL.json`` of a folder, or None if it has none or it is unreadable."""
    try:
        return json.loads((Path(path) / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None
