"""What the command line offers, through the API: each option's choices and its default, read
from the function or settings object that owns it (`saeembed.cli.options.default_of`), so the
CLI, which imports nothing below the API, never types a choice or a default twice. Also the few
subject helpers the CLI shows results with (a feature report as text, alike concepts folded).

Each name is imported from its owner on first use, so a command loads only what it needs (`saeembed
sql` never imports torch)."""

from __future__ import annotations

import importlib

_OWNERS = {
    "DiffSettings": "saeembed.analysis.diff_settings",
    "ClusterSettings": "saeembed.analysis.cluster_settings",
    "ConceptQuery": "saeembed.analysis.concept_query",
    "ProbeSettings": "saeembed.analysis.probe_settings",
    "flag_of": "saeembed.analysis.settings",
    "ShardOptions": "saeembed.shards.options",
    "DIFF_SORTS": "saeembed.analysis.measures",
    "MEASURE_NAMES": "saeembed.analysis.measures",
    "measure_help": "saeembed.analysis.measures",
    "TEST_NAMES": "saeembed.analysis.measures",
    "DEFAULT_MAX_TOKENS": "saeembed.encoding.options",
    "EncodingOptions": "saeembed.encoding.options",
    "CHAT_TURNS": "saeembed.encoding.options",
    "PASSAGE_MODES": "saeembed.inputs.frames",
    "import_labels": "saeembed.labels",
    "label_features": "saeembed.labels",
    "folded_view": "saeembed.labels.alike",
    "excerpt": "saeembed.labels.evidence",
    "feature_report": "saeembed.labels.show",
    "render_report": "saeembed.labels.show",
    "report_json": "saeembed.labels.show",
    "LocalConfig": "saeembed.labels.local",
    "MATCH_BY": "saeembed.labels.search",
    "search_features": "saeembed.labels.search",
    "write_feature_pages": "saeembed.reports",
    "PAGE_ORDERS": "saeembed.reports.feature_pages",
    "DEFAULT_TIMEOUT": "saeembed.store.user_sql",
    "TrainConfig": "saeembed.train",
    "SNMFConfig": "saeembed.train.snmf",
    "KINDS": "saeembed.train.recipe",
    "train_from_sources": "saeembed.train.recipe",
}

__all__ = sorted([*_OWNERS, "is_binary"])


def __getattr__(name: str):
    if name in _OWNERS:
        return getattr(importlib.import_module(_OWNERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_binary(measure: str) -> bool:
    """Whether ``measure`` says only whether a document has a concept (presence, strong)."""
    from saeembed.analysis.measures import get_measure

    return get_measure(measure).binary
