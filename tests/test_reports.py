"""HTML reports (saeembed.reports): the diff report (two corpora, one against the rest, paired),
feature pages and the preference report, built on constructed stores and checked in headless
Chromium over the DevTools protocol: no console errors, no network requests, table rows,
sorting and filtering, token shading, quantile examples, and hostile text shown as text."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from saeembed.api import DiffSettings, EncodingOptions, diff, encode
from saeembed.errors import InputError
from saeembed.inputs import documents_from_texts
from saeembed.labels.table import write_labels
from saeembed.reports import write_feature_page, write_feature_pages
from saeembed.reports.page import render, write_text
from saeembed.store import Store
from saeembed.templates import script_json
from tests.browser import Browser, shoot
from tests.fakes import ENCODER_FIELDS, write_constructed

HOSTILE = "</script><script>window.injected = 1</script> <!-- plain words here"
PLAIN = HOSTILE.index("plain")  # feature 1 peaks on "plain" in document 0 of "left"
PEAK_VALUE = 7.5
LABELS = {1: "left thing <b>bold</b>", 2: "right thing", 3: "common", 4: "rare"}
JSON_BLOCK = re.compile(r'<script type="application/json" id="report-data">(.*?)</script>', re.S)
MAP_BLOCK = re.compile(r'<script type="application/json" id="map-data">(.*?)</script>', re.S)


def build_diff_store(path: Path, n: int = 40, seed: int = 0) -> Store:
    """Corpora left, right and other (``n`` documents each); feature 1 mostly in left, 2 mostly
    in right, 3 everywhere, 4..7 at random. Document 0 of left is hostile text whose feature-1
    peak is the word "plain" at `PEAK_VALUE`."""
    rng = np.random.default_rng(seed)
    store = Store(path)
    encoder, _ = store.get_or_create_encoder("fp-reports", ENCODER_FIELDS)
    share = {"left": {1: 0.75, 2: 0.1}, "right": {1: 0.1, 2: 0.75}, "other": {1: 0.3, 2: 0.3}}
    for corpus in ("left", "right", "other"):
        texts = [f"{corpus} review {i}: the film was fine and the plot moved" for i in range(n)]
        if corpus == "left":
            texts[0] = HOSTILE
        docs, _ = documents_from_texts(texts)
        docs = docs.with_columns(docs["row_idx"].cast(str).alias("ext_id"))
        store.add_documents(corpus, docs)
        ids = docs["doc_id"].to_list()
        rows = []
        for i, doc in enumerate(ids):
            for f in range(1, 8):
                p = share[corpus].get(f, 0.9 if f == 3 else 0.2)
                if corpus == "left" and i == 0 and f == 1:
                    rows.append((doc, 1, PEAK_VALUE, PLAIN, PLAIN + len("plain")))
                elif rng.random() < p:
                    rows.append((doc, f, float(rng.uniform(0.5, 5.0)), 0, len(corpus)))
        write_constructed(store, encoder.encoder_id, ids, rows, n_tokens=9)
    write_labels(
        store, encoder, pl.DataFrame({"feature": list(LABELS), "label": list(LABELS.values())})
    )
    return store


@pytest.fixture(scope="module")
def diff_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reports") / "diff.duckdb"
    build_diff_store(path).close()
    return path


def load(browser: Browser, page: Path, name: str) -> None:
    browser.open(page)
    assert browser.errors == []
    assert browser.outside_requests(page) == []
    shoot(browser, page, name, height=1400)


def payload_of(page: Path) -> dict:
    block = JSON_BLOCK.search(page.read_text(encoding="utf-8")).group(1)
    return json.loads(block)


# ---- the page itself --------------------------------------------------------------------------


def test_script_json_cannot_close_the_block():
    text = script_json({"t": HOSTILE, "x": float("nan"), "u": "a\u2028b"})
    assert "<" not in text and ">" not in text and "\u2028" not in text
    assert json.loads(text) == {"t": HOSTILE, "x": None, "u": "a\u2028b"}
    page = render("t <x>", {"kind": "index", "t": HOSTILE})
    assert page.count("</script>") == 2
    assert "<title>t &lt;x&gt;</title>" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page


def test_write_is_atomic_and_checks_the_directory(tmp_path):
    path = write_text(tmp_path / "r.html", "one")
    assert path.read_text() == "one" and oct(path.stat().st_mode & 0o777) != "0o600"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left
    with pytest.raises(InputError, match=r"output directory .*missing.* does not exist; create"):
        write_text(tmp_path / "missing" / "r.html", "x")
    with pytest.raises(InputError, match="is a directory"):
        write_text(tmp_path, "x")


# ---- diff report ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diff_page(diff_db, tmp_path_factory) -> tuple[Path, pl.DataFrame]:
    page = tmp_path_factory.mktemp("diff-page") / "report.html"
    report = diff("left", "right", db=diff_db, settings=DiffSettings(min_support=1), report=True,
                  progress=False).report  # fmt: skip
    report.write_html(page)
    return page, report.table


def test_diff_report_payload(diff_page):
    page, table = diff_page
    data = payload_of(page)
    meta = data["meta"]
    assert meta["sides"] == ["left", "right"] and meta["sizes"] == [40, 40]
    assert meta["tested"] == table.height == len(data["table"]["feature"])
    assert meta["significant"] == table.filter(pl.col("q") < 0.05).height
    assert meta["shading"] == "peak"  # the constructed encoder has no reader to run
    assert data["table"]["feature"] == table["feature"].to_list()
    panel = next(p for p in data["panels"] if p["feature"] == 1)
    assert sum(panel["hist"]["counts"][0]) + panel["hist"]["absent"][0] == 40
    assert [q["q"] for q in panel["quantiles"]] == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert len({q["d"] for q in panel["quantiles"]}) == 5
    assert "saeembed diff left right" in panel["commands"][0]
    assert {c["feature"] for c in panel["cooc"]} <= set(range(1, 8))


def test_diff_report_in_the_browser(diff_page, browser):
    page, table = diff_page
    load(browser, page, "diff-report")
    ev = browser.evaluate
    n = table.height
    assert ev("document.getElementById('concepts-count').textContent") == f"{n} of {n} concepts"
    assert ev("document.querySelectorAll('#concepts tbody tr').length") == min(n, 100)
    assert ev("document.querySelectorAll('section.panel').length") == min(n, 20)
    concepts_forest = "svg.forest:not(#themes svg.forest) circle"
    assert ev(f"document.querySelectorAll('{concepts_forest}').length") == min(n, 30)
    # the themes (kinds of documents) come first, each with its own panel and forest row
    n_themes = ev("document.querySelectorAll('#themes div.theme').length")
    assert n_themes >= 1
    assert ev("document.querySelectorAll('#themes svg.forest circle').length") == n_themes
    assert ev("document.querySelector('#report h2').textContent").startswith("Kinds of documents")
    # sorting by q: ascending, then descending
    ev("document.querySelector('#concepts th[data-col=q]').click()")
    q_col = "[...document.querySelectorAll('#concepts tbody tr')].map(r => +r.dataset.row)"
    rows = ev(q_col)
    qs = table["q"].to_numpy()[rows]
    assert (np.diff(qs) >= 0).all()
    ev("document.querySelector('#concepts th[data-col=q]').click()")
    assert (np.diff(table["q"].to_numpy()[ev(q_col)]) <= 0).all()
    # filtering by label text, q and side
    set_value = (
        "(() => {{ const e = document.getElementById('{id}'); e.value = '{value}';"
        " e.dispatchEvent(new Event('input')); }})()"
    )
    count = "document.querySelectorAll('#concepts tbody tr').length"
    ev(set_value.format(id="filter-label", value="THING"))
    assert ev(count) == table.filter(pl.col("label").str.contains("thing")).height == 2
    ev(set_value.format(id="filter-label", value=""))
    ev(set_value.format(id="filter-q", value="0.05"))
    assert ev(count) == table.filter(pl.col("q") < 0.05).height
    ev(set_value.format(id="filter-side", value="b"))
    assert ev(count) == table.filter((pl.col("q") < 0.05) & (pl.col("diff") < 0)).height
    # the known peak: "plain" in the hostile document, at its stored value
    mark = ev(
        "(() => { const m = [...document.querySelectorAll('#f1 mark.tok')]"
        ".find(m => m.textContent === 'plain'); return m && [m.dataset.v, m.style.background]; })()"
    )
    assert mark is not None and float(mark[0]) == PEAK_VALUE and "rgba" in mark[1]
    # the hostile document is text: shown verbatim, nothing injected
    shown = ev("[...document.querySelectorAll('#f1 .doc')].map(d => d.textContent)")
    assert any(HOSTILE in text for text in shown)
    assert ev("document.scripts.length") == 2 and ev("window.injected === undefined")
    assert ev("document.querySelector('#f1 h3').textContent") == f"#1 {LABELS[1]}"
    # quantile examples: p10 .. p90, values rising
    metas = ev("[...document.querySelectorAll('#f1 .quantiles .exmeta')].map(e => e.textContent)")
    assert [m.split(" · ")[0] for m in metas] == ["p10", "p30", "p50", "p70", "p90"]
    values = [float(m.rsplit("max ", 1)[1]) for m in metas]
    assert values == sorted(values)


def test_one_vs_rest_and_paired_reports(diff_db, tmp_path, browser):
    rest = tmp_path / "rest.html"
    diff("left", ["right", "other"], db=diff_db, settings=DiffSettings(min_support=1), html=rest,
         progress=False)  # fmt: skip
    data = payload_of(rest)
    assert data["meta"]["sides"] == ["left", "right + other"]
    assert data["meta"]["one_vs_rest"] and data["meta"]["sizes"] == [40, 80]
    load(browser, rest, "diff-one-vs-rest")
    assert "one against the rest" in browser.evaluate(
        "document.querySelector('.facts').textContent"
    )
    paired = tmp_path / "paired.html"
    table = diff("left", "right", db=diff_db, settings=DiffSettings(paired=True, min_support=1),
                 html=paired, progress=False).table  # fmt: skip
    data = payload_of(paired)
    assert data["meta"]["paired"] and "n_pairs" in data["table"]
    assert data["meta"]["tested"] == table.height
    load(browser, paired, "diff-paired")
    assert "paired" in browser.evaluate("document.querySelector('.facts').textContent")
    n = table.height
    count = browser.evaluate("document.getElementById('concepts-count').textContent")
    assert count == f"{n} of {n} concepts"


def test_diff_report_from_the_command_line(diff_db, tmp_path):
    from saeembed.cli import main

    page = tmp_path / "cli.html"
    result = CliRunner().invoke(
        main,
        ["-q", "diff", "left", "right", "--db", str(diff_db), "--min-support", "1",
         "--html", str(page), "--panels", "2", "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(payload_of(page)["panels"]) == 2
    assert json.loads(result.stdout)[0]["feature"] in (1, 2)
    missing = CliRunner().invoke(
        main,
        ["diff", "left", "right", "--db", str(diff_db), "--html", str(tmp_path / "no" / "r.html")],
    )
    assert missing.exit_code != 0
    assert "output directory" in missing.output and "does not exist" in missing.output


def test_diff_report_shows_in_jupyter(diff_db):
    result = diff("left", "right", db=diff_db, settings=DiffSettings(min_support=1, panels=1),
                  report=True, progress=False)  # fmt: skip
    shown = result._repr_html_()  # the report, when there is one
    assert shown == result.report._repr_html_()
    assert shown.startswith("<iframe srcdoc=") and "&lt;script" in shown
    assert "<script>" not in shown  # the page is inside the attribute, escaped


# ---- token-level shading with a real (tiny) reader ---------------------------------------------------


def test_token_shading_matches_the_stored_peaks(tmp_path, tiny_model, tiny_sae, browser):
    db = tmp_path / "tiny.duckdb"
    words = [
        "the",
        "movie",
        "was",
        "great",
        "and",
        "the",
        "plot",
        "was",
        "fun",
        "but",
        "the",
        "acting",
        "was",
        "awful",
    ]
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(words, size=10)) for _ in range(60)]
    for corpus, chunk in (("x", texts[:30]), ("y", texts[30:])):
        encode(
            chunk,
            db,
            corpus=corpus,
            progress=False,
            encoding=EncodingOptions(model=str(tiny_model), sae=str(tiny_sae)),
        )
    page = tmp_path / "tiny.html"
    diff("x", "y", db=db, settings=DiffSettings(min_support=1, panels=5), html=page, progress=False)
    data = payload_of(page)
    assert data["meta"]["shading"] == "tokens"
    checked = 0
    for panel in data["panels"]:
        for example in panel["top"][0] + panel["top"][1] + panel["quantiles"]:
            values = [v for _, _, v in example["s"]]
            assert values, "an example with no shaded token"
            assert max(values) == pytest.approx(example["v"], rel=1e-3, abs=1e-3)
            checked += 1
    assert checked >= 10
    load(browser, page, "diff-tiny-tokens")
    top = browser.evaluate(
        "(() => { const ex = document.querySelector('section.panel .top-0 .ex');"
        " const vs = [...ex.querySelectorAll('mark.tok')].map(m => +m.dataset.v);"
        " return [Math.max(...vs), +ex.querySelector('.exmeta').textContent.split('max ')[1]]; })()"
    )
    assert top[0] == pytest.approx(top[1], abs=2e-3)


# ---- feature pages -------------------------------------------------------------------------------


def test_feature_pages_in_the_browser(diff_db, tmp_path, browser):
    with Store(diff_db, read_only=True) as store:
        encoder = store.resolve_encoder(None)
        index = write_feature_pages(store, encoder, tmp_path, features=[1, 2, 3], progress=False)
        single = write_feature_page(store, encoder, 4, tmp_path / "four.html", progress=False)
        with pytest.raises(InputError, match="is a file, not a directory"):
            write_feature_pages(store, encoder, tmp_path / "four.html", progress=False)
        with pytest.raises(InputError, match="feature 99 does not exist"):
            write_feature_page(store, encoder, 99, tmp_path / "x.html", progress=False)
    assert sorted(p.name for p in tmp_path.glob("*.html")) == [
        "feature-1.html", "feature-2.html", "feature-3.html", "four.html", "index.html",
    ]  # fmt: skip
    load(browser, index, "feature-index")
    assert browser.evaluate("document.querySelectorAll('#features tbody tr').length") == 3
    links = browser.evaluate(
        "[...document.querySelectorAll('#features a')].map(a => a.getAttribute('href'))"
    )
    assert sorted(links) == ["feature-1.html", "feature-2.html", "feature-3.html"]
    page = tmp_path / "feature-1.html"
    load(browser, page, "feature-page")
    data = payload_of(page)
    density = browser.evaluate("document.getElementById('density').textContent")
    assert f"{data['meta']['n_docs']} of 120" in density
    assert browser.evaluate("document.querySelector('h1').textContent") == f"Feature 1: {LABELS[1]}"
    mark = browser.evaluate(
        "[...document.querySelectorAll('mark.tok')].filter(m => m.textContent === 'plain')"
        ".map(m => +m.dataset.v)"
    )
    assert mark and mark[0] == PEAK_VALUE
    assert browser.evaluate("document.querySelectorAll('.quantiles .ex').length") == 5
    assert any(
        HOSTILE in t
        for t in browser.evaluate("[...document.querySelectorAll('.doc')].map(d => d.textContent)")
    )
    assert browser.evaluate("document.scripts.length") == 2
    load(browser, single, "feature-single")
    assert browser.evaluate("document.querySelector('h1').textContent") == f"Feature 4: {LABELS[4]}"


def test_features_cli_writes_pages(diff_db, tmp_path):
    from saeembed.cli import main

    runner = CliRunner()
    out = tmp_path / "pages"
    out.mkdir()
    result = runner.invoke(
        main, ["-q", "features", "pages", str(diff_db), "--out", str(out), "--top", "2"]
    )
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("feature-*.html"))) == 2 and (out / "index.html").exists()
    page = tmp_path / "one.html"
    result = runner.invoke(main, ["-q", "features", "show", str(diff_db), "2", "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert payload_of(page)["feature"] == 2
    fresh = tmp_path / "new" / "pages"  # a first run: the folder is made
    made = runner.invoke(main, ["-q", "features", "pages", str(diff_db), "--out", str(fresh)])
    assert made.exit_code == 0, made.output
    assert (fresh / "index.html").exists()


def test_feature_pages_start_with_the_distinctive_features(diff_db, monkeypatch):
    """By default the pages start with features this corpus has far more often than the SAE's
    labelling corpus; features in most documents or in fewer than 3 come last or not at all."""
    from saeembed.reports import feature_pages

    counts = pl.DataFrame({"feature": [1, 2, 3, 4, 5], "n_docs": [110, 50, 20, 2, 30]})
    reference = pl.DataFrame(
        {"feature": [1, 2, 3, 4, 5], "ref_density": [0.9, 0.4, 0.01, 0.001, 0.05]}
    )
    with Store(diff_db, read_only=True) as store:
        encoder = store.resolve_encoder(None)
        n_docs = store.con.execute("SELECT count(*) FROM documents").fetchall()[0][0]
        assert n_docs == 120  # 110 of them is "in most documents"

        def choose(order):
            return feature_pages.choose_features(store, encoder, counts, top=10, order=order)

        assert choose("frequent") == [1, 2, 5, 3, 4]
        monkeypatch.setattr(feature_pages, "shipped_frequencies", lambda encoder: None)
        assert choose("distinctive") == [2, 5, 3]  # no reference: frequent, not everywhere
        monkeypatch.setattr(feature_pages, "shipped_frequencies", lambda encoder: reference)
        # 3: 20/120 = 0.167 against 0.01; 5: 0.25 against 0.05; 2: 0.42 against 0.4
        assert choose("distinctive") == [3, 5, 2]


# ---- preference report ---------------------------------------------------------------------------


def test_prefs_report_in_the_browser(tmp_path, browser):
    from saeembed.api.preferences import FitSettings, fit
    from tests.pair_store import LABELS as PAIR_LABELS
    from tests.pair_store import build_pair_store

    db = tmp_path / "pairs.duckdb"
    store, *_ = build_pair_store(db, n=400)
    store.close()
    page = tmp_path / "prefs.html"
    report = fit(db, html=page, progress=False, settings=FitSettings(dense=False, panels=3, top=5))
    assert report.features.height == 5
    data = payload_of(page)
    assert len(data["table"]["feature"]) == data["meta"]["n_concepts_tested"]
    load(browser, page, "prefs-report")
    ev = browser.evaluate
    assert ev("document.querySelectorAll('#auc tbody tr').length") == len(report.metrics)
    n = data["meta"]["n_concepts_tested"]
    assert ev("document.getElementById('concepts-count').textContent") == f"{n} of {n} concepts"
    ev("(() => { const e = document.getElementById('filter-side'); e.value = 'punished';"
       " e.dispatchEvent(new Event('input')); })()")  # fmt: skip
    punished = sum(1 for e in data["table"]["effect"] if e == "punished")
    assert ev("document.querySelectorAll('#concepts tbody tr').length") == punished
    assert ev("document.getElementById('weak')") is None  # a strong fit has no warning
    auc_low = ev("+document.querySelector('#auc tbody tr:last-child td:nth-child(3)').textContent")
    assert 0.5 < auc_low < list(report.metrics.values())[-1]
    # the planted concepts lead, each with pairs shown side by side, the concept marked
    assert {p["feature"] for p in data["panels"][:2]} == {3, 5}
    heading = ev("document.querySelector('#f3 h3').textContent")
    assert heading == f"#3 {PAIR_LABELS[3]}"
    pairs = ev("document.querySelectorAll('#f3 .pair').length")
    assert pairs == 3
    sides = ev(
        "[...document.querySelectorAll('#f3 .pair')].map(p => [p.querySelector('.preferred h5')"
        ".textContent, p.querySelector('.rejected h5').textContent, p.querySelectorAll('mark.tok').length])"
    )
    assert all(s[:2] == ["preferred", "rejected"] and s[2] == 1 for s in sides)

    # a weak fit (100 pairs, labels shuffled) says so above everything else
    store, *_ = build_pair_store(tmp_path / "weak.duckdb", n=100)
    store.con.execute("UPDATE pairs SET label = CASE WHEN hash(pair_id) % 2 = 0 THEN 1 ELSE 0 END")
    store.close()
    weak = fit(
        tmp_path / "weak.duckdb",
        html=tmp_path / "weak.html",
        progress=False,
        settings=FitSettings(dense=False),
    )
    assert weak.summary["weak"]
    load(browser, tmp_path / "weak.html", "prefs-weak")
    assert ev("document.getElementById('weak').textContent") == weak.summary["weak"]


# ---- cluster maps link to feature pages ----------------------------------------------------------


def test_cluster_map_lists_concepts_linked_to_feature_pages(diff_db, tmp_path, browser):
    from saeembed.api import ClusterSettings, cluster

    plain = tmp_path / "plain.html"
    cluster(
        diff_db, map_path=plain, name="plain", settings=ClusterSettings(method="kmeans", k=3, top=3)
    )
    assert not (tmp_path / "plain-features").exists()  # feature pages are opt-in
    path = tmp_path / "map.html"
    result = cluster(
        diff_db,
        map_path=path,
        name="three",
        map_pages=True,
        settings=ClusterSettings(method="kmeans", k=3, top=3),
    )
    folder = tmp_path / "map-features"
    assert (folder / "index.html").exists()
    wanted = {f for fs in result.summary["top_features"].to_list() for f in fs[:5]}
    assert {int(p.stem.split("-")[1]) for p in folder.glob("feature-*.html")} == wanted
    browser.open(path, ready="document.querySelectorAll('#legend .item').length > 0")
    assert browser.errors == [] and browser.outside_requests(path) == []
    browser.evaluate("document.querySelector('#legend .item').click()")
    links = browser.evaluate(
        "[...document.querySelectorAll('#legend ul.concepts')].filter(u => !u.hidden)"
        ".flatMap(u => [...u.querySelectorAll('a')].map(a => a.getAttribute('href')))"
    )
    assert links and all(link.startswith("map-features/feature-") for link in links)
    assert all((tmp_path / link).exists() for link in links)
    shoot(browser, path, "cluster-map", height=1400)


def test_cluster_map_links_stay_relative_whatever_the_map_is_called(diff_db, tmp_path):
    """A map file named like a URL (``javascript:``, ``#``, ``?``, quotes, a space) links its
    concepts by relative, percent-encoded paths to pages that exist, never by a scheme."""
    from saeembed.api import ClusterSettings, cluster

    path = tmp_path / "javascript:alert(1)#x?y'z \"q.html"
    cluster(
        diff_db,
        map_path=path,
        name="hostile",
        map_pages=True,
        settings=ClusterSettings(method="kmeans", k=3, top=3),
    )
    page = path.read_text(encoding="utf-8")
    data = json.loads(MAP_BLOCK.search(page).group(1))
    hrefs = [c["href"] for concepts in data["cluster_concepts"].values() for c in concepts]
    assert hrefs and len(hrefs) == sum(len(c) for c in data["cluster_concepts"].values())
    for href in hrefs:
        assert not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", href), href  # no scheme
        assert not href.startswith("/") and "\\" not in href, href
        assert not any(c in href for c in ":#?'\" "), href  # all percent-encoded
        assert href.startswith("javascript%3Aalert%281%29%23x%3Fy%27z%20%22q-features/feature-")
        assert (tmp_path / unquote(href)).is_file(), href
    assert 'href="javascript' not in page


# ---- the real default model ----------------------------------------------------------------------

GOOD = ["A warm, funny and beautifully acted film.", "The best thriller of the year, tense and smart.",
        "I loved every minute; the cast is superb.", "A delightful, moving story told with grace.",
        "Brilliant direction and a wonderful score.", "Charming, clever and full of heart."]  # fmt: skip
BAD = ["A dull, lifeless mess that drags on forever.", "The plot makes no sense and the acting is wooden.",
       "Boring, predictable and far too long.", "I walked out; it was a waste of two hours.",
       "Clumsy writing and a tedious, muddled story.", "Painfully unfunny and badly edited."]  # fmt: skip


@pytest.mark.slow
def test_diff_report_on_real_reviews(saeembed_home, tmp_path, browser):
    db = tmp_path / "real.duckdb"
    encode(GOOD, db, corpus="good", progress=False)
    encode(BAD, db, corpus="bad", progress=False)
    page = tmp_path / "real.html"
    report = diff("good", "bad", db=db, settings=DiffSettings(min_support=2, panels=3), html=page,
                  report=True, progress=False).report  # fmt: skip
    data = payload_of(page)
    assert data["meta"]["shading"] == "tokens" and data["meta"]["tested"] == report.table.height
    for panel in data["panels"]:
        for example in panel["top"][0] + panel["top"][1]:
            assert max(v for _, _, v in example["s"]) == pytest.approx(example["v"], rel=0.02)
    load(browser, page, "diff-real")
    assert browser.evaluate("document.querySelectorAll('section.panel mark.tok').length") > 0
    with Store(db, read_only=True) as store:
        feature = data["panels"][0]["feature"]
        one = write_feature_page(store, store.resolve_encoder(None), feature, tmp_path / "f.html",
                                 progress=False)  # fmt: skip
    shown = payload_of(one)
    assert len(shown["promoted"]) == 10 and len(shown["suppressed"]) == 10
    load(browser, one, "feature-real")


def test_top_examples_skip_near_duplicates():
    """A review quoted twice (or one snippet inside another) is shown once among the top
    examples; the next strongest distinct document takes its place."""
    from saeembed.reports.concept_data import near_duplicate, pick_examples

    def words(text):
        return set(re.findall(r"\w+", text.lower()))

    review = "A film that perfectly distills the relationship between pop music and teens"
    assert near_duplicate(words(review), words(review.upper() + "!"))
    assert near_duplicate(words(review), words("…" + review + " searching for identity."))
    assert not near_duplicate(words("A stylish thriller."), words("A stylish but empty film."))
    assert not near_duplicate(words("a film"), words(review))  # few words are no evidence
    rows = pl.DataFrame({"doc_id": [1, 2, 3, 4], "side": [0] * 4, "value": [0.9, 0.8, 0.7, 0.6]})
    texts = {1: review, 2: review + " Great.", 3: "Something else entirely here", 4: "x"}
    top, _ = pick_examples(rows, 1, 2, texts)
    assert [r["doc_id"] for r in top[0]] == [1, 3]
    assert [r["doc_id"] for r in pick_examples(rows, 1, 2)[0][0]] == [1, 2]  # without texts


def test_feature_page_marks_the_strong_threshold_and_leaves_out_ubiquitous_partners(
    diff_db, tmp_path, browser
):
    from saeembed.reports.feature_pages import feature_payloads
    from saeembed.store.counts import STRONG_FRACTION

    with Store(diff_db, read_only=True) as store:
        encoder = store.resolve_encoder(None)
        (payload,) = feature_payloads(store, encoder, [1], scorer=None, progress=False)
        p99 = store.sql("SELECT quantile_cont(value, 0.99) AS p FROM activations "
                        "WHERE feature = 1 AND value > 0")["p"][0]  # fmt: skip
        shares = store.sql(
            "SELECT feature, count(*) / 120 AS share FROM activations GROUP BY feature"
        )
    assert payload["hist"]["strong"] == pytest.approx(STRONG_FRACTION * p99, rel=1e-3)
    common = set(shares.filter(pl.col("share") > 0.5)["feature"].to_list())
    assert not {c["feature"] for c in payload["cooc"]} & common
    page = write_feature_page_from(payload, tmp_path / "f1.html")
    load(browser, page, "feature-strong-mark")
    mark = browser.evaluate("document.querySelector('.strong-mark text').textContent")
    assert mark.startswith("strong ≥ ")


def write_feature_page_from(payload: dict, path: Path) -> Path:
    from saeembed.reports import page

    return page.write_text(path, page.render("feature", payload))
