"""Feature labels: labelling an encoder's features (offline or with an LLM), scoring labels by
detection, importing published label files, and reading them back (`show`, `search`).

The functions here are what `saeembed features ...` calls; each returns polars DataFrames."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from saeembed.errors import InputError
from saeembed.labels.evidence import Evidence, load_evidence
from saeembed.labels.offline import OfflineConfig, label_offline
from saeembed.labels.table import (
    ensure_shipped_labels,
    export_labels,
    labelled_features,
    labels_frame,
    parquet_sae_sha,
    read_labels,
    read_saeembed_labels,
    write_evidence,
    write_labels,
)
from saeembed.store import Encoder, Store

__all__ = [
    "ensure_shipped_labels",
    "export_labels",
    "import_labels",
    "label_features",
    "read_labels",
]

log = logging.getLogger(__name__)
SAVE_EVERY = 100  # LLM labels are committed in groups this size, so a stopped run resumes


def _promoted(encoder: Encoder) -> dict[int, tuple[str, ...]]:
    """The tokens each feature promotes (`saeembed.labels.output`), or nothing when the
    encoder's reader or SAE cannot be loaded here."""
    from saeembed.encoding.stack_cache import stored_stack
    from saeembed.labels.output import promoted_tokens

    try:
        reader, sae = stored_stack(encoder)
    except Exception as error:  # noqa: BLE001 - output tokens are an optional extra
        log.info("no output-side tokens for %s: %s", encoder.name, error)
        return {}
    return promoted_tokens(sae, reader)


def _features_to_label(evidence: Evidence, features: list[int] | None, skip: set[int]) -> list[int]:
    if features is None:
        features = [f for f in range(evidence.d_sae) if evidence.n_active(f) > 0]
    else:
        bad = [f for f in features if not 0 <= f < evidence.d_sae]
        if bad:
            raise InputError(
                f"feature {bad[0]} does not exist; features are 0..{evidence.d_sae - 1}"
            )
    return [f for f in features if f not in skip]


def label_features(
    store: Store,
    encoder: Encoder | str | int | None = None,
    *,
    corpus: str | None = None,
    method: str = "offline",
    features: list[int] | None = None,
    max_docs: int | None = 100_000,
    api_base: str | None = None,
    llm_model: str | None = None,
    api_key: str | None = None,
    concurrency: int = 8,
    redo: bool = False,
    semantic: bool = True,
    progress: bool = True,
) -> pl.DataFrame:
    """Label ``encoder``'s features from the documents it has encoded and write the labels into
    the store's `features` table; returns the labels written.

    ``method="offline"`` names each feature by the words and patterns it peaks on and scores the
    label's own matcher on held-out documents; with ``semantic`` (the default) the terms are
    chosen by meaning too (MiniLM), the tokens the feature promotes are proposed when the reader
    and SAE can be loaded, and each feature's evidence embedding is stored (`feature_evidence`). ``method="llm"`` asks the OpenAI-compatible endpoint at
    ``api_base`` (model ``llm_model``) for a label and scores it by LLM detection; finished labels
    are saved in groups, and a rerun skips features this LLM already labelled (``redo=True``
    relabels them)."""
    if not isinstance(encoder, Encoder):
        encoder = store.resolve_encoder(encoder)
    if method not in ("offline", "llm"):
        raise InputError(f"unknown labelling method {method!r}; use offline or llm")
    if method == "llm" and not (api_base and llm_model):
        raise InputError("LLM labelling needs --api-base URL and --llm-model NAME")
    evidence = load_evidence(store, encoder, corpus=corpus, max_docs=max_docs)
    if method == "offline":
        todo = _features_to_label(evidence, features, set())
        embedder = None
        if semantic:
            from saeembed.embedder import load_embedder

            embedder = load_embedder("default")
        labels = label_offline(
            evidence,
            todo,
            OfflineConfig(),
            progress=progress,
            embedder=embedder,
            output=_promoted(encoder) if semantic else None,
        )
        frame = labels_frame(labels, "offline")
        write_labels(store, encoder, frame)
        kept = [x for x in labels if x.evidence is not None]
        if kept:
            write_evidence(
                store,
                encoder,
                np.array([x.feature for x in kept]),
                np.stack([x.evidence for x in kept]),
                embedder.model_id,
            )
        return frame

    from saeembed.labels.llm import ChatClient, LLMConfig, label_with_llm

    source = f"llm:{llm_model}"
    skip = set() if redo else labelled_features(store, encoder, source)
    todo = _features_to_label(evidence, features, skip)
    if skip:
        log.info("%d features already labelled by %s; %d to go", len(skip), source, len(todo))
    client = ChatClient(api_base, llm_model, api_key=api_key)
    pending, written = [], []

    def save(label) -> None:
        pending.append(label)
        if len(pending) >= SAVE_EVERY:
            flush()

    def flush() -> None:
        if pending:
            frame = labels_frame(pending, source)
            write_labels(store, encoder, frame)
            written.append(frame)
            pending.clear()

    try:
        label_with_llm(
            client,
            evidence,
            todo,
            LLMConfig(concurrency=concurrency),
            on_label=save,
            progress=progress,
        )
    finally:
        flush()
    return pl.concat(written) if written else labels_frame([], source)


def import_labels(
    store: Store,
    path: str | Path,
    encoder: Encoder | str | int | None = None,
    *,
    format: str = "auto",
    sae_id: str | None = None,
) -> pl.DataFrame:
    """Read a published label file (Neuronpedia export, Goodfire labels, or a plain table) and
    write its labels for ``encoder``; returns them."""
    from saeembed.labels.published import check_fits, read_label_file

    if not isinstance(encoder, Encoder):
        encoder = store.resolve_encoder(encoder)
    path = Path(path)
    labelled_sae = parquet_sae_sha(path) if path.suffix == ".parquet" and path.is_file() else None
    if labelled_sae is not None:  # a file written by `saeembed features export`
        if labelled_sae != encoder.sae_sha256:
            raise InputError(
                f"{path} labels the SAE with hash {labelled_sae[:12]}, but encoder {encoder.name} "
                f"uses {encoder.sae_sha256[:12]}; choose the matching --encoder or label file"
            )
        frame = read_saeembed_labels(path)
        write_labels(store, encoder, frame)
        return frame
    frame = read_label_file(path, format=format, sae_id=sae_id)
    check_fits(frame, encoder.d_sae)
    write_labels(store, encoder, frame)
    return frame
