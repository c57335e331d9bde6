"""SAE training: activation collection (counts, held-out split, resume), the shuffling loader,
the trainer on data with a known sparse structure, exact resume, export, and the evaluation."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from saeembed.errors import SaeembedError
from saeembed.inputs.tokens import tokenize_documents, wrapping_for
from saeembed.reader import load_reader
from saeembed.sae import SAE
from saeembed.train import (
    ActivationLoader,
    TextSource,
    TrainConfig,
    collect_activations,
    evaluate_sae,
    load_manifest,
    loss_recovered,
    save_activations,
    train_sae,
)
from saeembed.train.activations import document_key
from saeembed.train.model import TrainableSAE, _batch_topk
from tests.fakes import WORDS, random_sae

LAYER = 1


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors run faster on one thread (and 2 threads on a busy 2-core box crawl)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reader(tiny_model):
    return load_reader(str(tiny_model), device="cpu")


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{' '.join(rng.choices(WORDS, k=rng.randint(2, 30)))} ." for _ in range(n)]


@pytest.fixture(scope="module")
def sources():
    texts = make_texts(300)
    return [TextSource("plain", texts[:240]), TextSource("chat", texts[240:], chat="user")]


def collect(reader, sources, directory, **kw):
    kw = {"max_tokens": 24, "shard_tokens": 600, "progress": False, **kw}
    return collect_activations(reader, sources, LAYER, directory, **kw)


def shard_arrays(directory) -> dict[str, np.ndarray]:
    return {f.name: np.load(f) for f in sorted(directory.glob("*.npy"))}


# ---------------------------------------------------------------------------- collection


def test_collection_counts_and_held_out_split(reader, sources, tmp_path):
    manifest = collect(reader, sources, tmp_path)
    for source in sources:
        lengths = [len(t.ids) for t in tokenize_documents(reader.tokenizer, list(source.texts), 24)]
        val = [document_key(t, source.chat) % 20 == 0 for t in source.texts]
        counts = manifest["sources"][source.name]
        assert counts["documents"] == len(source.texts)
        assert counts["val_tokens"] == sum(n for n, v in zip(lengths, val, strict=True) if v)
        assert counts["train_tokens"] + counts["val_tokens"] == sum(lengths)
    assert manifest["val_tokens"] > 0
    arrays = shard_arrays(tmp_path)
    assert (
        sum(len(a) for n, a in arrays.items() if n.startswith("train")) == manifest["train_tokens"]
    )
    assert sum(len(a) for n, a in arrays.items() if n.startswith("val")) == manifest["val_tokens"]
    assert all(a.dtype == np.float16 for n, a in arrays.items() if not n.startswith("docs"))
    keys = np.concatenate([a for n, a in arrays.items() if n.startswith("docs")])
    assert len(keys) == len(set(keys.tolist())) == 300  # every document once
    assert manifest["mean_norm"] > 0 and manifest["model"] == reader.model_id


def test_collection_keeps_only_the_documents_own_tokens(reader, tmp_path):
    """One document per shard, compared with a direct forward pass of prefix + text (+ suffix)."""
    texts = ["the movie was great .", "stocks fell on tuesday but i love it"]
    for chat in ("none", "user"):
        out = tmp_path / chat
        collect(reader, [TextSource(chat, texts, chat=chat)], out, shard_tokens=1, val_every=0)
        wrapping = wrapping_for(reader.tokenizer, chat)
        for i, text in enumerate(texts):
            own = tokenize_documents(reader.tokenizer, [text], 24)[0].ids.tolist()
            ids = torch.tensor([list(wrapping.prefix) + own + list(wrapping.suffix)])
            hidden = reader.residual_stream(ids, torch.ones_like(ids), LAYER)[0]
            expected = hidden[len(wrapping.prefix) : len(wrapping.prefix) + len(own)].numpy()
            stored = np.load(out / f"train-{i:05d}.npy").astype(np.float32)
            np.testing.assert_allclose(stored, expected, atol=2e-3, rtol=2e-3)


def test_collection_resumes_without_duplicates(reader, sources, tmp_path):
    straight = tmp_path / "straight"
    collect(reader, sources, straight)

    def interrupt(index):
        raise KeyboardInterrupt

    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        collect(reader, sources, resumed, on_shard=interrupt)
    assert len(load_manifest(resumed)["shards"]) == 1
    collect(reader, sources, resumed)
    a, b = shard_arrays(straight), shard_arrays(resumed)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert load_manifest(straight) == load_manifest(resumed)
    assert collect(reader, sources, resumed) == load_manifest(straight)  # a third run adds nothing


def test_collection_refuses_other_settings(reader, sources, tmp_path):
    collect(reader, sources[:1], tmp_path)
    with pytest.raises(SaeembedError, match="max_tokens"):
        collect(reader, sources[:1], tmp_path, max_tokens=8)


def test_loader_shuffles_across_shards_and_resumes(tmp_path):
    data = np.arange(2000, dtype=np.float32)[:, None].repeat(4, axis=1)  # exact in float16
    save_activations(tmp_path, data, shard_tokens=400)
    loader = ActivationLoader(tmp_path, 100, seed=3, buffer_tokens=800)
    stream = iter(loader)
    epoch = torch.cat([next(stream) for _ in range(20)])[:, 0]
    assert sorted(epoch.tolist()) == list(range(2000))  # one epoch: every token once
    first = torch.cat([next(stream) for _ in range(3)])[:, 0]
    assert (first.diff().abs() > 400).any()  # a batch mixes shards
    state = loader.state_dict()
    after = [next(stream) for _ in range(4)]
    again = ActivationLoader(tmp_path, 100, seed=3, buffer_tokens=800)
    again.load_state_dict(state)
    for x, y in zip(after, iter(again), strict=False):
        assert torch.equal(x, y)


# ---------------------------------------------------------------------------- training


def sparse_data(n: int, d: int = 32, m: int = 64, k: int = 4, seed: int = 0):
    """Each row: k of m random unit directions with coefficients in [0.5, 2], plus an offset."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(m, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    chosen = np.argsort(rng.random((n, m)), axis=1)[:, :k]
    coef = rng.uniform(0.5, 2.0, (n, k))
    return (np.einsum("nk,nkd->nd", coef, dirs[chosen]) + 0.3).astype(np.float32), dirs


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    x, dirs = sparse_data(24000)
    directory = tmp_path_factory.mktemp("synthetic")
    save_activations(directory, x[:20000], x[20000:], model="toy", layer=0, shard_tokens=4096)
    return directory, dirs


def quick(**kw) -> TrainConfig:
    base = {
        "d_sae": 64,
        "k": 4,
        "steps": 2000,
        "batch_size": 512,
        "log_every": 100,
        "checkpoint_every": 500,
        "buffer_tokens": 8192,
    }
    return TrainConfig(**{**base, **kw})


def test_topk_recovers_a_known_sparse_dictionary(synthetic, tmp_path):
    directory, dirs = synthetic
    result = train_sae(quick(), directory, tmp_path)
    sae = SAE.load(tmp_path)
    assert sae.cfg.activation == "topk" and sae.cfg.k == 4 and sae.cfg.layer == 0
    assert sae.cfg.input_scale == pytest.approx(1 / load_manifest(directory)["mean_norm"])
    # measured: val FVU 0.098, 58/64 directions found, no latent silent on the val tokens
    val = result.summary["val"]
    assert val["fvu"] < 0.15 and val["l0"] == pytest.approx(4.0)
    assert val["dead_fraction"] <= 4 / 64 and result.summary["dead_fraction_window"] <= 4 / 64
    found = (dirs @ sae.W_dec.numpy().T).max(axis=1) > 0.95
    assert found.sum() >= 54
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(100, 2001, 100))
    assert rows[-1]["fvu"] < rows[0]["fvu"] / 3
    assert sae.cfg.extra["training"]["b_dec_init"] == "geometric_median"


def test_batchtopk_trains_and_exports_as_jumprelu(synthetic, tmp_path):
    directory, _ = synthetic
    result = train_sae(quick(architecture="batchtopk"), directory, tmp_path)
    sae = SAE.load(tmp_path)
    assert sae.cfg.activation == "jumprelu"
    assert torch.all(sae.threshold == sae.threshold[0]) and sae.threshold[0] > 0
    val = result.summary["val"]  # measured: FVU 0.132, L0 4.02
    assert val["fvu"] < 0.2 and 3.5 < val["l0"] < 4.5


def test_resume_gives_the_same_weights(synthetic, tmp_path):
    directory, _ = synthetic
    config = quick(
        d_sae=256, steps=20, checkpoint_every=10, log_every=5, aux_k=8, dead_after_tokens=1024
    )
    train_sae(config, directory, tmp_path / "straight")

    def stop(step):
        if step == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_sae(config, directory, tmp_path / "resumed", on_step=stop)
    assert [p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()] == ["step-00000010"]
    train_sae(config, directory, tmp_path / "resumed")
    a, b = SAE.load(tmp_path / "straight"), SAE.load(tmp_path / "resumed")
    for name, tensor in a.canonical_state().items():
        assert torch.equal(tensor, b.canonical_state()[name]), name

    def metrics(run):
        rows = [
            json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        ]
        return [{k: v for k, v in row.items() if k != "tokens_per_s"} for row in rows]

    assert metrics("resumed") == metrics("straight")
    assert [r["step"] for r in metrics("resumed")] == [5, 10, 15, 20]
    assert any(r["aux"] > 0 for r in metrics("resumed"))  # the dead-latent state resumed too
    with pytest.raises(SaeembedError, match="k"):
        train_sae(quick(steps=20, checkpoint_every=10, k=3), directory, tmp_path / "resumed")


@pytest.mark.parametrize("architecture", ["topk", "batchtopk"])
def test_export_reproduces_training_activations(architecture):
    torch.manual_seed(0)
    cfg = quick(architecture=architecture)
    model = TrainableSAE(32, cfg, input_scale=0.37)
    with torch.no_grad():
        model.b_dec.normal_()
        model.b_enc.normal_(std=0.1)
        model.W_enc.add_(0.1 * torch.randn_like(model.W_enc))
    x = torch.randn(256, 32) * 3
    train_acts = model.encode_training(x * 0.37)
    model.threshold.fill_(float(train_acts[train_acts > 0].min()))
    sae = model.export(model="toy", layer=0, extra={})
    acts = sae.encode(x)
    if architecture == "topk":
        torch.testing.assert_close(acts, train_acts, atol=1e-5, rtol=1e-5)
    else:  # a global threshold at the batch's smallest kept value keeps the same latents
        assert ((acts > 0) != (train_acts > 0)).sum() <= 1
        assert (acts > 0).sum(1).float().mean() == pytest.approx(cfg.k, abs=0.05)
    x_hat_train = (train_acts @ model.W_dec + model.b_dec) / 0.37
    torch.testing.assert_close(sae.decode(train_acts), x_hat_train, atol=1e-4, rtol=1e-4)


def test_batch_topk_keeps_the_batch_largest_values():
    torch.manual_seed(0)
    for boost in (0.0, 10.0):  # 10: one token takes far more than 4k latents (full-row search)
        pre = torch.randn(64, 256)
        pre[3] += boost
        rows, cols, values = _batch_topk(pre, 4)
        expected = pre.relu().flatten().topk(4 * 64).values
        torch.testing.assert_close(values.sort().values, expected.sort().values)
        torch.testing.assert_close(pre[rows, cols], values)
        assert bool((rows.diff() >= 0).all())


def test_aux_loss_dense_and_sparse_paths_agree():
    torch.manual_seed(0)
    model = TrainableSAE(16, quick(aux_k=6), input_scale=1.0)
    x = torch.randn(128, 16)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[:20] = True
    error, grads = torch.randn(128, 16), []
    for dense in (True, False):
        model.zero_grad()
        centred = x - model.b_dec
        with torch.no_grad():
            pre = torch.addmm(model.b_enc, centred, model.W_enc.T)
        loss = model._aux_loss(pre, centred, error, dead, dense=dense)
        loss.backward()
        grads.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_outlier_tokens_are_left_out_of_training_and_fvu(tmp_path):
    x, _ = sparse_data(6000, seed=1)
    x[::500] *= 200  # massive activations, as on some first tokens of real models
    save_activations(tmp_path / "acts", x[:5000], x[5000:])
    result = train_sae(quick(steps=50), tmp_path / "acts", tmp_path / "sae")
    assert result.summary["val"]["n_outliers"] == 2
    assert result.summary["final"]["outliers"] > 0
    unfiltered = evaluate_sae(result.sae, activations_dir=tmp_path / "acts", max_norm_ratio=None)
    assert unfiltered["n_outliers"] == 0
    assert unfiltered["n_tokens"] == result.summary["val"]["n_tokens"] + 2


def test_config_defaults_and_validation():
    cfg = TrainConfig(d_sae=16384 // 4, steps=100)
    assert cfg.learning_rate() == pytest.approx(4e-4)
    assert cfg.warmup() == 5 and cfg.lr_factor(0) == pytest.approx(0.2)
    assert cfg.lr_factor(99) == pytest.approx(1 / 20)
    assert cfg.dead_window() == 100 * 4096 // 10
    with pytest.raises(SaeembedError):
        TrainConfig(architecture="gated")
    with pytest.raises(SaeembedError):
        TrainConfig(k=0)


# ---------------------------------------------------------------------------- evaluation


def test_loss_recovered_is_one_for_identity_and_zero_for_zeros(reader):
    texts = make_texts(40, seed=1)
    identity = loss_recovered(reader, LAYER, texts, lambda h: h.clone())
    assert identity["loss_recovered"] == pytest.approx(1.0, abs=1e-6)
    assert identity["ce_replaced"] == pytest.approx(identity["ce_clean"], rel=1e-6)
    zero = loss_recovered(reader, LAYER, texts, torch.zeros_like)
    assert zero["loss_recovered"] == pytest.approx(0.0, abs=1e-6)
    assert zero["ce_zero"] != pytest.approx(zero["ce_clean"])


def test_evaluate_sae_on_texts_and_activations(reader, sources, tmp_path):
    collect(reader, sources, tmp_path)
    sae = random_sae(d_in=16, d_sae=64, k=4, layer=LAYER)
    on_texts = evaluate_sae(sae, reader, texts=make_texts(40, seed=2), train_dead_fraction=0.1)
    assert on_texts["l0"] <= 4 and 0 <= on_texts["dead_fraction"] <= 1
    assert on_texts["fvu"] > 0 and np.isfinite(on_texts["loss_recovered"])
    assert on_texts["dead_fraction_training"] == 0.1
    # without loss recovered: the same tokens and activation figures from one clean pass
    quick = evaluate_sae(sae, reader, texts=make_texts(40, seed=2), with_loss=False)
    assert "loss_recovered" not in quick
    for key in ("n_tokens", "n_outliers", "l0", "dead_fraction"):
        assert quick[key] == on_texts[key]
    assert quick["fvu"] == pytest.approx(on_texts["fvu"], rel=1e-9)
    on_val = evaluate_sae(sae, activations_dir=tmp_path)
    assert on_val["n_tokens"] == load_manifest(tmp_path)["val_tokens"]
    cut = load_reader(str(reader.model_id), device="cpu")
    cut.drop_layers_after(LAYER)
    with pytest.raises(SaeembedError, match="full reader"):
        evaluate_sae(sae, cut, texts=make_texts(5))
