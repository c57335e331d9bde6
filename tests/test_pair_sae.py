"""The pair SAE (`saeembed.prefs.pair_sae`): oddness, recovery of planted signed directions,
Matryoshka ordering, determinism and serialisation, offline labels, bad inputs."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from saeembed.errors import InputError
from saeembed.prefs.pair_sae import (
    LABEL_COLUMNS,
    PairSAE,
    PairSAEConfig,
    encode_pairs,
    fvu,
    label_pair_latents,
    train_pair_sae,
)

D = 32


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def planted(n, dirs, seed, *, active=(1, 2), p=None, magnitude=(0.5, 2.0)):
    """Differences that are sums of ``active`` planted directions, each with a random sign and
    magnitude, plus a little noise."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, dirs.shape[1]), dtype=np.float32)
    for row in x:
        for j in rng.choice(len(dirs), rng.integers(active[0], active[1] + 1), replace=False, p=p):
            row += rng.choice([-1.0, 1.0]) * rng.uniform(*magnitude) * dirs[j]
    return x + 0.01 * rng.standard_normal(x.shape).astype(np.float32)


def orthonormal_directions(n, d, seed):
    """``n`` random orthonormal directions (a Haar-random frame) in ``d`` dimensions."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, n)))
    return q.T.astype(np.float32)


def best_cosines(dirs, sae):
    W = sae.W_dec.detach().numpy()
    return np.abs(dirs @ W.T).max(axis=1)


def subset_fvu(sae, x, latents):
    """FVU of the reconstruction from only the given latents."""
    z = encode_pairs(sae, x)[:, latents]
    recon = z @ sae.W_dec.detach().numpy()[latents] * float(sae.scale)
    return float(((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


@pytest.fixture(scope="module")
def recovered():
    """A Matryoshka pair SAE trained on pairs made of 1-3 of 8 planted orthonormal directions
    (2 on average, = k). Trained on one torch thread; the suite's thread count is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dirs = orthonormal_directions(8, D, seed=1)
        x = planted(1500, dirs, seed=2, active=(1, 3))
        config = PairSAEConfig(d_in=D, n_latents=8, k=2, prefixes=(2, 4, 8), epochs=150)
        return dirs, x, train_pair_sae(x, config)
    finally:
        torch.set_num_threads(threads)


def test_matryoshka_sae_recovers_planted_signed_directions(recovered):
    dirs, x, sae = recovered
    assert best_cosines(dirs, sae).min() > 0.9
    assert sae.stats["fvu"] < 0.1
    fresh = planted(500, dirs, seed=3, active=(1, 3))
    assert fvu(sae, fresh) < 0.1
    active = (encode_pairs(sae, fresh) != 0).sum(axis=1)
    assert 1.0 <= active.mean() <= 3.0
    # the inference threshold is calibrated so that the training pairs average exactly k
    assert sae.stats["l0"] == pytest.approx(2.0, abs=0.01)
    # FVU falls as the prefixes grow
    assert sae.stats["fvu_by_prefix"] == sorted(sae.stats["fvu_by_prefix"], reverse=True)


def test_flat_sae_recovers_correlated_directions():
    """Without nested prefixes, planted directions need not be orthogonal (random unit vectors,
    |cosine| up to ~0.4 between them); with Matryoshka prefixes an early latent may deliberately
    absorb part of a correlated direction, so the recovery test above uses orthogonal ones."""
    rng = np.random.default_rng(5)
    dirs = rng.standard_normal((8, D)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    x = planted(1500, dirs, seed=6)
    config = PairSAEConfig(d_in=D, n_latents=8, k=1.5, prefixes=(8,), epochs=150)
    sae = train_pair_sae(x, config)
    assert best_cosines(dirs, sae).min() > 0.9
    assert sae.stats["fvu"] < 0.1


def test_code_is_odd_and_does_not_depend_on_the_batch(recovered):
    _, x, sae = recovered
    d = torch.from_numpy(x[:200])
    with torch.no_grad():
        z = sae.encode(d)
        assert torch.equal(sae.encode(-d), -z)
        for i in (0, 17, 199):
            alone = sae.encode(d[i : i + 1])[0]
            assert torch.equal(alone != 0, z[i] != 0)
            torch.testing.assert_close(alone, z[i], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(encode_pairs(sae, -x[:200]), -encode_pairs(sae, x[:200]))
    batched = encode_pairs(sae, x, batch_size=64)
    np.testing.assert_allclose(batched, encode_pairs(sae, x), rtol=1e-6, atol=1e-7)
    assert batched.dtype == np.float32 and batched.shape == (len(x), 8)


def test_first_prefix_holds_the_dominant_directions():
    """Two of eight directions carry most of the variance: the Matryoshka SAE keeps them in its
    first prefix, which then reconstructs better than any other two of its latents."""
    dirs = orthonormal_directions(8, D, seed=7)
    p = np.array([0.3, 0.3] + [0.4 / 6] * 6)
    x = planted(1500, dirs, seed=8, p=p)
    sae = train_pair_sae(x, PairSAEConfig(d_in=D, n_latents=8, k=1.5, prefixes=(2, 4, 8)))
    first = subset_fvu(sae, x, [0, 1])
    others = [subset_fvu(sae, x, list(s)) for s in itertools.combinations(range(2, 8), 2)]
    assert first < min(others) - 0.1
    assert first == pytest.approx(sae.stats["fvu_by_prefix"][0], abs=1e-4)
    W = sae.W_dec.detach().numpy()[:2]
    assert sorted(np.abs(W @ dirs.T).argmax(axis=1).tolist()) == [0, 1]


def test_matryoshka_loss_makes_the_first_latent_broad():
    """Every pair differs along a parent direction plus one of four children, with the same sign.
    The flat SAE learns the parent and the children exactly; the Matryoshka SAE with a first
    prefix of one latent makes that latent the best lone reconstruction (the parent leaning
    towards all the children), which reconstructs clearly better alone, at a small cost in
    full reconstruction."""
    dirs = orthonormal_directions(5, D, seed=20)  # 0: the parent, 1-4: the children
    rng = np.random.default_rng(30)
    n = 1500
    sign = rng.choice([-1.0, 1.0], (n, 1))
    child = dirs[rng.integers(1, 5, n)]
    x = sign * (rng.uniform(0.5, 2, (n, 1)) * dirs[0] + rng.uniform(0.5, 2, (n, 1)) * child)
    x = (x + 0.01 * rng.standard_normal((n, D))).astype(np.float32)
    base = dict(d_in=D, n_latents=5, k=2, epochs=150)
    nested = train_pair_sae(x, PairSAEConfig(**base, prefixes=(1, 5)))
    flat = train_pair_sae(x, PairSAEConfig(**base, prefixes=(5,)))
    assert subset_fvu(nested, x, [0]) < subset_fvu(flat, x, [0]) - 0.05
    assert flat.stats["fvu"] < nested.stats["fvu"] < 0.05
    broad = np.abs(nested.W_dec.detach().numpy()[0] @ dirs.T)
    assert broad[0] > 0.85 and (broad[1:] > 0.1).all()


def test_training_is_deterministic_and_round_trips_through_bytes():
    x = planted(300, orthonormal_directions(8, 16, seed=9), seed=10)
    config = PairSAEConfig(d_in=16, n_latents=8, k=2, prefixes=(4, 8), epochs=20)
    a, b = train_pair_sae(x, config), train_pair_sae(x, config)
    assert torch.equal(a.W_enc, b.W_enc) and torch.equal(a.W_dec, b.W_dec)
    assert a.to_bytes() == b.to_bytes() and a.content_hash() == b.content_hash()
    other = train_pair_sae(x, PairSAEConfig(d_in=16, n_latents=8, k=2, prefixes=(4, 8), seed=1))
    assert not torch.equal(a.W_dec, other.W_dec)

    loaded = PairSAE.from_bytes(a.to_bytes())
    assert loaded.config == config
    assert loaded.stats == a.stats
    assert float(loaded.threshold) == float(a.threshold) > 0
    assert loaded.content_hash() == a.content_hash()
    assert len(a.content_hash()) == 64
    np.testing.assert_array_equal(encode_pairs(loaded, x), encode_pairs(a, x))
    torch.testing.assert_close(torch.linalg.norm(a.W_dec, dim=1), torch.ones(8))


def _sorry_sure_pairs(n, seed, flip=0.1):
    """Pairs where latent 0's positive side says "sorry" and its other side "sure" (a share
    ``flip`` of pairs contradict that); latent 1 is active on 5 pairs; latent 2 never."""
    rng = np.random.default_rng(seed)
    filler = [
        "the",
        "a",
        "of",
        "to",
        "and",
        "in",
        "that",
        "it",
        "with",
        "as",
        "for",
        "was",
        "on",
        "be",
        "by",
        "this",
        "at",
    ]
    z = np.zeros((n, 3), dtype=np.float32)
    texts_a, texts_b = [], []
    for i in range(n):
        sign = rng.choice([-1.0, 1.0])
        z[i, 0] = sign * rng.uniform(0.1, 3.0)
        words = [" ".join(rng.choice(filler, 6)) for _ in range(4)]
        positive = f"{words[0]} sorry {words[1]}"
        negative = f"{words[2]} sure {words[3]}"
        if rng.random() < flip:
            positive, negative = negative, positive
        a, b = (positive, negative) if sign > 0 else (negative, positive)
        texts_a.append(a)
        texts_b.append(b)
    z[:5, 1] = 1.0
    return z, texts_a, texts_b


def test_labels_name_the_words_on_the_latents_positive_side():
    z, texts_a, texts_b = _sorry_sure_pairs(200, seed=11)
    table = label_pair_latents(z, texts_a, texts_b, top=50, n_terms=3)
    assert table.columns == LABEL_COLUMNS
    assert table["feature"].to_list() == [0, 1, 2]
    row = table.row(0, named=True)
    assert row["label"].startswith("more: sorry")
    assert "less: sure" in row["label"]
    assert "'sorry'" in row["description"] and "top 50 pairs" in row["description"]
    assert row["label_score"] >= 0.8
    assert row["n_pairs"] == 200
    examples = json.loads(row["examples"])
    assert len(examples) == 3
    assert all(e.startswith("+ ") and " | − " in e for e in examples)
    positive_sides = [e.split(" | − ")[0] for e in examples]
    assert sum("sorry" in e for e in positive_sides) >= 2

    rare = table.row(1, named=True)
    assert rare["n_pairs"] == 5 and np.isnan(rare["label_score"])  # too few pairs to score
    silent = table.row(2, named=True)
    assert silent["n_pairs"] == 0 and silent["label"] is None and silent["examples"] == "[]"

    # swapping A and B negates the codes and leaves the labels as they were
    swapped = label_pair_latents(-z, texts_b, texts_a, top=50, n_terms=3)
    assert swapped["label"].to_list() == table["label"].to_list()
    assert swapped["label_score"].to_list()[0] == pytest.approx(row["label_score"])


def test_bad_inputs_raise_one_line_input_errors(recovered):
    _, x, sae = recovered
    with pytest.raises(InputError, match=r"shape \(4, 31\).*\[n, 32\]") as wrong_dim:
        encode_pairs(sae, x[:4, :31])
    with pytest.raises(InputError):
        encode_pairs(sae, x[0])
    bad = x[:4].copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        encode_pairs(sae, bad)
    with pytest.raises(InputError, match="prefixes"):
        PairSAEConfig(d_in=D, n_latents=8, prefixes=(4, 16))
    with pytest.raises(InputError, match="k="):
        PairSAEConfig(d_in=D, n_latents=8, k=9, prefixes=(8,))
    with pytest.raises(InputError, match="one code row per pair"):
        label_pair_latents(np.zeros((3, 2)), ["a"] * 3, ["b"] * 2)
    with pytest.raises(InputError, match="not a saved pair SAE"):
        PairSAE.from_bytes(b"not safetensors at all")
    assert "\n" not in str(wrong_dim.value)
    assert issubclass(InputError, Exception)
