"""One feature up close (`saeembed features show`): its label and score, how many of the store's
documents it is active in, the distribution of its pooled activations, and its top documents with
the peak token marked."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import polars as pl

from saeembed.errors import InputError
from saeembed.labels.evidence import snippet
from saeembed.labels.local import SOURCE as LOCAL_SOURCE
from saeembed.labels.table import SHIPPED_PREFIX
from saeembed.store import Encoder, Store


@dataclass(frozen=True)
class FeatureReport:
    encoder: str
    feature: int
    label: str | None
    label_source: str | None
    label_score: float | None
    description: str | None
    shipped_label: str | None  # the SAE's own name, when the store's name replaced it
    shipped_score: float | None  # how well the shipped name finds the peaks on this store
    local_evidence: list[dict]  # what it fires on in this store: {"term", "n"}, most first
    alike: list[tuple[int, str | None]]  # the concept it is alike to, or those alike to it
    n_docs: int  # documents (of the corpus, if one was chosen) where the feature is active
    n_encoded: int  # documents encoded by the encoder (same scope)
    histogram: pl.DataFrame  # bin_low, bin_high, n_docs
    quantiles: dict[str, float]
    top: pl.DataFrame  # corpus, doc_id, ext_id, value, context

    @property
    def density(self) -> float:
        return self.n_docs / self.n_encoded if self.n_encoded else 0.0

    def to_dict(self) -> dict:
        return {
            "encoder": self.encoder,
            "feature": self.feature,
            "label": self.label,
            "label_source": self.label_source,
            "label_score": self.label_score,
            "description": self.description,
            "shipped_label": self.shipped_label,
            "shipped_score": self.shipped_score,
            "local_evidence": self.local_evidence,
            "alike": [{"feature": f, "label": name} for f, name in self.alike],
            "n_docs": self.n_docs,
            "n_encoded": self.n_encoded,
            "density": self.density,
            "quantiles": self.quantiles,
            "histogram": self.histogram.to_dicts(),
            "top": self.top.to_dicts(),
        }


def feature_report(
    store: Store,
    encoder: Encoder,
    feature: int,
    *,
    corpus: str | None = None,
    top: int = 8,
    bins: int = 10,
) -> FeatureReport:
    if not 0 <= feature < encoder.d_sae:
        raise InputError(f"feature {feature} does not exist; features are 0..{encoder.d_sae - 1}")
    if corpus is not None:
        store.require_corpus(corpus)
    scope = "($corpus IS NULL OR doc_id IN (SELECT doc_id FROM documents WHERE corpus = $corpus))"
    params = {"encoder": encoder.encoder_id, "feature": feature, "corpus": corpus}
    label = store.sql(
        "SELECT label, label_source, label_score, description, shipped_label, shipped_score, "
        "local_evidence::VARCHAR AS local_evidence, alike_of FROM features "
        "WHERE encoder_id = $encoder AND feature = $feature",
        {"encoder": encoder.encoder_id, "feature": feature},
    )
    # its group of alike concepts (saeembed.labels.alike): its leader, or those it leads
    alike = store.sql(
        """
        SELECT feature::BIGINT AS feature, label FROM features
        WHERE encoder_id = $encoder AND (
            feature = (SELECT alike_of FROM features
                       WHERE encoder_id = $encoder AND feature = $feature)
            OR alike_of = $feature)
        ORDER BY feature
        """,
        {"encoder": encoder.encoder_id, "feature": feature},
    )
    n_encoded = store.sql(
        f"SELECT count(*) AS n FROM encoded_documents WHERE encoder_id = $encoder AND {scope}",
        {"encoder": encoder.encoder_id, "corpus": corpus},
    )["n"][0]
    values = store.sql(
        f"SELECT value FROM activations WHERE encoder_id = $encoder AND feature = $feature AND {scope}",
        params,
    )["value"].to_numpy()
    rows = store.sql(
        """
        SELECT d.corpus, d.doc_id, d.ext_id, a.value, d.text, a.peak_start, a.peak_end
        FROM activations a JOIN documents d ON d.doc_id = a.doc_id
        WHERE a.encoder_id = $encoder AND a.feature = $feature
          AND ($corpus IS NULL OR d.corpus = $corpus)
        ORDER BY a.value DESC, d.corpus, d.doc_id
        LIMIT $top
        """,
        {**params, "top": top},
    )
    contexts = [
        snippet(r["text"], r["peak_start"], r["peak_end"], width=60)
        for r in rows.iter_rows(named=True)
    ]
    top_docs = rows.drop("text", "peak_start", "peak_end").with_columns(
        pl.Series("context", contexts, dtype=pl.Utf8)
    )
    meta = label.row(0, named=True) if label.height else {}
    return FeatureReport(
        encoder=encoder.name,
        feature=feature,
        label=meta.get("label"),
        label_source=meta.get("label_source"),
        label_score=meta.get("label_score"),
        description=meta.get("description"),
        shipped_label=meta.get("shipped_label"),
        shipped_score=meta.get("shipped_score"),
        local_evidence=json.loads(meta.get("local_evidence") or "[]"),
        alike=list(alike.iter_rows()),
        n_docs=len(values),
        n_encoded=int(n_encoded),
        histogram=histogram(values, bins),
        quantiles=_quantiles(values),
        top=top_docs,
    )


def histogram(values: np.ndarray, bins: int) -> pl.DataFrame:
    if len(values) == 0:
        return pl.DataFrame(
            {"bin_low": [], "bin_high": [], "n_docs": []},
            schema={"bin_low": pl.Float64, "bin_high": pl.Float64, "n_docs": pl.Int64},
        )
    counts, edges = np.histogram(values, bins=bins, range=(0.0, float(values.max())))
    return pl.DataFrame(
        {"bin_low": edges[:-1], "bin_high": edges[1:], "n_docs": counts.astype(np.int64)}
    )


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    qs = np.quantile(values, [0.1, 0.5, 0.9])
    return {
        "p10": float(qs[0]),
        "median": float(qs[1]),
        "p90": float(qs[2]),
        "max": float(values.max()),
    }


def render_report(report: FeatureReport, width: int = 40) -> str:
    """The report as text for a terminal: header, histogram bars, top documents."""
    lines = [f"feature {report.feature} of encoder {report.encoder}"]
    if report.label is not None:
        score = "" if report.label_score is None else f", detection score {report.label_score:.2f}"
        if report.label_source == LOCAL_SOURCE:
            lines.append(f"label: {report.label}  (named from this store's documents)")
            fit = "" if report.shipped_score is None else f"; fits here {report.shipped_score:.2f}"
            lines.append(f"  shipped name: {report.shipped_label}  (not shown{fit})")
        else:
            lines.append(f"label: {report.label}  ({report.label_source}{score})")
        if (report.label_source or "").startswith(SHIPPED_PREFIX):
            fit = (
                "" if report.shipped_score is None
                else f"; it fits this store's peaks {report.shipped_score:.2f}"
            )  # fmt: skip
            lines.append(
                f"  (shipped with the SAE, made on its labelling corpus{fit}; `saeembed features "
                "label` names features from this store's documents)"
            )
    else:
        lines.append("label: none yet (run `saeembed features label`)")
    if report.local_evidence:
        shown = ", ".join(f"{e['term']} ({e['n']})" for e in report.local_evidence[:6])
        lines.append(f"fires here on: {shown}  (of its strongest peaks in this store)")
    if report.alike:
        shown = ", ".join(f"{f} {name or ''}".strip() for f, name in report.alike[:5])
        more = f" and {len(report.alike) - 5} more" if len(report.alike) > 5 else ""
        lines.append(f"alike here: {shown}{more}  (fires on the same things; tables fold them)")
    if report.description:
        about = "about the shipped name" if report.label_source == LOCAL_SOURCE else "about"
        lines.append(f"{about}: {report.description}")
    lines.append(
        f"active in {report.n_docs:,} of {report.n_encoded:,} documents ({report.density:.2%})"
    )
    if report.quantiles:
        q = report.quantiles
        lines.append(
            f"pooled activation: p10 {q['p10']:.3f}  median {q['median']:.3f}  "
            f"p90 {q['p90']:.3f}  max {q['max']:.3f}"
        )
        peak = max(int(report.histogram["n_docs"].max()), 1)
        for row in report.histogram.iter_rows(named=True):
            bar = "█" * round(width * row["n_docs"] / peak)
            lines.append(
                f"  {row['bin_low']:7.3f}–{row['bin_high']:<7.3f} {bar:<{width}} {row['n_docs']:,}"
            )
    if report.top.height:
        lines.append("top documents:")
        for row in report.top.iter_rows(named=True):
            lines.append(f"  {row['value']:7.3f}  [{row['corpus']}] {row['context']}")
    return "\n".join(lines)


def report_json(report: FeatureReport) -> str:
    return json.dumps(report.to_dict(), ensure_ascii=False, default=str)
