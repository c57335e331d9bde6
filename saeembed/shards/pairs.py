"""Preference pairs into a shard directory: the responses are a corpus of shards (with their
prompts as context when asked), encoded like any corpus (`saeembed.shards.encode`), and the pair
set's own rows (`pair_sets`, `pairs`) go into the directory's `analysis.duckdb`, written after
the responses are encoded, so a pair set is listed only once its responses are stored. A rerun
finishes what is missing; different pairs under the same name are refused before any write."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from saeembed.encoding.core import EncodeReport, EncodingStack
from saeembed.prefs.ingest import (
    RESPONSE_COLUMNS,
    insert_pair_rows,
    pair_set_stored,
    response_documents,
)
from saeembed.shards.encode import encode_to_shards, encoder_args
from saeembed.store import Store
from saeembed.store.shard_layout import is_shard_dir


@dataclass
class _PairsRead:
    """What the shard driver records of the input's columns."""

    text_col: str = RESPONSE_COLUMNS
    id_col: str | None = None


def encode_pairs_to_shards(
    root, name: str, pairs: pl.DataFrame, origin: str, stack: EncodingStack, options: dict,
    *, context: bool, progress: bool,
) -> tuple[int, EncodeReport]:  # fmt: skip
    """Encode pair set ``name``'s responses as shards of corpus ``name`` under ``root`` and
    record the pair set; returns (pairs new to the directory, the encoding report)."""
    docs, linked = response_documents(pairs, context=context)
    stored = False
    if is_shard_dir(root):
        with Store(root, read_only=True) as store:  # refuse different pairs before writing
            corpus = store.sql("SELECT text_col FROM corpora WHERE corpus = ?", [name])
            listed = store.sql("SELECT pairs FROM pair_sets WHERE pairs = ?", [name]).height
            # a corpus of responses without its pair set is this pair set, unfinished (a
            # different input is refused by the shard driver's digest check)
            unfinished = not listed and corpus.height and corpus["text_col"][0] == RESPONSE_COLUMNS
            if not unfinished:
                stored = pair_set_stored(store, name, linked, context=context)
    args = encoder_args(
        **{**options, "sae": None if options["sae"] is None else str(options["sae"])}
    )
    _, report = encode_to_shards(
        root, name, docs, _PairsRead(), origin, stack, args, progress=progress
    )
    if stored:
        return 0, report
    with Store(root) as store, store.transaction(incoming_pairs=linked) as con:
        insert_pair_rows(con, name, origin, context)
    return linked.height, report
