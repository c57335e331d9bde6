"""2-D maps of documents: UMAP coordinates from (already restricted and weighted) concept
vectors, and the two map outputs — a Parquet table of points (exact coordinates, one row per
document) and a single self-contained HTML page (the CSS/JS of saeembed/templates/map.* inlined,
data embedded as JSON, no network) with a canvas scatter plot, colour modes, legend, cluster
names drawn on the map and hover tooltips. The page draws one marker per distinct position
(documents with identical concept vectors share one), its area growing with the documents
there; above ``max_points`` positions it draws a seeded sample of them and says so. Clustering
and choosing the concept columns belong to the caller."""

from __future__ import annotations

import html
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from saeembed import templates
from saeembed.errors import InputError
from saeembed.files import atomic_path, write_text_atomic
from saeembed.links import safe_href

REQUIRED_COLUMNS = ("doc_id", "x", "y", "cluster")
FEATURE_PREFIX = "feature:"
# Below this share of non-zeros UMAP gets a CSR matrix: pynndescent's sparse path is faster to
# compile and to run for concept vectors (measured 36 s vs 62 s cold for 20k x 500 at ~2.4 %).
SPARSE_DENSITY = 0.25
SPECTRAL_MIN_DOCS = 10
# Rows equal after rounding to this many decimals are one row for UMAP.
KEY_DECIMALS = 6
# The page: at most this many distinct positions are drawn (above it, a seeded sample of them);
# the first TEXTS_PER_SPOT documents at one position keep their text (every one keeps its id).
MAX_POINTS = 20_000
TEXTS_PER_SPOT = 5
SAMPLE_SEED = 0


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
    with atomic_path(path) as tmp:
        points.write_parquet(tmp)
    return path


def write_map_html(
    points: pl.DataFrame,
    path: str | Path,
    *,
    title: str,
    cluster_names: dict[int, str] | None = None,
    color_columns: list[str] | None = None,
    max_text_chars: int = 300,
    cluster_concepts: dict[int, list[dict]] | None = None,
    max_points: int = MAX_POINTS,
) -> Path:
    """Write a single self-contained HTML map of ``points`` to ``path``; returns the path.

    Documents at the same (x, y) are one marker whose area grows with their number (the page
    lists them on hover); each cluster's name is drawn at its medoid (`_cluster_anchors`). With
    more than ``max_points`` distinct positions the page draws a uniform sample of
    ``max_points`` of them (seed SAMPLE_SEED; every document at a kept position is kept) and
    says so; cluster sizes and name positions still count every document.
    Colour modes are "cluster" plus ``color_columns`` (default: every numeric ``feature:N``
    column). Texts are cut to ``max_text_chars``. doc_ids are embedded as strings.
    ``cluster_concepts``: per cluster, its concepts (``feature``, ``label``, ``href`` of the
    feature's page), listed when the cluster is clicked in the legend. An ``href`` must be a
    plain relative path to a file, percent-encoded (`saeembed.links.relative_href`); any other
    (a scheme such as ``javascript:``, an absolute path, ``..``) is dropped and the concept is
    listed without a link.
    """
    _check_columns(points, REQUIRED_COLUMNS)
    _check_types(points)
    if max_text_chars < 1:
        raise InputError(f"max_text_chars must be at least 1, got {max_text_chars}; raise it")
    if max_points < 1:
        raise InputError(f"max_points must be at least 1, got {max_points}; raise it")
    columns = _color_columns(points, color_columns)
    payload = _payload(points, cluster_names or {}, columns, max_text_chars, max_points)
    payload["cluster_concepts"] = {
        str(k): [_concept(c) for c in v] for k, v in (cluster_concepts or {}).items()
    }
    page = templates.fill(
        templates.load("map.html"),
        {
            "title": html.escape(title),
            "css": templates.load("map.css"),
            "data": templates.script_json(payload),
            "js": templates.load("map.js"),
        },
    )
    return write_text_atomic(path, page)  # a killed run leaves no half-written page


def _concept(concept: dict) -> dict:
    """A cluster's concept for the page: its ``href`` kept only when it is a plain relative link
    to a file (`saeembed.links.safe_href`)."""
    kept = {k: v for k, v in concept.items() if k != "href"}
    href = safe_href(concept.get("href"))
    return (kept | {"href": href}) if href else kept


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
    points: pl.DataFrame,
    cluster_names: dict[int, str],
    columns: list[str],
    max_text_chars: int,
    max_points: int,
) -> dict[str, Any]:
    """The page's data. Positions (``spot_x``, ``spot_y``: the coordinates as the page reads
    them, rounded to 6 significant figures; null where not finite) each hold the documents
    ``spot_start[s]`` to ``spot_start[s + 1]`` of the per-document lists (``doc_id``,
    ``cluster``, ``text``, ``columns``), which are grouped by position and otherwise in input
    order. ``clusters``: every cluster's id, name, size and label anchor over all documents."""
    x, y = _numbers(points["x"]), _numbers(points["y"])
    cluster = points["cluster"].cast(pl.Int64).fill_null(-1).to_numpy()
    spot_of, spot_x, spot_y = _spots(x, y)
    n_spots = len(spot_x)
    kept = np.arange(n_spots)
    if n_spots > max_points:
        rng = np.random.default_rng(SAMPLE_SEED)
        kept = np.sort(rng.choice(n_spots, size=max_points, replace=False))
    new_index = np.full(n_spots, -1)
    new_index[kept] = np.arange(len(kept))
    target = new_index[spot_of]
    rows = np.flatnonzero(target >= 0)
    rows = rows[np.argsort(target[rows], kind="stable")]  # grouped by position, input order
    counts = np.bincount(target[rows], minlength=len(kept))
    start = np.concatenate([[0], np.cumsum(counts)])
    rank = np.arange(len(rows)) - np.repeat(start[:-1], counts)  # place within its position
    text = None
    if "text" in points.columns:
        texts = points["text"].cast(pl.String).to_list()
        text = [
            _truncate(texts[r], max_text_chars) if k < TEXTS_PER_SPOT else None
            for r, k in zip(rows.tolist(), rank.tolist(), strict=True)
        ]
    doc_ids = points["doc_id"].cast(pl.String).to_list()
    refs = points["doc"].cast(pl.String).to_list() if "doc" in points.columns else None
    return {
        "n_docs": points.height,
        "n_spots": n_spots,
        "sampled": bool(n_spots > len(kept)),
        "spot_x": [spot_x[s] for s in kept.tolist()],
        "spot_y": [spot_y[s] for s in kept.tolist()],
        "spot_start": start.tolist(),
        "doc_id": [doc_ids[r] for r in rows.tolist()],
        # the short CORPUS:ROW names people read and type (saeembed.store.doc_refs), if given
        "doc": [refs[r] for r in rows.tolist()] if refs is not None else None,
        "cluster": cluster[rows].tolist(),
        "text": text,
        "columns": {name: _pick(_numbers(points[name]), rows) for name in columns},
        "cluster_names": {str(int(k)): str(v) for k, v in cluster_names.items()},
        "clusters": _cluster_anchors(x, y, cluster, cluster_names),
    }


def _pick(values: list, rows: np.ndarray) -> list:
    return [values[r] for r in rows.tolist()]


def _spots(
    x: list[float | None], y: list[float | None]
) -> tuple[np.ndarray, list[float | None], list[float | None]]:
    """Each document's position index (positions in order of first appearance; documents
    without finite coordinates share one, with null x and y), and each position's x and y."""
    xs = np.array([np.inf if v is None else v for v in x], dtype=np.float64)
    ys = np.array([np.inf if v is None else v for v in y], dtype=np.float64)
    placed = np.isfinite(xs) & np.isfinite(ys)
    xs[~placed], ys[~placed] = np.inf, np.inf
    _, first, inverse = np.unique(
        np.column_stack([xs, ys]), axis=0, return_index=True, return_inverse=True
    )
    by_first = np.argsort(first, kind="stable")
    renumber = np.empty_like(by_first)
    renumber[by_first] = np.arange(len(by_first))
    spot_of = renumber[inverse.ravel()]
    firsts = first[by_first]
    spot_x = [x[i] if placed[i] else None for i in firsts.tolist()]
    spot_y = [y[i] if placed[i] else None for i in firsts.tolist()]
    return spot_of, spot_x, spot_y


def _cluster_anchors(
    x: list[float | None], y: list[float | None], cluster: np.ndarray, names: dict[int, str]
) -> list[dict[str, Any]]:
    """Per cluster (ascending id, outliers -1 included): ``id, name, size`` and the label's
    anchor ``x, y`` — the member nearest the members' coordinate-wise median (a medoid that
    always lies on the cluster, even a curved one); null for outliers and for a cluster with
    no finite coordinates."""
    xs = np.array([np.nan if v is None else v for v in x], dtype=np.float64)
    ys = np.array([np.nan if v is None else v for v in y], dtype=np.float64)
    placed = np.isfinite(xs) & np.isfinite(ys)
    result = []
    for c in np.unique(cluster).tolist():
        members = cluster == c
        anchor: list[float | None] = [None, None]
        mine = np.flatnonzero(members & placed)
        if c != -1 and len(mine):
            mx, my = np.median(xs[mine]), np.median(ys[mine])
            best = mine[np.argmin((xs[mine] - mx) ** 2 + (ys[mine] - my) ** 2)]
            anchor = [float(xs[best]), float(ys[best])]
        default = "outliers" if c == -1 else f"cluster {c}"
        result.append(
            {
                "id": c,
                "name": str(names.get(c, default)),
                "size": int(members.sum()),
                "x": anchor[0],
                "y": anchor[1],
            }
        )
    return result


def _numbers(series: pl.Series) -> list[float | None]:
    values = series.cast(pl.Float64)
    values = pl.select(pl.when(values.is_finite()).then(values).round_sig_figs(6)).to_series()
    return values.to_list()


def _truncate(text: str | None, limit: int) -> str:
    if text is None:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"
