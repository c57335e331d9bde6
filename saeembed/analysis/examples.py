"""Example documents for the rows of a diff table: the top documents of each concept's richer
side, with the peak token marked."""

from __future__ import annotations

import polars as pl

from saeembed.labels.evidence import snippet
from saeembed.store import Encoder, Store


def add_examples(
    store: Store,
    encoder: Encoder,
    frame: pl.DataFrame,
    corpora_a: list[str],
    corpora_b: list[str],
    k: int,
    sides=None,
) -> pl.DataFrame:
    """Add ``examples``: the top ``k`` documents of the richer side for each row's concept, peak
    token marked «like this»; ``sides`` (`saeembed.analysis.sides.Sides`, read when None): the
    documents of each side (a filtered diff's: only those)."""
    if k <= 0 or frame.height == 0:
        return frame
    if sides is None:
        from saeembed.analysis.sides import read_sides

        sides = read_sides(store, encoder, corpora_a, corpora_b)
    with store.temporary(example_sides=sides.table()):
        rows = store.sql(
            """
            WITH wanted AS (
                SELECT unnest($features) AS feature, unnest($richer_a) AS richer_a
            ),
            ranked AS (
                SELECT w.feature, d.text, x.peak_start, x.peak_end, x.value,
                       row_number() OVER (PARTITION BY w.feature ORDER BY x.value DESC, d.doc_id)
                           AS r
                FROM wanted w
                JOIN activations x ON x.feature = w.feature AND x.encoder_id = $enc
                JOIN example_sides s ON s.doc_id = x.doc_id AND s.is_a = w.richer_a
                JOIN documents d ON d.doc_id = x.doc_id
            )
            SELECT feature, text, peak_start, peak_end FROM ranked WHERE r <= $k
            ORDER BY feature, r
            """,
            {
                "features": frame["feature"].to_list(),
                "richer_a": (frame["diff"] >= 0).to_list(),
                "enc": encoder.encoder_id,
                "k": k,
            },
        )
    snippets = rows.with_columns(
        pl.struct("text", "peak_start", "peak_end")
        .map_elements(
            lambda r: snippet(r["text"], r["peak_start"], r["peak_end"], width=50),
            return_dtype=pl.Utf8,
        )
        .alias("example")
    )
    grouped = snippets.group_by("feature", maintain_order=True).agg(
        pl.col("example").alias("examples")
    )
    return frame.join(
        grouped.with_columns(pl.col("feature").cast(pl.Int64)), on="feature", how="left"
    )
