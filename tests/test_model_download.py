"""Downloading the real models (``--download``) and loading them by hub id, without the network.

Every test replaces ``huggingface_hub.snapshot_download`` with a stand-in for the
hub that writes the files a real download writes (empty, as only their names
are checked), or fails the way the hub, the network or the disk fail.
"""

from __future__ import annotations

import errno
from pathlib import Path

import httpx
import huggingface_hub
import pytest
from huggingface_hub.errors import HfHubHTTPError

from helpers.commands import setup_workshop
from helpers.errors import BuildLockTimeout, ModelFolderError
from helpers.models import build as model_build
from helpers.models import folders as model_folders
from helpers.models import loading
from helpers.runtime import settings as config

#: The files a complete model folder of each kind holds (what ``missing_model_files`` looks for).
MODEL_FILES = {
    "image": [
        "model_index.json", "scheduler/scheduler_config.json",
        *(f"{tok}/{name}" for tok in ("tokenizer", "tokenizer_2")
          for name in ("tokenizer_config.json", "vocab.json", "merges.txt")),
        *(f"{part}/{name}" for part, stem in model_folders.IMAGE_WEIGHTS.items()
          for name in ("config.json", f"{stem}.fp16.safetensors")),
    ],
    "llm": ["config.json", "model.safetensors", "tokenizer_config.json", "tokenizer.json"],
}
KIND_OF_REPO = {config.HUB_IMAGE_MODEL: "image", config.HUB_LLM_MODEL: "llm"}


def write_model_files(folder: Path, kind: str, upto: int | None = None) -> Path:
    """Write the files of a complete ``kind`` folder (the first ``upto`` of them only, for one cut short)."""
    for name in MODEL_FILES[kind][:upto]:
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    return Path(folder)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in list(__import__("os").environ):
        if name.startswith("WORKSHOP_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKSHOP_PROFILE", "gpu")
    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path))


@pytest.fixture
def models_dir(tmp_path):
    return tmp_path / "models"


def _free(lock) -> bool:
    """Whether ``lock`` (a build_lock context) can be taken at once."""
    try:
        with lock:
            return True
    except BuildLockTimeout:
        return False


class FakeHub:
    """A stand-in for the hub's ``snapshot_download``: writes a model's files, or fails after ``fail_after``."""

    def __init__(self, fail_with: BaseException | None = None, fail_after: int = 3):
        self.calls: list[tuple[str, str, Path]] = []
        self.fail_with = fail_with
        self.fail_after = fail_after
        # (what the settings picked meanwhile, whether the model's download lock was held, whether the CPU
        # models' build lock was free)
        self.during: list[tuple[str, bool, bool]] = []

    def __call__(self, repo, revision=None, local_dir=None, allow_patterns=None):
        local_dir = Path(local_dir)
        self.calls.append((repo, revision, local_dir))
        models_dir = local_dir.parent
        kind = KIND_OF_REPO[repo]
        dirname = config.STAGED_IMAGE_MODEL if kind == "image" else config.STAGED_LLM_MODEL
        locked = not _free(model_build.download_lock(models_dir, dirname, wait_s=0))
        cpu_builds_free = _free(model_build.build_lock(models_dir, wait_s=0))
        if self.fail_with is not None:
            write_model_files(local_dir, kind, upto=self.fail_after)
            raise self.fail_with
        already = [name for name in MODEL_FILES[kind] if (local_dir / name).exists()]
        self.resumed_from = already
        write_model_files(local_dir, kind)
        settings = config.load_settings()
        self.during.append((settings.image.model if kind == "image" else settings.llm.model, locked, cpu_builds_free))
        return str(local_dir)


def test_a_download_holds_the_lock_and_the_folder_appears_only_once_complete(monkeypatch, models_dir):
    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    folders = model_build.download_real_models(models_dir)
    # While each model downloaded, its lock was held, a CPU models' build could go on, and the gpu profile
    # still chose the hub id.
    assert hub.during == [(config.HUB_IMAGE_MODEL, True, True), (config.HUB_LLM_MODEL, True, True)]
    assert [call[:2] for call in hub.calls] == [
        (config.HUB_IMAGE_MODEL, model_build.HUB_IMAGE_REVISION), (config.HUB_LLM_MODEL, model_build.HUB_LLM_REVISION),
    ]
    assert all(call[2].name.endswith(".downloading") for call in hub.calls)
    for kind, folder in folders.items():
        assert model_folders.missing_model_files(folder, kind) == []
        assert model_folders.read_marker(folder)["revision"] in (model_build.HUB_IMAGE_REVISION,
                                                                   model_build.HUB_LLM_REVISION)
    assert model_build.partial_downloads(models_dir) == []
    settings = config.load_settings()
    assert (settings.image.model, settings.llm.model) == (str(folders["image"]), str(folders["llm"]))
    # A second run keeps them without asking the hub; --force downloads them again.
    model_build.download_real_models(models_dir)
    assert len(hub.calls) == 2
    assert model_build.main(["--models-dir", str(models_dir), "--download", "--force"]) == 0
    assert len(hub.calls) == 4
    assert hub.resumed_from == []  # from scratch, not from the folder in use


def test_an_interrupted_download_leaves_no_staged_folder_and_the_next_one_resumes(monkeypatch, models_dir):
    monkeypatch.setattr(huggingface_hub, "snapshot_download", FakeHub(fail_with=KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        model_build.download_real_models(models_dir)
    image = models_dir / config.STAGED_IMAGE_MODEL
    assert not image.exists()
    assert model_build.partial_downloads(models_dir) == [models_dir / f".{image.name}.downloading"]
    assert config.load_settings().image.model == config.HUB_IMAGE_MODEL
    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    model_build.download_real_models(models_dir)
    assert hub.calls[0][2] == models_dir / f".{image.name}.downloading"
    assert len(hub.during) == 2
    assert model_folders.missing_model_files(image, "image") == []
    assert model_build.partial_downloads(models_dir) == []


def test_a_folder_cut_short_by_an_earlier_download_is_resumed_out_of_sight(monkeypatch, models_dir):
    llm = write_model_files(models_dir / config.STAGED_LLM_MODEL, "llm", upto=1)  # config.json only
    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    model_build.download_real_models(models_dir)
    assert hub.resumed_from == ["config.json"]
    assert hub.during[1] == (config.HUB_LLM_MODEL, True, True)
    assert model_folders.missing_model_files(llm, "llm") == []


def _unauthorized() -> HfHubHTTPError:
    import httpx2

    url = "https://huggingface.co/api/models/stabilityai/sdxl-turbo"
    response = httpx2.Response(401, request=httpx2.Request("GET", url))
    return HfHubHTTPError(f"401 Client Error: Unauthorized for url: {url}", response=response)


@pytest.mark.parametrize("make_error", [
    _unauthorized,
    lambda: httpx.ConnectError("[Errno -3] Temporary failure in name resolution"),
    lambda: OSError("Connection reset by peer"),
])
def test_the_download_command_says_a_hub_failure_in_one_line(monkeypatch, models_dir, capsys, make_error):
    error = make_error()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", FakeHub(fail_with=error))
    assert model_build.main(["--models-dir", str(models_dir), "--download"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("error: downloading the real models into") and "internet access" in err
    assert f".{config.STAGED_IMAGE_MODEL}.downloading" in err and "resumes" in err


def test_the_download_command_says_which_folder_is_full(monkeypatch, models_dir, capsys):
    full = OSError(errno.ENOSPC, "No space left on device", str(models_dir / "x.incomplete"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", FakeHub(fail_with=full))
    assert model_build.main(["--models-dir", str(models_dir), "--download"]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {models_dir / 'x.incomplete'} (No space left on device)" in err
    assert "WORKSHOP_MODELS" in err and "internet" not in err


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left"), (errno.EACCES, "Permission denied"),
                                         (errno.EROFS, "Read-only file system")])
def test_setup_says_which_folder_to_change_when_the_download_cannot_write(monkeypatch, models_dir, capsys,
                                                                          code, words):
    failure = OSError(code, words, str(models_dir / ".sdxl-turbo.downloading" / "unet"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", FakeHub(fail_with=failure))
    monkeypatch.setattr(model_build, "prepare_cpu_models", lambda models_dir: None)
    assert setup_workshop.main(["--download"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {models_dir / '.sdxl-turbo.downloading' / 'unet'} ({words})" in err
    assert "WORKSHOP_MODELS" in err and "internet" not in err
    assert f"stay in {models_dir / '.sdxl-turbo.downloading'}" in err


def test_setup_still_blames_the_network_for_a_hub_failure(monkeypatch, models_dir, capsys):
    monkeypatch.setattr(huggingface_hub, "snapshot_download", FakeHub(fail_with=httpx.ConnectError("offline")))
    monkeypatch.setattr(model_build, "prepare_cpu_models", lambda models_dir: None)
    assert setup_workshop.main(["--download"]) == 2
    err = capsys.readouterr().err
    assert "internet access" in err and "without --download" in err


def test_an_incomplete_real_model_folder_says_to_download_again(models_dir):
    staged = write_model_files(models_dir / config.STAGED_IMAGE_MODEL, "image", upto=2)
    with pytest.raises(ModelFolderError, match=r"incomplete: .*`./setup.sh --download`") as caught:
        model_folders.ensure_model_folder(staged, "image")
    assert "--force" not in str(caught.value)
    tiny = write_model_files(models_dir / config.TINY_IMAGE_MODEL, "image", upto=2)
    with pytest.raises(ModelFolderError, match=r"helpers.models.build --force"):
        model_folders.ensure_model_folder(tiny, "image")


def test_a_model_loaded_by_hub_id_is_loaded_at_the_pinned_revision(monkeypatch, tmp_path):
    import diffusers

    seen = {}

    class Loaded:
        tokenizer = type("Tokenizer", (), {})()

        def set_progress_bar_config(self, **_):
            pass

        def to(self, _device):
            return self

    def from_pretrained(source, **kwargs):
        seen[source] = kwargs.get("revision")
        return Loaded()

    def pipeline(task, model=None, **kwargs):
        seen[model] = kwargs.get("revision")
        return Loaded()

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", from_pretrained)
    # By name, after diffusers is loaded: importing it can put another transformers module in sys.modules.
    monkeypatch.setattr("transformers.pipeline", pipeline)
    settings = config.load_settings(profile="cpu")
    loading.load_image_pipeline(config.HUB_IMAGE_MODEL, settings)
    loading.load_text_generator(config.HUB_LLM_MODEL, settings)
    assert seen == {config.HUB_IMAGE_MODEL: model_build.HUB_IMAGE_REVISION,
                    config.HUB_LLM_MODEL: model_build.HUB_LLM_REVISION}
    # A folder (staged or not) is what it is: no revision.
    folder = write_model_files(tmp_path / "my-llm", "llm")
    loading.load_text_generator(str(folder), settings)
    assert seen[str(folder)] is None
