#!/usr/bin/env bash
# Install genclip-hf with its test, export (ONNX) and demo (Gradio) extras, and Debian's Chromium for the demo's
# browser test when it is missing (as root, with apt-get), then lint and run the whole test suite: the default suite,
# then the tests marked slow. Only tests that need the project's ../shared folder (real benchmark images, parity
# fixtures of other implementations) may skip; the skips are counted and listed with their reasons after each run.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
venv="$(bash "$repo/scripts/install.sh" "${GENCLIP_TEST_EXTRAS:-test,export,demo}" | tail -n 1)"
cd "$repo"
"$venv/bin/ruff" check src tests benchmarks examples
"$venv/bin/ruff" format --check src tests benchmarks examples
"$venv/bin/python" -m pytest -rs
status=0
"$venv/bin/python" -m pytest -m slow -rs || status=$?
# pytest exits 5 when no test is marked slow; anything else non-zero is a failure.
if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
    exit "$status"
fi
