"""The encoder on tiny real components: exact agreement with a naive dense reference, batching
and padding invariance, chat wrapping, truncation, resumability and idempotence."""

from __future__ import annotations

import pytest
import torch

from saeembed.api import EncodingOptions, encode, open_store
from saeembed.encoding.core import encode_batch
from saeembed.inputs.tokens import plan_batches, tokenize_documents, wrapping_for
from saeembed.reader import load_reader
from tests.fakes import encode_until_killed, random_sae

TEXTS = [
    "the movie was great .",
    "awful plot , boring acting and a bad story !",
    "stocks rallied on tuesday",
    "i love this film",
    "the news was not good but the market was fun",
    "it fell",
    "you hate that movie , but i love it . the acting is great and the story is very fun .",
]


@pytest.fixture(scope="module")
def reader(tiny_model):
    return load_reader(str(tiny_model), device="cpu")


def naive_pooled(reader, sae, layer, text, chat="none"):
    """Reference: one document, full forward with output_hidden_states, dense SAE output,
    max / count / first argmax over the document's own tokens."""
    wrap = wrapping_for(reader.tokenizer, chat)
    own = tokenize_documents(reader.tokenizer, [text], 512)[0].ids.tolist()
    ids = torch.tensor([list(wrap.prefix) + own + list(wrap.suffix)])
    with torch.no_grad():
        hidden = reader.model(input_ids=ids, output_hidden_states=True).hidden_states[layer + 1][0]
    dense = sae.encode(hidden[len(wrap.prefix) : len(wrap.prefix) + len(own)])
    value, peak = dense.max(0)
    count = (dense > 0).sum(0)
    active = (value > 0).nonzero().flatten()
    return {int(f): (float(value[f]), int(count[f]), int(peak[f])) for f in active}


def pooled_by_doc(result, n_docs):
    out = [{} for _ in range(n_docs)]
    for d, f, v, c, p in zip(
        result.doc_index,
        result.feature,
        result.value,
        result.n_tokens,
        result.peak_token,
        strict=True,
    ):
        out[d][int(f)] = (float(v), int(c), int(p))
    return out


def assert_same_pooling(got: dict, want: dict):
    assert set(got) == set(want)
    for f in want:
        assert got[f][0] == pytest.approx(want[f][0], abs=1e-4)
        assert got[f][1:] == want[f][1:]


@pytest.mark.parametrize("chat", ["none", "user", "assistant"])
@pytest.mark.parametrize("activation", ["topk", "relu", "jumprelu"])
def test_batch_pooling_matches_naive_reference(reader, chat, activation):
    sae = random_sae(activation=activation, k=4 if activation == "topk" else None)
    wrap = wrapping_for(reader.tokenizer, chat)
    docs = tokenize_documents(reader.tokenizer, TEXTS, 512)
    result = encode_batch(reader, sae, 1, docs, wrap)  # one padded batch of mixed lengths
    got = pooled_by_doc(result, len(TEXTS))
    for i, text in enumerate(TEXTS):
        assert_same_pooling(got[i], naive_pooled(reader, sae, 1, text, chat))


def test_massive_norm_tokens_are_not_pooled(reader):
    """Tokens whose norm exceeds 10x the SAE's training mean norm (1 / input_scale) are left out
    of pooling, as the trainer leaves them out; peaks still index the document's own tokens."""
    sae = random_sae(k=4)
    wrap = wrapping_for(reader.tokenizer, "none")
    docs = tokenize_documents(reader.tokenizer, TEXTS, 512)
    hidden = []
    for text in TEXTS:
        own = tokenize_documents(reader.tokenizer, [text], 512)[0].ids.tolist()
        ids = torch.tensor([list(wrap.prefix) + own])
        with torch.no_grad():
            states = reader.model(input_ids=ids, output_hidden_states=True).hidden_states[2][0]
        hidden.append(states[len(wrap.prefix) :])
    norms = torch.cat(hidden).norm(dim=1)
    sae.cfg.input_scale = 10.0 / float(norms.median())  # about half the tokens are "massive"
    result = encode_batch(reader, sae, 1, docs, wrap)
    got = pooled_by_doc(result, len(TEXTS))
    skipped = 0
    for i, states in enumerate(hidden):
        keep = (states.norm(dim=1) * sae.cfg.input_scale <= 10.0).nonzero().flatten()
        skipped += len(states) - len(keep)
        want = {}
        if len(keep):
            dense = sae.encode(states[keep])
            value, peak = dense.max(0)
            count = (dense > 0).sum(0)
            for f in (value > 0).nonzero().flatten().tolist():
                want[f] = (float(value[f]), int(count[f]), int(keep[peak[f]]))
        assert_same_pooling(got[i], want)
    assert skipped > 5


def test_topk_gives_at_most_k_latents_per_token(reader):
    sae = random_sae(k=4)
    docs = tokenize_documents(reader.tokenizer, ["it fell"], 512)
    result = encode_batch(reader, sae, 1, docs, wrapping_for(reader.tokenizer))
    assert 1 <= len(result.feature) <= 4 * 2
    assert result.n_tokens.sum() <= 4 * 2


def test_layers_after_the_sae_layer_never_run(reader):
    calls = []
    handles = [
        layer.register_forward_hook(lambda *a, i=i: calls.append(i))
        for i, layer in enumerate(reader.layers)
    ]
    try:
        reader.residual_stream(torch.tensor([[1, 4, 6]]), torch.ones(1, 3, dtype=torch.long), 0)
    finally:
        for h in handles:
            h.remove()
    assert calls == [0]


def test_residual_stream_equals_hidden_states(reader):
    ids = torch.tensor([[1, 4, 6, 8, 10]])
    with torch.no_grad():
        full = reader.model(input_ids=ids, output_hidden_states=True).hidden_states
    for layer in range(
        reader.n_layers - 1
    ):  # the last entry of hidden_states has the final norm applied
        got = reader.residual_stream(ids, torch.ones_like(ids), layer)
        torch.testing.assert_close(got, full[layer + 1])


def test_plan_batches_respects_the_budget():
    lengths = [5, 30, 7, 7, 100, 2, 30]
    batches = plan_batches(lengths, 64)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [4]  # longer than the budget: alone
    for batch in batches[1:]:
        assert len(batch) * max(lengths[i] for i in batch) <= 64
    assert [lengths[b[0]] for b in batches] == sorted(
        (lengths[b[0]] for b in batches), reverse=True
    )


def test_truncation_keeps_the_first_tokens(reader):
    docs = tokenize_documents(reader.tokenizer, ["the movie was great and the plot was fun"], 4)
    assert docs[0].truncated and docs[0].ids.tolist() == [4, 6, 8, 10]
    assert docs[0].offsets.tolist() == [[0, 3], [4, 9], [10, 13], [14, 19]]
    assert not tokenize_documents(reader.tokenizer, ["the movie"], 4)[0].truncated


def test_documents_cannot_inject_special_tokens(reader):
    docs = tokenize_documents(reader.tokenizer, ["the <|im_end|> movie"], 64)
    assert 3 not in docs[0].ids.tolist()


# ---- into a real DuckDB file ------------------------------------------------------------------
def _rows(store, encoder_id):
    return store.sql(
        "SELECT doc_id, feature, value, n_tokens, peak_token, peak_start, peak_end FROM activations "
        "WHERE encoder_id = ? ORDER BY doc_id, feature",
        [encoder_id],
    ).rows()


def test_encode_twice_stores_nothing_new(tmp_path, tiny_model, tiny_sae):
    db = tmp_path / "s.duckdb"
    options = EncodingOptions(model=str(tiny_model), sae=str(tiny_sae))
    first = encode(TEXTS, db, corpus="c", progress=False, encoding=options)
    assert first.n_new_documents == len(TEXTS) and first.encoding.n_encoded == len(TEXTS)
    second = encode(TEXTS, db, corpus="c", progress=False, encoding=options)
    assert second.n_new_documents == 0 and second.encoding.n_encoded == 0
    assert second.encoding.encoder.encoder_id == first.encoding.encoder.encoder_id
    with open_store(db) as store:
        assert store.sql("SELECT count(*) AS n FROM encoded_documents")["n"][0] == len(TEXTS)
        dupes = store.sql(
            "SELECT count(*) AS n FROM (SELECT doc_id, feature FROM activations GROUP BY ALL HAVING count(*) > 1)"
        )
        assert dupes["n"][0] == 0


def test_interrupted_encode_resumes_without_loss_or_duplication(tmp_path, tiny_model, tiny_sae):
    reference_db, db = tmp_path / "ref.duckdb", tmp_path / "s.duckdb"
    options = EncodingOptions(model=str(tiny_model), sae=str(tiny_sae), batch_tokens=16)
    kwargs = dict(corpus="c", encoding=options, progress=False)
    encode(TEXTS, reference_db, **kwargs)

    encode_until_killed(TEXTS, db, **kwargs)
    with open_store(db) as store:
        partial = store.sql("SELECT count(*) AS n FROM encoded_documents")["n"][0]
    assert 0 < partial < len(TEXTS)
    resumed = encode(TEXTS, db, **kwargs)
    assert resumed.encoding.n_encoded == len(TEXTS) - partial
    with open_store(db) as store, open_store(reference_db) as ref:
        assert _rows(store, 1) == _rows(ref, 1)
        assert store.sql("SELECT count(*) AS n FROM encoded_documents")["n"][0] == len(TEXTS)


def test_other_layer_or_sae_is_a_second_encoder(tmp_path, tiny_model, tiny_sae):
    db = tmp_path / "s.duckdb"
    common = dict(corpus="c", progress=False)
    model = str(tiny_model)
    a = encode(TEXTS, db, **common, encoding=EncodingOptions(model=model, sae=str(tiny_sae)))
    other = tmp_path / "other-sae"
    random_sae(seed=1).save(other)
    b = encode(TEXTS, db, **common, encoding=EncodingOptions(model=model, sae=str(other)))
    layer0 = tmp_path / "layer0-sae"
    random_sae(layer=0).save(layer0)
    c = encode(TEXTS, db, **common, encoding=EncodingOptions(model=model, sae=str(layer0)))
    ids = {r.encoding.encoder.encoder_id for r in (a, b, c)}
    assert ids == {1, 2, 3}
    with open_store(db) as store:
        per_encoder = store.sql(
            "SELECT encoder_id, count(*) AS n FROM encoded_documents GROUP BY ALL ORDER BY 1"
        )
        assert per_encoder.rows() == [(1, 7), (2, 7), (3, 7)]
        layers = store.sql("SELECT layer FROM encoders ORDER BY encoder_id")["layer"].to_list()
        assert layers == [1, 1, 0]


def test_truncated_documents_are_counted_and_recorded(tmp_path, tiny_model, tiny_sae):
    db = tmp_path / "s.duckdb"
    result = encode(
        TEXTS,
        db,
        corpus="c",
        progress=False,
        encoding=EncodingOptions(model=str(tiny_model), sae=str(tiny_sae), max_tokens=5),
    )
    long_docs = sum(len(t.split()) > 5 for t in TEXTS)
    assert result.encoding.n_truncated == long_docs
    with open_store(db) as store:
        assert store.sql(
            "SELECT max(n_tokens) AS m, sum(truncated::INT) AS t FROM encoded_documents"
        ).rows() == [(5, long_docs)]
        assert store.sql("SELECT max_tokens, truncation FROM encoders").rows() == [
            (5, "keep_first")
        ]
        assert store.sql("SELECT max(peak_token) AS m FROM activations")["m"][0] <= 4


def test_stored_peak_offsets_point_at_the_peak_token(tmp_path, tiny_model, tiny_sae):
    db = tmp_path / "s.duckdb"
    encode(
        TEXTS,
        db,
        corpus="c",
        progress=False,
        encoding=EncodingOptions(model=str(tiny_model), sae=str(tiny_sae)),
    )
    with open_store(db) as store:
        rows = store.sql(
            "SELECT d.text, a.peak_token, a.peak_start, a.peak_end FROM activations a JOIN documents d USING (doc_id)"
        ).rows()
    assert rows, "the encode stored no activations, so there is no peak to check"
    for text, peak_token, start, end in rows:
        words = text.split()
        assert text[start:end] == words[peak_token]


def test_sae_for_another_model_is_refused(tmp_path, tiny_model):
    wide = tmp_path / "wide"
    random_sae(d_in=32).save(wide)
    from saeembed.errors import SAEError

    with pytest.raises(SAEError, match="d_in=32 does not match the model's hidden size 16"):
        encode(
            TEXTS,
            tmp_path / "s.duckdb",
            corpus="c",
            progress=False,
            encoding=EncodingOptions(model=str(tiny_model), sae=str(wide)),
        )


def test_layer_must_agree_with_the_sae(tmp_path, tiny_model, tiny_sae):
    from saeembed.errors import SAEError

    with pytest.raises(SAEError, match="--layer 0 differs from the SAE's layer 1"):
        encode(
            TEXTS,
            tmp_path / "s.duckdb",
            corpus="c",
            progress=False,
            encoding=EncodingOptions(model=str(tiny_model), sae=str(tiny_sae), layer=0),
        )
