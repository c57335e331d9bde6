"""The Ray engine for shard encoding: the shard tasks become a Ray dataset, and `map_batches`
runs them on a pool of actors, each of which loads the reader and SAE once (`ShardEncoder`) and
writes its shards' files itself; the driver commits each shard as its result streams back. Ray
restarts a killed actor and retries its task; a shard's files are written atomically and the
same each time, so a retry or a rerun stores every document once.

`--address` joins a running cluster (`ray start --head`, or inside `ray job submit`), which the
run leaves running; without it a local cluster of ``workers`` CPUs is started for the run,
without the dashboard, and stopped when the run ends. Ray ties the head processes to the
driver, and `saeembed.shards.reaper` ends the raylet's agents and workers within seconds of a
driver that was killed (they would outlive it by a minute). Ray is an optional dependency
(``pip install 'saeembed[ray]'``)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
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


def _own_raylets() -> list[int]:
    """The raylets this process started (its children named raylet): a local cluster's."""
    found = []
    try:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            command, _, rest = stat.partition(b" (")[2].rpartition(b") ")
            if command == b"raylet" and int(rest.split()[1]) == os.getpid():
                found.append(int(name))
    except (OSError, ValueError, IndexError):
        return []
    return found


def _start_reaper() -> subprocess.Popen | None:
    """Start `saeembed.shards.reaper` for the raylet of the local cluster this process started,
    so that its agents and workers end within seconds of the driver, however it ends (Linux)."""
    raylets = _own_raylets() if sys.platform.startswith("linux") else []
    if not raylets:
        return None  # joined a running cluster, or no /proc
    script = Path(__file__).with_name("reaper.py")
    try:
        return subprocess.Popen(
            [sys.executable, str(script), *map(str, raylets)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    except OSError as e:
        log.debug("no reaper for the local Ray cluster: %s", e)
        return None


def _stop_reaper(reaper: subprocess.Popen) -> None:
    """Close the reaper's pipe: it ends what the cluster left running, and exits."""
    try:
        reaper.stdin.close()
        reaper.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        pass


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
    started, reaper = False, None
    if not ray.is_initialized():
        # no dashboard (saeembed reads results from the driver); Ray's init cannot leave out the
        # raylet's dashboard and runtime-env agents, which the reaper ends with the driver
        options = {"include_dashboard": False, "logging_level": logging.WARNING}
        if address in (None, "local"):
            # "local": a new cluster even when `ray start` or RAY_ADDRESS names one (Ray joins
            # that for address=None, and refuses num_cpus there)
            options.update(address="local", num_cpus=workers * (threads or 1))
        else:
            options["address"] = address
        ray.init(**options)
        started = True
        reaper = _start_reaper()  # only for a cluster this process started
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
            ray.shutdown()  # a local cluster stops; from a running cluster, the driver leaves
        if reaper is not None:
            _stop_reaper(reaper)
