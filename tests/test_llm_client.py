"""The LLM client's failure handling, against a real local HTTP server that misbehaves on purpose:
retries that honour Retry-After, dropped connections and truncated answers, a failed run that
stops sending at once and keeps what finished, and replies the labeller cannot use."""

from __future__ import annotations

import json
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from saeembed.labels import llm
from saeembed.labels.evidence import load_evidence
from saeembed.labels.llm import (
    MAX_RETRY_AFTER,
    ChatClient,
    LLMConfig,
    LLMError,
    label_with_llm,
    llm_label_feature,
    retry_after,
)
from saeembed.labels.offline import FeatureLabel
from tests.labelled_store import build_labelled_store

REPLY = {"choices": [{"message": {"role": "assistant", "content": "LABEL: film\nDESCRIPTION: x"}}]}


class Flaky(BaseHTTPRequestHandler):
    """Answers each request with the next scripted behaviour, then with a good reply."""

    script: list[str] = []
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        Flaky.seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        step = Flaky.script.pop(0) if Flaky.script else "ok"
        data = json.dumps(REPLY).encode()
        if step == "drop":  # the connection closes without an answer (a killed server)
            self.close_connection = True
            return
        if step.startswith("503"):
            self.send_response(503)
            if ":" in step:
                self.send_header("Retry-After", step.split(":", 1)[1])
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if step == "truncate":  # half an answer, then the connection closes
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky(tmp_path, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(llm.time, "sleep", waits.append)
    Flaky.script, Flaky.seen = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = ChatClient(f"http://127.0.0.1:{server.server_port}/v1", "m", cache=tmp_path)
    yield client, waits
    server.shutdown()


def test_retry_after_is_honoured_within_bounds():
    assert retry_after(None, 4) == 4
    assert retry_after("2", 4) == 2.0
    assert retry_after("-3", 4) == 0.0
    assert retry_after("100000", 4) == MAX_RETRY_AFTER
    assert retry_after("soon", 4) == 4
    assert 5 <= retry_after(formatdate(time.time() + 10, usegmt=True), 4) <= 10


def test_503_then_answer_waits_what_the_server_asks(flaky):
    client, waits = flaky
    Flaky.script = ["503:7", "503"]
    messages = [{"role": "user", "content": "hi"}]
    assert client.complete(messages, max_tokens=12).startswith("LABEL: film")
    assert waits == [7.0, 2]  # Retry-After first, then the plain backoff of the second attempt
    assert len(Flaky.seen) == 3 and {s["max_tokens"] for s in Flaky.seen} == {12}
    assert client.complete(messages, max_tokens=12).startswith("LABEL")  # cached
    assert len(Flaky.seen) == 3


def test_dropped_connections_and_truncated_answers_are_retried(flaky):
    client, waits = flaky
    Flaky.script = ["drop", "truncate"]
    assert client.complete([{"role": "user", "content": "hi"}]).startswith("LABEL: film")
    assert len(Flaky.seen) == 3 and waits == [1, 2]
    client.max_retries = 1
    Flaky.script = ["drop", "truncate"]
    with pytest.raises(LLMError, match="cannot reach LLM endpoint"):
        client.complete([{"role": "user", "content": "other"}])


def test_a_failed_run_stops_sending_and_keeps_what_finished(monkeypatch):
    """Before, a failure let every queued feature be sent (each waiting out its retries on a dead
    server) and dropped the labels finished after the failing one."""
    called: list[int] = []

    def fake_label(client, evidence, feature, config, *, score=True):
        called.append(feature)
        if feature == 0:
            time.sleep(0.2)
            raise LLMError("endpoint gone")
        time.sleep(2.0)
        return FeatureLabel(feature, f"f{feature}", None, None, 0.1, 1, [])

    monkeypatch.setattr(llm, "llm_label_feature", fake_label)
    saved: list[int] = []
    with pytest.raises(LLMError, match="endpoint gone"):
        label_with_llm(
            None,
            None,
            list(range(8)),
            LLMConfig(concurrency=2),
            on_label=lambda x: saved.append(x.feature),
        )
    assert sorted(called) == [0, 1, 2]  # features 3..7 were never sent
    assert saved == [1, 2]


class Canned:
    """A client that answers every request with ``reply`` and records the requests."""

    def __init__(self, reply: str):
        self.reply, self.requests = reply, []

    def complete(self, messages, *, max_tokens=200):
        self.requests.append((messages, max_tokens))
        return self.reply


def test_unusable_label_reply_skips_the_feature_and_caps_reach_the_request(tmp_path):
    store, _ = build_labelled_store(tmp_path / "labels.duckdb")
    try:
        evidence = load_evidence(store, store.resolve_encoder(None))
    finally:
        store.close()
    config = LLMConfig(label_max_tokens=24, detect_max_tokens=12)
    empty = Canned("  \n")
    assert llm_label_feature(empty, evidence, 0, config) is None  # logged, not raised
    assert label_with_llm(empty, evidence, [0, 1], config) == []
    good = Canned("LABEL: film\nDESCRIPTION: the word film.\n1")
    label = llm_label_feature(good, evidence, 0, config)
    assert label.label == "film" and 0.0 <= label.score <= 1.0
    assert [max_tokens for _, max_tokens in good.requests] == [24, 12]
