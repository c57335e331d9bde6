"""Where saeembed keeps what it fetches: one cache directory, `$SAEEMBED_HOME` or the platform's
user cache (`~/.cache/saeembed` on Linux), never inside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def saeembed_home() -> Path:
    """The cache root, created on first use."""
    root = os.environ.get("SAEEMBED_HOME")
    path = Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("saeembed"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(*parts: str) -> Path:
    """A sub-directory of the cache root (e.g. ``cache_dir("models")``), created on first use."""
    path = saeembed_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
