"""2-D coordinates of documents for a map: UMAP of their (already restricted and weighted)
concept vectors, reproducible for a seed, with repeated and all-zero rows handled (see
`umap_coordinates`). The map page itself is `saeembed.maps`."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from saeembed.errors import InputError

# Below this share of non-zeros UMAP gets a CSR matrix: pynndescent's sparse path is faster to
# compile and to run for concept vectors (measured 36 s vs 62 s cold for 20k x 500 at ~2.4 %).
SPARSE_DENSITY = 0.25
SPECTRAL_MIN_DOCS = 10
# Rows equal after rounding to this many decimals are one row for UMAP.
KEY_DECIMALS = 6


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
