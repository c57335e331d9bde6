"""Concepts named from the store's own documents (`saeembed.labels.local`): what sits under a
peak, read in context; names from the strongest peaks; a shipped name kept only where it fits the
store; constructed stores whose answers are known."""

from __future__ import annotations

import json

import polars as pl
import pytest

from saeembed.inputs import documents_from_texts
from saeembed.labels.local import (
    SOURCE,
    LocalConfig,
    describe_peak,
    label_terms,
    local_names,
    read_peak,
    read_peaks,
)
from saeembed.labels.naming import name_concepts
from saeembed.labels.offline import FeatureLabel
from saeembed.labels.table import labels_frame, write_labels
from saeembed.store import Store
from tests.fakes import ENCODER_FIELDS, write_constructed


@pytest.mark.parametrize(
    ("left", "token", "right", "descriptor", "phrase"),
    [
        ("the secret of lon", "gevity", " is", "longevity", "of longevity"),  # a word piece
        ("knows how", " to", " create", "to", "how to"),
        ("Hello.\n", ">", " you wrote", '">" opening a line', None),
        ("", ">", " quoted", '">" opening a line', None),
        ("the film was bad", ".", " Then", '"." ending a sentence', None),
        ("so self", "-", "destructive", '"-" inside words', None),
        ('he said "Hi', '"', " and", "'\"' between words", None),  # never """"
        ("call f", "(", "x)", '"(" between words', None),
        ("On 2 Jul 200", "2", " at", "last digit of a year", None),
        ("in ", "1999", " we", "a year", None),
        ("price ", "300", " dollars", "a number", None),
        ("line one", "\n", "line two", "a line break", None),
        ("so", " it", "'s fine", "it's", "so it's"),  # a contraction is one word
    ],
)
def test_a_peak_is_read_in_context(left, token, right, descriptor, phrase):
    assert describe_peak(left, token, right) == (descriptor, phrase)


def test_a_peak_on_the_start_or_end_of_a_word_is_also_that_piece():
    assert read_peak("that", " mis", "fires.")[2] == '"mis-" starting words'
    assert read_peak("the lon", "gevity", " is")[2] == '"-gevity" ending words'
    assert read_peak("so", " it", "'s fine")[2] is None  # a contraction, not a piece
    assert read_peak("the", " film", " was")[2] is None


def test_label_terms_read_plain_and_shape_labels():
    assert label_terms("acetone / the / ride the") == ("acetone", "the", "ride the")
    assert label_terms("capitalised words (pygments / license ...)") == ("pygments", "license")
    assert label_terms(None) == ()
    # a described symbol is a descriptor, read whole; a quoted token loses its quotes
    assert label_terms('"." ending a sentence / thrown') == ('"." ending a sentence', "thrown")
    assert label_terms('punctuation ("." / good ...)') == (".", "good")


def _peaks(rows):
    frame = pl.DataFrame(rows, schema=["feature", "left", "token", "right"], orient="row")
    return frame.with_columns(value=pl.lit(1.0), doc_id=pl.int_range(pl.len()))


def test_names_take_what_covers_most_peaks():
    rows = (
        [(1, "the lon", "gevity", f" of it {i}") for i in range(6)]
        + [(1, "a very long", " life", f" indeed {i}") for i in range(3)]
        + [(1, "x ", "rare", " y")]
        + [(2, "Hi.\n", ">", f" quoted {i}") for i in range(5)]
        + [(2, "a", "\n", f"b{i}") for i in range(2)]
        + [(3, "knows how", " to", f" act {i}") for i in range(4)]
        + [(3, "wants", " to", " go")]
        + [(4, "few", " peaks", f"{i}") for i in range(2)]
        + [(5, "the film ", "Ballistic", ": Ecks vs. Sever")] * 6  # one title, repeated
        + [(5, "has", " thrown", f" every {i}") for i in range(3)]
        + [(6, "a", " mis", rest) for rest in ("fires", "step", "take", "fit", "cast")]
    )
    names = {n.feature: n for n in local_names(_peaks(rows), LocalConfig(min_peaks=3))}
    assert names[1].name == "longevity / long life"  # "rare": 1 of 10, below min_share
    assert names[1].evidence[0] == ("longevity", 6)
    assert names[2].name == '">" opening a line / a line break'
    assert names[3].name == "how to"  # the phrase covers most of the word's peaks
    assert 4 not in names  # too few peaks to name
    assert names[5].name == "has thrown"  # the repeated title counts once
    assert names[6].name == '"mis-" starting words'  # one piece of five different words
    assert names[6].evidence[0][1] == 1  # each whole word once


TEXTS = (
    [f"a bitter{'sweet'} ending, note {i}" for i in range(60)]  # feature 0 peaks on "sweet"
    + [f"this film number {i} was long" for i in range(60)]  # feature 1 peaks on "film"
)


@pytest.fixture()
def store(tmp_path):
    store = Store(tmp_path / "local.duckdb")
    fields = {**ENCODER_FIELDS, "d_sae": 4}
    encoder, _ = store.get_or_create_encoder("fp-local", fields)
    docs, _ = documents_from_texts(TEXTS)
    store.add_documents("c", docs)
    rows = []
    for doc_id, text in zip(docs["doc_id"], docs["text"], strict=True):
        if text.startswith("a bitter"):
            start = text.index("sweet")
            rows.append((doc_id, 0, 2.0, start, start + 5))
        else:
            start = text.index(" film")
            rows.append((doc_id, 1, 3.0, start, start + 5))
        start = text.index(" was") if "was" in text else text.index(" ending")
        rows.append((doc_id, 2, 1.0, start, start + 4))
    write_constructed(store, encoder.encoder_id, docs["doc_id"].to_list(), rows, n_tokens=8)
    labels = [FeatureLabel(0, "acetone / syrup", None, 0.5, 0.3, 60, []),
              FeatureLabel(1, "film / movie", None, 0.8, 0.3, 60, []),
              FeatureLabel(2, "mine", None, 0.9, 0.3, 60, [])]  # fmt: skip
    write_labels(store, encoder, labels_frame(labels[:2], "shipped:offline"))
    write_labels(store, encoder, labels_frame(labels[2:], "offline"))  # the user's own
    yield store, encoder
    store.close()


def _rows(store, encoder):
    return {
        r["feature"]: r
        for r in store.sql(
            "SELECT feature::BIGINT AS feature, label, label_source, shipped_label, "
            "shipped_source, shipped_score, local_evidence::VARCHAR AS evidence FROM features "
            "WHERE encoder_id = ? ORDER BY feature",
            [encoder.encoder_id],
        ).iter_rows(named=True)
    }


def test_a_shipped_name_that_does_not_fit_the_store_is_replaced(store):
    store, encoder = store
    peaks = read_peaks(store, encoder, config=LocalConfig(per_feature=10))
    assert peaks.filter(pl.col("feature") == 0).height == 10
    assert set(peaks.filter(pl.col("feature") == 0)["token"]) == {"sweet"}
    report = name_concepts(store, encoder, LocalConfig(min_docs=10))
    assert (report.n_named, report.n_shipped_kept) == (1, 1)
    rows = _rows(store, encoder)
    assert rows[0]["label"] == "bittersweet" and rows[0]["label_source"] == SOURCE
    assert rows[0]["shipped_label"] == "acetone / syrup"
    assert rows[0]["shipped_source"] == "shipped:offline"
    assert rows[0]["shipped_score"] == pytest.approx(0.5)  # its words find none of the peaks
    assert json.loads(rows[0]["evidence"])[0] == {"term": "bittersweet", "n": 40}
    assert rows[1]["label"] == "film / movie" and rows[1]["label_source"] == "shipped:offline"
    assert rows[1]["shipped_score"] == pytest.approx(1.0)
    assert rows[2]["label"] == "mine" and rows[2]["shipped_score"] is None  # never touched
    # naming again changes nothing
    again = name_concepts(store, encoder, LocalConfig(min_docs=10))
    assert (again.n_named, again.n_shipped_kept) == (1, 1)
    assert _rows(store, encoder)[0]["label"] == "bittersweet"


def test_a_small_store_keeps_the_shipped_names(store):
    store, encoder = store
    assert name_concepts(store, encoder, LocalConfig(min_docs=1000)) is None
    assert _rows(store, encoder)[0]["label"] == "acetone / syrup"
