"""The output side of a feature: the tokens its decoder direction promotes when read through the
reader's final norm and unembedding (the "logit lens" on the decoder row). A feature that fires on
"talent for" / "skill at" may promote "doing", "making": what the reader expects next says what
the feature is about, independently of the words it fires on."""

from __future__ import annotations

import re

import numpy as np
import torch

WORDLIKE = re.compile(r"^[a-z][a-z'-]{2,}$")


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
    if head is None or head.weight.shape[1] != sae.cfg.d_in:
        return {}
    unembed = head.weight.detach().float()
    gamma = _final_norm_weight(reader.model)
    decoder = sae.W_dec.detach().float().to(unembed.device)
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
    """Per feature of ``features``, the ``n`` tokens (as spelled, stripped) its decoder direction
    promotes most and the ``n`` it suppresses most through the reader's final norm and
    unembedding (any token, word pieces included; for reports). Empty when the reader has no
    unembedding of the SAE's width."""
    head = reader.model.get_output_embeddings()
    if head is None or head.weight.shape[1] != sae.cfg.d_in or not features:
        return {}
    unembed = head.weight.detach().float()
    gamma = _final_norm_weight(reader.model)
    decoder = sae.W_dec.detach().float()[list(features)].to(unembed.device)
    if gamma is not None and gamma.shape[0] == decoder.shape[1]:
        decoder = decoder * gamma.to(unembed.device)
    logits = decoder @ unembed.T
    k = min(n, logits.shape[1])
    top = logits.topk(k, dim=1).indices.cpu().tolist()
    bottom = (-logits).topk(k, dim=1).indices.cpu().tolist()
    tokenizer = reader.tokenizer

    def spelled(ids: list[int]) -> tuple[str, ...]:
        return tuple(
            tokenizer.convert_tokens_to_string([t]) for t in tokenizer.convert_ids_to_tokens(ids)
        )

    return {
        int(f): (spelled(up), spelled(down))
        for f, up, down in zip(features, top, bottom, strict=True)
    }
