"""Build the corpus the default SAE's shipped labels are computed on: a seeded sample of every
named dataset (long documents split into paragraphs), HH-RLHF responses included as plain text,
and, when given the folder of `recipes/build_training_extras.py`, code blocks, conversations and,
from a `--broad` folder, technical prose (seeded samples drawn apart from the SAE's own, seed 1
against its 0).

    python recipes/build_label_corpus.py OUT.parquet [EXTRAS_DIR]

Each document is later encoded with `--max-tokens 128`: labels describe passage-sized units.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from saeembed.data import prefer_local_hh_rlhf
from saeembed.train.recipe import SourceSpec, source_texts

# the shared HH-RLHF copy beside the checkout
prefer_local_hh_rlhf(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hh-rlhf")

SOURCES = [
    "data:rotten-tomatoes#8000",
    "data:news-articles#2000",
    "data:health-tweets#5000",
    "data:guardian-headlines",
    "data:debates-2016",
    "data:commons-speeches#800",
    "data:convention-2012#500",
    "data:hh-rlhf-harmless",
]


EXTRAS = ["code.parquet#2000", "dialogue.parquet#800"]
BROAD_EXTRAS = ["prose.parquet#1200"]  # only a --broad folder has them


def main(out: str, extras: str | None = None) -> None:
    frames = []
    refs = list(SOURCES)
    if extras:
        broad = [r for r in BROAD_EXTRAS if (Path(extras) / r.partition("#")[0]).exists()]
        refs += [str(Path(extras) / ref) for ref in EXTRAS + broad]
    for ref in refs:
        texts = source_texts(SourceSpec.parse(ref), passages="paragraph", seed=1)
        name = Path(ref.removeprefix("data:").partition("#")[0]).stem
        frames.append(pl.DataFrame({"text": texts, "source": [name] * len(texts)}))
        print(f"{name}: {len(texts):,} documents", file=sys.stderr)
    corpus = pl.concat(frames).unique("text", keep="first", maintain_order=True)
    corpus.write_parquet(out)
    print(f"{out}: {corpus.height:,} documents", file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:3])
