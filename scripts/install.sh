#!/usr/bin/env bash
# Install genclip-hf into a virtual environment (default: .venv in the repository; override with GENCLIP_VENV).
# torch is pinned first so that pip takes the CPU wheel here instead of a multi-GB CUDA build; on a GPU machine set
# GENCLIP_TORCH_SPEC (e.g. "torch==2.13.0") to the build you want.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${GENCLIP_VENV:-$repo/.venv}"
extras="${1:-}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "${GENCLIP_TORCH_SPEC:-torch==2.13.0}"
"$venv/bin/python" -m pip install --quiet -e "$repo${extras:+[$extras]}"
echo "$venv"
