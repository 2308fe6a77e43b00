"""Shared fixtures: paths into ../shared (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
TOKENIZER_DIR = SHARED_DIR / "tokenizer" / "clip"
REAL_MINI_DIR = SHARED_DIR / "data" / "real-mini"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is missing: tests that read ../shared need the project's shared folder")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED_DIR)


@pytest.fixture(scope="session")
def real_mini_dir() -> Path:
    return _require(REAL_MINI_DIR)


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    return _require(TOKENIZER_DIR)
