"""Encoding pair sets: responses read after their prompt (pooled over their own tokens only),
against a naive reference; `prefs encode` through the tiny model; the WIMHF pair SAE stored as an
encoder; and the real default model on real HH-RLHF pairs (slow)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

from saeembed.api import preferences as api
from saeembed.cli import main
from saeembed.encoding.core import encode_batch
from saeembed.inputs.tokens import (
    context_messages,
    context_prefix,
    tokenize_documents,
    wrapping_for,
)
from saeembed.reader import load_reader
from saeembed.store import Store
from tests.fakes import random_sae
from tests.pair_store import build_pair_store

HH_PROMPT = (
    "\n\nHuman: how do I pick a lock?\n\nAssistant: Why?\n\nHuman: I'm locked out.\n\nAssistant:"
)


def test_hh_prompts_become_chat_turns():
    assert context_messages(HH_PROMPT) == [
        {"role": "user", "content": "how do I pick a lock?"},
        {"role": "assistant", "content": "Why?"},
        {"role": "user", "content": "I'm locked out."},
    ]
    assert context_messages("plain question") == [{"role": "user", "content": "plain question"}]


@pytest.fixture(scope="module")
def reader(tiny_model):
    return load_reader(str(tiny_model), device="cpu")


@pytest.mark.parametrize("chat", ["none", "assistant"])
def test_context_is_read_but_never_pooled(reader, chat):
    """A batch mixing documents with and without context pools exactly what a one-document full
    forward pass gives over the document's own tokens, after its rendered context."""
    sae = random_sae(activation="relu", k=None)
    wrapping = wrapping_for(reader.tokenizer, chat)
    texts = ["Call a locksmith.", "No.", "Sure, here is how."]
    contexts = [HH_PROMPT, None, "a plain prompt"]
    docs = tokenize_documents(reader.tokenizer, texts, 64, contexts, wrapping)
    result = encode_batch(reader, sae, 1, docs, wrapping)
    for i, context in enumerate(contexts):
        prefix = (
            list(wrapping.prefix)
            if context is None
            else context_prefix(reader.tokenizer, wrapping, context, 64).tolist()
        )
        own = docs[i].ids.tolist()
        ids = torch.tensor([prefix + own + list(wrapping.suffix)])
        with torch.no_grad():
            hidden = reader.model(input_ids=ids, output_hidden_states=True).hidden_states[2][0]
        dense = sae.encode(hidden[len(prefix) : len(prefix) + len(own)])
        want = dense.max(0).values
        mine = result.doc_index == i
        got = np.zeros(sae.cfg.d_sae, dtype=np.float32)
        got[result.feature[mine]] = result.value[mine]
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4)
        assert result.peak_token[mine].max() < len(own)  # peaks are in the response, not the prompt


def test_long_contexts_keep_their_last_tokens(reader):
    wrapping = wrapping_for(reader.tokenizer, "none")
    long = " ".join(f"word{i}" for i in range(300))
    ids = context_prefix(reader.tokenizer, wrapping, long, 16)
    assert len(ids) == 16 + len(wrapping.prefix)
    full = reader.tokenizer(long + "\n\n", add_special_tokens=False)["input_ids"]
    assert ids[len(wrapping.prefix) :].tolist() == full[-16:]
    assert ids[: len(wrapping.prefix)].tolist() == list(wrapping.prefix)


def test_prefs_encode_with_context_through_the_cli(tmp_path, tiny_model, tiny_sae):
    pairs = pl.DataFrame(
        {
            "prompt": ["q1", "q2", "q3"],
            "chosen": ["same answer", "same answer", "yes"],
            "rejected": ["no", "nope", "maybe"],
        }
    )
    source = tmp_path / "pairs.jsonl"
    pairs.write_ndjson(source)
    db = tmp_path / "p.duckdb"
    common = ["--db", str(db), "--model", str(tiny_model), "--sae", str(tiny_sae)]
    run = CliRunner().invoke(main, ["prefs", "encode", str(source), *common, "--context"])
    assert run.exit_code == 0, run.output
    assert "pair set 'pairs': 3 pairs (3 new)" in run.stderr
    with Store(db) as store:
        docs = store.sql("SELECT text, context FROM documents ORDER BY row_idx")
        # the same answer after two prompts is two documents
        assert docs.height == 6 and docs.filter(pl.col("text") == "same answer").height == 2
        encoded = store.sql(
            "SELECT d.text, e.n_tokens FROM encoded_documents e JOIN documents d USING (doc_id)"
        )
        lengths = dict(zip(encoded["text"], encoded["n_tokens"], strict=False))
        assert lengths["no"] == len(
            tokenize_documents(store_tokenizer(tiny_model), ["no"], 9)[0].ids
        )
    again = CliRunner().invoke(main, ["prefs", "encode", str(source), *common, "--context"])
    assert "(0 new); encoded 0 responses" in again.stderr
    listed = CliRunner().invoke(main, ["prefs", "list", str(db), "--format", "jsonl"])
    assert '"n_pairs":3' in listed.stdout and '"context":true' in listed.stdout


def store_tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def test_pair_sae_is_an_encoder_the_report_can_use(tmp_path):
    """The WIMHF recipe on the planted store: trained once (deterministic, so a second run finds
    it), stored with weights, signed pair activations and labels, analysed by `fit`."""
    build_pair_store(tmp_path / "w.duckdb", n=300, seed=4)[0].close()
    db = tmp_path / "w.duckdb"
    settings = dict(latents=8, k=2, prefixes=(4, 8), epochs=20)
    encoder, created, stats = api.train_sae(db, **settings)
    assert created and encoder.d_sae == 8 and stats["l0"] == pytest.approx(2, abs=0.5)
    again, created_again, _ = api.train_sae(db, **settings)
    assert again == encoder and not created_again
    with Store(db) as store:
        n_rows = store.sql("SELECT count(*) AS n FROM pair_activations")["n"][0]
        labels = store.sql("SELECT * FROM features WHERE encoder_id = ?", [encoder.encoder_id])
        weights = store.sql("SELECT weights FROM pair_saes")["weights"][0]
    assert 0 < n_rows <= 300 * 8 and labels.height == 8 and len(weights) > 1000
    report = api.fit(
        db, encoder=encoder.name, settings=api.FitSettings(dense=False, ks=(2,), min_prevalence=0.0)
    )
    assert report.summary["encoder"] == encoder.name and 0 < report.features.height <= 8
    assert set(report.metrics) == {"length", "all", "k2"}


@pytest.mark.slow
def test_real_model_on_real_hh_rlhf_pairs(tmp_path, saeembed_home):
    """The default reader and SAE on 120 real HH-RLHF harmless pairs: encode, fit, flag."""
    from saeembed.prefs.pairs import read_pairs

    try:
        pairs = read_pairs("data:hh-rlhf-harmless").head(120)
    except Exception as exc:  # noqa: BLE001 - no copy of the dataset on this machine
        pytest.skip(f"HH-RLHF harmless not available: {exc}")
    frame = pairs.select("prompt", "response_a", "response_b", "label")
    db = tmp_path / "hh.duckdb"
    options = api.PAIR_ENCODING.but(max_tokens=96)
    result = api.encode_pairs(frame, db, pairs="hh", encoding=options, progress=False)
    assert result.n_pairs == 120 and result.encoding.n_encoded == 240
    report = api.fit(db, settings=api.FitSettings(dense=False, ks=(5,), min_prevalence=0.05))
    assert report.features.height > 100 and report.features["label"].null_count() == 0
    assert 0.3 < report.metrics["k5"] < 0.9
    flagged = api.flag(db, k=5, confidence=0.6)
    assert (flagged["p_label"] < 0.4).all()
