"""The LLM labeller end to end against a real OpenAI-compatible server: `transformers serve`
(the `serving` extra of transformers, from PyPI) serving the embedded default model,
SmolLM2-135M-Instruct, from its local checkpoint on CPU with the Hub switched off.

Between the labeller and the server sits a small pass-through proxy that records every request:
when it came and went (so the requests in flight at once are counted, not assumed), what the
server answered, and the token counts the server reports. The proxy can answer 503 instead of
forwarding, and it drops the client's connection when the server is gone, as a dead server would.

The model is far too small to label well; what is tested is the pipeline: labels written with
their source, requests in flight at once, retries, the response cache, and a run whose server
is killed half-way being resumed without duplicating anything. Replies are capped at a few
tokens to keep the runtime down (the cap is part of the request, so of the cache key)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from saeembed.api import EncodingOptions
from saeembed.labels import label_features, llm, read_labels
from saeembed.labels.llm import LLMConfig, LLMError

pytestmark = pytest.mark.slow

SERVED = "SmolLM2-135M-Instruct"  # the name the server answers to (a link to the checkpoint)
SOURCE = f"llm:{SERVED}"
LABEL_MAX_TOKENS, DETECT_MAX_TOKENS = 16, 8
READY_TIMEOUT = 600.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LLMServer:
    """`transformers serve` in a subprocess, the model pinned and preloaded."""

    def __init__(self, workdir: Path, port: int):
        self.workdir, self.port = workdir, port
        self.log_path = workdir / "serve.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        command = [sys.executable, "-m", "transformers.cli.transformers", "serve", SERVED]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"transformers serve exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=5) as response:
                    if SERVED in {m["id"] for m in json.loads(response.read())["data"]}:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"transformers serve not ready after {READY_TIMEOUT:.0f} s:\n{self.log()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, requests in flight are cut off."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # uvicorn waits for requests in flight; don't wait long
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Request:
    kind: str  # "label" or "detect"
    key: str  # hash of the request body: the same prompt and parameters, the same key
    messages: list
    start: float
    end: float | None = None
    status: int | str | None = None  # HTTP status relayed, 503 injected, or "dropped"
    usage: dict | None = None


class Proxy:
    """Forwards POSTs to the server and records each one (see the module docstring)."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.in_flight = self.max_in_flight = 0
        self.fail_first: set[str] = set()  # kinds whose next request gets a 503
        self.retry_after = "2"
        # forwarded requests wait here until this many are in flight at once (0: no wait), so a
        # test of concurrency does not depend on how fast the server answers the first ones
        self.hold_until = 0
        self.gate = threading.Condition(self.lock)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                proxy.handle(self, raw)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def reset_peak(self) -> None:
        with self.lock:
            self.max_in_flight = self.in_flight

    def handle(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        body = json.loads(raw)
        kind = "detect" if body["messages"][-1]["content"].startswith("Property:") else "label"
        request = Request(kind, hashlib.sha256(raw).hexdigest(), body["messages"], time.monotonic())
        with self.lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            inject = kind in self.fail_first
            self.fail_first.discard(kind)
            if self.hold_until and self.in_flight >= self.hold_until:
                self.hold_until = 0
                self.gate.notify_all()
        status, data, retry_after = 503, b'{"error": "overloaded"}', self.retry_after
        if not inject:
            retry_after = None
            with self.lock:  # a client that never sends that many in parallel is let go after 60 s
                if not self.gate.wait_for(lambda: not self.hold_until, timeout=60):
                    self.hold_until = 0
            try:
                connection = http.client.HTTPConnection(
                    "127.0.0.1", self.upstream_port, timeout=900
                )
                connection.request("POST", handler.path, raw, {"Content-Type": "application/json"})
                response = connection.getresponse()
                status, data = response.status, response.read()
                connection.close()
            except (OSError, http.client.HTTPException):
                status = "dropped"  # the server is gone: so is the client's connection
        if status == 200:
            request.usage = json.loads(data).get("usage")
        # out of flight before the client can read the answer and send its next request
        with self.lock:
            self.in_flight -= 1
            request.status, request.end = status, time.monotonic()
        if status == "dropped":
            handler.close_connection = True
        else:
            self.reply(handler, status, data, retry_after)

    @staticmethod
    def reply(handler, status: int, data: bytes, retry_after: str | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            handler.send_header("Retry-After", retry_after)
        handler.end_headers()
        handler.wfile.write(data)


@pytest.fixture(scope="module")
def model_dir(saeembed_home) -> Path:
    from saeembed.reader import default_model_dir

    return default_model_dir()  # built from the PyPI wheel on a fresh machine


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("serve")
    (workdir / SERVED).symlink_to(model_dir, target_is_directory=True)
    server = LLMServer(workdir, free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(server):
    proxy = Proxy(server.port)
    yield proxy
    proxy.server.shutdown()


@pytest.fixture(scope="module")
def reviews_store(saeembed_home, tmp_path_factory):
    """40 Rotten Tomatoes snippets encoded with the default reader and SAE."""
    from saeembed.api import encode
    from saeembed.data import load_dataset

    frame = load_dataset("rotten-tomatoes").filter(pl.col("category") != "plot")
    texts = frame.sample(40, seed=3)["text"].to_list()
    db = tmp_path_factory.mktemp("llm-store") / "reviews.duckdb"
    encode(texts, db, corpus="rt", progress=False, encoding=EncodingOptions(device="cpu"))
    return db


@pytest.fixture(scope="module")
def chosen(reviews_store):
    """Five features that get both a labelling and a detection prompt, spread over the list."""
    from saeembed.labels.evidence import load_evidence
    from saeembed.labels.llm import detection_items, label_prompt
    from saeembed.store import Store

    with Store(reviews_store, read_only=True) as store:
        evidence = load_evidence(store, store.resolve_encoder(None))
    config = LLMConfig()
    usable = [
        f
        for f in range(evidence.d_sae)
        if evidence.n_active(f) > 0
        and label_prompt(evidence, f, config) is not None
        and detection_items(evidence, f, config) is not None
    ]
    assert len(usable) >= 5, "the test corpus should give at least 5 features to label"
    return [usable[i * len(usable) // 5] for i in range(5)]


@pytest.fixture
def labelling(monkeypatch, tmp_path, model_dir, reviews_store):
    """A fresh response cache (under a private SAEEMBED_HOME) and short replies."""
    monkeypatch.setenv("SAEEMBED_HOME", str(tmp_path / "home"))

    @dataclass(frozen=True)
    class ShortReplies(LLMConfig):
        label_max_tokens: int = LABEL_MAX_TOKENS
        detect_max_tokens: int = DETECT_MAX_TOKENS

    monkeypatch.setattr(llm, "LLMConfig", ShortReplies)
    from saeembed.store import Store

    with Store(reviews_store) as store:
        yield store


def run(store, proxy, features, *, concurrency, redo=False):
    return label_features(
        store,
        method="llm",
        features=features,
        api_base=proxy.url,
        llm_model=SERVED,
        concurrency=concurrency,
        redo=redo,
        progress=False,
    )


def llm_labels(store) -> pl.DataFrame:
    labels = read_labels(store, store.resolve_encoder(None))
    return labels.filter(pl.col("label_source") == SOURCE)


def test_labels_concurrency_retries_and_cache(labelling, proxy, chosen, model_dir):
    store, features = labelling, chosen[:3]
    proxy.reset_peak()
    before = len(proxy.requests)
    proxy.fail_first = {"label", "detect"}  # the first request of each kind gets a 503
    proxy.hold_until = 3  # answers wait until three requests are in flight together
    started = time.monotonic()
    frame = run(store, proxy, features, concurrency=3)
    seconds = time.monotonic() - started
    sent = proxy.requests[before:]

    # labels written, with their source, a label and a detection score in [0, 1]
    assert sorted(frame["feature"].to_list()) == features
    assert frame["label_source"].unique().to_list() == [SOURCE]
    stored = llm_labels(store).filter(pl.col("feature").is_in(features))
    assert stored.height == 3 and stored["feature"].n_unique() == 3
    assert all(isinstance(x, str) and x.strip() for x in stored["label"])
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in stored["label_score"])

    # 3 requests were in flight at once (the server queues them and generates one at a time),
    # and never more than the 3 asked for; a client that sent fewer at once would have been let
    # through by the proxy's gate after 60 s and seen here
    assert proxy.max_in_flight == 3

    # each injected 503 was retried after the 2 s the server asked for, then answered
    injected = [r for r in sent if r.status == 503]
    assert sorted(r.kind for r in injected) == ["detect", "label"]
    for failed in injected:
        retried = [r for r in sent if r.key == failed.key and r.start > failed.end]
        assert [r.status for r in retried] == [200]
        assert retried[0].start - failed.end >= 1.9
    answered = [r for r in sent if r.status == 200]
    assert len(answered) == 6 and len({r.key for r in answered}) == 6

    # the tokens the labeller pays for: the tokenizer's count of each prompt is the server's
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for r in answered:
        ids = tokenizer.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        assert len(ids) == r.usage["prompt_tokens"]
        cap = LABEL_MAX_TOKENS if r.kind == "label" else DETECT_MAX_TOKENS
        assert 0 < r.usage["completion_tokens"] <= cap
    per_kind = {kind: [r.usage for r in answered if r.kind == kind] for kind in ("label", "detect")}
    print(f"\n{len(features)} features, concurrency 3, {seconds:.0f} s; per request:")
    for kind, usages in per_kind.items():
        prompt = [u["prompt_tokens"] for u in usages]
        completion = [u["completion_tokens"] for u in usages]
        print(f"  {kind}: prompt tokens {prompt}, completion tokens {completion}")

    # a rerun sends nothing (all labelled); a redo sends nothing either (all cached)
    n_sent = len(proxy.requests)
    assert run(store, proxy, features, concurrency=3).height == 0
    again = run(store, proxy, features, concurrency=3, redo=True)
    assert len(proxy.requests) == n_sent
    assert again.sort("feature")["label"].to_list() == frame.sort("feature")["label"].to_list()
    assert again.sort("feature")["label_score"].to_list() == (
        frame.sort("feature")["label_score"].to_list()
    )


def test_server_killed_mid_run_then_resume(labelling, proxy, server, chosen):
    store, features = labelling, chosen[3:]
    before = len(proxy.requests)
    outcome: dict = {}

    def first_run():
        try:
            run(store, proxy, features, concurrency=1)
        except Exception as error:  # noqa: BLE001 - checked below
            outcome["error"] = error

    thread = threading.Thread(target=first_run)
    thread.start()
    # feature 1 done (labelled and scored), feature 2's labelling request being generated: kill
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        sent = proxy.requests[before:]
        if len(sent) >= 3 and sent[2].end is None and [r.status for r in sent[:2]] == [200, 200]:
            break
        assert thread.is_alive(), f"the run ended before the kill: {outcome}"
        time.sleep(0.1)
    else:
        pytest.fail("the first feature was not labelled within 10 minutes")
    # kill at once: request 3 is already with the server (the proxy forwards what it records),
    # and a short reply can finish within a second on an idle machine
    server.kill()
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), LLMError)
    assert "cannot reach LLM endpoint" in str(outcome["error"])
    killed = proxy.requests[before:]
    assert killed[2].status == "dropped" and killed[2].key != killed[0].key
    # what finished before the kill was saved; the feature cut off was not
    assert llm_labels(store).filter(pl.col("feature").is_in(features))["feature"].to_list() == [
        features[0]
    ]
    first_label = llm_labels(store).filter(pl.col("feature") == features[0])["label"][0]

    server.start()  # same port, so the proxy's upstream is back
    resumed = run(store, proxy, features, concurrency=1)
    assert resumed["feature"].to_list() == [features[1]]
    stored = llm_labels(store).filter(pl.col("feature").is_in(features)).sort("feature")
    assert stored["feature"].to_list() == sorted(features)  # each exactly once
    assert stored.filter(pl.col("feature") == features[0])["label"][0] == first_label
    assert all(0.0 <= s <= 1.0 for s in stored["label_score"])
    # nothing was generated twice: every prompt the server answered, it answered once
    answered = [r.key for r in proxy.requests[before:] if r.status == 200]
    assert len(answered) == 4 and len(set(answered)) == 4
    # the request cut off by the kill was sent again after the restart, and answered
    assert any(r.key == killed[2].key and r.status == 200 for r in proxy.requests[before:])
