"""The preference API, over a store path: ingest and encode pair sets, list them, fit the
preference report, per-annotator effects, flag pairs for relabelling, record decisions and
export. The `saeembed prefs` commands are thin shells over these functions."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from saeembed.data import is_dataset_ref
from saeembed.encoding.options import EncodingOptions
from saeembed.errors import InputError
from saeembed.files import check_output
from saeembed.labels.table import label_names
from saeembed.prefs import curate
from saeembed.prefs.fit import PreferenceReport, fit_preferences, preference_data
from saeembed.prefs.fit_settings import FitSettings
from saeembed.prefs.ingest import add_pairs, pair_sets, require_pair_set
from saeembed.prefs.pairs import read_pairs
from saeembed.prefs.regression import fit_per_concept
from saeembed.remote import is_url
from saeembed.store import Encoder, Store
from saeembed.store.shard_layout import is_shard_target

if TYPE_CHECKING:
    from saeembed.encoding.core import EncodeReport

log = logging.getLogger(__name__)


#: How `encode_pairs` reads responses unless told otherwise: as assistant turns.
PAIR_ENCODING = EncodingOptions(chat="assistant")


@dataclass
class PairEncodeResult:
    pairs: str
    n_pairs: int
    n_new_pairs: int
    encoding: EncodeReport

    def summary(self) -> str:
        return (
            f"pair set {self.pairs!r}: {self.n_pairs:,} pairs ({self.n_new_pairs:,} new); "
            + self.encoding.describe("responses")
        )


def encode_pairs(
    source: str | Path | pl.DataFrame,
    db: str | Path,
    *,
    pairs: str | None = None,
    context: bool = False,
    seed: int = 0,
    encoding: EncodingOptions | None = None,
    progress: bool = True,
) -> PairEncodeResult:
    """Read preference pairs (a file, a DataFrame or ``data:NAME``), store them as pair set
    ``pairs`` and encode every response not yet encoded with ``encoding`` (`EncodingOptions`;
    default: the default reader and SAE, each response read as an assistant turn,
    `PAIR_ENCODING`), with its prompt as context when ``context`` is set. Safe to interrupt and
    to repeat."""
    from saeembed.api.corpus import corpus_name_for, store_dtype
    from saeembed.encoding.core import encode_stored_corpus, load_encoding_stack
    from saeembed.prefs.pairs import pairs_from_frame

    if isinstance(source, pl.DataFrame):
        if pairs is None:
            raise InputError("name the pair set (pairs=...) when encoding a DataFrame")
        table, origin = pairs_from_frame(source, seed=seed, source="<dataframe>"), "<dataframe>"
    else:
        table = read_pairs(source, seed=seed)
        remote = is_dataset_ref(str(source)) or is_url(str(source))
        origin = str(source) if remote else str(Path(source).resolve())
    name = pairs or corpus_name_for(source)
    o = (encoding or PAIR_ENCODING).check()
    if not is_shard_target(db):  # ``auto`` follows the precision the store already uses
        o = o.but(dtype=store_dtype(db, o.dtype))
    stack = load_encoding_stack(
        o.model, o.sae, o.layer, device=o.device, dtype=o.dtype, max_tokens=o.max_tokens,
        batch_tokens=o.batch_tokens,
    )  # fmt: skip
    if is_shard_target(db):
        from saeembed.shards.pairs import encode_pairs_to_shards

        added, done = encode_pairs_to_shards(
            db, name, table, origin, stack, o.kwargs(), context=context, progress=progress
        )
        return PairEncodeResult(name, table.height, added, done)
    with Store(db) as store:
        added = add_pairs(store, name, table, context=context, source=origin)
        done = encode_stored_corpus(
            store, name, stack, max_tokens=o.max_tokens, batch_tokens=o.batch_tokens,
            chat=o.chat, progress=progress,
        )  # fmt: skip
    return PairEncodeResult(name, table.height, added, done)


def list_pair_sets(db: str | Path) -> pl.DataFrame:
    """The pair sets in ``db`` (`saeembed.prefs.ingest.pair_sets`)."""
    with Store(db, create=False) as store:
        return pair_sets(store)


def _labels(store: Store, encoder: Encoder) -> dict[int, str]:
    names = label_names(store, encoder)
    return dict(zip(names["feature"].to_list(), names["label"].to_list(), strict=True))


def _pair_encoder(store: Store, pairs_name: str, encoder: str | int | None) -> Encoder:
    """The chosen encoder, or the only one that encoded this pair set's responses."""
    if encoder is not None:
        return store.resolve_encoder(encoder)
    used = store.sql(
        """
        SELECT DISTINCT e.encoder_id FROM encoded_documents e
        JOIN documents d ON d.doc_id = e.doc_id
        WHERE d.corpus = (SELECT corpus FROM pair_sets WHERE pairs = ?)
        """,
        [pairs_name],
    )["encoder_id"].to_list()
    if len(used) == 1:
        return store.resolve_encoder(used[0])
    return store.resolve_encoder(None)  # the store's only encoder, or a clear error


def fit(
    db: str | Path,
    pairs: str | None = None,
    *,
    encoder: str | int | None = None,
    settings: FitSettings | None = None,
    html: str | Path | None = None,
    progress: bool = True,
) -> PreferenceReport:
    """Which concepts do the annotators of pair set ``pairs`` reward or punish? Per-concept
    regressions, k-concept models and held-out AUCs against length and dense baselines
    (`saeembed.prefs.fit`), as ``settings`` say (`FitSettings`, checked before any work).
    ``html``: also write the report page there, ``settings.panels`` concepts with example
    pairs (`saeembed.reports.prefs_report`)."""
    s = (settings or FitSettings()).check()
    if html is not None:
        check_output(html)  # before any work
    # a fit only caches (embeddings, thresholds): a store it cannot write is read
    with Store(db, create=False, read_only=not Store.can_write(db)) as store:
        name = require_pair_set(store, pairs)
        chosen = _pair_encoder(store, name, encoder)
        kwargs = s.fit_kwargs()
        if html is not None:
            kwargs["top"] = None  # the page shows every concept; the result keeps the top
        report = fit_preferences(store, name, chosen, **kwargs)
        if html is not None:
            from saeembed.reports import write_prefs_report

            write_prefs_report(store, chosen, report, html, pairs_name=name, relabel=s.relabel,
                               panels=s.panels, progress=progress)  # fmt: skip
            report.features = report.features.head(s.top) if s.top else report.features
        return report


_CONCEPT = re.compile(r"^\s*(\d+)\s*(?::\s*([+-]|reward(?:ed)?|punish(?:ed)?)\s*)?$")


def parse_concepts(specs: Sequence[str]) -> dict[int, int | None]:
    """``123`` (direction taken from the data), ``123:-`` / ``123:punished`` (the preferred
    response should not have more of it) or ``123:+`` / ``123:rewarded``."""
    out: dict[int, int | None] = {}
    for spec in specs:
        match = _CONCEPT.match(spec)
        if not match:
            raise InputError(
                f"cannot read concept {spec!r}: use FEATURE, FEATURE:+ (rewarded) or "
                "FEATURE:- (punished), e.g. 1234:-"
            )
        sign = match.group(2)
        out[int(match.group(1))] = (
            None if sign is None else (1 if sign.startswith(("+", "r")) else -1)
        )
    return out


def flag(
    db: str | Path,
    pairs: str | None = None,
    *,
    encoder: str | int | None = None,
    concepts: Sequence[str] = (),
    model: bool = True,
    k: int | None = 20,
    confidence: float = 0.8,
    min_prevalence: float = 0.01,
    relabel: str | None = None,
    queue: str | Path | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """Pairs to look at again (`saeembed.prefs.curate.flag_pairs`): against the named concepts'
    directions, and (with ``model``) where an out-of-fold concept model confidently disagrees
    with the label. With ``queue``, also written there as a JSONL relabel queue."""
    wanted = parse_concepts(concepts)
    if queue is not None:
        check_output(queue)
    with Store(db, create=False) as store:
        name = require_pair_set(store, pairs)
        chosen = _pair_encoder(store, name, encoder)
        data = preference_data(store, name, chosen, relabel=relabel, seed=seed)
        labels = _labels(store, chosen)
        out_of_range = [f for f in wanted if f >= chosen.d_sae]
        if out_of_range:
            raise InputError(
                f"concept {out_of_range[0]} does not exist: encoder {chosen.name} has "
                f"{chosen.d_sae} concepts (0..{chosen.d_sae - 1})"
            )
        directions = _directions(data, wanted)
        model_concepts = None
        if model:
            prevalence = data.prevalence
            model_concepts = np.flatnonzero(prevalence >= min_prevalence)
        flagged = curate.flag_pairs(
            data, labels, concepts=directions, model_concepts=model_concepts, k=k,
            confidence=confidence,
        )  # fmt: skip
    if queue is not None:
        curate.write_queue(flagged, queue)
    return flagged


def _directions(data, wanted: dict[int, int | None]) -> dict[int, int]:
    """Each concept's direction: as given, or the sign of its length-controlled coefficient."""
    unknown = [f for f, d in wanted.items() if d is None]
    directions = {f: d for f, d in wanted.items() if d is not None}
    if unknown:
        coefs = fit_per_concept(data.delta[:, unknown], data.y, data.controls)["coef"]
        signs = dict(zip(unknown, np.sign(coefs), strict=True))
        for feature in unknown:
            if not signs[feature]:
                raise InputError(
                    f"concept {feature} never differs between the responses of this pair set; "
                    "give its direction (FEATURE:+ or FEATURE:-) or choose another"
                )
            directions[feature] = int(signs[feature])
    return directions


def apply(db: str | Path, decisions: str | Path, *, relabel: str, pairs: str | None = None) -> dict:
    """Read reviewed decisions (a filled-in relabel queue) into relabelling ``relabel``."""
    table = curate.read_decisions(decisions)
    with Store(db, create=False) as store:
        name = require_pair_set(store, pairs)
        return curate.apply_decisions(store, name, relabel, table)


def export(
    db: str | Path, path: str | Path, *, pairs: str | None = None, relabel: str | None = None
) -> pl.DataFrame:
    """Write the pair set (with relabelling ``relabel``, dropped pairs left out) to ``path``
    (.jsonl, .parquet or .csv); returns what was written."""
    check_output(path)
    with Store(db, create=False) as store:
        name = require_pair_set(store, pairs)
        frame = curate.curated_pairs(store, name, relabel)
    curate.export_pairs(frame, path)
    return frame


def annotators(
    db: str | Path,
    pairs: str | None = None,
    *,
    encoder: str | int | None = None,
    min_pairs: int = 30,
    min_prevalence: float = 0.05,
    alpha: float = 0.05,
    relabel: str | None = None,
):
    """Per-annotator concept weights pooled with a random-effects model
    (`saeembed.prefs.annotators`), for concepts with prevalence >= ``min_prevalence``."""
    from saeembed.prefs.annotators import annotator_effects

    with Store(db, create=False) as store:
        name = require_pair_set(store, pairs)
        chosen = _pair_encoder(store, name, encoder)
        data = preference_data(store, name, chosen, relabel=relabel)
        labels = _labels(store, chosen)
    keep = np.flatnonzero(data.prevalence >= min_prevalence)
    report = annotator_effects(
        data.delta[:, keep], data.y, data.pairs["annotator"].to_list(), data.controls,
        features=keep, min_pairs=min_pairs, alpha=alpha,
    )  # fmt: skip
    label_of = pl.DataFrame(
        {"feature": list(labels), "label": list(labels.values())},
        schema={"feature": pl.Int64, "label": pl.String},
    )
    report.concepts = report.concepts.join(
        label_of, on="feature", how="left", maintain_order="left"
    ).select("feature", "label", pl.exclude("feature", "label"))
    return report


def train_sae(
    db: str | Path,
    pairs: str | None = None,
    *,
    latents: int = 32,
    k: float = 4.0,
    prefixes: Sequence[int] = (8, 16, 32),
    epochs: int = 200,
    seed: int = 0,
    embedder: str = "default",
    progress: bool = False,
) -> tuple[Encoder, bool, dict]:
    """Train the WIMHF-style pair SAE on a pair set (`saeembed.prefs.pair_encoder`); returns
    the encoder, whether it is new, and its training statistics."""
    from saeembed.prefs.pair_encoder import train_pair_encoder

    settings = dict(n_latents=latents, k=k, prefixes=tuple(prefixes), epochs=epochs, seed=seed)
    with Store(db, create=False) as store:
        name = require_pair_set(store, pairs)
        return train_pair_encoder(store, name, settings, embedder=embedder, progress=progress)
