"""The shipped default SAE: present, loadable, the default for the default reader, small enough,
and recorded with quality figures that meet the targets of its model card."""

from __future__ import annotations

import json

from saeembed.pretrained import PRETRAINED_DIR, default_sae_for, shipped_saes
from saeembed.reader import DEFAULT_MODEL_NAME
from saeembed.sae import load_sae

NAME = "smollm2-135m-instruct-l15-8k"


def test_default_sae_ships_and_is_the_default_for_the_default_reader():
    assert NAME in shipped_saes()
    assert default_sae_for(DEFAULT_MODEL_NAME) == PRETRAINED_DIR / NAME
    assert default_sae_for("someone/else") is None


def test_default_sae_loads_with_its_documented_shape():
    sae = load_sae(PRETRAINED_DIR / NAME)
    cfg = sae.cfg
    assert (cfg.d_in, cfg.d_sae, cfg.activation, cfg.k, cfg.layer) == (576, 8192, "topk", 32, 15)
    assert cfg.model == DEFAULT_MODEL_NAME
    assert 0.004 < cfg.input_scale < 0.007  # 1 / mean layer-15 norm (~175)
    assert (sae.W_dec.norm(dim=1) - 1).abs().max() < 1e-2  # unit-norm decoder rows (fp16 storage)


def test_a_shipped_sae_records_its_name_however_it_is_reached(monkeypatch, tmp_path):
    import shutil

    import saeembed.pretrained as pretrained

    by_path = load_sae(PRETRAINED_DIR / NAME)
    by_name = load_sae(f"saeembed:pretrained/{NAME}")
    assert by_path.cfg.source == by_name.cfg.source == f"saeembed:pretrained/{NAME}"
    # a copy written by `sae convert` records "saeembed:trained"; once it is a shipped SAE it is
    # still reloaded by name, never by the installed path (which differs between machines)
    fake_dir = tmp_path / "pretrained"
    shutil.copytree(
        PRETRAINED_DIR / NAME,
        fake_dir / "copy",
        ignore=shutil.ignore_patterns("*.parquet", "evidence*"),
    )
    cfg = json.loads((fake_dir / "copy" / "cfg.json").read_text())
    cfg["source"] = "saeembed:trained"
    (fake_dir / "copy" / "cfg.json").write_text(json.dumps(cfg))
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", fake_dir.resolve())
    assert load_sae(fake_dir / "copy").cfg.source == "saeembed:pretrained/copy"
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(fake_dir / "copy", elsewhere)
    assert load_sae(elsewhere).cfg.source == f"saeembed:{elsewhere}"


def test_recorded_figures_meet_the_targets():
    cfg = json.loads((PRETRAINED_DIR / NAME / "cfg.json").read_text())
    assert cfg["extra"]["fvu"] <= 0.20
    assert cfg["extra"]["dead_fraction"] <= 0.05
    assert cfg["extra"]["loss_recovered"] >= 0.90
    assert (PRETRAINED_DIR / NAME / "sae.safetensors").stat().st_size < 25 * 2**20
    assert (PRETRAINED_DIR / NAME / "README.md").exists()


def test_shipped_labels_cover_every_feature_of_the_shipped_sae():
    import polars as pl

    from saeembed.labels.table import parquet_sae_sha, shipped_labels_for

    path = PRETRAINED_DIR / NAME / "labels.parquet"
    sae = load_sae(PRETRAINED_DIR / NAME)
    assert parquet_sae_sha(path) == sae.content_hash()
    assert shipped_labels_for(sae.content_hash()) == path
    labels = pl.read_parquet(path)
    assert labels["feature"].sort().to_list() == list(range(8192))
    assert labels["label"].null_count() == 0
    assert labels["label_source"].unique().to_list() == ["offline"]
    scores = labels["label_score"].drop_nulls()
    assert scores.len() > 8100 and scores.median() > 0.6  # card: 8,172 scored, median 0.735
    assert path.stat().st_size < 4 * 2**20
