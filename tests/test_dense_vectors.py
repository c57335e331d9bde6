"""Dense site vectors (`encode --keep-dense`, table `dense_vectors`) on tiny real components: the
stored vector is the mean of the reader's site activations over the tokens the SAE pools, read
back in any order; nothing without the flag; filled in later for documents encoded before, the
same as from the start; resumed without loss or duplication; written or rolled back with the
batch; the v13 -> v14 migration; refused for shards; and the real default model (slow)."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import torch

from saeembed.api import EncodingOptions, encode, info, open_store
from saeembed.encoding.core import encode_batch
from saeembed.encoding.dense import dense_batch
from saeembed.errors import InputError
from saeembed.inputs.tokens import tokenize_documents, wrapping_for
from saeembed.reader import load_reader
from saeembed.sae.model import MAX_NORM_RATIO
from saeembed.store import latest_version
from saeembed.store.dense import count_dense, dense_vectors
from tests.fakes import encode_until_killed, random_sae
from tests.test_encode import TEXTS  # the same short documents

LAYER = 1  # the layer of tests.fakes.random_sae


@pytest.fixture(scope="module")
def reader(tiny_model):
    return load_reader(str(tiny_model), device="cpu")


def own_states(reader, text: str) -> torch.Tensor:
    """Reference: one document alone, a full forward with output_hidden_states; the residual
    stream after block LAYER at the document's own tokens."""
    wrap = wrapping_for(reader.tokenizer, "none")
    own = tokenize_documents(reader.tokenizer, [text], 512)[0].ids.tolist()
    ids = torch.tensor([list(wrap.prefix) + own + list(wrap.suffix)])
    with torch.no_grad():
        hidden = reader.model(input_ids=ids, output_hidden_states=True).hidden_states[LAYER + 1]
    return hidden[0, len(wrap.prefix) : len(wrap.prefix) + len(own)]


def hand_dense(reader, input_scale: float, text: str) -> tuple[np.ndarray, int]:
    """The mean of the document's own typical tokens (norm x input_scale at most the SAE's
    ratio), and how many they are."""
    states = own_states(reader, text)
    keep = states.norm(dim=1) * input_scale <= MAX_NORM_RATIO
    return states[keep].mean(0).numpy(), int(keep.sum())


@pytest.fixture(scope="module")
def scaled_sae(reader, tmp_path_factory):
    """A random SAE whose recorded training norm makes about a third of the tokens massive, so
    the pooled tokens are a strict subset of the document's."""
    norms = torch.cat([own_states(reader, t).norm(dim=1) for t in TEXTS])
    sae = random_sae()
    sae.cfg.input_scale = MAX_NORM_RATIO / float(norms.quantile(0.66))
    return sae.save(tmp_path_factory.mktemp("scaled-sae")), sae.cfg.input_scale


@pytest.fixture
def options(tiny_model, scaled_sae):
    return EncodingOptions(model=str(tiny_model), sae=str(scaled_sae[0]), batch_tokens=16)


def doc_ids_of(db) -> list[int]:
    with open_store(db) as store:
        return store.sql("SELECT doc_id FROM documents ORDER BY row_idx")["doc_id"].to_list()


def stored(db) -> tuple[np.ndarray, np.ndarray]:
    """The vectors of every document, in file order (and which were found)."""
    ids = doc_ids_of(db)
    with open_store(db) as store:
        return dense_vectors(store, store.resolve_encoder(None), ids)


def n_rows(db, table: str) -> int:
    with open_store(db) as store:
        return store.sql(f"SELECT count(*) AS n FROM {table}")["n"][0]


def test_the_vector_is_the_mean_of_the_pooled_site_activations(tmp_path, reader, options,
                                                                scaled_sae):  # fmt: skip
    db = tmp_path / "s.duckdb"
    result = encode(TEXTS, db, corpus="c", encoding=options, keep_dense=True, progress=False)
    assert result.encoding.n_encoded == len(TEXTS) and result.encoding.n_dense_filled == 0
    matrix, found = stored(db)
    assert matrix.shape == (len(TEXTS), 16) and matrix.dtype == np.float32 and found.all()
    with open_store(db) as store:
        pooled = dict(store.sql("SELECT doc_id, n_tokens FROM dense_vectors").rows())
    left_out = 0
    for text, doc_id, vector in zip(TEXTS, doc_ids_of(db), matrix, strict=True):
        want, n_pooled = hand_dense(reader, scaled_sae[1], text)
        np.testing.assert_allclose(vector, want, rtol=1e-5, atol=1e-5)
        assert pooled[doc_id] == n_pooled
        left_out += len(tokenize_documents(reader.tokenizer, [text], 512)[0].ids) - n_pooled
    assert left_out > 3  # massive-norm tokens were really left out of some documents


def test_read_back_in_any_order_with_missing_ids_flagged(tmp_path, options):
    db = tmp_path / "s.duckdb"
    encode(TEXTS, db, corpus="c", encoding=options, keep_dense=True, progress=False)
    ids = doc_ids_of(db)
    in_order, _ = stored(db)
    order = [5, 0, 6, 2]
    asked = [ids[i] for i in order] + [12345] + [ids[0]]  # an unknown id, a repeated one
    with open_store(db) as store:
        encoder = store.resolve_encoder(None)
        matrix, found = dense_vectors(store, encoder, np.array(asked))
        assert count_dense(store, encoder) == count_dense(store, encoder, "c") == len(TEXTS)
        assert count_dense(store, encoder.encoder_id, "other") == 0
    assert found.tolist() == [True] * 4 + [False, True]
    np.testing.assert_array_equal(matrix[:4], in_order[order])
    assert not matrix[4].any()
    np.testing.assert_array_equal(matrix[5], in_order[0])


def test_no_vectors_without_the_flag(tmp_path, options):
    db = tmp_path / "s.duckdb"
    result = encode(TEXTS, db, corpus="c", encoding=options, progress=False)
    assert result.encoding.n_dense_filled == 0
    assert n_rows(db, "dense_vectors") == 0
    matrix, found = stored(db)
    assert matrix.shape == (len(TEXTS), 16) and not found.any()  # the width the SAE reads
    assert info(db)["encoders"]["dense_vectors"].to_list() == [0]


def test_batch_vectors_equal_the_reader_only_pass(reader, scaled_sae):
    """`encode_batch(dense=True)` and the backfill's `dense_batch` (no SAE encoding) agree, and
    without ``dense`` no vector is computed."""
    from saeembed.sae import load_sae

    sae = load_sae(str(scaled_sae[0]))
    wrap = wrapping_for(reader.tokenizer, "none")
    docs = tokenize_documents(reader.tokenizer, TEXTS, 512)
    with_dense = encode_batch(reader, sae, LAYER, docs, wrap, dense=True)
    means, counts = dense_batch(reader, sae, LAYER, docs, wrap)
    np.testing.assert_array_equal(with_dense.dense, means)
    np.testing.assert_array_equal(with_dense.dense_tokens, counts)
    plain = encode_batch(reader, sae, LAYER, docs, wrap)
    assert plain.dense is None and plain.dense_tokens is None
    np.testing.assert_array_equal(plain.value, with_dense.value)


def test_another_site_keeps_vectors_of_its_width(tmp_path, reader, tiny_model):
    """An SAE on the MLP's hidden activations: the vector is the mean there, d_mlp wide."""
    from saeembed.sae import SAE, SAEConfig

    width = reader.site_width("mlp_hidden")
    gen = torch.Generator().manual_seed(0)
    cfg = SAEConfig(d_in=width, d_sae=32, activation="relu", layer=LAYER, site="mlp_hidden")
    weights = {"W_enc": torch.randn(width, 32, generator=gen), "b_enc": torch.zeros(32),
               "W_dec": torch.randn(32, width, generator=gen), "b_dec": torch.zeros(width)}  # fmt: skip
    directory = SAE(cfg, weights).save(tmp_path / "mlp-sae")
    db = tmp_path / "s.duckdb"
    options = EncodingOptions(model=str(tiny_model), sae=str(directory))
    encode(TEXTS[:3], db, corpus="c", encoding=options, keep_dense=True, progress=False)
    matrix, found = stored(db)
    assert width != 16 and matrix.shape == (3, width) and found.all()
    wrap = wrapping_for(reader.tokenizer, "none")
    for text, vector in zip(TEXTS[:3], matrix, strict=True):
        own = tokenize_documents(reader.tokenizer, [text], 512)[0].ids.tolist()
        ids = torch.tensor([list(wrap.prefix) + own])
        site = reader.site_activations(ids, None, LAYER, "mlp_hidden")[0, len(wrap.prefix) :]
        np.testing.assert_allclose(vector, site.mean(0).numpy(), rtol=1e-5, atol=1e-6)


def test_filled_in_later_as_from_the_start(tmp_path, options):
    """--keep-dense on a corpus encoded without it fills in just the missing vectors, the same
    (to float rounding) as encoding with it from the start, and a rerun adds nothing."""
    reference, db = tmp_path / "ref.duckdb", tmp_path / "s.duckdb"
    encode(TEXTS, reference, corpus="c", encoding=options, keep_dense=True, progress=False)
    encode(TEXTS[:4], db, corpus="c", encoding=options, progress=False)
    later = encode(TEXTS, db, corpus="c", encoding=options, keep_dense=True, progress=False)
    assert later.encoding.n_encoded == 3 and later.encoding.n_dense_filled == 4
    assert "filled in the dense vectors of 4 documents" in later.summary()
    again = encode(TEXTS, db, corpus="c", encoding=options, keep_dense=True, progress=False)
    assert again.encoding.n_encoded == again.encoding.n_dense_filled == 0
    assert n_rows(db, "dense_vectors") == len(TEXTS)
    (got, found), (want, _) = stored(db), stored(reference)
    assert found.all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with open_store(db) as store, open_store(reference) as ref:
        query = "SELECT doc_id, n_tokens FROM dense_vectors ORDER BY doc_id"
        assert store.sql(query).rows() == ref.sql(query).rows()


def test_an_interrupted_encode_resumes_with_every_vector_once(tmp_path, options):
    reference, db = tmp_path / "ref.duckdb", tmp_path / "s.duckdb"
    kwargs = dict(corpus="c", encoding=options, keep_dense=True, progress=False)
    encode(TEXTS, reference, **kwargs)
    encode_until_killed(TEXTS, db, after=1, **kwargs)
    encoded, vectors = n_rows(db, "encoded_documents"), n_rows(db, "dense_vectors")
    assert 0 < encoded < len(TEXTS) and vectors == encoded  # committed with their batch
    resumed = encode(TEXTS, db, **kwargs)
    assert resumed.encoding.n_encoded == len(TEXTS) - encoded
    assert resumed.encoding.n_dense_filled == 0
    assert n_rows(db, "dense_vectors") == len(TEXTS)
    np.testing.assert_allclose(stored(db)[0], stored(reference)[0], rtol=1e-5, atol=1e-6)


def test_an_interrupted_fill_resumes_with_every_vector_once(tmp_path, options):
    db = tmp_path / "s.duckdb"
    encode(TEXTS, db, corpus="c", encoding=options, progress=False)
    kwargs = dict(corpus="c", encoding=options, keep_dense=True, progress=False)
    encode_until_killed(TEXTS, db, after=1, **kwargs)  # the fill's first batch is committed
    partial = n_rows(db, "dense_vectors")
    assert 0 < partial < len(TEXTS)
    resumed = encode(TEXTS, db, **kwargs)
    assert resumed.encoding.n_dense_filled == len(TEXTS) - partial
    assert n_rows(db, "dense_vectors") == len(TEXTS)
    with open_store(db) as store:
        twice = store.sql(
            "SELECT count(*) AS n FROM (SELECT doc_id FROM dense_vectors GROUP BY ALL "
            "HAVING count(*) > 1)"
        )
        assert twice["n"][0] == 0


def test_a_batch_that_fails_leaves_no_vector(tmp_path, options):
    """The vectors are written in the batch's transaction: a batch rolled back (here, one
    holding a document already encoded) leaves none of its vectors behind."""
    db = tmp_path / "s.duckdb"
    encode(TEXTS[:1], db, corpus="c", encoding=options, keep_dense=True, progress=False)
    with open_store(db) as store:
        done = store.sql("SELECT doc_id FROM encoded_documents")["doc_id"][0]
        batch = [done, 777]
        encoded = pa.table({"doc_id": pa.array(batch, pa.int64()),
                            "n_tokens": pa.array([1, 1], pa.int32()),
                            "truncated": pa.array([False, False]),
                            "n_features": pa.array([0, 0], pa.int32())})  # fmt: skip
        activations = pa.table({
            "doc_id": pa.array([], pa.int64()), "feature": pa.array([], pa.int32()),
            "value": pa.array([], pa.float32()), "n_tokens": pa.array([], pa.int32()),
            "peak_token": pa.array([], pa.int32()), "peak_start": pa.array([], pa.int32()),
            "peak_end": pa.array([], pa.int32()), "value_sum": pa.array([], pa.float32()),
        })  # fmt: skip
        vectors = pa.table({"doc_id": pa.array([777], pa.int64()),
                            "n_tokens": pa.array([1], pa.int32()),
                            "vector": pa.array([[0.5] * 16], pa.list_(pa.float32()))})  # fmt: skip
        with pytest.raises(duckdb.ConstraintException):
            store.write_encoded(1, encoded, activations, vectors)
        assert store.sql("SELECT doc_id FROM dense_vectors")["doc_id"].to_list() == [done]


def test_a_v13_store_gains_the_table_and_fills_it(tmp_path, options):
    db = tmp_path / "s.duckdb"
    encode(TEXTS, db, corpus="c", encoding=options, progress=False)
    with duckdb.connect(str(db)) as con:  # as saeembed left a store before v14
        con.execute("DROP TABLE dense_vectors")
        con.execute("DELETE FROM schema_migrations WHERE version = 14")
    with open_store(db) as store:
        assert store.schema_version() == latest_version() == 14
        assert store.sql("SELECT name FROM schema_migrations WHERE version = 14").rows() == [
            ("dense site vectors",)
        ]
        assert store.sql("SELECT count(*) AS n FROM dense_vectors")["n"][0] == 0
    filled = encode(TEXTS, db, corpus="c", encoding=options, keep_dense=True, progress=False)
    assert filled.encoding.n_dense_filled == len(TEXTS)
    assert info(db)["encoders"]["dense_vectors"].to_list() == [len(TEXTS)]


def test_shards_are_refused_in_one_line(tmp_path, options):
    from click.testing import CliRunner

    from saeembed.cli import main

    with pytest.raises(InputError, match=r"--keep-dense writes to a single-file store.*--db"):
        encode(TEXTS, f"{tmp_path / 'out'}/", corpus="c", encoding=options, keep_dense=True)
    assert not (tmp_path / "out").exists()
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(TEXTS) + "\n")
    result = CliRunner().invoke(
        main,
        ["encode", str(corpus), "--out", str(tmp_path / "out2"), "--keep-dense",
         "--model", options.model, "--sae", str(options.sae)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "--keep-dense" in result.stderr


@pytest.mark.slow
def test_real_default_model_keeps_576_wide_vectors(tmp_path, saeembed_home):
    db = tmp_path / "real.duckdb"
    texts = ["The film was a delight.", "Stocks fell on Tuesday.", "I would not watch it again."]
    encode(texts, db, corpus="c", keep_dense=True, progress=False,
           encoding=EncodingOptions(device="cpu"))  # fmt: skip
    matrix, found = stored(db)
    assert matrix.shape == (3, 576) and found.all()
    assert np.isfinite(matrix).all() and (np.abs(matrix).sum(axis=1) > 0).all()
