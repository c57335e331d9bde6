"""Near-duplicate concepts (`saeembed.labels.alike`): grouped by leaders from their local
evidence, stored as `features.alike_of`, folded in diff tables and reports."""

from __future__ import annotations

import polars as pl
import pytest
from click.testing import CliRunner

from saeembed.analysis.diff import diff_corpora
from saeembed.cli import main
from saeembed.inputs import documents_from_texts
from saeembed.labels.alike import fold_alike, folded_view, group_alike, top_groups
from saeembed.labels.local import LocalConfig
from saeembed.labels.naming import name_concepts
from saeembed.labels.offline import FeatureLabel
from saeembed.labels.table import labels_frame, write_labels
from saeembed.store import Store
from tests.fakes import ENCODER_FIELDS, write_constructed


def test_concepts_join_the_most_similar_leader_and_never_chain():
    weights = {
        1: {"thrown": 1.0},
        2: {"thrown": 1.0, "mess": 0.1},  # cos 0.995 with 1
        3: {"thrown": 0.7, "mess": 0.7},  # cos 0.71 with 1: joins 1
        4: {"mess": 1.0},  # cos 0.71 with 3, but 3 is no leader; 0.10 with 2: leads
        5: {"of": 1.0},
    }
    strength = {1: (40, 3.0), 2: (40, 2.0), 3: (30, 9.0), 4: (20, 1.0), 5: (10, 1.0)}
    assert group_alike(weights, strength) == {2: 1, 3: 1}
    # the further conditions can refuse a pair: 3 then leads, and 4 joins it
    refuse = lambda f, lead: (f, lead) != (3, 1)  # noqa: E731
    assert group_alike(weights, strength, compatible=refuse) == {2: 1, 4: 3}
    # the best-evidenced leads: with 2 stronger than 1, 1 is alike to 2
    assert group_alike(weights, {**strength, 2: (50, 1.0)}) == {1: 2, 3: 2}


def test_a_diff_table_folds_alike_concepts_on_the_same_side_only():
    frame = pl.DataFrame(
        {
            "feature": [10, 11, 12, 13, 14],
            "label": ["thrown / mess", "thrown", "of", "thrown again", "mess"],
            "diff": [0.3, 0.2, 0.1, -0.05, 0.01],
        }
    )
    groups = {11: 10, 13: 10, 14: 10}
    folded = fold_alike(frame, groups)
    # 13 is alike to 10 but more frequent on the other side: its own row
    assert folded["same_as"].to_list() == [None, 10, None, None, 10]
    assert top_groups(folded, 2)["feature"].to_list() == [10, 11, 12, 14]
    view = folded_view(folded)
    assert view["feature"].to_list() == [10, 12, 13]
    assert view["label"].to_list() == ["thrown / mess  [+11, 14 alike]", "of", "thrown again"]
    many = fold_alike(
        pl.DataFrame({"feature": list(range(6)), "label": ["x"] * 6, "diff": [1.0] * 6}),
        dict.fromkeys(range(1, 6), 0),
    )
    assert folded_view(many)["label"].to_list() == ["x  [+1, 2, 3 and 2 more alike]"]


# a constructed store: concepts 0 and 1 fire on "sweet" in the same documents (alike); concept
# 2 fires on "sweet" in other documents (same evidence, other documents: not alike); concept 3
# on "film"
SWEET = [f"a bitter sweet story {i} for side a" for i in range(60)]
OTHER = [f"more sweet words {i} here on side b" for i in range(60)]
FILMS = [f"this film number {i} was long on side b" for i in range(60)]


@pytest.fixture()
def store(tmp_path):
    store = Store(tmp_path / "alike.duckdb")
    encoder, _ = store.get_or_create_encoder("fp-alike", {**ENCODER_FIELDS, "d_sae": 4})
    rows = []
    all_ids = []
    for corpus, texts in (("a", SWEET), ("b", OTHER + FILMS)):
        docs, _ = documents_from_texts(texts)
        store.add_documents(corpus, docs)
        ids = store.sql("SELECT doc_id, text FROM documents WHERE corpus = ?", [corpus])
        for doc_id, text in ids.iter_rows():
            all_ids.append(doc_id)
            if "sweet" in text:
                start = text.index("sweet")
                if text.startswith("a bitter"):
                    rows.append((doc_id, 0, 3.0, start, start + 5))
                    rows.append((doc_id, 1, 2.0, start, start + 5))
                else:
                    rows.append((doc_id, 2, 2.5, start, start + 5))
            else:
                start = text.index("film")
                rows.append((doc_id, 3, 1.0, start, start + 4))
    write_constructed(store, encoder.encoder_id, all_ids, rows, n_tokens=8)
    labels = [FeatureLabel(f, name, None, 0.9, 0.3, 60, [])
              for f, name in ((0, "sweet"), (1, "sweet / bitter"), (2, "sweet / more"),
                              (3, "film"))]  # fmt: skip
    write_labels(store, encoder, labels_frame(labels, "shipped:offline"))
    yield store, encoder
    store.close()


def test_naming_records_which_concepts_are_alike_and_the_diff_folds_them(store, tmp_path):
    store, encoder = store
    report = name_concepts(store, encoder, LocalConfig(min_docs=10))
    assert report.n_alike == 1
    alike = dict(store.sql("SELECT feature, alike_of FROM features ORDER BY feature").iter_rows())
    assert alike == {0: None, 1: 0, 2: None, 3: None}
    table = diff_corpora(store, ["a"], ["b"], min_support=5)
    assert dict(zip(table["feature"], table["same_as"], strict=True)) == {
        0: None, 1: 0, 2: None, 3: None
    }  # fmt: skip
    # the top 1 group is concept 0 and the concept alike to it
    assert diff_corpora(store, ["a"], ["b"], min_support=5, top=1)["feature"].to_list() == [0, 1]
    path = store.path
    store.close()
    result = CliRunner().invoke(
        main, ["-q", "diff", "a", "b", "--db", str(path), "--min-support", "5", "--format",
               "table"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sweet  [+1 alike]" in result.output
    assert "sweet / bitter" not in result.output  # folded into 0's row
    csv = CliRunner().invoke(
        main, ["-q", "diff", "a", "b", "--db", str(path), "--min-support", "5", "--format", "csv"]
    )
    lines = csv.output.strip().splitlines()
    assert lines[0].endswith(",same_as") and len(lines) == 5  # every concept, with same_as


def test_degenerate_evidence_stays_bounded():
    # every concept peaks on the same thing (a store of empty texts): each may join only its 50
    # closest, so grouping costs O(concepts x 50), never all pairs, and still never chains
    weights = {f: {"": 1.0} for f in range(3000)}
    strength = {f: (40, 1.0) for f in weights}
    alike = group_alike(weights, strength)
    assert alike and set(alike.values()).isdisjoint(alike)  # leaders are alike to none
