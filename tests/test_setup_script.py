"""``setup.sh`` runs where learners run it: macOS's bash 3.2, without GNU coreutils' ``sha256sum``.

The script runs here in a copy of its folder, with a stand-in for the virtual
environment's python that only records how it was called, and a ``PATH`` that
holds nothing but the few tools a Mac has too: no pip install, no model build.
Bash 3.2 itself is not installed here, so what only it rejects is checked in the
text: the constructs that need bash 4 and the empty-array expansion that bash
3.2 calls an unbound variable under ``set -u``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.runtime.settings import REPO_ROOT

SETUP = REPO_ROOT / "setup.sh"
#: What setup.sh calls besides bash builtins and the chosen Python; macOS has each of them.
MAC_TOOLS = ("cat", "dirname", "rm", "sed", "uname")
FAKE_PYTHON = '#!/bin/sh\nprintf "%s\\n" "$*" >> "$FAKE_PYTHON_LOG"\n'
#: The files whose bytes, in this order, make the requirements stamp: a change to any reinstalls.
STAMPED = ("requirements.txt", "requirements-test.txt", "pyproject.toml")
#: The workshop's own kernel, named in every notebook's metadata; the generic python3 kernel is left alone.
KERNEL_INSTALL = "-m ipykernel install --sys-prefix --name ray-data-workshop --display-name Ray Data workshop (.venv)"
#: Then the workshop's one addition to that kernel: the advice after a restart (helpers.kernel).
KERNEL_ADVICE = "-m helpers.kernel"

#: Bash-4-only syntax: associative arrays, mapfile, case conversion, namerefs, |& and &>>.
BASH4_ONLY = {
    "associative array": re.compile(r"\b(declare|local|typeset)\s+-\w*A"),
    "nameref": re.compile(r"\b(declare|local|typeset)\s+-\w*n"),
    "mapfile/readarray": re.compile(r"\b(mapfile|readarray)\b"),
    "case conversion": re.compile(r"\$\{\w+(\[[^]]*\])?(,,?|\^\^?)\}"),
    "|& or &>>": re.compile(r"\|&|&>>"),
    "coproc": re.compile(r"\bcoproc\b"),
}


def test_setup_sh_parses():
    done = subprocess.run(["bash", "-n", str(SETUP)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_setup_sh_uses_nothing_bash_3_2_lacks():
    text = "\n".join(line for line in SETUP.read_text().splitlines() if not line.lstrip().startswith("#"))
    found = [what for what, pattern in BASH4_ONLY.items() if pattern.search(text)]
    assert found == []
    # "${a[@]}" of an empty array is an unbound variable in bash 3.2 under set -u: use ${a[@]+"${a[@]}"}.
    unguarded = re.sub(r'\$\{(\w+)\[[@*]\]\+"\$\{\1\[[@*]\]\}"\}', "", text)
    assert re.findall(r"\$\{\w+\[[@*]\]\}", unguarded) == []


@pytest.fixture
def mac_like_copy(tmp_path) -> tuple[Path, dict, Path]:
    """A copy of setup.sh's folder whose environment is 'installed', and a PATH of Mac tools only."""
    root = tmp_path / "clone"
    root.mkdir()
    for name in STAMPED + ("setup.sh",):
        shutil.copy2(REPO_ROOT / name, root / name)
    fake = root / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    wanted = hashlib.sha256(b"".join((root / name).read_bytes() for name in STAMPED))
    (root / ".venv" / ".workshop-requirements.sha256").write_text(wanted.hexdigest() + "\n")
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in MAC_TOOLS:
        (tools / tool).symlink_to(shutil.which(tool))
    log = tmp_path / "python-calls.txt"
    env = {"PATH": str(tools), "HOME": str(tmp_path), "PYTHON": sys.executable, "FAKE_PYTHON_LOG": str(log)}
    return root, env, log


def run_setup(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    """``bash setup.sh ARGS`` in the copy ``root``, with the environment ``env``."""
    return subprocess.run([shutil.which("bash"), "setup.sh", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize("args", [[], ["--download"]])
def test_setup_sh_runs_without_sha256sum(mac_like_copy, args):
    root, env, log = mac_like_copy
    done = run_setup(root, env, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    # The stamp written as sha256sum wrote it still matches: installed packages are not reinstalled.
    assert "packages already match requirements.txt" in done.stdout
    calls = log.read_text().splitlines()
    assert not [call for call in calls if "pip install" in call]
    assert calls.index(KERNEL_ADVICE) == calls.index(KERNEL_INSTALL) + 1
    assert not [call for call in calls if "--name python3" in call]
    assert calls[-1] == " ".join(["-m", "helpers.commands.setup_workshop", *args])


def fake_python(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def chosen_python(folder: Path, on_venv: str) -> str:
    """A ``python3.11`` for ``PYTHON=``: its own checks run the real Python, and ``-m venv DIR`` runs the shell
    commands ``on_venv`` instead (``$3`` is DIR) and exits with their status."""
    return str(fake_python(folder / "python3.11", (
        f'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then {on_venv}; exit $?; fi\nexec {sys.executable} "$@"\n'
    )))  # fmt: skip


def test_a_half_built_venv_is_made_again(mac_like_copy, tmp_path):
    """A ``.venv`` whose python has no pip (an interrupted first run, or a Debian Python without
    ``python3.11-venv``) is removed and made again, instead of failing every later run."""
    root, env, log = mac_like_copy
    fake_python(root / ".venv" / "bin" / "python", "exit 1\n")  # `import pip` fails
    recorder = fake_python(tmp_path / "recorder", FAKE_PYTHON.removeprefix("#!/bin/sh\n"))
    # `-m venv DIR` makes DIR/bin/python the recorder.
    env["PYTHON"] = chosen_python(tmp_path, f'/bin/mkdir -p "$3/bin" && /bin/cp {recorder} "$3/bin/python"')
    done = run_setup(root, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "setup.sh: .venv is incomplete or of another Python; making it again" in done.stdout
    calls = log.read_text().splitlines()
    assert any("pip install" in call for call in calls), "the new environment gets the packages"
    assert calls[-1] == "-m helpers.commands.setup_workshop"


def test_a_venv_without_pip_gets_pip_and_is_kept(mac_like_copy, tmp_path):
    """A ``.venv`` made without pip (``uv venv``, ``--without-pip``) is given pip by ensurepip, not made again."""
    root, env, log = mac_like_copy
    pip_there = tmp_path / "pip-installed"
    venv_python = fake_python(root / ".venv" / "bin" / "python", (
        f'if [ "$1" = "-m" ] && [ "$2" = "ensurepip" ]; then : > {pip_there}; exit 0; fi\n'
        f'if [ "$1" = "-c" ]; then [ -e {pip_there} ]; exit $?; fi\n'
        + FAKE_PYTHON.removeprefix("#!/bin/sh\n")
    ))  # fmt: skip
    done = run_setup(root, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert pip_there.exists() and "making it again" not in done.stdout
    assert venv_python.read_text().count("ensurepip") == 1, "the environment was kept"
    assert log.read_text().splitlines()[-1] == "-m helpers.commands.setup_workshop"


def test_a_venv_that_cannot_be_made_says_what_to_install(mac_like_copy, tmp_path):
    root, env, _ = mac_like_copy
    shutil.rmtree(root / ".venv")
    env["PYTHON"] = chosen_python(tmp_path, '/bin/mkdir -p "$3/bin"; echo "ensurepip is not available" >&2; false')
    done = run_setup(root, env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "sudo apt install python3.11-venv; then run ./setup.sh again" in done.stderr
    assert not (root / ".venv").exists(), "the half-made environment is removed"


def test_another_python_is_refused_before_anything_is_made(mac_like_copy, tmp_path):
    root, env, _ = mac_like_copy
    shutil.rmtree(root / ".venv")
    env["PYTHON"] = str(fake_python(tmp_path / "python3.12", (
        'case "$2" in *platform*) echo 3.12.4; exit 0;; esac\nexit 1\n'
    )))  # fmt: skip
    done = run_setup(root, env)
    assert done.returncode == 2
    assert done.stderr.startswith(f"setup.sh: {env['PYTHON']} is Python 3.12.4, and the pinned packages are for "
                                  "Python 3.11."), done.stderr
    assert not (root / ".venv").exists()


def test_an_intel_python_on_macos_is_refused_before_anything_is_made(mac_like_copy, tmp_path):
    """PyTorch has no macOS packages for x86_64 since 2.3: an Intel Mac's Python, or one under Rosetta, would stop
    half-way through pip. Here ``uname`` answers as a Mac does and the Python as an x86_64 build does."""
    root, env, _ = mac_like_copy
    shutil.rmtree(root / ".venv")
    tools = Path(env["PATH"])
    (tools / "uname").unlink()
    fake_python(tools / "uname", "echo Darwin\n")
    env["PYTHON"] = str(fake_python(tmp_path / "python3.11", (
        f'case "$2" in *machine*) echo x86_64; exit 0;; esac\nexec {sys.executable} "$@"\n'
    )))  # fmt: skip
    done = run_setup(root, env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"setup.sh: {env['PYTHON']} runs as x86_64, and PyTorch's pinned version has "
                                  "macOS packages for Apple Silicon (arm64) only."), done.stderr
    assert not (root / ".venv").exists()


def test_help_is_the_scripts_opening_comment(mac_like_copy):
    root, env, log = mac_like_copy
    done = run_setup(root, env, "--help")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Set up the workshop on this machine")
    assert any(line.strip().startswith("./setup.sh --download") for line in lines)
    assert not [line for line in lines if line.startswith(("#", "set ", "cd "))], "only the comment, without '#'"
    assert not log.exists(), "--help runs nothing"
