"""2-D maps of documents: UMAP coordinates from (already restricted and weighted) concept
vectors, and the two map outputs — a Parquet table of points and a single self-contained HTML
page (inline CSS/JS, data embedded as JSON, no network) with a canvas scatter plot, colour modes,
legend and hover tooltips. Clustering and choosing the concept columns belong to the caller."""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from saeembed.errors import InputError

REQUIRED_COLUMNS = ("doc_id", "x", "y", "cluster")
FEATURE_PREFIX = "feature:"
# Below this share of non-zeros UMAP gets a CSR matrix: pynndescent's sparse path is faster to
# compile and to run for concept vectors (measured 36 s vs 62 s cold for 20k x 500 at ~2.4 %).
SPARSE_DENSITY = 0.25
SPECTRAL_MIN_DOCS = 10
# Rows equal after rounding to this many decimals are one row for UMAP.
KEY_DECIMALS = 6


# --- coordinates -------------------------------------------------------------------------------


def umap_coordinates(
    x: Any,
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "cosine",
) -> np.ndarray:
    """UMAP of the rows of ``x`` (scipy sparse or dense, [n_docs, n_features]) to float32 [n, 2].

    The same ``seed`` gives the same coordinates (umap-learn then runs single-threaded).
    umap-learn is reported not reproducible for a seed when rows repeat (lmcinnes/umap#1277), so:
    identical rows are embedded once and share their coordinates; with the cosine metric rows
    are L2-normalised first (so rows with the same direction are identical), and all-zero rows,
    whose cosine is undefined, are left out of UMAP and put together at one spot just below and
    left of the layout. Fewer than 3 distinct rows are placed at (k, 0). ``n_neighbors`` is
    capped at the distinct rows - 1; below 10 distinct rows the layout starts random.
    """
    matrix = _as_matrix(x)
    n = matrix.shape[0]
    if n < 3:
        raise InputError(f"a map needs at least 3 documents, got {n}; add documents to the input")
    if n_neighbors < 2:
        raise InputError(f"n_neighbors must be at least 2, got {n_neighbors}; raise it")
    empty = np.zeros(n, dtype=bool)
    if metric == "cosine":
        matrix = normalize(matrix, norm="l2", axis=1)
        empty = _row_nonzeros(matrix) == 0
    coords = np.zeros((n, 2), dtype=np.float32)
    if not empty.all():
        coords[~empty] = _layout_distinct(matrix[~empty], seed, n_neighbors, min_dist, metric)
    if empty.any():
        coords[empty] = _beside(coords[~empty])
    return coords


def _row_nonzeros(matrix: sp.csr_matrix | np.ndarray) -> np.ndarray:
    if sp.issparse(matrix):
        return np.diff(matrix.indptr)
    return np.count_nonzero(matrix, axis=1)


def _beside(coords: np.ndarray) -> np.ndarray:
    """A spot below and left of ``coords``, 5 % of their extent away."""
    if len(coords) == 0:
        return np.zeros(2, dtype=np.float32)
    low = coords.min(axis=0)
    span = float((coords.max(axis=0) - low).max()) or 1.0
    return low - 0.05 * span


def _layout_distinct(
    matrix: sp.csr_matrix | np.ndarray, seed: int, n_neighbors: int, min_dist: float, metric: str
) -> np.ndarray:
    """UMAP of the distinct rows, expanded back to every row."""
    unique, inverse = _unique_rows(matrix)
    if unique.shape[0] < 3:
        coords = np.zeros((unique.shape[0], 2), dtype=np.float32)
        coords[:, 0] = np.arange(unique.shape[0])
    else:
        coords = _fit_umap(unique, seed, n_neighbors, min_dist, metric)
    return coords[inverse]


def _fit_umap(
    matrix: sp.csr_matrix | np.ndarray, seed: int, n_neighbors: int, min_dist: float, metric: str
) -> np.ndarray:
    n = matrix.shape[0]
    reducer = _umap_module().UMAP(
        n_components=2,
        n_neighbors=min(n_neighbors, n - 1),
        min_dist=min_dist,
        metric=metric,
        random_state=seed,
        n_jobs=1,
        # The spectral initialisation needs more points than eigenvectors; tiny maps start random.
        init="spectral" if n >= SPECTRAL_MIN_DOCS else "random",
    )
    with warnings.catch_warnings():
        # Expected on small or highly separated inputs; the layout is still produced.
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        warnings.filterwarnings("ignore", message=".*disconnected.*")
        return reducer.fit_transform(matrix)


def _unique_rows(
    matrix: sp.csr_matrix | np.ndarray,
) -> tuple[sp.csr_matrix | np.ndarray, np.ndarray]:
    """The distinct rows in order of first appearance, and each row's index among them. Values
    are compared rounded to KEY_DECIMALS, so rows that differ only by float noise (e.g. one
    direction at two scales, after L2 normalisation) count as one."""
    if sp.issparse(matrix):  # canonical CSR: sorted indices, no explicit zeros
        data = np.round(matrix.data, KEY_DECIMALS)
        bounds = zip(matrix.indptr[:-1], matrix.indptr[1:], strict=True)
        keys = (matrix.indices[a:b].tobytes() + data[a:b].tobytes() for a, b in bounds)
    else:
        keys = (row.tobytes() for row in np.round(matrix, KEY_DECIMALS) + 0.0)  # + 0.0: no -0.0
    first: dict[bytes, int] = {}
    inverse = np.fromiter(
        (first.setdefault(key, len(first)) for key in keys), dtype=np.int64, count=matrix.shape[0]
    )
    if len(first) == matrix.shape[0]:
        return matrix, inverse
    keep = np.unique(inverse, return_index=True)[1]
    return matrix[keep], inverse


def _umap_module():
    try:
        import umap
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError("umap-learn is not installed; run `pip install umap-learn`") from exc
    return umap


def _as_matrix(x: Any) -> sp.csr_matrix | np.ndarray:
    """A float32 CSR matrix when sparse enough, else a dense float32 array; checked for shape
    and finite values."""
    if sp.issparse(x):
        # copy=True: the in-place clean-ups below must not touch the caller's index arrays.
        matrix = sp.csr_matrix(x, dtype=np.float32, copy=True)
        matrix.sum_duplicates()
        values = matrix.data
    else:
        matrix = np.asarray(x, dtype=np.float32)
        values = matrix
    if matrix.ndim != 2:
        raise InputError(f"expected a 2-D matrix [documents, features], got {matrix.ndim}-D")
    if matrix.shape[1] == 0:
        raise InputError("the matrix has no feature columns; keep at least one concept")
    if not np.isfinite(values).all():
        raise InputError("the matrix has NaN or infinite values; clean or re-weight the input")
    n_cells = matrix.shape[0] * matrix.shape[1]
    nonzero = matrix.count_nonzero() if sp.issparse(matrix) else np.count_nonzero(matrix)
    if n_cells and nonzero / n_cells <= SPARSE_DENSITY:
        matrix = sp.csr_matrix(matrix)
        matrix.eliminate_zeros()
        matrix.sort_indices()
        return matrix
    return matrix.toarray() if sp.issparse(matrix) else matrix


# --- outputs -----------------------------------------------------------------------------------


def write_map_parquet(points: pl.DataFrame, path: str | Path) -> Path:
    """Write the map's points (``doc_id, x, y, cluster`` and optional ``text`` / ``feature:N``
    columns) to Parquet at ``path``; returns the path."""
    _check_columns(points, REQUIRED_COLUMNS)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    points.write_parquet(path)
    return path


def write_map_html(
    points: pl.DataFrame,
    path: str | Path,
    *,
    title: str,
    cluster_names: dict[int, str] | None = None,
    color_columns: list[str] | None = None,
    max_text_chars: int = 300,
) -> Path:
    """Write a single self-contained HTML map of ``points`` to ``path``; returns the path.

    Colour modes are "cluster" plus ``color_columns`` (default: every numeric ``feature:N``
    column). Texts are cut to ``max_text_chars``. doc_ids are embedded as strings.
    """
    _check_columns(points, REQUIRED_COLUMNS)
    _check_types(points)
    if max_text_chars < 1:
        raise InputError(f"max_text_chars must be at least 1, got {max_text_chars}; raise it")
    columns = _color_columns(points, color_columns)
    payload = _payload(points, cluster_names or {}, columns, max_text_chars)
    page = _PAGE.format(
        title=html.escape(title),
        css=_CSS,
        data=_script_json(payload),
        js=_JS,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _check_columns(points: pl.DataFrame, required: tuple[str, ...]) -> None:
    for name in required:
        if name not in points.columns:
            raise InputError(f"map points lack the column {name!r}; add it to the frame")


def _check_types(points: pl.DataFrame) -> None:
    for name in ("x", "y"):
        if not points.schema[name].is_numeric():
            raise InputError(f"map column {name!r} is not numeric; cast it to float")
    if not points.schema["cluster"].is_integer():
        raise InputError("map column 'cluster' is not integer; cast it (-1 marks outliers)")


def _color_columns(points: pl.DataFrame, requested: list[str] | None) -> list[str]:
    if requested is None:
        return [
            name
            for name, dtype in points.schema.items()
            if name.startswith(FEATURE_PREFIX) and dtype.is_numeric()
        ]
    for name in requested:
        if name not in points.columns:
            raise InputError(f"colour column {name!r} is not in the points; add it or drop it")
        if not points.schema[name].is_numeric():
            raise InputError(f"colour column {name!r} is not numeric; cast it or drop it")
    return list(requested)


def _payload(
    points: pl.DataFrame, cluster_names: dict[int, str], columns: list[str], max_text_chars: int
) -> dict[str, Any]:
    """The page's data, column-wise: non-finite numbers become null, texts are truncated."""
    text = None
    if "text" in points.columns:
        text = [_truncate(t, max_text_chars) for t in points["text"].cast(pl.String).to_list()]
    return {
        "doc_id": points["doc_id"].cast(pl.String).to_list(),
        "x": _numbers(points["x"]),
        "y": _numbers(points["y"]),
        "cluster": points["cluster"].cast(pl.Int64).fill_null(-1).to_list(),
        "text": text,
        "columns": {name: _numbers(points[name]) for name in columns},
        "cluster_names": {str(int(k)): str(v) for k, v in cluster_names.items()},
    }


def _numbers(series: pl.Series) -> list[float | None]:
    values = series.cast(pl.Float64)
    values = pl.select(pl.when(values.is_finite()).then(values).round_sig_figs(6)).to_series()
    return values.to_list()


def _truncate(text: str | None, limit: int) -> str:
    if text is None:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _script_json(payload: dict[str, Any]) -> str:
    """JSON safe inside <script>: no '<', '>' or '&' survive literally, so neither '</script>'
    nor '<!--' in document text can end or alter the script element."""
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# --- page template -----------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<label>Colour by <select id="color-mode"></select></label>
<span id="count"></span>
</header>
<main>
<div id="plot"><canvas id="canvas"></canvas><div id="ring"></div><div id="tooltip" hidden></div></div>
<aside id="legend"></aside>
</main>
<script type="application/json" id="map-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""

_CSS = """
html, body { margin: 0; height: 100%; font: 13px/1.4 system-ui, sans-serif; color: #222; }
body { display: flex; flex-direction: column; }
header { display: flex; gap: 1.5em; align-items: baseline; padding: 8px 12px;
  border-bottom: 1px solid #ddd; }
h1 { font-size: 16px; margin: 0; }
#count { color: #666; }
main { flex: 1; display: flex; min-height: 0; }
#plot { position: relative; flex: 1; min-width: 0; overflow: hidden; }
#canvas { position: absolute; inset: 0; width: 100%; height: 100%; cursor: crosshair; }
#legend { width: 240px; overflow-y: auto; padding: 8px 12px; border-left: 1px solid #ddd; }
.item { display: flex; gap: 6px; align-items: center; }
.swatch { width: 10px; height: 10px; border-radius: 50%; flex: none; }
.name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.size { margin-left: auto; color: #888; }
.ramp { height: 12px; border-radius: 2px; margin-top: 6px; }
.ends { display: flex; justify-content: space-between; color: #555; }
#tooltip { position: absolute; pointer-events: none; max-width: 360px; padding: 6px 8px;
  background: rgba(255, 255, 255, 0.96); border: 1px solid #bbb; border-radius: 4px;
  box-shadow: 0 2px 6px rgba(0, 0, 0, 0.15); white-space: pre-wrap; word-break: break-word; }
#ring { position: absolute; display: none; width: 10px; height: 10px; margin: -6px 0 0 -6px;
  border: 1px solid #000; border-radius: 50%; pointer-events: none; }
#selftest { position: fixed; left: 0; bottom: 0; margin: 0; font-size: 10px; }
"""

_JS = r"""
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("map-data").textContent);
  const n = data.doc_id.length;
  const canvas = document.getElementById("canvas");
  const ctx = canvas.getContext("2d");
  const tooltip = document.getElementById("tooltip");
  const ring = document.getElementById("ring");
  const legend = document.getElementById("legend");
  const select = document.getElementById("color-mode");

  const PAD = 24;        // CSS pixels kept free around the points
  const CELL = 8;        // hover grid cell size, CSS pixels
  const HOVER_PX = 6;    // hover radius, must stay below CELL
  const SIZE = 3, OUTLIER_SIZE = 2, GREY = "#bbbbbb", STEPS = 64;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79"];
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

  const px = new Float64Array(n), py = new Float64Array(n);  // positions in CSS pixels
  let grid = null, drawn = 0, mode = "cluster";

  // --- colours ---------------------------------------------------------------------------
  const sizes = new Map();
  for (const c of data.cluster) sizes.set(c, (sizes.get(c) || 0) + 1);
  const clusterColor = new Map([[-1, GREY]]);
  [...sizes.keys()].filter((c) => c !== -1).sort((a, b) => a - b).forEach((c, i) => {
    clusterColor.set(c, i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.508) % 360},60%,50%)`);
  });
  const clusterName = (c) => (c === -1 ? "outliers" : data.cluster_names[c] ?? `cluster ${c}`);
  const isNumber = (v) => v !== null && Number.isFinite(v);

  function ramp(t) {  // t in [0, 1] -> viridis-like colour
    const s = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(s), VIRIDIS.length - 2), f = s - i;
    return `rgb(${VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)))})`;
  }

  function extent(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) if (isNumber(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    return lo <= hi ? [lo, hi] : [0, 0];
  }

  // Points grouped by "size|colour" so each group is one fillStyle change. Outliers come first
  // (drawn underneath); in a value mode points are ordered by value so high values end on top.
  function groups() {
    const order = [...Array(n).keys()];
    const values = mode === "cluster" ? null : data.columns[mode];
    const [lo, hi] = values ? extent(values) : [0, 0];
    const rank = (i) => (values ? (isNumber(values[i]) ? values[i] : -Infinity) : 0);
    const outlier = (i) => (data.cluster[i] === -1 ? 0 : 1);
    order.sort((a, b) => outlier(a) - outlier(b) || rank(a) - rank(b) || a - b);
    const result = new Map();
    for (const i of order) {
      let color = clusterColor.get(data.cluster[i]);
      if (values) {
        const v = values[i];
        color = !isNumber(v) ? GREY : ramp(hi > lo ? Math.round(((v - lo) / (hi - lo)) * STEPS) / STEPS : 0);
      }
      const key = `${data.cluster[i] === -1 ? OUTLIER_SIZE : SIZE}|${color}`;
      if (!result.has(key)) result.set(key, []);
      result.get(key).push(i);
    }
    return result;
  }

  // --- layout and hover index -------------------------------------------------------------
  function layout() {
    const { width, height } = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const [x0, x1] = extent(data.x), [y0, y1] = extent(data.y);
    const scale = Math.max(0, Math.min((width - 2 * PAD) / (x1 - x0 || 1), (height - 2 * PAD) / (y1 - y0 || 1)));
    const ox = (width - (x1 - x0) * scale) / 2, oy = (height - (y1 - y0) * scale) / 2;
    for (let i = 0; i < n; i++) {
      const ok = isNumber(data.x[i]) && isNumber(data.y[i]);
      px[i] = ok ? ox + (data.x[i] - x0) * scale : NaN;
      py[i] = ok ? height - oy - (data.y[i] - y0) * scale : NaN;  // y grows upwards
    }
    grid = buildGrid(width, height);
  }

  // Counting sort of point indices into CELL x CELL buckets: items[start[c]..start[c+1]).
  function buildGrid(width, height) {
    const cols = Math.ceil(width / CELL) + 1, rows = Math.ceil(height / CELL) + 1;
    const cellOf = new Int32Array(n).fill(-1), start = new Int32Array(cols * rows + 1);
    const cell = (x, m) => Math.min(m - 1, Math.max(0, Math.floor(x / CELL)));
    for (let i = 0; i < n; i++) {
      if (Number.isNaN(px[i])) continue;
      cellOf[i] = cell(py[i], rows) * cols + cell(px[i], cols);
      start[cellOf[i] + 1]++;
    }
    for (let c = 0; c < cols * rows; c++) start[c + 1] += start[c];
    const fill = start.slice(0, -1), items = new Int32Array(start[cols * rows]);
    for (let i = 0; i < n; i++) if (cellOf[i] >= 0) items[fill[cellOf[i]]++] = i;
    return { cols, rows, start, items };
  }

  function nearest(mx, my) {
    const { cols, rows, start, items } = grid;
    const cx = Math.floor(mx / CELL), cy = Math.floor(my / CELL);
    let best = -1, bestD = HOVER_PX * HOVER_PX;
    for (let gy = Math.max(0, cy - 1); gy <= Math.min(rows - 1, cy + 1); gy++) {
      for (let gx = Math.max(0, cx - 1); gx <= Math.min(cols - 1, cx + 1); gx++) {
        const c = gy * cols + gx;
        for (let k = start[c]; k < start[c + 1]; k++) {
          const i = items[k], d = (px[i] - mx) ** 2 + (py[i] - my) ** 2;
          if (d < bestD) { best = i; bestD = d; }
        }
      }
    }
    return best;
  }

  // --- drawing ----------------------------------------------------------------------------
  function draw() {
    const { width, height } = canvas.getBoundingClientRect();
    ctx.clearRect(0, 0, width, height);
    drawn = 0;
    for (const [key, indices] of groups()) {
      const size = Number(key.split("|")[0]);
      ctx.fillStyle = key.slice(key.indexOf("|") + 1);
      for (const i of indices) {
        if (Number.isNaN(px[i])) continue;
        ctx.fillRect(px[i] - size / 2, py[i] - size / 2, size, size);
        drawn++;
      }
    }
    document.getElementById("count").textContent = `${drawn.toLocaleString()} documents`;
    drawLegend();
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function drawLegend() {
    legend.replaceChildren();
    if (mode === "cluster") {
      const ids = [...sizes.keys()].sort((a, b) => (a === -1) - (b === -1) || sizes.get(b) - sizes.get(a));
      for (const c of ids) {
        const item = el("div", "item"), swatch = el("span", "swatch");
        swatch.style.background = clusterColor.get(c);
        item.append(swatch, el("span", "name", clusterName(c)), el("span", "size", sizes.get(c)));
        item.title = clusterName(c);
        legend.append(item);
      }
      return;
    }
    const [lo, hi] = extent(data.columns[mode]);
    const bar = el("div", "ramp"), ends = el("div", "ends");
    bar.style.background = `linear-gradient(to right, ${[0, 0.25, 0.5, 0.75, 1].map(ramp).join(", ")})`;
    ends.append(el("span", "", format(lo)), el("span", "", format(hi)));
    legend.append(el("div", "name", mode), bar, ends);
  }

  const format = (v) => (isNumber(v) ? Number(v.toPrecision(4)).toString() : "–");

  // --- hover ------------------------------------------------------------------------------
  function hover(event) {
    const rect = canvas.getBoundingClientRect();
    const mx = event.clientX - rect.left, my = event.clientY - rect.top;
    const i = nearest(mx, my);
    if (i < 0) return hide();
    const lines = [`doc_id: ${data.doc_id[i]}`, `cluster: ${clusterName(data.cluster[i])}`];
    if (mode !== "cluster") lines.push(`${mode}: ${format(data.columns[mode][i])}`);
    if (data.text) lines.push("", data.text[i]);
    tooltip.textContent = lines.join("\n");
    tooltip.hidden = false;
    const left = mx + 14 + tooltip.offsetWidth > rect.width ? mx - 14 - tooltip.offsetWidth : mx + 14;
    const top = my + 14 + tooltip.offsetHeight > rect.height ? my - 14 - tooltip.offsetHeight : my + 14;
    tooltip.style.left = `${Math.max(0, left)}px`;
    tooltip.style.top = `${Math.max(0, top)}px`;
    Object.assign(ring.style, { display: "block", left: `${px[i]}px`, top: `${py[i]}px` });
  }

  function hide() {
    tooltip.hidden = true;
    ring.style.display = "none";
  }

  // Headless check (URL #selftest): hover the first point with a real mousemove event, then
  // report what was drawn and shown as JSON in a pre#selftest element.
  function selfTest() {
    const first = [...Array(n).keys()].find((i) => !Number.isNaN(px[i]));
    if (first !== undefined) {
      const rect = canvas.getBoundingClientRect();
      canvas.dispatchEvent(new MouseEvent("mousemove", {
        clientX: rect.left + px[first], clientY: rect.top + py[first], bubbles: true,
      }));
    }
    const report = el("pre", "", JSON.stringify({
      points: drawn,
      tooltip: tooltip.hidden ? "" : tooltip.textContent,
      colorModes: [...select.options].map((o) => o.value),
    }));
    report.id = "selftest";
    document.body.append(report);
  }

  // --- start ------------------------------------------------------------------------------
  for (const name of ["cluster", ...Object.keys(data.columns)]) {
    const option = el("option", "", name);
    option.value = name;
    select.append(option);
  }
  select.addEventListener("change", () => { mode = select.value; hide(); draw(); });
  canvas.addEventListener("mousemove", hover);
  canvas.addEventListener("mouseleave", hide);
  window.addEventListener("resize", () => { hide(); layout(); draw(); });
  layout();
  draw();
  if (location.hash === "#selftest") selfTest();
})();
"""
