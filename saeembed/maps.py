"""2-D maps of documents (the coordinates come from `saeembed.analysis.umap_layout`): the two
map outputs — a Parquet table of points (exact coordinates, one row per
document) and a single self-contained HTML page (the CSS/JS of saeembed/templates/map.* inlined,
data embedded as JSON, no network) with a canvas scatter plot, colour modes, legend, cluster
names drawn on the map and hover tooltips. The page draws one marker per distinct position
(documents with identical concept vectors share one), its area growing with the documents
there; above ``max_points`` positions it draws a seeded sample of them and says so. Clustering
and choosing the concept columns belong to the caller."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from saeembed import templates
from saeembed.errors import InputError
from saeembed.files import atomic_path, write_text_atomic
from saeembed.links import safe_href

REQUIRED_COLUMNS = ("doc_id", "x", "y", "cluster")
FEATURE_PREFIX = "feature:"
# The page: at most this many distinct positions are drawn (above it, a seeded sample of them);
# the first TEXTS_PER_SPOT documents at one position keep their text (every one keeps its id).
MAX_POINTS = 20_000
TEXTS_PER_SPOT = 5
SAMPLE_SEED = 0


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
