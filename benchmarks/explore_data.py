"""The labelled real corpora the retrieval and clustering benchmarks share, encoded once into
$SAEEMBED_HOME/stores/bench-explore.duckdb with the default reader and SAE (max 128 tokens):

- ``rt``: Rotten Tomatoes, 800 each of fresh reviews, rotten reviews and plot summaries
  (metadata ``category``);
- ``tweets``: health-news tweets, 500 each from four outlets (metadata ``outlet``);
- ``debates``: every statement of the 2016 US debates (metadata ``speaker``, ``party``);
- ``commons``: every Conservative and Labour speech of the House of Commons sample (metadata
  ``party``).

Samples are seeded; the features are relabelled offline on these documents once."""

from __future__ import annotations

import polars as pl

from saeembed.api import EncodingOptions, encode
from saeembed.data import load_dataset
from saeembed.home import cache_dir
from saeembed.labels import label_features
from saeembed.store import Store

STORE = "bench-explore.duckdb"
OUTLETS = ["reuters_health", "nytimeshealth", "bbchealth", "goodhealth"]


def _sample(frame: pl.DataFrame, column: str, values: list[str], n: int) -> pl.DataFrame:
    parts = [frame.filter(pl.col(column) == v).sample(n, seed=0) for v in values]
    return pl.concat(parts)


def corpora() -> dict[str, pl.DataFrame]:
    rt = load_dataset("rotten-tomatoes").unique("text", keep="first", maintain_order=True)
    tweets = load_dataset("health-tweets").unique("text", keep="first", maintain_order=True)
    debates = load_dataset("debates-2016").unique("text", keep="first", maintain_order=True)
    commons = load_dataset("commons-speeches").unique("text", keep="first", maintain_order=True)
    return {
        "rt": _sample(rt, "category", ["fresh", "rotten", "plot"], 800).select("text", "category"),
        "tweets": _sample(tweets, "outlet", OUTLETS, 500).select("text", "outlet"),
        "debates": debates.select("text", "speaker", "party"),
        "commons": commons.filter(pl.col("party").is_in(["Con", "Lab"])).select("text", "party"),
    }


def bench_store(only: list[str] | None = None, relabel: bool = False):
    """The path of the benchmark store, encoding (and labelling) what is missing (of the
    corpora named in ``only``, when given); ``relabel`` labels the features again with the
    current offline labeller."""
    path = cache_dir("stores") / STORE
    encoder = None
    for name, frame in corpora().items():
        if only and name not in only:
            continue
        result = encode(
            frame, path, corpus=name, text_col="text", encoding=EncodingOptions(max_tokens=128)
        )
        encoder = result.encoding.encoder
    with Store(path) as store:
        labelled = store.sql(
            "SELECT count(*) AS n FROM features WHERE encoder_id = ?",  # shipped labels count
            [encoder.encoder_id],
        )["n"][0]
        if relabel or not labelled:
            label_features(store, encoder, progress=False)
    return path
