"""Quality of the shipped default SAE on text its trainer never saw: documents of the training
datasets left out of the recipe's samples (and so in neither its training nor its validation
split), plain and chat-wrapped. Prints FVU, L0, dead latents and loss recovered per group.

    .venv/bin/python benchmarks/sae_quality.py [--docs 300] [--sae DIR]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from saeembed.pretrained import PRETRAINED_DIR
from saeembed.reader import load_reader
from saeembed.sae import load_sae
from saeembed.train import evaluate_sae
from saeembed.train.recipe import SourceSpec, source_texts

DEFAULT = PRETRAINED_DIR / "smollm2-135m-instruct-l15-8k"


def unseen_texts(spec: str, n: int, seed: int = 1) -> list[str]:
    """Up to ``n`` texts of the source that the recipe's capped, seeded sample did not take."""
    sampled = SourceSpec.parse(spec)
    trained = set(source_texts(sampled, passages="paragraph", seed=0))
    everything = source_texts(SourceSpec(sampled.ref, sampled.chat), passages="paragraph", seed=0)
    rest = [t for t in everything if t not in trained]
    picked = np.random.default_rng(seed).choice(len(rest), min(n, len(rest)), replace=False)
    return [rest[i] for i in sorted(picked)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300, help="documents per group")
    parser.add_argument("--sae", default=str(DEFAULT))
    args = parser.parse_args()
    sae = load_sae(args.sae)
    reader = load_reader("default", device="auto")
    groups = {
        "rotten-tomatoes (plain)": ("data:rotten-tomatoes#8000", "none"),
        "news-articles paragraphs (plain)": ("data:news-articles#3000", "none"),
        "hh-rlhf responses (assistant turn)": ("assistant:data:hh-rlhf-harmless#2000", "assistant"),
    }
    print(f"SAE {sae.cfg.source} (layer {sae.cfg.layer}, {sae.cfg.d_sae} latents, k={sae.cfg.k})")
    print(
        f"{'group':<38}{'docs':>6}{'tokens':>8}{'FVU':>7}{'L0':>6}{'dead':>7}{'loss rec.':>10}{'s':>6}"
    )
    results = {}
    for name, (spec, chat) in groups.items():
        texts = unseen_texts(spec, args.docs)
        start = time.perf_counter()
        fig = evaluate_sae(sae, reader, sae.cfg.layer, texts, max_tokens=256, chat=chat)
        secs = time.perf_counter() - start
        results[name] = fig
        print(
            f"{name:<38}{len(texts):>6}{fig['n_tokens']:>8}{fig['fvu']:>7.3f}{fig['l0']:>6.1f}"
            f"{fig['dead_fraction']:>7.1%}{fig['loss_recovered']:>10.3f}{secs:>6.0f}"
        )
    print(json.dumps(results, default=float))


if __name__ == "__main__":
    main()
