"""Which residual-stream layer of the default reader carries the most linearly decodable
document-level concepts? A check on the shipped SAE's layer (15 of SmolLM2-135M-Instruct's 30).

    .venv/bin/python benchmarks/layer_choice.py [--docs 600] [--max-tokens 64] [--seed 0]
        [--threads N]   # on a CPU shared with another job, --threads 1 can be twice as fast

Five labelled tasks, about ``--docs`` documents each (balanced by class, seeded, exact duplicate
texts dropped): rotten-tomatoes sentiment (fresh vs rotten), rotten-tomatoes register (review vs
plot summary), convention-2012 party (democrat vs republican, on 64-word windows: blank-line
paragraphs give only 283 passages; windows of one speech never straddle train and test),
news-articles outlet (9 classes) and health-tweets outlet (16 classes). Each document is read as
plain text (BOS prefix, its first ``--max-tokens`` tokens) and the output of every decoder block
is mean-pooled over the document's own tokens (never the BOS), all layers from one forward pass.
Per layer and task, an L2 logistic-regression probe on features standardised within each training
fold is scored by 5-fold stratified cross-validation: accuracy for the binary tasks, macro-F1 for
the outlet tasks. The probe minimises scikit-learn's ``LogisticRegression(C=1.0)`` objective with
its tolerance, fitted by L-BFGS in torch so that the benchmark needs nothing beyond saeembed's
dependencies. A TF-IDF bag-of-words probe (scikit-learn's ``TfidfVectorizer`` defaults) on the
same truncated text gives context. Prints a markdown table to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from saeembed.data import load_dataset
from saeembed.inputs.tokens import (
    Tokenized,
    assemble_batch,
    plan_batches,
    tokenize_documents,
    wrapping_for,
)
from saeembed.reader import Reader, load_reader

log = logging.getLogger("layer_choice")

SHIPPED_LAYER = 15
FOLDS = 5
C = 1.0
MAX_ITER = 2000
TOL = 1e-4  # scikit-learn's default tol, its L-BFGS gradient tolerance
NEAR_BEST = 1.0  # points: layers whose mean score is within this of the best are marked
_WORD = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern


@dataclass
class Task:
    """One probing task: texts, integer labels, and groups that must stay within one fold."""

    name: str
    metric: str  # "acc" or "macro-F1"
    texts: list[str]
    labels: np.ndarray
    groups: np.ndarray
    classes: list[str]


# ------------------------------------------------------------------------------------- tasks


def balanced_sample(frame: pl.DataFrame, label: str, n: int, seed: int) -> pl.DataFrame:
    """Up to ``n // n_classes`` rows of every class, seeded; duplicate texts dropped first."""
    frame = frame.unique("text", keep="first", maintain_order=True)
    per_class = max(1, n // frame[label].n_unique())
    parts = [
        part.sample(min(per_class, part.height), seed=seed)
        for _, part in frame.group_by(label, maintain_order=True)
    ]
    return pl.concat(parts).sort(label, maintain_order=True)


def make_task(
    name: str, frame: pl.DataFrame, label: str, n: int, seed: int, group: str | None = None
) -> Task:
    sample = balanced_sample(frame, label, n, seed)
    classes = sorted(sample[label].unique().to_list())
    labels = np.array([classes.index(v) for v in sample[label].to_list()], dtype=np.int64)
    groups = sample[group].to_numpy() if group else np.arange(sample.height)
    metric = "acc" if len(classes) == 2 else "macro-F1"
    return Task(name, metric, sample["text"].to_list(), labels, groups, classes)


def build_tasks(n: int, seed: int) -> list[Task]:
    reviews = load_dataset("rotten-tomatoes")
    register = reviews.with_columns(
        pl.when(pl.col("category") == "plot")
        .then(pl.lit("plot"))
        .otherwise(pl.lit("review"))
        .alias("register")
    )
    speeches = load_dataset("convention-2012", split_passages="window", max_tokens=64)
    return [
        make_task("sentiment", reviews.filter(pl.col("category") != "plot"), "category", n, seed),
        make_task("register", register, "register", n, seed),
        make_task("party", speeches, "party", n, seed, group="source_row"),
        make_task("news outlet", load_dataset("news-articles"), "outlet", n, seed),
        make_task("tweet outlet", load_dataset("health-tweets"), "outlet", n, seed),
    ]


# ---------------------------------------------------------------------------------- features


@torch.inference_mode()
def pooled_layers(reader: Reader, docs: list[Tokenized], batch_tokens: int) -> torch.Tensor:
    """``[n_layers, n_docs, d_model]``: every block's output, mean-pooled over each document's
    own tokens, from one forward pass per batch. Hooks on the blocks rather than
    ``output_hidden_states``, whose last entry is taken after the final norm."""
    wrapping = wrapping_for(reader.tokenizer)
    out = torch.zeros(reader.n_layers, len(docs), reader.d_model)
    captured: list[torch.Tensor] = []
    weights = torch.empty(0)  # [batch, seq]: 1/n on a document's own tokens, 0 elsewhere

    def hook(_module, _inputs, output) -> None:  # blocks run in order: captured[i] is block i
        hidden = output[0] if isinstance(output, tuple) else output
        captured.append(torch.einsum("bs,bsd->bd", weights, hidden.float()).cpu())

    handles = [block.register_forward_hook(hook) for block in reader.layers]
    batches = plan_batches([len(d.ids) + len(wrapping.prefix) for d in docs], batch_tokens)
    start = time.perf_counter()
    try:
        for b, batch in enumerate(batches, start=1):
            ids, own = assemble_batch(
                [docs[i] for i in batch], wrapping, reader.tokenizer, reader.device
            )
            weights = own / own.sum(1, keepdim=True)
            captured.clear()
            reader.model.model(input_ids=ids, use_cache=False)  # no mask: right padding
            out[:, batch] = torch.stack(captured)
            if b % 10 == 0 or b == len(batches):
                elapsed = time.perf_counter() - start
                log.info("forward: batch %d/%d, %.0f s", b, len(batches), elapsed)
    finally:
        for handle in handles:
            handle.remove()
    return out


def truncated_text(text: str, doc: Tokenized) -> str:
    """The part of ``text`` that the reader saw (its first max-tokens tokens)."""
    return text[: int(doc.offsets[-1, 1])] if len(doc.offsets) else ""


# ------------------------------------------------------------------------------------ probes


def fold_ids(labels: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """Stratified fold of every document; all documents of one group share a fold. Groups are
    shuffled, then dealt, largest first, to the fold holding the fewest documents of their class."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=np.int64)
    uniq, first, sizes = np.unique(groups, return_index=True, return_counts=True)
    order = rng.permutation(len(uniq))
    order = order[np.argsort(-sizes[order], kind="stable")]
    filled = np.zeros((labels.max() + 1, FOLDS), dtype=np.int64)
    for g in order:
        cls = labels[first[g]]
        fold = int(np.argmin(filled[cls]))
        folds[groups == uniq[g]] = fold
        filled[cls, fold] += sizes[g]
    return folds


def fit_logreg(x: torch.Tensor, y: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, ...]:
    """L2 logistic regression on ``x [L, n, d]`` for L independent problems sharing labels ``y``;
    minimises mean loss + ||W||^2 / (2 C n) (scikit-learn's objective scaled by 1/n, intercept not
    penalised; sigmoid for two classes, softmax otherwise). Returns (W [L, d, k], b [L, 1, k])."""
    n_layers, n, d = x.shape
    k = 1 if n_classes == 2 else n_classes
    w = torch.zeros(n_layers, d, k, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(n_layers, 1, k, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=MAX_ITER,
        tolerance_grad=TOL,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = torch.baddbmm(b, x, w)
        if k == 1:
            target = y.to(x.dtype).expand(n_layers, n)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits[..., 0], target, reduction="sum"
            )
        else:
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, k), y.repeat(n_layers), reduction="sum"
            )
        loss = loss / n + (w**2).sum() / (2 * C * n)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def predict(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    logits = torch.baddbmm(b, x, w)
    return (logits[..., 0] > 0).long() if w.shape[-1] == 1 else logits.argmax(-1)


def score(pred: np.ndarray, truth: np.ndarray, metric: str, n_classes: int) -> float:
    """Accuracy, or macro-F1 over all classes (a class never predicted nor present scores 0)."""
    if metric == "acc":
        return float((pred == truth).mean())
    f1 = []
    for c in range(n_classes):
        tp = np.sum((pred == c) & (truth == c))
        denom = np.sum(pred == c) + np.sum(truth == c)
        f1.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1))


def standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = (
        train.mean(1, keepdim=True),
        train.std(1, correction=0, keepdim=True).clamp_min(1e-6),
    )
    return (train - mean) / std, (test - mean) / std


def cross_validate(
    features: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]],
    task: Task,
    folds: np.ndarray,
) -> np.ndarray:
    """``[FOLDS, L]`` test scores; ``features(train_idx, test_idx)`` gives ``[L, n, d]`` tensors."""
    y = torch.from_numpy(task.labels)
    scores = []
    for fold in range(FOLDS):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        x_train, x_test = features(train, test)
        w, b = fit_logreg(x_train, y[train], len(task.classes))
        pred = predict(w, b, x_test).numpy()
        truth = task.labels[test]
        scores.append([score(p, truth, task.metric, len(task.classes)) for p in pred])
    return np.array(scores)


def layer_features(pooled: torch.Tensor) -> Callable:
    def features(train: np.ndarray, test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return standardise(pooled[:, train].double(), pooled[:, test].double())

    return features


def tfidf_features(texts: list[str]) -> Callable:
    """TF-IDF (scikit-learn's defaults: lowercase, 2+ char words, smooth idf, L2 rows), with the
    vocabulary and idf fitted on the training fold only."""
    counts = [Counter(_WORD.findall(t.lower())) for t in texts]

    def matrix(rows: np.ndarray, vocab: dict[str, int], idf: torch.Tensor) -> torch.Tensor:
        x = torch.zeros(len(rows), len(vocab), dtype=torch.float64)
        for r, i in enumerate(rows):
            for word, count in counts[i].items():
                if word in vocab:
                    x[r, vocab[word]] = count
        x = x * idf
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def features(train: np.ndarray, test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        df = Counter(word for i in train for word in counts[i])
        vocab = {word: j for j, word in enumerate(sorted(df))}
        idf = torch.tensor([np.log((1 + len(train)) / (1 + df[w])) + 1 for w in vocab])
        return matrix(train, vocab, idf)[None], matrix(test, vocab, idf)[None]

    return features


# ------------------------------------------------------------------------------------ report


def render(tasks: list[Task], layer_scores: np.ndarray, bow: np.ndarray) -> str:
    """Markdown table: rows = layers, columns = tasks + mean (points); best layer and layers
    within NEAR_BEST points of it (by mean) marked, each task's best layer in bold."""
    scores = layer_scores * 100  # [L, T]
    mean = scores.mean(1)
    best = int(mean.argmax())
    head = ["layer", *(f"{t.name} ({t.metric})" for t in tasks), "mean", ""]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * (len(head) - 1) + "---|"]
    for layer, row in enumerate(scores):
        cells = [
            f"**{v:.1f}**" if layer == int(scores[:, t].argmax()) else f"{v:.1f}"
            for t, v in enumerate(row)
        ]
        near = mean[best] - mean[layer] <= NEAR_BEST
        mark = "best" if layer == best else (f"within {NEAR_BEST:g} pt" if near else "")
        if layer == SHIPPED_LAYER:
            mark = f"{mark}, shipped SAE" if mark else "shipped SAE"
        lines.append(f"| {layer} | " + " | ".join(cells) + f" | {mean[layer]:.1f} | {mark} |")
    bow_cells = " | ".join(f"{v * 100:.1f}" for v in bow)
    lines.append(f"| TF-IDF | {bow_cells} | {bow.mean() * 100:.1f} | bag-of-words baseline |")
    return "\n".join(lines)


def summary(tasks: list[Task], fold_scores: np.ndarray) -> str:
    """Best layer, near-best layers, and the shipped layer's gap to the best with its fold SE.
    ``fold_scores`` is ``[FOLDS, L, T]``."""
    mean = fold_scores.mean((0, 2)) * 100
    best = int(mean.argmax())
    near = [int(i) for i in np.flatnonzero(mean[best] - mean <= NEAR_BEST)]
    gap = (fold_scores[:, best] - fold_scores[:, SHIPPED_LAYER]).mean(1) * 100  # [FOLDS]
    se = gap.std(ddof=1) / np.sqrt(FOLDS)
    rank = int((mean > mean[SHIPPED_LAYER]).sum()) + 1
    per_task = ", ".join(
        f"{t.name} {int(fold_scores[:, :, i].mean(0).argmax())}" for i, t in enumerate(tasks)
    )
    return (
        f"best layer by mean: {best} ({mean[best]:.1f}); within {NEAR_BEST:g} pt: {near}\n"
        f"shipped layer {SHIPPED_LAYER}: {mean[SHIPPED_LAYER]:.1f}, rank {rank} of {len(mean)}, "
        f"{gap.mean():.1f} +/- {se:.1f} pt (paired fold SE) below the best\n"
        f"best layer per task: {per_task}"
    )


# -------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=600, help="documents per task (balanced)")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens read per document")
    parser.add_argument("--seed", type=int, default=0, help="sampling and fold seed")
    parser.add_argument("--device", default="cpu", help="reader device (cpu, cuda, auto)")
    parser.add_argument("--batch-tokens", type=int, default=4096, help="padded tokens per batch")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    return parser.parse_args()


def probe_all(
    tasks: list[Task], texts: list[str], docs: list[Tokenized], pooled: torch.Tensor, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Layer-probe scores ``[FOLDS, L, T]`` and TF-IDF scores ``[T]``, on the same folds."""
    index = {text: i for i, text in enumerate(texts)}
    start = time.perf_counter()
    fold_scores, bow = [], []
    for task in tasks:
        rows = np.array([index[t] for t in task.texts])
        folds = fold_ids(task.labels, task.groups, seed)
        fold_scores.append(cross_validate(layer_features(pooled[:, rows]), task, folds))
        seen = [truncated_text(texts[i], docs[i]) for i in rows]
        bow.append(cross_validate(tfidf_features(seen), task, folds).mean())
        log.info("probed %s: %.0f s", task.name, time.perf_counter() - start)
    return np.stack(fold_scores, axis=-1), np.array(bow)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    tasks = build_tasks(args.docs, args.seed)
    texts = sorted({text for task in tasks for text in task.texts})
    log.info("%d tasks, %d distinct documents", len(tasks), len(texts))
    reader = load_reader("default", device=args.device)
    docs = tokenize_documents(reader.tokenizer, texts, args.max_tokens)
    pooled = pooled_layers(reader, docs, args.batch_tokens)
    n_tokens = sum(len(d.ids) for d in docs)
    log.info("forward done: %d tokens, %.0f s", n_tokens, time.perf_counter() - start)
    scores, bow = probe_all(tasks, texts, docs, pooled, args.seed)
    sizes = ", ".join(f"{t.name} {len(t.texts)} ({len(t.classes)} classes)" for t in tasks)
    print(
        f"Linear probes on the mean-pooled output of each block of {reader.model_id}: first "
        f"{args.max_tokens} tokens, {FOLDS}-fold CV, scores in points.\nDocuments: {sizes}; "
        f"{len(texts)} distinct, {n_tokens} tokens.\n"
    )
    print(render(tasks, scores.mean(0), bow))
    print()
    print(summary(tasks, scores))
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
