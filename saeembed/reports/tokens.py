"""Token-level activations of the documents a report shows: the encoder's reader and SAE are run
again on those documents only (nothing of the kind is stored; the store keeps each concept's
pooled maximum and its peak span), so each shown token can be shaded by how strongly the
concept fires on it. Also the tokens a feature's decoder direction promotes and suppresses.

When the encoder's reader or SAE cannot be loaded here (a constructed store, a model that is not
cached), `load_scorer` returns None and reports fall back to the stored peak span."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from saeembed.store import Encoder

log = logging.getLogger(__name__)
BATCH_TOKENS = 1024


@dataclass
class TokenScorer:
    """The reader (cut after the SAE's layer) and the SAE of one encoder, on the CPU."""

    reader: object
    sae: object
    layer: int
    max_tokens: int
    chat: str
    output: dict  # feature -> (promoted, suppressed), filled by `output_tokens`

    @torch.inference_mode()
    def spans(
        self,
        texts: list[str],
        contexts: list[str | None],
        wanted: list[set[int]],
        progress=None,
    ) -> list[dict[int, list[tuple[int, int, float]]]]:
        """Per document, for each feature of its ``wanted`` set, the (start, end, activation) of
        every token the feature is active on (character offsets in the text)."""
        from saeembed.inputs.tokens import (
            assemble_batch,
            plan_batches,
            tokenize_documents,
            wrapping_for,
        )

        wrapping = wrapping_for(self.reader.tokenizer, self.chat)
        docs = tokenize_documents(self.reader.tokenizer, texts, self.max_tokens, contexts, wrapping)
        out: list[dict[int, list[tuple[int, int, float]]]] = [{} for _ in texts]
        for batch in plan_batches([d.width for d in docs], BATCH_TOKENS):
            chosen = [docs[i] for i in batch]
            ids, own = assemble_batch(chosen, wrapping, self.reader.tokenizer, self.reader.device)
            hidden = self.reader.site_activations(ids, None, self.layer, self.sae.cfg.site)
            tokens = hidden[own].to(self.sae.W_enc.dtype)
            lengths = [len(d.ids) for d in chosen]
            doc_of = torch.repeat_interleave(torch.arange(len(chosen)), torch.tensor(lengths))
            first = torch.cumsum(torch.tensor([0, *lengths[:-1]]), 0)
            typical = self.sae.typical(tokens).nonzero().squeeze(1)
            acts = self.sae.encode_sparse(tokens[typical])
            token_of = typical[acts.token].cpu()
            for t, f, v in zip(
                token_of.tolist(),
                acts.feature.cpu().tolist(),
                acts.value.float().cpu().tolist(),
                strict=True,
            ):
                row = int(doc_of[t])
                index = batch[row]
                if f in wanted[index]:
                    start, end = chosen[row].offsets[t - int(first[row])]
                    out[index].setdefault(f, []).append((int(start), int(end), float(v)))
            if progress is not None:
                progress(len(batch))
        return out

    def output_tokens(self, features: list[int], n: int = 10) -> dict:
        """Promoted and suppressed tokens of ``features`` (`promoted_and_suppressed`)."""
        from saeembed.labels.output import promoted_and_suppressed

        missing = [f for f in features if f not in self.output]
        if missing:
            self.output.update(promoted_and_suppressed(self.sae, self.reader, missing, n))
        return {f: self.output[f] for f in features if f in self.output}


def load_scorer(encoder: Encoder) -> TokenScorer | None:
    """The encoder's reader and SAE on the CPU, or None when they cannot be loaded here."""
    from saeembed.encoding.stack_cache import stored_stack

    try:
        reader, sae = stored_stack(encoder)
    except Exception as error:  # noqa: BLE001 - token shading is an extra; peaks are the fallback
        log.warning(
            "token-level shading unavailable for %s (%s); showing stored peak tokens",
            encoder.name,
            str(error).splitlines()[0] if str(error) else type(error).__name__,
        )
        return None
    if sae.cfg.d_in != reader.site_width(sae.cfg.site) or not 0 <= encoder.layer < reader.n_layers:
        log.warning("the SAE of %s does not fit its reader here; showing peaks", encoder.name)
        return None
    return TokenScorer(reader, sae.to(reader.device), encoder.layer, encoder.max_tokens,
                       encoder.chat, {})  # fmt: skip
