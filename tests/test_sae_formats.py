"""Loading SAEs from the formats people publish (saeembed.sae.formats).

Every test writes a tiny SAE (d_in=8, d_sae=32) in one format's on-disk layout, loads it with
`load_sae`, and checks the canonical encoder against a hand-written reference of the original
format's encoder. No network: Hub access is either refused offline or monkeypatched.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from saeembed.errors import SAEError
from saeembed.sae import SAE, SAEConfig, check_sae_fits, detect_format, load_sae
from saeembed.sae import formats as formats_module

D_IN, D_SAE = 8, 32


# ---- helpers --------------------------------------------------------------------------------
def rand(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


def inputs(seed: int = 123, n: int = 64) -> torch.Tensor:
    return rand(n, D_IN, seed=seed, scale=2.0)


def base_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """SAELens-style tensors: W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_in], b_dec."""
    return {
        "W_enc": rand(D_IN, D_SAE, seed=seed, scale=0.5),
        "b_enc": rand(D_SAE, seed=seed + 1, scale=0.3) - 0.3,
        "W_dec": rand(D_SAE, D_IN, seed=seed + 2, scale=0.5),
        "b_dec": rand(D_IN, seed=seed + 3, scale=0.5),
    }


def write_saelens(directory: Path, cfg: dict, tensors: dict[str, torch.Tensor]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cfg.json").write_text(json.dumps(cfg))
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(directory / "sae_weights.safetensors")
    )
    save_file({"sparsity": torch.zeros(D_SAE)}, str(directory / "sparsity.safetensors"))
    return directory


def saelens_cfg_v5(**overrides) -> dict:
    """A flat pre-6.0 SAELens cfg.json."""
    cfg = {
        "architecture": "standard",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "activation_fn_str": "relu",
        "apply_b_dec_to_input": True,
        "finetuning_scaling_factor": False,
        "context_size": 128,
        "model_name": "gpt2-small",
        "hook_name": "blocks.8.hook_resid_post",
        "hook_layer": 8,
        "hook_head_index": None,
        "prepend_bos": True,
        "dataset_path": "Skylion007/openwebtext",
        "normalize_activations": "none",
        "dtype": "float32",
        "device": "cpu",
        "sae_lens_training_version": "3.5.0",
        "neuronpedia_id": "gpt2-small/8-res-jb",
    }
    cfg.update(overrides)
    return cfg


def saelens_cfg_v6(architecture: str, **overrides) -> dict:
    """A SAELens >= 6 cfg.json: architecture at the top, hook and model under metadata."""
    cfg = {
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": "6.12.0",
            "sae_lens_training_version": "6.12.0",
            "model_name": "google/gemma-2-2b",
            "hook_name": "blocks.3.hook_resid_pre",
            "hook_head_index": None,
            "prepend_bos": True,
            "context_size": 1024,
        },
        "architecture": architecture,
    }
    cfg.update(overrides)
    return cfg


def saelens_reference(
    w: dict[str, torch.Tensor],
    x: torch.Tensor,
    *,
    kind: str,
    apply_b_dec: bool,
    scale: float = 1.0,
    k: int | None = None,
    rescale_by_decoder_norm: bool = False,
) -> torch.Tensor:
    """SAELens' encoder written out from its definition."""
    sae_in = x * scale - (w["b_dec"] if apply_b_dec else 0.0)
    if kind == "gated":
        gate = sae_in @ w["W_enc"] + w["b_gate"]
        mag = sae_in @ (w["W_enc"] * w["r_mag"].exp()) + w["b_mag"]
        return (gate > 0).to(x.dtype) * torch.relu(mag)
    pre = sae_in @ w["W_enc"] + w["b_enc"]
    if kind == "relu":
        return torch.relu(pre)
    if kind == "jumprelu":
        return torch.relu(pre) * (pre > w["threshold"]).to(x.dtype)
    if kind == "topk":
        if rescale_by_decoder_norm:
            pre = pre * w["W_dec"].norm(dim=-1)
        values, idx = torch.topk(pre, k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, idx, values.relu())
    raise AssertionError(kind)


def saelens_decode_reference(
    w, acts, *, scale: float = 1.0, rescale_by_decoder_norm: bool = False
) -> torch.Tensor:
    if rescale_by_decoder_norm:
        acts = acts / w["W_dec"].norm(dim=-1)
    return (acts @ w["W_dec"] + w["b_dec"]) / scale


def sparsify_tensors(seed: int = 10) -> dict[str, torch.Tensor]:
    return {
        "encoder.weight": rand(D_SAE, D_IN, seed=seed, scale=0.5),
        "encoder.bias": rand(D_SAE, seed=seed + 1, scale=0.3),
        "W_dec": rand(D_SAE, D_IN, seed=seed + 2, scale=0.5),
        "b_dec": rand(D_IN, seed=seed + 3, scale=0.5),
    }


def sparsify_cfg(**overrides) -> dict:
    cfg = {
        "activation": "topk",
        "expansion_factor": 4,
        "normalize_decoder": True,
        "num_latents": D_SAE,
        "k": 5,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": D_IN,
    }
    cfg.update(overrides)
    return cfg


def write_sparsify(directory: Path, cfg: dict, tensors: dict[str, torch.Tensor]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "sae.safetensors"))
    return directory


def sparsify_reference(t: dict[str, torch.Tensor], x: torch.Tensor, k: int) -> torch.Tensor:
    """sparsify: relu((x - b_dec) @ encoder.weight.T + encoder.bias), then top-k."""
    pre = torch.relu((x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
    values, idx = torch.topk(pre, k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, idx, values)


def goodfire_state(seed: int = 20) -> dict[str, torch.Tensor]:
    return {
        "encoder_linear.weight": rand(D_SAE, D_IN, seed=seed, scale=0.5),
        "encoder_linear.bias": rand(D_SAE, seed=seed + 1, scale=0.3) - 0.3,
        "decoder_linear.weight": rand(D_IN, D_SAE, seed=seed + 2, scale=0.5),
        "decoder_linear.bias": rand(D_IN, seed=seed + 3, scale=0.5),
    }


def goodfire_reference(s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x @ s["encoder_linear.weight"].T + s["encoder_linear.bias"])


def assert_encodes_like(sae: SAE, reference: torch.Tensor, x: torch.Tensor) -> None:
    acts = sae.encode(x)
    torch.testing.assert_close(acts, reference)
    assert (acts > 0).sum() > 0, "test SAE should have some active latents"
    assert (acts == 0).sum() > 0, "test SAE should be sparse"


# ---- saeembed's own format --------------------------------------------------------------------
def test_saeembed_round_trip(tmp_path):
    w = base_weights()
    w["threshold"] = rand(D_SAE, seed=7).abs() * 0.2
    cfg = SAEConfig(
        d_in=D_IN, d_sae=D_SAE, activation="jumprelu", model="my/model", layer=4, input_scale=0.5
    )
    original = SAE(cfg, w)
    original.save(tmp_path / "mine")

    assert detect_format(tmp_path / "mine") == "saeembed"
    loaded = load_sae(tmp_path / "mine")
    assert (loaded.cfg.d_in, loaded.cfg.d_sae, loaded.cfg.activation) == (D_IN, D_SAE, "jumprelu")
    assert (loaded.cfg.layer, loaded.cfg.model, loaded.cfg.input_scale) == (4, "my/model", 0.5)
    assert loaded.cfg.source == f"saeembed:{tmp_path / 'mine'}"
    assert loaded.content_hash() == original.content_hash()
    # a trained SAE records "saeembed:trained"; loaded from disk it names its directory, so an
    # encoder made with it can reload it (the labeller's output-side tokens do)
    trained = SAE(SAEConfig(**{**cfg.__dict__, "source": "saeembed:trained"}), w)
    trained.save(tmp_path / "trained")
    reloaded = load_sae(tmp_path / "trained")
    assert reloaded.cfg.source == f"saeembed:{tmp_path / 'trained'}"
    # ... and the source it records (what a store's encoder keeps) loads it again
    assert load_sae(reloaded.cfg.source).content_hash() == trained.content_hash()
    # with the hash an encoder recorded, a changed SAE at that place is refused
    assert load_sae(reloaded.cfg.source, sha256=trained.content_hash()).cfg.d_sae == D_SAE
    with pytest.raises(SAEError, match="is not the one with hash 0000000000"):
        load_sae(reloaded.cfg.source, sha256="0" * 64)
    x = inputs()
    torch.testing.assert_close(loaded.encode(x), original.encode(x))
    # a file inside the directory stands for the directory
    assert load_sae(str(tmp_path / "mine" / "cfg.json")).content_hash() == original.content_hash()


def test_saeembed_fp16_copy_loads(tmp_path):
    original = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, activation="topk", k=4), base_weights())
    original.save(tmp_path / "half", dtype=torch.float16)
    loaded = load_sae(tmp_path / "half")
    torch.testing.assert_close(loaded.W_enc, original.W_enc, atol=2e-3, rtol=2e-3)
    # the fp16 copy is the same SAE up to rounding; a retrained one is not
    assert loaded.content_hash() != original.content_hash()
    assert original.rounding_mismatch(loaded) is None
    other = SAE(original.cfg, {**base_weights(), "W_dec": rand(D_SAE, D_IN, seed=99)})
    assert original.rounding_mismatch(other).startswith("W_dec differs by ")
    wider = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, activation="topk", k=8), base_weights())
    assert original.rounding_mismatch(wider) == "k differs (4 vs 8)"
    assert loaded.W_enc.dtype == torch.float32


# ---- SAELens --------------------------------------------------------------------------------
def test_saelens_standard_relu_folds_b_dec(tmp_path):
    w = base_weights()
    path = write_saelens(tmp_path / "res-jb", saelens_cfg_v5(), w)

    assert detect_format(path) == "saelens"
    sae = load_sae(path)
    cfg = sae.cfg
    assert (cfg.d_in, cfg.d_sae, cfg.activation, cfg.k) == (D_IN, D_SAE, "relu", None)
    assert (cfg.layer, cfg.model, cfg.input_scale) == (8, "gpt2-small", 1.0)
    assert cfg.extra["source_format"] == "saelens"
    assert cfg.extra["hook_name"] == "blocks.8.hook_resid_post"
    assert cfg.source == f"saelens:{path}"

    x = inputs()
    ref = saelens_reference(w, x, kind="relu", apply_b_dec=True)
    assert_encodes_like(sae, ref, x)
    torch.testing.assert_close(sae.b_enc, w["b_enc"] - w["b_dec"] @ w["W_enc"])
    torch.testing.assert_close(sae.decode(ref), saelens_decode_reference(w, ref))


@pytest.mark.parametrize("stored", ["threshold", "log_threshold"])
def test_saelens_jumprelu(tmp_path, stored):
    w = base_weights(seed=1)
    threshold = rand(D_SAE, seed=9).abs() * 0.4 + 0.05
    tensors = dict(w)
    tensors[stored] = threshold if stored == "threshold" else threshold.log()
    path = write_saelens(tmp_path / "jr", saelens_cfg_v6("jumprelu"), tensors)

    sae = load_sae(path)
    cfg = sae.cfg
    assert (cfg.activation, cfg.model) == ("jumprelu", "google/gemma-2-2b")
    assert cfg.layer == 2  # blocks.3.hook_resid_pre is the output of block 2
    torch.testing.assert_close(sae.threshold, threshold)

    x = inputs()
    ref = saelens_reference({**w, "threshold": threshold}, x, kind="jumprelu", apply_b_dec=False)
    assert_encodes_like(sae, ref, x)
    # some latents are positive but below their threshold: JumpReLU really cut them
    assert ((saelens_reference(w, x, kind="relu", apply_b_dec=False) > 0) & (ref == 0)).any()
    torch.testing.assert_close(sae.decode(ref), saelens_decode_reference(w, ref))


def test_saelens_topk_old_layout_with_activation_scaler(tmp_path):
    w = base_weights(seed=2)
    cfg = saelens_cfg_v5(
        activation_fn_str="topk",
        activation_fn_kwargs={"k": 6},
        normalize_activations="expected_average_only_in",
        hook_name="blocks.5.hook_resid_pre",
    )
    path = write_saelens(tmp_path / "topk", cfg, w)
    (path / "activation_scaler.json").write_text(json.dumps({"scaling_factor": 0.37}))

    sae = load_sae(path)
    assert (sae.cfg.activation, sae.cfg.k, sae.cfg.layer) == ("topk", 6, 4)
    assert sae.cfg.input_scale == pytest.approx(0.37)

    x = inputs()
    ref = saelens_reference(w, x, kind="topk", apply_b_dec=True, scale=0.37, k=6)
    assert_encodes_like(sae, ref, x)
    assert ((sae.encode(x) > 0).sum(dim=1) <= 6).all()
    torch.testing.assert_close(sae.decode(ref), saelens_decode_reference(w, ref, scale=0.37))


def test_saelens_topk_v6_rescale_by_decoder_norm(tmp_path):
    w = base_weights(seed=3)
    w["W_dec"] = w["W_dec"] * (rand(D_SAE, seed=11).abs() + 0.5).unsqueeze(1)  # uneven norms
    cfg = saelens_cfg_v6("topk", k=5, rescale_acts_by_decoder_norm=True, apply_b_dec_to_input=True)
    cfg["metadata"]["hook_name"] = "blocks.6.hook_resid_post"
    sae = load_sae(write_saelens(tmp_path / "topk6", cfg, w))
    assert (sae.cfg.activation, sae.cfg.k, sae.cfg.layer) == ("topk", 5, 6)

    x = inputs()
    kw = {"rescale_by_decoder_norm": True}
    ref = saelens_reference(w, x, kind="topk", apply_b_dec=True, k=5, **kw)
    assert_encodes_like(sae, ref, x)
    torch.testing.assert_close(sae.decode(ref), saelens_decode_reference(w, ref, **kw))


def test_saelens_norm_scaling_factor_in_cfg(tmp_path):
    w = base_weights(seed=4)
    cfg = saelens_cfg_v5(normalize_activations="expected_average_only_in", norm_scaling_factor=2.5)
    sae = load_sae(write_saelens(tmp_path / "scaled", cfg, w))
    assert sae.cfg.input_scale == 2.5
    x = inputs()
    ref = saelens_reference(w, x, kind="relu", apply_b_dec=True, scale=2.5)
    assert_encodes_like(sae, ref, x)
    torch.testing.assert_close(sae.decode(ref), saelens_decode_reference(w, ref, scale=2.5))


def test_saelens_finetuning_scaling_factor_folds_into_decoder(tmp_path):
    w = base_weights(seed=6)
    factor = rand(D_SAE, seed=40).abs() + 0.5
    cfg = saelens_cfg_v5(finetuning_scaling_factor=True)
    sae = load_sae(write_saelens(tmp_path / "ft", cfg, {**w, "scaling_factor": factor}))
    x = inputs()
    ref = saelens_reference(w, x, kind="relu", apply_b_dec=True)
    assert_encodes_like(sae, ref, x)  # only decoding is affected
    torch.testing.assert_close(sae.decode(ref), (ref * factor) @ w["W_dec"] + w["b_dec"])


def test_saelens_gated_converts_to_jumprelu(tmp_path):
    w = base_weights(seed=5)
    del w["b_enc"]
    w["b_gate"] = rand(D_SAE, seed=30, scale=0.5) - 0.2
    w["b_mag"] = rand(D_SAE, seed=31, scale=0.5)
    w["r_mag"] = rand(D_SAE, seed=32, scale=0.3)
    sae = load_sae(write_saelens(tmp_path / "gated", saelens_cfg_v5(architecture="gated"), w))
    assert sae.cfg.activation == "jumprelu"
    assert sae.cfg.extra["architecture"] == "gated"

    x = inputs()
    ref = saelens_reference(w, x, kind="gated", apply_b_dec=True)
    assert_encodes_like(sae, ref, x)
    # the gate closes some latents whose magnitude path is positive
    mag = (x - w["b_dec"]) @ (w["W_enc"] * w["r_mag"].exp()) + w["b_mag"]
    assert ((mag > 0) & (ref == 0)).any()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"normalize_activations": "layer_norm"}, "layer_norm"),
        ({"normalize_activations": "constant_norm_rescale"}, "constant_norm_rescale"),
        ({"normalize_activations": "expected_average_only_in"}, "no scaling factor"),
        ({"hook_name": "blocks.0.hook_resid_pre"}, "token embeddings"),
        ({"hook_name": "blocks.4.hook_mlp_out"}, "not the residual stream"),
        ({"hook_name": "blocks.4.attn.hook_z", "hook_head_index": None}, "not the residual stream"),
        # transcoders load (tests/test_transcoders.py), but only from an MLP's input
        ({"architecture": "transcoder"}, "transcoder reading .* not an MLP's input"),
        ({"architecture": "batchtopk"}, "jumprelu"),
        ({"activation_fn_str": "tanh-relu"}, "tanh-relu"),
    ],
)
def test_saelens_refusals(tmp_path, overrides, message):
    path = write_saelens(tmp_path / "bad", saelens_cfg_v5(**overrides), base_weights())
    with pytest.raises(SAEError, match=message):
        load_sae(path)


def test_saelens_shape_mismatch_with_cfg(tmp_path):
    path = write_saelens(tmp_path / "bad", saelens_cfg_v5(d_sae=64), base_weights())
    with pytest.raises(SAEError, match="d_sae=64"):
        load_sae(path)


# ---- EleutherAI sparsify -------------------------------------------------------------------
def test_sparsify_topk(tmp_path):
    t = sparsify_tensors()
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps({"model": "EleutherAI/pythia-70m", "batch_size": 8})
    )
    path = write_sparsify(run / "layers.3", sparsify_cfg(), t)
    write_sparsify(run / "layers.4", sparsify_cfg(), sparsify_tensors(seed=50))

    assert detect_format(path) == "sparsify"
    sae = load_sae(path)
    cfg = sae.cfg
    assert (cfg.d_in, cfg.d_sae, cfg.activation, cfg.k) == (D_IN, D_SAE, "topk", 5)
    assert (cfg.layer, cfg.model) == (3, "EleutherAI/pythia-70m")
    assert cfg.extra["source_format"] == "sparsify"
    assert cfg.extra["hookpoint"] == "layers.3"

    x = inputs()
    ref = sparsify_reference(t, x, k=5)
    assert_encodes_like(sae, ref, x)
    torch.testing.assert_close(sae.decode(ref), ref @ t["W_dec"] + t["b_dec"])

    # the parent folder holds several hookpoints: the user has to pick one
    with pytest.raises(SAEError, match="several SAEs.*layers.3, layers.4"):
        load_sae(run)


@pytest.mark.parametrize(
    ("folder", "layer"), [("layers.10", 10), ("model.layers.2", 2), ("h.7", 7), ("custom", None)]
)
def test_sparsify_layer_from_folder_name(tmp_path, folder, layer):
    sae = load_sae(write_sparsify(tmp_path / folder, sparsify_cfg(), sparsify_tensors()))
    assert sae.cfg.layer == layer
    assert sae.cfg.model is None
    if layer is None:
        assert "layer_note" in sae.cfg.extra


@pytest.mark.parametrize(
    ("overrides", "extra_tensor", "folder", "message"),
    [
        ({"skip_connection": True}, "W_skip", "layers.1", "skip connection"),
        ({}, "W_skip", "layers.1", "skip connection"),
        ({"transcode": True}, None, "layers.1", "transcoder reading .* not an MLP's input"),
        ({"activation": "groupmax"}, None, "layers.1", "groupmax"),
        ({}, None, "layers.1.mlp", "not the residual stream"),
        ({}, None, "embed_tokens", "not the residual stream"),
    ],
)
def test_sparsify_refusals(tmp_path, overrides, extra_tensor, folder, message):
    t = sparsify_tensors()
    if extra_tensor:
        t[extra_tensor] = torch.zeros(D_IN, D_IN)
    path = write_sparsify(tmp_path / folder, sparsify_cfg(**overrides), t)
    with pytest.raises(SAEError, match=message):
        load_sae(path)


# ---- Goodfire ---------------------------------------------------------------------------------
def test_goodfire_checkpoint_file(tmp_path):
    s = goodfire_state()
    path = tmp_path / "Llama-3.1-8B-Instruct-SAE-l19.pth"
    torch.save(s, path)

    assert detect_format(path) == "goodfire"
    sae = load_sae(path)
    cfg = sae.cfg
    assert (cfg.d_in, cfg.d_sae, cfg.activation, cfg.k) == (D_IN, D_SAE, "relu", None)
    assert (cfg.layer, cfg.model) == (19, "meta-llama/Llama-3.1-8B-Instruct")
    assert cfg.extra["source_format"] == "goodfire"

    x = inputs()
    ref = goodfire_reference(s, x)
    assert_encodes_like(sae, ref, x)
    expected = ref @ s["decoder_linear.weight"].T + s["decoder_linear.bias"]
    torch.testing.assert_close(sae.decode(ref), expected)


def test_goodfire_directory_with_one_checkpoint(tmp_path):
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "README.md").write_text("an SAE\n")
    torch.save(goodfire_state(), folder / "Llama-3.3-70B-Instruct-SAE-l50.pt")
    assert detect_format(folder) == "goodfire"
    sae = load_sae(folder)
    assert (sae.cfg.layer, sae.cfg.model) == (50, "meta-llama/Llama-3.3-70B-Instruct")

    torch.save(goodfire_state(), folder / "other_l3.pt")
    with pytest.raises(SAEError, match="several checkpoints"):
        load_sae(folder)


def test_goodfire_unknown_names(tmp_path):
    path = tmp_path / "my_sae.pt"
    torch.save(goodfire_state(), path)
    sae = load_sae(path)
    assert (sae.cfg.layer, sae.cfg.model) == (None, None)
    assert "layer_note" in sae.cfg.extra

    torch.save({"weight": torch.zeros(3)}, tmp_path / "not_an_sae.pt")
    with pytest.raises(SAEError, match="not a Goodfire SAE"):
        load_sae(tmp_path / "not_an_sae.pt")


_UNPICKLED: list[bool] = []


def _side_effect() -> str:
    _UNPICKLED.append(True)
    return "ran"


class _Payload:
    """Pickles to a call of `_side_effect`: unpickling it would run code."""

    def __reduce__(self):
        return (_side_effect, ())


def test_pickle_checkpoint_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "Llama-3.1-8B-Instruct-SAE-l19.pt"
    torch.save({"encoder_linear.weight": _Payload()}, path)
    _UNPICKLED.clear()
    with pytest.raises(SAEError, match="weights_only=True"):
        load_sae(path)
    assert _UNPICKLED == []


# ---- the same SAE in several formats hashes the same -----------------------------------------
def test_content_hash_equal_across_formats(tmp_path):
    s = goodfire_state()
    torch.save(s, tmp_path / "Llama-3.1-8B-Instruct-SAE-l19.pt")
    from_goodfire = load_sae(tmp_path / "Llama-3.1-8B-Instruct-SAE-l19.pt")

    as_saelens = {
        "W_enc": s["encoder_linear.weight"].T,
        "b_enc": s["encoder_linear.bias"],
        "W_dec": s["decoder_linear.weight"].T,
        "b_dec": s["decoder_linear.bias"],
    }
    cfg = saelens_cfg_v5(apply_b_dec_to_input=False, hook_name="blocks.19.hook_resid_post")
    from_saelens = load_sae(write_saelens(tmp_path / "saelens", cfg, as_saelens))

    from_goodfire.save(tmp_path / "mine")
    from_saeembed = load_sae(tmp_path / "mine")

    h = from_goodfire.content_hash()
    assert from_saelens.content_hash() == h
    assert from_saeembed.content_hash() == h
    assert from_saeembed.cfg.source == from_goodfire.cfg.source  # provenance survives a re-save


def test_content_hash_equal_sparsify_and_saelens_topk(tmp_path):
    t = sparsify_tensors()
    from_sparsify = load_sae(write_sparsify(tmp_path / "layers.2", sparsify_cfg(k=4), t))
    as_saelens = {
        "W_enc": t["encoder.weight"].T,
        "b_enc": t["encoder.bias"],
        "W_dec": t["W_dec"],
        "b_dec": t["b_dec"],
    }
    cfg = saelens_cfg_v6("topk", k=4, apply_b_dec_to_input=True)
    from_saelens = load_sae(write_saelens(tmp_path / "saelens", cfg, as_saelens))
    assert from_sparsify.content_hash() == from_saelens.content_hash()


# ---- missing things, wrong paths, and fitting a model -----------------------------------------
def test_missing_files(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SAEError, match="no SAE found"):
        load_sae(empty)

    only_cfg = tmp_path / "only_cfg"
    only_cfg.mkdir()
    (only_cfg / "cfg.json").write_text(json.dumps(saelens_cfg_v5()))
    with pytest.raises(SAEError, match="no weights"):
        load_sae(only_cfg)

    w = base_weights()
    del w["b_dec"]
    with pytest.raises(SAEError, match="lacks tensor 'b_dec'"):
        load_sae(write_saelens(tmp_path / "no_b_dec", saelens_cfg_v5(), w))

    bad_json = write_saelens(tmp_path / "bad_json", saelens_cfg_v5(), base_weights())
    (bad_json / "cfg.json").write_text("{not json")
    with pytest.raises(SAEError, match="not valid JSON"):
        load_sae(bad_json)


@pytest.mark.parametrize("spec", ["/no/such/dir", "./relative/missing", "plainword"])
def test_nonexistent_path(spec):
    with pytest.raises(
        SAEError, match="no SAE at .*give a directory, a checkpoint file, or a Hub id"
    ):
        load_sae(spec)


def test_hub_id_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(
        SAEError, match=r"could not be reached for hf://no-such-owner-x/no-such-sae/layers.3"
    ) as info:
        load_sae("no-such-owner-x/no-such-sae/layers.3")
    assert "no local path no-such-owner-x/no-such-sae/layers.3 either" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(SAEError, match="could not be reached") as info:
        load_sae("hf://no-such-owner-x/no-such-sae")  # a Hub id by its prefix: no path to mention
    assert "no local path" not in str(info.value) and "local directory" in str(info.value)


def test_hub_folder_is_downloaded_with_allow_patterns(tmp_path, monkeypatch):
    root = tmp_path / "snapshot"
    write_sparsify(root / "layers.3", sparsify_cfg(), sparsify_tensors())
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(root)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(formats_module, "_snapshot_download", fake_snapshot_download)
    sae = load_sae("hf://EleutherAI/sae-pythia-70m/layers.3")
    assert calls[0][0] == "EleutherAI/sae-pythia-70m"
    assert "layers.3/*" in calls[0][1]["allow_patterns"]
    assert calls[0][1]["local_files_only"] is False
    assert sae.cfg.layer == 3
    assert sae.cfg.source == "sparsify:hf://EleutherAI/sae-pythia-70m/layers.3"

    with pytest.raises(SAEError, match="has no 'layers.9'"):
        load_sae("EleutherAI/sae-pythia-70m/layers.9")


def test_hub_repo_not_found(monkeypatch):
    class RepositoryNotFoundError(Exception):
        pass

    def fake_snapshot_download(repo_id, **kwargs):
        raise RepositoryNotFoundError("404 Client Error\nmore lines")

    monkeypatch.setattr(formats_module, "_snapshot_download", fake_snapshot_download)
    with pytest.raises(SAEError, match="Hub repo someone/missing was not found") as info:
        load_sae("someone/missing")
    assert "\n" not in str(info.value)


def test_check_sae_fits():
    sae = SAE(SAEConfig(d_in=D_IN, d_sae=D_SAE, activation="relu"), base_weights())
    check_sae_fits(sae, width=D_IN, n_layers=12, layer=11)
    with pytest.raises(
        SAEError, match="SAE d_in=8 does not match the model's hidden size 16 at layer 3"
    ):
        check_sae_fits(sae, width=16, n_layers=12, layer=3)
    with pytest.raises(SAEError, match="outside 0..11"):
        check_sae_fits(sae, width=D_IN, n_layers=12, layer=12)
    with pytest.raises(SAEError, match="outside"):
        check_sae_fits(sae, width=D_IN, n_layers=12, layer=-1)


def test_nan_weights_are_refused(tmp_path):
    weights = base_weights()
    weights["W_enc"][1, 2] = float("nan")
    weights["b_dec"][0] = float("inf")
    path = write_saelens(tmp_path / "nan", saelens_cfg_v5(), weights)
    with pytest.raises(
        SAEError, match=r"W_enc has 1 NaN or infinite values; the weights are damaged"
    ):
        load_sae(path)


def test_topk_k_beyond_the_latents_is_refused():
    from saeembed.sae.model import SAEConfig

    with pytest.raises(SAEError, match=r"cannot keep k=1,000,000 of its 32 latents"):
        SAEConfig(d_in=8, d_sae=32, activation="topk", k=1_000_000)
