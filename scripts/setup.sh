#!/usr/bin/env bash
# Set up (or update) .venv: torch first, then ftkit with the pinned versions.
#
# torch goes first because a torch requirement that admits a newer release, with no torch
# installed, makes pip pull the default Linux build with several GB of CUDA packages. So:
#   - no NVIDIA GPU  -> the CPU build of torch (small);
#   - an NVIDIA GPU  -> PyPI's default (CUDA) build;
#   - FTKIT_TORCH=cpu|cuda|skip forces a choice (skip: keep the torch you installed yourself).
# Running it again is cheap: it does nothing when the install is newer than pyproject.toml and
# requirements/constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${FTKIT_VENV:-.venv}
TORCH_VERSION=$(sed -n 's/^torch==//p' requirements/constraints.txt)
CPU_INDEX=${FTKIT_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
stamp="$VENV/.ftkit-installed"

if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt requirements/constraints.txt ]; then
    exit 0
fi
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

torch_choice=${FTKIT_TORCH:-auto}
if [ "$torch_choice" = auto ]; then
    if "$VENV/bin/python" -c "import torch" 2>/dev/null; then torch_choice=skip
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then torch_choice=cuda
    else torch_choice=cpu; fi
fi
case "$torch_choice" in
    cpu)  echo "ftkit setup: installing torch==$TORCH_VERSION (CPU build)"
          # Only torch itself from the CPU index; its dependencies come with the next step.
          "${pip[@]}" --no-deps --retries 0 "torch==$TORCH_VERSION" --index-url "$CPU_INDEX" \
              || "${pip[@]}" "torch==$TORCH_VERSION" ;;
    cuda) echo "ftkit setup: installing torch==$TORCH_VERSION (CUDA build)"
          "${pip[@]}" "torch==$TORCH_VERSION" ;;
    skip) ;;
    *)    echo "FTKIT_TORCH=$torch_choice: use cpu, cuda or skip" >&2; exit 2 ;;
esac

echo "ftkit setup: installing ftkit and its pinned dependencies into $VENV"
# torch is left out of the constraints here so a torch the user chose (any CUDA build) stays.
grep -v '^torch==' requirements/constraints.txt > "$VENV/constraints-no-torch.txt"
"${pip[@]}" -c "$VENV/constraints-no-torch.txt" -e ".[dev]"
touch "$stamp"
echo "ftkit setup: done in $(( $(date +%s) - start )) s ($VENV)"
