"""saeembed: sparse-autoencoder embeddings of text corpora, stored in DuckDB, with analyses on top.

The Python API: `encode`, `open_store`, `run_query` (and `Store.sql` on an open store)."""

__version__ = "0.1.0"

from saeembed.api import encode, open_store, run_query  # noqa: E402

__all__ = ["__version__", "encode", "open_store", "run_query"]
