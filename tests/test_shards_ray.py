"""Shard encoding on a real local Ray cluster (2 CPU actors) with the tiny test model: the
shards equal the single-process encoding row for row, and a kill -9 of an actor in the middle
of the run still ends with every document stored exactly once. Slow: each run starts a cluster."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from saeembed.api import ShardOptions, encode
from saeembed.errors import SaeembedError
from saeembed.store.shard_layout import MANIFEST, read_manifest
from tests.test_shards import CHUNK, SHARD, corpus_file, opts, same_store_rows

pytest.importorskip("ray", reason="Ray is a dev dependency: make install brings it")
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

RAY_SCRIPT = """
import saeembed.encoding.core as encoding
encoding.CHUNK_DOCS = {chunk}
from saeembed.api import EncodingOptions, ShardOptions, encode
encode({source!r}, {out!r}, encoding=EncodingOptions(model={model!r}, sae={sae!r}, device="cpu"),
       progress=False, shards=ShardOptions(shard_docs={shard}, engine="ray", workers=2))
"""


def run_on_ray(source, out, tiny_model, tiny_sae) -> subprocess.Popen:
    script = RAY_SCRIPT.format(
        chunk=CHUNK, source=str(source), out=out, model=str(tiny_model), sae=str(tiny_sae),
        shard=SHARD,
    )  # fmt: skip
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, start_new_session=True)


def actor_pids() -> list[int]:
    """Processes of Ray Data's map actors (their title names the actor class)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"MapWorker" in title and b"_RayShardEncoder" in title:
                found.append(int(entry.name))
    return found


def test_ray_shards_equal_the_single_process_encoding(tmp_path, tiny_model, tiny_sae, monkeypatch):
    import saeembed.encoding.core as encoding

    monkeypatch.setattr(encoding, "CHUNK_DOCS", CHUNK)
    source = corpus_file(tmp_path / "c.csv", 300, 4)
    encode(source, tmp_path / "single.duckdb", **opts(tiny_model, tiny_sae))
    proc = run_on_ray(source, f"{tmp_path}/shards/", tiny_model, tiny_sae)
    assert proc.wait(timeout=600) == 0
    assert len(read_manifest(tmp_path / "shards")) == 10
    same_store_rows(tmp_path / "single.duckdb", tmp_path / "shards")


def test_kill_9_of_an_actor_stores_every_document_once(tmp_path, tiny_model, tiny_sae, monkeypatch):
    import saeembed.encoding.core as encoding

    monkeypatch.setattr(encoding, "CHUNK_DOCS", CHUNK)
    source = corpus_file(tmp_path / "c.csv", 640, 5)
    encode(source, tmp_path / "single.duckdb", **opts(tiny_model, tiny_sae))
    out = f"{tmp_path}/shards/"
    proc = run_on_ray(source, out, tiny_model, tiny_sae)
    manifest = tmp_path / "shards" / MANIFEST
    killed = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and killed is None:
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= 2:
            pids = actor_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
        time.sleep(0.05)
    assert killed is not None, "no actor to kill before the run ended"
    code = proc.wait(timeout=600)
    if code != 0:  # Ray gave up on the shard: a rerun finishes the job
        assert run_on_ray(source, out, tiny_model, tiny_sae).wait(timeout=600) == 0
    listed = read_manifest(tmp_path / "shards")
    assert sorted(s.index for s in listed) == list(range(20))
    same_store_rows(tmp_path / "single.duckdb", tmp_path / "shards")


def running(tracked: dict[int, int]) -> dict[int, str]:
    """{pid: title} of the tracked processes still running (not zombies, not reused PIDs)."""
    left = {}
    for pid, start in tracked.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:80]
        except OSError:
            continue
        if stat[0] != b"Z" and int(stat[19]) == start:
            left[pid] = title.decode(errors="replace")
    return left


def process_tree(root: int) -> dict[int, int]:
    from saeembed.shards.reaper import _processes, descendants

    return descendants([root], _processes())


def test_a_killed_driver_leaves_no_ray_process(tmp_path, tiny_model, tiny_sae):
    # the raylet's agents outlived a kill -9 of the driver by a minute (a report to the dead
    # GCS, 60 s timeout); the reaper ends them, and the actors, within seconds
    source = corpus_file(tmp_path / "c.csv", 640, 5)
    proc = run_on_ray(source, f"{tmp_path}/shards/", tiny_model, tiny_sae)
    manifest = tmp_path / "shards" / MANIFEST
    tracked: dict[int, int] = {}
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        tracked.update(process_tree(proc.pid))
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.1)
    titles = " ".join(running(tracked).values())
    assert "DashboardAgent" in titles and "RuntimeEnvAgent" in titles and "MapWorker" in titles
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = time.time()
    while running(tracked) and time.time() - killed < 30:
        time.sleep(0.1)
    assert not running(tracked), running(tracked)
    assert time.time() - killed < 10


ADDRESS_SCRIPT = RAY_SCRIPT.replace("workers=2)", "workers=2, address={address!r})")


def test_a_running_cluster_is_joined_and_left_running(tmp_path, tiny_model, tiny_sae):
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    ray_cli = Path(sys.executable).with_name("ray")
    # its own temporary folder: `ray start` records its address there for ray.init() to join
    # (/tmp/ray/ray_current_cluster otherwise, left behind by a cluster stopped with SIGTERM)
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must be
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", f"--temp-dir={temp}"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    tracked: dict[int, int] = {}
    try:
        deadline = time.time() + 120
        while not any("raylet" in t for t in running(process_tree(head.pid)).values()):
            assert time.time() < deadline and head.poll() is None, "ray start --head failed"
            time.sleep(0.2)
        time.sleep(2)
        tracked = process_tree(head.pid)
        address = f"127.0.0.1:{port}"
        source = corpus_file(tmp_path / "c.csv", 100, 7)
        script = ADDRESS_SCRIPT.format(
            chunk=CHUNK, source=str(source), out=f"{tmp_path}/shards/", model=str(tiny_model),
            sae=str(tiny_sae), shard=SHARD, address=address,
        )  # fmt: skip
        # `ray start` turns on token authentication: a driver then needs RAY_AUTH_MODE=token
        env = {**os.environ, "RAY_AUTH_MODE": "token"}
        done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                              text=True, timeout=600, env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert len(read_manifest(tmp_path / "shards")) == 4
        # the user's cluster is left as it was: its head processes all still run
        assert head.poll() is None
        assert set(running(tracked)) == set(tracked)
        # a run without --address starts its own cluster, even where Ray would join this one
        # (RAY_ADDRESS, or the address `ray start` records) and refuse its CPU count there
        script = RAY_SCRIPT.format(
            chunk=CHUNK, source=str(source), out=f"{tmp_path}/local/", model=str(tiny_model),
            sae=str(tiny_sae), shard=SHARD,
        )  # fmt: skip
        local = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                               text=True, timeout=600, env={**env, "RAY_ADDRESS": address})  # fmt: skip
        assert local.returncode == 0, local.stderr[-2000:]
        assert len(read_manifest(tmp_path / "local")) == 4
        assert set(running(tracked)) == set(tracked)
    finally:
        tracked.update(process_tree(head.pid))
        head.terminate()  # `ray start --block` stops its cluster on SIGTERM
        head.wait(timeout=60)
        for pid in running(tracked):  # what outlives it (the agents), by their ids
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def test_an_unreachable_address_is_one_line(tmp_path, tiny_model, tiny_sae):
    source = corpus_file(tmp_path / "c.csv", 10, 6)
    with pytest.raises(SaeembedError) as excinfo:
        encode(source, f"{tmp_path}/shards/", **opts(tiny_model, tiny_sae), shards=ShardOptions(engine="ray", address="127.0.0.1:9"))  # fmt: skip
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in str(excinfo.value)
    assert "\n" not in str(excinfo.value)
    assert not (tmp_path / "shards").exists()


def test_fewer_shards_than_workers_is_said(tmp_path, tiny_model, tiny_sae):
    # 20 documents make one shard of SHARD (32): the second actor has nothing to do, and the user
    # hears how to split the corpus across the workers
    source = corpus_file(tmp_path / "c.csv", 20, 4)
    script = RAY_SCRIPT.format(
        chunk=CHUNK, source=str(source), out=f"{tmp_path}/shards/", model=str(tiny_model),
        sae=str(tiny_sae), shard=SHARD,
    )  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 shard(s) to encode for 2 workers: 1 worker(s) will idle" in done.stderr
    assert len(read_manifest(tmp_path / "shards")) == 1
