"""Writing the store's own names (`saeembed.labels.local`) into its `features` table.

`decide_names` decides, for every concept named by its SAE, which name it shows on this store:
the shipped one where it fits the store's peaks, the local one otherwise; and which concepts are
alike (`saeembed.labels.alike`). `name_concepts` writes that in one transaction; `encode` runs it
at its end, `saeembed features name` on demand.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from saeembed.labels.local import (
    DETERMINERS,
    SHIPPED_MIN_SCORE,
    SOURCE,
    LocalConfig,
    Peaks,
    fit,
    is_described_symbol,
    label_terms,
    name_from,
    read_peaks,
    word_key,
)
from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)


@dataclass
class NamingReport:
    n_named: int  # concepts whose shown name is now the local one
    n_shipped_kept: int  # concepts whose shipped name fits the store
    n_alike: int  # concepts alike to another (saeembed.labels.alike)
    n_documents: int
    seconds: float

    def summary(self) -> str:
        return (
            f"named {self.n_named:,} concepts from this store's documents ({self.n_documents:,} "
            f"read); the shipped name fits {self.n_shipped_kept:,} and is kept; "
            f"{self.n_alike:,} are alike to another ({self.seconds:.1f} s)"
        )


def decide_names(
    store: Store, encoder: Encoder, config: LocalConfig | None = None
) -> pl.DataFrame | None:
    """Which name each concept named by its SAE (or by an earlier run of this) shows on this
    store (see the module docstring), and which concepts are alike (`saeembed.labels.alike`),
    without writing: ``feature, named, label, label_source, shipped_label, shipped_source,
    shipped_score, local_evidence`` (JSON text), ``alike_of``; ``named`` is false for a concept
    whose name is the user's (only ``alike_of`` applies to it). None when the store has fewer
    than ``config.min_docs`` encoded documents or no peaks."""
    from saeembed.labels.alike import group_alike

    config = config or LocalConfig()
    n_docs = store.sql(
        "SELECT count(*) AS n FROM encoded_documents WHERE encoder_id = ?", [encoder.encoder_id]
    )["n"][0]
    if n_docs < config.min_docs:
        return None
    every = store.sql(
        "SELECT feature::BIGINT AS feature, label, label_source, shipped_label, shipped_source "
        "FROM features WHERE encoder_id = ?",
        [encoder.encoder_id],
    )
    frame = read_peaks(store, encoder, config=config)
    if frame.height == 0:
        return None
    peaks = Peaks.read(frame)
    groups = peaks.groups()
    shipped, sources = _names_to_decide(every, groups)
    # other concepts' peaks: a fixed sample
    rng = np.random.default_rng(0)
    sample = rng.choice(len(peaks.feature), size=min(config.negatives, len(peaks.feature)),
                        replace=False)  # fmt: skip
    pool = peaks.pool_counts(sample)
    rows, local_of = [], {}
    for feature, shipped_label in shipped.items():
        mine = groups.get(feature, np.zeros(0, dtype=np.int64))
        shipped_score = fit(peaks, label_terms(shipped_label), mine, pool) if len(mine) else None
        if shipped_label is None:
            shipped_score = None
        local = name_from(peaks, mine, config)
        local_of[feature] = local
        keep = local is None or (shipped_label is not None and shipped_score >= SHIPPED_MIN_SCORE)
        if not keep and shipped_label is not None:
            # the local name is made from half the peaks and scored on the other half, so it
            # wins only by finding peaks it was not made from
            made = name_from(peaks, mine[0::2], config)
            held = fit(peaks, made.terms, mine[1::2], pool) if made else 0.5
            keep = held <= shipped_score
        evidence = None if local is None else _evidence_json(local.evidence)
        shown = (shipped_label, sources[feature]) if keep else (local.name, SOURCE)
        rows.append((feature, True, *shown, shipped_label, sources[feature], shipped_score,
                     evidence))  # fmt: skip
    if config.by_meaning:
        rows = _by_meaning(store, encoder, rows, local_of, config, peaks, groups)
    for feature in sorted(set(groups) - set(shipped)):  # the user's names: only alike_of
        rows.append((feature, False, None, None, None, None, None, None))
    # which concepts are alike, by the names they now show (the user's where they named them)
    shown_names = dict(zip(every["feature"].to_list(), every["label"].to_list(), strict=True))
    shown_names.update((r[0], r[2]) for r in rows if r[1])
    alike = group_alike(
        *peaks.evidence_vectors(groups, config.min_peaks),
        compatible=_alike_check(peaks, groups, shown_names),
    )
    rows = [(*r, alike.get(r[0])) for r in rows]
    return pl.DataFrame(
        rows,
        schema={"feature": pl.Int64, "named": pl.Boolean, "label": pl.String,
                "label_source": pl.String, "shipped_label": pl.String,
                "shipped_source": pl.String, "shipped_score": pl.Float64,
                "local_evidence": pl.String, "alike_of": pl.Int64},
        orient="row",
    )  # fmt: skip


def _by_meaning(store: Store, encoder: Encoder, rows: list, local_of: dict, config: LocalConfig,
                peaks: Peaks, groups: dict):  # fmt: skip
    """``rows`` with the name each concept shows replaced where a name chosen by meaning
    (`saeembed.labels.meaning`) reads its peaks better: the shipped name again where that is
    the one chosen, else a store name (with what its peaks are as its local evidence, also
    where the words under them made no name)."""
    from saeembed.labels.meaning import MeaningConfig, choose_names

    # the candidates besides the name shown: the local name and the shipped one (a shipped name
    # that fits by meaning, not by the words under the peaks, is shown again)
    current = {
        r[0]: (r[2], [n for n in (local_of[r[0]].name if local_of[r[0]] else None, r[4]) if n])
        for r in rows
    }
    chosen = choose_names(store, encoder, current, MeaningConfig(max_docs=config.meaning_docs),
                          skip_heldout=config.skip_heldout)  # fmt: skip
    out = []
    for row in rows:
        if row[0] in chosen:
            name = chosen[row[0]][0]
            source = row[5] if name == row[4] else SOURCE
            evidence = row[7]
            if evidence is None and source == SOURCE:
                evidence = _evidence_json(peaks.evidence(groups.get(row[0], ())))
            row = (row[0], row[1], name, source, *row[4:7], evidence)
        out.append(row)
    return out


def _evidence_json(evidence: list[tuple[str, int]]) -> str:
    """`Peaks.evidence` as `features.local_evidence` holds it."""
    return json.dumps([{"term": t, "n": n} for t, n in evidence], ensure_ascii=False)


def _names_to_decide(every: pl.DataFrame, groups: dict) -> tuple[dict, dict]:
    """The concepts whose shown name this decides, with the name their SAE gave them (None for
    a concept nobody named: a dictionary fitted here, or one published without labels, whose
    store names are its only names) and its source; the concepts the user named are left out."""
    # the concepts named by the SAE (or by an earlier run of this)
    current = every.filter(
        pl.col("label_source").str.starts_with("shipped:") | (pl.col("label_source") == SOURCE)
    )
    shipped = {
        r["feature"]: (r["shipped_label"] if r["label_source"] == SOURCE else r["label"])
        for r in current.iter_rows(named=True)
    }
    sources = {
        r["feature"]: (r["shipped_source"] if r["label_source"] == SOURCE else r["label_source"])
        for r in current.iter_rows(named=True)
    }
    users = set(every.filter(pl.col("label").is_not_null())["feature"].to_list()) - set(shipped)
    for feature in sorted(set(groups) - set(shipped) - users):
        shipped[feature], sources[feature] = None, None
    return shipped, sources


def _alike_check(peaks: Peaks, groups: dict[int, np.ndarray], names: dict[int, str | None]):
    """`saeembed.labels.alike.group_alike`'s further conditions: peaks in the same documents, and
    shown names that share a word (its forms counted together)."""
    from saeembed.labels.alike import shares_documents

    @functools.cache
    def docs(feature: int) -> frozenset:
        return frozenset(peaks.doc_id[groups[feature]].tolist())

    @functools.cache
    def words(feature: int) -> frozenset:
        # a name's terms, and the words of its phrases (not of described symbols, whose
        # "between words" every such name shares)
        keys = set()
        for term in label_terms(names.get(feature)):
            keys.add(word_key(term))
            if not is_described_symbol(term) and "(" not in term:
                keys.update(
                    word_key(w) for w in term.split() if len(w) > 2 and w not in DETERMINERS
                )
        return frozenset(keys)

    def compatible(feature: int, leader: int) -> bool:
        return bool(words(feature) & words(leader)) and shares_documents(
            docs(feature), docs(leader)
        )

    return compatible


def name_concepts(
    store: Store, encoder: Encoder, config: LocalConfig | None = None
) -> NamingReport | None:
    """Write `decide_names` into the `features` table, in one transaction. None when the store
    has fewer than ``config.min_docs`` encoded documents, or nothing was named by its SAE."""
    started = time.perf_counter()
    config = config or LocalConfig()
    table = decide_names(store, encoder, config)
    if table is None:
        return None
    with store.transaction(local_names=table.to_arrow()) as con:
        # a concept nobody named has no row yet
        con.execute(
            """
            INSERT INTO features (encoder_id, feature)
            SELECT ?, n.feature FROM local_names n
            WHERE n.named AND n.label IS NOT NULL AND n.feature NOT IN (
                SELECT feature FROM features WHERE encoder_id = ?)
            """,
            [encoder.encoder_id, encoder.encoder_id],
        )
        con.execute(
            """
            UPDATE features f SET label = n.label, label_source = n.label_source,
                shipped_label = n.shipped_label, shipped_source = n.shipped_source,
                shipped_score = n.shipped_score, local_evidence = n.local_evidence::JSON,
                named_at = current_timestamp
            FROM local_names n
            WHERE f.encoder_id = ? AND f.feature = n.feature AND n.named
            """,
            [encoder.encoder_id],
        )
        # which concepts are alike is decided afresh for every concept with peaks
        con.execute(
            """
            UPDATE features f SET alike_of = n.alike_of
            FROM (SELECT f2.feature, n2.alike_of FROM features f2
                  LEFT JOIN local_names n2 ON n2.feature = f2.feature
                  WHERE f2.encoder_id = ?) n
            WHERE f.encoder_id = ? AND f.feature = n.feature
              AND f.alike_of IS DISTINCT FROM n.alike_of
            """,
            [encoder.encoder_id, encoder.encoder_id],
        )
        n_docs = con.execute(
            "SELECT count(*) FROM encoded_documents WHERE encoder_id = ?", [encoder.encoder_id]
        ).fetchall()[0][0]
    named = int(table.filter(pl.col("label_source") == SOURCE).height)
    n_alike = int(table["alike_of"].is_not_null().sum())
    kept = table.filter(
        pl.col("named") & (pl.col("label_source") != SOURCE) & pl.col("shipped_label").is_not_null()
    ).height
    report = NamingReport(named, int(kept), n_alike,
                          int(min(n_docs, config.max_docs)), time.perf_counter() - started)  # fmt: skip
    log.info("encoder %s: %s", encoder.name, report.summary())
    return report
