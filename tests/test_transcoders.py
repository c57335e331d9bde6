"""Transcoders: SAELens and sparsify transcoder files load as SAEs from an MLP's input to its
output (encoding and reconstruction as each library's own forward pass, the site from the hooks,
refusals of hooks that are not one MLP's), a skip connection is stored and hashed, a transcoder
spliced into the tiny model reproduces a linear MLP exactly, collection with a target site writes
the MLP's output aligned with its input, and a tiny transcoder trains, resumes exactly and is
evaluated against the MLP's output."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from saeembed.errors import SaeembedError, SAEError
from saeembed.reader import load_reader
from saeembed.sae import SAE, SAEConfig, load_sae
from saeembed.sites import hook_site
from saeembed.train import (
    ActivationLoader,
    TrainConfig,
    collect_activations,
    evaluate_sae,
    loss_recovered,
    train_sae,
)
from saeembed.train.loader import iter_split
from tests.fakes import WORDS

D, D_SAE, K = 8, 24, 4
LAYER = 1


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rand(*shape: int, seed: int, scale: float = 0.5) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 20))) + " ." for _ in range(n)]


# ---- SAELens --------------------------------------------------------------------------------
def saelens_transcoder(directory: Path, architecture: str, **cfg_overrides) -> dict:
    """Write a SAELens 6 transcoder directory; return its tensors (SAELens's names and layout)."""
    w = {
        "W_enc": rand(D, D_SAE, seed=1),
        "b_enc": rand(D_SAE, seed=2, scale=0.2),
        "W_dec": rand(D_SAE, D, seed=3),
        "b_dec": rand(D, seed=4),
    }
    if "jumprelu" in architecture:
        w["threshold"] = rand(D_SAE, seed=5).abs()
    if "skip" in architecture:
        w["W_skip"] = rand(D, D, seed=6)  # [d_out, d_in]
    cfg = {
        "architecture": architecture,
        "d_in": D,
        "d_sae": D_SAE,
        "d_out": D,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "metadata": {
            "model_name": "tiny",
            "hook_name": "blocks.3.ln2.hook_normalized",
            "hook_name_out": "blocks.3.hook_mlp_out",
        },
    }
    for key, value in cfg_overrides.items():
        (cfg["metadata"] if key.startswith("hook_name") else cfg)[key] = value
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in w.items()}, str(directory / "sae_weights.safetensors"))
    return w


def saelens_forward(w: dict, x: torch.Tensor, jumprelu: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """SAELens's transcoder written out from its definition: no b_dec on the input; the skip
    adds x @ W_skip.T."""
    pre = x @ w["W_enc"] + w["b_enc"]
    acts = torch.relu(pre) * ((pre > w["threshold"]).float() if jumprelu else 1.0)
    out = acts @ w["W_dec"] + w["b_dec"]
    if "W_skip" in w:
        out = out + x @ w["W_skip"].T
    return acts, out


@pytest.mark.parametrize(
    "architecture",
    ["transcoder", "jumprelu_transcoder", "skip_transcoder", "jumprelu_skip_transcoder"],
)
def test_saelens_transcoders_load_as_their_forward_pass(tmp_path, architecture):
    w = saelens_transcoder(tmp_path / "tc", architecture)
    sae = load_sae(tmp_path / "tc")
    cfg = sae.cfg
    assert (cfg.layer, cfg.site, cfg.output_site) == (3, "mlp_in", "mlp_out")
    assert cfg.skip == ("skip" in architecture)
    assert cfg.activation == ("jumprelu" if "jumprelu" in architecture else "relu")
    assert cfg.extra["hook_name"] == "blocks.3.ln2.hook_normalized"
    assert cfg.extra["hook_name_out"] == "blocks.3.hook_mlp_out"
    x = rand(64, D, seed=7, scale=1.0)
    acts, out = saelens_forward(w, x, "jumprelu" in architecture)
    assert (acts > 0).sum() > 20 and (acts == 0).sum() > 20  # the test sees both sides
    assert torch.allclose(sae.encode(x), acts, atol=1e-5)
    assert torch.allclose(sae.reconstruct(x), out, atol=1e-5)
    # a round trip through saeembed's own format keeps W_skip and the hash
    again = SAE.load(sae.save(tmp_path / "native"))
    assert again.content_hash() == sae.content_hash()
    assert torch.allclose(again.reconstruct(x), out, atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hook_name": "blocks.3.hook_resid_post"}, "not an MLP's input"),
        ({"hook_name_out": "blocks.3.hook_resid_post"}, "not an MLP's output"),
        ({"hook_name_out": "blocks.4.hook_mlp_out"}, "layer 3's MLP input .* layer 4's"),
        ({"hook_name_out": None}, "names no output hook"),
        ({"d_out": 2 * D}, "from width 8 to width 16"),
        ({"normalize_activations": "expected_average_only_in"}, "rescales only its input"),
    ],
)
def test_saelens_transcoder_refusals(tmp_path, overrides, message):
    saelens_transcoder(tmp_path / "tc", "transcoder", **overrides)
    with pytest.raises(SAEError, match=message):
        load_sae(tmp_path / "tc")


def test_saelens_cross_layer_transcoder_is_refused(tmp_path):
    saelens_transcoder(tmp_path / "tc", "clt")
    with pytest.raises(SAEError, match="cross-layer"):
        load_sae(tmp_path / "tc")


# ---- sparsify -------------------------------------------------------------------------------
def sparsify_transcoder(directory: Path, skip: bool) -> dict:
    t = {
        "encoder.weight": rand(D_SAE, D, seed=11),
        "encoder.bias": rand(D_SAE, seed=12, scale=0.2),
        "W_dec": rand(D_SAE, D, seed=13),
        "b_dec": rand(D, seed=14),
    }
    if skip:
        t["W_skip"] = rand(D, D, seed=15)
    cfg = {"activation": "topk", "num_latents": D_SAE, "k": K, "d_in": D, "transcode": True}
    cfg["skip_connection"] = skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in t.items()}, str(directory / "sae.safetensors"))
    return t


def sparsify_forward(t: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sparsify's transcoder: relu(x @ encoder.weight.T + bias) (no b_dec), top-k, decode,
    plus x @ W_skip.T."""
    pre = torch.relu(x @ t["encoder.weight"].T + t["encoder.bias"])
    values, idx = pre.topk(K, dim=-1)
    acts = torch.zeros_like(pre).scatter(-1, idx, values)
    out = acts @ t["W_dec"] + t["b_dec"]
    if "W_skip" in t:
        out = out + x @ t["W_skip"].T
    return acts, out


@pytest.mark.parametrize("skip", [False, True])
def test_sparsify_transcoders_load_as_their_forward_pass(tmp_path, skip):
    t = sparsify_transcoder(tmp_path / "layers.5.mlp", skip)
    sae = load_sae(tmp_path / "layers.5.mlp")
    assert (sae.cfg.layer, sae.cfg.site, sae.cfg.output_site) == (5, "mlp_in", "mlp_out")
    assert sae.cfg.skip == skip and sae.cfg.extra["hookpoint"] == "layers.5.mlp"
    x = rand(64, D, seed=16, scale=1.0)
    acts, out = sparsify_forward(t, x)
    assert torch.allclose(sae.encode(x), acts, atol=1e-5)
    assert torch.allclose(sae.reconstruct(x), out, atol=1e-5)


@pytest.mark.parametrize(
    ("folder", "message"),
    [("layers.5", "not an MLP's input"), ("layers.5.mlp.down_proj", "not an MLP's input")],
)
def test_sparsify_transcoder_refusals(tmp_path, folder, message):
    sparsify_transcoder(tmp_path / folder, skip=True)
    with pytest.raises(SAEError, match=message):
        load_sae(tmp_path / folder)


def test_skip_changes_the_hash_only_when_present():
    cfg = dict(d_in=D, d_sae=D_SAE, activation="relu", site="mlp_in", output_site="mlp_out")
    weights = {"W_enc": rand(D, D_SAE, seed=1), "b_enc": rand(D_SAE, seed=2)}
    weights.update(W_dec=rand(D_SAE, D, seed=3), b_dec=rand(D, seed=4))
    plain = SAE(SAEConfig(**cfg), weights)
    zero_skip = SAE(SAEConfig(**cfg, skip=True), {**weights, "W_skip": torch.zeros(D, D)})
    x = rand(16, D, seed=5, scale=1.0)
    assert torch.equal(plain.reconstruct(x), zero_skip.reconstruct(x))
    assert torch.equal(plain.encode(x), zero_skip.encode(x))
    assert plain.content_hash() != zero_skip.content_hash()
    with pytest.raises(SAEError, match="W_skip"):
        SAE(SAEConfig(**cfg, skip=True), weights)


# ---- on the tiny model ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reader(tiny_model):
    return load_reader(str(tiny_model), device="cpu")


@pytest.fixture
def linear_reader(tiny_model):
    """The tiny model with layer LAYER's MLP replaced by a linear map (bias-free)."""
    r = load_reader(str(tiny_model), device="cpu")
    d = r.d_model
    mlp = torch.nn.Linear(d, d, bias=False)
    mlp.weight.data = rand(d, d, seed=30, scale=0.3)
    r.layers[LAYER].mlp = mlp
    return r


def skip_only(weight: torch.Tensor, layer: int = LAYER) -> SAE:
    """A transcoder whose latents never fire and whose skip connection is ``x @ weight.T``."""
    d = weight.shape[0]
    cfg = SAEConfig(d_in=d, d_sae=4, activation="relu", layer=layer, skip=True)
    cfg.site, cfg.output_site = "mlp_in", "mlp_out"
    weights = {"W_enc": torch.zeros(d, 4), "b_enc": -torch.ones(4), "W_dec": torch.ones(4, d)}
    weights.update(b_dec=torch.zeros(d), W_skip=weight.T.clone())
    return SAE(cfg, weights)


def test_spliced_skip_transcoder_reproduces_a_linear_mlp(linear_reader):
    sample = texts(12, seed=3)
    exact = skip_only(linear_reader.layers[LAYER].mlp.weight.data)
    result = evaluate_sae(exact, linear_reader, texts=sample, pooled_only=False)
    assert result["loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert result["ce_sae"] == pytest.approx(result["ce_clean"], rel=1e-5)
    assert result["fvu"] == pytest.approx(0.0, abs=1e-9) and result["l0"] == 0
    # the same skip the wrong way round (or another layer's) does not
    wrong = skip_only(linear_reader.layers[LAYER].mlp.weight.data.T)
    assert evaluate_sae(wrong, linear_reader, texts=sample)["fvu"] > 0.1
    elsewhere = skip_only(linear_reader.layers[LAYER].mlp.weight.data, layer=0)
    assert evaluate_sae(elsewhere, linear_reader, texts=sample)["loss_recovered"] < 0.99


def test_loss_recovered_splices_the_mlp_output(reader):
    """Replacing the MLP's output by the MLP of its input is exact; by zero it is not."""
    mlp = reader.layers[LAYER].mlp
    sample = texts(10, seed=4)
    site = ("mlp_in", "mlp_out")
    exact = loss_recovered(reader, LAYER, sample, lambda x: mlp.forward(x), site=site)
    assert exact["loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    off = loss_recovered(reader, LAYER, sample, lambda x: 0.5 * mlp.forward(x), site=site)
    assert off["loss_recovered"] < 0.999 and off["ce_zero"] != pytest.approx(off["ce_clean"])


def collect(reader, directory, n=120, **kw):
    kw = {"max_tokens": 24, "shard_tokens": 400, "progress": False, **kw}
    return collect_activations(
        reader, texts(n), LAYER, directory, site="mlp_in", target_site="mlp_out", **kw
    )


def test_collection_with_a_target_writes_aligned_mlp_outputs(reader, tmp_path):
    manifest = collect(reader, tmp_path, val_every=4)
    assert manifest["site"] == "mlp_in" and manifest["target_site"] == "mlp_out"
    assert manifest["d_target"] == manifest["d_model"] == reader.d_model
    mlp = reader.layers[LAYER].mlp
    for shard in manifest["shards"]:
        for split, target in (("train", "target"), ("val", "valtarget")):
            x = np.load(tmp_path / shard[split]).astype(np.float32)
            y = np.load(tmp_path / shard[target]).astype(np.float32)
            assert x.shape == y.shape and len(x) == shard[f"{split}_tokens"]
            with torch.no_grad():
                direct = mlp(torch.from_numpy(x)).numpy()
            assert np.allclose(y, direct, atol=2e-2, rtol=2e-2), (shard["index"], split)
    assert manifest["val_tokens"] > 0
    # the loader permutes inputs and targets together
    loader = ActivationLoader(tmp_path, 50, seed=1, buffer_tokens=200)
    for (x, y), _ in zip(loader, range(4), strict=False):
        with torch.no_grad():
            assert torch.allclose(y, mlp(x), atol=2e-2, rtol=2e-2)
    pairs = list(iter_split(tmp_path, "val", batch_size=64))
    assert all(isinstance(p, tuple) and p[0].shape == p[1].shape for p in pairs)


def test_loader_permutation_is_the_same_with_or_without_targets(reader, tmp_path):
    collect(reader, tmp_path)
    with_targets = ActivationLoader(tmp_path, 40, seed=2, buffer_tokens=300)
    plain = ActivationLoader(tmp_path, 40, seed=2, buffer_tokens=300)
    plain.has_target = False
    for (x, _), x_plain, _ in zip(with_targets, plain, range(6), strict=False):
        assert torch.equal(x, x_plain)


def train_config(**kw) -> TrainConfig:
    base = dict(d_sae=64, k=4, steps=60, batch_size=64, log_every=5, checkpoint_every=30)
    base.update(buffer_tokens=512, aux_k=8, dead_after_tokens=256, median_tokens=512, lr=1e-2)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def transcoder_acts(reader, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tc-acts")
    collect(reader, directory, n=160, val_every=5)
    return directory


def test_a_tiny_transcoder_trains_resumes_and_evaluates(reader, transcoder_acts, tmp_path):
    config = train_config()
    result = train_sae(config, transcoder_acts, tmp_path / "straight")
    sae = SAE.load(tmp_path / "straight")
    assert (sae.cfg.site, sae.cfg.output_site, sae.cfg.layer) == ("mlp_in", "mlp_out", LAYER)
    rows = [
        json.loads(r) for r in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    ]
    assert rows[-1]["fvu"] < rows[0]["fvu"]
    val = result.summary["val"]
    assert val["fvu"] < 0.6 and val["l0"] <= K  # measured: 0.38
    # the val FVU is against the MLP output: recompute it by hand from the shards
    err = tot = 0.0
    parts = list(iter_split(transcoder_acts, "val"))
    y_all = torch.cat([y for _, y in parts]).double()
    for x, y in parts:
        err += float((sae.reconstruct(x) - y).double().pow(2).sum())
    tot = float((y_all - y_all.mean(0)).pow(2).sum())
    assert val["fvu"] == pytest.approx(err / tot, rel=1e-4)
    # the same figure from texts, one forward pass reading the MLP's input and output
    on_texts = evaluate_sae(sae, reader, texts=texts(30, seed=9), with_loss=False)
    assert 0 < on_texts["fvu"] < 0.8
    assert evaluate_sae(sae, activations_dir=transcoder_acts)["fvu"] == pytest.approx(val["fvu"])

    def stop(step):
        if step == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_sae(config, transcoder_acts, tmp_path / "resumed", on_step=stop)
    train_sae(config, transcoder_acts, tmp_path / "resumed")
    a, b = SAE.load(tmp_path / "straight"), SAE.load(tmp_path / "resumed")
    for name, tensor in a.canonical_state().items():
        assert torch.equal(tensor, b.canonical_state()[name]), name


def test_a_transcoder_needs_target_shards_to_be_evaluated(reader, tmp_path):
    collect_activations(
        reader, texts(40), LAYER, tmp_path, site="mlp_in", max_tokens=16, progress=False
    )
    sae = skip_only(torch.eye(reader.d_model))
    with pytest.raises(SaeembedError, match="target_site='mlp_out'"):
        evaluate_sae(sae, activations_dir=tmp_path)


def test_hook_site_transcodes_into_the_mlp_output(reader):
    """hook_site's transcoder hook hands over the MLP's input and replaces its output."""
    block, seen = reader.layers[LAYER], {}

    def fn(x, target):
        seen["in"], seen["out"] = x, target
        return torch.zeros_like(target)

    handle = hook_site(block, "mlp_in", fn, output_site="mlp_out")
    try:
        with torch.no_grad():
            out = block.mlp(torch.ones(1, 2, reader.d_model))
    finally:
        handle.remove()
    assert torch.equal(out, torch.zeros(1, 2, reader.d_model))
    assert torch.equal(seen["in"], torch.ones(1, 2, reader.d_model))
