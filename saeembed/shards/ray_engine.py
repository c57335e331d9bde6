"""The Ray engine for shard encoding: the shard tasks become a Ray dataset, and `map_batches`
runs them on a pool of actors, each of which loads the reader and SAE once (`ShardEncoder`) and
writes its shards' files itself; the driver commits each shard as its result streams back. Ray
restarts a killed actor and retries its task; a shard's files are written atomically and the
same each time, so a retry or a rerun stores every document once.

`--address` joins a running cluster (`ray start --head`, or inside `ray job submit`); without
it a local cluster of ``workers`` CPUs is started for the run. Ray is an optional dependency
(``pip install 'saeembed[ray]'``)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from saeembed.errors import InputError
from saeembed.shards.worker import EncoderArgs, ShardEncoder, ShardResult, ShardTask

log = logging.getLogger(__name__)


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError(
            "--engine ray needs Ray Data; install it with pip install 'saeembed[ray]'"
        ) from None
    return ray


def check_address(address: str | None) -> None:
    """An unreachable ``--address`` is a one-line error before anything is written (Ray itself
    would retry for minutes)."""
    _ray()
    if address in (None, "auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(
            f"--address {address!r} is not HOST:PORT (for example 10.0.0.5:6379, or "
            "ray://10.0.0.5:10001); pass the head node's address"
        )
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise InputError(
            f"cannot reach the Ray cluster at {address} ({e.strerror or e}); start it with "
            "`ray start --head` there, or drop --address to run on a local cluster"
        ) from None


class _RayShardEncoder:
    """A Ray Data actor: one `ShardEncoder`, one shard per call."""

    def __init__(self, root: str, args: dict, fingerprint: str, chunk_docs: int):
        self.worker = ShardEncoder(root, EncoderArgs(**args), fingerprint, chunk_docs=chunk_docs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [self.worker.encode(ShardTask.from_json(t)).to_json() for t in batch["task"]]
        return {"result": np.array(results, dtype=object)}


def run_on_ray(
    root: Path,
    tasks: list[ShardTask],
    args: EncoderArgs,
    fingerprint: str,
    *,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0,
    chunk_docs: int,
) -> Iterator[ShardResult]:
    """Encode ``tasks`` on Ray actors, yielding each shard's result as it finishes."""
    ray = _ray()
    workers = workers or (1 if gpus_per_worker else max(1, (os.cpu_count() or 2) // 2))
    threads = args.threads or (None if gpus_per_worker else 1)
    if len(tasks) < workers:  # one shard is one actor's work
        log.warning(
            "%d shard(s) to encode for %d workers: %d worker(s) will idle; a smaller "
            "--shard-docs (in a new directory) splits the corpus across them",
            len(tasks), workers, workers - len(tasks),
        )  # fmt: skip
    started = False
    if not ray.is_initialized():
        options = {"include_dashboard": False, "logging_level": logging.WARNING}
        if address in (None, "local"):
            options["num_cpus"] = workers * (threads or 1)
        else:
            options["address"] = address
        ray.init(**options)
        started = True
    try:
        # Ray Data logs each dataset's plan and timing: shown with -vv; -q leaves errors only
        ours = logging.getLogger("saeembed")
        if ours.isEnabledFor(logging.DEBUG):
            levels = (logging.INFO, logging.INFO)
        elif ours.isEnabledFor(logging.WARNING):
            levels = (logging.WARNING, logging.ERROR)
        else:
            levels = (logging.ERROR, logging.ERROR)
        logging.getLogger("ray").setLevel(levels[0])
        logging.getLogger("ray.data").setLevel(levels[1])
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        dataset = ray.data.from_items(
            [{"task": t.to_json()} for t in tasks],
            override_num_blocks=len(tasks),
        )
        worker_args = {**asdict(args), "threads": threads}
        if gpus_per_worker:
            worker_args["device"] = "cuda" if args.device == "auto" else args.device
        encoded = dataset.map_batches(
            _RayShardEncoder,
            fn_constructor_kwargs={
                "root": str(Path(root).resolve()),
                "args": worker_args,
                "fingerprint": fingerprint,
                "chunk_docs": chunk_docs,
            },
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(workers, len(tasks))),
            num_cpus=threads or 1,
            num_gpus=gpus_per_worker or None,
        )
        for row in encoded.iter_rows():
            yield ShardResult.from_json(row["result"])
    finally:
        if started:
            ray.shutdown()
