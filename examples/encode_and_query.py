"""Encode a list of texts and a DataFrame from Python, then query the store with named queries and
plain SQL. Run: .venv/bin/python examples/encode_and_query.py [--sae PATH]  (stdout: results)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import polars as pl

import saeembed
from saeembed.api import EncodingOptions
from saeembed.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sae", default=None, help="SAE path or Hub id [default: the shipped one]")
    args = parser.parse_args()
    db = Path(tempfile.mkdtemp()) / "example.duckdb"

    notes = [
        "The soup was cold and the waiter rude.",
        "A wonderful evening: great food, kind staff.",
    ]
    saeembed.encode(
        notes, db, corpus="notes", progress=False, encoding=EncodingOptions(sae=args.sae)
    )
    debates = load_dataset("debates-2016").filter(pl.col("party") != "Moderator").head(200)
    saeembed.encode(
        debates, db, corpus="debates", progress=False, encoding=EncodingOptions(sae=args.sae)
    )

    with saeembed.open_store(db) as store:
        print(saeembed.run_query(store, "corpus_summary"))
        print(saeembed.run_query(store, "feature_frequencies", corpus="debates", limit=5))
        party_share = store.sql(
            """
            SELECT json_extract_string(d.meta, '$.party') AS party, a.feature,
                   count(*) / any_value(t.n) AS share
            FROM documents d
            JOIN activations a USING (doc_id)
            JOIN (SELECT json_extract_string(meta, '$.party') AS party, count(*) AS n
                  FROM documents WHERE corpus = 'debates' GROUP BY 1) t
              ON t.party = json_extract_string(d.meta, '$.party')
            WHERE d.corpus = 'debates'
            GROUP BY 1, 2 HAVING count(*) >= 20
            ORDER BY share DESC LIMIT 6
            """
        )
        print(party_share)


if __name__ == "__main__":
    main()
