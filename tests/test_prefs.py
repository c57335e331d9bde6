"""Preference analysis end to end on constructed pair sets with a planted preference: storage,
the per-concept report, held-out metrics, flagging, the relabel round trip and the CLI."""

from __future__ import annotations

import gzip
import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from scipy.special import expit

from saeembed.api import preferences as api
from saeembed.cli import main
from saeembed.errors import InputError, StoreError
from saeembed.prefs.fit import fit_preferences, preference_data
from saeembed.prefs.ingest import add_pairs, load_pairs, pair_sets, response_documents
from tests.pair_store import EFFECTS, LABELS, build_pair_store, planted_pairs


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    path = tmp_path_factory.mktemp("prefs") / "pairs.duckdb"
    store, encoder, table, xa, xb = build_pair_store(path, n=1500, seed=0)
    store.close()
    return path, encoder, table, xa, xb


def test_pair_set_round_trip_and_repeat(tmp_path):
    table, _, _ = planted_pairs(10)
    store = build_pair_store(tmp_path / "p.duckdb", n=10)[0]
    assert add_pairs(store, "planted", table, context=False, source="again") == 0  # same pairs
    got = load_pairs(store, "planted")
    assert got["pair_id"].to_list() == list(range(10))
    assert got["text_a"].to_list() == table["response_a"].to_list()
    assert got["label"].to_list() == table["label"].to_list()
    assert pair_sets(store).row(0, named=True)["n_pairs"] == 10
    changed = table.with_columns((1 - pl.col("label")).alias("label"))
    with pytest.raises(StoreError, match="holds different pairs"):
        add_pairs(store, "planted", changed, context=False, source="x")
    with pytest.raises(StoreError, match="holds different pairs"):
        add_pairs(store, "planted", table, context=True, source="x")
    store.close()


def test_context_makes_the_same_reply_two_documents():
    from saeembed.prefs.pairs import pairs_from_frame

    table = pairs_from_frame(
        pl.DataFrame({"prompt": ["p1", "p2"], "response_a": ["same", "same"],
                      "response_b": ["x", "y"], "label": [1, 0]})
    )  # fmt: skip
    docs, linked = response_documents(table, context=False)
    assert docs.height == 3 and linked["doc_a"][0] == linked["doc_a"][1]
    docs, linked = response_documents(table, context=True)
    assert docs.height == 4 and linked["doc_a"][0] != linked["doc_a"][1]
    assert docs.filter(pl.col("text") == "same")["context"].to_list() == ["p1", "p2"]


def test_planted_preference_is_recovered_with_sign_and_win_rate(planted):
    path, encoder, table, xa, xb = planted
    from saeembed.store import Store

    with Store(path) as store:
        report = fit_preferences(
            store, "planted", encoder, measure="presence", dense=False, ks=(2,)
        )
        default = fit_preferences(store, "planted", encoder, dense=False, ks=(2,))
    assert default.summary["measure"] == "share"  # a document encoder's default
    assert default.features["feature"].to_list()[:2] == [3, 5]
    rows = {r["feature"]: r for r in report.features.iter_rows(named=True)}
    assert rows[3]["label"] == LABELS[3] and rows[3]["effect"] == "rewarded"
    assert rows[5]["effect"] == "punished"
    assert rows[3]["q"] < 1e-10 and rows[5]["q"] < 1e-6
    assert report.features["feature"].to_list()[:2] == [3, 5]  # significant first, by p
    for f in set(range(8)) - set(EFFECTS):
        assert rows[f]["q"] > 0.05, f
    assert rows[3]["prevalence"] == pytest.approx(float((xa[:, 3] != xb[:, 3]).mean()))
    assert rows[3]["a_more"] == pytest.approx(
        float((xa[:, 3] > xb[:, 3]).sum() / (xa[:, 3] != xb[:, 3]).sum())
    )
    # the Δwin-rate (concept in A only vs in neither) against the truth of the generating model
    other = EFFECTS[5] * (xa[:, 5] - xb[:, 5])
    truth = float((expit(EFFECTS[3] + other) - expit(other)).mean())
    assert rows[3]["win_rate_delta"] == pytest.approx(truth, abs=0.04)
    assert rows[3]["p_bonferroni"] == pytest.approx(min(rows[3]["p"] * 8, 1.0))
    # the 2-concept model chooses the two planted concepts; length (noise) does not predict
    assert sorted(report.sparse["feature"].to_list()) == [3, 5]
    assert report.metrics["k2"] > 0.65 and report.metrics["all"] > 0.65
    assert abs(report.metrics["length"] - 0.5) < 0.05
    assert set(report.to_json()) == {"features", "metrics", "sparse", "summary"}


def test_ties_are_set_aside_and_counted(tmp_path):
    from saeembed.store import Store
    from tests.fakes import ENCODER_FIELDS, write_constructed

    table, _, _ = planted_pairs(60)
    ties = pl.when(pl.col("pair_id") < 5).then(0.5).otherwise(pl.col("label"))
    with Store(tmp_path / "t.duckdb") as store:
        add_pairs(store, "ties", table.with_columns(ties.alias("label")), context=False, source="x")
        encoder, _ = store.get_or_create_encoder("fp", {**ENCODER_FIELDS, "d_sae": 8})
        ids = store.sql("SELECT doc_a, doc_b FROM pairs")
        docs = ids["doc_a"].to_list() + ids["doc_b"].to_list()
        write_constructed(store, encoder.encoder_id, docs, [(docs[0], 1, 1.0, 0, 1)], n_tokens=2)
        data = preference_data(store, "ties", encoder)
    assert data.n_ties == 5 and len(data.y) == 55


def test_flag_against_a_concept_finds_exactly_those_pairs(planted):
    path, _, table, xa, xb = planted
    flagged = api.flag(path, "planted", concepts=["5:-"], model=False)
    y = table["label"].to_numpy()
    preferred_has_more = np.where(y == 1, xa[:, 5] > xb[:, 5], xb[:, 5] > xa[:, 5])
    assert sorted(flagged["pair_id"].to_list()) == np.flatnonzero(preferred_has_more).tolist()
    assert set(flagged["flag"]) == {"against_concept"}
    assert "harmful instructions" in flagged["reasons"][0][0]
    # without a direction, the data's own direction (punished) is used: same pairs
    same = api.flag(path, "planted", concepts=["5"], model=False)
    assert same["pair_id"].to_list() == flagged["pair_id"].to_list()


def test_model_flags_pairs_whose_label_was_flipped(tmp_path):
    table, xa, xb = planted_pairs(1500, seed=1)
    store, encoder, *_ = build_pair_store(tmp_path / "f.duckdb", n=1500, seed=1)
    # flip the labels of pairs the planted concepts decide clearly (P(label) = expit(2.5))
    clear = np.flatnonzero((xa[:, 3] - xb[:, 3] == 1) & (xa[:, 5] - xb[:, 5] == -1))
    clear = clear[table["label"].to_numpy()[clear] == 1][:25]
    store.con.execute(
        "UPDATE pairs SET label = 0 WHERE list_contains(?, pair_id)", [clear.tolist()]
    )
    store.close()
    flagged = api.flag(tmp_path / "f.duckdb", "planted", k=2, confidence=0.8)
    found = set(flagged["pair_id"].to_list()) & set(clear.tolist())
    assert len(found) >= 0.9 * len(clear)
    assert (flagged["p_label"] < 0.2).all()
    reasons = flagged.filter(pl.col("pair_id") == int(clear[0]))["reasons"][0]
    assert reasons[0].startswith("model prefers A")
    assert any("polite apology" in r for r in reasons[1:])


def test_relabel_round_trip(planted, tmp_path):
    path, _, table, _, _ = planted
    queue = tmp_path / "queue.jsonl"
    flagged = api.flag(path, "planted", concepts=["5:-"], queue=queue)
    items = [json.loads(line) for line in queue.read_text().splitlines()]
    assert [i["pair_id"] for i in items] == flagged["pair_id"].to_list()
    assert {"decision", "new_label", "reasons", "response_a"} <= set(items[0])
    # a reviewer decides: flip the first, drop the second, set B on the third, keep the rest
    for item, decision in zip(items, ["flip", "drop", "b"], strict=False):
        item["decision"] = decision
    for item in items[3:6]:
        item["decision"] = "keep"
    queue.write_text("".join(json.dumps(i) + "\n" for i in items))
    counts = api.apply(path, queue, relabel="reviewed", pairs="planted")
    assert counts == {"b": 1, "drop": 1, "flip": 1, "keep": 3}
    first, second, third = (items[i]["pair_id"] for i in range(3))
    original = dict(zip(table["pair_id"].to_list(), table["label"].to_list(), strict=True))

    out = tmp_path / "curated.parquet"
    frame = api.export(path, out, pairs="planted", relabel="reviewed")
    written = pl.read_parquet(out)
    assert written.equals(frame) and written.height == table.height - 1
    for name in ("curated.ndjson", "curated.jsonl.gz"):  # every format write_dataset knows
        api.export(path, tmp_path / name, pairs="planted", relabel="reviewed")
        raw = (tmp_path / name).read_bytes()
        text = gzip.decompress(raw) if name.endswith(".gz") else raw
        ids = [json.loads(row)["pair_id"] for row in text.decode().splitlines()]
        assert ids == written["pair_id"].to_list()
    with pytest.raises(InputError, match=r"cannot tell the format of .*curated\.xlsx"):
        api.export(path, tmp_path / "curated.xlsx", pairs="planted", relabel="reviewed")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert second not in written["pair_id"].to_list()
    row = written.filter(pl.col("pair_id") == first).row(0, named=True)
    assert row["new_label"] == 1 - original[first] and row["label"] == original[first]
    assert row["decision"] == "flip"
    assert row["chosen"] == (row["response_a"] if row["new_label"] == 1 else row["response_b"])
    assert written.filter(pl.col("pair_id") == third)["new_label"][0] == 0.0
    undecided = written.filter(pl.col("decision").is_null())
    assert undecided["new_label"].to_list() == undecided["label"].to_list()
    # the original labels are untouched; fitting on the relabelling sees the new ones
    assert load_pairs_labels(path) == original
    from saeembed.store import Store

    with Store(path) as store:
        data = preference_data(store, "planted", api._pair_encoder(store, "planted", None),
                               relabel="reviewed")  # fmt: skip
    assert len(data.y) == table.height - 1
    # applying again replaces, not duplicates
    api.apply(path, queue, relabel="reviewed", pairs="planted")
    with Store(path) as store:
        n = store.sql("SELECT count(*) AS n FROM pair_labels WHERE relabel = 'reviewed'")["n"][0]
    assert n == 6


def load_pairs_labels(path):
    from saeembed.store import Store

    with Store(path) as store:
        got = load_pairs(store, "planted")
    return dict(zip(got["pair_id"].to_list(), got["label"].to_list(), strict=True))


def test_bad_decisions_are_refused_whole(planted, tmp_path):
    path = planted[0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"pair_id": 0, "decision": "flip"}\n{"pair_id": 1, "decision": "maybe"}\n')
    with pytest.raises(InputError, match="'maybe'.*not one of"):
        api.apply(path, bad, relabel="x")
    bad.write_text('{"pair_id": 999999, "decision": "flip"}\n')
    with pytest.raises(InputError, match="not in pair set"):
        api.apply(path, bad, relabel="x")
    bad.write_text('{"pair_id": 0, "decision": "flip"}\n{"pair_id": 0, "decision": "keep"}\n')
    with pytest.raises(InputError, match="two decisions"):
        api.apply(path, bad, relabel="x")
    with pytest.raises(InputError, match="cannot read concept"):
        api.flag(path, concepts=["harm"])
    with pytest.raises(StoreError, match="no relabelling 'x'"):
        api.fit(path, settings=api.FitSettings(relabel="x", dense=False))


def test_annotators_share_the_planted_model(tmp_path):
    store, *_ = build_pair_store(tmp_path / "a.duckdb", n=1600, seed=2, annotators=4)
    store.close()
    report = api.annotators(tmp_path / "a.duckdb", min_prevalence=0.1)
    assert report.annotators.height == 4
    assert not report.annotators["deviates"].any()
    pooled = {r["feature"]: r for r in report.concepts.iter_rows(named=True)}
    assert (
        pooled[3]["pooled_coef"] > 0 and pooled[3]["q"] < 1e-6 and pooled[3]["label"] == LABELS[3]
    )
    assert pooled[5]["pooled_coef"] < 0


def test_cli_fit_json_flag_apply_export(tmp_path):
    build_pair_store(tmp_path / "cli.duckdb", n=400, seed=3)[0].close()
    path = str(tmp_path / "cli.duckdb")
    runner = CliRunner()
    result = runner.invoke(main, ["prefs", "fit", path, "--format", "json", "--k", "2,5"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["metrics"]) == {"length", "dense", "all", "k2", "k5"}
    first = report["features"][0]
    assert {"feature", "label", "prevalence", "coef", "odds_ratio", "p", "q",
            "win_rate_delta"} <= set(first)  # fmt: skip
    assert first["feature"] == 3
    table = runner.invoke(main, ["prefs", "fit", path, "--format", "table", "--no-dense"])
    assert (
        table.exit_code == 0 and "Held-out AUC" in table.stdout and "polite apology" in table.stdout
    )

    queue = tmp_path / "q.jsonl"
    flagged = runner.invoke(main, ["prefs", "flag", path, "--concept", "5:-", "--no-model",
                                   "--queue", str(queue), "--format", "jsonl"])  # fmt: skip
    assert flagged.exit_code == 0, flagged.output
    items = [json.loads(line) for line in queue.read_text().splitlines()]
    items[0]["decision"] = "flip"
    queue.write_text("".join(json.dumps(i) + "\n" for i in items))
    applied = runner.invoke(main, ["prefs", "apply", path, str(queue), "--as", "cli"])
    assert applied.exit_code == 0 and "1 flip" in applied.stderr
    out = tmp_path / "out.jsonl"
    exported = runner.invoke(main, ["prefs", "export", path, "-o", str(out), "--relabel", "cli"])
    assert exported.exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    flipped = next(r for r in rows if r["pair_id"] == items[0]["pair_id"])
    assert flipped["new_label"] == 1 - flipped["label"]
    missing = runner.invoke(main, ["prefs", "fit", path, "--pairs", "nope"])
    assert missing.exit_code == 1 and "no pair set 'nope'" in missing.output


def _noise_store(path, n: int, one_prompt: bool = False):
    """Pairs whose labels ignore the concepts (a fair coin), optionally all on one prompt."""
    from saeembed.prefs.pairs import prompt_group
    from saeembed.store import Store
    from tests.fakes import ENCODER_FIELDS, write_constructed

    table, xa, xb = planted_pairs(n, seed=3)
    rng = np.random.default_rng(4)
    table = table.with_columns(pl.Series("label", (rng.random(n) < 0.5).astype(float)))
    if one_prompt:
        table = table.with_columns(
            pl.lit("the one question").alias("prompt"),
            pl.lit(prompt_group("the one question")).alias("prompt_group"),
        )
    store = Store(path)
    add_pairs(store, "noise", table, context=False, source="constructed")
    encoder, _ = store.get_or_create_encoder("fp-noise", {**ENCODER_FIELDS, "d_sae": 8})
    stored = store.sql("SELECT doc_a, doc_b FROM pairs ORDER BY pair_id")
    rows = []
    for side, x in (("doc_a", xa), ("doc_b", xb)):
        ids = stored[side].to_list()
        rows += [(ids[i], f, 1.0, 0, 6) for i, f in zip(*np.nonzero(x), strict=True)]
    write_constructed(store, encoder.encoder_id, stored["doc_a"].to_list()
                      + stored["doc_b"].to_list(), rows, n_tokens=5)  # fmt: skip
    return store, encoder


def test_a_strong_fit_has_directions_only_where_significant(planted):
    path, encoder, *_ = planted
    from saeembed.store import Store

    with Store(path) as store:
        report = fit_preferences(store, "planted", encoder, dense=False, ks=(2,))
    s = report.summary
    assert s["weak"] is None and s["folds_by"] == "prompt"
    low, high = s["auc_ci"]["k2"]
    assert low < report.metrics["k2"] < high and low > 0.6
    for row in report.features.iter_rows(named=True):
        if row["q"] is not None and row["q"] < 0.05:
            assert row["effect"] == ("rewarded" if row["coef"] > 0 else "punished")
        else:
            assert row["effect"] == "n.s.", row


def test_a_fit_on_noise_says_its_evidence_is_weak(tmp_path):
    """Labels that ignore the concepts: nothing significant, held-out AUC near chance; the fit
    says so in one line on stderr and calls no row rewarded or punished."""
    store, encoder = _noise_store(tmp_path / "noise.duckdb", 150)
    report = fit_preferences(store, "noise", encoder, dense=False, ks=(2,))
    store.close()
    assert report.summary["n_significant"] == 0
    assert set(report.features["effect"]) == {"n.s."}
    weak = report.summary["weak"]
    assert weak.startswith("weak evidence: no concept is significant at q < 0.05 and the best "
                           "concept model predicts held-out labels no better than chance (AUC ")  # fmt: skip
    assert "on 150 pairs" in weak
    result = CliRunner().invoke(
        main, ["prefs", "fit", str(tmp_path / "noise.duckdb"), "--no-dense", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if "weak evidence" in line] == [
        f"saeembed: {json.loads(result.stdout)['summary']['weak']}"
    ]
    quiet = CliRunner().invoke(
        main, ["-q", "prefs", "fit", str(tmp_path / "noise.duckdb"), "--no-dense"]
    )
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_pairs_that_all_share_one_prompt_fold_by_pair(tmp_path):
    """40 pairs answering one prompt: prompt-grouped folds would leave nothing to train on; the
    pairs are dealt into folds one by one (both labels in every fold) and the fit says so."""
    import warnings

    store, encoder = _noise_store(tmp_path / "one.duckdb", 40, one_prompt=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way either
        report = fit_preferences(store, "noise", encoder, dense=False, ks=(2,))
        data = preference_data(store, "noise", encoder)
    store.close()
    assert report.summary["folds_by"] == "pair"
    assert sorted(np.bincount(data.folds).tolist()) == [8, 8, 8, 8, 8]
    for fold in range(5):
        assert set(data.y[data.folds != fold]) == {0, 1}
    assert 0.0 <= report.metrics["all"] <= 1.0


def test_fit_settings_refuse_bad_values():
    for changes, message in [
        ({"alpha": 0.0}, "--alpha must be between 0 and 1"),
        ({"min_prevalence": 1.5}, "at most 1"),
        ({"controls": ("length", "topic")}, "unknown control 'topic'"),
        ({"ks": (5, 0)}, "--k needs sizes of at least 1"),
        ({"measure": "loud"}, "unknown --measure 'loud'"),
        ({"top": 0}, "--top must be >= 1"),
    ]:
        with pytest.raises(InputError, match=message):
            api.FitSettings(**changes).check()
    settings = api.FitSettings(ks=[2, 3], controls=[])
    assert (settings.ks, settings.controls) == ((2, 3), ())  # kept as tuples
    assert "panels" not in settings.fit_kwargs() and settings.fit_kwargs()["ks"] == (2, 3)
