#!/usr/bin/env bash
# Install genclip-hf with its test extras, then lint and run the whole test suite: the default suite, then the tests
# marked slow. Tests that need ../shared (real tokenizer and images) skip with a reason when it is absent.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$repo/scripts/install.sh" test | tail -n 1)"
cd "$repo"
"$venv/bin/ruff" check src tests benchmarks examples
"$venv/bin/ruff" format --check src tests benchmarks examples
"$venv/bin/python" -m pytest
status=0
"$venv/bin/python" -m pytest -m slow || status=$?
# pytest exits 5 when no test is marked slow; anything else non-zero is a failure.
if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
    exit "$status"
fi
