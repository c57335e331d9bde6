"""The encoder's precision: what `--dtype auto` picks (the CPU flag mocked at its boundary, the
`SAEEMBED_CPU_BF16` switch), the dtype in an encoder's identity and name, an append that never
splits a store between precisions, and the real default model in bf16 against fp32."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

import saeembed.reader as reader_module
from saeembed.api import EncodingOptions, encode, open_store
from saeembed.reader import CPU_BF16_ENV, resolve_dtype

CPU = torch.device("cpu")
TEXTS = [f"the film number {i} was {'fine' if i % 2 else 'dull'} and long" for i in range(12)]


@pytest.mark.parametrize(
    ("flags", "switch", "expected"),
    [
        ({"avx512f", "avx512_bf16"}, None, torch.bfloat16),
        ({"amx_bf16", "amx_tile"}, None, torch.bfloat16),
        ({"avx512f", "avx2"}, None, torch.float32),
        (set(), None, torch.float32),
        ({"avx512_bf16"}, "0", torch.float32),
        (set(), "1", torch.bfloat16),
    ],
)
def test_auto_picks_bf16_only_on_a_cpu_that_multiplies_it_natively(
    monkeypatch, flags, switch, expected
):
    monkeypatch.setattr(reader_module, "cpu_flags", lambda: flags)
    if switch is None:
        monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    else:
        monkeypatch.setenv(CPU_BF16_ENV, switch)
    assert resolve_dtype("auto", CPU) == expected
    assert resolve_dtype("float32", CPU) == torch.float32  # asked for: never changed
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16


def _encoders(db) -> pl.DataFrame:
    with open_store(db, read_only=True) as store:
        return store.sql(
            "SELECT e.encoder_id, e.name, e.dtype, count(x.doc_id) AS docs FROM encoders e "
            "LEFT JOIN encoded_documents x USING (encoder_id) GROUP BY ALL ORDER BY encoder_id"
        )


def test_the_dtype_is_part_of_the_encoder_and_auto_follows_the_store(
    tmp_path, tiny_model, tiny_sae, monkeypatch
):
    tiny = dict(model=str(tiny_model), sae=str(tiny_sae))
    db = tmp_path / "s.duckdb"
    encode(TEXTS[:6], db, corpus="a", encoding=EncodingOptions(**tiny), progress=False)  # fp32
    monkeypatch.setenv(CPU_BF16_ENV, "1")  # from now on auto would pick bf16 on this CPU
    encode(TEXTS[6:], db, corpus="b", encoding=EncodingOptions(**tiny), progress=False)
    one = _encoders(db)
    assert one.rows() == [(1, one["name"][0], "float32", 12)]  # the append stayed fp32
    assert not one["name"][0].endswith("-bf16")
    # asked for bf16: a second encoder, named for its precision, its rows apart
    encode(TEXTS[:6], db, corpus="a", encoding=EncodingOptions(**tiny, dtype="bfloat16"),
           progress=False)  # fmt: skip
    two = _encoders(db)
    assert two["dtype"].to_list() == ["float32", "bfloat16"] and two["docs"].to_list() == [12, 6]
    assert two["name"][1] == two["name"][0] + "-bf16"
    # a new store: auto decides by the CPU (here: forced bf16)
    fresh = tmp_path / "new.duckdb"
    encode(TEXTS[:4], fresh, corpus="a", encoding=EncodingOptions(**tiny), progress=False)
    assert _encoders(fresh)["dtype"].to_list() == ["bfloat16"]


@pytest.mark.slow
def test_real_model_bf16_agrees_with_fp32_on_shipped_text(saeembed_home, tmp_path):
    """60 Rotten Tomatoes snippets and plot summaries through the default reader and SAE in
    fp32 and in bf16: each document's concept set nearly the same (docs/benchmarks.md has the
    figures on a larger workload)."""
    from saeembed.data import load_dataset

    texts = load_dataset("rotten-tomatoes").sample(60, seed=3)["text"].to_list()
    db = tmp_path / "both.duckdb"
    for dtype in ("float32", "bfloat16"):
        encode(texts, db, corpus="rt", encoding=EncodingOptions(dtype=dtype), progress=False)
    with open_store(db, read_only=True) as store:
        rows = store.sql(
            "SELECT a.encoder_id, a.doc_id, a.feature, a.value FROM activations a ORDER BY ALL"
        )
    sets = {
        (enc, doc): set(g["feature"].to_list())
        for (enc, doc), g in rows.group_by("encoder_id", "doc_id")
    }
    docs = sorted({doc for _, doc in sets})
    jaccard = [len(sets[1, d] & sets[2, d]) / len(sets[1, d] | sets[2, d]) for d in docs]
    assert np.mean(jaccard) >= 0.95 and min(jaccard) >= 0.85, (np.mean(jaccard), min(jaccard))
    both = rows.pivot(on="encoder_id", index=["doc_id", "feature"], values="value").drop_nulls()
    assert np.corrcoef(both["1"], both["2"])[0, 1] >= 0.99
