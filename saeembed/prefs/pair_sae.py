"""A small sparse autoencoder on the difference of two responses' embeddings, e(A) - e(B), as in
WIMHF (Movva et al. 2025, "What's In My Human Feedback?"): each latent is a *signed* concept,
positive when A is "more X" than B and negative when B is, and the preference label is then
regressed on the latents.

Design:

- **Odd by construction.** The encoder and decoder have no biases and the sparsity rule looks at
  ``|a|`` only, so ``encode(-d) == -encode(d)`` exactly: swapping A and B flips every latent's sign
  and nothing else. Training on each difference *and* its negation would therefore add nothing (a
  negated pair has the same loss, the same kept latents and the same gradient), so it is not done.
- **Signed BatchTopK.** In training, pre-activations ``a = d @ W_enc.T`` are kept for the
  ``k x batch`` entries of the batch with the largest ``|a|`` (values keep their sign), the rest
  are zeroed; ``k`` is the mean number of active latents per pair. At inference a single
  threshold ``θ`` on ``|a|`` replaces the batch rule, so a pair's code does not depend on the
  pairs encoded with it. ``θ`` is calibrated once after training, as BatchTopK on the whole
  training set taken as one batch: the ``(k x n)``-th largest ``|a|`` (so the mean number of
  active latents on the training pairs is exactly ``k``).
- **Matryoshka.** The loss is the sum over the nested dictionary sizes ``m`` in ``prefixes`` of
  the reconstruction error using only latents ``[:m]`` (Bussmann et al. 2025), so the first
  latents carry the broadest concepts and any prefix is a usable smaller dictionary.
- **Initialisation.** Encoder and decoder rows start tied, at the principal directions of the
  (scaled) differences, largest first, so the first prefix starts on the broadest directions;
  rows beyond ``min(n, d_in)`` start random. From a random start, Matryoshka training often
  leaves a rare concept in the first prefix and a frequent one further back for good (a local
  minimum: swapping them means passing through worse reconstructions).
- **Scale.** Inputs are divided by one stored scalar so that their mean squared norm is 1.
  Decoder rows are kept at unit norm (the gradient along each row is removed, then the row is
  renormalised after every Adam step).
- **Dead latents.** At the end of each epoch in the first half of training, latents that were
  kept for fewer pairs than a tenth of the mean rate ``k / n_latents`` during that epoch (dead or
  nearly so) are re-initialised, encoder and decoder row with their Adam state reset, to the
  directions of the worst-reconstructed training pairs' residuals, one pair per latent; the
  second half of training runs undisturbed, so genuinely rare concepts can settle. There is no
  auxiliary loss.
- **Identifiability.** A signed code has a symmetry that a ReLU code lacks: two latents can share
  the span of two concepts in rotated form and reconstruct as well, using two latents where one
  would do. Only the sparsity budget breaks it, so ``k`` should not be far above the number of
  concepts a pair really differs in (on planted data, ``k`` = 2 with pairs differing in 1.5
  concepts on average recovers rotated blends; ``k`` = the true mean recovers the concepts).

`train_pair_sae` fits one (deterministic for a seed and data), `encode_pairs` encodes a matrix of
differences, `fvu` reports the fraction of variance unexplained (optionally by a prefix only),
`PairSAE.to_bytes`/`from_bytes`/`content_hash` serialise it (safetensors with the config in its
metadata) for a DuckDB BLOB, and `label_pair_latents` names each latent offline by the words that
set its positive-side responses apart from the other side's."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
import torch
from torch import nn

from saeembed.errors import InputError
from saeembed.labels.evidence import snippet, words_with_spans
from saeembed.labels.offline import render_terms

log = logging.getLogger(__name__)

FORMAT = "saeembed.pair_sae/1"
_META_KEY = "pair_sae"  # one metadata key: safetensors writes a map's keys in no fixed order
LABEL_COLUMNS = ["feature", "label", "description", "label_score", "n_pairs", "examples"]


@dataclass(frozen=True)
class PairSAEConfig:
    d_in: int
    n_latents: int = 32
    k: float = 4  # mean active latents per pair (BatchTopK)
    prefixes: tuple[int, ...] = (8, 16, 32)  # Matryoshka dictionary sizes; the last = n_latents
    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    resample_fraction: float = 0.5  # rare latents are re-initialised during this share of epochs
    rare_fraction: float = 0.1  # rare = fired on fewer pairs than this x the mean rate, k/n_latents

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefixes", tuple(int(m) for m in self.prefixes))
        p = self.prefixes
        if (
            not p
            or p[-1] != self.n_latents
            or any(b <= a for a, b in zip(p[:-1], p[1:], strict=True))
            or p[0] < 1
        ):
            raise InputError(
                f"pair SAE prefixes {p} must increase and end at n_latents={self.n_latents}; "
                f"pass e.g. prefixes=({self.n_latents // 4}, {self.n_latents // 2}, {self.n_latents})"
            )
        if not 0 < self.k <= self.n_latents:
            raise InputError(
                f"pair SAE k={self.k} must be above 0 and at most n_latents={self.n_latents}"
            )
        if self.d_in < 1 or self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise InputError(
                "pair SAE d_in, epochs, batch_size and lr must be positive; fix the config"
            )


class PairSAE(nn.Module):
    """Signed BatchTopK Matryoshka SAE on embedding differences (see the module docstring).

    ``encode`` and ``decode`` work in the caller's units: ``encode`` divides by ``scale`` first and
    ``decode`` multiplies by it, so ``decode(encode(d))`` approximates ``d``."""

    def __init__(self, config: PairSAEConfig):
        super().__init__()
        gen = torch.Generator().manual_seed(config.seed)
        W_dec = torch.randn(config.n_latents, config.d_in, generator=gen)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.clone())
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("threshold", torch.zeros(()))
        self.config = config
        self.stats: dict = {}
        self.train_seconds: float | None = None

    # -- the maps -------------------------------------------------------------------------------

    def preacts(self, d: torch.Tensor) -> torch.Tensor:
        """Pre-activations of differences ``d`` (caller's units): ``(d / scale) @ W_enc.T``."""
        return (d.to(self.W_enc.dtype) / self.scale) @ self.W_enc.T

    def sparsify(self, a: torch.Tensor) -> torch.Tensor:
        """Inference rule: keep entries with ``|a| >= threshold`` (and ``a != 0``), signs kept."""
        keep = (a.abs() >= self.threshold) & (a != 0)
        return torch.where(keep, a, torch.zeros((), dtype=a.dtype))

    def encode(self, d: torch.Tensor) -> torch.Tensor:
        """Sparse signed codes ``[n, n_latents]`` of differences ``d [n, d_in]``; odd in ``d``."""
        return self.sparsify(self.preacts(d))

    def decode(self, z: torch.Tensor, prefix: int | None = None) -> torch.Tensor:
        """Reconstructed differences (caller's units), using only latents ``[:prefix]`` if given."""
        m = self.config.n_latents if prefix is None else prefix
        return (z[:, :m] @ self.W_dec[:m]) * self.scale

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(d))

    # -- serialisation --------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """safetensors bytes; the config (and training statistics) as JSON in its metadata."""
        from safetensors.torch import save

        tensors = {
            "W_enc": self.W_enc.detach().cpu().contiguous(),
            "W_dec": self.W_dec.detach().cpu().contiguous(),
            "scale": self.scale.detach().cpu().reshape(1).contiguous(),
            "threshold": self.threshold.detach().cpu().reshape(1).contiguous(),
        }
        meta = {"format": FORMAT, "config": asdict(self.config), "stats": self.stats}
        return save(tensors, metadata={_META_KEY: json.dumps(meta, sort_keys=True)})

    @classmethod
    def from_bytes(cls, data: bytes) -> PairSAE:
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            tensors = load(bytes(data))
            meta = _read_meta(data)
        except (SafetensorError, ValueError, KeyError) as exc:
            raise InputError(
                f"these bytes are not a saved pair SAE ({' '.join(str(exc).split())}); "
                "store it with PairSAE.to_bytes()"
            ) from None
        config = meta["config"]
        sae = cls(PairSAEConfig(**{**config, "prefixes": tuple(config["prefixes"])}))
        with torch.no_grad():
            sae.W_enc.copy_(tensors["W_enc"])
            sae.W_dec.copy_(tensors["W_dec"])
            sae.scale.copy_(tensors["scale"][0])
            sae.threshold.copy_(tensors["threshold"][0])
        sae.stats = meta.get("stats", {})
        return sae

    def content_hash(self) -> str:
        """sha256 (hex) of `to_bytes`."""
        return hashlib.sha256(self.to_bytes()).hexdigest()


def _read_meta(data: bytes) -> dict:
    size = int.from_bytes(data[:8], "little")
    header = json.loads(bytes(data[8 : 8 + size]))
    meta = json.loads(header["__metadata__"][_META_KEY])
    if meta.get("format") != FORMAT:
        raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


# -- training ---------------------------------------------------------------------------------


def _check_diffs(diffs: np.ndarray, d_in: int | None, what: str) -> np.ndarray:
    arr = np.asarray(diffs)
    if arr.ndim != 2 or (d_in is not None and arr.shape[1] != d_in):
        want = f"[n, {d_in}]" if d_in is not None else "[n, d]"
        raise InputError(
            f"{what}: differences have shape {arr.shape}, expected {want}; embed both responses "
            "with the embedder the pair SAE was trained on and pass e(A) - e(B) as one row per pair"
        )
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise InputError(
            f"{what}: differences contain NaN, infinity or non-numbers; fix the embeddings"
        )
    return arr.astype(np.float32, copy=False)


def _batch_topk(a: torch.Tensor, k: float) -> torch.Tensor:
    """Signed BatchTopK: keep the ``round(k x batch)`` entries with the largest ``|a|``."""
    n_keep = max(1, min(a.numel(), round(k * a.shape[0])))
    index = a.abs().flatten().topk(n_keep, sorted=False).indices
    keep = torch.zeros(a.numel(), dtype=torch.bool).index_fill_(0, index, True)
    return torch.where(keep.view_as(a), a, torch.zeros((), dtype=a.dtype))


def _matryoshka_loss(
    x: torch.Tensor, z: torch.Tensor, W_dec: torch.Tensor, prefixes: tuple[int, ...]
) -> torch.Tensor:
    """Sum over prefixes ``m`` of the mean (over pairs) squared error of the reconstruction from
    latents ``[:m]`` only."""
    recon, total, start = torch.zeros_like(x), x.new_zeros(()), 0
    for m in prefixes:
        recon = recon + z[:, start:m] @ W_dec[start:m]
        total = total + (x - recon).pow(2).sum(1).mean()
        start = m
    return total


@torch.no_grad()
def _resample(sae: PairSAE, x: torch.Tensor, dead: torch.Tensor, optimiser, k: float) -> None:
    """Point (nearly) dead latents at the residuals of the worst-reconstructed pairs, one pair
    each; their encoder rows get the mean norm of the live ones."""
    z = _batch_topk(x @ sae.W_enc.T, k)
    residual = x - z @ sae.W_dec
    idx = dead.nonzero().squeeze(1)
    worst = residual.pow(2).sum(1).topk(min(len(idx), len(x))).indices
    idx = idx[: len(worst)]
    directions = residual[worst] / residual[worst].norm(dim=1, keepdim=True).clamp_min(1e-12)
    alive = ~dead
    enc_norm = sae.W_enc[alive].norm(dim=1).mean() if alive.any() else torch.tensor(1.0)
    sae.W_dec[idx] = directions
    sae.W_enc[idx] = directions * enc_norm
    for p in (sae.W_enc, sae.W_dec):
        state = optimiser.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][idx] = 0


@torch.no_grad()
def _init_principal(sae: PairSAE, x: torch.Tensor) -> None:
    """Tied rows at the principal directions of ``x``, largest first (each signed so that its
    largest coordinate is positive); rows beyond the rank keep their random start."""
    r = min(sae.config.n_latents, x.shape[0], x.shape[1])
    _, _, vh = torch.linalg.svd(x.double(), full_matrices=False)
    rows = vh[:r].float()
    sign = torch.sign(rows.gather(1, rows.abs().argmax(1, keepdim=True)))
    rows = rows * sign
    sae.W_dec[:r] = rows
    sae.W_enc[:r] = rows


@torch.no_grad()
def _calibrate(sae: PairSAE, x: torch.Tensor, k: float) -> None:
    """Inference threshold: the BatchTopK cut-off with all training pairs as one batch."""
    a = (x @ sae.W_enc.T).abs().flatten()
    n_keep = max(1, min(a.numel(), round(k * x.shape[0])))
    sae.threshold.fill_(max(float(a.topk(n_keep).values[-1]), 1e-12))


def train_pair_sae(diffs: np.ndarray, config: PairSAEConfig, *, progress: bool = False) -> PairSAE:
    """Fit a `PairSAE` to differences ``diffs [n, d_in]`` (Adam, Matryoshka loss, signed
    BatchTopK). Deterministic: the same seed and data give the same weights (and bytes). Training
    statistics (FVU, FVU per prefix, mean active latents per pair, dead latents, resampled
    latents) land in ``sae.stats`` and are saved with it; ``sae.train_seconds`` is not."""
    from tqdm.auto import tqdm

    arr = _check_diffs(diffs, config.d_in, "training the pair SAE")
    if len(arr) < 2:
        raise InputError("training the pair SAE needs at least 2 pairs; pass more pairs")
    started = time.perf_counter()
    sae = PairSAE(config)
    x_all = torch.from_numpy(np.ascontiguousarray(arr))
    scale = float(x_all.pow(2).sum(1).mean().sqrt())
    sae.scale.fill_(scale if scale > 0 else 1.0)
    x_all = x_all / sae.scale
    n = len(x_all)
    gen = torch.Generator().manual_seed(config.seed + 1)
    _init_principal(sae, x_all)
    optimiser = torch.optim.Adam(sae.parameters(), lr=config.lr)
    resample_until = int(config.epochs * config.resample_fraction)
    n_resampled = 0
    for epoch in tqdm(range(config.epochs), desc="pair SAE", unit="epoch", disable=not progress):
        fired = torch.zeros(config.n_latents, dtype=torch.long)
        for batch in torch.randperm(n, generator=gen).split(config.batch_size):
            x = x_all[batch]
            z = _batch_topk(x @ sae.W_enc.T, config.k)
            loss = _matryoshka_loss(x, z, sae.W_dec, config.prefixes)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                g, w = sae.W_dec.grad, sae.W_dec
                g -= (g * w).sum(1, keepdim=True) * w
            optimiser.step()
            with torch.no_grad():
                sae.W_dec /= sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
                fired += (z != 0).sum(0)
        rare = fired < config.rare_fraction * config.k / config.n_latents * n
        if epoch < resample_until and rare.any():
            _resample(sae, x_all, rare, optimiser, config.k)
            n_resampled += int(rare.sum())
    _calibrate(sae, x_all, config.k)
    sae.stats = _statistics(sae, arr)
    sae.stats.update(resampled=n_resampled, n_pairs=n)
    sae.train_seconds = time.perf_counter() - started  # not saved: the bytes stay reproducible
    log.info(
        "pair SAE: FVU %.3f, %.2f active latents per pair, %d dead, %.1f s",
        sae.stats["fvu"],
        sae.stats["l0"],
        sae.stats["dead"],
        sae.train_seconds,
    )
    return sae


def _statistics(sae: PairSAE, diffs: np.ndarray) -> dict:
    z = encode_pairs(sae, diffs)
    return {
        "fvu": fvu(sae, diffs, z=z),
        "fvu_by_prefix": [fvu(sae, diffs, prefix=m, z=z) for m in sae.config.prefixes],
        "l0": float((z != 0).sum(1).mean()),
        "dead": int((~(z != 0).any(0)).sum()),
    }


# -- use --------------------------------------------------------------------------------------


def encode_pairs(sae: PairSAE, diffs: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
    """Sparse signed codes ``[n, n_latents]`` (float32) of differences ``diffs [n, d_in]``."""
    arr = _check_diffs(diffs, sae.config.d_in, "encoding pairs")
    out = np.zeros((len(arr), sae.config.n_latents), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(arr), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(arr[start : start + batch_size]))
            out[start : start + len(chunk)] = sae.encode(chunk).numpy()
    return out


def fvu(
    sae: PairSAE, diffs: np.ndarray, *, prefix: int | None = None, z: np.ndarray | None = None
) -> float:
    """Fraction of variance unexplained: ``sum |d - d_hat|^2 / sum |d - mean(d)|^2``, with
    ``d_hat`` decoded from latents ``[:prefix]`` only if given (``z``: precomputed codes)."""
    arr = _check_diffs(diffs, sae.config.d_in, "measuring FVU")
    codes = encode_pairs(sae, arr) if z is None else z
    with torch.no_grad():
        recon = sae.decode(torch.from_numpy(codes), prefix).numpy().astype(np.float64)
    x = arr.astype(np.float64)
    variance = float(((x - x.mean(0)) ** 2).sum())
    return float(((x - recon) ** 2).sum() / variance) if variance > 0 else math.nan


# -- offline labels ---------------------------------------------------------------------------


@dataclass
class _Words:
    """Document-level word sets of the responses, computed once per text on demand."""

    texts_a: list[str]
    texts_b: list[str]
    cache: dict = field(default_factory=dict)

    def of(self, pair: int, side_a: bool) -> frozenset[str]:
        key = (pair, side_a)
        if key not in self.cache:
            text = self.texts_a[pair] if side_a else self.texts_b[pair]
            self.cache[key] = frozenset(w for w, _, _ in words_with_spans(text))
        return self.cache[key]


def _log_odds(pos: int, neg: int, n: int) -> float:
    """Log-odds ratio of a word's presence on the positive against the negative side (+0.5)."""
    return math.log((pos + 0.5) / (n - pos + 0.5)) - math.log((neg + 0.5) / (n - neg + 0.5))


def _choose_terms(
    pos_sets: list[frozenset[str]], neg_sets: list[frozenset[str]], n_terms: int
) -> list[tuple[str, float, int, int]]:
    """Up to ``n_terms`` (term, log-odds, positive count, negative count), most distinctive first;
    a term must occur in at least max(2, 5%) of the responses on the side it favours."""
    n = len(pos_sets)
    pos_counts: dict[str, int] = {}
    neg_counts: dict[str, int] = {}
    for sets, counts in ((pos_sets, pos_counts), (neg_sets, neg_counts)):
        for words in sets:
            for w in words:
                counts[w] = counts.get(w, 0) + 1
    min_support = max(2, math.ceil(0.05 * n))
    scored = []
    for w in set(pos_counts) | set(neg_counts):
        p, q = pos_counts.get(w, 0), neg_counts.get(w, 0)
        if max(p, q) >= min_support and p != q:
            scored.append((w, _log_odds(p, q, n), p, q))
    scored.sort(key=lambda t: (-abs(t[1]), t[0]))
    return scored[:n_terms]


def _pair_score(words: _Words, pair: int, side_a: bool, terms) -> int:
    present = words.of(pair, side_a)
    return sum((1 if lo > 0 else -1) for t, lo, _, _ in terms if t in present)


def _sign_accuracy(words: _Words, pairs: np.ndarray, signs: np.ndarray, terms) -> float:
    """Balanced accuracy with which the terms tell which response is on the positive side
    (the one scoring higher: "more" terms count +1, "less" terms -1; a tie is half right)."""
    if not terms or (signs > 0).sum() < 3 or (signs < 0).sum() < 3:
        return math.nan
    credit = []
    for pair, sign in zip(pairs, signs, strict=True):
        margin = _pair_score(words, int(pair), True, terms) - _pair_score(
            words, int(pair), False, terms
        )
        credit.append(0.5 if margin == 0 else float((margin > 0) == (sign > 0)))
    credit_arr = np.array(credit)
    return float(0.5 * (credit_arr[signs > 0].mean() + credit_arr[signs < 0].mean()))


def _describe(terms, n: int) -> tuple[str, str]:
    """The label ("more: sorry / cannot; less: sure") and its sentence."""
    label_parts, text_parts = [], []
    for side in ("more", "less"):
        group = [t for t in terms if (t[1] > 0) == (side == "more")]
        if not group:
            continue
        label_parts.append(f"{side}: " + render_terms(tuple(t[0] for t in group)))
        words = ", ".join(f"'{t}' ({p} vs {q})" for t, _, p, q in group)
        text_parts.append(f"{words} {side} often")
    description = (
        f"Among the top {n} pairs by |z|, the response on this latent's side (A when z > 0, B "
        "when z < 0) contains " + " and ".join(text_parts) + " than the other response "
        "(responses containing the word: this side vs the other)."
    )
    return "; ".join(label_parts), description


def _start(text: str, width: int = 60) -> str:
    """The start of ``text`` on one line, cut at a word with "…" when longer than ``width``."""
    flat = snippet(text, None, None, width)
    if len(flat) <= width:
        return flat
    cut = flat[:width].rsplit(" ", 1)[0] if " " in flat[:width] else flat[:width]
    return cut + "…"


def _examples(texts_a, texts_b, pairs: np.ndarray, signs: np.ndarray, n: int = 3) -> list[str]:
    """Up to ``n`` distinct "+ positive side | − negative side" snippets, strongest pairs first."""
    out: list[str] = []
    for pair, sign in zip(pairs, signs, strict=True):
        pos, neg = (texts_a, texts_b) if sign > 0 else (texts_b, texts_a)
        example = f"+ {_start(pos[pair])} | − {_start(neg[pair])}"
        if example not in out:
            out.append(example)
        if len(out) == n:
            break
    return out


def label_pair_latents(
    z: np.ndarray, texts_a: list[str], texts_b: list[str], *, top: int = 50, n_terms: int = 3
) -> pl.DataFrame:
    """Offline labels of a pair SAE's latents, one row per latent (`LABEL_COLUMNS`).

    For latent ``j`` the positive side of a pair is A when ``z[:, j] > 0`` and B when it is
    negative. Among the ``top`` pairs with the largest ``|z_j|``, the words (document-level
    presence) of positive-side responses are contrasted with the negative-side ones by their
    smoothed log-odds ratio; the ``n_terms`` most distinctive name the latent ("more: sorry /
    cannot", "less: sure"). ``label_score`` is the balanced accuracy with which those words tell
    the sign of ``z_j`` on the next ``top`` pairs by ``|z_j|`` (NaN with fewer than 3 pairs of
    either sign there); ``examples`` is a JSON list of up to 3 "+ positive | − negative" snippets;
    ``n_pairs`` counts the pairs where the latent is active."""
    z = np.asarray(z)
    if z.ndim != 2 or len(texts_a) != len(z) or len(texts_b) != len(z):
        raise InputError(
            f"labelling pair latents: codes have shape {z.shape} but there are {len(texts_a)} A "
            f"and {len(texts_b)} B responses; pass one code row per pair, in the same order"
        )
    words = _Words(list(texts_a), list(texts_b))
    rows = []
    for j in range(z.shape[1]):
        col = z[:, j]
        active = np.flatnonzero(col != 0)
        order = active[np.argsort(-np.abs(col[active]), kind="stable")]
        label_pairs, held_pairs = order[:top], order[top : 2 * top]
        row = {"feature": j, "label": None, "description": None, "label_score": math.nan}
        row.update(n_pairs=len(active), examples="[]")
        if len(label_pairs):
            signs = np.sign(col[label_pairs])
            pos = [words.of(int(p), bool(s > 0)) for p, s in zip(label_pairs, signs, strict=True)]
            neg = [words.of(int(p), bool(s < 0)) for p, s in zip(label_pairs, signs, strict=True)]
            terms = _choose_terms(pos, neg, n_terms)
            if terms:
                row["label"], row["description"] = _describe(terms, len(label_pairs))
                row["label_score"] = _sign_accuracy(
                    words, held_pairs, np.sign(col[held_pairs]), terms
                )
            examples = _examples(texts_a, texts_b, label_pairs, signs)
            row["examples"] = json.dumps(examples, ensure_ascii=False)
        rows.append(row)
    schema = {
        "feature": pl.Int64,
        "label": pl.Utf8,
        "description": pl.Utf8,
        "label_score": pl.Float64,
        "n_pairs": pl.Int64,
        "examples": pl.Utf8,
    }
    return pl.DataFrame(rows, schema=schema)
