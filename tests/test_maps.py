"""2-D maps: UMAP coordinates on synthetic sparse clusters, the Parquet and HTML outputs, and a
headless-browser check that the HTML page loads, draws every point and shows a hover tooltip."""

from __future__ import annotations

import html
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

from saeembed.errors import InputError
from saeembed.links import safe_href
from saeembed.maps import umap_coordinates, write_map_html, write_map_parquet

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


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


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
