"""Quality of the shipped default SAE on text its trainer never saw, measured on exactly the
tokens the encoder pools (massive-norm tokens, which it leaves out, are left out of FVU and kept
as they are for loss recovered): documents of the training datasets left out of the recipe's
samples (in neither its training nor its validation split), plain and chat-wrapped, whole news
articles (not only paragraphs), and whole datasets from outside the training mix
(`leftout_text.py`: dialogue, documentation prose, code). Prints FVU, L0, the share of latents
that never fire on the group's tokens, and loss recovered per group.

    .venv/bin/python benchmarks/sae_quality.py [--docs 300] [--sae DIR] [--groups a,b]
        [--extras DIR] [--tokens 100000]

``--extras DIR`` adds a group per file of `recipes/build_training_extras.py` that the SAE was
trained on (code and dialogue for the default SAE since 2026-12-03; pass the folder that script
wrote): the documents of that file its recipe's sample did not take. ``--tokens N`` takes
documents until each group has N tokens and skips loss recovered (one pass through the reader):
the share of latents that never fire in N tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from leftout_text import LEFT_OUT

from saeembed.data import prefer_local_hh_rlhf
from saeembed.pretrained import PRETRAINED_DIR
from saeembed.reader import load_reader
from saeembed.sae import load_sae
from saeembed.train import evaluate_sae
from saeembed.train.recipe import SourceSpec, source_texts

# the shared HH-RLHF copy beside the checkout
prefer_local_hh_rlhf(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hh-rlhf")

DEFAULT = PRETRAINED_DIR / "smollm2-135m-instruct-l15-8k"


def trained_caps(sae) -> dict[str, int | None]:
    """The document cap of each source the SAE was trained on, as the training recipe recorded
    it in the config (`recipe.py` writes ``extra.evaluation.sources``), by dataset name or file
    name: the in-mix groups take the documents beyond it."""
    sources = sae.cfg.extra.get("evaluation", {}).get("sources")
    if not sources:
        sys.exit(f"{sae.cfg.source} has no training record; its in-mix groups are unknown")
    return {Path(s["ref"].removeprefix("data:")).name: s["max_docs"] for s in sources}


def candidate_groups(extras: Path | None) -> dict[str, tuple[str, str, str | None]]:
    """Each group's source (``{}`` stands for the document cap the SAE's recipe gave that source),
    its chat wrapping, and the name of the source whose cap it takes (None: no cap needed)."""
    groups = {
        "in mix: rotten-tomatoes": ("data:rotten-tomatoes#{}", "none", "rotten-tomatoes"),
        "in mix: news paragraphs": ("data:news-articles#{}", "none", "news-articles"),
        "in mix: whole news articles": ("whole:data:news-articles", "none", None),
        "in mix: hh-rlhf responses (assistant)": (
            "assistant:data:hh-rlhf-harmless#{}",
            "assistant",
            "hh-rlhf-harmless",
        ),
        **{f"left out: {name}": (name, "none", None) for name in LEFT_OUT},
    }
    for path in sorted(extras.glob("*.parquet")) if extras else []:
        groups[f"extras: {path.stem}"] = (f"{path}#{{}}", "none", path.name)
    return groups


def with_training_caps(
    groups: dict[str, tuple[str, str, str | None]], sae
) -> dict[str, tuple[str, str]]:
    """The groups' sources with the SAE's training caps filled in; the training record is read
    only when a group needs it, and an extras file the SAE was not trained on is skipped."""
    caps = trained_caps(sae) if any(key for _, _, key in groups.values()) else {}
    ready = {}
    for name, (spec, chat, key) in groups.items():
        if key is not None and key not in caps:
            print(f"skipping {name}: {key} is not in this SAE's training mix", file=sys.stderr)
            continue
        ready[name] = (spec.format(caps[key]) if key else spec, chat)
    return ready


def unseen_texts(spec: str, n: int, seed: int = 1) -> list[str]:
    """Up to ``n`` texts of the source that the recipe's capped, seeded sample did not take."""
    sampled = SourceSpec.parse(spec)
    trained = set(source_texts(sampled, passages="paragraph", seed=0))
    everything = source_texts(SourceSpec(sampled.ref, sampled.chat), passages="paragraph", seed=0)
    rest = [t for t in everything if t not in trained]
    picked = np.random.default_rng(seed).choice(len(rest), min(n, len(rest)), replace=False)
    return [rest[i] for i in sorted(picked)]


def first_tokens(texts: list[str], tokenizer, n_tokens: int, max_tokens: int = 256) -> list[str]:
    """The leading texts that together hold ``n_tokens`` tokens (each cut to ``max_tokens``)."""
    taken, total = [], 0
    for text in texts:
        if total >= n_tokens:
            break
        taken.append(text)
        total += min(len(tokenizer(text, add_special_tokens=False)["input_ids"]), max_tokens)
    return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=None, help="documents per group (300)")
    parser.add_argument(
        "--tokens", type=int, help="documents until this many tokens per group; no loss recovered"
    )
    parser.add_argument("--sae", default=str(DEFAULT))
    parser.add_argument(
        "--all-tokens",
        action="store_true",
        help="count massive-norm tokens too (FVU) and replace them too (loss recovered)",
    )
    parser.add_argument("--groups", default=None, help="comma-separated substrings of group names")
    parser.add_argument(
        "--extras", type=Path, help="folder written by recipes/build_training_extras.py"
    )
    args = parser.parse_args()
    n_docs = args.docs or (100_000 if args.tokens else 300)
    sae = load_sae(args.sae)
    reader = load_reader("default", device="auto")
    groups = candidate_groups(args.extras)
    if args.groups:
        wanted = args.groups.split(",")
        groups = {k: v for k, v in groups.items() if any(w in k for w in wanted)}
    groups = with_training_caps(groups, sae)
    print(f"SAE {sae.cfg.source} (layer {sae.cfg.layer}, {sae.cfg.d_sae} latents, k={sae.cfg.k})")
    print(
        f"{'group':<42}{'docs':>6}{'tokens':>8}{'FVU':>7}{'L0':>6}{'unused':>7}{'massive':>8}{'loss rec.':>10}{'s':>6}"
    )
    results = {}
    for name, (spec, chat) in groups.items():
        if spec in LEFT_OUT:
            texts = LEFT_OUT[spec](n_docs)
        elif spec.startswith("whole:"):
            from saeembed.data import load_dataset

            articles = load_dataset(spec.removeprefix("whole:data:"))["text"].to_list()
            picked = np.random.default_rng(1).choice(
                len(articles), min(n_docs, len(articles)), replace=False
            )
            texts = [articles[i] for i in sorted(picked)]
        else:
            texts = unseen_texts(spec, n_docs)
        if args.tokens:
            texts = first_tokens(texts, reader.tokenizer, args.tokens)
        start = time.perf_counter()
        fig = evaluate_sae(
            sae,
            reader,
            sae.cfg.layer,
            texts,
            max_tokens=256,
            chat=chat,
            max_norm_ratio=None if args.all_tokens else 10.0,
            pooled_only=not args.all_tokens,
            with_loss=not args.tokens,
        )
        secs = time.perf_counter() - start
        results[name] = fig
        print(
            f"{name:<42}{len(texts):>6}{fig['n_tokens']:>8}{fig['fvu']:>7.3f}{fig['l0']:>6.1f}"
            f"{fig['dead_fraction']:>7.1%}{fig['n_outliers']:>8}{fig.get('loss_recovered', np.nan):>10.3f}{secs:>6.0f}"
        )
    print(json.dumps(results, default=float))


if __name__ == "__main__":
    main()
