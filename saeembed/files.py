"""Atomic writes: a file or folder appears under its final name complete, or not at all.

Every writer in saeembed that replaces a file (caches, exports, checkpoints, extracted models)
goes through `atomic_path`: it hands out a hidden sibling named ``.NAME.PID-XXXXXXXX.partial``, and
only when the block finishes without an error renames it over ``NAME`` (a killed process leaves
at most such a hidden ``.partial`` sibling, never a truncated file under the real name; the next
write of ``NAME`` removes the siblings of processes that are gone).
`write_text_atomic` is the one-call form for a text file; `check_output` checks an output path
before any work is done."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from saeembed.errors import InputError

PARTIAL_SUFFIX = ".partial"


def check_output(path: str | Path) -> Path:
    """``path`` as a file to write, checked before any work: not a directory, and in a folder
    that exists (a mistyped folder is an error, not a folder created on the way)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(
            f"{path} is a directory; give a file name inside it, such as {path / 'out'}"
        )
    if not path.parent.is_dir():
        raise InputError(
            f"output directory {path.parent} does not exist; create it (mkdir -p {path.parent}) "
            "or choose another path"
        )
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_partials(path: Path) -> int:
    """Delete the hidden ``.partial`` siblings of ``path`` left by processes that no longer run
    (a killed writer's leftovers); a live writer's is kept. Returns how many were removed."""
    prefix = f".{path.name}."
    removed = 0
    for sibling in path.parent.glob(f"{glob.escape(prefix)}*{PARTIAL_SUFFIX}"):
        pid = sibling.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            _remove(sibling)
            removed += 1
    return removed


@contextmanager
def atomic_path(path: str | Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary sibling of ``path`` to write (a name not yet taken, or with
    ``directory=True`` an empty folder); on success it replaces ``path`` (a folder already at ``path``
    is removed first), on any error it is deleted and the error propagates. Creates the parent
    folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        if directory and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through `atomic_path`; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
