"""Analyses over the concept store: dataset diffing (and, later, correlation, clustering,
retrieval and preference regression). Each returns tidy polars DataFrames."""
