"""saeembed: sparse-autoencoder embeddings of text corpora, stored in DuckDB, with analyses on top.

The Python API: `encode`, `diff`, `open_store`, `run_query` (and `Store.sql` on an open store)."""

__version__ = "0.1.0"

from saeembed.api import diff, encode, open_store, run_query  # noqa: E402

__all__ = ["__version__", "diff", "encode", "open_store", "run_query"]
