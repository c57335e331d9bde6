"""saeembed: sparse-autoencoder embeddings of text corpora, stored in DuckDB, with analyses on top."""

__version__ = "0.1.0"
