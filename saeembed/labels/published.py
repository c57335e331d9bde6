"""Reading the feature-label files that people publish with SAEs into one tidy table.

This module owns turning a label file someone else wrote into the frame of `LABEL_COLUMNS`:
recognising its format, decompressing gzip, finding the feature-index and label fields, checking
the indices, keeping one label per feature and sorting by feature. It does not label features
itself, store labels, or fetch anything over the network. Every problem with a file is a one-line
`InputError` that names the file and the fix.

The output frame (`LABEL_SCHEMA`) has ``feature`` (Int64 latent index), ``label`` (short label),
``description`` (a longer explanation, or null), ``label_source`` (where the label came from) and
``label_score`` (a score the file gives the label, or null). When a file holds several labels for
one feature, the best-scored one is kept (unscored ones rank last; ties go to the first in the
file). Rows without a label are dropped.

Formats, and the public sources their shapes were taken from:

``neuronpedia``
    Explanation exports: a JSON list, a ``{"explanations": [...]}`` object, or JSONL (the current
    bulk dumps are gzipped JSONL batches, ``v1/<model>/<sae>/explanations/batch-<n>.jsonl.gz``).
    Each object carries ``modelId``, ``layer`` (the SAE id, e.g. ``7-res-jb``), ``index`` (a
    string), ``description`` (the label), ``typeName`` and ``explanationModelName``; see the
    ``Explanation`` columns written by ``export_explanations`` in
    hijohnnylin/neuronpedia ``utils/neuronpedia-utils/neuronpedia_utils/export-data.py``, the
    ``Explanation`` model in ``apps/webapp/prisma/schema.prisma`` (``index`` is a String,
    ``scoreV1``/``scoreV2`` floats, ``scores`` a list of ``ExplanationScore`` objects with a
    ``value``) and ``exportExplanations`` in ``apps/webapp/lib/db/explanation.ts``; SAELens reads
    the same export in ``tutorials/tutorial_2_0.ipynb`` (jbloomAus/SAELens). Per-feature objects
    (``GET /api/feature/<model>/<sae>/<index>``, ``getNeuronOptimized`` in
    ``apps/webapp/lib/db/neuron.ts``) carry ``index`` and a list ``explanations`` whose items have
    ``description``, ``typeName``, ``explanationModelName`` and ``scores``; both shapes are read.
    ``label_source`` is ``neuronpedia:<explanationModelName or typeName>``; ``label_score`` is the
    explanation's ``score``, else the highest ``scores[].value``, else ``scoreV2``, else
    ``scoreV1``. A file that mixes SAEs (several ``layer`` values) needs ``sae_id``, matched
    against ``layer`` or ``<modelId>/<layer>`` (the form of SAELens's ``neuronpedia_id``).

``goodfire``
    Goodfire publishes no label file next to its Llama-3.1-8B / Llama-3.3-70B SAEs: the model
    cards (Hugging Face ``Goodfire/Llama-3.1-8B-Instruct-SAE-l19`` and
    ``Goodfire/Llama-3.3-70B-Instruct-SAE-l50``, ``README.md``) point to the Ember SDK for
    labels. Two shapes are read: feature objects as the SDK and API give them, with
    ``index_in_sae`` and ``label`` (``id``/``uuid`` ignored; goodfire-ai/goodfire-sdk
    ``goodfire/api/features/interfaces.py`` and ``goodfire/features/features.py``), as a list or
    under ``"features"``, or variant edits under ``"edits"`` with ``index_in_sae`` and
    ``feature_label`` (that repository's ``README.md``); and the SQLite ``autointerp.db``
    published with the DeepSeek-R1 SAEs, table ``autointerp`` with ``feature_id``, ``label`` and
    ``quality`` (goodfire-ai/r1-interpretability ``README.md`` and ``db_example.ipynb``), whose
    ``quality`` becomes ``label_score``. ``label_source`` is ``goodfire``.

``table``
    CSV, TSV, JSON (a list of objects, or one object mapping index to label), JSONL, Parquet or a
    one-table SQLite file, with a feature-index column (the first of `INDEX_COLUMNS`, any case)
    and a label column (the first of `LABEL_FIELDS`); another of ``description``/``explanation``
    becomes ``description``, and ``score``/``label_score`` and ``label_source`` are used when
    present, so the module's own output reads back unchanged. ``label_source`` is ``table``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from saeembed.errors import InputError
from saeembed.labels.label_files import GOODFIRE_TABLE, Parsed, name_list, parse, read_bytes
from saeembed.labels.table import LABEL_SCHEMA as STORED_LABEL_SCHEMA

#: The columns an imported file provides: the first five of the store's label columns.
LABEL_COLUMNS = ("feature", "label", "description", "label_source", "label_score")
LABEL_SCHEMA = {c: STORED_LABEL_SCHEMA[c] for c in LABEL_COLUMNS}
FORMATS = ("auto", "neuronpedia", "goodfire", "table")
#: Feature-index columns of a generic table, in order of preference (matched in any case).
INDEX_COLUMNS = ("feature", "index", "latent", "feature_id", "id")
#: Label columns of a generic table, in order of preference (matched in any case).
LABEL_FIELDS = ("label", "description", "explanation")
_DESCRIPTION_FIELDS = ("description", "explanation")
_SCORE_FIELDS = ("score", "label_score")

_WHOLE = re.compile(r"[+-]?\d+(?:\.0*)?")  # "12" or "12.0", as pandas writes float columns
_NP_SAE_FIELDS = ("modelId", "layer", "explanationModelName", "typeName")


def read_label_file(
    path: str | Path,
    *,
    format: str = "auto",
    source: str | None = None,
    sae_id: str | None = None,
) -> pl.DataFrame:
    """The labels in ``path`` as a frame of `LABEL_SCHEMA`, one row per feature, sorted.

    ``format`` is ``"auto"`` (recognise the file by its content), ``"neuronpedia"``,
    ``"goodfire"`` or ``"table"``. ``source``, when given, replaces ``label_source`` on every
    row. ``sae_id`` keeps only the Neuronpedia explanations of that SAE (its ``layer``, or
    ``<modelId>/<layer>``); it is required when a Neuronpedia file mixes SAEs.
    """
    if format not in FORMATS:
        raise InputError(f"unknown label format {format!r}; use one of {', '.join(FORMATS)}")
    path = Path(path)
    name = str(path)
    data = read_bytes(path)
    parsed = parse(data, path)
    chosen = format if format != "auto" else _detect(parsed)
    if sae_id is not None and chosen != "neuronpedia":
        raise InputError(
            f"label file {name} is a {chosen} file for one SAE; sae_id only selects an SAE in a "
            "Neuronpedia export, so leave it out"
        )
    if chosen == "neuronpedia":
        rows = _neuronpedia_rows(parsed, name, sae_id)
    elif chosen == "goodfire":
        rows = _goodfire_rows(parsed, name)
    else:
        rows = _table_rows(parsed, name)
    return _assemble(rows, name, source)


def check_fits(labels: pl.DataFrame, d_sae: int) -> None:
    """Raise `InputError` if ``labels`` names a feature the SAE (of ``d_sae`` latents) lacks."""
    if labels.height == 0:
        return
    top = labels["feature"].max()
    if top is not None and top >= d_sae:
        raise InputError(
            f"label file has feature {top} but the SAE has {d_sae} latents; is it for another SAE?"
        )


# --- formats -------------------------------------------------------------------------------------


def _detect(parsed: Parsed) -> str:
    keys = set(parsed.keys())
    if parsed.kind == "sqlite" and parsed.sqlite_table == GOODFIRE_TABLE:
        return "goodfire"
    if "index_in_sae" in keys or {"feature_id", "label", "quality"} <= keys:
        return "goodfire"
    if "index" in keys and (
        "explanations" in keys or ("description" in keys and any(k in keys for k in _NP_SAE_FIELDS))
    ):
        return "neuronpedia"
    return "table"


class _Rows:
    """Label rows before checking: raw indices plus labels, descriptions, sources and scores."""

    def __init__(self) -> None:
        self.index: list[Any] = []
        self.label: list[Any] = []
        self.description: list[Any] = []
        self.source: list[str] = []
        self.score: list[Any] = []

    def add(self, index: Any, label: Any, description: Any, source: str, score: Any) -> None:
        self.index.append(index)
        self.label.append(label)
        self.description.append(description)
        self.source.append(source)
        self.score.append(score)


def _neuronpedia_rows(parsed: Parsed, name: str, sae_id: str | None) -> _Rows:
    keys = parsed.keys()
    if "index" not in keys or not ("description" in keys or "explanations" in keys):
        raise InputError(
            f"label file {name} is not a Neuronpedia export: expected objects with 'index' and "
            f"'description' (or 'explanations'); found {name_list(keys)}"
        )
    flat: list[tuple[dict, dict]] = []  # (explanation, the object it came from)
    for record in parsed.rows():
        explanations = record.get("explanations")
        if isinstance(explanations, list):
            flat.extend((e, record) for e in explanations if isinstance(e, dict))
        else:
            flat.append((record, record))

    def field(explanation: dict, parent: dict, key: str) -> Any:
        value = explanation.get(key)
        return parent.get(key) if value is None else value

    saes = [_sae_key(field(e, p, "modelId"), field(e, p, "layer")) for e, p in flat]
    found = list(dict.fromkeys(s for s in saes if s is not None))
    if sae_id is not None:
        keep = [s is not None and sae_id in (s[1], f"{s[0]}/{s[1]}") for s in saes]
        kept = {s for s, k in zip(saes, keep, strict=True) if k}
        if not kept:
            raise InputError(
                f"label file {name} has no explanations for SAE {sae_id!r}; it has "
                f"{name_list(_sae_names(found)) or 'no layer field'}"
            )
        if len(kept) > 1:
            raise InputError(
                f"label file {name} has SAE {sae_id!r} under several models "
                f"({name_list(_sae_names(kept))}); pass sae_id as <modelId>/<layer>"
            )
        flat = [pair for pair, k in zip(flat, keep, strict=True) if k]
    elif len(found) > 1:
        raise InputError(
            f"label file {name} mixes explanations of {len(found)} SAEs "
            f"({name_list(_sae_names(found))}); pass sae_id to pick one"
        )

    rows = _Rows()
    for explanation, parent in flat:
        model = explanation.get("explanationModelName") or explanation.get("typeName")
        rows.add(
            field(explanation, parent, "index"),
            explanation.get("description"),
            None,
            f"neuronpedia:{model}" if model else "neuronpedia",
            _neuronpedia_score(explanation),
        )
    return rows


def _sae_key(model: Any, layer: Any) -> tuple[str, str] | None:
    if layer is None:
        return None
    return ("" if model is None else str(model), str(layer))


def _sae_names(saes: Iterable[tuple[str, str]]) -> list[str]:
    return sorted(f"{m}/{layer}" if m else layer for m, layer in saes)


def _neuronpedia_score(explanation: dict) -> Any:
    """The explanation's own ``score``, else its best ``scores`` value, else ``scoreV2``/``V1``."""
    if _number(explanation.get("score")) is not None:
        return explanation["score"]
    scores = explanation.get("scores")
    if isinstance(scores, list):
        values = [_number(s.get("value") if isinstance(s, dict) else s) for s in scores]
        values = [v for v in values if v is not None]
        if values:
            return max(values)
    for key in ("scoreV2", "scoreV1"):
        if _number(explanation.get(key)) is not None:
            return explanation[key]
    return None


def _number(value: Any) -> float | None:
    """``value`` as a finite float when it is a number or a numeric string, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _goodfire_rows(parsed: Parsed, name: str) -> _Rows:
    keys = parsed.keys()
    index_key = next((k for k in ("index_in_sae", "feature_id") if k in keys), None)
    label_key = next((k for k in ("label", "feature_label") if k in keys), None)
    if index_key is None or label_key is None:
        raise InputError(
            f"label file {name} is not a Goodfire label file: expected 'index_in_sae' (or "
            f"'feature_id') and 'label' (or 'feature_label'); found {name_list(keys)}"
        )
    rows = _Rows()
    scores = parsed.column("quality") if "quality" in keys else [None] * len(parsed)
    for index, label, score in zip(
        parsed.column(index_key), parsed.column(label_key), scores, strict=True
    ):
        rows.add(index, label, None, "goodfire", score)
    return rows


def _table_rows(parsed: Parsed, name: str) -> _Rows:
    keys = parsed.keys()
    by_lower: dict[str, str] = {}
    for key in keys:
        by_lower.setdefault(str(key).lower(), key)
    index_key = next((by_lower[k] for k in INDEX_COLUMNS if k in by_lower), None)
    label_key = next((by_lower[k] for k in LABEL_FIELDS if k in by_lower), None)
    if index_key is None or label_key is None:
        missing = (
            f"feature-index column ({', '.join(INDEX_COLUMNS)})"
            if index_key is None
            else f"label column ({', '.join(LABEL_FIELDS)})"
        )
        raise InputError(
            f"label file {name} has no {missing}; found {name_list(keys) or 'no columns'}; "
            "rename the columns or pass the right format"
        )
    description_key = next(
        (by_lower[k] for k in _DESCRIPTION_FIELDS if k in by_lower and by_lower[k] != label_key),
        None,
    )
    score_key = next((by_lower[k] for k in _SCORE_FIELDS if k in by_lower), None)
    source_key = by_lower.get("label_source")
    n = len(parsed)
    descriptions = parsed.column(description_key) if description_key else [None] * n
    scores = parsed.column(score_key) if score_key else [None] * n
    sources = parsed.column(source_key) if source_key else [None] * n
    rows = _Rows()
    for index, label, description, source, score in zip(
        parsed.column(index_key),
        parsed.column(label_key),
        descriptions,
        sources,
        scores,
        strict=True,
    ):
        rows.add(index, label, description, str(source) if source else "table", score)
    return rows


# --- checking and assembling ---------------------------------------------------------------------


def _assemble(rows: _Rows, name: str, source: str | None) -> pl.DataFrame:
    features: list[int] = []
    labels: list[str] = []
    descriptions: list[str | None] = []
    sources: list[str] = []
    scores: list[float | None] = []
    for number, (index, label, description, row_source, score) in enumerate(
        zip(rows.index, rows.label, rows.description, rows.source, rows.score, strict=True),
        start=1,
    ):
        text = _text(label)
        if text is None:
            continue
        features.append(_feature_index(index, number, name))
        labels.append(text)
        descriptions.append(_text(description))
        sources.append(source if source is not None else row_source)
        scores.append(_score(score, number, name))
    if not features:
        raise InputError(
            f"label file {name} has no labels (no row pairs a feature index with a non-empty "
            "label); check that it is the right file"
        )
    frame = pl.DataFrame(
        {
            "feature": features,
            "label": labels,
            "description": descriptions,
            "label_source": sources,
            "label_score": scores,
            "_order": range(len(features)),
        },
        schema={**LABEL_SCHEMA, "_order": pl.Int64},
    )
    best_first = frame.sort(
        ["feature", "label_score", "_order"],
        descending=[False, True, False],
        nulls_last=True,
    )
    return best_first.unique("feature", keep="first", maintain_order=True).drop("_order")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return text or None


def _feature_index(value: Any, number: int, name: str) -> int:
    """``value`` as a latent index (int, integral float, or a string of digits)."""
    index: int | None = None
    if isinstance(value, bool):
        index = None
    elif isinstance(value, int):
        index = value
    elif isinstance(value, float) and value.is_integer():
        index = int(value)
    elif isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        index = int(value.strip().split(".")[0])
    if index is None:
        shown = "nothing" if value is None or value == "" else repr(value)
        raise InputError(
            f"label file {name} row {number} has feature index {shown}, not a whole number; "
            "feature indices are latent numbers 0, 1, 2, ..."
        )
    if index < 0:
        raise InputError(
            f"label file {name} row {number} has negative feature index {index}; "
            "latent indices start at 0"
        )
    return index


def _score(value: Any, number: int, name: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    score = _number(value)
    if score is None:
        raise InputError(
            f"label file {name} row {number} has score {value!r}, not a number; "
            "fix or remove the score column"
        )
    return score
