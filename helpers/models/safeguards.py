"""What keeps a model stage's batch from failing in a way a learner cannot act on.

Two things go wrong with real inputs and real machines: a prompt of thousands
of characters (cut here, with a notice in the worker log), and a batch too
big for the memory (turned into an error that names the settings to lower).
"""

from __future__ import annotations

import contextlib
import logging

from helpers.errors import StageOutOfMemoryError
from helpers.runtime.settings import Settings

#: Longest prompt (characters) handed to a model; longer ones are cut with a notice.
MAX_PROMPT_CHARS = 1000
#: How torch words a failed allocation: CUDA ("CUDA out of memory") and the CPU allocator.
_OUT_OF_MEMORY_WORDS = ("out of memory", "can't allocate memory")

log = logging.getLogger(__name__)


def cut_long_prompts(prompts, stage: str, limit: int = MAX_PROMPT_CHARS) -> list[str]:
    """The prompts as strings, each cut to ``limit`` characters, with a notice in the worker log.

    The image model's text encoders read 77 tokens and the tokenizer cuts the
    rest; cutting the characters first keeps a 5,000-character prompt from being
    tokenized whole. The LLM would read it all, and spend its memory on it.
    """
    texts = [str(p) for p in prompts]
    long = [len(t) for t in texts if len(t) > limit]
    if long:
        log.warning("%s: %d prompt(s) of up to %d characters cut to %d", stage, len(long), max(long), limit)
    return [t[:limit] for t in texts]


def count_token_cuts(pipe, prompts, limit: int = MAX_PROMPT_CHARS) -> int:
    """How many ``prompts`` are longer than the image model's text encoder reads (77 tokens for CLIP).

    The pipeline's tokenizer drops the tokens past ``model_max_length`` and the
    image shows only the beginning of such a prompt: an enhanced prompt often
    runs past it. Counted as the pipeline tokenizes them (cut to ``limit``
    characters first, as :func:`cut_long_prompts` does).
    """
    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is None or len(prompts) == 0:
        return 0
    texts = [str(p)[:limit] for p in prompts]
    lengths = [len(ids) for ids in tokenizer(texts, verbose=False).input_ids]
    return sum(n > tokenizer.model_max_length for n in lengths)


def is_out_of_memory(error: BaseException) -> bool:
    """True for MemoryError and torch's out-of-memory errors (a RuntimeError subclass on CUDA)."""
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, RuntimeError) and any(w in str(error).lower() for w in _OUT_OF_MEMORY_WORDS)


@contextlib.contextmanager
def out_of_memory_names(stage: str, rows: int, fix: str, doing: str | None = None):
    """Turn an out-of-memory error inside a stage into one that says what to lower.

    ``doing`` says when it happened; by default, on a batch of ``rows`` prompts.
    """
    try:
        yield
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err) or isinstance(err, StageOutOfMemoryError):
            raise
        detail = " ".join(str(err).split())[:160] or type(err).__name__
        doing = doing or f"on a batch of {rows} prompts"
        raise StageOutOfMemoryError(f"{stage} ran out of memory {doing}; {fix} (torch said: {detail})") from None


def explain_load_out_of_memory(settings: Settings, what: str, source: str, on_gpu: bool = True):
    """A model that does not fit on its GPU as it loads: more actors share that GPU than its memory holds.

    Ray puts actors on one GPU while their ``num_gpus`` shares add up to 1 or
    less, whatever their models weigh. On a cluster ``helpers.start()`` compares
    the GPU nodes' memory with the weights first; on a machine of its own this
    is where a GPU that is too small shows. On a CPU (``on_gpu`` False) the
    weights of every actor are in the machine's memory, and the fix says so.
    """
    actors = (f"lower WORKSHOP_IMAGE_ACTORS (now {settings.image.actors}) or WORKSHOP_LLM_ACTORS "
              f"(now {settings.llm.actors})")
    fix = (
        "Ray puts actors on one GPU while their num_gpus shares add up to 1 or less, and their weights must fit "
        f"in its memory too: {actors}, or use a GPU with more memory"
    ) if on_gpu else f"every model actor holds its own copy of the weights in this machine's memory: {actors}"
    return out_of_memory_names(what, 0, fix, doing=f"while loading {source}")


def explain_image_out_of_memory(settings: Settings, rows: int):
    """``ImageGen`` out of memory: name its batch size and the image size, with their values."""
    fix = (
        f"lower WORKSHOP_IMAGE_BATCH_SIZE (now {settings.image.batch_size}) or the map_batches "
        f"batch_size, or WORKSHOP_IMAGE_SIZE (now {settings.image_size} px)"
    )
    return out_of_memory_names("ImageGen", rows, fix)


def explain_llm_out_of_memory(settings: Settings, rows: int):
    """``Enhancer`` out of memory: name its batch size and the reply length, with their values."""
    fix = (
        f"lower WORKSHOP_LLM_BATCH_SIZE (now {settings.llm.batch_size}) or the map_batches "
        f"batch_size, or WORKSHOP_MAX_NEW_TOKENS (now {settings.max_new_tokens})"
    )
    return out_of_memory_names("Enhancer", rows, fix)
