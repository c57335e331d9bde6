"""Which dictionary for a corpus? The default residual SAE against a semi-NMF of the MLP fitted
to the corpus and a transcoder, on the same reader and the same documents, in one run.

For each dictionary (the default SAE always; ``--snmf DIR`` and ``--transcoder DIR`` from
`saeembed sae train --kind snmf|transcoder`):

1. **What it reconstructs** (each its own site: the residual stream, the MLP's hidden
   activations, the MLP's output), on held-out documents no dictionary was fitted on (windows of
   the 2012 convention speeches and statements of the 2016 debates): FVU, L0, dead features,
   and loss recovered when spliced into the reader; its fit time as recorded in the dictionary.
2. **Encoding speed**: tokens/s encoding the planted-difference corpora (same documents, same
   token budget, this machine).
3. **Planted differences** in long passages (the task of `benchmarks/diff_measures.py`:
   ``--n-side`` news windows a side, 10% of side A replaced by news about religion, or by
   convention speeches): over ``--seeds`` seeds, is the carrier (the top concept of a diff of
   the other donors against side B) among the first 5 concepts enriched in A, and how many
   concepts does the null diff of two random halves report (all false)?
   And **themes** (`benchmarks/themes.py`'s judgement, `diff --by themes`): is the planted
   kind of document (religion news, convention speeches) a significant theme holding at least
   60% of the planted windows with at least 60% purity, and how many themes do null halves
   report (all false)?
4. **Retrieval against dense** (the queries of `benchmarks/retrieval.py` on tweets and Commons
   speeches: by example, 20 documents of a tweet outlet or a Commons party whose separating
   concepts score the rest; by phrase, the 5 phrases about these corpora, scored as `search`
   does) as mean average precision, beside MiniLM on the same documents.
5. **Names**: the store's names (local names; the shipped ones where the default SAE's fit),
   scored by the embedding scorer on held-out documents they were not made from, with the
   shuffled-name control (as `benchmarks/local_names.py`).

    .venv/bin/python benchmarks/dictionaries.py --snmf DIR [--transcoder DIR] [--seeds 5]

Each dictionary's corpora are encoded once into $SAEEMBED_HOME/stores/bench-dict-<hash>.duckdb
(several minutes per dictionary on 2 CPU cores). Markdown tables on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from diff_measures import SETTINGS, corpora, ids_of, trial  # noqa: E402
from explore_data import OUTLETS  # noqa: E402
from explore_data import corpora as labelled_corpora  # noqa: E402
from retrieval import MORE_PHRASES, PHRASES  # noqa: E402

from saeembed.api import EncodingOptions, encode  # noqa: E402
from saeembed.data import load_dataset  # noqa: E402
from saeembed.home import cache_dir  # noqa: E402
from saeembed.sae import load_sae  # noqa: E402
from saeembed.store import Store  # noqa: E402

N_BASE = 500  # news windows in the planted-difference corpora
MAX_TOKENS = 256


def held_out_texts(n: int = 200) -> list[str]:
    """Documents of two datasets no dictionary here is fitted on."""
    speeches = load_dataset("convention-2012", split_passages="window", max_tokens=200)
    debates = load_dataset("debates-2016").filter(pl.col("text").str.len_chars() > 200)
    texts = speeches["text"].to_list()[: n // 2] + debates["text"].to_list()[: n // 2]
    return [t for t in texts if t.strip()]


def quality(name: str, spec: str | None, texts: list[str]) -> dict:
    """Section 1: FVU, L0, dead features and loss recovered on ``texts``."""
    from saeembed.encoding.core import resolve_sae
    from saeembed.reader import load_reader
    from saeembed.train.evaluate import evaluate_sae

    reader = load_reader("default", device="cpu", dtype="float32")
    sae = resolve_sae(spec, reader.model_id)
    figures = evaluate_sae(sae, reader, sae.cfg.layer, texts, max_tokens=MAX_TOKENS)
    fit = sae.cfg.extra.get("fit") or {}
    training = sae.cfg.extra.get("evaluation") or {}
    kind = (
        "snmf" if sae.cfg.activation == "snmf" else "transcoder" if sae.cfg.output_site else "sae"
    )
    return {
        "dictionary": name,
        "kind": kind,
        "site": sae.cfg.site + (f" -> {sae.cfg.output_site}" if sae.cfg.output_site else ""),
        "features": sae.cfg.d_sae,
        "k": sae.cfg.k,
        "fit_s": training.get("train_seconds", fit.get("seconds")),
        **{k: figures[k] for k in ("fvu", "l0", "dead_fraction", "loss_recovered")},
    }


def build_store(spec: str | None) -> tuple[Path, float]:
    """The dictionary's benchmark store, encoding what is missing; tokens/s of the planted
    corpora's encode (None when they were encoded by an earlier run)."""
    sha = "default" if spec is None else load_sae(spec).content_hash()[:12]
    path = cache_dir("stores") / f"bench-dict-{sha}.duckdb"
    encoding = EncodingOptions(sae=spec, max_tokens=MAX_TOKENS, dtype="float32")
    tokens, seconds = 0, 0.0
    for corpus, texts in corpora(N_BASE).items():
        if corpus.startswith("reviews"):
            continue
        result = encode(texts, path, corpus=corpus, encoding=encoding)
        report = result.encoding
        if report.n_encoded:
            tokens += report.n_tokens
            seconds += report.seconds
    for corpus, frame in labelled_corpora().items():
        if corpus in ("tweets", "commons"):
            encode(frame, path, corpus=corpus, text_col="text", encoding=encoding)
    return path, (tokens / seconds if seconds else None)


def planted(path: Path, seeds: int, measure: str, test: str, n_side: int = 150) -> dict:
    """Section 3 for one measure: carrier in the top 5 (of ``seeds``) and null false concepts
    per setting."""
    out = {}
    with Store(path) as store:
        for setting in ("long-topic", "long-register"):
            base_corpus, donor_corpus = SETTINGS[setting]
            base, donor = ids_of(store, base_corpus), ids_of(store, donor_corpus)
            top5, false = 0, []
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                result = trial(store, rng, base, donor, n_side, 0.10, measure, test)
                top5 += result["rank"] is not None and result["rank"] <= 5
                false.append(result["false"])
            out[setting] = (top5, float(np.mean(false)))
    return out


def themes(path: Path, seeds: int, n_side: int) -> dict:
    """Section 3b: planted kinds of documents found as a theme (`benchmarks/themes.py`'s
    judgement) per genre, and significant themes on null halves."""
    from argparse import Namespace

    from themes import outcomes

    args = Namespace(seeds=seeds, first_seed=0, n_side=n_side, plant=0.10, concept_themes=None)
    out = {}
    with Store(path, read_only=True) as store:
        for genre in ("null", "religion", "convention"):
            found = outcomes(store, genre, args)
            if genre == "null":
                out["themes null"] = sum(o["significant_a"] + o["significant_b"] for o in found)
            else:
                out[f"themes {genre}"] = f"{sum(o['found'] for o in found)}/{seeds}"
    return out


def labelled_candidates(store: Store, encoder, corpus: str, column: str) -> pl.DataFrame:
    """The encoded documents of ``corpus`` (`candidates`) with their metadata ``column`` as
    ``v``, the ground truth of a retrieval query."""
    from saeembed.analysis.retrieve import candidates

    meta = store.sql(
        f"SELECT doc_id, any_value(meta->>'{column}') AS v FROM documents "
        "WHERE corpus = ? GROUP BY doc_id",
        [corpus],
    )
    docs = candidates(store, encoder, corpus, None)
    return docs.join(meta, on="doc_id", how="left", maintain_order="left")


def retrieval(path: Path) -> dict:
    """Section 4: mean average precision of the example queries, concepts and MiniLM."""
    from sklearn.metrics import average_precision_score

    from saeembed.analysis.concepts import choose_concepts
    from saeembed.analysis.retrieve import dense_scores, meaning_scores, sae_scores
    from saeembed.embedder import load_embedder
    from saeembed.embedding_cache import document_embeddings
    from saeembed.errors import InputError

    minilm = load_embedder("default")
    aps = {"sae": [], "dense": []}
    with Store(path) as store:
        encoder = store.resolve_encoder(None)
        for corpus, column, values in (("tweets", "outlet", OUTLETS), ("commons", "party",
                                                                      ["Lab", "Con"])):  # fmt: skip
            docs = labelled_candidates(store, encoder, corpus, column)
            vectors = document_embeddings(
                store, docs["doc_id"].to_numpy(), docs["text"].to_list(), minilm
            )
            for value in values:
                members = np.flatnonzero(docs["v"].to_numpy() == value)
                examples = np.random.default_rng(0).choice(members, 20, replace=False)
                rest = np.setdiff1d(np.arange(docs.height), examples)
                relevant = docs["v"].to_numpy()[rest] == value
                positives = docs["doc_id"].to_numpy()[examples].tolist()
                try:
                    choice = choose_concepts(store, encoder, positives=positives, corpus=corpus,
                                             top=20)  # fmt: skip
                    sae = sae_scores(store, encoder, docs, choice, "max")[0]
                except InputError:
                    sae = np.zeros(docs.height)
                centroid = vectors[examples].mean(axis=0)
                dense = vectors @ (centroid / np.linalg.norm(centroid))
                aps["sae"].append(average_precision_score(relevant, sae[rest]))
                aps["dense"].append(average_precision_score(relevant, dense[rest]))
        phrase = {"phrase sae": [], "phrase dense": []}
        for corpus, query, column, value in PHRASES + MORE_PHRASES:
            if corpus not in ("tweets", "commons"):
                continue
            docs = labelled_candidates(store, encoder, corpus, column)
            relevant = (docs["v"] == value).to_numpy()
            # what `search` does: by meaning through evidence embeddings where the concepts
            # have them, else the concepts whose names match the phrase
            found = meaning_scores(store, encoder, docs, query, "max", minilm)
            if found is None:
                try:
                    choice = choose_concepts(store, encoder, phrase=query, top=10)
                    found = sae_scores(store, encoder, docs, choice, "max")
                except InputError:  # no concept's name meets the phrase: no SAE ranking
                    found = (np.zeros(docs.height), [])
            phrase["phrase sae"].append(average_precision_score(relevant, found[0]))
            dense = dense_scores(store, docs, query, minilm)
            phrase["phrase dense"].append(average_precision_score(relevant, dense))
    return {k: float(np.mean(v)) for k, v in {**aps, **phrase}.items()}


def names(path: Path, sample: int = 800) -> dict:
    """Section 5: embedding-scorer median of the names the store shows, on held-out documents,
    and of the shuffled-name control."""
    from saeembed.embedder import load_embedder
    from saeembed.labels.evidence import load_evidence
    from saeembed.labels.local import LocalConfig
    from saeembed.labels.naming import decide_names
    from saeembed.labels.scoring import embedding_scores

    with Store(path, read_only=True) as store:
        encoder = store.resolve_encoder(None)
        decided = decide_names(store, encoder, LocalConfig(skip_heldout=True))
        evidence = load_evidence(store, encoder)
    shown = {
        f: label
        for f, label in zip(decided["feature"], decided["label"], strict=True)
        if label and evidence.n_active(f) > 0
    }
    rng = np.random.default_rng(0)
    picked = sorted(rng.choice(sorted(shown), min(sample, len(shown)), replace=False).tolist())
    scores, control = embedding_scores(
        evidence, {f: shown[f] for f in picked}, load_embedder("default"), control_seed=0
    )
    s = np.array([v for v in scores.values() if v is not None])
    c = np.array([v for v in control.values() if v is not None])
    return {"scored": len(s), "median": float(np.median(s)), "share_07": float((s >= 0.7).mean()),
            "control": float(np.median(c))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snmf", help="a semi-NMF directory (saeembed sae train --kind snmf)")
    parser.add_argument("--transcoder", help="a transcoder directory or published transcoder")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-side", type=int, default=150, help="documents per side, at most 250")
    parser.add_argument("--skip", nargs="*", default=[], choices=["quality", "planted", "themes",
                                                                  "retrieval", "names"])  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    dictionaries = [("default SAE", None)]
    dictionaries += [("semi-NMF", args.snmf)] if args.snmf else []
    dictionaries += [("transcoder", args.transcoder)] if args.transcoder else []
    texts = held_out_texts()
    rows = []
    for name, spec in dictionaries:
        print(f"{name}: building its store", file=sys.stderr)
        started = time.perf_counter()
        path, speed = build_store(spec)
        row = {"dictionary": name, "tok/s": speed, "store_s": time.perf_counter() - started}
        if "quality" not in args.skip:
            row.update(quality(name, spec, texts))
        if "planted" not in args.skip:
            for measure, test in (("strong", "proportion"), ("mean", "welch")):
                found = planted(path, args.seeds, measure, test, args.n_side)
                for setting, (top5, false) in found.items():
                    row[f"{setting} {measure}"] = f"{top5}/{args.seeds} (null {false:.1f})"
        if "themes" not in args.skip:
            row.update(themes(path, args.seeds, args.n_side))
        if "retrieval" not in args.skip:
            row.update({f"AP {k}": v for k, v in retrieval(path).items()})
        if "names" not in args.skip:
            row.update({f"names {k}": v for k, v in names(path).items()})
        rows.append(row)
        print(row, file=sys.stderr)
    table = pl.DataFrame(rows)
    print("| " + " | ".join(table.columns) + " |")
    print("|" + "---|" * len(table.columns))
    for row in table.iter_rows():
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
