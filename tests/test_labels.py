"""Feature labelling on a constructed store with known triggers: the offline labeller, the label
table, the LLM labeller against a real local HTTP endpoint, `show` and `search`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import polars as pl
import pytest
import torch

from saeembed.errors import InputError, StoreError
from saeembed.labels import export_labels, import_labels, label_features, read_labels
from saeembed.labels.evidence import load_evidence, snippet
from saeembed.labels.llm import ChatClient, LLMError, parse_detection, parse_label
from saeembed.labels.search import search_features
from saeembed.labels.show import feature_report, render_report
from saeembed.labels.table import ensure_shipped_labels
from tests.fakes import send_json
from tests.labelled_store import build_labelled_store


@pytest.fixture
def labelled(tmp_path):
    store, texts = build_labelled_store(tmp_path / "labels.duckdb")
    yield store, texts
    store.close()


def truth(texts, word_set):
    return [i for i, t in enumerate(texts) if set(t.split()) & word_set]


def test_evidence_splits_documents_by_id(labelled):
    store, texts = labelled
    evidence = load_evidence(store, store.resolve_encoder(None))
    assert evidence.n_docs == len(texts)
    np.testing.assert_array_equal(evidence.heldout, evidence.doc_ids % 5 == 0)
    assert 20 < evidence.heldout.sum() < 60  # about a fifth
    assert evidence.n_active(0) == len(truth(texts, {"film"}))
    assert evidence.n_active(3) == 0
    values = evidence.act_value[evidence.rows(0)]
    assert (np.diff(values) <= 0).all()  # strongest first


def test_evidence_of_given_documents_only(labelled):
    store, texts = labelled
    encoder = store.resolve_encoder(None)
    everything = load_evidence(store, encoder)
    kept = everything.doc_ids[::3]
    part = load_evidence(store, encoder, only=np.concatenate([kept, [12345]]))  # one unknown id
    np.testing.assert_array_equal(part.doc_ids, kept)
    np.testing.assert_array_equal(part.heldout, kept % 5 == 0)
    film = set(everything.doc_ids[everything.act_doc[everything.rows(0)]].tolist())
    assert part.n_active(0) == len(film & set(kept.tolist()))
    with pytest.raises(StoreError, match="none of the 1 given documents is encoded"):
        load_evidence(store, encoder, only=np.array([12345]))


def test_offline_labels_name_the_trigger_words(labelled):
    store, texts = labelled
    frame = label_features(store, progress=False).sort("feature")
    assert frame["feature"].to_list() == [0, 1, 2]  # feature 3 is never active
    by_feature = {r["feature"]: r for r in frame.iter_rows(named=True)}
    film = by_feature[0]
    assert film["label"] == "film"
    assert film["label_score"] == 1.0  # the matcher is exact on held-out documents
    assert film["n_docs"] == len(truth(texts, {"film"}))
    assert film["density"] == pytest.approx(film["n_docs"] / len(texts))
    assert all("«film»" in e for e in film["examples"])
    assert set(by_feature[1]["label"].split(" / ")) == {"goal", "match"}
    assert by_feature[1]["label_score"] == 1.0
    assert by_feature[2]["label_score"] is None or by_feature[2]["label_score"] < 0.75
    assert frame["label_source"].unique().to_list() == ["offline"]


def test_labels_round_trip_and_relabelling_replaces(labelled, tmp_path):
    store, _ = labelled
    encoder = store.resolve_encoder(None)
    first = label_features(store, progress=False)
    label_features(store, progress=False)
    stored = read_labels(store, encoder)
    assert stored.height == first.height  # replaced, not duplicated
    assert stored.select("feature", "label", "label_score").equals(
        first.sort("feature").select("feature", "label", "label_score")
    )
    path = export_labels(stored, tmp_path / "labels.parquet", sae_sha256=encoder.sae_sha256)
    store.con.execute("DELETE FROM features").fetchall()
    imported = import_labels(store, path)
    assert read_labels(store, encoder).equals(stored)
    assert imported.height == stored.height


def test_export_refuses_another_sae(labelled, tmp_path):
    store, _ = labelled
    label_features(store, progress=False)
    encoder = store.resolve_encoder(None)
    path = export_labels(read_labels(store, encoder), tmp_path / "l.parquet", sae_sha256="cd" * 32)
    with pytest.raises(InputError, match="labels the SAE with hash cdcdcdcdcdcd"):
        import_labels(store, path)


def test_only_chosen_features_and_bad_feature(labelled):
    store, _ = labelled
    frame = label_features(store, features=[1], progress=False)
    assert frame["feature"].to_list() == [1]
    with pytest.raises(InputError, match="feature 9 does not exist; features are 0..3"):
        label_features(store, features=[9], progress=False)


def test_shipped_labels_apply_to_a_matching_encoder(labelled, tmp_path, monkeypatch):
    store, _ = labelled
    encoder = store.resolve_encoder(None)
    frame = label_features(store, progress=False)
    sae_dir = tmp_path / "pretrained" / "tiny"
    sae_dir.mkdir(parents=True)
    (sae_dir / "cfg.json").write_text("{}")
    export_labels(frame, sae_dir / "labels.parquet", sae_sha256=encoder.sae_sha256)
    monkeypatch.setattr("saeembed.pretrained.PRETRAINED_DIR", tmp_path / "pretrained")
    assert ensure_shipped_labels(store, encoder) == 0  # it already has labels
    store.con.execute("DELETE FROM features").fetchall()
    assert ensure_shipped_labels(store, encoder) == frame.height
    taken = read_labels(store, encoder)
    assert taken["label"].to_list() == frame.sort("feature")["label"].to_list()
    assert taken["label_source"].unique().to_list() == ["shipped:offline"]  # says where from
    from saeembed.labels.show import feature_report, render_report

    shown = render_report(feature_report(store, encoder, 1, top=1))
    assert "(shipped:offline, detection score" in shown and "`saeembed features label`" in shown
    # shipped evidence embeddings reach an encoder that has labels but no evidence
    from saeembed.labels.table import read_evidence, save_shipped_evidence

    vectors = np.eye(4, 8, dtype=np.float32)
    save_shipped_evidence(sae_dir / "evidence.safetensors", np.arange(4), vectors, "m", "other")
    store.con.execute("DELETE FROM feature_evidence").fetchall()
    ensure_shipped_labels(store, encoder)
    assert len(read_evidence(store, encoder, "m")[0]) == 0  # made for another SAE: refused
    save_shipped_evidence(
        sae_dir / "evidence.safetensors", np.arange(4), vectors, "m", encoder.sae_sha256
    )
    assert ensure_shipped_labels(store, encoder) == 0  # no labels written: it has them
    features, stored = read_evidence(store, encoder, "m")
    assert features.tolist() == [0, 1, 2, 3] and np.array_equal(stored, vectors)


def test_feature_report_numbers(labelled):
    store, texts = labelled
    label_features(store, progress=False)
    encoder = store.resolve_encoder(None)
    report = feature_report(store, encoder, 0, top=3)
    n = len(truth(texts, {"film"}))
    assert (report.n_docs, report.n_encoded) == (n, len(texts))
    assert report.histogram["n_docs"].sum() == n
    assert report.top.height == 3
    assert (report.top["value"].diff().drop_nulls() <= 0).all()
    assert all("«film»" in c for c in report.top["context"])
    text = render_report(report)
    assert "label: film  (offline, detection score 1.00)" in text
    assert f"active in {n:,} of {len(texts):,} documents" in text
    with pytest.raises(InputError, match="feature 4 does not exist"):
        feature_report(store, encoder, 4)


def test_snippet_marks_and_trims():
    text = "x" * 100 + " film " + "y" * 100
    out = snippet(text, 101, 105, width=10)
    assert out == "…xxxxxxxxx «film» yyyyyyyyy…"
    assert snippet("short one", None, None) == "short one"


class BagOfWords:
    """A tiny deterministic embedder (hashing bag of words), standing in for MiniLM."""

    model_id = "bag-of-words"

    def embed(self, texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.replace("/", " ").split():
                out[i, sum(map(ord, word)) % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_search_whole_words_and_meaning(labelled, saeembed_home):
    store, _ = labelled
    label_features(store, progress=False)
    encoder = store.resolve_encoder(None)
    hits = search_features(store, encoder, "FILM", semantic=False)
    assert hits["feature"].to_list() == [0]
    assert hits["match"].to_list() == ["word"]
    assert search_features(store, encoder, "fil", semantic=False).height == 0  # not in a word
    ranked = search_features(store, encoder, "goal", embedder=BagOfWords())
    assert ranked["feature"][0] == 1 and ranked["match"][0] == "word"
    assert ranked.height == 3 and set(ranked["match"][1:]) == {"semantic"}
    with pytest.raises(InputError, match="search phrase is empty"):
        search_features(store, encoder, "  ")


# ---- the LLM labeller, against a real HTTP server -------------------------------------------
class FakeLLM(BaseHTTPRequestHandler):
    """An OpenAI-compatible /chat/completions that labels by the most common «marked» word and
    detects by looking for the label in each numbered text."""

    requests: list[dict] = []
    fail_after: int | None = None

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeLLM.requests.append({"body": body, "auth": self.headers.get("Authorization")})
        if FakeLLM.fail_after is not None and len(FakeLLM.requests) > FakeLLM.fail_after:
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b'{"error": "bad request"}')
            return
        prompt = body["messages"][-1]["content"]
        if prompt.startswith("Property:"):
            label = prompt.splitlines()[0].removeprefix("Property: ").strip()
            numbered = [line for line in prompt.splitlines() if line[:1].isdigit()]
            hits = [line.split(".")[0] for line in numbered if label in line.split(" ", 1)[1]]
            content = ", ".join(hits) or "NONE"
        else:
            marked = [p.split("»")[0] for p in prompt.split("«")[1:]]
            word = max(set(marked), key=marked.count)
            content = f"LABEL: {word}\nDESCRIPTION: documents with the word {word}."
        send_json(self, {"choices": [{"message": {"role": "assistant", "content": content}}]})

    def log_message(self, *args):
        pass


@pytest.fixture
def llm_server(tmp_path, monkeypatch):
    monkeypatch.setenv("SAEEMBED_HOME", str(tmp_path / "home"))
    FakeLLM.requests, FakeLLM.fail_after = [], None
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_llm_labels_scores_and_cache(labelled, llm_server):
    store, _ = labelled
    frame = label_features(
        store, method="llm", api_base=llm_server, llm_model="fake", api_key="k", progress=False
    ).sort("feature")
    by_feature = {r["feature"]: r for r in frame.iter_rows(named=True)}
    assert by_feature[0]["label"] == "film"
    assert by_feature[0]["label_score"] == 1.0
    assert by_feature[0]["description"] == "documents with the word film."
    assert frame["label_source"].unique().to_list() == ["llm:fake"]
    assert {r["auth"] for r in FakeLLM.requests} == {"Bearer k"}
    prompt = FakeLLM.requests[0]["body"]["messages"][-1]["content"]
    assert "Top-activating examples:" in prompt and "«" in prompt
    assert FakeLLM.requests[0]["body"]["temperature"] == 0
    n_requests = len(FakeLLM.requests)
    # a rerun skips what is labelled; a redo asks again but every answer comes from the cache
    assert label_features(store, method="llm", api_base=llm_server, llm_model="fake").height == 0
    label_features(store, method="llm", api_base=llm_server, llm_model="fake", redo=True)
    assert len(FakeLLM.requests) == n_requests


def test_llm_interrupted_run_resumes(labelled, llm_server, monkeypatch):
    store, _ = labelled
    encoder = store.resolve_encoder(None)
    monkeypatch.setattr("saeembed.labels.SAVE_EVERY", 1)
    FakeLLM.fail_after = 2  # label + detection of the first feature, then errors
    with pytest.raises(LLMError, match="answered HTTP 400"):
        label_features(store, method="llm", api_base=llm_server, llm_model="fake", concurrency=1)
    assert read_labels(store, encoder)["feature"].to_list() == [0]
    FakeLLM.fail_after = None
    done = label_features(store, method="llm", api_base=llm_server, llm_model="fake")
    assert sorted(done["feature"].to_list()) == [1, 2]
    assert read_labels(store, encoder)["feature"].to_list() == [0, 1, 2]


def test_llm_errors_are_one_line(labelled, tmp_path):
    store, _ = labelled
    with pytest.raises(InputError, match="needs --api-base URL and --llm-model NAME"):
        label_features(store, method="llm")
    with pytest.raises(InputError, match="is not a URL"):
        ChatClient("localhost:8000", "m")
    client = ChatClient("http://127.0.0.1:9/v1", "m", max_retries=0, cache=tmp_path)
    with pytest.raises(LLMError, match="cannot reach LLM endpoint .* is the server running"):
        client.complete([{"role": "user", "content": "hi"}])


def test_reply_parsing():
    assert parse_label("LABEL: Negation words\nDESCRIPTION: not, never.") == (
        "Negation words",
        "not, never.",
    )
    assert parse_label('**Label:** "sports"') == ("sports", None)
    assert parse_label("movies and films\n") == ("movies and films", None)
    for refusal in ("I cannot help with that.", "Sorry, I can't do this.", "LABEL: I'm unable to"):
        with pytest.raises(LLMError, match="declined to label"):
            parse_label(refusal)
    with pytest.raises(LLMError, match="characters long, not a short phrase"):
        parse_label("LABEL: " + "word " * 400_000)  # a 2 MB reply
    with pytest.raises(LLMError, match="characters long"):
        parse_label("word " * 400_000)  # the same, ignoring the format
    assert parse_label("LABEL: sorrow and grief")[0] == "sorrow and grief"  # not a refusal
    assert parse_detection("2, 5 and 11", 10).tolist() == [
        False, True, False, False, True, False, False, False, False, False,
    ]  # fmt: skip
    assert parse_detection("NONE", 3).tolist() == [False] * 3


def test_label_frame_columns_are_stable(labelled):
    store, _ = labelled
    frame = label_features(store, progress=False)
    assert frame.columns == [
        "feature", "label", "description", "label_source", "label_score", "density", "n_docs",
        "examples",
    ]  # fmt: skip
    assert frame.schema["examples"] == pl.List(pl.Utf8)


@pytest.mark.slow
def test_search_by_meaning_with_the_real_minilm(labelled, saeembed_home):
    store, _ = labelled
    label_features(store, progress=False)
    encoder = store.resolve_encoder(None)
    ranked = search_features(store, encoder, "cinema and movies")
    assert ranked["feature"][0] == 0  # "film" is the closest label in meaning
    assert ranked["match"].to_list() == ["semantic"] * ranked.height
    sims = ranked["similarity"].to_list()
    assert sims == sorted(sims, reverse=True) and sims[0] > 0.4
    sport = search_features(store, encoder, "football score")
    assert sport["feature"][0] == 1  # "goal / match"


def test_token_shapes():
    from saeembed.labels.offline import token_shape

    assert token_shape("a Film here", 1, 6) == "capitalised words"
    assert token_shape("filmmaker", 4, 9) == "word pieces"
    assert token_shape("in 1999", 2, 7) == "numbers"
    assert token_shape("wow !", 3, 5) == "punctuation"
    assert token_shape("a film", 1, 6) is None


def test_weak_activations_count_on_neither_side(labelled):
    from saeembed.labels.evidence import IGNORED, NEGATIVE, POSITIVE, document_classes

    store, _ = labelled
    evidence = load_evidence(store, store.resolve_encoder(None))
    rows = evidence.rows(0)
    evidence.act_value[rows.stop - 1] = 0.01  # the weakest "film" document becomes weak
    classes = document_classes(evidence, 0)
    weak_doc = evidence.act_doc[rows.stop - 1]
    assert classes[weak_doc] == IGNORED
    assert (classes[evidence.act_doc[rows.start : rows.stop - 1]] == POSITIVE).all()
    assert (classes == NEGATIVE).sum() == evidence.n_docs - evidence.n_active(0)


def test_layout_whitespace_is_a_term():
    from saeembed.labels.evidence import words_with_spans
    from saeembed.labels.offline import token_shape

    assert [w for w, _, _ in words_with_spans("One line.\n\nNext  one\tend")] == [
        "one", "line", ".", "⏎", "next", "␣␣", "one", "⇥", "end",
    ]  # fmt: skip
    assert token_shape("a  b", 1, 2) == "whitespace"


def test_a_lone_space_token_belongs_to_the_next_word():
    from saeembed.labels.offline import token_shape

    assert token_shape("Jan 29", 3, 4) == "numbers"
    store_texts = ["on Jan 29 we met"]
    from saeembed.labels.evidence import Evidence

    evidence = Evidence(
        doc_ids=np.array([1]),
        texts=store_texts,
        heldout=np.array([False]),
        d_sae=1,
        act_doc=np.array([0], dtype=np.int32),
        act_value=np.array([1.0], dtype=np.float32),
        act_start=np.array([6], dtype=np.int32),
        act_end=np.array([7], dtype=np.int32),
        offsets=np.array([0, 1]),
    )
    assert evidence.words(0)[evidence.peak_word_index(0)][0] == "29"


def test_report_token_lists_hold_whole_words_and_symbols_only(tiny_model, tiny_sae):
    """The tokens a feature promotes and suppresses, as feature pages list them: a token that
    continues a word ("gevity") names nothing alone and is left out."""
    from saeembed.labels.output import promoted_and_suppressed
    from saeembed.reader import load_reader
    from saeembed.sae import load_sae

    reader = load_reader(str(tiny_model), device="cpu")
    sae = load_sae(str(tiny_sae))
    lists = promoted_and_suppressed(sae, reader, [0, 1, 2], n=5)
    assert set(lists) == {0, 1, 2}
    for up, down in lists.values():  # the tiny reader's vocabulary is whole words
        assert len(up) == 5 and len(down) == 5

    # a real BPE vocabulary (the default reader's): pieces that continue a word are left out
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"Ġthe": 0, "Ġlon": 1, "gevity": 2, "Ġfilm": 3, ".": 4, "ERSION": 5, "Ġgood": 6}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    bpe = PreTrainedTokenizerFast(tokenizer_object=core)

    class Reader:  # what promoted_and_suppressed reads of a reader
        tokenizer = bpe
        model = type("M", (), {"get_output_embeddings": lambda self: head, "model": None})()

    head = torch.nn.Linear(sae.cfg.d_in, len(vocab), bias=False)
    (up, down), *_ = promoted_and_suppressed(sae, Reader(), [0], n=7).values()
    assert set(up) | set(down) <= {"the", "lon", "film", ".", "good"}
    assert not {"gevity", "ERSION"} & (set(up) | set(down))
