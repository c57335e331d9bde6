"""2-D maps: UMAP coordinates on synthetic sparse clusters, the Parquet and HTML outputs, and
headless-browser checks of the HTML page: it loads, accounts for every document (positions
shared by several are one marker with their count), draws the cluster names, keeps legend
names whole, and at 100,000 documents draws a seeded sample and says so."""

from __future__ import annotations

import html
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from sklearn.metrics import silhouette_score

from saeembed.analysis.umap_layout import umap_coordinates
from saeembed.errors import InputError
from saeembed.links import safe_href
from saeembed.maps import MAX_POINTS, TEXTS_PER_SPOT, write_map_html, write_map_parquet
from tests.browser import Browser, find_chromium, shoot

EMBEDDED = re.compile(r'<script type="application/json" id="map-data">(.*?)</script>', re.S)
SELFTEST = re.compile(r'<pre id="selftest"[^>]*>(\{.*?)</pre>', re.S)
HOSTILE = "</script><script>alert(1)</script> <!-- not a comment"


def clustered(n_per: int = 60, n_clusters: int = 3, width: int = 20, seed: int = 0):
    """Sparse docs whose clusters use disjoint feature blocks; returns (matrix, labels)."""
    rng = np.random.default_rng(seed)
    rows, cols, vals, labels = [], [], [], []
    for k in range(n_clusters):
        for _ in range(n_per):
            doc = len(labels)
            active = k * width + rng.choice(width, size=6, replace=False)
            rows += [doc] * 6
            cols += active.tolist()
            vals += rng.uniform(0.5, 2.0, size=6).tolist()
            labels.append(k)
    shape = (len(labels), n_clusters * width)
    return sp.csr_matrix((vals, (rows, cols)), shape=shape), np.array(labels)


@pytest.fixture(scope="module")
def clusters():
    matrix, labels = clustered()
    return matrix, labels, umap_coordinates(matrix, seed=7)


def test_umap_separates_disjoint_clusters(clusters):
    matrix, labels, coords = clusters
    assert coords.shape == (matrix.shape[0], 2)
    assert coords.dtype == np.float32
    assert silhouette_score(coords, labels) > 0.5


def test_umap_same_seed_same_coordinates(clusters):
    matrix, _, coords = clusters
    assert np.array_equal(umap_coordinates(matrix, seed=7), coords)


def test_umap_zero_rows_sit_together_beside_the_map():
    matrix, _ = clustered(n_per=10)
    dense = matrix.toarray()
    dense[:4] = 0.0
    coords = umap_coordinates(dense, seed=1)
    assert coords.shape == (30, 2)
    assert np.isfinite(coords).all()
    assert (coords[:4] == coords[0]).all()
    assert (coords[0] < coords[4:].min(axis=0)).all()


def test_umap_leaves_the_input_alone():
    matrix, _ = clustered(n_per=10)
    matrix = matrix.astype(np.float64)
    matrix.data[: matrix.indptr[3]] = 0.0  # explicit zeros: umap_coordinates drops them (a copy)
    before = (matrix.indptr.copy(), matrix.indices.copy(), matrix.data.copy())
    umap_coordinates(matrix, seed=2)
    after = (matrix.indptr, matrix.indices, matrix.data)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_umap_duplicate_rows_share_coordinates():
    matrix, _ = clustered(n_per=10)
    doubled = sp.vstack([matrix, matrix[:5], 2.5 * matrix[5:8]])  # cosine: scaling is a tie too
    coords = umap_coordinates(doubled, seed=3)
    assert np.array_equal(coords[30:35], coords[:5])
    assert np.array_equal(coords[35:], coords[5:8])
    assert np.array_equal(umap_coordinates(doubled, seed=3), coords)


def test_umap_fewer_than_three_distinct_rows():
    rows = np.array([[1, 0, 0], [2, 0, 0], [1, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=np.float32)
    coords = umap_coordinates(rows)
    assert coords.tolist()[:4] == [[0, 0], [0, 0], [0, 0], [1, 0]]
    assert np.allclose(coords[4], [-0.05, -0.05])  # the empty row, beside the others


def test_umap_tiny_inputs():
    assert umap_coordinates(np.eye(3) + 0.1, n_neighbors=15).shape == (3, 2)
    with pytest.raises(InputError, match="at least 3 documents"):
        umap_coordinates(np.ones((2, 4)))
    with pytest.raises(InputError, match="NaN"):
        umap_coordinates(np.full((5, 2), np.nan))


def points_frame(n: int = 500) -> pl.DataFrame:
    """Points on a grid (well apart on screen), a feature column, and hostile text in row 0."""
    i = np.arange(n)
    texts = [f"Document {k} talks about topic {k % 4}." for k in range(n)]
    texts[0] = "First document, " + HOSTILE + " and a long tail " + "x" * 400
    return pl.DataFrame(
        {
            "doc_id": i + 1000,
            "x": (i % 25).astype(np.float32),
            "y": (i // 25).astype(np.float32),
            "cluster": np.where(i % 10 == 9, -1, i % 4),
            "text": texts,
            "feature:123": np.linspace(0.0, 3.0, n),
        }
    )


def test_parquet_round_trip(tmp_path):
    points = points_frame(50)
    path = write_map_parquet(points, tmp_path / "maps" / "map.parquet")
    assert pl.read_parquet(path).equals(points)


def test_parquet_missing_column(tmp_path):
    with pytest.raises(InputError, match="'cluster'"):
        write_map_parquet(points_frame(5).drop("cluster"), tmp_path / "map.parquet")


def write_page(tmp_path, points: pl.DataFrame):
    return write_map_html(
        points,
        tmp_path / "map.html",
        title="Test <map> & co",
        cluster_names={0: "cats", 1: "dogs", 2: "birds"},
        color_columns=["feature:123"],
    )


def test_html_is_self_contained_and_safe(tmp_path):
    points = points_frame()
    page = write_page(tmp_path, points).read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", page)
    assert "http://" not in page and "https://" not in page
    assert "</script><script>alert" not in page
    assert "<!-- not a comment" not in page
    assert page.count("</script>") == 2  # the data tag and the code tag, nothing injected
    data = json.loads(EMBEDDED.search(page).group(1))
    assert data["doc_id"] == [str(d) for d in points["doc_id"]]
    assert data["text"][0].startswith("First document, " + HOSTILE)
    assert len(data["text"][0]) == 300
    assert data["columns"]["feature:123"][-1] == 3.0
    assert data["cluster_names"] == {"0": "cats", "1": "dogs", "2": "birds"}
    assert "<title>Test &lt;map&gt; &amp; co</title>" in page


def test_html_validates_columns(tmp_path):
    with pytest.raises(InputError, match="'x'"):
        write_page(tmp_path, points_frame(5).drop("x"))
    with pytest.raises(InputError, match="feature:9"):
        write_map_html(points_frame(5), tmp_path / "m.html", title="t", color_columns=["feature:9"])
    as_text = points_frame(5).with_columns(pl.col("cluster").cast(pl.String))
    with pytest.raises(InputError, match="'cluster' is not integer"):
        write_page(tmp_path, as_text)


# concept links a map is given: kept (re-encoded) when a plain relative path to a file, else None
HREFS = {
    "map-features/feature-1.html": "map-features/feature-1.html",
    "./a%20b/feature-2.html": "a%20b/feature-2.html",
    "JAVASCRIPT%3Aalert(1)": "JAVASCRIPT%3Aalert%281%29",  # an encoded ':' is part of a name
    "javascript:alert(1)//x-features/feature-1.html": None,
    "javascript:alert(1)": None,
    " javascript:alert(1)": None,
    "java%0Ascript:x": None,
    "data:text/html,<script>alert(1)</script>": None,
    "https://example.com/x.html": None,
    "//example.com/x.html": None,
    "/etc/passwd": None,
    "../outside.html": None,
    "a/%2E%2E/b.html": None,
    "a%2Fb.html": None,
    "a\\b.html": None,
    "a?b.html": None,
    "a#b": None,
    "a b.html": None,
    "a//b.html": None,
    "": None,
}


def test_concept_links_are_plain_relative_paths_or_dropped(tmp_path):
    concepts = {0: [{"feature": i, "label": "x", "href": h} for i, h in enumerate(HREFS)]}
    page = write_map_html(
        points_frame(5), tmp_path / "m.html", title="t", cluster_concepts=concepts
    )
    data = json.loads(EMBEDDED.search(page.read_text(encoding="utf-8")).group(1))
    written = [c.get("href") for c in data["cluster_concepts"]["0"]]
    assert written == list(HREFS.values())
    assert [c["feature"] for c in data["cluster_concepts"]["0"]] == list(range(len(HREFS)))


def test_the_maps_script_checks_links_by_the_same_rule(tmp_path):
    """map.js re-checks each link (a page's data could come from elsewhere): its `safeHref`,
    run in node, gives what `saeembed.links.safe_href` gives."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node on PATH")
    script = (Path(__file__).parent.parent / "saeembed" / "templates" / "map.js").read_text()
    start = script.index("  const SEGMENT")
    body = script[start : script.index("\n  }\n", start) + 4]
    cases = [*HREFS, None, 3, "javascript%3Aalert%281%29%23x%3Fy%27z%20q-features/f.html"]
    probe = tmp_path / "probe.js"
    probe.write_text(f"{body}\nconsole.log(JSON.stringify({json.dumps(cases)}.map(safeHref)));\n")
    result = subprocess.run([node, str(probe)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [safe_href(c) for c in cases]


def test_html_in_headless_browser(tmp_path):
    browser = find_chromium()
    if browser is None:
        pytest.skip("no chromium/chrome binary on PATH (apt-get install chromium)")
    points = points_frame()
    page = write_page(tmp_path, points)
    command = [
        browser,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        f"{page.resolve().as_uri()}#selftest",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    found = SELFTEST.search(result.stdout)
    assert found, f"no self-test report in the DOM; stderr: {result.stderr[-2000:]}"
    report = json.loads(html.unescape(found.group(1)))
    assert report["points"] == points.height
    assert "doc_id: 1000" in report["tooltip"]
    assert "cluster: cats" in report["tooltip"]
    assert "First document, </script><script>alert(1)" in report["tooltip"]
    assert report["colorModes"] == ["cluster", "feature:123"]


def test_a_write_that_fails_midway_leaves_the_previous_page_whole(tmp_path, monkeypatch):
    """The page goes to a hidden sibling first: a run killed while writing leaves the previous
    page (or none), never a truncated one (a CI kill test once found an empty map.html)."""
    page = write_page(tmp_path, points_frame(20))
    before = page.read_text()
    real_write_text = Path.write_text

    def half_then_die(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_page(tmp_path, points_frame(30))
    monkeypatch.undo()
    assert page.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.html"]


# ---- positions shared by several documents, cluster names, sampling at scale ------------------


def stacked_frame() -> pl.DataFrame:
    """A realistic map's troubles in small: 6 named clusters of scattered positions, many shared
    by several documents (one by 90), 71 outliers at one spot (documents with no concept), a few
    scattered outliers and one document without coordinates."""
    rng = np.random.default_rng(3)
    centres = np.array([[-6, 4], [0, 6], [6, 4], [-6, -4], [0, -6], [6, -4]], dtype=float)
    xs, ys, clusters = [], [], []
    for c, centre in enumerate(centres):
        for k in range(40):
            x, y = centre + rng.normal(0, 1.0, 2)
            n = 90 if (c, k) == (0, 0) else int(min(30, rng.zipf(2.2)))
            xs += [x] * n
            ys += [y] * n
            clusters += [c] * n
    scattered = rng.uniform(-9, 9, (15, 2))
    xs += [-11.0] * 71 + scattered[:, 0].tolist() + [np.nan]
    ys += [-11.0] * 71 + scattered[:, 1].tolist() + [0.0]
    clusters += [-1] * 86 + [2]
    n = len(xs)
    return pl.DataFrame(
        {
            "doc_id": np.arange(n) + 5000,
            "x": np.array(xs, dtype=np.float32),
            "y": np.array(ys, dtype=np.float32),
            "cluster": clusters,
            "text": [f"Document {i}: " + "words " * 40 for i in range(n)],
            "feature:5": rng.uniform(0, 2, n),
        }
    )


NAMES = {
    0: "customer complaints / refunds / late delivery",
    1: "sports / football / match results",
    2: "cooking recipes / baking / ingredients",
    3: "politics / elections / parliamentary debate procedure in the upper house",
    4: "software bugs / stack traces",
    5: "travel / hotels / flights",
}


def page_data(page: Path) -> dict:
    return json.loads(EMBEDDED.search(page.read_text(encoding="utf-8")).group(1))


def test_page_data_accounts_for_every_document(tmp_path):
    points = stacked_frame()
    data = page_data(write_map_html(points, tmp_path / "m.html", title="t", cluster_names=NAMES))
    start = data["spot_start"]
    counts = np.diff(start)
    assert counts.sum() == points.height == data["n_docs"] and not data["sampled"]
    assert sorted(data["doc_id"]) == sorted(str(d) for d in points["doc_id"])  # outliers too
    distinct = points.select("x", "y").unique().height  # the NaN row is a position of its own
    assert len(data["spot_x"]) == data["n_spots"] == distinct
    assert counts.max() == 90
    by_id = {
        str(d): (x, y, c) for d, x, y, c in points.select("doc_id", "x", "y", "cluster").rows()
    }
    outliers = 0
    for s, (a, b) in enumerate(itertools.pairwise(start)):
        for d in range(a, b):  # every document listed at a position is at that position
            x, y, c = by_id[data["doc_id"][d]]
            assert data["cluster"][d] == c
            if data["spot_x"][s] is None:
                assert np.isnan(x)
            else:
                assert np.isclose(data["spot_x"][s], x) and np.isclose(data["spot_y"][s], y)
            outliers += c == -1
    assert outliers == 86
    stack = data["text"][start[int(np.argmax(counts))] :][:90]
    assert all(t is not None for t in stack[:TEXTS_PER_SPOT])  # the rest keep their ids only
    assert all(t is None for t in stack[TEXTS_PER_SPOT:])
    sizes = {c["id"]: c["size"] for c in data["clusters"]}
    assert sizes == dict(points["cluster"].value_counts().rows())
    for c in data["clusters"]:  # a name's anchor is one of its cluster's documents
        if c["id"] == -1:
            assert c["x"] is None and c["name"] == "outliers"
            continue
        assert c["name"] == NAMES[c["id"]]
        members = points.filter(pl.col("cluster") == c["id"])
        assert ((members["x"] - c["x"]).abs() + (members["y"] - c["y"]).abs()).min() < 1e-4


def test_page_samples_positions_above_max_points(tmp_path):
    points = stacked_frame()
    first = write_map_html(points, tmp_path / "a.html", title="t", max_points=50)
    data = page_data(first)
    assert data["sampled"] and len(data["spot_x"]) == 50 and data["n_docs"] == points.height
    assert data["n_spots"] == points.select("x", "y").unique().height
    counts = np.diff(data["spot_start"])
    for s, count in enumerate(counts.tolist()):  # a kept position keeps all its documents
        x, y = data["spot_x"][s], data["spot_y"][s]
        if x is not None:
            assert (
                count
                == points.filter((pl.col("x") - x).abs() + (pl.col("y") - y).abs() < 1e-4).height
            )
    assert sum(c["size"] for c in data["clusters"]) == points.height  # sizes count all
    again = page_data(write_map_html(points, tmp_path / "b.html", title="t", max_points=50))
    assert again == data  # the sample is seeded
    with pytest.raises(InputError, match="max_points"):
        write_map_html(points, tmp_path / "c.html", title="t", max_points=0)


def hover_at(browser: Browser, x: float, y: float) -> str:
    """The tooltip after a real mouse move to canvas pixel (x, y)."""
    left, top = browser.evaluate(
        "(({left, top}) => [left, top])(document.getElementById('canvas').getBoundingClientRect())"
    )
    browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": left + x, "y": top + y})
    return browser.evaluate(
        "(t => t.hidden ? '' : t.textContent)(document.getElementById('tooltip'))"
    )


def colour_by(browser: Browser, mode: str) -> None:
    browser.evaluate(
        "(() => { const select = document.getElementById('color-mode'); "
        f"select.value = {json.dumps(mode)}; select.dispatchEvent(new Event('change')); }})()"
    )


def dark_pixels(browser: Browser, box: dict) -> int:
    """Near-black pixels the canvas holds inside ``box`` (CSS pixels, device scale 1)."""
    return browser.evaluate(
        f"""(() => {{
        const canvas = document.getElementById("canvas");
        const pixels = canvas.getContext("2d").getImageData({box["x"]}, {box["y"]}, {box["w"]}, {box["h"]}).data;
        let dark = 0;
        for (let i = 0; i < pixels.length; i += 4) if (pixels[i] + pixels[i + 1] + pixels[i + 2] < 120 && pixels[i + 3] > 200) dark++;
        return dark;
        }})()"""
    )


def test_map_in_chromium_shows_counts_names_and_whole_legend(tmp_path, browser):
    points = stacked_frame()
    page = write_map_html(points, tmp_path / "map.html", title="stacks", cluster_names=NAMES)
    browser.open(page)
    assert browser.errors == []
    assert browser.outside_requests(page) == []
    state = browser.evaluate("saeembedMap.state()")
    distinct = points.select("x", "y").unique().height
    assert state["markers"] == distinct - 1  # one marker per position; the NaN one is not drawn
    assert state["points"] == points.height - 1 and sum(state["counts"]) == points.height
    assert state["base"] >= 5  # one document: a 10-pixel dot
    assert state["caption"] == (
        f"{points.height:,} documents at {distinct - 1} positions; "
        "1 document without coordinates (not drawn)"
    )
    shown = [label for label in state["labels"] if label["shown"]]
    assert {label["id"] for label in shown} == set(NAMES)  # apart enough for every name
    assert next(lb["text"] for lb in shown if lb["id"] == 4) == NAMES[4]
    assert next(lb["text"] for lb in shown if lb["id"] == 3).endswith("…")  # long: two lines, cut
    for a, b in itertools.combinations(shown, 2):  # names do not overlap
        assert (
            a["x"] + a["w"] <= b["x"]
            or b["x"] + b["w"] <= a["x"]
            or (a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])
        )
    for label in shown:  # drawn: dark text inside each name's box
        assert dark_pixels(browser, label) > 30
    # the 71 outliers with no concept: one big grey marker, its count written inside and listed
    spot = state["counts"].index(71)
    x, y, radius = browser.evaluate(f"saeembedMap.position({spot})")
    assert radius > 30
    tip = hover_at(browser, x + radius / 2, y)
    assert tip.startswith("71 documents here\ncluster: outliers\n")
    assert "• 5" in tip and "and 68 mores" not in tip and "and 68 more:" in tip
    assert "90 documents here" in browser.evaluate(
        f"saeembedMap.describe({state['counts'].index(90)})"
    )
    # the legend: every name whole (wrapped, never cut), sizes over all documents
    legend = browser.evaluate(
        "[...document.querySelectorAll('#legend .item')].map((item) => { const name = "
        "item.querySelector('.name'); return [name.textContent, item.title, "
        "name.scrollWidth <= name.clientWidth, item.querySelector('.size').textContent]; })"
    )
    sizes = dict(points["cluster"].value_counts().rows())
    biggest_first = sorted(NAMES, key=lambda c: (-sizes[c], c))
    assert [row[0] for row in legend[:-1]] == [NAMES[c] for c in biggest_first]
    assert [row[3] for row in legend[:-1]] == [str(sizes[c]) for c in biggest_first]
    assert all(row[0] == row[1] and row[2] for row in legend)
    assert legend[-1][:2] == ["outliers", "outliers"] and legend[-1][3] == "86"
    # another colour mode draws too
    colour_by(browser, "feature:5")
    assert browser.evaluate("saeembedMap.state().markers") == distinct - 1
    colour_by(browser, "cluster")
    assert browser.errors == []
    shoot(browser, page, "map-stacks")


def test_map_of_100k_documents_draws_a_sample_and_says_so(tmp_path, browser):
    n = 100_000
    rng = np.random.default_rng(0)
    cluster = rng.integers(-1, 12, n)
    centres = rng.uniform(-10, 10, (13, 2))
    xy = centres[cluster + 1] + rng.normal(0, 1.2, (n, 2))
    points = pl.DataFrame(
        {
            "doc_id": np.arange(n),
            "x": xy[:, 0].astype(np.float32),
            "y": xy[:, 1].astype(np.float32),
            "cluster": cluster,
            "text": [f"document {i} " + "word " * 50 for i in range(n)],
        }
    )
    names = {c: f"theme {c} / words / more words" for c in range(12)}
    page = write_map_html(points, tmp_path / "big.html", title="big", cluster_names=names)
    assert page.stat().st_size < 8_000_000  # a 20,000-position sample, not 100,000 texts
    seconds = browser.open(page)
    assert browser.errors == [] and browser.outside_requests(page) == []
    state = browser.evaluate("saeembedMap.state()")
    assert state["sampled"] and state["markers"] == MAX_POINTS == state["points"]
    assert state["caption"].startswith(
        "showing a sample of 20,000 of 100,000 positions (20,000 of 100,000 documents)"
    )
    assert browser.evaluate("document.getElementById('count').textContent") == state["caption"]
    assert len([label for label in state["labels"] if label["shown"]]) >= 6
    assert seconds < 30  # generous: the page measured about 0.5 s on a 2-core machine
    shoot(browser, page, "map-100k")
