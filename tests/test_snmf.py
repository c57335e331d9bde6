"""Semi-NMF dictionaries: coding, fitting (recovery, resume after kill -9), sites in a real
forward pass, and a real fit on the default reader used for a diff."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from saeembed.sae import SAE, SAEConfig, load_sae
from saeembed.sae.snmf import gram, solve
from saeembed.train.activations import save_activations
from saeembed.train.snmf import SNMFConfig, fit_snmf, keep_strongest
from tests.fakes import WORDS


def planted(n: int = 20_000, K: int = 8, d: int = 16, offset: float = 0.3, seed: int = 0):
    """Activations ``Y Z + offset``: every token uses 2 of K unit features with weights in
    [0.5, 2], plus a little noise."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(K, d))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    Y = np.zeros((n, K))
    for i in range(n):
        Y[i, rng.choice(K, 2, replace=False)] = rng.uniform(0.5, 2.0, 2)
    A = Y @ Z + offset + 0.01 * rng.normal(size=(n, d))
    return A.astype(np.float32), Z


def small_config(**changes) -> SNMFConfig:
    base = dict(latents=16, k=2, steps=20, neuron_share=1.0, batch_size=1000, epochs=10,
                dead_tokens=20_000, max_norm_ratio=None, checkpoint_every=5, log_every=50)  # fmt: skip
    return SNMFConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def planted_dir(tmp_path_factory):
    A, Z = planted()
    directory = tmp_path_factory.mktemp("planted")
    save_activations(directory, A[:18_000], A[18_000:], model="toy", layer=0)
    return directory, Z


def test_coding_finds_planted_codes_with_the_true_dictionary():
    rng = np.random.default_rng(1)
    K, d, n = 8, 16, 5000
    Z = torch.tensor(rng.normal(size=(K, d)), dtype=torch.float32)
    Z /= Z.norm(dim=1, keepdim=True)
    Y = torch.zeros(n, K)
    for i in range(n):
        Y[i, rng.choice(K, 2, replace=False)] = torch.tensor(rng.uniform(0.5, 2.0, 2)).float()
    x = Y @ Z
    g, lipschitz = gram(Z)
    values, index = solve(x @ Z.T, 2, 32, g, lipschitz)
    codes = torch.zeros(n, K).scatter_(1, index, values)
    assert bool((values >= 0).all()) and values.shape == (n, 2)
    # exact codes for nearly every token (a wrong support would leave a large error)
    assert float((x - codes @ Z).pow(2).sum() / x.pow(2).sum()) < 1e-3
    assert float((codes - Y).abs().max(1).values.lt(1e-2).float().mean()) > 0.97


def test_fit_recovers_a_planted_nonnegative_factorisation(planted_dir, tmp_path):
    directory, true_Z = planted_dir
    sae = fit_snmf(small_config(), directory, tmp_path / "fit", resume=False)
    learned = sae.W_dec.numpy()
    learned = learned / np.maximum(np.linalg.norm(learned, axis=1, keepdims=True), 1e-12)
    # every planted feature is one learned feature (up to permutation and scale)
    assert (true_Z @ learned.T).max(1).min() > 0.98
    fit = sae.cfg.extra["fit"]
    assert fit["explained_variance"] > 0.95 and fit["l0"] <= 2
    assert sae.cfg.activation == "snmf" and sae.cfg.site == "resid"  # save_activations names none


def test_encoding_gives_the_fit_s_own_codes(planted_dir, tmp_path):
    directory, _ = planted_dir
    sae = fit_snmf(small_config(epochs=2), directory, tmp_path / "fit", resume=False)
    reloaded = load_sae(tmp_path / "fit")
    assert reloaded.content_hash() == sae.content_hash()
    x = torch.from_numpy(planted()[0][:500])
    scaled = x * sae.cfg.input_scale
    g, lipschitz = gram(sae.W_dec)
    values, index = solve((scaled - sae.b_dec) @ sae.W_dec.T, 2, 20, g, lipschitz)
    expected = torch.zeros(500, 16).scatter_(1, index, values)
    assert torch.allclose(reloaded.encode(x), expected, atol=1e-5)
    # the decoder undoes the input scale: the reconstruction is in the activations' units
    fvu = float((x - reloaded.reconstruct(x)).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert fvu < 0.1


def test_features_keep_their_strongest_neurons():
    Z = torch.tensor([[0.1, -3.0, 0.2, 2.0], [1.0, 0.0, -0.5, 0.25]])
    assert keep_strongest(Z.clone(), 0.5).tolist() == [[0.0, -3.0, 0.0, 2.0], [1.0, 0.0, -0.5, 0.0]]
    config = SNMFConfig(latents=4, k=1, neuron_share=0.25)
    assert config.neuron_share == 0.25
    with pytest.raises(Exception, match="neuron_share"):
        SNMFConfig(neuron_share=0)
    with pytest.raises(Exception, match="1 <= k <= latents"):
        SNMFConfig(latents=4, k=5)


KILL_AT = 7  # batches; the last checkpoint before it is at batch 5


def test_kill_9_mid_fit_then_resume_matches_an_uninterrupted_fit(planted_dir, tmp_path):
    directory, _ = planted_dir
    config = small_config(epochs=1)
    whole = fit_snmf(config, directory, tmp_path / "whole", resume=False)
    script = f"""
import os, signal
from saeembed.train.snmf import SNMFConfig, fit_snmf
config = SNMFConfig(**{config.__dict__!r})
def on_batch(i):
    if i == {KILL_AT}:
        os.kill(os.getpid(), signal.SIGKILL)
fit_snmf(config, {str(directory)!r}, {str(tmp_path / "killed")!r}, on_batch=on_batch)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()[-2000:]
    assert (tmp_path / "killed" / "snmf-checkpoint.pt").exists()
    assert not (tmp_path / "killed" / "cfg.json").exists()
    resumed = fit_snmf(config, directory, tmp_path / "killed")
    assert torch.equal(resumed.W_dec, whole.W_dec) and torch.equal(resumed.b_dec, whole.b_dec)
    with pytest.raises(Exception, match="other k"):
        fit_snmf(small_config(epochs=1, k=3), directory, tmp_path / "killed")


def test_sites_read_the_mlp_where_the_model_computes_it(tiny_model):
    from saeembed.reader import load_reader

    reader = load_reader(str(tiny_model), device="cpu", dtype="float32")
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    seen = {}
    block = reader.layers[1]
    hooks = [
        block.post_attention_layernorm.register_forward_hook(
            lambda _m, _i, out: seen.__setitem__("mlp_in", out)
        ),
        block.mlp.down_proj.register_forward_hook(
            lambda _m, inputs, _o: seen.__setitem__("mlp_hidden", inputs[0])
        ),
        block.mlp.register_forward_hook(lambda _m, _i, out: seen.__setitem__("mlp_out", out)),
    ]
    with torch.no_grad():
        reader.model(input_ids=ids)
    for h in hooks:
        h.remove()
    for site in ("mlp_in", "mlp_hidden", "mlp_out"):
        assert torch.equal(reader.site_activations(ids, None, 1, site), seen[site]), site
    assert reader.site_width("mlp_hidden") == 32 and reader.site_width("mlp_in") == 16


def exact_snmf(width: int, layer: int) -> SAE:
    """A semi-NMF of the MLP's hidden activations that reconstructs every vector exactly: the
    features ±e_i, k = width (each coordinate's magnitude on the feature of its sign)."""
    Z = torch.cat([torch.eye(width), -torch.eye(width)])
    cfg = SAEConfig(d_in=width, d_sae=2 * width, activation="snmf", k=width, layer=layer,
                    site="mlp_hidden", extra={"coding": {"steps": 0}})  # fmt: skip
    zeros = torch.zeros(2 * width)
    return SAE(cfg, {"W_enc": Z.T.contiguous(), "b_enc": zeros, "W_dec": Z,
                     "b_dec": torch.zeros(width)})  # fmt: skip


def test_an_exact_mlp_dictionary_recovers_all_the_loss(tiny_model):
    from saeembed.reader import load_reader
    from saeembed.train.evaluate import evaluate_sae

    reader = load_reader(str(tiny_model), device="cpu", dtype="float32")
    sae = exact_snmf(32, 1)
    texts = [" ".join(WORDS[i : i + 6]) for i in range(0, 24, 6)]
    figures = evaluate_sae(sae, reader, 1, texts, max_norm_ratio=None)
    assert figures["fvu"] < 1e-10
    assert figures["loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    # a dictionary of half the coordinates does not
    half = exact_snmf(32, 1)
    half.W_dec.data[16:32] = 0.0
    half.W_dec.data[48:] = 0.0
    assert evaluate_sae(half, reader, 1, texts, max_norm_ratio=None)["loss_recovered"] < 0.99


@pytest.mark.slow
def test_a_real_semi_nmf_fitted_to_reviews_diffs_two_corpora(saeembed_home, tmp_path):
    """The default reader, its MLP at layer 15, 200 film reviews and plots: fit, encode, diff."""
    import polars as pl

    from saeembed.data import load_dataset

    frame = load_dataset("rotten-tomatoes")
    reviews = frame.filter(pl.col("category") != "plot").sample(150, seed=3)
    plots = frame.filter(pl.col("category") == "plot").sample(150, seed=3)
    for name, part in (("reviews", reviews), ("plots", plots)):
        part.select("text").write_parquet(tmp_path / f"{name}.parquet")
    env = {**os.environ, "SAEEMBED_CPU_BF16": "0"}
    cli = [sys.executable, "-m", "saeembed"]
    fit = subprocess.run(
        [*cli, "sae", "train", str(tmp_path / "snmf"), "--kind", "snmf", "--latents", "256",
         "--source", str(tmp_path / "reviews.parquet"), "--source",
         str(tmp_path / "plots.parquet"), "--max-tokens", "64", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    figures = json.loads(fit.stdout)
    assert figures["kind"] == "snmf" and figures["site"] == "mlp_hidden"
    assert 0 < figures["fvu"] < 1 and 0 < figures["loss_recovered"] <= 1
    sae = load_sae(tmp_path / "snmf")
    assert (sae.cfg.site, sae.cfg.layer, sae.cfg.d_in) == ("mlp_hidden", 15, 1536)
    diff = subprocess.run(
        [*cli, "diff", str(tmp_path / "reviews.parquet"), str(tmp_path / "plots.parquet"),
         "--db", str(tmp_path / "s.duckdb"), "--sae", str(tmp_path / "snmf"),
         "--max-tokens", "64", "--format", "json"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert diff.returncode == 0, diff.stderr[-3000:]
    rows = json.loads(diff.stdout)
    significant = [r for r in rows if r["q"] < 0.05]
    assert len(significant) >= 10
    # the concepts are named from these documents (a fitted dictionary ships no names)
    assert all(r["label"] for r in significant[:10])


@pytest.mark.parametrize(
    ("kind", "site", "output_site"),
    [("snmf", "mlp_hidden", None), ("transcoder", "mlp_in", "mlp_out"), ("sae", "resid", None)],
)
def test_the_recipe_fits_each_kind_at_its_site(tiny_model, tmp_path, kind, site, output_site):
    """`saeembed sae train --kind K` on the tiny model: collected at the kind's site, fitted,
    evaluated (FVU against what it reconstructs, loss recovered spliced at its site), saved."""
    from saeembed.train import TrainConfig
    from saeembed.train.recipe import SourceSpec, train_from_sources

    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, 12)) for _ in range(400)]
    source = tmp_path / "texts.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    if kind == "snmf":
        config = SNMFConfig(latents=24, k=4, batch_size=256, device="cpu", neuron_share=0.5)
    else:
        config = TrainConfig(d_sae=24, k=4, steps=30, batch_size=256, device="cpu")
    figures = train_from_sources(
        tmp_path / "out", [SourceSpec.parse(str(source))], config=config, model=str(tiny_model),
        layer=1, max_tokens=32, passages=None, eval_docs=30, device="cpu", kind=kind,
    )  # fmt: skip
    assert (figures["kind"], figures["site"]) == (kind, site)
    assert 0 < figures["fvu"] < 1.5 and figures["loss_recovered"] is not None
    sae = load_sae(tmp_path / "out")
    assert (sae.cfg.site, sae.cfg.output_site, sae.cfg.layer) == (site, output_site, 1)
    assert sae.cfg.d_in == (32 if site == "mlp_hidden" else 16)
    # an encoder like any other: the store records its kind and site, and concepts are stored
    from saeembed.api import EncodingOptions, encode, open_store

    options = EncodingOptions(model=str(tiny_model), sae=str(tmp_path / "out"), device="cpu")
    encode(texts[:60], tmp_path / "s.duckdb", corpus="c", encoding=options)
    with open_store(tmp_path / "s.duckdb") as store:
        row = store.sql("SELECT kind, site, activation FROM encoders").row(0)
        n = store.sql("SELECT count(DISTINCT doc_id) AS n FROM activations")["n"][0]
    shown = site if output_site is None else f"{site}->{output_site}"
    assert row == (kind, shown, "snmf" if kind == "snmf" else "topk") and n == 60
    with pytest.raises(Exception, match="fitted with a SNMFConfig"):
        train_from_sources(tmp_path / "x", [], config=TrainConfig(), kind="snmf")


def test_compare_puts_dictionaries_side_by_side(tiny_model, tmp_path):
    from saeembed.train.compare import compare_dictionaries

    exact = exact_snmf(32, 1)
    exact.save(tmp_path / "exact")
    half = exact_snmf(32, 1)
    half.W_dec.data[16:32] = 0.0
    half.W_dec.data[48:] = 0.0
    half.save(tmp_path / "half")
    texts = [" ".join(WORDS[i : i + 6]) for i in range(0, 24, 6)]
    table = compare_dictionaries(
        [str(tmp_path / "exact"), str(tmp_path / "half")], texts, model=str(tiny_model),
        device="cpu",
    )  # fmt: skip
    assert table["kind"].to_list() == ["snmf", "snmf"]
    assert table["site"].to_list() == ["mlp_hidden", "mlp_hidden"]
    fvu, recovered = table["fvu"].to_list(), table["loss_recovered"].to_list()
    assert fvu[0] < 1e-10 < fvu[1]
    assert recovered[0] == pytest.approx(1.0, abs=1e-5) and recovered[1] < 0.99
    assert (table["tokens_per_s"] > 0).all()
    with pytest.raises(Exception, match="at least 2 non-empty texts"):
        compare_dictionaries([None], ["one"], model=str(tiny_model))


def test_a_fitted_dictionary_is_found_again_from_the_store(planted_dir, tmp_path):
    """A store's encoder records where its dictionary is, so reports can reload it."""
    from saeembed.encoding.stack_cache import stored_sae
    from saeembed.store import Encoder

    directory, _ = planted_dir
    fit_snmf(small_config(epochs=1), directory, tmp_path / "fit", resume=False)
    sae = load_sae(tmp_path / "fit")
    assert sae.cfg.source == f"saeembed:{(tmp_path / 'fit').resolve()}"
    encoder = Encoder(1, "e", "f", "toy", 0, sae.cfg.source, sae.content_hash(), 16, 64, "none")
    assert stored_sae(encoder).content_hash() == sae.content_hash()
