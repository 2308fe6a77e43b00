"""Shared fixtures: tiny random CLIPs with the bundled CLIP tokenizer, and paths into ../shared (real images and
parity data; tests that need them skip with a reason when ../shared is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
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
    """The real CLIP BPE tokenizer bundled with the package (MIT licence)."""
    from genclip_hf.testing import CLIP_TOKENIZER_DIR

    return CLIP_TOKENIZER_DIR


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A random tiny CLIP checkpoint with the real CLIP tokenizer."""
    from genclip_hf.testing import save_random_clip

    return save_random_clip(tmp_path_factory.mktemp("tiny-clip"), tokenizer_dir, "tiny", seed=0)


@pytest.fixture
def tiny_model(tiny_clip_dir: Path):
    """An untrained GenCLIP on the tiny CLIP (feature layers 1, 2, 4; 64 px input, 8x8 grid), in eval mode."""
    import torch

    from genclip_hf import GenCLIPModel
    from genclip_hf.testing import TINY_GENCLIP_OVERRIDES

    torch.manual_seed(0)
    return GenCLIPModel.from_clip(str(tiny_clip_dir), **TINY_GENCLIP_OVERRIDES).eval()


@pytest.fixture
def tiny_processor(tiny_clip_dir: Path, tiny_model):
    from genclip_hf import GenCLIPProcessor

    return GenCLIPProcessor.from_clip(str(tiny_clip_dir), config=tiny_model.config)


@pytest.fixture(scope="session")
def tiny_checkpoint_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A saved untrained tiny GenCLIP checkpoint (model, processor and Hub code)."""
    from genclip_hf.testing import save_random_genclip

    return save_random_genclip(tmp_path_factory.mktemp("tiny-genclip"), tokenizer_dir)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny-tensor tests (`pytestmark = pytest.mark.usefixtures("one_thread")`): thread
    synchronisation dominates tiny tensors on a shared CPU, and the parity fixtures were made with one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fresh_accelerate_state():
    """Each `train` call in this process starts from a clean Accelerate singleton state, as a new process would."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
