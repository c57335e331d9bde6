"""Which concepts can a preference dataset measure, and which do its annotators reward or punish?

`preference_data` reads a stored pair set into arrays: Δ = x(A) − x(B) per concept (presence,
or pooled activation; for a pair encoder, its signed activation or sign), the label (1 = A preferred; ties are set aside and counted), the controls
(the length difference in characters) and cross-validation folds that keep pairs sharing a
prompt together. `fit_preferences` then reports, per concept, its prevalence (share of pairs
where the two responses differ in it) and a length-controlled logistic regression (coefficient,
odds ratio, Wald p, Benjamini-Hochberg q and Bonferroni p over the concepts tested, Δwin-rate,
quasi-separation flagged), plus the held-out AUCs of length only, a dense MiniLM probe, all
concepts and k-concept sparse models (`saeembed.prefs.sparse`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from saeembed.analysis import stats
from saeembed.analysis.matrix import load_matrix
from saeembed.analysis.measures import DEFAULT_PREFS_MEASURE, get_measure
from saeembed.analysis.weak import weak_fit
from saeembed.errors import InputError, StoreError
from saeembed.labels.evidence import snippet
from saeembed.labels.table import label_names
from saeembed.prefs.fit_settings import CONTROLS, SPARSE_KS
from saeembed.prefs.ingest import dense_differences, load_pairs
from saeembed.prefs.pair_encoder import is_pair_encoder, pair_activation_matrix
from saeembed.prefs.pairs import assign_folds, folds_by_prompt
from saeembed.prefs.regression import fit_per_concept
from saeembed.prefs.sparse import cross_validated_auc, fit_sparse_model
from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)

FEATURE_COLUMNS = ["feature", "label", "prevalence", "n_differ", "a_more", "effect", "coef", "se",
                   "odds_ratio", "p", "q", "p_bonferroni", "win_rate_delta", "separated"]  # fmt: skip


@dataclass
class PreferenceData:
    """A pair set as arrays, ready for regressions. Rows are the pairs with a 0/1 label."""

    pairs: pl.DataFrame  # `load_pairs` rows kept (pair_id order)
    delta: sp.csc_matrix  # [n_pairs, d_sae] x(A) - x(B)
    y: np.ndarray  # int [n_pairs], 1 = A preferred
    controls: np.ndarray  # [n_pairs, n_controls]
    control_names: list[str]
    folds: np.ndarray  # int [n_pairs]
    encoder: Encoder
    n_ties: int = 0
    n_unlabelled: int = 0

    @property
    def prevalence(self) -> np.ndarray:
        return np.asarray((self.delta != 0).mean(axis=0)).ravel()


@dataclass
class PreferenceReport:
    """What `fit_preferences` found: the per-concept table, held-out AUCs, and the k-concept
    models fitted on all pairs."""

    features: pl.DataFrame
    metrics: dict[str, float]
    sparse: pl.DataFrame  # k, feature, label, coef, odds_ratio
    summary: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "features": self.features.to_dicts(),
            "metrics": self.metrics,
            "sparse": {
                f"k{k}": self.sparse.filter(pl.col("k") == k).drop("k").to_dicts()
                for k in self.sparse["k"].unique(maintain_order=True).to_list()
            },
            "summary": self.summary,
        }


def preference_data(
    store: Store,
    pairs_name: str,
    encoder: Encoder,
    *,
    measure: str = "presence",
    controls: tuple[str, ...] = ("length",),
    relabel: str | None = None,
    n_folds: int = 5,
    seed: int = 0,
) -> PreferenceData:
    """Read pair set ``pairs_name`` encoded by ``encoder`` into a `PreferenceData`: per pair,
    the difference of the two responses' concept ``measure`` (`saeembed.analysis.measures`)."""
    measure = get_measure(measure).name
    unknown = sorted(set(controls) - set(CONTROLS))
    if unknown:
        raise InputError(f"unknown control {unknown[0]!r}; available: {', '.join(CONTROLS)}")
    pairs = load_pairs(store, pairs_name, relabel=relabel)
    label = "new_label" if relabel else "label"
    n_unlabelled = pairs.filter(pl.col(label).is_null()).height
    n_ties = pairs.filter(pl.col(label) == 0.5).height
    pairs = pairs.filter(pl.col(label).is_in([0.0, 1.0]))
    if pairs.height < 2 * n_folds or pairs[label].n_unique() < 2:
        raise InputError(
            f"pair set {pairs_name!r} has {pairs.height} pairs with a 0/1 label (and "
            f"{n_ties} ties); fitting needs at least {2 * n_folds} with both labels present"
        )
    if is_pair_encoder(store, encoder):
        if measure not in ("presence", "max"):
            raise InputError(
                f"a pair encoder keeps one signed value per pair, so measure {measure!r} does "
                "not apply; use presence or max"
            )
        delta = pair_activation_matrix(store, encoder, pairs_name, pairs["pair_id"].to_numpy())
        if measure == "presence":
            delta = delta.sign()
    else:
        delta = _response_differences(store, encoder, pairs_name, pairs, measure)
    delta = delta.tocsc()
    delta.eliminate_zeros()
    columns = []
    if "length" in controls:
        columns.append(
            pairs["text_a"].str.len_chars().cast(pl.Int64).to_numpy()
            - pairs["text_b"].str.len_chars().cast(pl.Int64).to_numpy()
        )
    control_matrix = (
        np.column_stack(columns).astype(float) if columns else np.zeros((pairs.height, 0))
    )
    return PreferenceData(
        pairs=pairs,
        delta=delta,
        y=pairs[label].to_numpy().astype(int),
        controls=control_matrix,
        control_names=list(controls),
        folds=assign_folds(pairs, n_folds, seed=seed, labels=pairs[label].to_numpy()),
        encoder=encoder,
        n_ties=n_ties,
        n_unlabelled=n_unlabelled,
    )


def _response_differences(
    store: Store, encoder: Encoder, pairs_name: str, pairs: pl.DataFrame, measure: str
) -> sp.csr_matrix:
    """x(A) - x(B) of the measure of each pair's two response documents."""
    matrix = load_matrix(store, encoder, corpus=_corpus_of(store, pairs_name), measure=measure)
    sides = []
    for column in ("doc_a", "doc_b"):
        ids = pairs[column].to_numpy()
        rows = np.searchsorted(matrix.doc_ids, ids).clip(0, matrix.n_docs - 1)
        missing = int((matrix.doc_ids[rows] != ids).sum())
        if missing:
            raise StoreError(
                f"{missing} responses of pair set {pairs_name!r} are not encoded by encoder "
                f"{encoder.name}; run `saeembed prefs encode` again to finish"
            )
        x = matrix.values.tocsr()[rows]
        sides.append(x)
    return sides[0] - sides[1]


def _corpus_of(store: Store, pairs_name: str) -> str:
    return store.sql("SELECT corpus FROM pair_sets WHERE pairs = ?", [pairs_name])["corpus"][0]


def concept_table(
    data: PreferenceData,
    labels: dict[int, str],
    *,
    min_prevalence: float = 0.01,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """Per-concept prevalence and length-controlled logistic regression, for every concept whose
    prevalence reaches ``min_prevalence``; significant concepts (q < ``alpha``) first, by p."""
    prevalence = data.prevalence
    keep = np.flatnonzero(prevalence >= min_prevalence)
    if len(keep) == 0:
        return pl.DataFrame(schema=dict.fromkeys(FEATURE_COLUMNS, pl.Float64))
    delta = data.delta[:, keep]
    fit = fit_per_concept(delta, data.y, data.controls)
    p = fit["p"]
    tested = ~np.isnan(p)
    q = np.full(len(keep), np.nan)
    q[tested] = stats.bh_qvalues(p[tested])
    bonferroni = np.minimum(p * tested.sum(), 1.0)
    a_more = np.asarray((delta > 0).sum(axis=0)).ravel() / np.maximum(
        np.asarray((delta != 0).sum(axis=0)).ravel(), 1
    )
    table = pl.DataFrame(
        {
            "feature": keep.astype(np.int64),
            "label": [labels.get(int(f)) for f in keep],
            "prevalence": prevalence[keep],
            "n_differ": np.asarray((delta != 0).sum(axis=0)).ravel().astype(np.int64),
            "a_more": a_more,
            # a direction only where the evidence is there: "n.s." where q >= alpha
            "effect": np.where(
                ~(q < alpha), "n.s.", np.where(fit["coef"] > 0, "rewarded", "punished")
            ),
            "coef": fit["coef"],
            "se": fit["se"],
            "odds_ratio": np.exp(fit["coef"]),
            "p": p,
            "q": q,
            "p_bonferroni": bonferroni,
            "win_rate_delta": fit["win_rate_delta"],
            "separated": fit["separated"],
        },
        strict=False,
    ).with_columns(pl.col("p", "q", "p_bonferroni", "win_rate_delta").fill_nan(None))
    return table.sort(
        (pl.col("q") < alpha).fill_null(False), pl.col("p"), descending=[True, False],
        nulls_last=True,
    )  # fmt: skip


def held_out_metrics(
    data: PreferenceData,
    delta: np.ndarray,
    *,
    ks: tuple[int, ...] = SPARSE_KS,
    dense: np.ndarray | None = None,
) -> dict[str, float]:
    """Pooled out-of-fold AUCs: ``length`` (the controls alone), ``dense`` (when ``dense`` is
    given), ``all`` (L2 over the columns of ``delta``, the tested concepts' Δ as a dense
    array) and ``k5``/``k10``/``k20``."""
    controls = data.controls
    metrics = {}
    if controls.shape[1]:
        metrics["length"] = cross_validated_auc(delta, data.y, controls, data.folds, k=None,
                                                use_concepts=False)  # fmt: skip
    if dense is not None:
        metrics["dense"] = cross_validated_auc(dense, data.y, controls, data.folds, k=None)
    metrics["all"] = cross_validated_auc(delta, data.y, controls, data.folds, k=None)
    for k in ks:
        if k < delta.shape[1]:
            metrics[f"k{k}"] = cross_validated_auc(delta, data.y, controls, data.folds, k=k)
            log.info("k=%d: held-out AUC %.3f", k, metrics[f"k{k}"])
    return {name: round(float(value), 4) for name, value in metrics.items()}


def sparse_models(
    data: PreferenceData,
    delta: np.ndarray,
    concepts: np.ndarray,
    labels: dict[int, str],
    ks: tuple[int, ...],
) -> pl.DataFrame:
    """The k-concept models fitted on all pairs: which concepts (``delta``'s columns are
    ``concepts``), and their coefficients (per standard deviation of Δ, length-controlled)."""
    rows = []
    for k in ks:
        if k >= len(concepts):
            continue
        chosen, coefs = fit_sparse_model(delta, data.y, data.controls, k)
        for index, coef in zip(chosen, coefs, strict=True):
            feature = int(concepts[index])
            rows.append((k, feature, labels.get(feature), float(coef), float(np.exp(coef))))
    schema = {"k": pl.Int64, "feature": pl.Int64, "label": pl.String, "coef": pl.Float64,
              "odds_ratio": pl.Float64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row")


def add_pair_examples(
    store: Store, data: PreferenceData, table: pl.DataFrame, k: int
) -> pl.DataFrame:
    """Add ``examples``: for each row's concept, up to ``k`` pairs where only one response has
    it, showing that response with the concept's peak marked and whether it was preferred."""
    if k <= 0 or table.height == 0:
        return table
    pairs = data.pairs.select("pair_id", "doc_a", "doc_b", "text_a", "text_b")
    wanted = table["feature"].to_list()
    with store.temporary(example_pairs=pairs.select("pair_id", "doc_a", "doc_b")):
        peaks = store.sql(
            """
            SELECT a.feature, a.doc_id, a.value, a.peak_start, a.peak_end FROM activations a
            WHERE a.encoder_id = $enc AND list_contains($features, a.feature)
              AND a.doc_id IN (SELECT doc_a FROM example_pairs UNION SELECT doc_b FROM example_pairs)
            """,
            {"enc": data.encoder.encoder_id, "features": wanted},
        )
    spans = {(r[0], r[1]): (r[3], r[4]) for r in peaks.iter_rows()}
    examples = []
    for feature in wanted:
        col = data.delta[:, feature].toarray().ravel()
        rows = np.flatnonzero(col != 0)[:k]
        shown = []
        for row in rows:
            pair = pairs.row(int(row), named=True)
            side = "a" if col[row] > 0 else "b"
            doc = pair[f"doc_{side}"]
            start, end = spans.get((feature, doc), (None, None))
            won = (data.y[row] == 1) == (side == "a")
            text = snippet(pair[f"text_{side}"], start, end, width=50)
            shown.append(f"[{'preferred' if won else 'rejected'}] {text}")
        examples.append(shown)
    return table.with_columns(pl.Series("examples", examples, dtype=pl.List(pl.String)))


def fit_preferences(
    store: Store,
    pairs_name: str,
    encoder: Encoder,
    *,
    measure: str | None = None,
    controls: tuple[str, ...] = ("length",),
    relabel: str | None = None,
    min_prevalence: float = 0.01,
    alpha: float = 0.05,
    ks: tuple[int, ...] = SPARSE_KS,
    dense: bool = True,
    examples: int = 0,
    top: int | None = None,
    seed: int = 0,
) -> PreferenceReport:
    """The whole preference analysis of one pair set under one encoder (see the module doc).
    ``measure`` None: the share of tokens for a document encoder, the sign for a pair encoder."""
    if measure is None:
        measure = "presence" if is_pair_encoder(store, encoder) else DEFAULT_PREFS_MEASURE
    data = preference_data(store, pairs_name, encoder, measure=measure, controls=controls,
                           relabel=relabel, seed=seed)  # fmt: skip
    names = label_names(store, encoder)
    labels = dict(zip(names["feature"].to_list(), names["label"].to_list(), strict=True))
    table = concept_table(data, labels, min_prevalence=min_prevalence, alpha=alpha)
    concepts = np.sort(table["feature"].to_numpy())
    if len(concepts) == 0:
        raise InputError(
            f"no concept differs between the responses in >= {min_prevalence:.1%} of the pairs; "
            "lower --min-prevalence"
        )
    dense_diff = dense_differences(store, data.pairs) if dense else None
    tested = data.delta[:, concepts].toarray()
    metrics = held_out_metrics(data, tested, ks=ks, dense=dense_diff)
    sparse = sparse_models(data, tested, concepts, labels, ks)
    shown = table.head(top) if top else table
    shown = add_pair_examples(store, data, shown, examples)
    summary = {
        "pairs": pairs_name,
        "encoder": encoder.name,
        "n_pairs": data.pairs.height,
        "n_ties": data.n_ties,
        "n_unlabelled": data.n_unlabelled,
        "n_concepts_tested": table.height,
        "n_significant": table.filter(pl.col("q") < alpha).height,
        "min_prevalence": min_prevalence,
        "measure": measure,
        "controls": list(controls),
        "relabel": relabel,
        "alpha": alpha,
    }
    if "dense" in metrics and "length" in metrics:
        gain = metrics["dense"] - metrics["length"]
        summary["share_of_dense_gain"] = {
            name: round((auc - metrics["length"]) / gain, 3) if gain > 0 else None
            for name, auc in metrics.items()
            if name not in ("length", "dense")
        }
    n_pos = int(data.y.sum())
    summary["auc_ci"] = {
        name: [round(v, 4) for v in stats.auc_interval(auc, n_pos, len(data.y) - n_pos)]
        for name, auc in metrics.items()
    }
    summary["folds_by"] = "prompt" if folds_by_prompt(data.pairs) else "pair"
    summary["weak"] = weak_fit(summary, metrics)
    return PreferenceReport(shown, metrics, sparse, summary)
