"""Curating preference data: flagging pairs to relabel, recording decisions, exporting.

`flag_pairs` finds two kinds of suspicious pairs, each with its reasons:

- **against a concept**: the preferred response carries more of a concept the user (or the
  dataset as a whole) says should be punished, or less of one that should be rewarded;
- **model disagrees**: a concept model (k concepts chosen inside each training fold, plus the
  controls) fitted without the pair's fold gives the recorded label a probability below
  ``1 - confidence``; the reasons are the concepts that pushed that pair's prediction most.

`write_queue` writes flagged pairs as a JSONL relabel queue (one object per pair, with empty
``decision``). `apply_decisions` reads decisions back (``keep``, ``flip``, ``a``, ``b``,
``tie``, ``drop``, or a ``new_label``) into the `pair_labels` table under a relabelling name,
never touching the original label. `export_pairs` writes the curated set (JSONL, Parquet or CSV)
with both labels and ``chosen``/``rejected`` columns, ready for the Hugging Face datasets
library."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
from scipy.special import expit

from saeembed.errors import InputError
from saeembed.files import atomic_path
from saeembed.inputs.frames import write_dataset
from saeembed.prefs.fit import PreferenceData
from saeembed.prefs.ingest import load_pairs
from saeembed.prefs.sparse import out_of_fold
from saeembed.store import Store

DECISIONS = {"keep", "flip", "a", "b", "tie", "drop", "set"}
FLAG_COLUMNS = ["pair_id", "label", "flag", "p_label", "reasons", "prompt", "text_a", "text_b"]
QUEUE_FIELDS = ("pair_id", "prompt", "response_a", "response_b", "label", "flags", "p_a",
                "reasons", "decision", "new_label")  # fmt: skip


def _name(feature: int, labels: dict[int, str]) -> str:
    label = labels.get(feature)
    return f"{feature} {label!r}" if label else str(feature)


def against_concepts(
    data: PreferenceData, concepts: dict[int, int], labels: dict[int, str]
) -> pl.DataFrame:
    """Pairs whose preferred response has more of a punished concept (direction -1) or less of
    a rewarded one (+1) than the other response. ``concepts`` maps feature -> direction."""
    rows = []
    preferred_sign = 2 * data.y - 1  # +1 when A was preferred
    for feature, direction in concepts.items():
        column = data.delta[:, feature].toarray().ravel()
        against = np.flatnonzero((column != 0) & (np.sign(column) * preferred_sign * direction < 0))
        word = "punished" if direction < 0 else "rewarded"
        has = "has more of" if direction < 0 else "has less of"
        for i in against:
            rows.append((int(i), f"the preferred response {has} {_name(feature, labels)} ({word})"))
    frame = pl.DataFrame(rows, schema={"row": pl.Int64, "reason": pl.String}, orient="row")
    return frame.group_by("row", maintain_order=True).agg(pl.col("reason").alias("reasons"))


def model_disagreements(
    data: PreferenceData,
    concepts: np.ndarray,
    labels: dict[int, str],
    *,
    k: int | None = 20,
    confidence: float = 0.8,
    n_reasons: int = 3,
) -> tuple[pl.DataFrame, np.ndarray]:
    """Pairs whose out-of-fold probability of the recorded label is below ``1 - confidence``,
    with the concepts that pushed the prediction most (coefficient x Δ in standard deviations).
    Also returns every pair's out-of-fold probability that A is preferred."""
    delta = data.delta[:, concepts].toarray()
    k = k if k is not None and k < len(concepts) else None
    scores, models = out_of_fold(delta, data.y, data.controls, data.folds, k=k)
    p_a = expit(scores)
    p_label = np.where(data.y == 1, p_a, 1 - p_a)
    rows = []
    for i in np.flatnonzero(p_label < 1 - confidence):
        model = models[int(data.folds[i])]
        push = model.coef * delta[i, model.concepts] / model.std  # toward A, per concept
        toward = np.sign(scores[i])  # the side the model predicts
        order = np.argsort(-(push * toward))
        reasons = [
            f"{_name(int(concepts[model.concepts[j]]), labels)} pushes toward "
            f"{'A' if toward > 0 else 'B'} ({push[j]:+.2f} log-odds)"
            for j in order[:n_reasons]
            if push[j] * toward > 0
        ]
        rows.append((int(i), [f"model prefers {'A' if toward > 0 else 'B'} "
                              f"(p = {p_label[i]:.2f} for the label)", *reasons]))  # fmt: skip
    frame = pl.DataFrame(
        rows, schema={"row": pl.Int64, "reasons": pl.List(pl.String)}, orient="row"
    )
    return frame, p_a


def flag_pairs(
    data: PreferenceData,
    labels: dict[int, str],
    *,
    concepts: dict[int, int] | None = None,
    model_concepts: np.ndarray | None = None,
    k: int | None = 20,
    confidence: float = 0.8,
) -> pl.DataFrame:
    """Flagged pairs (`FLAG_COLUMNS` plus ``p_a``), concept-rule flags first, then by how
    unlikely the model finds the label."""
    parts = []
    p_a = np.full(len(data.y), np.nan)
    if concepts:
        against = against_concepts(data, concepts, labels)
        parts.append(against.with_columns(pl.lit("against_concept").alias("flag")))
    if model_concepts is not None and len(model_concepts):
        disagree, p_a = model_disagreements(
            data, model_concepts, labels, k=k, confidence=confidence
        )
        parts.append(disagree.with_columns(pl.lit("model_disagrees").alias("flag")))
    if not parts:
        raise InputError("nothing to flag by: name concepts (--concept) or use the model check")
    flagged = pl.concat(parts)
    p_label = np.where(data.y == 1, p_a, 1 - p_a)
    pairs = data.pairs.with_row_index("row").with_columns(
        pl.Series("p_a", p_a), pl.Series("p_label", p_label), pl.col("row").cast(pl.Int64)
    )
    out = (
        flagged.group_by("row", maintain_order=True)
        .agg(
            pl.col("flag").unique(maintain_order=True).str.join(","),
            pl.col("reasons").list.explode(keep_nulls=False, empty_as_null=False),
        )
        .join(pairs, on="row")
        .sort(
            pl.col("flag").str.contains("against_concept"),
            pl.col("p_label"),
            descending=[True, False],
            nulls_last=True,
        )  # fmt: skip
    )
    return out.with_columns(pl.col("p_label", "p_a").fill_nan(None)).select(*FLAG_COLUMNS, "p_a")


def write_queue(flagged: pl.DataFrame, path: str | Path) -> Path:
    """A JSONL relabel queue: one object per flagged pair (`QUEUE_FIELDS`), ``decision`` and
    ``new_label`` left empty for the reviewer."""
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as out:
        for row in flagged.iter_rows(named=True):
            item = {
                "pair_id": row["pair_id"],
                "prompt": row["prompt"],
                "response_a": row["text_a"],
                "response_b": row["text_b"],
                "label": row["label"],
                "flags": row["flag"].split(","),
                "p_a": None if row["p_a"] is None else round(row["p_a"], 4),
                "reasons": row["reasons"],
                "decision": None,
                "new_label": None,
            }
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
    return path


def read_decisions(path: str | Path) -> pl.DataFrame:
    """``pair_id, decision, new_label, note`` from a reviewed queue (JSONL) or any table with
    ``pair_id`` and ``decision`` or ``new_label``; rows with neither are not decided yet."""
    from saeembed.inputs import read_table

    frame = read_table(path)
    if "pair_id" not in frame.columns or not ({"decision", "new_label"} & set(frame.columns)):
        raise InputError(
            f"{path} has no pair_id and decision (or new_label) columns; fill in the queue "
            "written by `saeembed prefs flag`"
        )
    decision = (
        pl.col("decision").cast(pl.String).str.strip_chars().str.to_lowercase()
        if "decision" in frame.columns
        else pl.lit(None, pl.String)
    )
    new_label = (
        pl.col("new_label").cast(pl.Float64, strict=False)
        if "new_label" in frame.columns
        else pl.lit(None, pl.Float64)
    )
    note = pl.col("note").cast(pl.String) if "note" in frame.columns else pl.lit(None, pl.String)
    frame = frame.select(
        pl.col("pair_id").cast(pl.Int64), decision.alias("decision"),
        new_label.alias("new_label"), note.alias("note"),
    )  # fmt: skip
    frame = frame.with_columns(
        pl.when(pl.col("decision").is_null() & pl.col("new_label").is_not_null())
        .then(pl.lit("set"))
        .otherwise(pl.col("decision"))
        .alias("decision")
    ).filter(pl.col("decision").is_not_null())
    bad = frame.filter(~pl.col("decision").is_in(sorted(DECISIONS)))
    if bad.height:
        raise InputError(
            f"{path}: decision {bad['decision'][0]!r} for pair {bad['pair_id'][0]} is not one of "
            f"{', '.join(sorted(DECISIONS - {'set'}))} (or give a new_label)"
        )
    bad = frame.filter((pl.col("decision") == "set") & ~pl.col("new_label").is_in([0.0, 0.5, 1.0]))
    if bad.height:
        raise InputError(
            f"{path}: new_label for pair {bad['pair_id'][0]} must be 1 (A), 0 (B) or 0.5 (tie)"
        )
    repeated = frame.filter(pl.col("pair_id").is_duplicated())
    if repeated.height:
        raise InputError(f"{path}: pair {repeated['pair_id'][0]} has two decisions; keep one")
    return frame


def apply_decisions(store: Store, pairs_name: str, relabel: str, decisions: pl.DataFrame) -> dict:
    """Record ``decisions`` (`read_decisions`) as relabelling ``relabel`` of pair set
    ``pairs_name``, replacing earlier decisions for the same pairs under that name. One
    transaction. Returns counts per decision."""
    if not relabel or not relabel.strip() or relabel == "label":
        raise InputError("name the relabelling (--as NAME, not 'label'); the original is kept")
    pairs = load_pairs(store, pairs_name).select("pair_id", "label")
    unknown = decisions.join(pairs, on="pair_id", how="anti")
    if unknown.height:
        raise InputError(
            f"pair {unknown['pair_id'][0]} is not in pair set {pairs_name!r}; "
            "decisions must come from this pair set's queue"
        )
    rows = decisions.join(pairs, on="pair_id").with_columns(
        pl.when(pl.col("decision") == "keep").then(pl.col("label"))
        .when(pl.col("decision") == "flip").then(1 - pl.col("label"))
        .when(pl.col("decision") == "a").then(pl.lit(1.0))
        .when(pl.col("decision") == "b").then(pl.lit(0.0))
        .when(pl.col("decision") == "tie").then(pl.lit(0.5))
        .when(pl.col("decision") == "set").then(pl.col("new_label"))
        .otherwise(None)
        .alias("decided")
    )  # fmt: skip
    incoming = rows.select("pair_id", "decided", "decision", "note")
    with store.transaction(incoming_decisions=incoming) as con:
        con.execute(
            "DELETE FROM pair_labels WHERE pairs = ? AND relabel = ? "
            "AND pair_id IN (SELECT pair_id FROM incoming_decisions)",
            [pairs_name, relabel],
        )
        con.execute(
            "INSERT INTO pair_labels (pairs, pair_id, relabel, label, decision, note) "
            "SELECT ?, pair_id, ?, decided, decision, note FROM incoming_decisions",
            [pairs_name, relabel],
        )
    counts = rows.group_by("decision").len().sort("decision")
    return dict(zip(counts["decision"].to_list(), counts["len"].to_list(), strict=True))


def curated_pairs(store: Store, pairs_name: str, relabel: str | None = None) -> pl.DataFrame:
    """The pair set for export: ``pair_id, prompt, response_a, response_b, label`` (original),
    with a relabelling also ``new_label`` and ``decision``; then ``chosen``/``rejected`` from
    the label in force (null for ties). Dropped pairs are left out."""
    pairs = load_pairs(store, pairs_name, relabel=relabel)
    if relabel:
        pairs = pairs.filter(pl.col("decision").is_null() | (pl.col("decision") != "drop"))
    final = pl.col("new_label") if relabel else pl.col("label")
    out = pairs.select(
        "pair_id", "prompt",
        pl.col("text_a").alias("response_a"), pl.col("text_b").alias("response_b"),
        "label", *(["new_label", "decision"] if relabel else []),
        "annotator", "conversation_id",
        pl.when(final == 1).then(pl.col("text_a")).when(final == 0).then(pl.col("text_b"))
        .alias("chosen"),
        pl.when(final == 1).then(pl.col("text_b")).when(final == 0).then(pl.col("text_a"))
        .alias("rejected"),
    )  # fmt: skip
    return out


def export_pairs(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write a `curated_pairs` frame as JSONL, Parquet or CSV (by the file's extension),
    atomically."""
    return write_dataset(frame, path)
