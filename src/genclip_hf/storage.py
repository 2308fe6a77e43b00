"""Writing results safely: atomic file and folder replacement, file names that every file system accepts, and a lock
that keeps two runs out of one output folder."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MAX_NAME_BYTES = 200
"""Longest file name written (bytes, UTF-8); most file systems allow 255."""


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and `os.replace`, so a reader never sees a
    partial file and an interrupted write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[: MAX_NAME_BYTES // 2]}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """[`atomic_write_bytes`] of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, value: Any) -> Path:
    """[`atomic_write_bytes`] of strict JSON (NaN and inf are refused: write them as `null`)."""
    return atomic_write_text(path, json.dumps(value, indent=2, allow_nan=False) + "\n")


def replace_folder(source: str | Path, target: str | Path) -> Path:
    """Move the finished folder `source` to `target`, replacing an earlier `target` by renames on one file system, so
    `target` never mixes old and new files."""
    source, target = Path(source), Path(target)
    old = target.with_name(f".{target.name[: MAX_NAME_BYTES // 2]}.{os.getpid()}.old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
    os.rename(source, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


@contextmanager
def staged_folder(target: str | Path) -> Iterator[Path]:
    """A new folder beside `target` to write into: it replaces `target` ([`replace_folder`]) when the block finishes
    and is deleted when the block fails, so `target` holds either its earlier content or the whole new one."""
    target = Path(target)
    staging = target.with_name(f".{target.name[: MAX_NAME_BYTES // 2]}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_folder(staging, target)


def json_digest(value: Any) -> str:
    """SHA-256 (hex) of `value`'s canonical JSON (sorted keys; other objects as `str`)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def slug(name: str) -> str:
    """A file-name-safe form of a class name or image stem (letters, digits, `_`, `-`, `.`)."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "_"


def safe_file_name(stem: str, suffix: str) -> str:
    """`stem + suffix`, shortened when it exceeds [`MAX_NAME_BYTES`] bytes: the kept prefix is followed by a short hash
    of the whole stem, so distinct long names stay distinct."""
    name = stem + suffix
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(stem.encode("utf-8")).hexdigest()[:12]
    budget = MAX_NAME_BYTES - len(suffix.encode("utf-8")) - len(digest) - 1
    prefix = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return f"{prefix}_{digest}{suffix}"


class OutputFolderLockedError(RuntimeError):
    """Another run holds the output folder."""


class RunLock:
    """An exclusive lock on an output folder for one run (a lock file created with `O_EXCL`).

    A lock left by a process that no longer runs on this machine is taken over; a live one raises
    [`OutputFolderLockedError`] naming the folder and the holder.

    Args:
        folder: the output folder (created).
        job: the job's name, used in the lock file name and the message.
    """

    def __init__(self, folder: str | Path, job: str):
        self.folder = Path(folder)
        self.job = job
        self.path = self.folder / f".{job}.lock"

    def __enter__(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        owner = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.path.read_text(encoding="utf-8", errors="replace").strip()
                if _is_stale(holder):
                    self.path.unlink(missing_ok=True)
                    continue
                raise OutputFolderLockedError(
                    f"{self.folder} is in use by another `{self.job}` run ({holder or 'unknown process'}); wait for "
                    f"it to finish, choose another output folder, or delete {self.path} if no such run exists."
                ) from None
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(owner)
            return self
        raise OutputFolderLockedError(f"Could not lock {self.folder} for `{self.job}`.")

    def __exit__(self, *exc_info: object) -> None:
        self.path.unlink(missing_ok=True)


def _is_stale(holder: str) -> bool:
    """True when the lock's holder (`"<host> <pid>"`) is a process of this machine that no longer runs."""
    host, _, pid = holder.rpartition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


__all__ = [
    "MAX_NAME_BYTES",
    "OutputFolderLockedError",
    "RunLock",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "json_digest",
    "replace_folder",
    "safe_file_name",
    "slug",
    "staged_folder",
]
