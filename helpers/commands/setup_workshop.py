"""The Python half of ``setup.sh``: storage, data, models, and a final check.

Run as ``python -m helpers.commands.setup_workshop [--download]``. Every step is
idempotent: data files are copied only when they differ, model folders are
built only when missing or incomplete, so a second run takes seconds.
"""

from __future__ import annotations

import argparse
import errno
import filecmp
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

from helpers.errors import ActionableError, first_line
from helpers.models.folders import REBUILD_HINT
from helpers.runtime.settings import REPO_ROOT, Settings, SettingsError, check_storage_writable, load_settings

DATA_SOURCE = REPO_ROOT / "data"


def stage_data(settings: Settings) -> list[Path]:
    """Copy ``data/*.csv`` into ``<storage>/data``; only files that changed are written.

    Each copy goes to a temporary file of its own, then replaces the target in
    one rename: a reader never sees half a file, and two setups on one shared
    storage root at once never write into each other's copy.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for source in sorted(DATA_SOURCE.glob("*.csv")):
        target = settings.data_dir / source.name
        if target.exists() and filecmp.cmp(source, target, shallow=False):
            continue
        # Not mkstemp: its files are private (0600), and other users' Ray workers read these.
        partial = target.with_name(f".{target.name}.{secrets.token_hex(8)}.partial")
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        copied.append(target)
    return copied


def verify_models(settings: Settings) -> dict[str, float]:
    """Load each model of the profile through the same call the lessons use."""
    from helpers.models.stages import load_image_pipeline, load_text_generator

    seconds = {}
    for name, loader, source in (
        ("image", load_image_pipeline, settings.image.model),
        ("llm", load_text_generator, settings.llm.model),
    ):
        began = time.perf_counter()
        loader(source, settings)
        seconds[name] = time.perf_counter() - began
    return seconds


#: errno values that mean "this folder cannot be written", as opposed to a file that cannot be read.
_CANNOT_WRITE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EEXIST}


def _cannot_write(err: OSError, settings: Settings | None) -> bool:
    """Whether ``err`` says that a folder set-up writes cannot be written (or made: a missing parent of it)."""
    if err.errno in _CANNOT_WRITE:
        return True
    if err.errno != errno.ENOENT or not err.filename or settings is None:
        return False
    missing = Path(err.filename)
    folders = [settings.models_dir] + ([settings.storage] if isinstance(settings.storage, Path) else [])
    return any(missing == folder or missing in folder.parents for folder in folders)


def _download(models_dir) -> None:
    """``--download``: the real models from the hub, or a :class:`SettingsError` that says what to check."""
    from helpers.models.build import download_failure, download_real_models

    try:
        download_real_models(models_dir)
    except ActionableError:  # another setup's download holding the lock, a folder still incomplete: said as is
        raise
    except Exception as err:  # the hub's errors are many (offline, HTTP, a token): said in one line
        if isinstance(err, OSError) and _cannot_write(err, None):  # a full disk, an unwritable folder: main says
            raise  # which folder to change, not the network
        raise SettingsError(f"{download_failure(err, models_dir)}, or run ./setup.sh without --download for "
                            "the CPU models") from None


def _partial_note(settings: Settings | None) -> str:
    """Where a download cut short left its files, if it left any."""
    if settings is None:
        return ""
    from helpers.models.build import partial_downloads

    partial = partial_downloads(settings.models_dir)
    if not partial:
        return ""
    return (f"; the files downloaded so far stay in {', '.join(map(str, partial))}, and ./setup.sh --download "
            "resumes from them (delete them to free their space)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--download", action="store_true", help="fetch the real models from the hub (internet)")
    args = parser.parse_args(argv)

    settings = None
    try:
        settings = load_settings()
        check_storage_writable(settings.storage)
        copied = stage_data(settings)
        print(f"data: {len(copied)} file(s) updated in {settings.data_dir}")

        from helpers.models.build import prepare_cpu_models

        prepare_cpu_models(settings.models_dir)
        if args.download:
            _download(settings.models_dir)
            settings = load_settings()
        if settings.profile == "gpu" and not args.download:
            print("gpu profile: models come from", settings.image.model, "and", settings.llm.model)
        loaded = verify_models(settings) if settings.profile == "cpu" else {}

        from helpers.runtime.cluster import local_init_kwargs

        ray_kwargs = local_init_kwargs(settings)  # WORKSHOP_NUM_CPUS, WORKSHOP_DASHBOARD, ... checked here too
    except (ActionableError, OSError) as err:
        if isinstance(err, ActionableError):  # a setting, a model folder, another setup's build holding the lock
            print(f"setup: {err}", file=sys.stderr)
        elif _cannot_write(err, settings):  # not allowed, read-only, full, a file in the way: a folder to change
            print(f"setup: cannot write {err.filename or 'the storage'} ({err.strerror}); set "
                  "WORKSHOP_STORAGE (data and outputs) or WORKSHOP_MODELS (models) to a folder you can write"
                  + _partial_note(settings), file=sys.stderr)
        else:  # e.g. a model folder the libraries cannot read (a config that is not JSON): said as they say it
            in_models = settings is not None and str(settings.models_dir) in str(err)
            print(f"setup: {first_line(err)}" + (f"; {REBUILD_HINT}" if in_models else ""), file=sys.stderr)
        return 2

    print()
    print("Set up:")
    print(settings.table())
    if loaded:
        print("models load in " + ", ".join(f"{name} {s:.1f} s" for name, s in loaded.items()))
    print(
        f"Ray (local): {ray_kwargs['num_cpus']} logical CPUs, "
        f"{ray_kwargs.get('num_gpus', 'all local')} {'logical ' if settings.profile == 'cpu' else ''}GPUs; "
        "set RAY_ADDRESS to join a cluster instead"
    )
    print()
    print("Next:")
    print("  .venv/bin/jupyter lab          # the workshop: open notebooks/00_welcome.ipynb")
    print("  .venv/bin/python -m pytest     # the test suite")
    return 0


if __name__ == "__main__":
    sys.exit(main())
