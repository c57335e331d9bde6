"""What a report shows about one concept, read from the store: its pooled activations on each
side (histograms), the top documents of each side, documents sampled across the activation
quantiles, the concepts it co-occurs with, and the shown documents' text, clipped to a window
around the peak, with the activation of every token (`saeembed.reports.tokens`) or, without the
reader, the stored peak span."""

from __future__ import annotations

import logging
import re

import numpy as np
import polars as pl
import pyarrow as pa
from tqdm.auto import tqdm

from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)
WINDOW = 320  # characters shown on each side of a document's peak
HIST_BINS = 20
QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)
COOC_TOP = 8
UBIQUITOUS = 0.5  # share of the documents beyond which a concept is left out of co-occurrence
NEAR_DUPLICATE = 0.7  # word-set Jaccard at which two example texts are nearly the same
TOP_CANDIDATES = 4  # the top examples are chosen among this many times as many strongest rows


def scope_table(doc_ids: np.ndarray, sides: np.ndarray) -> pa.Table:
    """The documents a report is about: (doc_id, side), side an index into the report's sides."""
    return pa.table({"doc_id": pa.array(doc_ids, pa.int64()), "side": pa.array(sides, pa.int32())})


def encoded_scope(store: Store, encoder: Encoder, corpus: str | None = None) -> pa.Table:
    """Every document ``encoder`` encoded (of ``corpus`` when given), all on side 0."""
    ids = store.sql(
        """
        SELECT e.doc_id FROM encoded_documents e
        WHERE e.encoder_id = $enc AND ($corpus IS NULL OR e.doc_id IN
              (SELECT doc_id FROM documents WHERE corpus = $corpus))
        ORDER BY e.doc_id
        """,
        {"enc": encoder.encoder_id, "corpus": corpus},
    )["doc_id"].to_numpy()
    return scope_table(ids, np.zeros(len(ids), np.int32))


def activation_rows(store: Store, encoder: Encoder, features: list[int], scope: pa.Table):
    """(feature, doc_id, side, value, peak_start, peak_end) of ``features`` in ``scope``."""
    with store.temporary(report_scope=scope):
        return store.sql(
            """
            SELECT a.feature, a.doc_id, s.side, a.value, a.peak_start, a.peak_end
            FROM activations a JOIN report_scope s USING (doc_id)
            WHERE a.encoder_id = $enc AND list_contains($features, a.feature)
            ORDER BY a.feature, a.value DESC, a.doc_id
            """,
            {"enc": encoder.encoder_id, "features": [int(f) for f in features]},
        )


def cooccurring(
    store: Store, encoder: Encoder, features: list[int], scope: pa.Table, labels: dict
) -> dict[int, list[dict]]:
    """Per feature, the concepts most often active in the same documents of ``scope``: ranked by
    Jaccard overlap (documents with both over documents with either), with the count and lift
    (how many times more often than if they were independent). Concepts active in more than
    `UBIQUITOUS` of the documents are left out (they co-occur with everything, lift about 1)."""
    if not features:
        return {}
    with store.temporary(report_scope=scope):
        rows = store.sql(
            """
            WITH scoped AS (
                SELECT a.doc_id, a.feature FROM activations a SEMI JOIN report_scope s USING (doc_id)
                WHERE a.encoder_id = $enc
            ),
            totals AS (SELECT feature, count(*) AS n FROM scoped GROUP BY feature),
            pairs AS (
                SELECT f.feature AS f, g.feature AS g, count(*) AS n
                FROM scoped f JOIN scoped g ON g.doc_id = f.doc_id AND g.feature <> f.feature
                WHERE list_contains($features, f.feature)
                  -- a concept in most documents co-occurs with everything: it says nothing here
                  AND g.feature NOT IN (SELECT feature FROM totals WHERE n > $most)
                GROUP BY ALL
            ),
            ranked AS (
                SELECT p.f, p.g, p.n, tf.n AS n_f, tg.n AS n_g,
                       p.n / (tf.n + tg.n - p.n) AS jaccard,
                       row_number() OVER (PARTITION BY p.f ORDER BY
                           p.n / (tf.n + tg.n - p.n) DESC, p.g) AS r
                FROM pairs p JOIN totals tf ON tf.feature = p.f JOIN totals tg ON tg.feature = p.g
            )
            SELECT f, g, n, n_f, n_g, jaccard FROM ranked WHERE r <= $k ORDER BY f, r
            """,
            {
                "enc": encoder.encoder_id,
                "features": [int(f) for f in features],
                "k": COOC_TOP,
                "most": UBIQUITOUS * scope.num_rows,
            },  # fmt: skip
        )
    size = max(scope.num_rows, 1)
    out: dict[int, list[dict]] = {int(f): [] for f in features}
    for f, g, n, n_f, n_g, jaccard in rows.iter_rows():
        out[int(f)].append(
            {
                "feature": int(g),
                "label": labels.get(int(g)),
                "n": int(n),
                "jaccard": round(float(jaccard), 3),
                "lift": round(float(n * size / (n_f * n_g)), 2),
            }
        )
    return out


def strong_thresholds(store: Store, encoder: Encoder, features: list[int]) -> dict[int, float]:
    """Per feature, the activation above which a document has it strongly (the `strong` measure
    the diff counts by: half the concept's p99; `saeembed.analysis.measures.ensure_thresholds`)."""
    from saeembed.analysis.measures import ensure_thresholds
    from saeembed.store.counts import STRONG_FRACTION

    ensure_thresholds(store, encoder)
    rows = store.sql(
        "SELECT feature, p99 FROM feature_thresholds WHERE encoder_id = $enc "
        "AND list_contains($features, feature)",
        {"enc": encoder.encoder_id, "features": [int(f) for f in features]},
    )
    return {int(f): STRONG_FRACTION * float(p) for f, p in rows.iter_rows()}


def histogram(
    values_by_side: list[np.ndarray], sizes: list[int], strong: float | None = None
) -> dict:
    """Shared bins over [0, max] and, per side, the count of documents in each bin; ``absent``:
    documents of the side where the concept is not active; ``strong``: the strong threshold, for
    the page to mark."""
    top = max((float(v.max()) for v in values_by_side if len(v)), default=1.0) or 1.0
    edges = np.linspace(0.0, top, HIST_BINS + 1)
    counts = [np.histogram(v, bins=edges)[0].astype(int).tolist() for v in values_by_side]
    return {
        "edges": [_sig(e) for e in edges],
        "counts": counts,
        "absent": [int(size - len(v)) for v, size in zip(values_by_side, sizes, strict=True)],
        "sizes": [int(s) for s in sizes],
        "strong": None if strong is None else _sig(strong),
    }


def pick_examples(
    rows: pl.DataFrame, n_sides: int, top: int, texts: dict[int, str] | None = None
) -> tuple[list, list]:
    """From one feature's rows (value descending): the ``top`` documents of each side, and one
    document at each of `QUANTILES` of the values (both sides pooled; the nearest not yet shown).
    With ``texts`` (doc_id -> text, of the strongest rows), a document nearly the same as one
    already among the top (`near_duplicate`) is passed over for the next.
    Returns (top per side: lists of row dicts, quantile picks: (quantile, row dict))."""
    by_side = [_distinct(rows.filter(pl.col("side") == s), top, texts) for s in range(n_sides)]
    shown = {r["doc_id"] for side in by_side for r in side}
    ascending = rows.reverse().to_dicts()
    picks = []
    for q in QUANTILES:
        if not ascending:
            break
        target = min(int(q * len(ascending)), len(ascending) - 1)
        order = sorted(range(len(ascending)), key=lambda i: abs(i - target))
        chosen = next((i for i in order if ascending[i]["doc_id"] not in shown), None)
        if chosen is None:
            chosen = target
        shown.add(ascending[chosen]["doc_id"])
        picks.append((q, ascending[chosen]))
    return by_side, picks


def _distinct(rows: pl.DataFrame, top: int, texts: dict[int, str] | None) -> list[dict]:
    if texts is None:
        return rows.head(top).to_dicts()
    kept: list[dict] = []
    shown: list[set[str]] = []
    for row in rows.head(TOP_CANDIDATES * top).iter_rows(named=True):
        words = _words(texts.get(row["doc_id"], ""))
        if any(near_duplicate(words, other) for other in shown):
            continue
        kept.append(row)
        shown.append(words)
        if len(kept) == top:
            break
    return kept


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def near_duplicate(a: set[str], b: set[str]) -> bool:
    """Two texts are nearly the same when their word sets overlap by `NEAR_DUPLICATE` or more
    (Jaccard), or one holds all the other's words (five or more): a review quoted twice, one
    snippet inside another."""
    if not a or not b:
        return False
    inside = min(len(a), len(b)) >= 5 and (a <= b or b <= a)
    return inside or len(a & b) / len(a | b) >= NEAR_DUPLICATE


def candidate_texts(store: Store, rows: pl.DataFrame, top: int) -> dict[int, str]:
    """doc_id -> text of the rows `pick_examples` may show at the top (per feature and side,
    the `TOP_CANDIDATES` x ``top`` strongest)."""
    if rows.is_empty():
        return {}
    group = ["feature", "side"] if "side" in rows.columns else ["feature"]
    ids = rows.group_by(group, maintain_order=True).head(TOP_CANDIDATES * top)["doc_id"]
    return {d: text for d, (_, text, _) in document_texts(store, ids.to_list()).items()}


def document_texts(store: Store, doc_ids: list[int]) -> dict[int, tuple[str, str, str | None]]:
    """doc_id -> (corpus, text, context)."""
    frame = store.sql(
        "SELECT doc_id, corpus, text, context FROM documents WHERE list_contains($ids, doc_id)",
        {"ids": sorted({int(d) for d in doc_ids})},
    )
    return {r[0]: (r[1], r[2], r[3]) for r in frame.iter_rows()}


def _sig(value: float) -> float:
    """``value`` to 4 significant digits (activations span orders of magnitude across SAEs)."""
    return float(f"{float(value):.4g}")


def _window(text: str, start: int | None, end: int | None) -> tuple[int, int]:
    if start is None or end is None:
        return 0, min(len(text), 2 * WINDOW)
    lo = max(0, start - WINDOW)
    hi = min(len(text), end + WINDOW)
    return lo, hi


class ExampleBuilder:
    """Collects (document, feature) examples, then shades them all in one pass of the reader."""

    def __init__(self, store: Store, scorer, *, progress: bool = True):
        self.store = store
        self.scorer = scorer
        self.progress = progress
        self.wanted: dict[int, set[int]] = {}
        self.examples: list[tuple[dict, dict]] = []

    def add(self, feature: int, row: dict, **extra) -> dict:
        """An example of ``feature`` from activation row ``row``; filled in by `finish`."""
        # doc ids are 64-bit: a string, so JavaScript does not round them
        example = {"d": str(int(row["doc_id"])), "v": _sig(row["value"]), **extra}
        self.wanted.setdefault(int(row["doc_id"]), set()).add(int(feature))
        self.examples.append((example, {"feature": int(feature), **row}))
        return example

    def finish(self) -> str:
        """Fill every example's text window and shading; returns ``tokens`` or ``peak`` (how the
        examples are shaded)."""
        texts = document_texts(self.store, list(self.wanted))
        order = sorted(self.wanted)
        spans: dict[int, dict] = {}
        mode = "peak"
        if self.scorer is not None and order:
            bar = tqdm(
                total=len(order), unit="doc", desc="shading tokens", disable=not self.progress
            )
            try:
                found = self.scorer.spans(
                    [texts[d][1] for d in order], [texts[d][2] for d in order],
                    [self.wanted[d] for d in order], progress=bar.update,
                )  # fmt: skip
            finally:
                bar.close()
            spans = dict(zip(order, found, strict=True))
            mode = "tokens"
        from saeembed.store.doc_refs import doc_refs

        ids = [int(example["d"]) for example, _ in self.examples]
        refs = doc_refs(self.store, ids, [texts[d][0] for d in ids])
        for (example, row), ref in zip(self.examples, refs, strict=True):
            example["r"] = ref  # CORPUS:ROW, what --like and --positive take
            corpus, text, _ = texts[int(example["d"])]
            start, end = row.get("peak_start"), row.get("peak_end")
            lo, hi = _window(text, start, end)
            if mode == "tokens":
                marks = spans[int(example["d"])].get(row["feature"], [])
            elif start is not None and end is not None:
                marks = [(start, end, float(row["value"]))]
            else:
                marks = []
            example.update(
                c=corpus,
                t=text[lo:hi],
                o=lo,
                n=len(text),
                s=[[s - lo, e - lo, _sig(v)] for s, e, v in marks if s >= lo and e <= hi],
            )
        return mode
