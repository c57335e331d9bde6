"""Real text from outside the default SAE's training mix, for measuring how it generalises: whole
datasets its recipe never sampled from.

- ``dialogue``: the English conversations of the `chatterbot-corpus==1.3.3` wheel (PyPI), one
  conversation (its turns joined by line breaks) per document;
- ``docs-prose``: the reference prose of Python's own documentation (`pydoc_data.topics`, in the
  standard library), one paragraph group of about 1,000 characters per document;
- ``code``: Python source files of the standard library, one file's first 1,500 characters per
  document.
"""

from __future__ import annotations

import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import yaml

from saeembed.wheels import fetch_wheel

CHATTERBOT = "chatterbot-corpus==1.3.3"


def _sample(texts: list[str], n: int, seed: int) -> list[str]:
    texts = [t for t in dict.fromkeys(texts) if t.strip()]
    if len(texts) <= n:
        return texts
    picked = np.random.default_rng(seed).choice(len(texts), n, replace=False)
    return [texts[i] for i in sorted(picked)]


def dialogue(n: int, seed: int = 0) -> list[str]:
    texts = []
    with zipfile.ZipFile(fetch_wheel(CHATTERBOT)) as zf:
        for name in sorted(zf.namelist()):
            if "/data/english/" not in name or not name.endswith(".yml"):
                continue
            data = yaml.safe_load(zf.read(name)) or {}
            for turns in data.get("conversations") or []:
                turns = [str(t).strip() for t in turns if t is not None]
                if len(turns) >= 2:
                    texts.append("\n".join(turns))
    return _sample(texts, n, seed)


def docs_prose(n: int, seed: int = 0, size: int = 1000) -> list[str]:
    from pydoc_data.topics import topics

    texts = []
    for body in topics.values():
        chunk = ""
        for paragraph in body.split("\n\n"):
            paragraph = " ".join(paragraph.split())
            if not paragraph:
                continue
            chunk = f"{chunk}\n\n{paragraph}" if chunk else paragraph
            if len(chunk) >= size:
                texts.append(chunk)
                chunk = ""
        if len(chunk) > size // 4:
            texts.append(chunk)
    return _sample(texts, n, seed)


def code(n: int, seed: int = 0, size: int = 1500) -> list[str]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in lib.glob("*.py") if p.stat().st_size > size)
    texts = [p.read_text(encoding="utf-8", errors="replace")[:size] for p in files]
    return _sample(texts, n, seed)


LEFT_OUT = {
    "dialogue (chatterbot)": dialogue,
    "docs prose (pydoc)": docs_prose,
    "code (stdlib)": code,
}

if __name__ == "__main__":
    for name, fn in LEFT_OUT.items():
        texts = fn(1000)
        print(f"{name}: {len(texts)} documents, e.g. {texts[0][:80]!r}", file=sys.stderr)
