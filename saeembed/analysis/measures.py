"""Concept measures: what number a (document, concept) pair contributes to an analysis.

The store keeps, per document and active concept, the maximum activation over the document's
tokens (``value``), how many tokens the concept was active on (``n_tokens``) and, from encoding
version 2, the sum of its activations (``value_sum``); `encoded_documents.n_tokens` is the
document's length. A measure turns those into one number:

==========  ======  ==============================================================================
measure     kind    value
==========  ======  ==============================================================================
presence    binary  1 when the concept is active on any token (max-pooled activation > 0)
strong      binary  1 when its maximum exceeds half the concept's p99 maximum on a reference
                    sample of the encoder's documents (stored in `feature_thresholds`)
count       number  tokens of the document the concept is active on
share       number  that count over the document's tokens
mean        number  the sum of its activations over the document's tokens (mean pooling)
max         number  the maximum activation (max pooling)
==========  ======  ==============================================================================

On short snippets presence is informative; on documents of hundreds of tokens it saturates (a
third of all concepts are present in every passage), and a concept that fills a passage counts
the same as one that touches it once. Binary measures are compared as proportions; numeric ones
with tests for numbers (see `saeembed.analysis.diff`). Every measure is one SQL relation
``(doc_id, feature, v)`` over the activations, so analyses read it without densifying anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from saeembed.errors import InputError
from saeembed.store.counts import STRONG_FRACTION, recount

if TYPE_CHECKING:
    from saeembed.store import Encoder, Store

log = logging.getLogger(__name__)

REFERENCE_DOCS = 20_000  # documents (a fixed hash sample) behind the strong thresholds


@dataclass(frozen=True)
class Measure:
    name: str
    binary: bool
    value_sql: str  # over a (activations), e (encoded_documents), t (feature_thresholds)
    filter_sql: str = "a.value > 0"
    unit: str = ""
    needs_sum: bool = False
    needs_length: bool = False
    needs_threshold: bool = False


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure("presence", True, "1.0", unit="share of documents"),
        Measure(
            "strong", True, "1.0", f"a.value > {STRONG_FRACTION} * t.p99",
            unit="share of documents", needs_threshold=True,
        ),
        Measure("count", False, "a.n_tokens::DOUBLE", unit="tokens"),
        Measure(
            "share", False, "a.n_tokens::DOUBLE / e.n_tokens", unit="share of tokens",
            needs_length=True,
        ),
        Measure(
            "mean", False, "a.value_sum::DOUBLE / e.n_tokens", unit="mean activation",
            needs_sum=True, needs_length=True,
        ),
        Measure("max", False, "a.value::DOUBLE", unit="max activation"),
    )
}  # fmt: skip
MEASURE_NAMES = tuple(MEASURES)
#: The diff's default, chosen by the planted benchmarks in docs/benchmarks.md#concept-measures;
#: every command that asks whether a document has a concept (diff, correlate) uses it.
DEFAULT_DIFF_MEASURE = "strong"
#: `prefs fit`'s default for document encoders (a pair encoder's values are signs: presence),
#: chosen on HH-RLHF in docs/benchmarks.md#preferences--benchmarkspreferencespy.
DEFAULT_PREFS_MEASURE = "share"
#: How a diff orders its significant concepts (the first is the default, chosen in
#: docs/benchmarks.md#diff-orderings; see diff.rank).
DIFF_SORTS = ("specific", "p", "effect", "logodds")
#: The tests that fit binary (True) and numeric (False) measures; the first is the default.
TESTS = {True: ("proportion",), False: ("welch", "mannwhitney")}
TEST_NAMES = tuple(t for tests in TESTS.values() for t in tests)


def measure_help(what: str = "concept") -> str:
    """The help of a ``--measure`` option (``what``: the per-document unit, a concept or a
    response's)."""
    return (f"Per-document {what} measure: presence, strong presence (above half the concept's "
            "p99), token count, share of tokens, mean or max activation (docs/diff.md#measures).")  # fmt: skip


def get_measure(measure: str | Measure) -> Measure:
    if isinstance(measure, Measure):
        return measure
    try:
        return MEASURES[measure]
    except KeyError:
        raise InputError(
            f"unknown measure {measure!r}; use one of {', '.join(MEASURE_NAMES)}"
        ) from None


def check_test(measure: Measure, test: str | None) -> str:
    """``test`` (None: the default for ``measure``), refused when it does not fit the measure."""
    allowed = TESTS[measure.binary]
    if test is None:
        return allowed[0]
    if test not in allowed:
        raise InputError(
            f"test {test!r} does not fit measure {measure.name!r}; use {' or '.join(allowed)}"
        )
    return test


def prepare(store: Store, encoder: Encoder, measure: str | Measure) -> Measure:
    """The measure, checked against what ``encoder``'s activations hold; computes and stores the
    strong thresholds on first use."""
    m = get_measure(measure)
    if m.needs_sum:
        # encoding version 2 writes a sum with every activation; earlier ones wrote none
        version = store.sql(
            "SELECT encoding_version FROM encoders WHERE encoder_id = ?", [encoder.encoder_id]
        )["encoding_version"][0]
        if version < 2:
            raise InputError(
                f"measure {m.name!r} needs activation sums, which encoder {encoder.name} did not "
                "store (encoded by an older saeembed); re-encode the corpora (saeembed encode "
                "... --db NEW.duckdb) or use presence, strong, count, share or max"
            )
    if m.needs_threshold:
        ensure_thresholds(store, encoder)
    return m


def rows_sql(measure: Measure, encoder_param: str = "$enc") -> str:
    """SQL for the relation ``(doc_id, feature, v)`` of ``measure`` over one encoder's
    activations (only rows where the measure is non-zero)."""
    joins = []
    if measure.needs_length:
        joins.append(
            "JOIN encoded_documents e ON e.encoder_id = a.encoder_id AND e.doc_id = a.doc_id"
        )
    if measure.needs_threshold:
        joins.append(
            "JOIN feature_thresholds t ON t.encoder_id = a.encoder_id AND t.feature = a.feature"
        )
    return (
        f"SELECT a.doc_id, a.feature, {measure.value_sql} AS v FROM activations a "
        f"{' '.join(joins)} WHERE a.encoder_id = {encoder_param} AND {measure.filter_sql}"
    )


def ensure_thresholds(store: Store, encoder: Encoder) -> None:
    """Per concept, the 99th percentile of its maximum activation over the documents where it is
    active, in a fixed sample of at most `REFERENCE_DOCS` of the encoder's documents. Computed
    once and stored, so later analyses use the same thresholds; a read-only store computes them
    in a temporary table instead."""
    have = store.sql(
        "SELECT count(*) AS n FROM feature_thresholds WHERE encoder_id = ?", [encoder.encoder_id]
    )["n"][0]
    if have:
        return
    doc_ids = store.encoded_doc_ids(encoder, max_docs=REFERENCE_DOCS)
    query = """
        SELECT $enc AS encoder_id, a.feature, quantile_cont(a.value, 0.99)::REAL AS p99,
               count(*) AS n_docs, $n AS reference_docs
        FROM activations a SEMI JOIN reference r ON r.doc_id = a.doc_id
        WHERE a.encoder_id = $enc AND a.value > 0 GROUP BY a.feature
    """
    params = {"enc": encoder.encoder_id, "n": len(doc_ids)}
    with store.temporary(reference={"doc_id": doc_ids}):
        if store.read_only:
            store.con.execute(f"CREATE OR REPLACE TEMP TABLE feature_thresholds AS {query}", params)
        else:
            with store.transaction() as con:
                con.execute(
                    "INSERT INTO feature_thresholds (encoder_id, feature, p99, n_docs, "
                    f"reference_docs) {query}",
                    params,
                )
                recount(con, encoder.encoder_id, ("strong",))  # kept strong counts start now
    log.info(
        "strong thresholds: %.0f%% of each concept's p99 over %d reference documents",
        100 * STRONG_FRACTION,
        len(doc_ids),
    )
