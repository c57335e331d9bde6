"""The output side of a feature: the tokens its decoder direction (in the residual stream:
`residual_directions`) promotes when read through the reader's final norm and unembedding (the "logit lens" on the decoder row). A feature that fires on
"talent for" / "skill at" may promote "doing", "making": what the reader expects next says what
the feature is about, independently of the words it fires on."""

from __future__ import annotations

import re

import numpy as np
import torch

from saeembed.sites import down_weight, mlp_of

WORDLIKE = re.compile(r"^[a-z][a-z'-]{2,}$")


def residual_directions(sae, reader) -> torch.Tensor | None:
    """Each feature's decoder row as what it adds to the residual stream ``[d_sae, d_model]``:
    the row itself for a residual SAE, a transcoder or a dictionary of the MLP's output; for a
    dictionary of the MLP's hidden activations (a semi-NMF), the row through the MLP's down
    projection; None where the decoder writes nothing the residual stream receives (the MLP's
    input)."""
    decoder = sae.W_dec.detach().float()
    site = getattr(sae.cfg, "site", "resid")  # configs made by hand may carry no site
    writes = getattr(sae.cfg, "output_site", None) or site
    if writes in ("resid", "mlp_out"):
        return decoder
    if writes == "mlp_hidden" and getattr(sae.cfg, "layer", None) is not None:
        down = down_weight(mlp_of(reader.layers[sae.cfg.layer])).detach().float()
        if tuple(down.shape) == (reader.d_model, decoder.shape[1]):
            return decoder.to(down.device) @ down.T
    return None


def _final_norm_weight(model) -> torch.Tensor | None:
    inner = getattr(model, "model", None)
    norm = getattr(inner, "norm", None) if inner is not None else None
    weight = getattr(norm, "weight", None)
    return weight.detach().float() if weight is not None else None


@torch.inference_mode()
def promoted_tokens(
    sae, reader, n: int = 3, *, candidates: int = 40, chunk: int = 512
) -> dict[int, tuple[str, ...]]:
    """Per feature, up to ``n`` word-like tokens (lower-cased, three letters or more, and starting
    a word: a token spelled with a leading space, so word pieces such as "roximately" are left
    out) among the ``candidates`` its decoder direction promotes most. Empty when the reader has no
    unembedding of the SAE's width."""
    head = reader.model.get_output_embeddings()
    directions = residual_directions(sae, reader)
    if head is None or directions is None or head.weight.shape[1] != directions.shape[1]:
        return {}
    unembed = head.weight.detach().float()
    gamma = _final_norm_weight(reader.model)
    decoder = directions.to(unembed.device)
    if gamma is not None and gamma.shape[0] == decoder.shape[1]:
        decoder = decoder * gamma.to(unembed.device)
    vocab = reader.tokenizer.convert_ids_to_tokens(list(range(unembed.shape[0])))
    spelled = [reader.tokenizer.convert_tokens_to_string([t]) for t in vocab]
    words = [s.strip().lower() for s in spelled]
    wordlike = np.array(
        [s.startswith(" ") and bool(WORDLIKE.match(w)) for s, w in zip(spelled, words, strict=True)]
    )
    out: dict[int, tuple[str, ...]] = {}
    for start in range(0, decoder.shape[0], chunk):
        logits = decoder[start : start + chunk] @ unembed.T
        top = logits.topk(candidates, dim=1).indices.cpu().numpy()
        for offset, ids in enumerate(top):
            picked: list[str] = []
            for i in ids:
                if wordlike[i] and words[i] not in picked:
                    picked.append(words[i])
                    if len(picked) == n:
                        break
            out[start + offset] = tuple(picked)
    return out


@torch.inference_mode()
def promoted_and_suppressed(
    sae, reader, features: list[int], n: int = 10
) -> dict[int, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Per feature of ``features``, the ``n`` tokens its decoder direction promotes most and the
    ``n`` it suppresses most through the reader's final norm and unembedding (for reports):
    whole words (tokens that start a word) and symbols, as
    spelled and stripped, each once; pieces of words ("gevity", "ERSION") are left out, since
    alone they name nothing. Empty when the reader has no unembedding of the SAE's width."""
    head = reader.model.get_output_embeddings()
    directions = residual_directions(sae, reader) if features else None
    if head is None or directions is None or head.weight.shape[1] != directions.shape[1]:
        return {}
    unembed = head.weight.detach().float()
    gamma = _final_norm_weight(reader.model)
    decoder = directions[list(features)].to(unembed.device)
    if gamma is not None and gamma.shape[0] == decoder.shape[1]:
        decoder = decoder * gamma.to(unembed.device)
    logits = decoder @ unembed.T
    k = min(8 * n, logits.shape[1])  # pieces are dropped: look further down the list
    top = logits.topk(k, dim=1).indices.cpu().tolist()
    bottom = (-logits).topk(k, dim=1).indices.cpu().tolist()
    tokenizer = reader.tokenizer

    def readable(ids: list[int]) -> tuple[str, ...]:
        out: dict[str, str] = {}
        for token in tokenizer.convert_ids_to_tokens(ids):
            word = tokenizer.convert_tokens_to_string([token]).strip()
            # a token starts a word when two copies of it decode with a space between them
            # (GPT-2's "Ġ", SentencePiece's "▁", word-level vocabularies); a piece ("gevity",
            # WordPiece's "##gevity") runs on without one
            starts_word = bool(word) and bool(
                re.search(r"\S\s+\S", tokenizer.convert_tokens_to_string([token, token]).strip())
            )
            symbol = bool(word) and not any(c.isalnum() for c in word)
            if (starts_word or symbol) and word.lower() not in out:
                out[word.lower()] = word
                if len(out) == n:
                    break
        return tuple(out.values())

    return {
        int(f): (readable(up), readable(down))
        for f, up, down in zip(features, top, bottom, strict=True)
    }
