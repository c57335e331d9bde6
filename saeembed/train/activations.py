"""Residual-stream activations for SAE training: collecting them from a reader into resumable
on-disk shards, and streaming them back as shuffled batches.

A collection directory holds ``manifest.json`` and, per chunk of documents, ``train-NNNNN.npy``
and ``val-NNNNN.npy`` (``[n_tokens, d_model]``, float16 unless a value does not fit) plus
``docs-NNNNN.npy`` (the uint64 content keys of the chunk's documents). Only the documents' own
tokens are kept (never the BOS/chat wrapping). Documents whose key is divisible by ``val_every``
go to the validation shards, so evaluation never sees a training document.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from saeembed.encode import default_batch_tokens
from saeembed.errors import InputError
from saeembed.tokens import (
    ChatMode,
    Tokenized,
    Wrapping,
    plan_batches,
    tokenize_documents,
    wrapping_for,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "saeembed-activations"
_TOKENIZE_BLOCK = 1024  # documents tokenised at a time while walking the sources


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
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)  # a killed run never leaves a truncated shard under the final name


def _write_manifest(directory: Path, manifest: dict) -> None:
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, directory / MANIFEST)


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


def assemble(
    docs: list[Tokenized], wrapping: Wrapping, tokenizer, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids ``prefix + document + suffix`` and the mask of the documents' own tokens.

    No attention mask is needed: with right padding a causal model's real tokens never attend to
    a pad (the same batching as the encoder's)."""
    pad_id = (
        tokenizer.pad_token_id
        if tokenizer.pad_token_id is not None
        else (tokenizer.eos_token_id or 0)
    )
    pre, suf = list(wrapping.prefix), list(wrapping.suffix)
    width = max(len(d.ids) for d in docs) + len(pre) + len(suf)
    ids = torch.full((len(docs), width), pad_id, dtype=torch.long)
    own = torch.zeros((len(docs), width), dtype=torch.bool)
    for row, doc in enumerate(docs):
        n = len(doc.ids)
        ids[row, : len(pre) + n + len(suf)] = torch.tensor(
            pre + doc.ids.tolist() + suf, dtype=torch.long
        )
        own[row, len(pre) : len(pre) + n] = True
    return ids.to(device), own.to(device)


def _residuals(reader, layer: int, docs: list[_Doc], batch_tokens: int) -> list[torch.Tensor]:
    """The documents' own-token residuals ``[len, d_model]`` (float32, host), in ``docs`` order."""
    out: list[torch.Tensor | None] = [None] * len(docs)
    for chat in dict.fromkeys(d.chat for d in docs):
        wrapping = wrapping_for(reader.tokenizer, chat)
        group = [i for i, d in enumerate(docs) if d.chat == chat and len(d.tokens.ids)]
        for batch in plan_batches([len(docs[i].tokens.ids) for i in group], batch_tokens):
            members = [group[j] for j in batch]
            ids, own = assemble(
                [docs[i].tokens for i in members], wrapping, reader.tokenizer, reader.device
            )
            hidden = reader.residual_stream(ids, None, layer)[own].float().cpu()
            lengths = [len(docs[i].tokens.ids) for i in members]
            for i, part in zip(members, torch.split(hidden, lengths), strict=True):
                out[i] = part
    empty = torch.zeros(0, reader.d_model)
    return [t if t is not None else empty for t in out]


def _store_dtype(array: np.ndarray) -> np.ndarray:
    """float16 halves the disk and memory; fall back to float32 for values float16 cannot hold."""
    return array.astype(np.float16) if np.abs(array).max(initial=0.0) < 60000 else array


def _write_chunk(
    directory: Path, index: int, docs: list[_Doc], residuals: list[torch.Tensor], val_every: int
) -> dict:
    is_val = [val_every > 0 and d.key % val_every == 0 for d in docs]
    train = [r for r, v in zip(residuals, is_val, strict=True) if not v]
    val = [r for r, v in zip(residuals, is_val, strict=True) if v]
    d_model = residuals[0].shape[1]
    train_arr = torch.cat(train).numpy() if train else np.zeros((0, d_model), np.float32)
    val_arr = torch.cat(val).numpy() if val else np.zeros((0, d_model), np.float32)
    names = {
        "train": f"train-{index:05d}.npy",
        "val": f"val-{index:05d}.npy",
        "docs": f"docs-{index:05d}.npy",
    }
    _atomic_save(directory / names["train"], _store_dtype(train_arr))
    _atomic_save(directory / names["val"], _store_dtype(val_arr))
    _atomic_save(directory / names["docs"], np.array([d.key for d in docs], dtype=np.uint64))
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
        "train_norm_sum": float(np.linalg.norm(train_arr.astype(np.float64), axis=1).sum()),
        "sources": sources,
    }


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
) -> dict:
    """Collect the residual stream after block ``layer`` for every document of ``sources`` into
    ``out_dir`` and return the manifest.

    Resumable: each chunk's shards are written atomically and then recorded in the manifest, and a
    rerun skips every document already recorded. ``on_shard(i)`` is called after chunk ``i`` is
    committed (for progress reporting, or to interrupt a run in tests)."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    header = {
        "format": FORMAT,
        "version": 1,
        "model": reader.model_id,
        "revision": reader.revision,
        "layer": layer,
        "d_model": reader.d_model,
        "max_tokens": max_tokens,
        "val_every": val_every,
    }
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
            residuals = _residuals(reader, layer, chunk, budget)
            shard = _write_chunk(directory, len(manifest["shards"]), chunk, residuals, val_every)
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
        names = {
            "train": f"train-{i:05d}.npy",
            "val": f"val-{i:05d}.npy",
            "docs": f"docs-{i:05d}.npy",
        }
        _atomic_save(directory / names["train"], _store_dtype(np.asarray(tr, np.float32)))
        _atomic_save(directory / names["val"], _store_dtype(np.asarray(va, np.float32)))
        _atomic_save(directory / names["docs"], np.zeros(0, np.uint64))
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


class ActivationLoader:
    """Endless shuffled batches of ``batch_size`` tokens (float32 on ``device``) from one split.

    Each epoch visits the shards in a random order, in groups of at least ``buffer_tokens``
    tokens; a group's tokens are permuted together, so a batch mixes documents from several
    shards. The stream is a pure function of (seed, epoch), so ``state_dict`` (epoch, batch)
    is enough to resume it exactly. A group's last ``< batch_size`` tokens are skipped in that
    epoch (they fall elsewhere in the next one's permutation)."""

    def __init__(
        self,
        directory: str | Path,
        batch_size: int,
        *,
        split: str = "train",
        device: str | torch.device = "cpu",
        seed: int = 0,
        buffer_tokens: int = 1 << 18,
    ):
        self.directory = Path(directory)
        self.manifest = load_manifest(directory)
        self.shards = [s for s in self.manifest["shards"] if s[f"{split}_tokens"] > 0]
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.device, self.buffer_tokens = torch.device(device), max(buffer_tokens, batch_size)
        self.n_tokens = sum(s[f"{split}_tokens"] for s in self.shards)
        if self.n_tokens < batch_size:
            raise InputError(
                f"{directory} holds {self.n_tokens} {split} tokens, fewer than one batch of {batch_size}"
            )
        self.epoch, self.batch = 0, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])

    def _groups(self, epoch: int) -> list[list[dict]]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
        groups: list[list[dict]] = [[]]
        n = 0
        for i in order:
            if n >= self.buffer_tokens:
                groups.append([])
                n = 0
            groups[-1].append(self.shards[i])
            n += self.shards[i][f"{self.split}_tokens"]
        if len(groups) > 1 and n < self.batch_size:  # a runt group would yield nothing: merge it
            groups[-2].extend(groups.pop())
        return groups

    def _read(self, group: list[dict]) -> np.ndarray:
        return np.concatenate([np.load(self.directory / s[self.split]) for s in group])

    def _plan(self) -> list[tuple[int, list[dict], int, int]]:
        """(group index, shards, first batch, batches) of this epoch's groups not yet finished."""
        plan, first = [], 0
        for g, group in enumerate(self._groups(self.epoch)):
            n_batches = sum(s[f"{self.split}_tokens"] for s in group) // self.batch_size
            if self.batch < first + n_batches:  # resuming past a group skips it without reading
                plan.append((g, group, first, n_batches))
            first += n_batches
        return plan

    def __iter__(self) -> Iterator[torch.Tensor]:
        # the next group is read from disk in a thread while the current one is consumed
        with ThreadPoolExecutor(max_workers=1) as pool:
            while True:
                plan = self._plan()
                reads = [pool.submit(self._read, plan[0][1])] if plan else []
                for i, (g, _shards, first, n_batches) in enumerate(plan):
                    if i + 1 < len(plan):
                        reads.append(pool.submit(self._read, plan[i + 1][1]))
                    tokens = torch.from_numpy(reads[i].result()).to(self.device)
                    reads[i] = None  # free the host copy
                    perm = np.random.default_rng([self.seed, self.epoch, g]).permutation(
                        len(tokens)
                    )
                    perm = torch.from_numpy(perm).to(self.device)
                    for b in range(max(self.batch - first, 0), n_batches):
                        self.batch = first + b + 1  # the position after this batch, for checkpoints
                        yield tokens[perm[b * self.batch_size : (b + 1) * self.batch_size]].float()
                self.epoch, self.batch = self.epoch + 1, 0


def iter_split(
    directory: str | Path,
    split: str = "val",
    *,
    batch_size: int = 4096,
    device: str | torch.device = "cpu",
    max_tokens: int | None = None,
) -> Iterator[torch.Tensor]:
    """Every token of one split once, in shard order (for evaluation), as float32 batches."""
    directory = Path(directory)
    left = max_tokens if max_tokens is not None else float("inf")
    for shard in load_manifest(directory)["shards"]:
        if shard[f"{split}_tokens"] == 0:
            continue
        data = torch.from_numpy(np.load(directory / shard[split]))
        for start in range(0, len(data), batch_size):
            if left <= 0:
                return
            part = data[start : start + min(batch_size, int(min(left, batch_size)))]
            left -= len(part)
            yield part.to(device).float()
