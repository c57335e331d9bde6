"""Streaming collected activations back (see `saeembed.train.activations` for the on-disk
layout): `ActivationLoader` gives endless shuffled, exactly resumable training batches, and
`iter_split` every token of one split once, for evaluation. A collection with a target site
(transcoders: ``manifest["target_site"]``) gives ``(x, target)`` pairs instead of single
tensors, aligned row for row and shuffled by the same permutation.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from saeembed.errors import InputError
from saeembed.train.activations import TARGET_KEYS, load_manifest


class ActivationLoader:
    """Endless shuffled batches of ``batch_size`` tokens (float32 on ``device``) from one split;
    ``(x, target)`` pairs when the collection has a target site (`has_target`).

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
        self.has_target = bool(self.manifest.get("target_site"))
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

    def _read(self, group: list[dict]) -> tuple[np.ndarray, ...]:
        kinds = (self.split, TARGET_KEYS[self.split]) if self.has_target else (self.split,)
        return tuple(
            np.concatenate([np.load(self.directory / s[kind]) for s in group]) for kind in kinds
        )

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
                    arrays = [torch.from_numpy(a).to(self.device) for a in reads[i].result()]
                    reads[i] = None  # free the host copy
                    perm = np.random.default_rng([self.seed, self.epoch, g]).permutation(
                        len(arrays[0])
                    )
                    perm = torch.from_numpy(perm).to(self.device)
                    for b in range(max(self.batch - first, 0), n_batches):
                        self.batch = first + b + 1  # the position after this batch, for checkpoints
                        rows = perm[b * self.batch_size : (b + 1) * self.batch_size]
                        batch = tuple(a[rows].float() for a in arrays)
                        yield batch if self.has_target else batch[0]
                self.epoch, self.batch = self.epoch + 1, 0


def iter_split(
    directory: str | Path,
    split: str = "val",
    *,
    batch_size: int = 4096,
    device: str | torch.device = "cpu",
    max_tokens: int | None = None,
) -> Iterator[torch.Tensor]:
    """Every token of one split once, in shard order (for evaluation), as float32 batches, or
    ``(x, target)`` pairs of them when the collection has a target site."""
    directory = Path(directory)
    left = max_tokens if max_tokens is not None else float("inf")
    manifest = load_manifest(directory)
    kinds = (split, TARGET_KEYS[split]) if manifest.get("target_site") else (split,)
    for shard in manifest["shards"]:
        if shard[f"{split}_tokens"] == 0:
            continue
        arrays = [torch.from_numpy(np.load(directory / shard[kind])) for kind in kinds]
        for start in range(0, len(arrays[0]), batch_size):
            if left <= 0:
                return
            stop = start + min(batch_size, int(min(left, batch_size)))
            parts = tuple(a[start:stop].to(device).float() for a in arrays)
            left -= len(parts[0])
            yield parts if len(parts) > 1 else parts[0]
