"""Choosing concepts and property retrieval on a constructed store whose answers are known."""

from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pytest

from saeembed.analysis.concepts import choose_concepts
from saeembed.analysis.doc_filter import where_sql
from saeembed.analysis.retrieve import rank_fusion, search_documents
from saeembed.errors import InputError, StoreError
from saeembed.store import Store
from tests.topic_store import build_topic_store


@pytest.fixture(scope="module")
def topics(tmp_path_factory):
    store, encoder, truth = build_topic_store(tmp_path_factory.mktemp("topics") / "t.duckdb")
    yield store, encoder, truth
    store.close()


@pytest.fixture(scope="module")
def reader(topics, tmp_path_factory):
    """A read-only copy of the topic store: `--where` filters run only on read-only stores."""
    store, encoder, truth = topics
    store.con.execute("CHECKPOINT")
    copy = tmp_path_factory.mktemp("reader") / "t.duckdb"
    shutil.copy(store.file, copy)
    with Store(copy, read_only=True) as opened:
        yield opened, opened.resolve_encoder(encoder.encoder_id), truth


def test_phrase_chooses_by_whole_words_and_meaning(topics, saeembed_home):
    store, encoder, _ = topics
    choice = choose_concepts(store, encoder, phrase="film")
    assert choice.table.row(0, named=True)["feature"] == 2
    assert choice.table.row(0, named=True)["reason"] == "word"
    movies = choose_concepts(store, encoder, phrase="cinema and movies", top=3)
    assert set(movies.features[:2]) == {2, 3}  # film / movie, actor: closest in meaning
    assert (movies.table["reason"] == "semantic").all()
    assert "film / movie" in movies.describe()


def test_explicit_ids_and_exclusions(topics):
    store, encoder, _ = topics
    choice = choose_concepts(store, encoder, features=[6, 7, 8], exclude=[8])
    assert sorted(choice.features.tolist()) == [6, 7]
    assert set(choice.table["reason"]) == {"explicit"}
    with pytest.raises(InputError, match="feature 99 does not exist"):
        choose_concepts(store, encoder, features=[99])
    with pytest.raises(InputError, match="choose concepts"):
        choose_concepts(store, encoder)


def test_positive_examples_choose_what_separates_them(topics):
    store, encoder, truth = topics
    negative = truth.filter(pl.col("tone") == "negative")["doc_id"].head(40).to_list()
    choice = choose_concepts(store, encoder, positives=negative)
    top = choice.table.row(0, named=True)
    assert top["feature"] == 7 and top["reason"] == "examples"
    has = set(store.sql("SELECT doc_id FROM activations WHERE feature = 7")["doc_id"].to_list())
    n_pos = sum(d in has for d in negative)
    assert top["freq_positive"] == pytest.approx(n_pos / 40)
    assert top["freq_rest"] == pytest.approx((len(has) - n_pos) / (truth.height - 40))
    assert top["q_positive"] < 1e-4
    assert 8 not in choice.features  # the noise concept does not separate them
    with pytest.raises(InputError, match="not an encoded document"):
        choose_concepts(store, encoder, positives=[12345])


def test_sae_search_finds_the_property(topics):
    store, encoder, truth = topics
    choice = choose_concepts(store, encoder, features=[7])
    found = search_documents(store, encoder, choice=choice, top=20)
    tone = dict(zip(truth["doc_id"].to_list(), truth["tone"].to_list(), strict=True))
    assert [tone[d] for d in found["doc_id"]] == ["negative"] * 20
    assert found["rank"].to_list() == list(range(1, 21))
    assert "terrible / awful" in found["concepts"][0][0]
    # two concepts weighted: documents with both rank above those with one
    both = search_documents(
        store, encoder, choice=choose_concepts(store, encoder, features=[2, 7]), top=5
    )
    assert all("film" in t and "terrible" in t for t in both["text"])


def test_where_filters_on_concepts_and_metadata(topics, reader):
    store, encoder, truth = reader
    choice = choose_concepts(store, encoder, features=[6])
    found = search_documents(store, encoder, choice=choice, where="feature:4 > 0", top=500)
    assert all("recipe" in t for t in found["text"])
    by_meta = search_documents(store, encoder, choice=choice, where="meta.topic = 'film'", top=500)
    want = truth.filter(pl.col("topic") == "film")["doc_id"].to_list()
    assert sorted(by_meta["doc_id"].to_list()) == sorted(want)
    assert "x.feature = 5" in where_sql("feature:5 > 0.5", encoder)
    with pytest.raises(InputError, match="feature:99 does not exist"):
        where_sql("feature:99 > 0", encoder)
    with pytest.raises(InputError, match="cannot use --where"):
        search_documents(store, encoder, choice=choice, where="nonsense ===")
    with pytest.raises(InputError, match="one statement at a time"):
        search_documents(store, encoder, choice=choice, top=5,
                         where="true) GROUP BY d.doc_id; SELECT 1 FROM documents d WHERE (true")  # fmt: skip
    writable, writable_encoder, _ = topics
    with pytest.raises(StoreError, match="read-only store"):
        search_documents(writable, writable_encoder, choice=choice, where="true")


def test_like_finds_documents_with_the_same_concepts(topics):
    store, encoder, truth = topics
    row = truth.filter((pl.col("topic") == "cooking") & (pl.col("tone") == "negative")).row(
        0, named=True
    )
    found = search_documents(store, encoder, like=row["doc_id"], top=10)
    assert row["doc_id"] not in found["doc_id"].to_list()
    meta = {r["doc_id"]: (r["topic"], r["tone"]) for r in truth.iter_rows(named=True)}
    assert sum(meta[d] == ("cooking", "negative") for d in found["doc_id"]) >= 9
    # restricted to the tone concepts, only the tone has to match
    tone_only = search_documents(
        store,
        encoder,
        like=row["doc_id"],
        choice=choose_concepts(store, encoder, features=[6, 7]),
        top=30,
    )
    assert {meta[d][1] for d in tone_only["doc_id"]} == {"negative"}


def test_dense_and_hybrid_modes(topics, saeembed_home):
    store, encoder, truth = topics
    topic = dict(zip(truth["doc_id"].to_list(), truth["topic"].to_list(), strict=True))
    dense = search_documents(store, encoder, query="baking in the kitchen", mode="dense", top=10)
    assert sum(topic[d] == "cooking" for d in dense["doc_id"]) >= 8
    choice = choose_concepts(store, encoder, features=[4, 5])
    hybrid = search_documents(store, encoder, query="baking", choice=choice, mode="hybrid", top=10)
    assert all(topic[d] == "cooking" for d in hybrid["doc_id"])


def test_rank_fusion_is_reciprocal_rank():
    fused = rank_fusion(np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0]))
    assert fused == pytest.approx([1 / 61 + 1 / 63, 2 / 62, 1 / 63 + 1 / 61])


def test_where_leaves_quoted_text_alone_and_reads_no_files(reader, tmp_path):
    store, encoder, _ = reader
    sql = where_sql("meta.topic = 'feature:3 and meta.x' OR feature:3 > 0", encoder)
    assert "'feature:3 and meta.x'" in sql and "x.feature = 3" in sql
    assert "(d.meta->>'topic')" in sql
    secret = tmp_path / "secret.txt"
    secret.write_text("film")
    choice = choose_concepts(store, encoder, features=[6])
    with pytest.raises(InputError, match="file system operations are disabled"):
        search_documents(
            store,
            encoder,
            choice=choice,
            where=f"(SELECT count(*) FROM read_text('{secret}')) > 0",
            top=5,
        )


EVIDENCE = {  # what each topic store concept "fires on", in words its label does not use
    0: "the striker scored in the final minute of the cup tie",
    1: "the referee blew the whistle and the team celebrated",
    2: "a director's new picture opened in cinemas this weekend",
    3: "the star gave a moving performance on screen",
    4: "mix the flour and eggs, then season to taste",
    5: "bake the bread until golden in a hot kitchen",
    6: "a delightful, brilliant experience that I loved",
    7: "a dreadful, disappointing mess that I hated",
    8: "and so on",
}


def test_phrase_search_reads_concepts_through_their_evidence(tmp_path, saeembed_home):
    from saeembed.analysis.retrieve import meaning_scores, reads_by_meaning
    from saeembed.embedder import load_embedder
    from saeembed.labels.table import write_evidence

    store, encoder, truth = build_topic_store(tmp_path / "t.duckdb")
    embedder = load_embedder("default")
    docs = store.sql("SELECT doc_id FROM documents ORDER BY doc_id")
    assert meaning_scores(store, encoder, docs, "hated it", embedder=embedder) is None
    vectors = embedder.embed(list(EVIDENCE.values()))
    # evidence made with another embedder cannot be compared with MiniLM's phrase embedding
    write_evidence(store, encoder, np.array(list(EVIDENCE)), vectors, "another-embedder")
    dreadful = choose_concepts(store, encoder, phrase="dreadful and awful")  # by label meaning
    assert set(dreadful.table["reason"]) == {"semantic"}
    assert not reads_by_meaning(store, encoder, "dreadful and awful", dreadful)
    write_evidence(store, encoder, np.array(list(EVIDENCE)), vectors, embedder.model_id)
    tone = dict(zip(truth["doc_id"].to_list(), truth["tone"].to_list(), strict=True))
    topic = dict(zip(truth["doc_id"].to_list(), truth["topic"].to_list(), strict=True))
    # no label shares a word with these phrases: the evidence carries them
    hated = search_documents(store, encoder, query="I hated it, a letdown",
                             choice=choose_concepts(store, encoder, phrase="I hated it, a letdown"),
                             top=30)  # fmt: skip
    assert [tone[d] for d in hated["doc_id"]] == ["negative"] * 30
    assert reads_by_meaning(store, encoder, "dreadful and awful", dreadful)
    assert "terrible / awful" in hated["concepts"][0][0]
    kitchen = search_documents(store, encoder, query="cooking dinner at home",
                               choice=choose_concepts(store, encoder, phrase="cooking dinner at home"),
                               top=30)  # fmt: skip
    assert [topic[d] for d in kitchen["doc_id"]] == ["cooking"] * 30
    scores, reasons = meaning_scores(
        store, encoder, docs, "cooking dinner at home", embedder=embedder
    )
    cooking = np.array([topic[d] == "cooking" for d in docs["doc_id"]])
    separation = np.mean(scores[cooking][:, None] > scores[~cooking][None, :])
    assert separation > 0.95  # AUC of cooking documents against the rest
    assert len(reasons) == docs.height
    # explicit ids keep the chosen concepts' own scoring
    by_ids = search_documents(store, encoder, query="cooking dinner at home",
                              choice=choose_concepts(store, encoder, features=[7]), top=5)  # fmt: skip
    assert all(tone[d] == "negative" for d in by_ids["doc_id"])
    store.close()
    # the command says which way it read the phrase
    from click.testing import CliRunner

    from saeembed.cli import main

    def stderr(*args):
        result = CliRunner().invoke(main, ["search", str(tmp_path / "t.duckdb"), *args])
        assert result.exit_code == 0, result.output
        return result.stderr

    assert stderr("I hated it, a letdown").startswith("reading every concept through its evidence")
    assert stderr("terrible").startswith("using ")  # a label contains it: it names concepts


def test_search_leaves_out_its_examples(topics, reader):
    """`search --positive`: the examples choose the concepts and are never returned themselves
    (as `--like` leaves out its document)."""
    from saeembed.api import ConceptQuery, search

    store, encoder, truth = topics
    negative = truth.filter(pl.col("tone") == "negative")["doc_id"].head(40).to_list()
    choice = choose_concepts(store, encoder, positives=negative)
    found = search_documents(store, encoder, choice=choice, leave_out=negative, top=300)
    assert not set(found["doc_id"].to_list()) & set(negative)
    assert found.height == truth.height - 40
    result = search(reader[0].path, top=20, concepts=ConceptQuery(positives=negative))
    assert result.note is None and result.choice.features[0] == 7
    assert not set(result.hits["doc_id"].to_list()) & set(negative)
    tone = dict(zip(truth["doc_id"].to_list(), truth["tone"].to_list(), strict=True))
    assert [tone[d] for d in result.hits["doc_id"]] == ["negative"] * 20


def test_too_few_examples_rank_by_similarity_to_them(topics, reader):
    """Two examples pass no multiple-testing correction: the search says so and ranks by
    closeness to their mean concept vector instead of failing."""
    from saeembed.api import ConceptQuery, search

    _, _, truth = topics
    kind = truth.filter((pl.col("topic") == "cooking") & (pl.col("tone") == "negative"))
    examples = kind["doc_id"].head(2).to_list()
    result = search(reader[0].path, top=10, concepts=ConceptQuery(positives=examples))
    assert result.choice is None
    assert result.note == (
        "no concept separates the 2 example documents from the rest at q < 0.05; ranked by "
        "concept similarity to the 2 examples instead"
    )
    assert not set(result.hits["doc_id"].to_list()) & set(examples)
    same = set(kind["doc_id"].to_list())
    assert sum(d in same for d in result.hits["doc_id"]) >= 9


def test_documents_are_named_by_short_references(topics, reader):
    """Results name each document CORPUS:ROW beside its doc_id; --like and --positive take
    either, and a reference to nothing says what exists."""
    from saeembed.api import search
    from saeembed.store.doc_refs import doc_refs, resolve_doc

    store, _, truth = topics
    first = truth["doc_id"][0]
    assert doc_refs(store, [first]) == ["topics:0"]
    assert resolve_doc(store, "topics:0") == first == resolve_doc(store, str(first))
    assert resolve_doc(store, "topics:299") == truth["doc_id"][299]
    with pytest.raises(InputError, match="no document topics:300 in .*rows 0..299"):
        resolve_doc(store, "topics:300")
    with pytest.raises(InputError, match="'fresh' names no document; write CORPUS:ROW"):
        resolve_doc(store, "fresh")
    with pytest.raises(StoreError, match="no corpus 'films'"):
        resolve_doc(store, "films:1")
    by_ref = search(reader[0].path, like="topics:0", top=5).hits
    by_id = search(reader[0].path, like=int(first), top=5).hits
    assert by_ref.equals(by_id)
    assert by_ref.columns[:4] == ["rank", "doc", "doc_id", "corpus"]
    rows = dict(zip(truth["doc_id"].to_list(), range(truth.height), strict=True))
    assert by_ref["doc"].to_list() == [f"topics:{rows[d]}" for d in by_ref["doc_id"]]
