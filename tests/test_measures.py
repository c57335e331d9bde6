"""Concept measures on constructed stores: token counts that differ where presence does not, the
statistics of each test against scipy, strong thresholds, old stores, and every analysis taking a
measure."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from scipy import stats as sps

from saeembed.analysis.correlate import column_ranks, correlate_concepts, correlate_metadata
from saeembed.analysis.diff import diff_corpora, paired_diff
from saeembed.analysis.matrix import load_matrix
from saeembed.analysis.measures import MEASURES, STRONG_FRACTION
from saeembed.errors import InputError
from saeembed.inputs import documents_from_texts
from saeembed.store import Store
from saeembed.store.migrations import latest_version
from tests.fakes import ENCODER_FIELDS, write_constructed

N_TOKENS = 100


def _add(store, encoder_id, corpus, n, rows_for, meta=None):
    """Corpus of ``n`` documents (each N_TOKENS long); ``rows_for(i)`` gives document i's
    activations as (feature, max, active_tokens, sum)."""
    docs, _ = documents_from_texts([f"{corpus} document {i}" for i in range(n)])
    docs = docs.with_columns(docs["row_idx"].cast(str).alias("ext_id"))
    if meta is not None:
        docs = docs.with_columns(meta)
    store.add_documents(corpus, docs)
    ids = docs["doc_id"].to_list()
    rows = [
        (ids[i], f, value, 0, 1, count, total)
        for i in range(n)
        for f, value, count, total in rows_for(i)
    ]
    write_constructed(store, encoder_id, ids, rows, n_tokens=N_TOKENS)
    return ids


@pytest.fixture()
def store(tmp_path):
    """Feature 1 is in every document of A and B, on 1 of 100 tokens in A and 60 in B (same
    maximum). Feature 2 is in half the documents of each side, with counts drawn at random.
    Feature 3 has a high maximum in 10 documents of A only."""
    rng = np.random.default_rng(0)
    counts2 = {c: rng.integers(1, 30, 40) for c in "AB"}
    s = Store(tmp_path / "m.duckdb")
    enc, _ = s.get_or_create_encoder("fp-measures", ENCODER_FIELDS)

    def rows(corpus):
        def rows_for(i):
            out = [(1, 2.0, 1 if corpus == "A" else 60, 2.0 if corpus == "A" else 90.0)]
            if i % 2 == 0:
                c = int(counts2[corpus][i])
                out.append((2, 1.0 + c / 10, c, c * 0.8))
            if corpus == "A" and i < 10:
                out.append((3, 8.0, 2, 12.0))
            elif i % 4 == 1:
                out.append((3, 0.5, 1, 0.5))
            return out

        return rows_for

    s.ids = {c: _add(s, enc.encoder_id, c, 40, rows(c)) for c in "AB"}
    s.counts2 = counts2
    yield s
    s.close()


def _dense(store, corpus, feature, column):
    """A feature's per-document values of a column over every document of a corpus (0 if absent)."""
    ids = store.ids[corpus]
    got = store.sql(
        f"SELECT a.doc_id, {column} AS v FROM activations a JOIN encoded_documents e "
        "USING (encoder_id, doc_id) WHERE a.feature = ?",
        [feature],
    )
    lookup = dict(zip(got["doc_id"].to_list(), got["v"].to_list(), strict=True))
    return np.array([lookup.get(i, 0.0) for i in ids], dtype=float)


def test_token_counts_differ_where_presence_does_not(store):
    presence = diff_corpora(store, ["A"], ["B"], min_support=1).filter(feature=1).row(0, named=True)
    assert (presence["n_a"], presence["n_b"], presence["diff"], presence["p"]) == (40, 40, 0, 1)
    for measure in ("count", "share", "mean"):
        row = (
            diff_corpora(store, ["A"], ["B"], measure=measure).filter(feature=1).row(0, named=True)
        )
        assert row["q"] < 1e-10 and row["diff"] < 0, measure
    share = diff_corpora(store, ["A"], ["B"], measure="share").filter(feature=1).row(0, named=True)
    assert share["mean_a"] == pytest.approx(0.01) and share["mean_b"] == pytest.approx(0.60)
    assert share["ratio"] == pytest.approx(1 / 60)


@pytest.mark.parametrize(
    ("measure", "column"),
    [
        ("count", "a.n_tokens"),
        ("share", "a.n_tokens::DOUBLE / e.n_tokens"),
        ("mean", "a.value_sum::DOUBLE / e.n_tokens"),
        ("max", "a.value::DOUBLE"),
    ],
)
def test_welch_and_mann_whitney_match_scipy(store, measure, column):
    welch = diff_corpora(store, ["A"], ["B"], measure=measure, test="welch", min_support=1)
    ranks = diff_corpora(store, ["A"], ["B"], measure=measure, test="mannwhitney", min_support=1)
    for feature in (2, 3):
        a, b = _dense(store, "A", feature, column), _dense(store, "B", feature, column)
        expected = sps.ttest_ind(a, b, equal_var=False)
        row = welch.filter(feature=feature).row(0, named=True)
        assert row["p"] == pytest.approx(expected.pvalue, rel=1e-9)
        interval = expected.confidence_interval()
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((interval.low, interval.high))
        assert row["diff"] == pytest.approx(a.mean() - b.mean())
        assert (row["mean_a"], row["mean_b"]) == pytest.approx((a.mean(), b.mean()))
        expected = sps.mannwhitneyu(a, b, method="asymptotic")
        row = ranks.filter(feature=feature).row(0, named=True)
        assert row["p"] == pytest.approx(expected.pvalue, rel=1e-9)
        assert row["diff"] == pytest.approx(2 * expected.statistic / (len(a) * len(b)) - 1)
        assert row["ci_low"] < row["diff"] < row["ci_high"]
        assert row["test"] == "mannwhitney"
    q = welch["q"].to_numpy()
    assert np.allclose(np.sort(q), np.sort(sps.false_discovery_control(welch["p"].to_numpy())))


def test_paired_t_matches_scipy(store):
    table = paired_diff(store, "A", "B", measure="count", pair_on="id", min_support=1)
    for feature in (1, 2, 3):
        a = _dense(store, "A", feature, "a.n_tokens")
        b = _dense(store, "B", feature, "a.n_tokens")
        expected = sps.ttest_rel(a, b)
        row = table.filter(feature=feature).row(0, named=True)
        assert row["p"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
        interval = expected.confidence_interval()
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((interval.low, interval.high))
        assert row["test"] == "paired-t"


def test_strong_presence_uses_stored_thresholds(store):
    table = diff_corpora(store, ["A"], ["B"], measure="strong", min_support=1)
    thresholds = store.sql("SELECT feature, p99, n_docs FROM feature_thresholds ORDER BY feature")
    values3 = np.r_[np.full(10, 8.0), np.full(7, 0.5), np.full(10, 0.5)]  # A: 10 high, 7 low
    assert thresholds.filter(feature=3)["p99"][0] == pytest.approx(np.quantile(values3, 0.99))
    assert thresholds.filter(feature=3)["n_docs"][0] == 27
    row = table.filter(feature=3).row(0, named=True)
    assert (row["n_a"], row["n_b"]) == (10, 0)  # only the 8.0 maxima pass half the p99
    assert 8.0 > STRONG_FRACTION * thresholds.filter(feature=3)["p99"][0] > 0.5
    # computed once: a second diff reuses them
    diff_corpora(store, ["A"], ["B"], measure="strong")
    assert store.sql("SELECT count(*) AS n FROM feature_thresholds")["n"][0] == thresholds.height


def test_read_only_store_computes_thresholds_without_writing(store, tmp_path):
    path = store.path
    store.close()
    with Store(path, read_only=True) as reader:
        table = diff_corpora(reader, ["A"], ["B"], measure="strong", min_support=1)
        assert table.filter(feature=3)["n_a"][0] == 10
    with Store(path) as writer:
        assert writer.sql("SELECT count(*) AS n FROM feature_thresholds")["n"][0] == 0


def test_matrix_holds_each_measure(store):
    encoder = store.resolve_encoder(None)
    a = store.ids["A"]
    for name, column in [("presence", "1.0"), ("count", "a.n_tokens"), ("share",
                         "a.n_tokens::DOUBLE / e.n_tokens"), ("mean", "a.value_sum::DOUBLE / e.n_tokens"),
                         ("max", "a.value::DOUBLE")]:  # fmt: skip
        matrix = load_matrix(store, encoder, corpus="A", measure=name)
        assert matrix.measure is MEASURES[name]
        rows = np.searchsorted(matrix.doc_ids, a)
        got = np.asarray(matrix.values[rows, 2].todense()).ravel()
        assert got == pytest.approx(_dense(store, "A", 2, column), rel=1e-6), name


def test_correlate_follows_the_measure(tmp_path):
    rng = np.random.default_rng(1)
    n = 60
    score = rng.normal(size=n)
    counts = np.clip((score * 8 + 12).round(), 0, None).astype(int)  # feature 1 tracks score
    with Store(tmp_path / "c.duckdb") as s:
        enc, _ = s.get_or_create_encoder("fp-corr", ENCODER_FIELDS)
        import polars as pl

        _add(
            s, enc.encoder_id, "C", n,
            lambda i: ([(1, 1.0, int(counts[i]), float(counts[i]))] if counts[i] > 0 else [])
            + [(2, 1.0, int(counts[i]) + 1, 1.0), (3, 1.0, 1 + i % 7, 1.0)],
            meta=pl.Series("meta", [f'{{"score": {v}}}' for v in score]),
        )  # fmt: skip
        table = correlate_metadata(s, "score", measure="count", min_support=5)
        x = np.where(counts > 0, counts, 0).astype(float)
        expected = sps.spearmanr(x, score)
        row = table.filter(feature=1).row(0, named=True)
        assert row["rho"] == pytest.approx(expected.statistic)
        assert row["p"] == pytest.approx(expected.pvalue, rel=1e-6)
        pairs = correlate_concepts(s, measure="count", min_support=5, show_trivial=True)
        pair = pairs.filter(feature_a=1, feature_b=2).row(0, named=True)
        assert pair["r"] == pytest.approx(np.corrcoef(x, counts + 1.0)[0, 1])


def test_column_ranks_are_mid_ranks_with_zeros_tied():
    import scipy.sparse as sp

    dense = np.array([[0, 3], [2, 0], [2, 1], [0, 0], [5, 3]], dtype=float)
    ranks, var = column_ranks(sp.csc_matrix(dense))
    for j in range(2):
        expected = sps.rankdata(dense[:, j])
        zero_rank = expected[dense[:, j] == 0][0]
        got = np.asarray(ranks[:, j].todense()).ravel()
        assert got[dense[:, j] > 0] == pytest.approx((expected - zero_rank)[dense[:, j] > 0])
        assert var[j] == pytest.approx(expected.var())


def test_bad_measure_and_test_are_one_line_errors(store):
    with pytest.raises(InputError, match="unknown measure 'sum'; use one of presence"):
        diff_corpora(store, ["A"], ["B"], measure="sum")
    with pytest.raises(InputError, match="test 'welch' does not fit measure 'presence'"):
        diff_corpora(store, ["A"], ["B"], measure="presence", test="welch")


def test_a_store_encoded_before_sums_explains_the_re_encode(tmp_path):
    """A v4 store (activations without value_sum) upgrades; measures it holds still work."""
    from saeembed.store.migrations import MIGRATIONS

    path = tmp_path / "v4.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
        "applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)"
    )
    for version, name, apply in MIGRATIONS:
        if version <= 4:
            apply(con)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
    fields = {**ENCODER_FIELDS, "encoding_version": 1, "fingerprint": "old"}
    con.execute(
        f"INSERT INTO encoders ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})",
        [v if not isinstance(v, dict) else "{}" for v in fields.values()],
    )
    for corpus, tokens in (("A", 1), ("B", 60)):
        con.execute("INSERT INTO corpora (corpus) VALUES (?)", [corpus])
        for i in range(12):
            doc = hash((corpus, i)) % 10**12
            con.execute("INSERT INTO documents (corpus, doc_id, row_idx, text) VALUES (?, ?, ?, ?)",
                        [corpus, doc, i, f"{corpus} {i}"])  # fmt: skip
            con.execute("INSERT INTO encoded_documents VALUES (1, ?, 100, false, 1, now())", [doc])
            con.execute("INSERT INTO activations VALUES (1, ?, 1, 2.0, ?, 0, 0, 1)", [doc, tokens])
    con.close()
    with Store(path) as s:
        assert s.schema_version() == latest_version()
        assert diff_corpora(s, ["A"], ["B"], measure="count")["q"][0] < 1e-10
        assert diff_corpora(s, ["A"], ["B"])["p"][0] == 1
        with pytest.raises(InputError, match="measure 'mean' needs activation sums.*re-encode"):
            diff_corpora(s, ["A"], ["B"], measure="mean")
