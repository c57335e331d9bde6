"""Preference data: reading pairs (`pairs`), storing them (`ingest`), the WIMHF-style analysis of
which concepts annotators reward or punish (`fit`, `regression`, `sparse`, `annotators`, and the
pair SAE of `pair_sae` / `pair_encoder`), and curation (`curate`). `saeembed.prefs.fit(db)` and
the other functions of `api` are the entry points from scripts."""

from saeembed.prefs.api import (
    annotators,
    apply,
    encode_pairs,
    export,
    fit,
    flag,
    train_sae,
)

__all__ = ["annotators", "apply", "encode_pairs", "export", "fit", "flag", "train_sae"]
