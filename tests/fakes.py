"""Tiny real components for fast tests: a 3-layer Llama built from a config with a word-level
tokenizer (offsets and a chat template included), and small random SAEs in saeembed's format."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from saeembed.sae import SAE, SAEConfig

WORDS = [
    "the",
    "a",
    "movie",
    "film",
    "was",
    "is",
    "great",
    "awful",
    "plot",
    "acting",
    "story",
    "news",
    "market",
    "stocks",
    "rallied",
    "fell",
    "on",
    "tuesday",
    "and",
    "but",
    "very",
    "not",
    "good",
    "bad",
    "i",
    "you",
    "it",
    "this",
    "that",
    "love",
    "hate",
    "boring",
    "fun",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
)


# A complete `encoders` row for tests that build a store by hand.
ENCODER_FIELDS = dict(
    model="m",
    model_revision="r",
    layer=1,
    sae="s",
    sae_sha256="ab" * 32,
    d_sae=8,
    activation="topk",
    k=2,
    pooling="max",
    max_tokens=8,
    truncation="keep_first",
    dtype="float32",
    chat="none",
    prefix="bos",
    encoding_version=2,
    saeembed_version="0",
    config={},
    name="m-L1",
)


def build_tiny_model(directory: Path, *, hidden: int = 16, layers: int = 3, seed: int = 0) -> Path:
    """Save a random Llama (d_model ``hidden``) and its tokenizer to ``directory``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {tok: i for i, tok in enumerate(specials + WORDS + [".", ",", "!", "\n"])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        unk_token="<unk>",
        pad_token="<|im_end|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=3,
        pad_token_id=3,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def random_sae(
    d_in: int = 16,
    d_sae: int = 64,
    *,
    activation: str = "topk",
    k: int | None = 4,
    layer: int | None = 1,
    model: str | None = None,
    seed: int = 0,
) -> SAE:
    """A random SAE whose encoder gives a healthy number of active latents on tiny-model inputs."""
    gen = torch.Generator().manual_seed(seed)
    cfg = SAEConfig(d_in=d_in, d_sae=d_sae, activation=activation, k=k, model=model, layer=layer)
    weights = {
        "W_enc": torch.randn(d_in, d_sae, generator=gen),
        "b_enc": torch.randn(d_sae, generator=gen) * 0.1,
        "W_dec": torch.randn(d_sae, d_in, generator=gen) / d_sae**0.5,
        "b_dec": torch.zeros(d_in),
    }
    if activation == "jumprelu":
        weights["threshold"] = torch.rand(d_sae, generator=gen)
    return SAE(cfg, weights)


def write_constructed(store, encoder_id: int, doc_ids: list[int], rows: list[tuple], n_tokens: int):
    """Store hand-made encodings: ``rows`` are (doc_id, feature, value, peak_start, peak_end
    [, active_tokens [, value_sum]]), active on one token (the first) unless ``active_tokens``
    says more, the sum ``value * active_tokens`` unless given; every document in ``doc_ids``
    counts as encoded, each ``n_tokens`` long."""
    import pyarrow as pa

    per_doc = dict.fromkeys(doc_ids, 0)
    for row in rows:
        per_doc[row[0]] += 1
    encoded = pa.table(
        {
            "doc_id": pa.array(list(per_doc), pa.int64()),
            "n_tokens": [n_tokens] * len(per_doc),
            "truncated": [False] * len(per_doc),
            "n_features": list(per_doc.values()),
        }
    )
    column = lambda i, kind: pa.array([r[i] for r in rows], kind)  # noqa: E731
    activations = pa.table(
        {
            "doc_id": column(0, pa.int64()),
            "feature": column(1, pa.int32()),
            "value": column(2, pa.float32()),
            "n_tokens": pa.array([r[5] if len(r) > 5 else 1 for r in rows], pa.int32()),
            "peak_token": pa.array([0] * len(rows), pa.int32()),
            "peak_start": column(3, pa.int32()),
            "peak_end": column(4, pa.int32()),
            "value_sum": pa.array(
                [r[6] if len(r) > 6 else r[2] * (r[5] if len(r) > 5 else 1) for r in rows],
                pa.float32(),
            ),
        }
    )
    store.write_encoded(encoder_id, encoded, activations)


class Killed(Exception):
    """Raised from an encode's ``on_batch`` to stop it the way a killed process would."""


def encode_until_killed(source, db, *, after: int = 2, **kwargs) -> None:
    """Run `saeembed.api.encode` and stop it right after its ``after``-th committed batch."""
    import pytest

    from saeembed.api import encode

    def die(n):
        if n == after:
            raise Killed

    with pytest.raises(Killed):
        encode(source, db, on_batch=die, **kwargs)


def send_json(handler, payload: dict) -> None:
    """Answer an http.server request with ``payload`` as JSON (the fake LLM servers' reply)."""
    data = json.dumps(payload).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
