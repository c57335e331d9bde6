"""Encoding speed: saeembed's encoder against a naive reference loop, same model, SAE and texts,
in one process, with both measured against the machine's fp32 matmul peak.

    .venv/bin/python benchmarks/encode.py [--docs 400] [--workload mixed|long] [--profile]

``--workload mixed`` (the default) is 3/4 review snippets and 1/4 news articles; ``long`` is
documents of hundreds of tokens (news articles, party-convention speeches and the longer House of
Commons speeches, shuffled). The bound is the best of the square 2048^3 product and the model's
own matmul shapes, measured in the same run. ``--profile`` adds saeembed's time per operator
group (matrix products, attention, element-wise, SAE top-k, other) from torch.profiler.

The naive loop is what research code does: batches of 8 in corpus order padded to the longest,
a full forward with output_hidden_states=True, the dense SAE output moved to the host, and
max-pooling per document there. saeembed's path is `saeembed.encoding.core.encode_corpus` into a fresh
DuckDB file (tokenising and writing included; model loading excluded for both). Speed does not depend on the SAE's weights, so a random
TopK SAE (8,192 latents, k=32) stands in when no trained SAE is given or shipped.
"""

from __future__ import annotations

import argparse
import functools
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from saeembed.data import load_dataset
from saeembed.encoding.core import default_batch_tokens, encode_corpus, encode_texts, resolve_sae
from saeembed.errors import SAEError
from saeembed.inputs import documents_from_texts
from saeembed.inputs.tokens import tokenize_documents, wrapping_for
from saeembed.reader import load_reader
from saeembed.sae import SAE, SAEConfig
from saeembed.store import Store


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_rate(fn, flops: float, device: torch.device, reps: int, trials: int = 3) -> float:
    fn()
    _sync(device)
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        _sync(device)
        best = max(best, flops * reps / (time.perf_counter() - start) / 1e9)
    return best


def matmul_peak_gflops(device: torch.device | None = None, dtype=torch.float32) -> float:
    """The square product's rate: 2048^3 on the CPU, 8192^3 on a GPU."""
    device = device or torch.device("cpu")
    size = 2048 if device.type == "cpu" else 8192
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return _best_rate(lambda: a @ b, 2 * size**3, device, reps=10 if device.type == "cpu" else 50)


def model_matmul_peak_gflops(
    reader, sae: SAE, rows: int | None = None, seconds: float = 0.5
) -> float:
    """Best rate of the products the encoder runs, in the reader's dtype on its device: a batch
    of ``rows`` tokens (1,024 on the CPU, 65,536 on a GPU) through each distinct Linear shape of
    the reader and through the SAE encoder (each trial runs about ``seconds``, so short
    products are not timed on a burst)."""
    device, dtype = reader.device, reader.dtype
    rows = rows or (1024 if device.type == "cpu" else 65_536)
    expected = 150e9 if device.type == "cpu" else 500e12  # FLOP/s, to size the trials
    shapes = {(m.in_features, m.out_features) for m in reader.model.modules()
              if isinstance(m, torch.nn.Linear) and m.out_features < 20_000}  # fmt: skip
    shapes.add((sae.cfg.d_in, sae.cfg.d_sae))
    best = 0.0
    for k, n in sorted(shapes):
        a = torch.randn(rows, k, device=device, dtype=dtype)
        w = torch.randn(n, k, device=device, dtype=dtype)
        flops = 2 * rows * k * n
        reps = max(10, int(seconds * expected / flops))
        product = functools.partial(torch.nn.functional.linear, a, w)
        best = max(best, _best_rate(product, flops, device, reps))
    return best


def benchmark_texts(n_docs: int, seed: int = 0, workload: str = "mixed") -> list[str]:
    """Real documents: ``mixed`` is 3/4 short review snippets and 1/4 long news articles;
    ``long`` is 1/2 news articles, 1/4 convention speeches, 1/4 Commons speeches over 1,000
    characters (hundreds of tokens each)."""
    if workload == "long":
        speeches = load_dataset("commons-speeches").filter(pl.col("text").str.len_chars() > 1000)
        parts = [
            load_dataset("news-articles").sample(n_docs - 2 * (n_docs // 4), seed=seed),
            load_dataset("convention-2012").sample(n_docs // 4, seed=seed),
            speeches.sample(n_docs // 4, seed=seed),
        ]
    else:
        parts = [
            load_dataset("rotten-tomatoes").sample(n_docs - n_docs // 4, seed=seed),
            load_dataset("news-articles").sample(n_docs // 4, seed=seed),
        ]
    mixed = [text for part in parts for text in part["text"].to_list()]
    np.random.default_rng(seed).shuffle(mixed)
    return mixed


ELEMENTWISE = "element-wise (norms, rotary, SiLU, residual adds, casts)"
#: torch.profiler operator names by group, for ``--profile``
OP_GROUPS = {
    "matrix products (reader)": ("aten::mm",),
    "SAE encoder product": ("aten::addmm",),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                  "aten::_scaled_dot_product_efficient_attention",
                  "aten::_scaled_dot_product_flash_attention"),
    ELEMENTWISE: (
        "aten::mul", "aten::add", "aten::silu", "aten::pow", "aten::cat", "aten::copy_",
        "aten::neg", "aten::sum", "aten::mean", "aten::rsqrt", "aten::div_", "aten::_to_copy",
        "aten::add_", "aten::sub"),
    "SAE top-k, pooling": ("aten::topk", "aten::sort", "aten::_unique2", "aten::scatter_reduce_",
                           "aten::scatter_add_", "aten::nonzero", "aten::index"),
}  # fmt: skip


def profile_groups(run) -> dict[str, float]:
    """Self CPU seconds of ``run()`` per operator group (the rest under "other")."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    seconds = {name: 0.0 for name in [*OP_GROUPS, "other"]}
    for event in prof.key_averages():
        group = next((g for g, ops in OP_GROUPS.items() if event.key in ops), "other")
        seconds[group] += event.self_cpu_time_total / 1e6
    return seconds


def random_topk_sae(d_in: int, layer: int, model: str, d_sae: int = 8192, k: int = 32) -> SAE:
    gen = torch.Generator().manual_seed(0)
    cfg = SAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        activation="topk",
        k=k,
        model=model,
        layer=layer,
        input_scale=1 / 174,
    )
    return SAE(
        cfg,
        {
            "W_enc": torch.randn(d_in, d_sae, generator=gen) / d_in**0.5,
            "b_enc": torch.zeros(d_sae),
            "W_dec": torch.randn(d_sae, d_in, generator=gen) / d_in**0.5,
            "b_dec": torch.zeros(d_in),
        },
    )


def linear_flops_per_token(reader, layer: int) -> int:
    """2 x multiply-adds of every Linear in blocks 0..layer (no embeddings, no LM head)."""
    return sum(
        2 * m.in_features * m.out_features
        for block in list(reader.layers)[: layer + 1]
        for m in block.modules()
        if isinstance(m, torch.nn.Linear)
    )


def useful_flops(reader, sae: SAE, layer: int, lengths: list[int], prefix: int) -> float:
    """FLOPs the task needs (no padding): linear layers and causal attention for every input
    token, plus the SAE encoder for the documents' own tokens."""
    per_token = linear_flops_per_token(reader, layer)
    d = reader.d_model
    total = 0.0
    for n in lengths:
        t = n + prefix
        total += (
            per_token * t
            + (layer + 1) * 2 * 2 * d * t * (t + 1) / 2
            + 2 * sae.cfg.d_in * sae.cfg.d_sae * n
        )
    return total


@torch.inference_mode()
def naive_encode(
    reader, sae: SAE, layer: int, texts: list[str], max_tokens: int
) -> list[dict[int, float]]:
    wrap = wrapping_for(reader.tokenizer)
    docs = tokenize_documents(reader.tokenizer, texts, max_tokens)
    pooled = []
    for start in range(0, len(docs), 8):
        batch = docs[start : start + 8]
        width = max(len(d.ids) for d in batch) + len(wrap.prefix)
        ids = torch.full((len(batch), width), reader.tokenizer.pad_token_id or 0)
        mask = torch.zeros_like(ids)
        for row, doc in enumerate(batch):
            seq = list(wrap.prefix) + doc.ids.tolist()
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        hidden = reader.model(
            input_ids=ids.to(reader.device), attention_mask=mask.to(reader.device),
            output_hidden_states=True,
        ).hidden_states[layer + 1]  # fmt: skip
        flat = hidden.reshape(-1, hidden.shape[-1]).to(sae.W_enc.dtype)
        pre = sae.pre_activations(flat)
        values, indices = pre.topk(sae.cfg.k, dim=-1)
        dense = torch.zeros_like(pre).scatter_(1, indices, values.clamp(min=0))
        dense[~sae.typical(flat)] = 0  # massive-norm tokens are not pooled (encoding v3)
        dense = dense.reshape(len(batch), width, -1).float().cpu().numpy()  # on the host
        for row, doc in enumerate(batch):
            own = dense[row, len(wrap.prefix) : len(wrap.prefix) + len(doc.ids)].max(axis=0)
            pooled.append({int(f): float(own[f]) for f in np.nonzero(own)[0]})
    return pooled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--workload", choices=("mixed", "long"), default="mixed")
    parser.add_argument("--profile", action="store_true", help="time per operator group (CPU)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, or auto [default: cpu]")
    parser.add_argument("--dtype", default="auto", help="[default: fp32 on CPU, bf16 on GPU]")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--batch-tokens", type=int, default=None)
    parser.add_argument(
        "--sae",
        default=None,
        help="SAE to use [default: the shipped one, else random TopK 8192/k=32]",
    )
    parser.add_argument(
        "--dtypes",
        default=None,
        help="compare precisions instead (e.g. float32,bfloat16,int8): tokens/s of each against "
        "its own matmul bound, and agreement with the first",
    )
    args = parser.parse_args()

    texts = benchmark_texts(args.docs, workload=args.workload)
    if args.dtypes:
        compare_dtypes(texts, args, args.dtypes.split(","))
        return
    reader = load_reader("default", device=args.device, dtype=args.dtype)
    try:
        sae = resolve_sae(args.sae, reader.model_id)
        sae_name = sae.cfg.source
    except SAEError:
        sae = random_topk_sae(reader.d_model, args.layer, reader.model_id)
        sae_name = "random TopK (8192 latents, k=32)"
    layer = sae.cfg.layer if sae.cfg.layer is not None else args.layer
    sae = sae.to(reader.device)
    lengths = [len(d.ids) for d in tokenize_documents(reader.tokenizer, texts, args.max_tokens)]
    n_tokens = sum(lengths)
    flops = useful_flops(reader, sae, layer, lengths, prefix=1)
    square = matmul_peak_gflops(reader.device, reader.dtype)
    shaped = model_matmul_peak_gflops(reader, sae)
    peak = max(square, shaped)
    where = (
        torch.cuda.get_device_name(reader.device) if reader.device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )  # fmt: skip
    print(f"machine: {where}, {reader.dtype}, torch {torch.__version__}")
    print(
        f"texts: {len(texts)} documents, {n_tokens:,} tokens (mean {n_tokens / len(texts):.0f}, max {max(lengths)})"
    )
    print(f"model: {reader.model_id} to layer {layer}; SAE: {sae_name}")
    print(
        f"matmul peak: {peak:,.0f} GFLOP/s (2048^3 {square:,.0f}, best model shape "
        f"{shaped:,.0f}); useful work {flops / n_tokens / 1e6:.1f} MFLOP/token "
        f"-> bound {peak * 1e9 / (flops / n_tokens):,.0f} tokens/s"
    )

    start = time.perf_counter()
    naive = naive_encode(reader, sae, layer, texts, args.max_tokens)
    naive_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        # the reader is already loaded for both paths; saeembed's time includes reading the
        # texts into the store, tokenising, encoding and the per-batch DuckDB transactions
        start = time.perf_counter()
        with Store(Path(tmp) / "bench.duckdb") as store:
            docs, _ = documents_from_texts(texts)
            store.add_documents("bench", docs)
            encode_corpus(
                store,
                "bench",
                reader,
                sae,
                layer=layer,
                max_tokens=args.max_tokens,
                batch_tokens=args.batch_tokens,
                progress=False,
            )
            fast_s = time.perf_counter() - start
            stored = store.sql(
                "SELECT d.text, a.feature, a.value FROM activations a JOIN documents d USING (doc_id)"
            )
    agreement = _agreement(texts, naive, stored)

    rows = [
        ("naive loop", naive_s, n_tokens / naive_s, flops / naive_s / 1e9),
        ("saeembed", fast_s, n_tokens / fast_s, flops / fast_s / 1e9),
    ]
    print(f"{'path':<12}{'seconds':>9}{'tokens/s':>11}{'GFLOP/s':>10}{'of peak':>9}")
    for name, secs, tps, gf in rows:
        print(f"{name:<12}{secs:>9.1f}{tps:>11,.0f}{gf:>10.0f}{gf / peak:>9.0%}")
    print(
        f"speed-up over naive: {naive_s / fast_s:.2f}x; same active features in {agreement:.1%} of documents"
    )
    print(f"max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    if args.profile and reader.device.type == "cpu":
        _print_profile(reader, sae, layer, texts, args, flops, peak)


def compare_dtypes(texts: list[str], args, dtypes: list[str]) -> None:
    """Encode ``texts`` once per precision in this process (each into a fresh store, model
    loading excluded): tokens/s against that precision's matmul bound measured here, and how
    each document's concepts agree with the first precision's (presence, and strong with the
    first precision's thresholds: half the 99th percentile of each concept's maximum)."""
    runs = {}
    for name in dtypes:
        reader = load_reader("default", device=args.device,
                             dtype="float32" if name == "int8" else name)  # fmt: skip
        if name == "int8":  # dynamic int8 quantisation of the reader's linear layers (VNNI)
            torch.ao.quantization.quantize_dynamic(
                reader.model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
            )
        try:
            sae = resolve_sae(args.sae, reader.model_id)
        except SAEError:
            sae = random_topk_sae(reader.d_model, args.layer, reader.model_id)
        layer = sae.cfg.layer if sae.cfg.layer is not None else args.layer
        lengths = [len(d.ids) for d in tokenize_documents(reader.tokenizer, texts, args.max_tokens)]
        flops = useful_flops(reader, sae, layer, lengths, prefix=1)
        bound = matmul_peak_gflops(reader.device, torch.float32 if name == "int8" else reader.dtype)
        with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "b.duckdb") as store:
            docs, _ = documents_from_texts(texts)
            store.add_documents("bench", docs)
            start = time.perf_counter()
            encode_corpus(store, "bench", reader, sae, layer=layer, max_tokens=args.max_tokens,
                          batch_tokens=args.batch_tokens, progress=False)  # fmt: skip
            seconds = time.perf_counter() - start
            rows = store.sql("SELECT doc_id, feature, value FROM activations")
        runs[name] = (sum(lengths), seconds, flops, bound, rows)
        print(f"{name}: {sum(lengths) / seconds:,.0f} tokens/s ({seconds:.1f} s); "
              f"{flops / seconds / 1e9:,.0f} GFLOP/s of a {bound:,.0f} GFLOP/s "
              f"{'fp32 ' if name == 'int8' else ''}matmul bound")  # fmt: skip
    first = dtypes[0]
    base = runs[first][4]
    half_p99 = base.group_by("feature").agg((pl.col("value").quantile(0.99) / 2).alias("t"))
    print(f"\n{'dtype':<10}{'tokens/s':>10}{'x ' + first:>12}{'of bound':>10}"
          f"{'presence J':>12}{'strong J':>10}{'worst':>8}{'value r':>9}")  # fmt: skip
    for name, (n_tokens, seconds, flops, bound, rows) in runs.items():
        presence = _jaccards(base, rows)
        strong = _jaccards(_strong(base, half_p99), _strong(rows, half_p99))
        joined = base.join(rows, on=["doc_id", "feature"], how="inner")
        r = np.corrcoef(joined["value"], joined["value_right"])[0, 1]
        speed = runs[first][1] / seconds
        print(f"{name:<10}{n_tokens / seconds:>10,.0f}{speed:>11.2f}x{flops / seconds / 1e9 / bound:>10.0%}"
              f"{presence.mean():>12.3f}{strong.mean():>10.3f}{strong.min():>8.3f}{r:>9.4f}")  # fmt: skip


def _strong(rows: pl.DataFrame, half_p99: pl.DataFrame) -> pl.DataFrame:
    return rows.join(half_p99, on="feature").filter(pl.col("value") > pl.col("t"))


def _jaccards(a: pl.DataFrame, b: pl.DataFrame) -> np.ndarray:
    """Per document: |A ∩ B| / |A ∪ B| of the concept sets (1 where both are empty)."""
    sets_a = {d: set(g["feature"].to_list()) for (d,), g in a.group_by("doc_id")}
    sets_b = {d: set(g["feature"].to_list()) for (d,), g in b.group_by("doc_id")}
    out = []
    for doc in set(sets_a) | set(sets_b):
        x, y = sets_a.get(doc, set()), sets_b.get(doc, set())
        out.append(len(x & y) / len(x | y) if x | y else 1.0)
    return np.array(out)


def _print_profile(reader, sae: SAE, layer: int, texts: list[str], args, flops, peak) -> None:
    """The encoding core alone (no store), once under torch.profiler: time per operator group,
    and the share of the bound it would reach if element-wise work cost nothing."""
    chunk = pl.DataFrame({"doc_id": np.arange(len(texts)), "text": texts})
    wrapping = wrapping_for(reader.tokenizer)
    batch_tokens = args.batch_tokens or default_batch_tokens(reader.device)

    def run() -> None:
        for _ in encode_texts(reader, sae, layer, wrapping, chunk,
                              max_tokens=args.max_tokens, batch_tokens=batch_tokens):  # fmt: skip
            pass

    seconds = profile_groups(run)
    total = sum(seconds.values())
    print(f"\nper operator group (torch.profiler, self CPU time of {total:.1f} s):")
    for group, secs in seconds.items():
        print(f"  {group:<58}{secs:>7.1f} s {secs / total:>6.1%}")
    free = total - seconds[ELEMENTWISE]
    print(f"with element-wise work free: {flops / free / 1e9 / peak:.0%} of the bound")


def _agreement(texts: list[str], naive: list[dict[int, float]], stored: pl.DataFrame) -> float:
    by_text = {t: set(g["feature"].to_list()) for (t,), g in stored.group_by("text")}
    same = sum(by_text.get(text, set()) == set(ref) for text, ref in zip(texts, naive, strict=True))
    return same / len(texts)


if __name__ == "__main__":
    main()
