"""Dictionaries side by side on your own documents (`saeembed sae compare`): for each, what it
reconstructs (FVU against its own target, L0, features that never fire) and how much of the
reader's loss survives when its reconstruction is spliced in, on the same texts, plus how fast it
encodes them here. The figures say which dictionary keeps more of what the reader computes on
this corpus; `benchmarks/dictionaries.py` adds the analyses (planted differences, retrieval,
names)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import polars as pl
import torch

from saeembed.errors import InputError


def _encoding_speed(reader, sae, layer: int, texts: Sequence[str], max_tokens: int) -> float:
    """Tokens per second of encoding ``texts`` (reader up to the site, then the dictionary)."""
    from saeembed.encoding.core import default_batch_tokens, encode_batch
    from saeembed.inputs.tokens import plan_batches, tokenize_documents, wrapping_for

    wrapping = wrapping_for(reader.tokenizer, "none")
    docs = tokenize_documents(reader.tokenizer, list(texts), max_tokens, None, wrapping)
    started, tokens = time.perf_counter(), 0
    for batch in plan_batches([d.width for d in docs], default_batch_tokens(reader.device)):
        chosen = [docs[i] for i in batch]
        encode_batch(reader, sae, layer, chosen, wrapping)
        tokens += sum(len(d.ids) for d in chosen)
    return tokens / max(time.perf_counter() - started, 1e-9)


def compare_dictionaries(
    specs: Sequence[str | None],
    texts: Sequence[str],
    *,
    model: str = "default",
    max_tokens: int = 256,
    device: str = "auto",
) -> pl.DataFrame:
    """One row per dictionary (``None``: the model's shipped SAE): kind, site, features, k,
    FVU, L0, dead fraction, loss recovered and encoding tokens/s, all on ``texts``."""
    from saeembed.encoding.core import dictionary_kind, resolve_sae
    from saeembed.reader import load_reader
    from saeembed.sae import check_sae_fits
    from saeembed.train.evaluate import evaluate_sae

    texts = [t for t in texts if t and t.strip()]
    if len(texts) < 2:
        raise InputError("compare needs at least 2 non-empty texts; give --source with more")
    reader = load_reader(model, device=device, dtype="float32")
    rows = []
    for spec in specs:
        sae = resolve_sae(spec, reader.model_id)
        if sae.cfg.layer is None:
            raise InputError(f"{spec} names no layer in its cfg.json; it cannot be compared here")
        check_sae_fits(sae, reader.site_width(sae.cfg.site), reader.n_layers, sae.cfg.layer)
        sae = sae.to(reader.device)
        with torch.inference_mode():
            figures = evaluate_sae(sae, reader, sae.cfg.layer, texts, max_tokens=max_tokens)
            speed = _encoding_speed(reader, sae, sae.cfg.layer, texts, max_tokens)
        site = sae.cfg.site + (f" -> {sae.cfg.output_site}" if sae.cfg.output_site else "")
        rows.append({
            "dictionary": spec or "default",
            "kind": dictionary_kind(sae),
            "layer": sae.cfg.layer,
            "site": site,
            "features": sae.cfg.d_sae,
            "k": sae.cfg.k,
            "fvu": figures["fvu"],
            "l0": figures["l0"],
            "dead_fraction": figures["dead_fraction"],
            "loss_recovered": figures["loss_recovered"],
            "tokens_per_s": speed,
        })  # fmt: skip
    return pl.DataFrame(rows)
