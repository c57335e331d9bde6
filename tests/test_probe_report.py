"""The probe report (saeembed.reports.probe_report): built from probes of the constructed topic
store (a binary and a three-class column) and of a numeric column, its data checked against the
`ProbeResult` number for number, and the page checked in headless Chromium: the scores, the
curve over k, the hypotheses with those that hold marked, panels of example documents from the
class each concept marks, no script error, no network request, hostile text shown as text; and
once through `saeembed probe ... --html`."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from saeembed.analysis.probe import run_probe
from saeembed.analysis.probe_settings import ProbeSettings
from saeembed.cli import main
from saeembed.errors import InputError
from saeembed.reports.probe_report import (
    PROBE_PANELS,
    probe_payload,
    score_group,
    verdicts,
    write_probe_report,
)
from saeembed.store import Store
from saeembed.templates import clean
from tests.browser import shoot
from tests.test_probe import constructed_store
from tests.topic_store import LABELS, build_topic_store

HOSTILE = "</script><script>window.injected = 1</script> <!-- and <b>bold</b>"
JSON_BLOCK = re.compile(r'<script type="application/json" id="report-data">(.*?)</script>', re.S)
SETTINGS = ProbeSettings(dense="none")


def payload_of(page: Path) -> dict:
    return json.loads(JSON_BLOCK.search(page.read_text(encoding="utf-8")).group(1))


@pytest.fixture(scope="module")
def topic_db(tmp_path_factory) -> tuple[Path, pl.DataFrame]:
    """The topic store, every document's text ending in markup (its peaks stay where they were)."""
    path = tmp_path_factory.mktemp("probe-report") / "topics.duckdb"
    store, _, truth = build_topic_store(path)
    store.con.execute("UPDATE documents SET text = text || ?", [" " + HOSTILE])
    store.close()
    return path, truth


def _linear(values, rng):
    return 2 * values[:, 0] - values[:, 1] + rng.normal(0, 0.2, len(values))


@pytest.fixture(scope="module")
def probes(topic_db, tmp_path_factory) -> dict:
    """name -> (db, target, result, page, truth) for tone (binary), topic (three classes) and a
    number."""
    path, truth = topic_db
    out = {}
    with Store(path) as store:
        encoder = store.resolve_encoder(None)
        for target in ("tone", "topic"):
            result = run_probe(store, target, encoder, settings=SETTINGS)
            page = write_probe_report(store, encoder, result, path.parent / f"{target}.html",
                                      progress=False)  # fmt: skip
            out[target] = (path, target, result, page, truth)
    numeric_db = tmp_path_factory.mktemp("probe-numeric") / "numeric.duckdb"
    store, encoder = constructed_store(numeric_db, _linear)
    with store:
        result = run_probe(store, "y", encoder, settings=SETTINGS)
        page = write_probe_report(store, encoder, result, numeric_db.parent / "y.html",
                                  progress=False)  # fmt: skip
    out["number"] = (numeric_db, "y", result, page, None)
    return out


KINDS = ["tone", "topic", "number"]


def test_score_groups_and_verdicts():
    assert [score_group(p) for p in ("concepts (k by inner CV: 4)", "concepts, k=8",
            "reader (layer 3, mean-pooled)", "sentence embedder (all-MiniLM-L6-v2)",
            "union (reader + concepts)")] == ["concepts", "curve", "dense", "dense", "union"]  # fmt: skip
    frame = pl.DataFrame({"odds_ratio": [3.0, 2.0, 0.5, 1.5, None], "low": [1.2, 0.9, 0.2, 1.1, None],
                          "q": [0.01, 0.01, 0.9, 0.2, None]})  # fmt: skip
    assert verdicts(frame, True) == ["holds", "open", "contradicted", "open", "open"]
    numeric = pl.DataFrame({"coef": [0.5, -0.1], "low": [0.1, -0.3], "q": [0.001, 0.5]})
    assert verdicts(numeric, False) == ["holds", "contradicted"]
    assert verdicts(pl.DataFrame(), True) == []


@pytest.mark.parametrize("name", KINDS)
def test_payload_holds_the_results_numbers(probes, name):
    _, target, result, page, truth = probes[name]
    data = payload_of(page)
    assert data["kind"] == "probe"
    # the scores and hypotheses exactly as the result has them (NaN as null)
    rows = [{k: v for k, v in r.items() if k not in ("group", "k")} for r in data["scores"]]
    assert rows == clean(result.scores.to_dicts())
    assert [r["group"] for r in data["scores"]] == [score_group(p) for p in result.scores["probe"]]
    curve = [r for r in data["scores"] if r["group"] == "curve"]
    assert curve and all(r["probe"] == f"concepts, k={r['k']}" for r in curve)
    hypotheses = data["hypotheses"]
    assert {k: v for k, v in hypotheses.items() if k != "verdict"} == clean(
        result.hypotheses.to_dict(as_series=False)
    )
    categorical = name != "number"
    assert hypotheses["verdict"] == verdicts(result.hypotheses, categorical)
    assert {k: data["meta"][k] for k in result.summary} == clean(result.summary)
    assert data["meta"]["target"] == target and data["meta"]["shading"] == "peak"
    # panels: the first hypotheses, each shown where it fires in the class it marks
    panels = data["panels"]
    assert [p["feature"] for p in panels] == result.hypotheses["feature"].to_list()[:PROBE_PANELS]
    for panel in panels:
        assert panel["row"]["feature"] == panel["feature"]
        assert panel["marked"] and all(ex["v"] > 0 and ex["s"] for ex in panel["marked"])
        values = [ex["v"] for ex in panel["marked"]]
        assert values == sorted(values, reverse=True)
        if categorical:
            marks = panel["row"]["marks"]
            assert all(ex["y"] == marks for ex in panel["marked"])
            assert all(ex["y"] != marks for ex in panel["other"])
            of_doc = dict(zip(truth["doc_id"].to_list(), truth[target].to_list(), strict=True))
            assert all(of_doc[int(ex["d"])] == ex["y"] for ex in panel["marked"] + panel["other"])
        else:
            assert panel["other"] == []
            assert all(isinstance(ex["y"], float) for ex in panel["marked"])


def test_a_topic_concept_marks_its_topic(probes):
    data = payload_of(probes["topic"][3])
    topic_of = {0: "sports", 1: "sports", 2: "film", 3: "film", 4: "cooking", 5: "cooking"}
    for panel in data["panels"]:
        if panel["feature"] in topic_of:
            assert panel["row"]["marks"] == topic_of[panel["feature"]]
            assert panel["label"] == LABELS[panel["feature"]]
            # a topic's concept fires in its topic only
            assert panel["n_other"] == 0 and panel["other"] == []


@pytest.mark.parametrize("name", KINDS)
def test_probe_report_in_the_browser(probes, browser, name):
    _, target, result, page, _ = probes[name]
    browser.open(page)
    assert browser.errors == []
    assert browser.outside_requests(page) == []
    shoot(browser, page, f"probe-report-{name}", height=1600)
    ev = browser.evaluate
    scores = result.scores
    main_rows = scores.filter(~pl.col("probe").str.starts_with("concepts, k="))
    assert ev("document.querySelectorAll('#score-chart g.srow').length") == main_rows.height
    curve = scores.filter(pl.col("probe").str.starts_with("concepts, k=")).height
    assert ev("document.querySelectorAll('#curve-chart circle.kpoint').length") == curve
    chart = ev("document.getElementById('score-chart').textContent")
    first = scores.row(0, named=True)
    assert f"{first['score']:.3f} [{first['low']:.3f}, {first['high']:.3f}]" in chart
    assert first["probe"][:40] in chart
    headline = ev("document.getElementById('headline').textContent")
    assert f"{result.summary['metric']} {first['score']:.3f}" in headline
    assert ev("document.querySelectorAll('#scores tbody tr').length") == scores.height
    # no dense probe ran: the page says so and how to add one
    assert "--dense none" in ev("document.querySelector('.probe-note').textContent")
    # every hypothesis by name; those that hold tinted, the contradicted greyed
    hyp = result.hypotheses
    names = ev("[...document.querySelectorAll('#hypotheses td.concept')].map(td => td.textContent)")
    assert len(names) == hyp.height
    for shown, feature, label in zip(names, hyp["feature"], hyp["name"], strict=True):
        assert shown.startswith(f"#{feature} {label}")
    verdict = verdicts(hyp, name != "number")
    for kind in ("holds", "contradicted"):
        count = ev(f"document.querySelectorAll('#hypotheses tr.{kind}').length")
        assert count == verdict.count(kind)
    if name == "number":  # the topic store's concepts separate their classes: no Wald test
        assert verdict[:2] == ["holds", "holds"]
        tint = "getComputedStyle(document.querySelector('#hypotheses tr.holds td')).backgroundColor"
        assert ev(tint) not in ("rgba(0, 0, 0, 0)", "transparent")
    # the panels: shaded examples
    panels = min(PROBE_PANELS, hyp.height)
    assert ev("document.querySelectorAll('section.panel').length") == panels
    assert ev("document.querySelectorAll('section.panel mark.tok').length") >= panels


def test_document_markup_is_shown_as_text(probes, browser):
    page = probes["tone"][3]
    browser.open(page)
    assert browser.errors == []
    shown = browser.evaluate("[...document.querySelectorAll('section.panel .doc')].map(d => d.textContent)")  # fmt: skip
    assert shown and all(HOSTILE in text for text in shown)
    assert browser.evaluate("document.scripts.length") == 2
    assert browser.evaluate("window.injected === undefined")
    assert browser.evaluate("document.querySelectorAll('section.panel .doc b').length") == 0


def test_notes_and_a_dense_baseline_show(probes, tmp_path, browser):
    """A probe with a dense baseline shows it in the headline and as a line over the curve; a
    note (no reader vectors, and how to add them) shows as a warning."""
    db, target, result, _, _ = probes["tone"]
    first = result.scores.row(0, named=True)
    dense = pl.DataFrame([{**first, "probe": "sentence embedder (test)", "inputs": 384,
                           "score": 0.9, "low": 0.85, "high": 0.95}], schema=result.scores.schema)  # fmt: skip
    scores = pl.concat([result.scores.head(1), dense, result.scores.slice(1)])
    note = "no reader baseline: run `saeembed encode ... --keep-dense` on this store to add them"
    summary = {**result.summary, "dense_probe": "sentence embedder (test)", "dense_score": 0.9,
               "notes": [note]}  # fmt: skip
    changed = dataclasses.replace(result, scores=scores, summary=summary)
    page = tmp_path / "dense.html"
    with Store(db, read_only=True) as store:
        write_probe_report(store, store.resolve_encoder(None), changed, page, panels=2,
                           progress=False)  # fmt: skip
    browser.open(page)
    assert browser.errors == []
    ev = browser.evaluate
    assert ev("document.querySelector('.probe-note').textContent") == note
    headline = ev("document.getElementById('headline').textContent")
    assert "sentence embedder (test) scores 0.900" in headline
    lines = ev("[...document.querySelectorAll('#curve-chart g.refline')].map(g => g.dataset.group)")
    assert "dense" in lines
    assert ev("document.querySelectorAll('section.panel').length") == 2


def test_no_hypotheses_still_makes_a_page(probes, tmp_path, browser):
    db, _, result, _, _ = probes["tone"]
    empty = dataclasses.replace(result, hypotheses=pl.DataFrame())
    page = tmp_path / "empty.html"
    with Store(db, read_only=True) as store:
        encoder = store.resolve_encoder(None)
        data = probe_payload(store, encoder, empty, scorer=None, progress=False)
        write_probe_report(store, encoder, empty, page, progress=False)
    assert data["hypotheses"] == {} and data["panels"] == []
    browser.open(page)
    assert browser.errors == []
    assert browser.evaluate("document.getElementById('no-hypotheses') !== null")


def test_the_output_folder_must_exist(probes, tmp_path):
    db, _, result, _, _ = probes["tone"]
    with Store(db, read_only=True) as store, pytest.raises(InputError, match="does not exist"):
        write_probe_report(store, store.resolve_encoder(None), result,
                           tmp_path / "missing" / "p.html", progress=False)  # fmt: skip


def test_probe_html_from_the_command_line(topic_db, tmp_path):
    db, truth = topic_db
    page = tmp_path / "cli.html"
    out = CliRunner().invoke(main, ["-q", "probe", str(db), "--target", "topic", "--dense",
                                    "none", "--hypotheses", "6", "--html", str(page)])  # fmt: skip
    assert out.exit_code == 0, out.output
    data = payload_of(page)
    assert data["kind"] == "probe" and data["meta"]["target"] == "topic"
    assert data["meta"]["classes"] == dict(truth["topic"].value_counts().sort("topic").iter_rows())
    assert len(data["hypotheses"]["feature"]) == len(data["panels"]) == 6
    assert np.isfinite(data["scores"][0]["score"])
