"""Preference pairs in, one canonical table out.

Reads the usual shapes of preference data into the columns of `PAIR_COLUMNS`:

- ``prompt, response_a, response_b, label``: label 1 = A preferred, 0 = B preferred, 0.5 = tie
  (also ``a``/``b``/``tie``);
- ``chosen, rejected`` (with or without ``prompt``): A and B are assigned by a seeded coin per
  pair, so the label is not always 1;
- HH-RLHF conversations (``chosen`` and ``rejected`` whole ``Human:``/``Assistant:`` dialogues):
  the shared prefix up to the last assistant turn is the prompt, the final replies are the
  responses.

Optional ``annotator`` and ``conversation_id`` columns are kept. Pairs with an empty response are
skipped and counted; ``pair_id`` is the pair's row number in the input either way. Every pair gets a ``prompt_group``
(a hash of its whitespace-normalised prompt), so that splits keep pairs sharing a prompt on one
side (`assign_folds`)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import polars as pl

from saeembed.data import is_dataset_ref, read_dataset_ref
from saeembed.dataset_parsers import ASSISTANT_MARK, split_dialogue
from saeembed.errors import InputError

log = logging.getLogger(__name__)

PAIR_COLUMNS = [
    "pair_id",
    "prompt",
    "response_a",
    "response_b",
    "label",
    "annotator",
    "conversation_id",
    "prompt_group",
]
LABEL_WORDS = {"a": 1.0, "b": 0.0, "tie": 0.5, "1": 1.0, "0": 0.0, "0.5": 0.5}
ANNOTATOR_COLUMNS = ("annotator", "annotator_id", "worker_id", "rater")
CONVERSATION_COLUMNS = ("conversation_id", "conv_id", "thread_id")


def _first(frame: pl.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((c for c in names if c in frame.columns), None)


def prompt_group(prompt: str) -> int:
    """A stable 63-bit id of a prompt (whitespace-normalised)."""
    digest = hashlib.blake2b(" ".join(prompt.split()).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _labels(values: pl.Series, source: str) -> pl.Series:
    if values.dtype.is_numeric() or values.dtype == pl.Boolean:
        numbers = values.cast(pl.Float64)
        bad = numbers.filter(~numbers.is_in([0.0, 0.5, 1.0]) | numbers.is_null())
        if bad.len() or numbers.null_count():
            example = "an empty value" if numbers.null_count() else repr(f"{bad[0]:g}")
            raise InputError(
                f"{source}: label {example} is not 1 (A preferred), 0 (B preferred) or 0.5 "
                "(tie); fix the label column"
            )
        return numbers
    words = values.cast(pl.Utf8).str.strip_chars().str.to_lowercase()
    mapped = words.replace_strict(LABEL_WORDS, default=None, return_dtype=pl.Float64)
    bad = words.filter(mapped.is_null() & words.is_not_null())
    if bad.len() or mapped.null_count():
        example = bad[0] if bad.len() else "an empty value"
        raise InputError(
            f"{source}: label {example!r} is not 1 (A preferred), 0 (B preferred) or 0.5 (tie); "
            "fix the label column"
        )
    return mapped


def pairs_from_frame(frame: pl.DataFrame, *, seed: int = 0, source: str = "pairs") -> pl.DataFrame:
    """The canonical pair table of a frame in one of the supported shapes."""
    cols = set(frame.columns)
    if {"response_a", "response_b", "label"} <= cols:
        if "prompt" not in cols:
            raise InputError(f"{source} has response_a/response_b/label but no prompt column")
        out = frame.select(
            pl.col("prompt").cast(pl.Utf8),
            pl.col("response_a").cast(pl.Utf8),
            pl.col("response_b").cast(pl.Utf8),
            _labels(frame["label"], source).alias("label"),
        )
    elif {"chosen", "rejected"} <= cols:
        chosen, rejected = frame["chosen"].cast(pl.Utf8), frame["rejected"].cast(pl.Utf8)
        if "prompt" in cols:
            prompts = frame["prompt"].cast(pl.Utf8).to_list()
            chosen_r, rejected_r = chosen.to_list(), rejected.to_list()
        elif chosen.str.contains(ASSISTANT_MARK, literal=True).all():
            split = [split_dialogue(c, r) for c, r in zip(chosen, rejected, strict=True)]
            prompts = [s[0] for s in split]
            chosen_r, rejected_r = [s[1] for s in split], [s[2] for s in split]
        else:
            raise InputError(
                f"{source} has chosen/rejected but no prompt column, and they are not "
                "HH-RLHF dialogues; add a prompt column"
            )
        a_is_chosen = np.random.default_rng(seed).random(frame.height) < 0.5
        out = pl.DataFrame(
            {
                "prompt": prompts,
                "response_a": [c if f else r for c, r, f in zip(chosen_r, rejected_r, a_is_chosen, strict=True)],
                "response_b": [r if f else c for c, r, f in zip(chosen_r, rejected_r, a_is_chosen, strict=True)],
                "label": a_is_chosen.astype(np.float64),
            },
            schema={"prompt": pl.Utf8, "response_a": pl.Utf8, "response_b": pl.Utf8, "label": pl.Float64},
        )  # fmt: skip
    else:
        raise InputError(
            f"{source} is not preference data: expected columns prompt, response_a, response_b, "
            f"label, or chosen, rejected (columns: {', '.join(frame.columns)})"
        )
    annotator = _first(frame, ANNOTATOR_COLUMNS)
    conversation = _first(frame, CONVERSATION_COLUMNS)
    out = out.with_columns(
        pl.Series("pair_id", np.arange(frame.height, dtype=np.int64)),
        (frame[annotator].cast(pl.Utf8) if annotator else pl.lit(None, pl.Utf8)).alias("annotator"),
        (frame[conversation].cast(pl.Utf8) if conversation else pl.lit(None, pl.Utf8)).alias(
            "conversation_id"
        ),
        pl.col("prompt")
        .fill_null("")
        .map_elements(prompt_group, return_dtype=pl.Int64)
        .alias("prompt_group"),
    )
    out = out.with_columns(pl.col("prompt").fill_null("")).select(PAIR_COLUMNS)
    empty = pl.col("response_a").fill_null("").str.strip_chars().eq("") | pl.col(
        "response_b"
    ).fill_null("").str.strip_chars().eq("")
    n_empty = out.filter(empty).height
    if n_empty == out.height:
        raise InputError(f"{source}: every pair has an empty response")
    if n_empty:
        log.warning("%s: skipped %d pair(s) with an empty response", source, n_empty)
    return out.filter(~empty)


def read_pairs(source: str | Path, *, seed: int = 0) -> pl.DataFrame:
    """Pairs from a file (any format `encode` reads) or a named pairs dataset (``data:NAME``)."""
    if is_dataset_ref(str(source)):
        _, frame = read_dataset_ref(str(source), kind="pairs")
        return pairs_from_frame(
            frame.select("prompt", "chosen", "rejected"), seed=seed, source=str(source)
        )
    from saeembed.inputs import read_table

    return pairs_from_frame(read_table(source), seed=seed, source=str(source))


def assign_folds(
    pairs: pl.DataFrame, n_folds: int = 5, seed: int = 0, labels: np.ndarray | None = None
) -> np.ndarray:
    """Fold number per pair; pairs that share a prompt always share a fold (no leakage). With
    fewer distinct prompts than folds (every pair answering one prompt, say) there is nothing to
    keep apart: pairs are dealt into folds one by one, by ``labels`` when given (each label
    spread over every fold, so each training part has both; see `folds_by_prompt`)."""
    groups = pairs["prompt_group"].to_numpy()
    unique = np.unique(groups)
    if len(unique) < n_folds:
        rng = np.random.default_rng(seed)
        folds = np.empty(len(groups), dtype=np.int64)
        strata = labels if labels is not None else np.zeros(len(groups))
        start = 0
        for value in np.unique(strata):
            members = rng.permutation(np.flatnonzero(strata == value))
            folds[members] = (start + np.arange(len(members))) % n_folds
            start += len(members)
        return folds
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = dict(zip(unique[order], np.arange(len(unique)) % n_folds, strict=True))
    return np.array([fold_of[g] for g in groups], dtype=np.int64)


def folds_by_prompt(pairs: pl.DataFrame, n_folds: int = 5) -> bool:
    """Whether `assign_folds` keeps the pairs of one prompt in one fold (enough prompts)."""
    return pairs["prompt_group"].n_unique() >= n_folds
