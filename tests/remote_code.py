"""Run a script in a fresh Python where `genclip_hf` cannot be imported (the `trust_remote_code` situation)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCK_GENCLIP = textwrap.dedent(
    """
    import sys

    class BlockGenclip:
        def find_spec(self, name, path=None, target=None):
            if name == "genclip_hf" or name.startswith("genclip_hf."):
                raise ImportError("genclip_hf is not importable in this process")

    sys.meta_path.insert(0, BlockGenclip())
    """
)


def run_without_genclip(script: str, args: list[str], work_dir: Path) -> subprocess.CompletedProcess:
    """Run `script` (Python source) with `args` offline in `work_dir`, `genclip_hf` blocked; fails on a non-zero exit
    with the end of its stderr."""
    path = work_dir / "without_genclip.py"
    path.write_text(BLOCK_GENCLIP + textwrap.dedent(script))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(work_dir / "modules")}
    completed = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, env=env, cwd=work_dir, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed
