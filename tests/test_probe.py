"""Sparse concept probes (`saeembed.analysis.probe`): constructed stores where the target is a
known function of concepts, the shuffled-label null, multi-class and numeric targets, the
cross-fitting bookkeeping, the scores against scikit-learn, and the command line."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from sklearn.metrics import r2_score, roc_auc_score

from saeembed.analysis.probe import run_probe
from saeembed.analysis.probe_models import Target, cross_fit_concepts, cross_fit_dense, make_folds
from saeembed.analysis.probe_scores import metric, scores_with_intervals
from saeembed.analysis.probe_settings import ProbeSettings
from saeembed.cli import main
from saeembed.errors import InputError
from saeembed.inputs import documents_from_frame
from saeembed.labels.table import write_labels
from saeembed.store import Store
from tests.fakes import ENCODER_FIELDS, write_constructed
from tests.topic_store import build_topic_store

QUICK = ProbeSettings(dense="none", examples=1)


def constructed_store(path, y_of, *, n=400, d=40, seed=0, meta=None):
    """A store of ``n`` documents and ``d`` concepts, each concept active in a random fifth of
    the documents with a random value in [0.5, 1.5]; metadata ``y`` is ``y_of(values, rng)``
    (values: the dense [n, d] matrix), plus the ``meta`` columns."""
    rng = np.random.default_rng(seed)
    values = np.where(rng.random((n, d)) < 0.2, rng.uniform(0.5, 1.5, (n, d)), 0.0)
    y = y_of(values, rng)
    texts = [" ".join(f"w{j}" for j in np.flatnonzero(values[i])) + f" doc{i}" for i in range(n)]
    frame = pl.DataFrame({"text": texts, "y": list(y), **(meta or {})})
    docs, _ = documents_from_frame(frame, text_col="text")
    store = Store(path)
    store.add_documents("c", docs)
    encoder, _ = store.get_or_create_encoder(f"fp-{seed}", {**ENCODER_FIELDS, "d_sae": d})
    rows = []
    for doc_id, text, row in zip(docs["doc_id"], texts, values, strict=True):
        for j in np.flatnonzero(row):
            start = text.index(f"w{j}")
            rows.append((doc_id, int(j), float(row[j]), start, start + len(f"w{j}")))
    write_constructed(store, encoder.encoder_id, docs["doc_id"].to_list(), rows, n_tokens=8)
    write_labels(store, encoder, pl.DataFrame({"feature": list(range(d)),
                                               "label": [f"concept {j}" for j in range(d)]}))  # fmt: skip
    return store, encoder


def either(values, rng):
    return np.where((values[:, 0] > 0) | (values[:, 1] > 0), "yes", "no")


def test_a_target_made_of_two_concepts_selects_exactly_them(tmp_path):
    store, encoder = constructed_store(tmp_path / "s.duckdb", either)
    result = run_probe(store, "y", encoder, settings=QUICK)
    assert result.summary["kind"] == "binary"
    # separable by concepts 0 and 1: every fold chooses k = 2, those two, and scores perfectly
    assert set(result.summary["k_of_fold"].values()) == {2}
    chosen = result.scores.row(0, named=True)
    assert chosen["probe"].startswith("concepts (k by inner CV: 2)")
    assert chosen["score"] == 1.0
    k1 = result.scores.filter(pl.col("probe") == "concepts, k=1")["score"][0]
    assert k1 < 0.9  # one of the two is not enough
    hyp = result.hypotheses
    assert sorted(hyp["feature"].to_list()) == [0, 1]
    assert hyp["marks"].to_list() == ["yes", "yes"]
    assert hyp["name"].to_list()[0].startswith("concept ")
    assert (hyp["share_rest"] == 0).all()  # a "no" document has neither
    assert all(len(e) == 1 and "«w" in e[0] for e in hyp["examples"].to_list())


def test_noisy_two_concept_target_is_significant_and_the_rest_is_not(tmp_path):
    def noisy(values, rng):
        y = (values[:, 0] > 0) | (values[:, 1] > 0)
        flip = rng.random(len(y)) < 0.1
        return np.where(y ^ flip, "yes", "no")

    store, encoder = constructed_store(tmp_path / "s.duckdb", noisy, n=600)
    result = run_probe(store, "y", encoder, settings=QUICK)
    hyp = result.hypotheses
    significant = hyp.filter(pl.col("q") < 0.05)
    assert sorted(significant["feature"].to_list()) == [0, 1]
    assert (significant["odds_ratio"] > 1).all() and (significant["low"] > 1).all()
    assert significant["holds"].all() and not hyp.filter(pl.col("q") >= 0.05)["holds"].any()
    assert 0.85 < result.scores["score"][0] < 0.97


@pytest.mark.parametrize("seed", range(10))
def test_a_shuffled_label_scores_near_chance_and_nothing_is_significant(tmp_path, seed):
    def coin(values, rng):
        return rng.choice(["a", "b"], len(values))

    store, encoder = constructed_store(tmp_path / "s.duckdb", coin, n=300, seed=seed)
    result = run_probe(store, "y", encoder, settings=QUICK.but(seed=seed, examples=0))
    assert result.scores["score"][0] <= 0.6
    assert result.hypotheses.height == 0 or not (result.hypotheses["q"] < 0.05).any()


def test_multiclass_target_marks_each_class_with_its_concepts(tmp_path):
    store, encoder, truth = build_topic_store(tmp_path / "t.duckdb")
    result = run_probe(store, "topic", encoder, settings=QUICK.but(hypotheses=6))
    assert result.summary["kind"] == "multiclass"
    assert result.summary["classes"] == {"cooking": 115, "film": 95, "sports": 90}
    assert result.summary["metric"] == "macro-AUC"
    assert result.scores["score"][0] > 0.95
    marks = dict(zip(result.hypotheses["feature"], result.hypotheses["marks"], strict=True))
    topic_of = {0: "sports", 1: "sports", 2: "film", 3: "film", 4: "cooking", 5: "cooking"}
    assert marks == {f: topic_of[f] for f in marks} and len(set(marks.values())) == 3
    topic_docs = dict(zip(truth["doc_id"], truth["topic"], strict=True))
    texts = dict(store.texts(truth["doc_id"]).iter_rows())
    for feature, examples in zip(
        result.hypotheses["feature"], result.hypotheses["examples"].to_list(), strict=True
    ):
        assert examples, feature  # each concept shows a document of the class it marks
        shown = [
            d
            for d, t in texts.items()
            if examples[0].strip("…").replace("«", "").replace("»", "")[:20] in t
        ]
        assert {topic_docs[d] for d in shown} == {topic_of[feature]}
    tone = run_probe(store, "tone", encoder, settings=QUICK)
    tone_marks = dict(zip(tone.hypotheses["feature"], tone.hypotheses["marks"], strict=True))
    assert tone_marks[6] == "positive" and tone_marks[7] == "negative"
    assert tone.scores["score"][0] > 0.9


def test_numeric_target_is_r2_with_signed_hypotheses(tmp_path):
    def linear(values, rng):
        return 2 * values[:, 0] - values[:, 1] + rng.normal(0, 0.2, len(values))

    store, encoder = constructed_store(tmp_path / "s.duckdb", linear)
    result = run_probe(store, "y", encoder, settings=QUICK)
    assert result.summary["kind"] == "numeric" and result.summary["metric"] == "R²"
    assert result.scores["score"][0] > 0.8
    hyp = result.hypotheses.filter(pl.col("q") < 0.05)
    assert dict(zip(hyp["feature"], hyp["marks"], strict=True)) == {0: "higher", 1: "lower"}
    assert (hyp["coef"] > 0).all()  # toward what each marks
    assert set(hyp.columns) >= {"mean_with", "mean_without", "low", "high"}


def test_no_document_is_scored_by_a_model_that_saw_its_label():
    rng = np.random.default_rng(3)
    x = sp.random(300, 30, density=0.3, random_state=4, format="csr", dtype=np.float64)
    dense = rng.normal(size=(300, 5))
    y = (x[:, 0].toarray().ravel() + rng.normal(0, 0.3, 300) > 0.2).astype(int)
    target = Target("binary", y, ["0", "1"])
    folds = make_folds(target, 5, 0)
    before = cross_fit_concepts(x, target, folds, ks=(1, 4), dense=dense)
    dense_before, _ = cross_fit_dense(dense, target, folds)
    flipped = y.copy()
    flipped[folds == 2] = 1 - flipped[folds == 2]  # the labels of fold 2's documents change
    after_target = Target("binary", flipped, ["0", "1"])
    after = cross_fit_concepts(x, after_target, folds, ks=(1, 4), dense=dense)
    dense_after, _ = cross_fit_dense(dense, after_target, folds)
    held = folds == 2
    np.testing.assert_allclose(after.chosen[held], before.chosen[held])
    np.testing.assert_allclose(after.union[held], before.union[held])
    np.testing.assert_allclose(dense_after[held], dense_before[held])
    assert not np.allclose(after.chosen[~held], before.chosen[~held])  # the others did see it


def test_folds_are_stratified_and_cover_every_document():
    y = np.r_[np.zeros(90, int), np.ones(10, int)]
    folds = make_folds(Target("binary", y, ["a", "b"]), 5, seed=1)
    assert sorted(np.bincount(folds)) == [20] * 5
    assert (np.bincount(folds[y == 1]) == 2).all()


def test_scores_agree_with_scikit_learn_and_intervals_cover_them():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    score = np.round(y + rng.normal(0, 1, 500), 1)  # rounded: ties
    target = Target("binary", y, ["a", "b"])
    assert metric(target, score) == pytest.approx(roc_auc_score(y, score))
    out = scores_with_intervals(target, {"a": score, "b": -score}, reference="b")
    assert out["a"]["low"] < out["a"]["score"] < out["a"]["high"]
    assert out["a"]["diff"] == pytest.approx(2 * out["a"]["score"] - 1)
    assert out["a"]["diff_low"] > 0
    values = rng.normal(size=200)
    numeric = Target("numeric", values)
    guess = values + rng.normal(0, 0.5, 200)
    assert metric(numeric, guess) == pytest.approx(r2_score(values, guess))
    three = Target("multiclass", rng.integers(0, 3, 300), ["a", "b", "c"])
    proba = rng.dirichlet([1, 1, 1], 300)
    expected = np.mean([roc_auc_score(three.y == c, proba[:, c]) for c in range(3)])
    assert metric(three, proba) == pytest.approx(expected)


def test_bad_targets_are_one_line_errors(tmp_path):
    store, encoder, _ = build_topic_store(tmp_path / "t.duckdb")
    with pytest.raises(InputError, match="no metadata column 'nope'"):
        run_probe(store, "nope", encoder, settings=QUICK)
    store.close()
    store, encoder = constructed_store(
        tmp_path / "s.duckdb", either, n=60, meta={"rare": ["x"] * 55 + ["y"] * 5}
    )
    with pytest.raises(InputError, match="needs two classes with at least 10 documents"):
        run_probe(store, "rare", encoder, settings=QUICK)


def test_small_classes_are_set_aside_and_counted(tmp_path):
    store, encoder = constructed_store(
        tmp_path / "s.duckdb", either, n=200, meta={"kind": ["a"] * 95 + ["b"] * 100 + ["c"] * 5}
    )
    result = run_probe(store, "kind", encoder, settings=QUICK)
    assert result.summary["classes"] == {"a": 95, "b": 100}
    assert result.summary["set_aside"]["small_classes"] == {"c": 5}
    assert result.summary["n_docs"] == 195


def test_corpus_is_a_target(tmp_path):
    store, encoder, truth = build_topic_store(tmp_path / "t.duckdb")
    sports = truth.filter(pl.col("topic") == "sports")["doc_id"].to_list()
    texts = store.texts(sports)
    docs, _ = documents_from_frame(texts.select("text"), text_col="text")
    store.add_documents("sports-only", docs)  # the same texts: the same doc_ids
    result = run_probe(store, "corpus", encoder, settings=QUICK)
    assert result.summary["classes"] == {"sports-only": 90, "topics": 210}
    assert set(result.hypotheses.filter(pl.col("q") < 0.05)["feature"]) <= {0, 1}


def test_cli_probe_table_json_and_predictions(tmp_path):
    store, _, _ = build_topic_store(tmp_path / "t.duckdb")
    store.close()
    runner = CliRunner()
    db = str(tmp_path / "t.duckdb")
    out = runner.invoke(main, ["probe", db, "--target", "tone", "--dense", "none",
                               "--format", "table", "--predictions", str(tmp_path / "p.parquet")])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "tone (binary: negative" in out.output and "Hypotheses" in out.output
    predictions = pl.read_parquet(tmp_path / "p.parquet")
    assert predictions.height == 300 and set(predictions["fold"]) == set(range(5))
    assert set(predictions.columns) == {"doc_id", "fold", "target", "concepts"}
    out = runner.invoke(main, ["probe", db, "--target", "topic", "--dense", "none",
                               "--format", "json", "--where", "meta.tone = 'positive'"])  # fmt: skip
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["summary"]["n_docs"] == sum(data["summary"]["classes"].values()) < 300
    assert data["scores"][0]["score"] > 0.9
    bad = runner.invoke(main, ["probe", db, "--target", "tone", "--folds", "1"])
    assert bad.exit_code != 0 and "'--folds': 1 is not in the range x>=2" in bad.output


def test_reader_baseline_needs_stored_vectors(tmp_path):
    store, encoder = constructed_store(tmp_path / "s.duckdb", either, n=100)
    with pytest.raises(InputError, match="no stored reader vector; run `saeembed encode"):
        run_probe(store, "y", encoder, settings=QUICK.but(dense="reader"))
    auto = run_probe(store, "y", encoder, settings=QUICK.but(dense="auto", hypotheses=0))
    assert auto.summary["notes"][0].startswith("no reader baseline: 100 of 100 documents")


@pytest.mark.slow
def test_real_reviews_probe_against_the_stored_reader_vectors(saeembed_home, tmp_path):
    """The real default model on 120 fresh and rotten review snippets, encoded with
    --keep-dense: the concept probe and the reader probe both separate the sides on held-out
    documents, and the hypotheses carry names and examples."""
    import saeembed
    from saeembed.data import load_dataset

    reviews = load_dataset("rotten-tomatoes").filter(pl.col("category") != "plot")
    frame = pl.concat(
        [reviews.filter(pl.col("category") == c).head(60) for c in ("fresh", "rotten")]
    ).select("text", "category")
    db = tmp_path / "rt.duckdb"
    saeembed.encode(frame, db, corpus="rt", keep_dense=True, progress=False)
    result = saeembed.probe(
        db, "category", settings=ProbeSettings(dense="reader", hypotheses=5), progress=False
    )
    scores = dict(zip(result.scores["probe"], result.scores["score"], strict=True))
    assert result.summary["dense_probe"] == "reader (layer 15, mean-pooled)"
    assert scores["reader (layer 15, mean-pooled)"] > 0.7
    assert result.summary["concept_score"] > 0.7
    assert result.hypotheses.height == 5
    assert result.hypotheses["name"].null_count() == 0
    assert all(result.hypotheses["examples"].list.len() > 0)
    assert result.predictions.height == 120


def test_max_docs_takes_a_fixed_sample(tmp_path):
    store, encoder = constructed_store(tmp_path / "s.duckdb", either, n=300)
    settings = QUICK.but(max_docs=120, hypotheses=0)
    first = run_probe(store, "y", encoder, settings=settings)
    again = run_probe(store, "y", encoder, settings=settings)
    assert first.summary["n_docs"] == 120
    assert first.predictions["doc_id"].to_list() == again.predictions["doc_id"].to_list()
    assert first.scores["score"].to_list() == again.scores["score"].to_list()  # deterministic
