"""Residual-stream activations for SAE training: collecting them from a reader into resumable
on-disk shards (`collect_activations`, or `save_activations` for ready-made arrays). Streaming
them back as shuffled batches is `saeembed.train.loader`.

A collection directory holds ``manifest.json`` and, per chunk of documents, ``train-NNNNN.npy``
and ``val-NNNNN.npy`` (``[n_tokens, d_model]``, float16 unless a value does not fit) plus
``docs-NNNNN.npy`` (the uint64 content keys of the chunk's documents). Only the documents' own
tokens are kept (never the BOS/chat wrapping). Documents whose key is divisible by ``val_every``
go to the validation shards, so evaluation never sees a training document.

With a target site (``target_site``, e.g. ``mlp_out`` for transcoders reading ``mlp_in``), the same
forward pass also writes ``target-NNNNN.npy`` and ``valtarget-NNNNN.npy``, aligned row for row
with ``train-NNNNN.npy`` and ``val-NNNNN.npy`` (`TARGET_KEYS`); the manifest records
``target_site``, ``d_target`` and the targets' ``target_mean_norm``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from saeembed.encoding.core import default_batch_tokens
from saeembed.errors import InputError
from saeembed.files import atomic_path
from saeembed.inputs.tokens import (
    ChatMode,
    Tokenized,
    assemble_batch,
    plan_batches,
    tokenize_documents,
    wrapping_for,
)
from saeembed.sites import check_site, hook_site

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "saeembed-activations"
_TOKENIZE_BLOCK = 1024  # documents tokenised at a time while walking the sources
#: The shard kind holding each split's targets, when the collection has a target site.
TARGET_KEYS = {"train": "target", "val": "valtarget"}


@dataclass
class TextSource:
    """A named list of texts, and how each is wrapped for the reader (plain text or a chat turn)."""

    name: str
    texts: Sequence[str]
    chat: ChatMode = "none"


@dataclass
class _Doc:
    source: str
    chat: ChatMode
    key: int
    tokens: Tokenized


def document_key(text: str, chat: ChatMode = "none") -> int:
    """Stable 64-bit content key of a document as the reader sees it (text + wrapping mode)."""
    return int.from_bytes(hashlib.sha256(f"{chat}\n{text}".encode()).digest()[:8], "big")


def _normalise_sources(sources) -> list[TextSource]:
    if isinstance(sources, Mapping):
        return [TextSource(str(name), list(texts)) for name, texts in sources.items()]
    sources = list(sources)
    if sources and all(isinstance(s, str) for s in sources):
        return [TextSource("texts", sources)]
    if not all(isinstance(s, TextSource) for s in sources):
        raise InputError(
            "sources must be a list of texts, a {name: texts} mapping, or TextSource objects"
        )
    return sources


def _atomic_save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # never a truncated shard
        np.save(f, array)


def _write_manifest(directory: Path, manifest: dict) -> None:
    with atomic_path(directory / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")


def load_manifest(directory: str | Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise InputError(f"{directory} holds no {MANIFEST}; collect activations into it first")
    return json.loads(path.read_text())


def _summarise(manifest: dict) -> dict:
    """Recompute the totals (tokens, per-source counts, mean norm) from the shard list."""
    shards = manifest["shards"]
    sources: dict[str, dict[str, int]] = {}
    for shard in shards:
        for name, counts in shard["sources"].items():
            total = sources.setdefault(name, {"documents": 0, "train_tokens": 0, "val_tokens": 0})
            for field_, value in counts.items():
                total[field_] += value
    train = sum(s["train_tokens"] for s in shards)
    manifest.update(
        sources=sources,
        train_tokens=train,
        val_tokens=sum(s["val_tokens"] for s in shards),
        documents=sum(c["documents"] for c in sources.values()),
        mean_norm=sum(s["train_norm_sum"] for s in shards) / train if train else None,
    )
    if manifest.get("target_site"):
        target = sum(s["target_norm_sum"] for s in shards)
        manifest["target_mean_norm"] = target / train if train else None
    return manifest


def _new_manifest(directory: Path, header: dict) -> dict:
    """The existing manifest when it was collected with the same settings, else a fresh one."""
    path = directory / MANIFEST
    if not path.is_file():
        return {**header, "shards": []}
    manifest = json.loads(path.read_text())
    for key, value in header.items():
        if manifest.get(key) != value:
            raise InputError(
                f"{directory} holds activations collected with {key}={manifest.get(key)!r}, not "
                f"{value!r}; collect into another directory"
            )
    return manifest


def _pending(
    sources: list[TextSource], done: set[int], tokenizer, max_tokens: int
) -> Iterator[_Doc]:
    """Documents not yet collected, in input order; exact duplicates are collected once."""
    seen = set(done)
    for source in sources:
        for start in range(0, len(source.texts), _TOKENIZE_BLOCK):
            block = list(source.texts[start : start + _TOKENIZE_BLOCK])
            keys = [document_key(t, source.chat) for t in block]
            fresh = [i for i, key in enumerate(keys) if key not in seen and not seen.add(key)]
            if not fresh:  # (tokenizers fail on an empty list)
                continue
            tokenized = tokenize_documents(tokenizer, [block[i] for i in fresh], max_tokens)
            for i, tok in zip(fresh, tokenized, strict=True):
                yield _Doc(source.name, source.chat, keys[i], tok)


def _chunks(docs: Iterator[_Doc], shard_tokens: int) -> Iterator[list[_Doc]]:
    """Consecutive documents grouped until they hold ``shard_tokens`` tokens. The grouping depends
    only on the pending documents, so a resumed run cuts the same chunks as an uninterrupted one."""
    chunk: list[_Doc] = []
    n = 0
    for doc in docs:
        chunk.append(doc)
        n += len(doc.tokens.ids)
        if n >= shard_tokens:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


class _BothRead(Exception):
    """Raised once both sites are read: nothing after them runs."""


@torch.inference_mode()
def site_pair(
    reader, ids: torch.Tensor, layer: int, site: str, target_site: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations ``[batch, seq, width]`` at ``site`` and ``target_site`` of block ``layer``,
    from one forward pass that stops once both are read (right-padded ``ids``, no mask)."""
    if not 0 <= layer < len(reader.layers):
        raise InputError(f"layer {layer} is outside 0..{len(reader.layers) - 1}")
    captured: dict[str, torch.Tensor] = {}

    def reading(name: str):
        def read(x, _target):
            captured[name] = x
            if len(captured) == 2:
                raise _BothRead

        return read

    handles = [hook_site(reader.layers[layer], s, reading(s)) for s in (site, target_site)]
    try:
        reader.model(input_ids=ids, use_cache=False)
    except _BothRead:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return captured[site], captured[target_site]


def _read_batch(reader, ids, own, layer: int, site: str, target_site: str | None) -> torch.Tensor:
    """The own tokens' activations at ``site`` ``[n, width]`` (float32, host), with those at
    ``target_site`` appended as further columns when there is one."""
    if target_site is None:
        return reader.site_activations(ids, None, layer, site)[own].float().cpu()
    x, target = site_pair(reader, ids, layer, site, target_site)
    return torch.cat([x[own], target[own]], 1).float().cpu()


def _residuals(
    reader,
    layer: int,
    docs: list[_Doc],
    batch_tokens: int,
    site: str = "resid",
    target_site: str | None = None,
) -> list[torch.Tensor]:
    """The documents' own-token activations at ``site`` of block ``layer`` ``[len, width]``
    (float32, host), in ``docs`` order; with ``target_site``, its activations follow as more
    columns ``[len, width + target width]``."""
    out: list[torch.Tensor | None] = [None] * len(docs)
    for chat in dict.fromkeys(d.chat for d in docs):
        wrapping = wrapping_for(reader.tokenizer, chat)
        group = [i for i, d in enumerate(docs) if d.chat == chat and len(d.tokens.ids)]
        for batch in plan_batches([len(docs[i].tokens.ids) for i in group], batch_tokens):
            members = [group[j] for j in batch]
            ids, own = assemble_batch(
                [docs[i].tokens for i in members], wrapping, reader.tokenizer, reader.device
            )
            hidden = _read_batch(reader, ids, own, layer, site, target_site)
            lengths = [len(docs[i].tokens.ids) for i in members]
            for i, part in zip(members, torch.split(hidden, lengths), strict=True):
                out[i] = part
    width = reader.site_width(site) + (reader.site_width(target_site) if target_site else 0)
    empty = torch.zeros(0, width)
    return [t if t is not None else empty for t in out]


def _store_dtype(array: np.ndarray) -> np.ndarray:
    """float16 halves the disk and memory; fall back to float32 for values float16 cannot hold."""
    return array.astype(np.float16) if np.abs(array).max(initial=0.0) < 60000 else array


def _save_shard(
    directory: Path,
    index: int,
    train: np.ndarray,
    val: np.ndarray,
    keys: np.ndarray,
    targets: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, str]:
    """Write shard ``index`` (train and val activations, document keys, and the train and val
    targets when given) atomically; return the file names by kind, as the manifest records them."""
    arrays = {"train": _store_dtype(train), "val": _store_dtype(val), "docs": keys}
    if targets is not None:
        arrays.update(zip(TARGET_KEYS.values(), map(_store_dtype, targets), strict=True))
    names = {kind: f"{kind}-{index:05d}.npy" for kind in arrays}
    for kind, array in arrays.items():
        _atomic_save(directory / names[kind], array)
    return names


def _write_chunk(
    directory: Path,
    index: int,
    docs: list[_Doc],
    residuals: list[torch.Tensor],
    val_every: int,
    d_model: int | None = None,
) -> dict:
    """Write one chunk's shards; columns from ``d_model`` on (when given) are the targets."""
    is_val = [val_every > 0 and d.key % val_every == 0 for d in docs]
    train = [r for r, v in zip(residuals, is_val, strict=True) if not v]
    val = [r for r, v in zip(residuals, is_val, strict=True) if v]
    width = residuals[0].shape[1]
    train_arr = torch.cat(train).numpy() if train else np.zeros((0, width), np.float32)
    val_arr = torch.cat(val).numpy() if val else np.zeros((0, width), np.float32)
    targets = None
    if d_model is not None:
        targets = (train_arr[:, d_model:], val_arr[:, d_model:])
        train_arr, val_arr = train_arr[:, :d_model], val_arr[:, :d_model]
    keys = np.array([d.key for d in docs], dtype=np.uint64)
    names = _save_shard(directory, index, train_arr, val_arr, keys, targets)
    sources: dict[str, dict[str, int]] = {}
    for doc, res, v in zip(docs, residuals, is_val, strict=True):
        counts = sources.setdefault(
            doc.source, {"documents": 0, "train_tokens": 0, "val_tokens": 0}
        )
        counts["documents"] += 1
        counts["val_tokens" if v else "train_tokens"] += len(res)
    return {
        "index": index,
        **names,
        "train_tokens": len(train_arr),
        "val_tokens": len(val_arr),
        "train_norm_sum": _norm_sum(train_arr),
        **({"target_norm_sum": _norm_sum(targets[0])} if targets is not None else {}),
        "sources": sources,
    }


def _norm_sum(array: np.ndarray) -> float:
    return float(np.linalg.norm(array.astype(np.float64), axis=1).sum())


def _header(
    reader, layer: int, site: str, target_site: str | None, max_tokens: int, val_every: int
) -> dict:
    """The manifest fields that must match for a rerun to add to a collection."""
    header = {
        "format": FORMAT,
        "version": 1,
        "model": reader.model_id,
        "revision": reader.revision,
        "layer": layer,
        "d_model": reader.site_width(site),
        "max_tokens": max_tokens,
        "val_every": val_every,
    }
    if site != "resid":  # collections of the residual stream name no site
        header["site"] = site
    if target_site is not None:  # nor do collections without targets name one
        if check_site(target_site, "target site") == site:
            raise InputError(f"the target site must differ from the site ({site})")
        header.update(target_site=target_site, d_target=reader.site_width(target_site))
    return header


def collect_activations(
    reader,
    sources: Sequence[TextSource] | Mapping[str, Sequence[str]] | Sequence[str],
    layer: int,
    out_dir: str | Path,
    *,
    max_tokens: int = 256,
    batch_tokens: int | None = None,
    shard_tokens: int = 1 << 16,
    val_every: int = 20,
    progress: bool = True,
    on_shard: Callable[[int], None] | None = None,
    site: str = "resid",
    target_site: str | None = None,
) -> dict:
    """Collect the activations at ``site`` of block ``layer`` (`saeembed.sites`; by default the
    residual stream after it) for every document of ``sources`` into ``out_dir`` and return the
    manifest. With ``target_site`` (``site="mlp_in", target_site="mlp_out"`` for a transcoder)
    the activations there are collected in the same forward pass as aligned target shards.

    Resumable: each chunk's shards are written atomically and then recorded in the manifest, and a
    rerun skips every document already recorded. ``on_shard(i)`` is called after chunk ``i`` is
    committed (for progress reporting, or to interrupt a run in tests)."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    header = _header(reader, layer, site, target_site, max_tokens, val_every)
    manifest = _new_manifest(directory, header)
    done: set[int] = set()
    for shard in manifest["shards"]:
        done.update(int(k) for k in np.load(directory / shard["docs"]))
    sources = _normalise_sources(sources)
    budget = batch_tokens or default_batch_tokens(reader.device)
    total = sum(len(s.texts) for s in sources)
    bar = tqdm(
        total=total,
        initial=min(len(done), total),
        unit="doc",
        disable=not progress,
        desc=f"activations L{layer}",
        dynamic_ncols=True,
    )
    start, n_tokens = time.perf_counter(), 0
    try:
        for chunk in _chunks(_pending(sources, done, reader.tokenizer, max_tokens), shard_tokens):
            residuals = _residuals(reader, layer, chunk, budget, site, target_site)
            split_at = header["d_model"] if target_site else None
            shard = _write_chunk(
                directory, len(manifest["shards"]), chunk, residuals, val_every, split_at
            )
            manifest["shards"].append(shard)
            _write_manifest(directory, _summarise(manifest))
            n_tokens += shard["train_tokens"] + shard["val_tokens"]
            rate = n_tokens / (time.perf_counter() - start)
            bar.update(len(chunk))
            bar.set_postfix_str(f"{rate:,.0f} tok/s", refresh=False)
            log.info(
                "shard %d: %d documents, %d train + %d val tokens (%.0f tok/s)",
                shard["index"],
                len(chunk),
                shard["train_tokens"],
                shard["val_tokens"],
                rate,
            )
            if on_shard is not None:
                on_shard(shard["index"])
    finally:
        bar.close()
    manifest = _summarise(manifest)
    _write_manifest(directory, manifest)
    return manifest


def save_activations(
    out_dir: str | Path,
    train: np.ndarray,
    val: np.ndarray | None = None,
    *,
    model: str | None = None,
    layer: int | None = None,
    shard_tokens: int = 1 << 16,
) -> dict:
    """Write ready-made activations (``[n, d]`` arrays) as a collection directory, e.g. synthetic
    data or activations computed elsewhere. Each row is treated as its own document."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    val = np.zeros((0, train.shape[1]), np.float32) if val is None else val
    manifest = {
        "format": FORMAT,
        "version": 1,
        "model": model,
        "revision": None,
        "layer": layer,
        "d_model": int(train.shape[1]),
        "max_tokens": None,
        "val_every": None,
        "shards": [],
    }
    n_shards = max(1, -(-len(train) // shard_tokens))
    for i, (tr, va) in enumerate(
        zip(np.array_split(train, n_shards), np.array_split(val, n_shards), strict=True)
    ):
        names = _save_shard(
            directory,
            i,
            np.asarray(tr, np.float32),
            np.asarray(va, np.float32),
            np.zeros(0, np.uint64),
        )
        manifest["shards"].append(
            {
                "index": i,
                **names,
                "train_tokens": len(tr),
                "val_tokens": len(va),
                "train_norm_sum": float(np.linalg.norm(tr.astype(np.float64), axis=1).sum()),
                "sources": {
                    "arrays": {
                        "documents": len(tr) + len(va),
                        "train_tokens": len(tr),
                        "val_tokens": len(va),
                    }
                },
            }
        )
    manifest = _summarise(manifest)
    _write_manifest(directory, manifest)
    return manifest
