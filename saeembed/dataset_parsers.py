"""Parsers of the named datasets' raw files (`saeembed.data` fetches the bytes and caches the
parsed frames): each turns one file's bytes into a clean polars DataFrame with its documented
columns and types. Also the HH-RLHF dialogue splitter (`split_dialogue`), which pair files
without a prompt column share (`saeembed.prefs.pairs`)."""

from __future__ import annotations

import datetime as dt
import io
import json
import os

import polars as pl

from saeembed.compression import decompress
from saeembed.errors import InputError

HH_RLHF_ENV = "SAEEMBED_HH_RLHF"  # a local copy of HH-RLHF's harmless-base/test.jsonl.gz
ASSISTANT_MARK = "\n\nAssistant:"  # where an HH-RLHF assistant turn starts


def split_dialogue(chosen: str, rejected: str) -> tuple[str, str, str, bool]:
    """(prompt, chosen reply, rejected reply, same_prompt) of one HH-RLHF pair.

    Common case: both conversations are identical up to and including their last
    "\\n\\nAssistant:"; that is the prompt and the rest of each is its final reply. Otherwise (5 of
    2,312 pairs) the prompt is the longest common prefix cut back to just after the last
    "\\n\\nAssistant:" inside it, and each side keeps everything after that (possibly more turns).
    """
    end_c, end_r = chosen.rfind(ASSISTANT_MARK), rejected.rfind(ASSISTANT_MARK)
    if end_c >= 0 and end_c == end_r and chosen[:end_c] == rejected[:end_r]:
        end = end_c + len(ASSISTANT_MARK)
        return chosen[:end], chosen[end:].strip(), rejected[end:].strip(), True
    common = len(os.path.commonprefix([chosen, rejected]))
    cut = chosen.rfind(ASSISTANT_MARK, 0, common)
    end = cut + len(ASSISTANT_MARK) if cut >= 0 else 0
    return chosen[:end], chosen[end:].strip(), rejected[end:].strip(), False


def _csv(raw: bytes) -> pl.DataFrame:
    """Every column as a string (types are set explicitly by each parser); empty fields are null."""
    return pl.read_csv(io.BytesIO(raw), infer_schema_length=0)


def _bool(col: str, true: str, false: str) -> pl.Expr:
    """A strict string-to-Boolean mapping: an unexpected value is an error, not a silent False."""
    return pl.col(col).replace_strict({true: True, false: False}, return_dtype=pl.Boolean)


def _r_na(col: str) -> pl.Expr:
    """R's "NA" string as a null."""
    return pl.when(pl.col(col) == "NA").then(None).otherwise(pl.col(col)).alias(col)


def parse_rotten_tomatoes(raw: bytes) -> pl.DataFrame:
    frame = _csv(decompress(raw, ".bz2", "the Rotten Tomatoes download"))
    return frame.with_columns(_bool("has_plot_and_reviews", "True", "False"))


def parse_convention(raw: bytes) -> pl.DataFrame:
    return _csv(raw)


def parse_guardian(raw: bytes) -> pl.DataFrame:
    # 239 headlines start with a series label ("Nils Pratley on finance  \n\n\n  Centrica ..."):
    # the label goes to `kicker` and the headline alone to `text`.
    frame = _csv(decompress(raw, ".bz2", "the Guardian headlines download"))
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


def parse_debates(raw: bytes) -> pl.DataFrame:
    frame = _csv(decompress(raw, ".gz", "the debates download"))
    return frame.select(
        pl.col("statement").alias("text"),
        "speaker",
        "party",
        "debate",
        pl.col("debate").replace_strict(_DEBATE_DATES, return_dtype=pl.Date).alias("date"),
    )


def parse_news(raw: bytes) -> pl.DataFrame:
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


def parse_health_tweets(raw: bytes) -> pl.DataFrame:
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


def parse_commons(raw: bytes) -> pl.DataFrame:
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


def parse_hh_rlhf(raw: bytes, source: str = "HH-RLHF file") -> pl.DataFrame:
    if raw[:2] == b"\x1f\x8b":
        raw = decompress(raw, ".gz", source)
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
        prompt, chosen_reply, rejected_reply, same = split_dialogue(chosen, rejected)
        rows.append((prompt, chosen_reply, rejected_reply, chosen, rejected, same))
    names = ("prompt", "chosen", "rejected", "chosen_full", "rejected_full", "same_prompt")
    frame = pl.DataFrame(
        rows,
        schema=dict.fromkeys(names[:-1], pl.String) | {"same_prompt": pl.Boolean},
        orient="row",
    )
    return frame.with_row_index("pair_id").with_columns(pl.col("pair_id").cast(pl.Int64))
