"""The preference report (`saeembed prefs fit DB --html`): per concept the length-controlled
coefficient with its 95% interval, Δwin-rate, prevalence and q; the held-out AUC table; and, for
the top concepts, example pairs showing the preferred and the rejected response side by side with
the concept shaded where it fires."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from saeembed.analysis.stats import Z95
from saeembed.files import check_output
from saeembed.prefs.ingest import load_pairs
from saeembed.reports import concept_data, page
from saeembed.reports.diff_report import label_fields, report_labels, table_columns
from saeembed.reports.page import DEFAULT_PANELS
from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)
PAIR_EXAMPLES = 3


def prefs_payload(
    store: Store,
    encoder: Encoder,
    report,
    *,
    pairs_name: str,
    relabel: str | None = None,
    panels: int = DEFAULT_PANELS,
    examples: int = PAIR_EXAMPLES,
    scorer="auto",
    progress: bool = True,
) -> dict:
    """The page data of a `saeembed.prefs.fit.PreferenceReport` of pair set ``pairs_name``."""
    from saeembed.reports.tokens import load_scorer

    table = report.features.drop([c for c in ("examples",) if c in report.features.columns])
    if {"coef", "se"} <= set(table.columns):
        table = table.with_columns(
            (pl.col("coef") - Z95 * pl.col("se")).alias("coef_low"),
            (pl.col("coef") + Z95 * pl.col("se")).alias("coef_high"),
        )
    pairs = load_pairs(store, pairs_name, relabel=relabel)
    label = "new_label" if relabel else "label"
    pairs = pairs.filter(pl.col(label).is_in([0.0, 1.0]))
    chosen = table.head(panels)["feature"].to_list()
    docs = np.concatenate([pairs["doc_a"].to_numpy(), pairs["doc_b"].to_numpy()])
    scope = concept_data.scope_table(docs, np.zeros(len(docs), np.int32))
    rows = concept_data.activation_rows(store, encoder, chosen, scope)
    labels, sources = report_labels(store, encoder)
    if scorer == "auto":
        scorer = load_scorer(encoder) if chosen else None
    builder = concept_data.ExampleBuilder(store, scorer, progress=progress)
    records = {r["feature"]: r for r in table.head(panels).to_dicts()}
    details = []
    for feature in chosen:
        active = {
            r["doc_id"]: r for r in rows.filter(pl.col("feature") == feature).iter_rows(named=True)
        }
        shown = _example_pairs(builder, feature, pairs, active, label, examples)
        details.append(
            {**label_fields(labels, sources, feature), "row": records[feature], "pairs": shown}
        )
    shading = builder.finish()
    summary = {k: v for k, v in report.summary.items() if not isinstance(v, dict)}
    share = report.summary.get("share_of_dense_gain") or {}
    return {
        "kind": "prefs",
        "meta": {**summary, "shading": shading},
        "metrics": [
            {
                "model": name,
                "auc": auc,
                "auc_low": (report.summary.get("auc_ci") or {}).get(name, [None, None])[0],
                "auc_high": (report.summary.get("auc_ci") or {}).get(name, [None, None])[1],
                "share_of_dense_gain": share.get(name),
            }
            for name, auc in report.metrics.items()
        ],
        "table": table_columns(table),
        "forest": min(30, table.height),
        "panels": details,
    }


def _example_pairs(builder, feature: int, pairs: pl.DataFrame, active: dict, label: str,
                   examples: int) -> list[dict]:  # fmt: skip
    """Up to ``examples`` pairs whose responses differ in ``feature`` (``active``: the documents
    that have it, by doc_id), strongest first, each side shaded (preferred first)."""
    candidates = []
    for pair in pairs.iter_rows(named=True):
        in_a, in_b = pair["doc_a"] in active, pair["doc_b"] in active
        if in_a != in_b:
            strength = active[pair["doc_a"] if in_a else pair["doc_b"]]["value"]
            candidates.append((-strength, pair["pair_id"], pair, "a" if in_a else "b"))
    candidates.sort(key=lambda c: (c[0], c[1]))
    shown = []
    for _, _, pair, has in candidates[:examples]:
        winner = "a" if pair[label] == 1.0 else "b"
        loser = "b" if winner == "a" else "a"
        sides = []
        for side in (winner, loser):
            doc = pair[f"doc_{side}"]
            row = active.get(doc) or {"doc_id": doc, "value": 0.0, "peak_start": None,
                                      "peak_end": None}  # fmt: skip
            sides.append(builder.add(feature, {**row, "doc_id": doc}))
        shown.append({"pair_id": int(pair["pair_id"]), "prompt": pair["prompt"][:400],
                      "concept_in": "preferred" if has == winner else "rejected",
                      "preferred": sides[0], "rejected": sides[1]})  # fmt: skip
    return shown


def write_prefs_report(store: Store, encoder: Encoder, report, path: str | Path, **options) -> Path:
    """Write the preference report of ``report`` to ``path`` (atomically)."""
    path = check_output(path)
    payload = prefs_payload(store, encoder, report, **options)
    title = f"saeembed prefs fit: {payload['meta'].get('pairs', '')}"
    return page.write_text(path, page.render(title, payload))
