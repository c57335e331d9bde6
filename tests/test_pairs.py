"""Reading preference pairs in their usual shapes, and splits that keep prompts together."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from saeembed.errors import InputError
from saeembed.prefs.pairs import PAIR_COLUMNS, assign_folds, pairs_from_frame, read_pairs


def test_explicit_ab_labels(tmp_path):
    path = tmp_path / "p.csv"
    pl.DataFrame(
        {
            "prompt": ["q1", "q2", "q3"],
            "response_a": ["a1", "a2", "a3"],
            "response_b": ["b1", "b2", "b3"],
            "label": ["A", "0", "tie"],
            "worker_id": ["w1", "w2", "w1"],
        }
    ).write_csv(path)
    pairs = read_pairs(path)
    assert pairs.columns == PAIR_COLUMNS
    assert pairs["label"].to_list() == [1.0, 0.0, 0.5]
    assert pairs["annotator"].to_list() == ["w1", "w2", "w1"]
    assert pairs["pair_id"].to_list() == [0, 1, 2]


@pytest.mark.parametrize(
    "labels", [[1.0, 0.0, 0.5], [1, 0, 0], [True, False, False]], ids=["float", "int", "bool"]
)
def test_numeric_labels(labels):
    frame = pl.DataFrame(
        {"prompt": ["q"] * 3, "response_a": ["a"] * 3, "response_b": ["b"] * 3, "label": labels}
    )
    assert pairs_from_frame(frame)["label"].to_list() == [float(v) for v in labels]


def test_bad_label_is_one_line():
    frame = pl.DataFrame({"prompt": ["q"], "response_a": ["a"], "response_b": ["b"], "label": [2]})
    with pytest.raises(InputError, match="label '2' is not 1 \\(A preferred\\), 0"):
        pairs_from_frame(frame)


def test_chosen_rejected_are_assigned_by_a_seeded_coin():
    n = 400
    frame = pl.DataFrame(
        {"prompt": [f"q{i}" for i in range(n)], "chosen": [f"good {i}" for i in range(n)],
         "rejected": [f"bad {i}" for i in range(n)]}
    )  # fmt: skip
    pairs = pairs_from_frame(frame, seed=3)
    a_good = pairs["response_a"].str.starts_with("good")
    assert (pairs["label"] == a_good.cast(pl.Float64)).all()  # the label follows the chosen one
    assert 0.4 < pairs["label"].mean() < 0.6
    assert pairs_from_frame(frame, seed=3).equals(pairs)
    assert not pairs_from_frame(frame, seed=4).equals(pairs)


def test_hh_rlhf_dialogues_and_empty_responses(tmp_path):
    dialogue = "\n\nHuman: how do I bake bread?\n\nAssistant:"
    rows = [
        {"chosen": dialogue + " Mix flour and water.", "rejected": dialogue + " No idea."},
        {"chosen": dialogue + " Knead it.", "rejected": dialogue + " "},  # empty reply: skipped
    ]
    path = tmp_path / "hh.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = read_pairs(path)
    assert pairs.height == 1 and pairs["pair_id"].to_list() == [0]
    row = pairs.row(0, named=True)
    assert row["prompt"] == dialogue
    assert {row["response_a"], row["response_b"]} == {"Mix flour and water.", "No idea."}


def test_not_preference_data():
    with pytest.raises(InputError, match="is not preference data: expected columns"):
        pairs_from_frame(pl.DataFrame({"text": ["x"]}))


def test_folds_keep_prompts_together():
    prompts = [f"prompt {i % 37}" for i in range(500)]
    frame = pl.DataFrame({"prompt": prompts, "chosen": ["c"] * 500, "rejected": ["r"] * 500})
    pairs = pairs_from_frame(frame)
    folds = assign_folds(pairs, n_folds=5, seed=0)
    by_prompt = pl.DataFrame({"p": prompts, "f": folds}).group_by("p").agg(pl.col("f").n_unique())
    assert (by_prompt["f"] == 1).all()
    assert sorted(np.unique(folds)) == [0, 1, 2, 3, 4]
    # whitespace does not make a different prompt
    assert pairs_from_frame(pl.DataFrame({"prompt": ["a  b", "a b"], "chosen": ["c", "c"],
                                          "rejected": ["r", "r"]}))["prompt_group"].n_unique() == 1  # fmt: skip


def test_real_hh_rlhf_pairs(saeembed_home):
    from tests.conftest import HH_RLHF_FILE

    if not HH_RLHF_FILE.is_file():
        pytest.skip(f"no shared HH-RLHF copy at {HH_RLHF_FILE} (set SAEEMBED_HH_RLHF)")
    pairs = read_pairs("data:hh-rlhf-harmless")
    assert pairs.height == 2308  # 2,312 pairs, 4 with an empty final reply
    assert 0.45 < pairs["label"].mean() < 0.55
    assert pairs["prompt"].str.contains("\n\nAssistant:", literal=True).all()
