"""Settings resolution: defaults, profiles, overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.errors import SettingsError
from helpers.runtime import settings as config
from tests.test_model_download import write_model_files


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("WORKSHOP_"):
            monkeypatch.delenv(name, raising=False)


def test_cpu_profile_uses_local_small_models(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path))
    settings = config.load_settings()
    assert settings.profile == "cpu"
    assert settings.storage == tmp_path
    assert settings.image.model == str(tmp_path / "models" / config.TINY_IMAGE_MODEL)
    assert settings.llm.model == str(tmp_path / "models" / config.SMALL_LLM_MODEL)
    assert settings.uses_small_models
    # The lessons' requests: two actors per stage, 1 GPU for images, 0.5 for the LLM.
    assert (settings.image.actors, settings.image.num_gpus, settings.image.batch_size) == (2, 1.0, 8)
    assert (settings.llm.actors, settings.llm.num_gpus, settings.llm.batch_size) == (2, 0.5, 4)


def test_gpu_profile_prefers_staged_models_then_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKSHOP_PROFILE", "gpu")
    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path))
    settings = config.load_settings()
    assert settings.image.model == config.HUB_IMAGE_MODEL
    assert settings.llm.model == config.HUB_LLM_MODEL
    staged = write_model_files(tmp_path / "models" / config.STAGED_IMAGE_MODEL, "image")
    assert config.load_settings().image.model == str(staged)
    assert config.load_settings().image_size == 512


@pytest.mark.parametrize("kind", ["image", "llm"])
def test_a_staged_folder_cut_short_is_not_picked_so_workers_agree_with_the_driver(monkeypatch, tmp_path, kind):
    """A download cut short (``model_index.json`` / ``config.json`` there, weights not) leaves the hub id.

    A worker resolves its settings without the GPU nodes' report; it must pick
    what the driver picked from that report, which counts only complete folders.
    """
    monkeypatch.setenv("WORKSHOP_PROFILE", "gpu")
    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path))
    name, hub = {"image": (config.STAGED_IMAGE_MODEL, config.HUB_IMAGE_MODEL),
                 "llm": (config.STAGED_LLM_MODEL, config.HUB_LLM_MODEL)}[kind]
    staged = write_model_files(tmp_path / "models" / name, kind, upto=1)
    driver = config.load_settings(ready_model_folders=frozenset())  # the GPU nodes: not complete
    worker = config.load_settings()
    assert getattr(driver, kind).model == getattr(worker, kind).model == hub
    write_model_files(staged, kind)
    ready = frozenset({str(staged)})
    assert getattr(config.load_settings(ready_model_folders=ready), kind).model == str(staged)
    assert getattr(config.load_settings(), kind).model == str(staged)


def test_auto_profile_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(config, "cuda_usable", lambda: False)
    assert config.resolve_profile("auto") == "cpu"
    monkeypatch.setattr(config, "cuda_usable", lambda: True)
    assert config.resolve_profile("auto") == "gpu"


def test_one_gpu_cluster_halves_per_actor_requests(monkeypatch):
    monkeypatch.setenv("WORKSHOP_PROFILE", "gpu")
    settings = config.load_settings(cluster_gpus=1)
    assert settings.image.num_gpus == 0.5
    assert settings.llm.num_gpus == 0.25
    assert config.load_settings(cluster_gpus=8).image.num_gpus == 1.0


def test_environment_overrides_each_stage(monkeypatch):
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    monkeypatch.setenv("WORKSHOP_IMAGE_BATCH_SIZE", "3")
    monkeypatch.setenv("WORKSHOP_LLM_GPUS", "0.25")
    monkeypatch.setenv("WORKSHOP_IMAGE_MODEL", "/models/mine")
    monkeypatch.setenv("WORKSHOP_MAX_NEW_TOKENS", "12")
    settings = config.load_settings()
    assert settings.image.batch_size == 3
    assert settings.llm.num_gpus == 0.25
    assert settings.image.model == "/models/mine"
    assert settings.max_new_tokens == 12


@pytest.mark.parametrize(("given", "model"), [
    ("/models/mine/", "/models/mine"), ("~/models/mine", "{home}/models/mine"), ("./mine", "{cwd}/mine"),
    ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
])  # fmt: skip
def test_a_model_folder_is_named_as_the_nodes_report_it(monkeypatch, given, model):
    """The pre-flight check finds a folder in the GPU nodes' reports by this name: a trailing '/' must not hide it."""
    import os
    from pathlib import Path

    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    monkeypatch.setenv("WORKSHOP_LLM_MODEL", given)
    assert config.load_settings().llm.model == model.format(home=Path.home(), cwd=os.getcwd())


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("WORKSHOP_PROFILE", "tpu", "use one of auto, cpu, gpu"),
        ("WORKSHOP_IMAGE_BATCH_SIZE", "eight", "not a whole number"),
        ("WORKSHOP_IMAGE_ACTORS", "0", "below 1"),
        ("WORKSHOP_LLM_GPUS", "-1", "below 0"),
        ("WORKSHOP_IMAGE_GPUS", "inf", "not a finite number"),
        ("WORKSHOP_ACTOR_CPUS", "1e400", "not a finite number"),
        ("WORKSHOP_NUM_GPUS", "1.5", "not a whole number"),  # Ray declares whole GPUs only
        ("WORKSHOP_LLM_GPUS", "1.5", (r"share of one GPU \(up to 1\) or whole GPUs per actor; use e.g. "
                                      "WORKSHOP_LLM_GPUS=1 or WORKSHOP_LLM_GPUS=2")),
        ("WORKSHOP_STORAGE", "gs://bucket/x", "S3 location"),
    ],
)
def test_bad_values_say_what_to_change(monkeypatch, name, value, words):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=words):
        config.load_settings("cpu" if name != "WORKSHOP_PROFILE" else None)


def test_default_storage_is_inside_the_clone_without_cluster_storage(monkeypatch):
    monkeypatch.setattr(config, "ANYSCALE_STORAGE", Path("/nonexistent/cluster_storage"))
    assert config.default_storage() == config.REPO_ROOT / "storage"


def test_table_lists_what_a_learner_needs(monkeypatch):
    text = config.load_settings("cpu").table()
    for label in ("profile", "storage", "your outputs", "image model", "LLM", "image stage", "LLM stage"):
        assert label in text


# --------------------------------------------------------------------------- one learner, one output folder


def test_outputs_go_to_the_folder_named_by_workshop_user(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path))
    monkeypatch.setenv("WORKSHOP_USER", "ada")
    settings = config.load_settings("cpu")
    assert settings.learner == "ada"
    assert settings.outputs_dir == tmp_path / "outputs" / "ada"
    assert settings.output_path("03_parquet") == str(tmp_path / "outputs" / "ada" / "03_parquet")
    assert ("your outputs", str(tmp_path / "outputs" / "ada")) in settings.rows()


def test_learner_is_the_login_name_without_workshop_user(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKSHOP_STORAGE", str(tmp_path))
    monkeypatch.setenv("LOGNAME", "grace")  # where getpass.getuser() looks first
    monkeypatch.setenv("WORKSHOP_USER", "")  # empty means unset, as for every WORKSHOP_* variable
    assert config.resolve_learner() == "grace"
    assert config.load_settings("cpu").outputs_dir == tmp_path / "outputs" / "grace"


def test_learner_without_a_login_name_is_named_by_the_user_id(monkeypatch):
    """Mocks getpass.getuser, which raises in a container whose user id has no passwd entry and no USER."""

    def no_passwd_entry():
        raise KeyError("getpwuid(): uid not found: 4242")

    monkeypatch.setattr(config.getpass, "getuser", no_passwd_entry)
    assert config.resolve_learner() == f"uid{__import__('os').getuid()}"


@pytest.mark.parametrize("name", ["ada.lovelace", "grace_hopper", "alan-turing", "ada@lab", "José", "a" * 64])
def test_a_learner_name_may_be_any_single_folder_name(monkeypatch, name):
    monkeypatch.setenv("WORKSHOP_USER", name)
    assert config.resolve_learner() == name


@pytest.mark.parametrize("name", ["..", ".", "../ada", "ada/../grace", "/ada", "ada\\grace", " ", "ada lovelace",
                                  ".hidden", "-rf", "a" * 65, "ada\n"])
def test_a_learner_name_that_is_not_one_safe_folder_name_is_refused(monkeypatch, name):
    monkeypatch.setenv("WORKSHOP_USER", name)
    refused = r"^WORKSHOP_USER=.* cannot name your output folder: set WORKSHOP_USER"
    with pytest.raises(SettingsError, match=refused) as err:
        config.load_settings("cpu")
    assert "\n" not in str(err.value)


def test_a_login_name_that_is_not_a_safe_folder_name_says_to_set_workshop_user(monkeypatch):
    monkeypatch.setenv("LOGNAME", "CORP\\ada")
    with pytest.raises(SettingsError, match=r"^the login name 'CORP.*ada' cannot .* set WORKSHOP_USER to"):
        config.resolve_learner()


def test_forwarded_environment(monkeypatch):
    monkeypatch.setenv("WORKSHOP_PROFILE", "cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("UNRELATED_SECRET", "x")
    monkeypatch.setenv("LOGNAME", "grace")
    env = config.forwarded_env()
    assert env["WORKSHOP_PROFILE"] == "cpu"
    # Workers on other nodes run under another login: the driver's learner travels with them.
    assert env["WORKSHOP_USER"] == "grace"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert "UNRELATED_SECRET" not in env


def test_an_image_size_the_models_cannot_draw_is_refused_with_sizes_they_can(monkeypatch):
    """diffusers refuses sides that are not multiples of 8, but only once the first image actor has loaded."""
    monkeypatch.setenv("WORKSHOP_IMAGE_SIZE", "100")
    with pytest.raises(SettingsError, match=r"^WORKSHOP_IMAGE_SIZE=100 is not a multiple of 8, which the image "
                                            r"models need; use e\.g\. 96 or 104$"):
        config.load_settings("cpu")
    monkeypatch.setenv("WORKSHOP_IMAGE_SIZE", "96")
    assert config.load_settings("cpu").image_size == 96


@pytest.mark.parametrize(("raw", "on"), [("1", True), ("yes", True), ("True", True), (" 1 ", True), ("0", False),
                                         ("off", False), ("", False), ("  ", False)])
def test_an_on_off_setting_takes_the_usual_spellings(monkeypatch, raw, on):
    monkeypatch.setenv("WORKSHOP_DASHBOARD", raw)
    assert config.env_flag("WORKSHOP_DASHBOARD") is on


def test_an_on_off_setting_of_another_value_is_refused_not_taken_for_off(monkeypatch):
    monkeypatch.setenv("WORKSHOP_CLUSTER_HAS_HELPERS", "sure")
    with pytest.raises(SettingsError, match=r"^WORKSHOP_CLUSTER_HAS_HELPERS='sure': use 1 \(on\) or 0 \(off\)$"):
        config.env_flag("WORKSHOP_CLUSTER_HAS_HELPERS")


def test_a_profile_passed_to_start_is_named_as_passed(monkeypatch):
    with pytest.raises(SettingsError, match=r"^helpers\.start\(profile='tpu'\): use one of auto, cpu, gpu$"):
        config.requested_profile("tpu")


def test_an_image_size_that_is_not_a_number_is_told_the_profiles_default(monkeypatch):
    monkeypatch.setenv("WORKSHOP_IMAGE_SIZE", "large")
    with pytest.raises(SettingsError, match=r"use e\.g\. WORKSHOP_IMAGE_SIZE=128$"):
        config.load_settings("cpu")
