"""saeembed: sparse-autoencoder embeddings of text corpora, stored in DuckDB, with analyses on top.

The Python API (`saeembed.api`), over store paths: `encode`, `diff` (settings in a `DiffSettings`), `correlate`, `cluster`,
`search`, `probe` (settings in a `ProbeSettings`), the feature labels (`label_features`, `show_feature`, `search_features`,
`import_labels`, `export_labels`), the preference analysis (`saeembed.preferences.fit(db)` and
the rest of `saeembed.api.preferences`), `info`, `sql`, `import_shards`, `open_store` and `run_query` (and
`Store.sql` on an open store). They are imported on first use, so `import saeembed` (and the
CLI's start) stays light."""

from __future__ import annotations

import importlib

from saeembed.version import __version__

_EXPORTS = {
    "cluster": "saeembed.api.explore",
    "ClusterSettings": "saeembed.analysis.cluster_settings",
    "ConceptQuery": "saeembed.analysis.concept_query",
    "correlate": "saeembed.api.explore",
    "search": "saeembed.api.explore",
    "probe": "saeembed.api.explore",
    "ProbeSettings": "saeembed.analysis.probe_settings",
    "diff": "saeembed.api.compare",
    "DiffResult": "saeembed.api.compare",
    "DiffSettings": "saeembed.analysis.diff_settings",
    "EncodingOptions": "saeembed.encoding.options",
    "ShardOptions": "saeembed.shards.options",
    "encode": "saeembed.api.corpus",
    "import_shards": "saeembed.api.corpus",
    "info": "saeembed.api.corpus",
    "open_store": "saeembed.api.corpus",
    "run_query": "saeembed.api.corpus",
    "sql": "saeembed.api.corpus",
    "export_labels": "saeembed.api.features",
    "import_labels": "saeembed.api.features",
    "label_features": "saeembed.api.features",
    "search_features": "saeembed.api.features",
    "show_feature": "saeembed.api.features",
}

__all__ = ["__version__", "preferences", *sorted(_EXPORTS)]


def __getattr__(name: str):
    if name == "preferences":
        return importlib.import_module("saeembed.api.preferences")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'saeembed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
