"""The API over store paths: every call takes the path of a DuckDB store (or of an input file)
and returns polars DataFrames or small result objects; each `saeembed` command is a thin shell
over one of these functions.

- `corpus`: `encode` (with `EncodingOptions`, `ShardOptions`), `info`, `sql`, `open_store`, `run_query`, `import_shards`
- `compare`: `diff` (with `DiffSettings`, `EncodingOptions`; returns a `DiffResult`)
- `explore`: `cluster` (with `ClusterSettings`), `search`, `correlate`, `probe` (with
  `ProbeSettings`); both choose concepts
  with a `ConceptQuery`
- `features`: `label_features`, `show_feature`, `search_features`, `import_labels`, `export_labels`
- `preferences`: `encode_pairs`, `fit`, `flag`, `apply`, `export`, `annotators`, `train_sae`
- `resources`: named datasets, reader models and SAEs

Store-level functions (taking an open `Store`) live with their subject: `saeembed.analysis`,
`saeembed.labels`, `saeembed.prefs`."""

from saeembed.analysis.cluster_settings import ClusterSettings
from saeembed.analysis.concept_query import ConceptQuery
from saeembed.analysis.diff_settings import DiffSettings
from saeembed.analysis.probe_settings import ProbeSettings
from saeembed.api.compare import DiffResult, diff
from saeembed.api.corpus import (
    EncodeResult,
    encode,
    import_shards,
    info,
    open_store,
    run_query,
    sql,
)
from saeembed.api.explore import Clustering, SearchResult, cluster, correlate, probe, search
from saeembed.api.features import (
    export_labels,
    import_labels,
    label_features,
    search_features,
    show_feature,
)
from saeembed.encoding.options import EncodingOptions
from saeembed.shards.options import ShardOptions

__all__ = [
    "ClusterSettings",
    "Clustering",
    "ConceptQuery",
    "DiffResult",
    "DiffSettings",
    "EncodeResult",
    "EncodingOptions",
    "SearchResult",
    "ShardOptions",
    "cluster",
    "correlate",
    "probe",
    "ProbeSettings",
    "diff",
    "encode",
    "export_labels",
    "import_labels",
    "import_shards",
    "info",
    "label_features",
    "open_store",
    "run_query",
    "search",
    "search_features",
    "show_feature",
    "sql",
]
